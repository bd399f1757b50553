import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import {
  appendVerificationRecord,
  assertReadable,
  completeBackups,
  listCatalog,
  resolveName,
  selectBackup,
  type CatalogEntry,
} from '../catalog/catalog.js';
import { manifestKey } from '../catalog/keys.js';
import {
  MANIFEST_SCHEMA_VERSION,
  describeCompression,
  describeEncryption,
  dumpObject,
  totalBytes,
  type GitContext,
  type Manifest,
  type VerificationRecord,
} from '../catalog/manifest.js';
import { formatDuration } from '../core/duration.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { formatBytes } from '../core/streams.js';
import { AgeError } from '../crypto/age.js';
import { connect } from '../postgres/connection.js';
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
  logCheck,
  performRestore,
  prepareRestore,
  type RestoreJob,
  type RestoreOutcome,
} from '../restore/pipeline.js';
import { StateCheckNames } from '../restore/source-checks.js';
import {
  IntegrityError,
  archiveFeed,
  checkObject,
  fetchArchive,
  fetchArchiveHead,
  fetchGlobals,
  missingKeyError,
  type ArchiveFeed,
  type Decryption,
  type FetchResult,
} from '../restore/fetch.js';
import {
  PgRestoreError,
  listArchive,
  readArchiveFeed,
  type ArchiveListing,
} from '../restore/pg-restore.js';
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
import { checkCopies } from './copies.js';
import type { Storage } from '../storage/storage.js';

/** The names of the report's lines, in the order the checks run. */
export const CheckNames = {
  Manifest: 'Manifest and checksum',
  Decryption: 'Decryption and decompression',
  Archive: 'Archive readable (pg_restore --list)',
  Preflight: 'Preflight (target, extensions, roles)',
  Restore: 'Restore',
  Tables: 'Tables and row counts',
  Constraints: StateCheckNames.Constraints,
  Sequences: StateCheckNames.Sequences,
  RowSecurity: StateCheckNames.RowSecurity,
  Extensions: StateCheckNames.Extensions,
  LargeObjects: StateCheckNames.LargeObjects,
  Settings: StateCheckNames.Settings,
  Contents: StateCheckNames.Contents,
  UserChecks: 'SQL checks',
  Freshness: 'Freshness (max-age)',
} as const;

export interface VerifyOptions {
  /** Catalog name; default: the only name in the store. */
  name?: string;
  /** The backup to verify; default: the newest complete backup of `name`. */
  backupId?: string;
  /** age identities or passphrase for encrypted backups. */
  decryption?: Decryption;
  /** Restore into a scratch database (true), or check only the stored object (false). */
  restore: boolean;
  /**
   * Where to restore; default: a throwaway cluster this run starts and removes. The database
   * must be empty or not exist yet (it is then created, and dropped afterwards).
   */
  targetUrl?: string;
  /** SQL assertions run on the restored database; each passes when it returns no rows. */
  checks: UserCheck[];
  /** The freshness gate: fail when the newest complete backup of `name` is older (seconds). */
  maxAgeSeconds?: number;
  /** Parallel pg_restore jobs; default 2, as the drill's. */
  jobs?: number;
  /** Git and run context recorded with the verification. */
  git?: GitContext;
  /** Append a verification record under `verifications/` (default true). */
  record?: boolean;
  /** How the archive reaches pg_restore (see RestorePlanName); default `auto`, from the free space. */
  restorePlan?: RestorePlanChoice;
}

export interface VerifyDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
  /** Environment the PostgreSQL tools inherit (PG* variables are replaced by the target's). */
  env: NodeJS.ProcessEnv;
  /**
   * pg_restore and psql of the archive's pg_dump major or newer (older ones cannot read it).
   */
  resolveTools: ToolResolver;
  /**
   * Server binaries of major `minMajor` or newer (the source server's) for the throwaway
   * cluster. Default: the newest installed one.
   */
  findServer?(minMajor: number): Promise<ServerBinaries>;
  /** Absolute path of `zstd`, needed for zstd-compressed backups. */
  zstdPath?: string;
  /** Installs extensions the scratch server lacks; see RestoreJob. */
  installExtensions?: (names: string[], major: number) => Promise<string>;
  /**
   * The work folder: the decoded archive and a scratch server's data directory go there;
   * default: the OS temp folder.
   */
  tmpDir?: string;
  progressIntervalMs?: number;
  /** Other destinations that must hold the same backup (the `copies` check). */
  copies?: Storage[];
}

/** The backup a verification looked at. */
export interface VerifiedBackup {
  id: string;
  kind: string;
  finishedAt: string;
  /** Age at the time of the verification, seconds. */
  ageSeconds: number;
  /** Size of the dump object. */
  bytes: number;
  /** Size of every object of the backup. */
  totalBytes: number;
  format: string;
  compression: string;
  encryption: string;
  sourceVersion: string;
  pgDumpVersion: string;
  /** Where the dump object is, as the store names it. */
  objectLocation: string;
  manifestLocation: string;
}

export interface FreshnessResult {
  maxAgeSeconds: number;
  newestId?: string;
  newestFinishedAt?: string;
  ageSeconds?: number;
  /** Whether the newest complete backup is the one verified. */
  isVerifiedBackup: boolean;
}

