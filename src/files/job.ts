/** One file backup job, whatever its mode: opens the places it names and runs the core. */
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { formatBytes, formatCount } from '../core/streams.js';
import type { JobOutcome } from '../report/alerts.js';
import { openStorage } from '../storage/open.js';
import type { Storage } from '../storage/storage.js';
import { FILES_ACTIONS, filesOutcome, type AlertedMode, type FilesAction } from './alerts.js';
import { runFileBackup } from './backup.js';
import { runFileDrill } from './drill.js';
import type { FilesJob, FilesMode } from './options.js';
import { runFilePrune, type FilePruneReport } from './prune.js';
import { runFileRestore } from './restore.js';
import { openFileSource } from './source.js';
import {
  fileBackupSummary,
  fileDrillSummary,
  filePruneSummary,
  fileRestoreSummary,
  fileVerifySummary,
} from './summary.js';
import { runFileVerify } from './verify.js';

/**
 * Tells the watchers how a backup, verify, drill or prune ended, the way the database actions do
 * (issue, notifications, run record in `storage` when it could be opened); resolves with the
 * issue's number when there is one.
 */
export type FilesAlerter = (
  outcome: JobOutcome & { action: FilesAction },
  storage?: Storage,
) => Promise<number | undefined>;

export interface FilesJobDeps {
  logger: Logger;
  clock: Clock;
  /** Absolute path of `zstd`; found on PATH when absent. */
  zstdPath?: string;
  /** Scratch space of verify's restore and of a drill without a target. */
  workDir?: string;
  /** Absent: no job alerts anybody. */
  alert?: FilesAlerter;
}

export interface FilesJobOutcome {
  mode: FilesMode;
  status: 'passed' | 'failed';
  /** Markdown for the job summary. */
  summary: string;
  /** Step outputs (kebab-case names). */
  outputs: Record<string, string>;
  /** The core's own result, for `--json`. */
  result: unknown;
}

/** What a job hands to the alerts, beside its outcome. */
interface Told {
  outcome: FilesJobOutcome;
  backupId?: string;
  /** What failed, or what was done. */
  message: string;
}

type Job<M extends FilesMode> = Extract<FilesJob, { mode: M }>;
type AlertedJob = Job<AlertedMode>;
interface Opened {
  storage: Storage;
  zstdPath: string;
}

function zstdOf(deps: FilesJobDeps): string {
  const found = deps.zstdPath ?? findOnPath('zstd');
  if (!found) {
    throw new ConfigurationError(
      'File backups need the zstd command. Install it (sudo apt-get install -y zstd); GitHub-hosted runners have it.',
    );
  }
  return found;
}

async function open(job: FilesJob, deps: FilesJobDeps): Promise<Opened> {
  const zstdPath = zstdOf(deps);
  const storage = await openStorage(job.storage.location, job.storage.s3, deps.logger);
  return { storage, zstdPath };
}

export async function runFilesJob(job: FilesJob, deps: FilesJobDeps): Promise<FilesJobOutcome> {
  if (job.mode === 'restore') return restoreJob(job, await open(job, deps), deps);
  return alerted(job, deps);
}

function runAlertedJob(job: AlertedJob, opened: Opened, deps: FilesJobDeps): Promise<Told> {
  switch (job.mode) {
    case 'backup':
      return backupJob(job, opened, deps);
    case 'verify':
      return verifyJob(job, opened, deps);
    case 'drill':
      return drillJob(job, opened, deps);
    case 'prune':
      return pruneJob(job, opened, deps);
  }
}

function nameOf(job: AlertedJob): string {
  switch (job.mode) {
    case 'backup':
      return job.backup.name;
    case 'verify':
      return job.verify.name;
    case 'drill':
      return job.drill.name;
    case 'prune':
      return job.prune.name;
  }
}

async function backupJob(
  job: Job<'backup'>,
  { storage, zstdPath }: Opened,
  deps: FilesJobDeps,
): Promise<Told> {
  const { logger, clock } = deps;
  const source = await openFileSource(job.source.location, job.source.s3, logger);
  const result = await runFileBackup(job.backup, { source, storage, logger, clock, zstdPath });
  const { id, files } = result.manifest;
  const c = result.manifest.changes;
  const outcome: FilesJobOutcome = {
    mode: job.mode,
    status: 'passed',
    summary: fileBackupSummary(result, storage.description),
    outputs: {
      'backup-id': id,
      'manifest-key': result.manifestKey,
      files: String(files.length),
      'files-new': String(c.new),
      'files-changed': String(c.changed),
      'files-unchanged': String(c.unchanged),
      'files-deleted': String(c.deleted),
      'bytes-uploaded': String(c.bytesUploaded),
    },
    result,
  };
  return {
    outcome,
    backupId: id,
    message:
      `File backup ${id} stored: ${formatCount(files.length)} files, ${formatCount(c.new)} new, ` +
      `${formatCount(c.changed)} changed, ${formatBytes(c.bytesUploaded)} uploaded.`,
  };
}

