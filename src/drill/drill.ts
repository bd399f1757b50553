import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { runBackup, wholeDatabaseBackup } from '../backup/backup.js';
import {
  appendVerificationRecord,
  listCatalog,
  requireComplete,
  type CatalogEntry,
  selectBackup,
  resolveName,
} from '../catalog/catalog.js';
import {
  MANIFEST_SCHEMA_VERSION,
  dumpObject,
  type GitContext,
  type Manifest,
  type VerificationRecord,
} from '../catalog/manifest.js';
import { formatDuration } from '../core/duration.js';
import { errorMessage, OptionError } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { formatBytes, rate } from '../core/streams.js';
import {
  connect,
  databaseName,
  describeConnection,
  parseConnectionString,
} from '../postgres/connection.js';
import {
  majorOf,
  type ClientTools,
  type ServerBinaries,
  type ToolResolver,
} from '../postgres/tools.js';
import type { CheckResult, TableComparison, UserCheck } from '../restore/checks.js';
import {
  checkRestored,
  dropRoles,
  performRestore,
  prepareRestore,
  type RestoreJob,
  type RestoreOutcome,
} from '../restore/pipeline.js';
import {
  archiveFeed,
  decodeSteps,
  fetchArchive,
  fetchArchiveHead,
  fetchGlobals,
  missingKeyError,
  missingZstdError,
  type ArchiveFeed,
  type Decryption,
} from '../restore/fetch.js';
import { decodeFile, downloadObject } from '../restore/phased.js';
import { listArchive, type ArchiveListing } from '../restore/pg-restore.js';
import {
  PeakDisk,
  chooseRestorePlan,
  describePlanReport,
  workDiskNeed,
  type RestorePlan,
  type RestorePlanChoice,
  type RestorePlanReport,
} from '../restore/disk.js';
import {
  findScratchServer,
  openTarget,
  scratchTarget,
  type RestoreTarget,
} from '../restore/target.js';
import type { Storage } from '../storage/storage.js';
import { recentDrills } from './history.js';
import { otherSessions, terminateSessions } from './sessions.js';
import { runSmokeCommand } from './smoke.js';
import { rehearseUndo } from './undo.js';

/** S3 storage classes whose objects cannot be read before a restore request thawed them. */
export const ARCHIVE_STORAGE_CLASSES: readonly string[] = ['GLACIER', 'DEEP_ARCHIVE'];

export interface DrillOptions {
  /** Catalog name; default: the only name in the store. */
  name?: string;
  /** Default: the newest complete backup (other than a pre-restore safety backup). */
  backupId?: string;
  decryption?: Decryption;
  /** Parallel pg_restore jobs. */
  jobs: number;
  rtoTargetSeconds?: number;
  rpoTargetSeconds?: number;
  /** Run with `bash -c` after the restore, with DATABASE_URL and PG* set; its exit code decides. */
  smokeCommand?: string;
  checks: UserCheck[];
  /**
   * Restore into this database instead of a scratch server: created (and dropped afterwards)
   * when it does not exist, refused when it holds tables.
   */
  targetUrl?: string;
  /** `auto`, or the PostgreSQL major of the client tools (and the least major of a scratch server). */
  postgresVersion: 'auto' | number;
  git: GitContext;
  /** How the archive reaches pg_restore (see RestorePlanName); default `auto`, from the free space. */
  restorePlan?: RestorePlanChoice;
}

export interface RestoreOptions extends DrillOptions {
  /** The database to replace with the backup. */
  targetUrl: string;
  /** Must equal the target database's name, or nothing is done. */
  confirm?: string;
  /** Terminate other sessions connected to the target; otherwise their presence is refused. */
  terminateConnections: boolean;
  /** Back up the target (kind pre-restore, same storage and name) before replacing it. */
  safetyBackup: boolean;
}

/** What the drill needs of the client tools. */
export interface DrillDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
  env: NodeJS.ProcessEnv;
  /** Absolute path of `zstd`, when installed. */
  zstdPath?: string;
  resolveTools: ToolResolver;
  /** Installs extensions the scratch server lacks; see RestoreJob. */
  installExtensions?: (names: string[], major: number) => Promise<string>;
  /** Server binaries for a scratch target; default: the newest installed of at least `minMajor`. */
  findServer?(minMajor: number): Promise<ServerBinaries>;
  /**
   * The work folder: the downloaded object, the archive and a scratch server's data directory
   * go there (each removed afterwards).
   */
  workDir: string;
  /** Working directory of the smoke command. */
  workspace: string;
  progressIntervalMs?: number;
  /**
   * Called with each folder the run creates (download folder, scratch cluster), before it is
   * filled, so a later step can remove it when this process is killed before its cleanup.
   */
  onTemporaryFolder?(dir: string): void;
}

export type PhaseName = 'download' | 'decrypt' | 'restore' | 'checks' | 'smoke';

