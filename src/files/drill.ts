/**
 * The restore drill of file backups: a point in time restored into an empty bucket/prefix or
 * folder (a scratch folder under the work folder when none is given), what it holds compared
 * with the manifest, the recovery time (RTO) and the age of the newest file backup (RPO)
 * measured against their targets, the result recorded beside the backup, and what the drill
 * wrote removed again: the target is as empty afterwards as it had to be before.
 */
import type { GitContext } from '../catalog/manifest.js';
import { targetCheck } from '../drill/drill.js';
import { errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import type { CheckResult } from '../restore/checks.js';
import type { Storage } from '../storage/storage.js';
import { completeFileBackups, listFileBackups, selectFileBackup } from './catalog.js';
import type { FileManifest } from './manifest.js';
import { appendFileVerification, fileRunRecord } from './records.js';
import { requireEmptyTarget } from './restore.js';
import { inScratchFolder, restoreAndCompare, type ComparedRestore } from './verify.js';

export interface FileDrillOptions {
  name: string;
  /** A backup id, or `latest`. */
  backupId: string;
  identities: string[];
  passphrase?: string;
  /** Fail when the restore takes longer (seconds). */
  rtoTargetSeconds?: number;
  /** Fail when the newest file backup is older at the start of the drill (seconds). */
  rpoTargetSeconds?: number;
  git?: GitContext;
}

export interface FileDrillDeps {
  storage: Storage;
  /** Where the files go; absent: a scratch folder under `workDir`. */
  target?: Storage;
  logger: Logger;
  clock: Clock;
  zstdPath: string;
  workDir?: string;
}

export interface FileDrillResult {
  manifest: FileManifest;
  status: 'passed' | 'failed';
  checks: CheckResult[];
  /** Where the drill restored to. */
  target: string;
  startedAt: Date;
  /** Restore start to every file written and checked; absent when the restore failed. */
  rtoSeconds?: number;
  /** Age of the newest complete file backup at the start of the drill. */
  rpoSeconds: number;
  rtoTargetSeconds?: number;
  rpoTargetSeconds?: number;
  files?: number;
  bytes?: number;
  recordKey?: string;
}

export const RTO_CHECK = 'Recovery time (RTO)';
export const RPO_CHECK = 'Backup age (RPO)';

export async function runFileDrill(
  options: FileDrillOptions,
  deps: FileDrillDeps,
): Promise<FileDrillResult> {
  const startedAt = deps.clock.now();
  const { chosen, newest } = await pointInTime(deps.storage, options);
  const rpoSeconds = Math.max(0, (startedAt.getTime() - Date.parse(newest.startedAt)) / 1000);
  deps.logger.info(
    `Drilling file backup ${chosen.id} of ${options.name}; the newest file backup is ${newest.id}.`,
  );
  const { restored, target } = await restoreIntoTarget(chosen, options, deps);
  const rtoSeconds = restored.result?.seconds;
  const checks = [
    restored.check,
    rtoSeconds === undefined
      ? { name: RTO_CHECK, status: 'failed' as const, detail: 'not recovered' }
      : targetCheck(RTO_CHECK, rtoSeconds, options.rtoTargetSeconds, 'rto-target'),
    targetCheck(RPO_CHECK, rpoSeconds, options.rpoTargetSeconds, 'rpo-target'),
  ];
  const status = checks.every((c) => c.status !== 'failed') ? 'passed' : 'failed';
  const record = {
    ...fileRunRecord('drill', chosen, { status, checks, startedAt, finishedAt: deps.clock.now() }),
    ...(rtoSeconds === undefined ? {} : { rtoSeconds, timings: { restore: rtoSeconds } }),
    rpoSeconds,
    rtoTargetSeconds: options.rtoTargetSeconds,
    rpoTargetSeconds: options.rpoTargetSeconds,
    git: options.git,
  };
  return {
    manifest: chosen,
    status,
    checks,
    target,
    startedAt,
    rtoSeconds,
    rpoSeconds,
    rtoTargetSeconds: options.rtoTargetSeconds,
    rpoTargetSeconds: options.rpoTargetSeconds,
    files: restored.result?.files,
    bytes: restored.result?.bytes,
    recordKey: await appendFileVerification(deps.storage, record, deps.logger),
  };
}

/** The backup to drill and the newest complete one (whose age is the RPO). */
async function pointInTime(
  storage: Storage,
  options: FileDrillOptions,
): Promise<{ chosen: FileManifest; newest: FileManifest }> {
  const chosen = await selectFileBackup(storage, options.name, options.backupId);
  const newest = completeFileBackups(await listFileBackups(storage, options.name))[0] ?? chosen;
  return { chosen, newest };
}

/** Restores and compares, then removes what the drill wrote. */
async function restoreIntoTarget(
  manifest: FileManifest,
  options: FileDrillOptions,
  deps: FileDrillDeps,
): Promise<{ restored: ComparedRestore; target: string }> {
  const run = (target: Storage) => restoreAndCompare(manifest, options, deps, target);
  if (deps.target === undefined) {
    return inScratchFolder(deps, async (target) => ({
      restored: await run(target),
      target: `a scratch folder under ${deps.workDir ?? 'the temp folder'}`,
    }));
  }
  const target = deps.target;
  // Checked here, before anything is written: only then is everything the manifest names in
  // the target afterwards the drill's own to remove.
  await requireEmptyTarget(target);
  try {
    return { restored: await run(target), target: target.description };
  } finally {
    await removeRestored(manifest, target, deps.logger);
  }
}

async function removeRestored(
  manifest: FileManifest,
  target: Storage,
  logger: Logger,
): Promise<void> {
  const keys = new Set(manifest.files.map((f) => f.key));
  const written: string[] = [];
  try {
    for await (const object of target.list('')) if (keys.has(object.key)) written.push(object.key);
    if (written.length > 0) await target.delete(written);
    logger.info(
      `Removed the ${written.length} file(s) the drill restored into ${target.description}.`,
    );
  } catch (error) {
    logger.warning(
      `Could not remove the files the drill restored into ${target.description}: ${errorMessage(error)}. Empty it before the next drill.`,
    );
  }
}