export interface VerifyReport {
  status: 'passed' | 'failed';
  name: string;
  /** The store, safe to show. */
  storage: string;
  backup?: VerifiedBackup;
  restore: boolean;
  target?: { description: string; serverVersion: string; scratch: boolean };
  pgRestoreVersion?: string;
  /** Every check in the order it ran; skipped ones say why. */
  checks: CheckResult[];
  /** Row counts of the manifest against the restored database. */
  tables: TableComparison[];
  freshness?: FreshnessResult;
  /** `check: detail` of each failed check. */
  failures: string[];
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  /** Key of the verification record appended, when one was. */
  recordKey?: string;
  /** The restore plan, why, and the disk the run used; once a plan was chosen. */
  restorePlan?: RestorePlanReport;
  warnings: string[];
}

/** The last lines of a long tool error, so a report line stays readable. */
function lastLines(text: string, lines = 12): string {
  const all = text.trim().split('\n');
  return all.length > lines
    ? `${all[0]}\n…\n${all.slice(-(lines - 1)).join('\n')}`
    : all.join('\n');
}

interface Run {
  options: VerifyOptions;
  deps: VerifyDeps;
  name: string;
  checks: CheckResult[];
  warnings: string[];
  /** A check failed because of the setup (an input, a missing tool), not because of the backup. */
  setupProblem: boolean;
  /** Why the checks not run were skipped. */
  skipReason: string;
  tables: TableComparison[];
  target?: RestoreTarget;
  /** A scratch server starting beside the download (see startScratch); sets target once up. */
  starting?: Promise<RestoreTarget>;
  /** Roles this run created on the target (the archive's, or from globals), dropped afterwards. */
  createdRoles: string[];
  pgRestoreVersion?: string;
  workDir: string;
  /** The restore plan and the work folder's disk use, once chosen (before downloading). */
  plan?: { chosen: RestorePlan; peakDisk: PeakDisk; report?: RestorePlanReport };
}

/**
 * The archive the checks read: a decoded file or folder, or (the streamed plan) its table of
 * contents read ahead, and a feed that streams the whole object into pg_restore once.
 */
interface VerifyArchive {
  archivePath: string;
  feed?: ArchiveFeed;
  /** Whether the feed has started streaming the object. */
  streaming?: boolean;
  /** When the feed's object matched its manifest (Date.now()). */
  integrityAt?: number;
}

function record(run: Run, result: CheckResult): void {
  run.checks.push(result);
  logCheck(run.deps.logger, result);
}

function failed(run: Run, name: string, error: unknown, started: number, detail?: string): void {
  if (error instanceof ConfigurationError) run.setupProblem = true;
  record(run, {
    name,
    status: 'failed',
    detail: detail ?? lastLines(errorMessage(error)),
    seconds: (Date.now() - started) / 1000,
  });
}

/**
 * Proves a backup is intact and restores: the object against its manifest (size and SHA-256),
 * decryption, `pg_restore --list`, a restore into a scratch database, the tables and row counts,
 * constraints and sequences, the user's SQL checks, and the freshness gate. A failing step
 * marks the later ones skipped, except the freshness gate, which always runs. Appends a
 * verification record under `verifications/` (never touching the backup's own objects).
 *
 * Failures are report lines, not exceptions (a store that cannot be read fails the first check);
 * only a catalog name that cannot be resolved, or a temp folder that cannot be made, throws.
 */
export async function runVerify(options: VerifyOptions, deps: VerifyDeps): Promise<VerifyReport> {
  const startedAt = deps.clock.now();
  const t0 = Date.now();
  const name = await resolveName(deps.storage, options.name);
  const catalog = await readCatalog(deps.storage, name, options);
  const workDir = await mkdtemp(path.join(deps.tmpDir ?? os.tmpdir(), 'pg-verify-'));
  const run: Run = {
    options,
    deps,
    name,
    checks: [],
    warnings: [],
    setupProblem: false,
    skipReason: '',
    tables: [],
    createdRoles: [],
    workDir,
  };
  const manifestStarted = Date.now();
  const manifest = await findManifest(run, catalog);
  try {
    if (manifest) await checkBackup(run, manifest, manifestStarted);
    if (run.plan) run.plan.report ??= await planReport(run.plan);
  } finally {
    run.plan?.peakDisk.stop();
    await run.starting?.catch(() => undefined);
    if (run.target) await cleanupTarget(run, run.target);
    await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  }
  if (manifest && deps.copies?.length) record(run, await checkCopies(manifest, deps.copies));
  skipNotRun(run, plannedChecks(manifest));
  run.checks = inPlannedOrder(run.checks, plannedChecks(manifest));
  const backupChecks = [...run.checks];
  const freshness =
    options.maxAgeSeconds === undefined
      ? undefined
      : freshnessGate(run, options.maxAgeSeconds, catalog.entries, catalog.error, manifest);
  const finishedAt = deps.clock.now();
  const recordKey = manifest
    ? await recordVerification(run, manifest, backupChecks, { startedAt, finishedAt })
    : undefined;
  return {
    ...reportOf(run, manifest, finishedAt),
    freshness,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: (Date.now() - t0) / 1000,
    recordKey,
    restorePlan: run.plan?.report,
  };
}