export interface Phase {
  name: PhaseName;
  label: string;
  status: 'passed' | 'failed' | 'skipped';
  seconds?: number;
  detail: string;
}

export interface DrillResult {
  mode: 'drill' | 'restore';
  status: 'passed' | 'failed';
  name: string;
  manifest: Manifest;
  startedAt: Date;
  finishedAt: Date;
  phases: Phase[];
  /** Download start to a restored, analysed, checked (and smoke-tested) database; undefined when it never got there. */
  rtoSeconds?: number;
  /** Age of the backup's snapshot (its start) when the drill started. */
  rpoSeconds: number;
  rtoTargetSeconds?: number;
  rpoTargetSeconds?: number;
  /** Every check with its outcome, including the RTO and RPO targets. */
  checks: CheckResult[];
  comparison: TableComparison[];
  /** What stopped the drill before its end, when something did. */
  error?: string;
  warnings: string[];
  target?: { describe: string; serverVersion: string; scratch: boolean };
  /** The pg_restore version used. */
  pgRestoreVersion?: string;
  /** The restore plan, why, and the disk it used; set once the restore completed. */
  restorePlan?: RestorePlanReport;
  safetyBackup?: { id: string; location: string };
  /** How the safety backup's restore over the target was proved before the restore started. */
  undoRehearsal?: string;
  /**
   * The real restore's target afterwards: `unchanged` (nothing was committed) or `restored`
   * (the backup's data, whatever the checks after it say). Undefined for a drill.
   */
  targetState?: 'unchanged' | 'restored';
  /** The target's state in words, at every outcome of a real restore. */
  targetStateText?: string;
  /** Earlier drills and restores of the name, oldest first (this one not included). */
  history: VerificationRecord[];
  /** Key of this run's record under verifications/, when it was stored. */
  recordKey?: string;
  /** The record stored under recordKey, as the trend shows it. */
  record?: VerificationRecord;
}

/** A timed drill: restore a backup into a throwaway target, check it, measure RTO and RPO. */
export function runDrill(options: DrillOptions, deps: DrillDeps): Promise<DrillResult> {
  return execute('drill', options, deps);
}

/**
 * The real restore: replaces the target database's contents with the backup, after checking
 * `confirm` against the database name, refusing or terminating other sessions, and taking a
 * safety backup of the target first. What the backup covers is emptied in one transaction
 * (see emptyTarget), then pg_restore rebuilds it.
 */
export function runRestore(options: RestoreOptions, deps: DrillDeps): Promise<DrillResult> {
  return execute('restore', options, deps);
}

/**
 * The given backup, or the newest complete one that is not a pre-restore safety backup. A
 * damaged manifest elsewhere in the catalog does not stop a restore: each one becomes a warning,
 * and one newer than the backup picked says that the restore goes further back because of it.
 */
export async function pickBackup(
  storage: Storage,
  name: string,
  backupId: string | undefined,
): Promise<{ manifest: Manifest; warnings: string[] }> {
  if (backupId) return { manifest: await selectBackup(storage, name, backupId), warnings: [] };
  const entries = await listCatalog(storage, name);
  const complete = requireComplete(entries, storage, name);
  const manifest = complete.find((m) => m.kind !== 'pre-restore') ?? complete[0];
  const warnings = entries.flatMap((e) =>
    e.damaged === undefined
      ? []
      : [
          startedLater(e, manifest)
            ? `Backup ${e.id} of '${name}' is newer than ${manifest.id}, the one used here, but its manifest cannot be read, so it was passed over: ${e.damaged}`
            : `Backup ${e.id} of '${name}' has a manifest that cannot be read: ${e.damaged}`,
        ],
  );
  return { manifest, warnings };
}

/**
 * Whether a catalog entry's backup started after `manifest`'s: ids carry the start to the
 * second, and within one second the entry's objects written after that backup finished decide.
 */
function startedLater(entry: CatalogEntry, manifest: Manifest): boolean {
  const start = (id: string): string => id.slice(0, 16);
  if (start(entry.id) !== start(manifest.id)) return start(entry.id) > start(manifest.id);
  return entry.lastModified.getTime() > Date.parse(manifest.finishedAt);
}