async function restoreJob(
  job: Job<'restore'>,
  { storage, zstdPath }: Opened,
  deps: FilesJobDeps,
): Promise<FilesJobOutcome> {
  const target = await openStorage(job.target.location, job.target.s3, deps.logger);
  const result = await runFileRestore(job.restore, { ...deps, storage, target, zstdPath });
  return {
    mode: job.mode,
    status: 'passed',
    summary: fileRestoreSummary(result, target.description),
    outputs: {
      'backup-id': result.manifest.id,
      files: String(result.files),
      'restore-seconds': result.seconds.toFixed(1),
    },
    result,
  };
}

async function verifyJob(
  job: Job<'verify'>,
  { storage, zstdPath }: Opened,
  deps: FilesJobDeps,
): Promise<Told> {
  const report = await runFileVerify(job.verify, { ...deps, storage, zstdPath });
  return {
    outcome: {
      mode: job.mode,
      status: report.status,
      summary: fileVerifySummary(report),
      outputs: { 'backup-id': report.manifest.id, status: report.status },
      result: report,
    },
    backupId: report.manifest.id,
    message: proofMessage(
      report.checks.filter((c) => c.status === 'failed').map((c) => c.detail),
      `File backup ${report.manifest.id} of ${job.verify.name}: the verification passed.`,
    ),
  };
}

async function drillJob(
  job: Job<'drill'>,
  { storage, zstdPath }: Opened,
  deps: FilesJobDeps,
): Promise<Told> {
  const target = job.target
    ? await openStorage(job.target.location, job.target.s3, deps.logger)
    : undefined;
  const result = await runFileDrill(job.drill, { ...deps, storage, target, zstdPath });
  return {
    outcome: {
      mode: job.mode,
      status: result.status,
      summary: fileDrillSummary(result),
      outputs: {
        'backup-id': result.manifest.id,
        status: result.status,
        files: result.files === undefined ? '' : String(result.files),
        'rto-seconds': result.rtoSeconds === undefined ? '' : result.rtoSeconds.toFixed(1),
        'rpo-seconds': result.rpoSeconds.toFixed(0),
      },
      result,
    },
    backupId: result.manifest.id,
    message: proofMessage(
      result.checks.filter((c) => c.status === 'failed').map((c) => `${c.name}: ${c.detail}`),
      `File backup ${result.manifest.id} of ${job.drill.name}: the restore drill passed.`,
    ),
  };
}

/** The failed checks of a verify or drill, or what it proved when none failed. */
function proofMessage(failures: string[], passed: string): string {
  return failures.length > 0 ? failures.join('; ') : passed;
}

/** Lock reasons quoted at most in a failure message; the summary lists them all. */
const LOCKED_QUOTED = 3;

/**
 * A refused plan (it would delete more than max-delete, or every backup) fails, as the
 * database's prune does: nothing was deleted, and someone has to look. So do objects the store
 * would not delete.
 */
async function pruneJob(job: Job<'prune'>, { storage }: Opened, deps: FilesJobDeps): Promise<Told> {
  const report = await runFilePrune(job.prune, { ...deps, storage });
  const { plan } = report;
  const failure = pruneFailure(report);
  const outcome: FilesJobOutcome = {
    mode: job.mode,
    status: failure ? 'failed' : 'passed',
    summary: filePruneSummary(report),
    // A refused plan deletes nothing, whatever its decisions say.
    outputs: plan.refused
      ? { kept: String(plan.entries.length), deleted: '0' }
      : { kept: String(plan.keep), deleted: String(plan.delete) },
    result: report,
  };
  return {
    outcome,
    message:
      failure ??
      `${report.dryRun ? 'Dry run: would delete' : 'Deleted'} ${plan.delete} file backup(s), ` +
        `kept ${plan.keep}.`,
  };
}

/** Why a prune failed: its plan was refused, or the store would not delete some objects. */
function pruneFailure({ plan, locked }: FilePruneReport): string | undefined {
  if (plan.refused) return `Prune refused, nothing was deleted: ${plan.refused}.`;
  if (locked.length === 0) return undefined;
  const quoted = locked.slice(0, LOCKED_QUOTED).map((l) => `${l.key} (${l.reason})`);
  return (
    `The store would not delete ${locked.length} object(s): ${quoted.join('; ')}` +
    (locked.length > LOCKED_QUOTED ? '; …' : '.')
  );
}

/**
 * Runs a backup, verify, drill or prune and reports its outcome to the alerts, also when it
 * could not run at all (then the error is rethrown); the issue number becomes an output.
 */
async function alerted(job: AlertedJob, deps: FilesJobDeps): Promise<FilesJobOutcome> {
  const action = FILES_ACTIONS[job.mode];
  const name = nameOf(job);
  let storage: Storage | undefined;
  const alert = (outcome: Parameters<typeof filesOutcome>[2]) =>
    deps.alert?.(filesOutcome(action, name, outcome), storage);
  let told: Told;
  try {
    const opened = await open(job, deps);
    storage = opened.storage;
    told = await runAlertedJob(job, opened, deps);
  } catch (error) {
    await alert({ status: 'failed', message: errorMessage(error) });
    throw error;
  }
  const { outcome, backupId, message } = told;
  const issueNumber = await alert({
    status: outcome.status,
    message,
    details: outcome.summary,
    ...(backupId ? { backupId } : {}),
  });
  outcome.outputs['issue-number'] = issueNumber === undefined ? '' : String(issueNumber);
  return outcome;
}