/**
 * The checks in the order of the chain (the streamed plan learns the object's checksum only
 * once pg_restore has read it, after the restore): the user's SQL checks where `SQL checks`
 * stands, anything else after the chain, each group in the order it ran.
 */
function inPlannedOrder(checks: CheckResult[], planned: string[]): CheckResult[] {
  const rank = (c: CheckResult): number => {
    const at = planned.indexOf(c.name.startsWith('Check: ') ? CheckNames.UserChecks : c.name);
    return at < 0 ? planned.length : at;
  };
  return [...checks].sort((a, b) => rank(a) - rank(b));
}

/** The plan, why, and the disk used at the peak (against the restored database's size). */
async function planReport(
  plan: NonNullable<Run['plan']>,
  restoredBytes?: number,
): Promise<RestorePlanReport> {
  return {
    name: plan.chosen.name,
    why: plan.chosen.why,
    peakDiskBytes: await plan.peakDisk.peak(),
    restoredBytes,
  };
}

/** The catalog, when the backup is not named or the freshness gate needs it; its error kept. */
async function readCatalog(
  storage: Storage,
  name: string,
  options: VerifyOptions,
): Promise<{ entries?: CatalogEntry[]; error?: unknown }> {
  if (options.backupId && options.maxAgeSeconds === undefined) return {};
  try {
    const entries = await listCatalog(storage, name);
    assertReadable(entries);
    return { entries };
  } catch (error) {
    return { error: error ?? new Error('the catalog could not be read') };
  }
}

/** The manifest of the backup to verify; a failed first check when there is none. */
async function findManifest(
  run: Run,
  catalog: { entries?: CatalogEntry[]; error?: unknown },
): Promise<Manifest | undefined> {
  const { storage, logger } = run.deps;
  const started = Date.now();
  try {
    let manifest: Manifest | undefined;
    if (run.options.backupId) {
      manifest = await selectBackup(storage, run.name, run.options.backupId);
    } else if (catalog.error !== undefined) {
      throw catalog.error;
    } else {
      manifest = newestRegularBackup(catalog.entries ?? []);
      if (!manifest) {
        const incomplete = catalog.entries?.length ?? 0;
        throw new Error(
          `No complete backup of '${run.name}' in ${storage.description}: ` +
            (incomplete > 0
              ? `${incomplete} upload(s) without a manifest, which never completed.`
              : 'there are no backups of that name (check the storage and name inputs).'),
        );
      }
    }
    logger.info(`Verifying backup ${manifest.id} of ${run.name} (${storage.description})`);
    return manifest;
  } catch (error) {
    failed(run, CheckNames.Manifest, error, started);
    run.skipReason = 'there is no backup manifest to check against';
    return undefined;
  }
}

/** The checks a verification of `manifest` runs, in order (the user's SQL checks last). */
function plannedChecks(manifest: Manifest | undefined): string[] {
  return [
    CheckNames.Manifest,
    CheckNames.Decryption,
    CheckNames.Archive,
    CheckNames.Preflight,
    CheckNames.Restore,
    CheckNames.Tables,
    CheckNames.Constraints,
    CheckNames.Sequences,
    ...(manifest?.sourceState
      ? [
          CheckNames.RowSecurity,
          CheckNames.Extensions,
          CheckNames.LargeObjects,
          CheckNames.Settings,
          ...(manifest.sourceState.contents?.length ? [CheckNames.Contents] : []),
        ]
      : []),
    CheckNames.UserChecks,
  ];
}

/** Every planned check that did not run is recorded skipped, with the reason. */
function skipNotRun(run: Run, planned: string[]): void {
  const ran = new Set(run.checks.map((c) => c.name));
  const userChecksRan = run.checks.some((c) => c.name.startsWith('Check: '));
  for (const checkName of planned) {
    if (ran.has(checkName) || (checkName === CheckNames.UserChecks && userChecksRan)) continue;
    record(run, { name: checkName, status: 'skipped', detail: run.skipReason });
  }
}

/** Appends the verification record, unless the setup (not the backup) failed a check. */
async function recordVerification(
  run: Run,
  manifest: Manifest,
  backupChecks: CheckResult[],
  times: { startedAt: Date; finishedAt: Date },
): Promise<string | undefined> {
  const { storage, logger } = run.deps;
  if (run.options.record === false) return undefined;
  if (run.setupProblem) {
    logger.info(
      'No verification record was written: a check failed because of the setup (an input or a missing tool), not because of the backup.',
    );
    return undefined;
  }
  const verification: VerificationRecord = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    backupId: manifest.id,
    name: run.name,
    type: 'verify',
    status: backupChecks.some((c) => c.status === 'failed') ? 'failed' : 'passed',
    startedAt: times.startedAt.toISOString(),
    finishedAt: times.finishedAt.toISOString(),
    checks: backupChecks.map((c) => ({ name: c.name, status: c.status, detail: c.detail })),
    timings: timings(backupChecks),
    git: run.options.git,
  };
  try {
    const key = await appendVerificationRecord(storage, verification);
    logger.info(`Recorded the verification at ${storage.location(key)}`);
    return key;
  } catch (error) {
    const message = `Could not record the verification under ${run.name}/verifications/ (prune will not see it): ${errorMessage(error)}`;
    logger.warning(message);
    run.warnings.push(message);
    return undefined;
  }
}