/** Why the backup's object cannot be read right now (missing, or in an archive class), if so. */
export async function unrestorableReason(
  storage: Storage,
  manifest: Manifest,
): Promise<string | undefined> {
  const entry = dumpObject(manifest);
  const head = await storage.head(entry.key);
  if (!head) {
    return `Backup ${manifest.id} is not restorable: its manifest lists ${storage.location(entry.key)}, and that object is missing.`;
  }
  const storageClass = head.storageClass?.toUpperCase();
  // A completed restore request leaves the class as it was; its temporary copy is readable.
  if (storageClass && ARCHIVE_STORAGE_CLASSES.includes(storageClass) && head.restored !== true) {
    const thaw = storageClass === 'DEEP_ARCHIVE' ? 'up to 12 hours (48 with bulk)' : '3 to 5 hours';
    if (head.restored === false) {
      return (
        `Backup ${manifest.id} is not restorable yet: ${storage.location(entry.key)} is in the ${storageClass} storage class, and its restore request is still in progress (${thaw} from the request). ` +
        `Run the drill again once it has completed, and count that time in the RTO.`
      );
    }
    return (
      `Backup ${manifest.id} is not restorable without a restore request: ${storage.location(entry.key)} is in the ${storageClass} storage class. ` +
      `Request a temporary copy first (aws s3api restore-object --key ... --restore-request Days=2), which takes ${thaw}, and count that time in the RTO; ` +
      `or drill a backup still in an instant-access class (backup-id), and keep the newest backups out of archive classes in the bucket's lifecycle rules.`
    );
  }
  return undefined;
}

function checkDecodable(manifest: Manifest, decryption: Decryption | undefined, zstd?: string) {
  const error = missingKeyError(manifest, decryption) ?? missingZstdError(manifest, zstd);
  if (error) throw error;
}

const PHASE_LABELS: Record<PhaseName, string> = {
  download: 'Download',
  decrypt: 'Decrypt and decompress',
  restore: 'Restore',
  checks: 'Checks',
  smoke: 'Smoke command',
};

class PhaseFailure extends Error {}

async function execute(
  mode: 'drill' | 'restore',
  options: DrillOptions | RestoreOptions,
  deps: DrillDeps,
): Promise<DrillResult> {
  const startedAt = deps.clock.now();
  const restore = mode === 'restore' ? (options as RestoreOptions) : undefined;
  // The confirmation comes before anything is read or touched.
  if (restore) requireConfirmation(restore);
  const name = await resolveName(deps.storage, options.name);
  const { manifest, warnings } = await pickBackup(deps.storage, name, options.backupId);
  for (const w of warnings) deps.logger.warning(w);
  const result = startResult(mode, options, name, manifest, startedAt, warnings);
  deps.logger.info(
    `${mode === 'restore' ? 'Restoring' : 'Drilling'} backup ${manifest.id} of ${name} (${manifest.kind}, taken ${manifest.startedAt}, PostgreSQL ${manifest.source.serverVersion}); its age is ${formatDuration(result.rpoSeconds)}`,
  );
  const history = recentDrills(deps.storage, name).catch((error: unknown) => {
    deps.logger.warning(`Could not read the earlier drills: ${errorMessage(error)}`);
    return [];
  });
  const unrestorable = await unrestorableReason(deps.storage, manifest);
  if (unrestorable) {
    result.error = unrestorable;
    return finish(result, options, deps, await history);
  }
  checkDecodable(manifest, options.decryption, deps.zstdPath);
  const plan = await chooseRestorePlan({
    need: workDiskNeed(manifest, { downloads: true, scratch: !options.targetUrl }),
    choice: options.restorePlan ?? 'auto',
    dir: deps.workDir,
    replace: Boolean(restore),
  });
  deps.logger.info(`Restore plan: ${plan.name}: ${plan.why}`);
  const peakDisk = await PeakDisk.start(deps.workDir);
  const opened: { target?: RestoreTarget; workDir?: string; createdRoles: string[] } = {
    createdRoles: [],
  };
  try {
    opened.workDir = await mkdtemp(path.join(deps.workDir, 'drill-'));
    deps.onTemporaryFolder?.(opened.workDir);
    // A given target is checked before anything is downloaded; a scratch server starts beside
    // the download, whose time it would otherwise add to every drill.
    const opening = options.targetUrl
      ? Promise.resolve(await openGivenTarget(result, options, deps, opened))
      : (await startScratch(result, options, deps, opened)).starting;
    const run: FetchRun = {
      result,
      options,
      deps,
      workDir: opened.workDir,
      createdRoles: opened.createdRoles,
      plan,
      peakDisk,
    };
    await runPhases(run, opening);
  } finally {
    peakDisk.stop();
    await cleanUp(opened, deps.logger);
  }
  return finish(result, options, deps, await history);
}

/** A real restore names its target database in `confirm`, or nothing is done. */
function requireConfirmation(restore: RestoreOptions): void {
  if (!restore.targetUrl) {
    throw new OptionError(
      'target-url',
      (w) => `A restore replaces the database given by ${w.option('target-url')}, and it is empty.`,
    );
  }
  const info = parseConnectionString(restore.targetUrl, 'target-url');
  const database = databaseName(info);
  if (restore.confirm !== database) {
    throw new OptionError(
      'confirm',
      (w) =>
        `Refusing to restore into ${describeConnection(info)}: ${w.option('confirm')} must be the target database's name, '${database}'` +
        (restore.confirm ? `, got '${restore.confirm}'` : ', and it is empty') +
        '. Nothing was changed.',
    );
  }
}

