/** One file backup job, whatever its mode: opens the places it names and runs the core. */
import type { ActionName } from '../catalog/runs.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import type { JobOutcome } from '../report/alerts.js';
import { openStorage } from '../storage/open.js';
import type { Storage } from '../storage/storage.js';
import { runFileBackup } from './backup.js';
import { runFileDrill } from './drill.js';
import type { FilesJob, FilesMode } from './options.js';
import { runFilePrune } from './prune.js';
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
 * Tells the watchers how a verify or drill ended, the way the database actions do (issue,
 * notifications, run record in `storage`); resolves with the issue's number when there is one.
 */
export type FilesAlerter = (outcome: JobOutcome, storage: Storage) => Promise<number | undefined>;

export interface FilesJobDeps {
  logger: Logger;
  clock: Clock;
  /** Absolute path of `zstd`; found on PATH when absent. */
  zstdPath?: string;
  /** Scratch space of verify's restore and of a drill without a target. */
  workDir?: string;
  /** Absent: verify and drill alert nobody. */
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

/** What a verify or drill hands to the alerts, beside its outcome. */
interface Proof {
  outcome: FilesJobOutcome;
  backupId: string;
  failures: string[];
}

type Job<M extends FilesMode> = Extract<FilesJob, { mode: M }>;
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

export async function runFilesJob(job: FilesJob, deps: FilesJobDeps): Promise<FilesJobOutcome> {
  const zstdPath = zstdOf(deps);
  const storage = await openStorage(job.storage.location, job.storage.s3, deps.logger);
  const opened = { storage, zstdPath };
  switch (job.mode) {
    case 'backup':
      return backupJob(job, opened, deps);
    case 'restore':
      return restoreJob(job, opened, deps);
    case 'verify':
      return alerted('files-verify', job.verify.name, opened, deps, () =>
        verifyJob(job, opened, deps),
      );
    case 'drill':
      return alerted('files-drill', job.drill.name, opened, deps, () =>
        drillJob(job, opened, deps),
      );
    case 'prune':
      return pruneJob(job, opened, deps);
  }
}

async function backupJob(
  job: Job<'backup'>,
  { storage, zstdPath }: Opened,
  deps: FilesJobDeps,
): Promise<FilesJobOutcome> {
  const { logger, clock } = deps;
  const source = await openFileSource(job.source.location, job.source.s3, logger);
  const result = await runFileBackup(job.backup, { source, storage, logger, clock, zstdPath });
  const c = result.manifest.changes;
  return {
    mode: job.mode,
    status: 'passed',
    summary: fileBackupSummary(result, storage.description),
    outputs: {
      'backup-id': result.manifest.id,
      'manifest-key': result.manifestKey,
      files: String(result.manifest.files.length),
      'files-new': String(c.new),
      'files-changed': String(c.changed),
      'files-unchanged': String(c.unchanged),
      'files-deleted': String(c.deleted),
      'bytes-uploaded': String(c.bytesUploaded),
    },
    result,
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
): Promise<Proof> {
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
    failures: report.checks.filter((c) => c.status === 'failed').map((c) => c.detail),
  };
}

async function drillJob(
  job: Job<'drill'>,
  { storage, zstdPath }: Opened,
  deps: FilesJobDeps,
): Promise<Proof> {
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
    failures: result.checks
      .filter((c) => c.status === 'failed')
      .map((c) => `${c.name}: ${c.detail}`),
  };
}

async function pruneJob(
  job: Job<'prune'>,
  { storage }: Opened,
  deps: FilesJobDeps,
): Promise<FilesJobOutcome> {
  const report = await runFilePrune(job.prune, { ...deps, storage });
  return {
    mode: job.mode,
    status: report.locked.length > 0 ? 'failed' : 'passed',
    summary: filePruneSummary(report),
    outputs: { kept: String(report.plan.keep), deleted: String(report.plan.delete) },
    result: report,
  };
}

const NEXT_STEP: Record<'files-verify' | 'files-drill', string> = {
  'files-verify':
    "Open the run's summary: fix what a check names, or take a new file backup if this one cannot be restored.",
  'files-drill':
    "Open the run's summary: a failed restore needs a new file backup; a missed RTO or RPO target needs a faster store or more frequent file backups.",
};

/**
 * Runs a verify or drill and reports its outcome to the alerts, also when it could not run at
 * all (then the error is rethrown); the issue number becomes an output.
 */
async function alerted(
  action: 'files-verify' | 'files-drill',
  name: string,
  { storage }: Opened,
  deps: FilesJobDeps,
  run: () => Promise<Proof>,
): Promise<FilesJobOutcome> {
  const alert = (outcome: Omit<JobOutcome, 'action' | 'name' | 'warnings' | 'nextStep'>) =>
    deps.alert?.({ action, name, warnings: [], nextStep: NEXT_STEP[action], ...outcome }, storage);
  let proof: Proof;
  try {
    proof = await run();
  } catch (error) {
    await alert({ status: 'failed', message: errorMessage(error) });
    throw error;
  }
  const { outcome, backupId, failures } = proof;
  const failed = outcome.status === 'failed';
  const issueNumber = await alert({
    status: outcome.status,
    message: failed
      ? failures.join('; ')
      : `File backup ${backupId} of ${name}: ${describe(action)} passed.`,
    details: outcome.summary,
    backupId,
  });
  outcome.outputs['issue-number'] = issueNumber === undefined ? '' : String(issueNumber);
  return outcome;
}

function describe(action: ActionName): string {
  return action === 'files-drill' ? 'the restore drill' : 'the verification';
}