/** The report of a run, without its times, freshness and record. */
function reportOf(
  run: Run,
  manifest: Manifest | undefined,
  finishedAt: Date,
): Omit<VerifyReport, 'freshness' | 'startedAt' | 'finishedAt' | 'durationSeconds' | 'recordKey'> {
  const { storage } = run.deps;
  const failures = run.checks
    .filter((c) => c.status === 'failed')
    .map((c) => `${c.name}: ${c.detail.split('\n')[0]}`);
  const dump = manifest ? dumpObject(manifest) : undefined;
  return {
    status: failures.length === 0 ? 'passed' : 'failed',
    name: run.name,
    storage: storage.description,
    backup:
      manifest && dump
        ? {
            id: manifest.id,
            kind: manifest.kind,
            finishedAt: manifest.finishedAt,
            ageSeconds: ageSeconds(manifest, finishedAt),
            bytes: dump.bytes,
            totalBytes: totalBytes(manifest),
            format: manifest.format,
            compression: describeCompression(manifest.compression),
            encryption: manifest.encryption ? describeEncryption(manifest.encryption) : 'none',
            sourceVersion: manifest.source.serverVersion,
            pgDumpVersion: manifest.tools.pgDumpVersion,
            objectLocation: storage.location(dump.key),
            manifestLocation: storage.location(manifestKey(run.name, manifest.id)),
          }
        : undefined,
    restore: run.options.restore,
    target: run.target
      ? {
          description: run.target.describe,
          serverVersion: run.target.serverVersion,
          scratch: run.target.scratch !== undefined,
        }
      : undefined,
    pgRestoreVersion: run.pgRestoreVersion,
    checks: run.checks,
    tables: run.tables,
    failures,
    warnings: run.warnings,
  };
}

/**
 * The newest complete backup other than a pre-restore safety backup (a copy of a target taken
 * before a restore replaced it, not of the database the catalog name stands for).
 */
function newestRegularBackup(entries: CatalogEntry[]): Manifest | undefined {
  return completeBackups(entries).find((m) => m.kind !== 'pre-restore');
}

function ageSeconds(manifest: Manifest, now: Date): number {
  return Math.max(0, (now.getTime() - new Date(manifest.finishedAt).getTime()) / 1000);
}

function timings(checks: CheckResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of checks)
    if (c.seconds !== undefined) out[c.name] = Math.round(c.seconds * 10) / 10;
  return out;
}