function startResult(
  mode: 'drill' | 'restore',
  options: DrillOptions,
  name: string,
  manifest: Manifest,
  startedAt: Date,
  warnings: string[],
): DrillResult {
  const rpoSeconds = Math.max(0, (startedAt.getTime() - Date.parse(manifest.startedAt)) / 1000);
  return {
    mode,
    status: 'passed',
    name,
    manifest,
    startedAt,
    finishedAt: startedAt,
    phases: (Object.keys(PHASE_LABELS) as PhaseName[]).map((p) => ({
      name: p,
      label: PHASE_LABELS[p],
      status: 'skipped',
      detail: p === 'smoke' && !options.smokeCommand ? 'no smoke-command given' : 'not reached',
    })),
    rpoSeconds,
    rtoTargetSeconds: options.rtoTargetSeconds,
    rpoTargetSeconds: options.rpoTargetSeconds,
    checks: [],
    comparison: [],
    warnings,
    history: [],
    targetState: mode === 'restore' ? 'unchanged' : undefined,
  };
}

/** The target a run restores into, and the client tools it restores with. */
interface OpenedTarget {
  target: RestoreTarget;
  tools: ClientTools;
}

/** The client tools' least major (the dump's), and the least major of a scratch server. */
function drillMajors(manifest: Manifest, options: DrillOptions): { dump: number; server: number } {
  const source = majorOf(manifest.source.serverVersion);
  const server =
    options.postgresVersion === 'auto' ? source : Math.max(options.postgresVersion, source);
  return { dump: Math.max(majorOf(manifest.tools.pgDumpVersion), source), server };
}

/**
 * The database given by target-url, then client tools of at least its major when a safety
 * backup needs them; for a real restore, the target guarded (see guardRealRestore).
 */
async function openGivenTarget(
  result: DrillResult,
  options: DrillOptions | RestoreOptions,
  deps: DrillDeps,
  opened: { target?: RestoreTarget },
): Promise<OpenedTarget> {
  const restore = result.mode === 'restore' ? (options as RestoreOptions) : undefined;
  const majors = drillMajors(result.manifest, options);
  const target = await openTarget({
    targetUrl: options.targetUrl,
    minMajor: majors.server,
    replace: Boolean(restore),
    logger: deps.logger,
  });
  opened.target = target;
  const tools = await deps.resolveTools({
    major: Math.max(majors.dump, restore?.safetyBackup ? target.serverMajor : 0),
    version: result.manifest.tools.pgDumpVersion,
    needServer: false,
  });
  describeTarget(result, target, tools, deps.logger);
  if (restore) await guardRealRestore(result, restore, deps, target, tools);
  return { target, tools };
}

/**
 * A scratch server: the client tools and the server's binaries first (finding them may install
 * them, or fail saying what to install), then `starting`, the server starting in the work folder.
 */
async function startScratch(
  result: DrillResult,
  options: DrillOptions,
  deps: DrillDeps,
  opened: { target?: RestoreTarget },
): Promise<{ starting: Promise<OpenedTarget> }> {
  const majors = drillMajors(result.manifest, options);
  const tools = await deps.resolveTools({
    major: majors.dump,
    version: result.manifest.tools.pgDumpVersion,
    needServer: true,
  });
  const server = await findScratchServer(majors.server, deps.findServer, deps.logger);
  const starting = scratchTarget({
    server,
    logger: deps.logger,
    database: 'restore_drill',
    parentDir: deps.workDir,
  }).then((target) => {
    opened.target = target;
    if (target.scratch) deps.onTemporaryFolder?.(path.dirname(target.scratch.dataDir));
    describeTarget(result, target, tools, deps.logger);
    return { target, tools };
  });
  return { starting };
}

/** The result names the target and the tools; a target older or newer than the source is named. */
function describeTarget(
  result: DrillResult,
  target: RestoreTarget,
  tools: ClientTools,
  logger: Logger,
): void {
  result.pgRestoreVersion = tools.version;
  result.target = {
    describe: target.describe,
    serverVersion: target.serverVersion,
    scratch: Boolean(target.scratch),
  };
  noteVersions(result, target, majorOf(result.manifest.source.serverVersion), logger);
}

function noteVersions(
  result: DrillResult,
  target: RestoreTarget,
  sourceMajor: number,
  logger: Logger,
): void {
  const source = result.manifest.source.serverVersion;
  if (target.serverMajor < sourceMajor) {
    const warning =
      `The target runs PostgreSQL ${target.serverVersion}, older than the backup's source (${source}): ` +
      `objects and syntax the older server lacks make the restore fail. Restore into PostgreSQL ${sourceMajor} or newer.`;
    result.warnings.push(warning);
    logger.warning(warning);
  } else if (target.serverMajor > sourceMajor) {
    logger.info(`Upgrade rehearsal: PostgreSQL ${source} → ${target.serverVersion}`);
  }
}

