/**
 * Verification records of file backups: what verify and the drill found, appended inside the
 * backup's folder (`<name>/files/<id>/verifications/<time>.json`) in the database verifications'
 * shape, so prune reads the last one of each backup and never deletes the newest verified.
 */
import path from 'node:path';
import { fileVerificationKey, fileVerificationsPrefix } from '../catalog/keys.js';
import { MANIFEST_SCHEMA_VERSION, type VerificationRecord } from '../catalog/manifest.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Storage } from '../storage/storage.js';
import type { CheckResult } from '../restore/checks.js';
import type { FileBackupFolder } from './catalog.js';
import type { FileManifest } from './manifest.js';

/** The record of one verify or drill of a file backup, in the database verifications' shape. */
export function fileRunRecord(
  type: 'verify' | 'drill',
  manifest: FileManifest,
  run: { status: 'passed' | 'failed'; checks: CheckResult[]; startedAt: Date; finishedAt: Date },
): VerificationRecord {
  return {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    backupId: manifest.id,
    name: manifest.name,
    type,
    status: run.status,
    startedAt: run.startedAt.toISOString(),
    finishedAt: run.finishedAt.toISOString(),
    checks: run.checks.map((c) => ({ name: c.name, status: c.status, detail: c.detail })),
  };
}

/** Appends a record; a failure to store it is a warning, never the run's result. */
export async function appendFileVerification(
  storage: Storage,
  record: VerificationRecord,
  logger: Logger,
): Promise<string | undefined> {
  const key = fileVerificationKey(record.name, record.backupId, new Date(record.finishedAt));
  try {
    await storage.putBytes(key, `${JSON.stringify(record, null, 2)}\n`, { ifNoneMatch: true });
    return key;
  } catch (error) {
    logger.warning(
      `Could not store the ${record.type} record of file backup ${record.backupId} (${errorMessage(error)}); prune will not count this run.`,
    );
    return undefined;
  }
}

/** The status of the newest verification record of a backup folder, when it has one. */
export async function lastFileVerification(
  storage: Storage,
  name: string,
  folder: FileBackupFolder,
): Promise<'passed' | 'failed' | undefined> {
  const prefix = fileVerificationsPrefix(name, folder.id);
  const newest = folder.objects
    .map((o) => o.key)
    .filter((key) => key.startsWith(prefix) && key.endsWith('.json'))
    .sort((a, b) => path.posix.basename(a).localeCompare(path.posix.basename(b)))
    .at(-1);
  if (newest === undefined) return undefined;
  const data = await storage.getBytes(newest);
  if (!data) return undefined;
  try {
    const status = (JSON.parse(data.toString()) as VerificationRecord).status;
    return status === 'passed' || status === 'failed' ? status : undefined;
  } catch {
    return undefined;
  }
}