/** Checks 1 to 7, in order; returns at the first pipeline step that fails. */
async function checkBackup(run: Run, manifest: Manifest, started: number): Promise<void> {
  const noKey = missingKeyError(manifest, run.options.decryption);
  if (noKey) return checkWithoutKey(run, manifest, noKey, started);
  const plan = await planStep(run, manifest);
  if (!plan) return;
  await startScratch(run, manifest);
  // 1 and 2: the object against its manifest, then decryption and decompression, in one pass;
  // streamed, as pg_restore reads the object, after its table of contents was read ahead.
  const archive: VerifyArchive | undefined =
    plan.name === 'stream' && manifest.format === 'custom'
      ? await streamHeadStep(run, manifest, started)
      : await fetchStep(run, manifest, started);
  if (!archive) return;
  // 3: pg_restore reads the archive.
  const listed = await listStep(run, manifest, archive, started);
  if (!listed) return;
  if (!run.options.restore) {
    if (archive.feed && !(await readStreamStep(run, manifest, listed.tools, archive))) return;
    run.skipReason = 'restore is false: only the stored object was checked';
    return;
  }
  // 4 and 5: what the archive needs against the target, then the restore and what pg_dump
  // leaves behind; 6 on: what the restored database holds, against the source.
  let client: pg.Client | undefined;
  try {
    const restored = await restoreStep(run, manifest, listed.tools, listed.listing, archive);
    if (!restored) return;
    client = restored.client;
    await checksStep(run, manifest, listed.listing, restored);
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/** No key for an encrypted backup: the object is still checked against its manifest. */
async function checkWithoutKey(
  run: Run,
  manifest: Manifest,
  noKey: Error,
  started: number,
): Promise<void> {
  if (!(await objectIntact(run, manifest, started))) return;
  failed(run, CheckNames.Decryption, noKey, Date.now());
  run.skipReason = 'the backup could not be decrypted';
}

/**
 * Check 1 by reading the whole object once: when nothing decoded it (no key), or when the
 * streamed plan failed before the object streamed through its checksum. Whether it matched.
 */
async function objectIntact(run: Run, manifest: Manifest, started: number): Promise<boolean> {
  const { storage, logger } = run.deps;
  const entry = dumpObject(manifest);
  return logger.group(`Check ${storage.location(entry.key)}`, async () => {
    try {
      const object = await checkObject(storage, entry);
      record(run, {
        name: CheckNames.Manifest,
        status: 'passed',
        detail: integrityDetail(entry.key, object),
        seconds: (Date.now() - started) / 1000,
      });
      return true;
    } catch (error) {
      failed(run, CheckNames.Manifest, error, started);
      run.skipReason = skipReasonFor(error);
      return false;
    }
  });
}

/**
 * The restore plan, chosen from the work folder's free space before anything is downloaded
 * (see disk.ts): the decoded archive and the restored database, or the restored database alone
 * with the archive streamed into pg_restore. A folder too small for either fails check 2.
 */
async function planStep(run: Run, manifest: Manifest): Promise<RestorePlan | undefined> {
  const { options } = run;
  const plan = await chooseRestorePlan({
    need: workDiskNeed(manifest, {
      downloads: false,
      scratch: options.restore && !options.targetUrl,
    }),
    choice: options.restorePlan ?? 'auto',
    dir: run.workDir,
  }).catch((error: unknown) => {
    failed(run, CheckNames.Decryption, error, Date.now());
    run.skipReason = 'there is not enough disk in the work folder';
    return undefined;
  });
  if (!plan) return undefined;
  run.deps.logger.info(`Restore plan: ${plan.name}: ${plan.why}`);
  run.plan = { chosen: plan, peakDisk: await PeakDisk.start(run.workDir) };
  return plan;
}

/**
 * The streamed plan's first read: the archive's table of contents, decoded from the start of
 * the object (checks 3 and 4 read it). The feed then streams the whole object into pg_restore
 * once, through the SHA-256 and size check (check 1, recorded when it passes) and the decoding.
 */
async function streamHeadStep(
  run: Run,
  manifest: Manifest,
  started: number,
): Promise<VerifyArchive | undefined> {
  const { options, deps } = run;
  const entry = dumpObject(manifest);
  const source = {
    storage: deps.storage,
    manifest,
    decryption: options.decryption,
    tools: { zstdPath: deps.zstdPath },
    logger: deps.logger,
    progressIntervalMs: deps.progressIntervalMs,
  };
  const head = await deps.logger
    .group(`Read the table of contents of ${deps.storage.location(entry.key)}`, () =>
      fetchArchiveHead({ ...source, dir: run.workDir }),
    )
    .catch((error: unknown) => ({ error }));
  if ('error' in head) {
    // Damage can break the decoding first: the whole object says whether it is the backup's.
    if (await objectIntact(run, manifest, started)) {
      failedDecoding(run, manifest, head.error, Date.now());
    }
    return undefined;
  }
  deps.logger.info(
    `Read the archive's table of contents (${formatBytes(head.bytes)}); the object streams into pg_restore next, its size and SHA-256 checked as it goes`,
  );
  const archive: VerifyArchive = { archivePath: head.archivePath, streaming: false };
  const feed = archiveFeed({
    ...source,
    restores: options.restore,
    onIntegrityChecked: (object) => {
      archive.integrityAt = Date.now();
      record(run, {
        name: CheckNames.Manifest,
        status: 'passed',
        detail: `${integrityDetail(entry.key, object)}; checked as the object streamed into pg_restore`,
        seconds: (archive.integrityAt - started) / 1000,
      });
    },
  });
  archive.feed = (start) => {
    archive.streaming = true;
    return feed(start);
  };
  return archive;
}

/**
 * Records what a failed stream into pg_restore says about the backup: an object that does not
 * match its manifest (check 1: what was restored from it must not be trusted), or one that
 * matched and did not decode (check 2). False when the failure is pg_restore's own, or came
 * before the object streamed.
 */
function streamFailed(
  run: Run,
  manifest: Manifest,
  archive: VerifyArchive,
  error: unknown,
  started: number,
): boolean {
  if (!archive.streaming || error instanceof PgRestoreError) return false;
  if (archive.integrityAt === undefined) {
    failed(run, CheckNames.Manifest, error, started);
    run.skipReason = skipReasonFor(error);
  } else {
    failedDecoding(run, manifest, error, archive.integrityAt);
  }
  return true;
}

/** Check 2 failed: the object matched its manifest and did not decrypt or decompress. */
function failedDecoding(run: Run, manifest: Manifest, error: unknown, at: number): void {
  const detail =
    error instanceof AgeError && manifest.encryption
      ? decryptionFailure(error, manifest)
      : undefined;
  failed(run, CheckNames.Decryption, error, at, detail);
  run.skipReason = manifest.encryption
    ? 'the backup could not be decrypted and decompressed'
    : 'the backup could not be decompressed';
}

/**
 * `restore: false` in the streamed plan: pg_restore reads the whole archive as it streams
 * (`--file=/dev/null`), every entry's data included, so checks 1 and 2 cover the whole object.
 */
async function readStreamStep(
  run: Run,
  manifest: Manifest,
  tools: ClientTools,
  archive: VerifyArchive,
): Promise<boolean> {
  const { storage, logger } = run.deps;
  const started = Date.now();
  const feed = archive.feed as ArchiveFeed;
  return logger.group(
    `Stream ${storage.location(dumpObject(manifest).key)} through pg_restore`,
    () =>
      readArchiveFeed(tools.pgRestore, feed, logger).then(
        () => {
          recordStreamDecoded(
            run,
            manifest,
            'pg_restore, which read every entry (--file=/dev/null)',
          );
          return true;
        },
        (error: unknown) => {
          if (!streamFailed(run, manifest, archive, error, started)) {
            failedDecoding(run, manifest, error, started);
          }
          return false;
        },
      ),
  );
}

/** Check 2 of the streamed plan, once pg_restore has read the whole stream. */
function recordStreamDecoded(run: Run, manifest: Manifest, into: string): void {
  record(run, {
    name: CheckNames.Decryption,
    status: 'passed',
    detail: [
      ...decodingWords(run, manifest),
      `the ${manifest.format} archive streamed into ${into}, not written to disk`,
    ].join('; '),
  });
}

/** Checks 1 and 2: the download checked against the manifest, decoded into the archive. */
async function fetchStep(
  run: Run,
  manifest: Manifest,
  started: number,
): Promise<FetchResult | undefined> {
  const { options, deps } = run;
  const { storage, logger } = deps;
  const entry = dumpObject(manifest);
  let fetched: FetchResult | undefined;
  let integrityAt: number | undefined;
  const fetchError = await logger.group(
    `Download and check ${storage.location(entry.key)}`,
    async () => {
      try {
        fetched = await fetchArchive({
          storage,
          manifest,
          decryption: options.decryption,
          tools: { zstdPath: deps.zstdPath },
          dir: run.workDir,
          logger,
          progressIntervalMs: deps.progressIntervalMs,
          onIntegrityChecked: (object) => {
            integrityAt = Date.now();
            record(run, {
              name: CheckNames.Manifest,
              status: 'passed',
              detail: integrityDetail(entry.key, object),
              seconds: (integrityAt - started) / 1000,
            });
          },
        });
        return undefined;
      } catch (error) {
        return error;
      }
    },
  );
  if (integrityAt === undefined) {
    failed(run, CheckNames.Manifest, fetchError, started);
    run.skipReason = skipReasonFor(fetchError);
    return undefined;
  }
  if (fetchError !== undefined || !fetched) {
    failedDecoding(run, manifest, fetchError, integrityAt);
    return undefined;
  }
  await recordDecoded(run, manifest, fetched, integrityAt);
  return fetched;
}

async function recordDecoded(
  run: Run,
  manifest: Manifest,
  fetched: FetchResult,
  integrityAt: number,
): Promise<void> {
  const archiveBytes = await archiveSize(fetched);
  record(run, {
    name: CheckNames.Decryption,
    status: 'passed',
    detail: [
      ...decodingWords(run, manifest),
      `${manifest.format} archive of ${formatBytes(archiveBytes)}`,
    ].join('; '),
    seconds: (Date.now() - integrityAt) / 1000,
  });
}

/** `decrypted with the given age identity`, `decompressed zstd`: what check 2 undid. */
function decodingWords(run: Run, manifest: Manifest): string[] {
  const decryption = run.options.decryption;
  return [
    manifest.encryption
      ? `decrypted with the given age ${decryption?.identities.length ? 'identity' : 'passphrase'}`
      : 'not encrypted',
    manifest.compression.method === 'zstd' || manifest.compression.method === 'gzip'
      ? `decompressed ${manifest.compression.method}`
      : `compression: ${describeCompression(manifest.compression)}`,
  ];
}

/**
 * Check 3: pg_restore lists the archive's table of contents (streamed: the one read ahead; the
 * whole archive is read by pg_restore from the stream afterwards).
 */
async function listStep(
  run: Run,
  manifest: Manifest,
  archive: VerifyArchive,
  started: number,
): Promise<{ tools: ClientTools; listing: ArchiveListing } | undefined> {
  const listStarted = Date.now();
  const listed = await listWithTools(run, manifest, archive.archivePath).catch(
    (error: unknown) => ({ error }),
  );
  if ('error' in listed) {
    // Streamed, the object was not checked yet: damage is named as such.
    if (archive.feed && !(await objectIntact(run, manifest, started))) return undefined;
    failed(run, CheckNames.Archive, listed.error, listStarted);
    run.skipReason = 'pg_restore could not read the archive';
    return undefined;
  }
  record(run, {
    name: CheckNames.Archive,
    status: 'passed',
    detail:
      `pg_restore ${listed.tools.version} lists ${listed.listing.entries} entries (${listed.listing.tableData} with table data)` +
      (archive.feed
        ? ' from the table of contents read ahead of the stream; pg_restore then reads the whole archive as it streams'
        : ''),
    seconds: (Date.now() - listStarted) / 1000,
  });
  return listed;
}

/** Checks 6 on: the restored database against the source, then the user's SQL checks. */
async function checksStep(
  run: Run,
  manifest: Manifest,
  listing: ArchiveListing,
  restored: { client: pg.Client; outcome: RestoreOutcome },
): Promise<void> {
  const { options, deps } = run;
  await deps.logger.group('Checks', async () => {
    const checkStarted = Date.now();
    try {
      const result = await checkRestored({
        client: restored.client,
        manifest,
        listing,
        checks: options.checks,
        notApplied: restored.outcome.notApplied,
        notRestored: restored.outcome.route?.notRestored,
        unvalidated: restored.outcome.route?.unvalidated,
      });
      run.tables = result.comparison;
      for (const check of result.checks) record(run, check);
    } catch (error) {
      failed(run, CheckNames.Tables, error, checkStarted);
    }
    if (options.checks.length === 0) {
      record(run, {
        name: CheckNames.UserChecks,
        status: 'skipped',
        detail: 'none given (the checks input)',
      });
    }
  });
}

/**
 * The preflight and the restore (restore/pipeline.ts, as the drill and the real restore run
 * them), worded as two check lines. Returns the connected client, or undefined after recording
 * the failure.
 */
async function restoreStep(
  run: Run,
  manifest: Manifest,
  tools: ClientTools,
  listing: ArchiveListing,
  archive: VerifyArchive,
): Promise<{ client: pg.Client; outcome: RestoreOutcome } | undefined> {
  const { options, deps } = run;
  const { storage, logger } = deps;
  const preflightStarted = Date.now();
  let restoreStarted = Date.now();
  let stage: 'target' | 'preflight' | 'restore' = 'target';
  return logger.group('Restore', async () => {
    let client: pg.Client | undefined;
    try {
      const source = sourceMajor(manifest);
      const target = await (run.starting ?? prepareTarget(run, source)).catch((error: unknown) => {
        // No place to restore into says nothing about the backup.
        run.setupProblem = true;
        throw error;
      });
      run.target = target;
      stage = 'preflight';
      if (target.serverMajor < source) {
        const message = `The target server runs PostgreSQL ${target.serverVersion}, older than the source (${manifest.source.serverVersion}); the restore may fail on features the older server lacks.`;
        logger.warning(message);
        run.warnings.push(message);
      }
      client = await connect(target.connection, target.database);
      const job: RestoreJob = {
        target,
        manifest,
        tools,
        archivePath: archive.archivePath,
        feed: archive.feed,
        listing,
        workDir: run.workDir,
        jobs: options.jobs ?? 2,
        into: 'new',
        createdRoles: run.createdRoles,
        globals: () =>
          fetchGlobals({ storage, manifest, decryption: options.decryption, dir: run.workDir }),
        installExtensions: deps.installExtensions,
        env: deps.env,
        logger,
      };
      const prepared = await prepareRestore(job, client);
      record(run, {
        name: CheckNames.Preflight,
        status: 'passed',
        detail: prepared.detail,
        seconds: (Date.now() - preflightStarted) / 1000,
      });
      stage = 'restore';
      restoreStarted = Date.now();
      const outcome = await performRestore(job, client, prepared);
      const seconds = (Date.now() - restoreStarted) / 1000;
      if (archive.feed) recordStreamDecoded(run, manifest, 'pg_restore, which restored it');
      const plan = await restoredPlan(run, client);
      record(run, {
        name: CheckNames.Restore,
        status: 'passed',
        detail:
          `restored into ${target.describe}${target.scratch ? '' : ` (PostgreSQL ${target.serverVersion})`} ` +
          `in ${formatDuration(seconds)}: ${plan ? `${plan}; ` : ''}${outcome.detail}`,
        seconds,
      });
      return { client, outcome };
    } catch (error) {
      await client?.end().catch(() => undefined);
      if (stage !== 'restore') {
        failed(run, CheckNames.Preflight, error, preflightStarted);
        run.skipReason =
          stage === 'target'
            ? 'there is no target to restore into'
            : 'the target lacks what the archive needs';
      } else {
        restoreFailed(run, manifest, archive, error, restoreStarted);
      }
      return undefined;
    }
  });
}

/**
 * Check 5 failed. Streamed, the object may be what failed: one that does not match its
 * manifest is found after pg_restore loaded what it read, so the restore fails too, and what
 * it restored must not be trusted (the database it went into is removed either way).
 */
function restoreFailed(
  run: Run,
  manifest: Manifest,
  archive: VerifyArchive,
  error: unknown,
  started: number,
): void {
  if (!streamFailed(run, manifest, archive, error, started)) {
    failed(run, CheckNames.Restore, error, started);
    run.skipReason = 'pg_restore failed';
  } else if (archive.integrityAt === undefined) {
    failed(
      run,
      CheckNames.Restore,
      new Error(
        'pg_restore read an object that does not match its manifest (see the first check): the restored data must not be trusted; the database it went into is discarded.',
      ),
      started,
    );
  }
}

/** The plan's line of the restore check, with the disk used and the restored database's size. */
async function restoredPlan(run: Run, client: pg.Client): Promise<string | undefined> {
  if (!run.plan) return undefined;
  const size = await client.query<{ bytes: string }>(
    'SELECT pg_database_size(current_database())::text AS bytes',
  );
  run.plan.report = await planReport(run.plan, Number(size.rows[0].bytes));
  run.deps.logger.info(`Restore plan: ${describePlanReport(run.plan.report)}`);
  return describePlanReport(run.plan.report);
}

/** Removes the scratch server or the database the run created, then the roles it created. */
async function cleanupTarget(run: Run, target: RestoreTarget): Promise<void> {
  const { logger } = run.deps;
  try {
    await target.cleanup();
    if (!target.scratch) {
      const left = await dropRoles(target, run.createdRoles);
      if (left.length > 0) {
        const message = `Could not drop the role(s) this verification created on ${target.describe}: ${left.join(', ')}`;
        logger.warning(message);
        run.warnings.push(message);
      }
    }
  } catch (error) {
    logger.warning(`Could not clean up ${target.describe}: ${errorMessage(error)}`);
  }
}

/**
 * A restoring run without target-url starts its scratch server beside the download, so that the
 * server's start does not add to the run. Its binaries are found first (which may install them
 * with apt, never beside the client tools' install); a failure of either is the restore step's
 * to report, after the object's own checks, as it is without the early start.
 */
async function startScratch(run: Run, manifest: Manifest): Promise<void> {
  if (!run.options.restore || run.options.targetUrl) return;
  const { deps } = run;
  const binaries = findScratchServer(sourceMajor(manifest), deps.findServer, deps.logger);
  await binaries.catch(() => undefined);
  run.starting = binaries
    .then((server) => scratchTarget({ server, logger: deps.logger, parentDir: run.workDir }))
    .then((target) => {
      run.target = target;
      return target;
    });
  run.starting.catch(() => undefined);
}

function prepareTarget(run: Run, sourceMajor: number): Promise<RestoreTarget> {
  return openTarget({
    targetUrl: run.options.targetUrl,
    minMajor: sourceMajor,
    findServer: run.deps.findServer,
    workDir: run.workDir,
    logger: run.deps.logger,
  });
}

async function listWithTools(
  run: Run,
  manifest: Manifest,
  archivePath: string,
): Promise<{ tools: ClientTools; listing: ArchiveListing }> {
  const pgDumpMajor = majorOf(manifest.tools.pgDumpVersion, sourceMajor(manifest));
  const tools = await run.deps.resolveTools({
    major: pgDumpMajor,
    version: manifest.tools.pgDumpVersion,
  });
  run.pgRestoreVersion = tools.version;
  return { tools, listing: await listArchive(tools.pgRestore, archivePath) };
}

function sourceMajor(manifest: Manifest): number {
  return Math.floor(manifest.source.serverVersionNum / 10000);
}

/** The decoded archive's size: the file, or the files of a directory-format archive. */
async function archiveSize(fetched: FetchResult): Promise<number> {
  if (fetched.format === 'custom') return (await stat(fetched.archivePath)).size;
  const files = await readdir(fetched.archivePath);
  const sizes = await Promise.all(files.map((f) => stat(path.join(fetched.archivePath, f))));
  return sizes.reduce((sum, st) => sum + st.size, 0);
}

function integrityDetail(key: string, object: { bytes: number; sha256: string }): string {
  return `the manifest parses; ${path.posix.basename(key)} is ${formatBytes(object.bytes)} with SHA-256 ${object.sha256.slice(0, 16)}…, as the manifest records`;
}

function skipReasonFor(error: unknown): string {
  return error instanceof IntegrityError
    ? 'the stored object does not match its manifest'
    : 'the stored object could not be read';
}

function decryptionFailure(error: AgeError, manifest: Manifest): string {
  const e = manifest.encryption;
  const to = e
    ? [
        ...(e.recipients.length ? [`recipients ${e.recipients.join(', ')}`] : []),
        ...(e.passphrase ? ['a passphrase'] : []),
      ].join(' and ')
    : '';
  return (
    `Decryption failed: ${error.message}. The backup is encrypted to ${to}; ` +
    `encryption-identity must hold the secret key (AGE-SECRET-KEY-1...) of one of these recipients` +
    (e?.passphrase ? ', or encryption-passphrase the passphrase.' : '.')
  );
}

function freshnessGate(
  run: Run,
  maxAgeSeconds: number,
  entries: CatalogEntry[] | undefined,
  catalogError: unknown,
  verified: Manifest | undefined,
): FreshnessResult {
  const { storage, clock } = run.deps;
  const started = Date.now();
  const result: FreshnessResult = { maxAgeSeconds, isVerifiedBackup: false };
  if (catalogError !== undefined || !entries) {
    failed(run, CheckNames.Freshness, catalogError, started);
    return result;
  }
  const newest = newestRegularBackup(entries);
  const limit = formatDuration(maxAgeSeconds);
  if (!newest) {
    record(run, {
      name: CheckNames.Freshness,
      status: 'failed',
      detail: `no complete backup of '${run.name}' in ${storage.description}, so none is within max-age ${limit}`,
      seconds: (Date.now() - started) / 1000,
    });
    return result;
  }
  const age = ageSeconds(newest, clock.now());
  result.newestId = newest.id;
  result.newestFinishedAt = newest.finishedAt;
  result.ageSeconds = age;
  result.isVerifiedBackup = verified?.id === newest.id;
  const which = result.isVerifiedBackup
    ? ' (the backup verified here)'
    : verified
      ? ` (not the backup verified here, ${verified.id})`
      : '';
  const fresh = age <= maxAgeSeconds;
  record(run, {
    name: CheckNames.Freshness,
    status: fresh ? 'passed' : 'failed',
    detail: fresh
      ? `the newest complete backup, ${newest.id}${which}, finished ${formatDuration(age)} ago, within max-age ${limit}`
      : `the newest complete backup, ${newest.id}${which}, finished ${formatDuration(age)} ago (${newest.finishedAt}), older than max-age ${limit}: no backup has completed since`,
    seconds: (Date.now() - started) / 1000,
  });
  return result;
}