/**
 * Before a real restore touches the target: other sessions refused (or ended later, with
 * terminate-connections), then the undo rehearsed and the safety backup taken when asked for.
 */
async function guardRealRestore(
  result: DrillResult,
  restore: RestoreOptions,
  deps: DrillDeps,
  target: RestoreTarget,
  tools: ClientTools,
): Promise<void> {
  const { logger } = deps;
  const sessions = await withClient(target, (c) => otherSessions(c, target.database));
  if (sessions > 0 && !restore.terminateConnections) {
    throw new OptionError(
      'terminate-connections',
      (w) =>
        `Refusing to restore into ${target.describe}: ${sessions} other session(s) are connected to it. ` +
        `Stop the application first, or ${w.enable('terminate-connections')} to end them. Nothing was changed.`,
    );
  }
  if (!restore.safetyBackup) return;
  const objects = await withClient(target, userObjects);
  if (objects === 0) {
    logger.info(`${target.describe} holds no tables, views or sequences: no safety backup needed`);
    return;
  }
  result.undoRehearsal = await logger.group('Undo rehearsal', () =>
    rehearseUndo({
      target,
      tools,
      name: result.name,
      workDir: deps.workDir,
      zstdPath: deps.zstdPath,
      env: deps.env,
      clock: deps.clock,
      logger,
    }),
  );
  logger.info(`Undo: ${result.undoRehearsal}`);
  result.safetyBackup = await takeSafetyBackup(
    restore,
    deps,
    target,
    result.name,
    result.manifest,
    tools,
  );
}

/** Removes the run's folder, then the target (a scratch server or a database it made) and its roles. */
async function cleanUp(
  opened: { target?: RestoreTarget; workDir?: string; createdRoles: string[] },
  logger: Logger,
): Promise<void> {
  const { target, workDir, createdRoles } = opened;
  if (workDir) await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  if (!target) return;
  await target
    .cleanup()
    .then(() => (target.scratch ? [] : dropRoles(target, createdRoles)))
    .then((left) => {
      if (left.length)
        logger.warning(`Could not drop the role(s) this run created: ${left.join(', ')}`);
    })
    .catch((error: unknown) =>
      logger.warning(`Could not clean up ${target.describe}: ${errorMessage(error)}`),
    );
}

async function withClient<T>(
  target: RestoreTarget,
  fn: (client: Awaited<ReturnType<typeof connect>>) => Promise<T>,
): Promise<T> {
  const client = await connect(target.connection, target.database);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Tables, views and sequences outside the system schemas. */
async function userObjects(client: Awaited<ReturnType<typeof connect>>): Promise<number> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')`,
  );
  return Number(r.rows[0].n);
}

async function takeSafetyBackup(
  options: RestoreOptions,
  deps: DrillDeps,
  target: RestoreTarget,
  name: string,
  manifest: Manifest,
  tools: ClientTools,
): Promise<{ id: string; location: string }> {
  return deps.logger.group(`Safety backup of ${target.describe} (kind pre-restore)`, async () => {
    const encryption = manifest.encryption
      ? {
          recipients: manifest.encryption.recipients,
          passphrase: manifest.encryption.passphrase ? options.decryption?.passphrase : undefined,
        }
      : undefined;
    const backup = await runBackup(
      {
        ...wholeDatabaseBackup(target.connection, name),
        encryption:
          encryption && (encryption.recipients.length > 0 || encryption.passphrase)
            ? encryption
            : undefined,
        kind: 'pre-restore',
        labels: { 'restore-of': manifest.id },
        sizeChangeThreshold: Number.POSITIVE_INFINITY,
        git: options.git,
      },
      {
        storage: deps.storage,
        logger: deps.logger,
        clock: deps.clock,
        env: deps.env,
        zstdPath: deps.zstdPath,
        resolveTools: () => Promise.resolve(tools),
        progressIntervalMs: deps.progressIntervalMs,
        tmpDir: deps.workDir,
      },
    );
    for (const w of backup.warnings) deps.logger.warning(w);
    deps.logger.info(
      `Safety backup ${backup.manifest.id} stored: restore it (backup-id: ${backup.manifest.id}) to undo this restore.`,
    );
    return { id: backup.manifest.id, location: deps.storage.location(backup.manifestKey) };
  });
}

/**
 * Other sessions of the target stop a real restore unless terminate-connections ends them (the
 * first check, at the start, refused them already; this one catches sessions opened since).
 */
async function endOtherSessions(
  client: pg.Client,
  target: RestoreTarget,
  restore: RestoreOptions,
  logger: Logger,
): Promise<void> {
  const sessions = await otherSessions(client, target.database);
  if (sessions === 0) return;
  if (!restore.terminateConnections) {
    throw new Error(
      `${sessions} session(s) connected to ${target.database} since the start; set terminate-connections: true or stop them. The database was not changed.`,
    );
  }
  const t = await terminateSessions(client, target.database);
  logger.info(`Terminated ${t.terminated} other session(s) of ${target.database}`);
  if (t.remaining > 0) {
    throw new Error(
      `${t.remaining} session(s) of ${target.database} could not be terminated (the restoring user needs pg_signal_backend or to own them). The database was not changed.`,
    );
  }
}

/** What the phases of one drill or real restore share before the target is open. */
interface FetchRun {
  result: DrillResult;
  options: DrillOptions | RestoreOptions;
  deps: DrillDeps;
  /** The run's own folder in the work folder: the object and the archive. */
  workDir: string;
  createdRoles: string[];
  plan: RestorePlan;
  peakDisk: PeakDisk;
}

/** What the phases from the restore on share: the target is open. */
type PhaseRun = FetchRun & OpenedTarget;

/** Runs and times a phase; a failed download, decrypt or restore ends the run, later ones do not. */
type Timed = <T>(
  name: PhaseName,
  fn: () => Promise<{ value: T; detail: string }>,
) => Promise<T | undefined>;

function phaseTimer(result: DrillResult, logger: Logger): Timed {
  return async (name, fn) => {
    const p = result.phases.find((x) => x.name === name) as Phase;
    const phaseStart = performance.now();
    try {
      const { value, detail } = await logger.group(p.label, fn);
      p.status = 'passed';
      p.detail = detail;
      return value;
    } catch (error) {
      p.status = 'failed';
      p.detail = errorMessage(error);
      if (name === 'checks' || name === 'smoke') return undefined;
      result.error = `${p.label} failed: ${errorMessage(error)}`;
      throw new PhaseFailure(p.detail, { cause: error });
    } finally {
      p.seconds = (performance.now() - phaseStart) / 1000;
    }
  };
}

/** The archive pg_restore reads: a file or folder, or (streamed) its table of contents and a feed. */
interface DrillArchive {
  archivePath: string;
  feed?: ArchiveFeed;
}

/**
 * The phases, timed from the download on. The target opens beside the download and decoding;
 * both settle before the restore (or before a failure of either ends the run), so that cleanup
 * finds a scratch server that was starting. A target that cannot be opened fails the run as it
 * did before the download.
 */
async function runPhases(run: FetchRun, opening: Promise<OpenedTarget>): Promise<void> {
  const timed = phaseTimer(run.result, run.deps.logger);
  const started = performance.now();
  const fetching = run.plan.name === 'stream' ? streamPhases(run, timed) : diskPhases(run, timed);
  const [fetched, opened] = await Promise.allSettled([fetching, opening]);
  if (opened.status === 'rejected') throw opened.reason;
  try {
    if (fetched.status === 'rejected') throw fetched.reason;
    const phaseRun: PhaseRun = { ...run, ...opened.value };
    const restored = (await restorePhase(phaseRun, timed, fetched.value)) as Restored;
    await checksPhase(phaseRun, timed, restored);
    if (run.options.smokeCommand) await smokePhase(phaseRun, timed, run.options.smokeCommand);
    run.result.rtoSeconds = (performance.now() - started) / 1000;
  } catch (error) {
    if (!(error instanceof PhaseFailure)) throw error;
  }
}

/** The disk plan: the object downloaded, then decoded into an archive on disk. */
async function diskPhases(run: FetchRun, timed: Timed): Promise<DrillArchive> {
  const { deps, result, workDir } = run;
  const { manifest } = result;
  const downloaded = await timed('download', async () => {
    const downloadStart = performance.now();
    const d = await downloadObject({
      storage: deps.storage,
      manifest,
      dir: workDir,
      logger: deps.logger,
      progressIntervalMs: deps.progressIntervalMs,
    });
    const seconds = (performance.now() - downloadStart) / 1000;
    return {
      value: d,
      detail: `${formatBytes(d.bytes)} at ${rate(d.bytes, seconds)}; size and SHA-256 match the manifest`,
    };
  });
  return (await timed('decrypt', async () => {
    const a = await decodeFile({
      manifest,
      file: downloaded!.path,
      decryption: run.options.decryption,
      tools: { zstdPath: deps.zstdPath },
      dir: workDir,
      logger: deps.logger,
      progressIntervalMs: deps.progressIntervalMs,
    });
    const steps = decodeSteps(manifest);
    return {
      value: { archivePath: a.archivePath },
      detail: steps.length
        ? `${steps.join(' → ')} into a ${manifest.format}-format archive`
        : 'nothing to decrypt or decompress',
    };
  })) as DrillArchive;
}

/**
 * The streamed plan. A custom-format archive: only its table of contents is read first (the
 * preflight needs it); the object streams into pg_restore in the restore phase, checked as it
 * goes. A directory-format archive: the object streams into tar, whose per-table files stay as
 * pg_dump compressed them, with no downloaded object beside them.
 */
async function streamPhases(run: FetchRun, timed: Timed): Promise<DrillArchive> {
  const { deps, result, options, workDir } = run;
  const { manifest } = result;
  const source = {
    storage: deps.storage,
    manifest,
    decryption: options.decryption,
    tools: { zstdPath: deps.zstdPath },
    logger: deps.logger,
    progressIntervalMs: deps.progressIntervalMs,
  };
  const steps = decodeSteps(manifest);
  if (manifest.format === 'directory') {
    const archive = await timed('download', async () => {
      const a = await fetchArchive({ ...source, dir: workDir });
      return {
        value: { archivePath: a.archivePath },
        detail: `${formatBytes(a.bytes)} streamed into the archive folder; size and SHA-256 match the manifest`,
      };
    });
    await timed('decrypt', () =>
      Promise.resolve({ value: undefined, detail: `${steps.join(' → ')} while downloading` }),
    );
    return archive as DrillArchive;
  }
  const head = await timed('download', async () => {
    const h = await fetchArchiveHead({ ...source, dir: workDir });
    return {
      value: h,
      detail: `the archive's table of contents (${formatBytes(h.bytes)}); the object streams into pg_restore in the restore phase, its size and SHA-256 checked as it goes`,
    };
  });
  await timed('decrypt', () =>
    Promise.resolve({
      value: undefined,
      detail: steps.length
        ? `${steps.join(' → ')} as the object streams into pg_restore`
        : 'nothing to decrypt or decompress',
    }),
  );
  return { archivePath: head!.archivePath, feed: archiveFeed(source) };
}

interface Restored {
  listing: ArchiveListing;
  outcome: RestoreOutcome;
}

async function restorePhase(
  run: PhaseRun,
  timed: Timed,
  archive: DrillArchive,
): Promise<Restored | undefined> {
  const { deps, result, options, target, tools, workDir } = run;
  const { logger } = deps;
  const restore = result.mode === 'restore' ? (options as RestoreOptions) : undefined;
  const restored = await timed('restore', async () => {
    const listing = await listArchive(tools.pgRestore, archive.archivePath);
    const job: RestoreJob = {
      target,
      manifest: result.manifest,
      tools,
      archivePath: archive.archivePath,
      feed: archive.feed,
      listing,
      workDir,
      jobs: options.jobs,
      into: restore ? 'replace' : 'new',
      createdRoles: run.createdRoles,
      globals: () =>
        fetchGlobals({
          storage: deps.storage,
          manifest: result.manifest,
          decryption: options.decryption,
          dir: workDir,
        }),
      installExtensions: deps.installExtensions,
      beforeReplace: restore ? (c) => endOtherSessions(c, target, restore, logger) : undefined,
      onReplaced: () => {
        result.targetState = 'restored';
      },
      env: deps.env,
      logger,
    };
    const outcome = await withClient(target, async (c) => {
      const prepared = await prepareRestore(job, c);
      if (restore && prepared.ownershipNote) result.warnings.push(prepared.ownershipNote);
      logger.info(`Preflight: ${prepared.detail}`);
      return performRestore(job, c, prepared);
    });
    result.restorePlan = await planReport(run);
    logger.info(`Restore plan: ${describePlanReport(result.restorePlan)}`);
    return {
      value: { listing, outcome },
      detail: `${describePlanReport(result.restorePlan)}; ${outcome.detail}`,
    };
  });
  await rm(archive.archivePath, { recursive: true, force: true });
  return restored;
}

/** The plan, why, and the disk it used at its peak against the restored database's size. */
async function planReport(run: PhaseRun): Promise<RestorePlanReport> {
  const restoredBytes = await withClient(run.target, (c) =>
    c
      .query<{ bytes: string }>('SELECT pg_database_size(current_database())::text AS bytes')
      .then((r) => Number(r.rows[0].bytes)),
  );
  return {
    name: run.plan.name,
    why: run.plan.why,
    peakDiskBytes: await run.peakDisk.peak(),
    restoredBytes,
  };
}

async function checksPhase(run: PhaseRun, timed: Timed, restored: Restored): Promise<void> {
  const { result, options, target } = run;
  await timed('checks', async () => {
    const checked = await withClient(target, (client) =>
      checkRestored({
        client,
        manifest: result.manifest,
        listing: restored.listing,
        checks: options.checks,
        notApplied: restored.outcome.notApplied,
        notRestored: restored.outcome.route?.notRestored,
        unvalidated: restored.outcome.route?.unvalidated,
      }),
    );
    result.comparison = checked.comparison;
    const checks = checked.checks;
    result.checks.push(...checks);
    const failed = checks.filter((c) => c.status === 'failed');
    if (failed.length > 0) {
      throw new Error(
        `the restore completed; ${failed.length} of ${checks.length} checks failed: ${failed.map((c) => c.name).join(', ')}`,
      );
    }
    return { value: undefined, detail: `${checks.length} checks passed` };
  });
}

async function smokePhase(run: PhaseRun, timed: Timed, command: string): Promise<void> {
  const { deps, target } = run;
  await timed('smoke', async () => {
    const smoke = await runSmokeCommand({
      command,
      cwd: deps.workspace,
      env: deps.env,
      connection: target.connection,
      database: target.database,
      logger: deps.logger,
    });
    if (smoke.exitCode !== 0) {
      throw new Error(
        `the smoke command ${smoke.signal ? `was killed by ${smoke.signal}` : `exited with code ${smoke.exitCode}`}; its output is in the log group '${PHASE_LABELS.smoke}'`,
      );
    }
    return { value: undefined, detail: 'exited with code 0' };
  });
}

async function finish(
  result: DrillResult,
  options: DrillOptions,
  deps: DrillDeps,
  history: VerificationRecord[],
): Promise<DrillResult> {
  const { logger } = deps;
  result.history = history;
  if (result.rtoSeconds !== undefined) {
    result.checks.push(
      targetCheck('Recovery time (RTO)', result.rtoSeconds, options.rtoTargetSeconds, 'rto-target'),
    );
  } else {
    result.checks.push({
      name: 'Recovery time (RTO)',
      status: 'failed',
      detail: `not recovered: ${result.error ?? 'the drill stopped'}`,
    });
  }
  result.checks.push(
    targetCheck('Backup age (RPO)', result.rpoSeconds, options.rpoTargetSeconds, 'rpo-target'),
  );
  result.status =
    result.error ||
    result.phases.some((p) => p.status === 'failed') ||
    result.checks.some((c) => c.status === 'failed')
      ? 'failed'
      : 'passed';
  result.finishedAt = deps.clock.now();

  const timings: Record<string, number> = {};
  for (const p of result.phases) if (p.seconds !== undefined) timings[p.name] = round(p.seconds);
  const record: VerificationRecord = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    backupId: result.manifest.id,
    name: result.name,
    type: result.mode,
    status: result.status,
    startedAt: result.startedAt.toISOString(),
    finishedAt: result.finishedAt.toISOString(),
    checks: [
      ...result.phases
        .filter((p) => p.status === 'failed')
        .map((p) => ({ name: p.label, status: p.status, detail: p.detail })),
      ...result.checks.map((c) => ({ name: c.name, status: c.status, detail: c.detail })),
    ],
    timings,
    rtoSeconds: result.rtoSeconds === undefined ? undefined : round(result.rtoSeconds),
    rpoSeconds: round(result.rpoSeconds),
    rtoTargetSeconds: options.rtoTargetSeconds,
    rpoTargetSeconds: options.rpoTargetSeconds,
    git: options.git,
  };
  try {
    result.recordKey = await appendVerificationRecord(deps.storage, record);
    result.record = record;
  } catch (error) {
    logger.warning(
      `Could not store the drill record under verifications/ (${errorMessage(error)}); the trend will miss this run.`,
    );
  }
  if (result.targetState) {
    result.targetStateText = describeTargetState(result);
    logger.info(result.targetStateText);
  }
  const rto = result.rtoSeconds === undefined ? 'not reached' : formatDuration(result.rtoSeconds);
  logger.info(
    `${result.mode === 'restore' ? 'Restore' : 'Drill'} ${result.status}: RTO ${rto}, RPO ${formatDuration(result.rpoSeconds)}`,
  );
  return result;
}

/** What a real restore left the target as, in one sentence, with the way back when there is one. */
function describeTargetState(result: DrillResult): string {
  const undo = result.safetyBackup
    ? ` To undo, restore the safety backup: mode: restore with backup-id: ${result.safetyBackup.id} (CLI: pg-backup restore --backup-id ${result.safetyBackup.id}), with the same target-url and confirm${result.undoRehearsal ? ' (rehearsed before the restore)' : ''}.`
    : '';
  if (result.targetState !== 'restored') {
    return `The target is unchanged: the restore committed nothing.${result.safetyBackup ? ` The safety backup ${result.safetyBackup.id} was stored anyway.` : ''}`;
  }
  const failed = result.checks.filter(
    (c) => c.status === 'failed' && !c.name.startsWith('Recovery'),
  );
  return failed.length === 0
    ? `The target is restored from backup ${result.manifest.id}, and every check passed.${undo}`
    : `The target is restored from backup ${result.manifest.id} (the data is the backup's); check(s) failed after the restore: ${failed.map((c) => c.name).join(', ')}.${undo}`;
}

/** A measured time against its target (none set: passes, and says so). */
export function targetCheck(
  name: string,
  seconds: number,
  target: number | undefined,
  input: string,
): CheckResult {
  return {
    name,
    status: target === undefined || seconds <= target ? 'passed' : 'failed',
    detail:
      target === undefined
        ? `${formatDuration(seconds)} (no ${input} set)`
        : `${formatDuration(seconds)} against a target of ${formatDuration(target)}`,
  };
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
