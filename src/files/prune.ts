/**
 * Retention for file backups. The policy (catalog/retention.ts) decides which backups are kept,
 * as for database backups; what is deleted then follows the references: a backup that goes
 * loses its manifest, but its archive stays as long as a kept backup still refers to it. The
 * newest backup whose last verify or drill passed is kept whatever the policy says.
 */
import { fileManifestKey } from '../catalog/keys.js';
import {
  planRetention,
  type CatalogBackup,
  type MaxDelete,
  type RetentionPlan,
  type RetentionPolicy,
} from '../catalog/retention.js';
import { mapLimit } from '../catalog/catalog.js';
import type { Clock, Logger } from '../core/logger.js';
import type { Storage } from '../storage/storage.js';
import { completeFileBackups, listFileBackups, type FileBackupFolder } from './catalog.js';
import { filesBytes, type FileManifest } from './manifest.js';
import { lastFileVerification } from './records.js';

export interface FilePruneOptions {
  name: string;
  policy: RetentionPolicy;
  /** Folders without a manifest and not referenced, older than this, are removed; never when absent. */
  deleteIncompleteAfterSeconds?: number;
  maxDelete?: MaxDelete;
  dryRun: boolean;
}

export interface FilePruneDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
}

export interface FilePruneReport {
  plan: RetentionPlan;
  /** Archive keys kept for a kept backup although the backup that wrote them is deleted. */
  keptForReferences: string[];
  /** Every key deleted (or that would be, in a dry run), manifests first. */
  deletedKeys: string[];
  /** Keys the store refused to delete (Object Lock), with its reason. */
  locked: { key: string; reason: string }[];
  dryRun: boolean;
}

function catalogBackup(
  manifest: FileManifest,
  lastVerification: 'passed' | 'failed' | undefined,
): CatalogBackup {
  return {
    id: manifest.id,
    name: manifest.name,
    finishedAt: new Date(manifest.finishedAt),
    kind: manifest.kind,
    keepUntil: manifest.keepUntil ? new Date(manifest.keepUntil) : undefined,
    bytes: filesBytes(manifest),
    ...(lastVerification ? { lastVerification } : {}),
  };
}

/** The last verify or drill status of each complete backup, from its folder's records. */
async function lastVerifications(
  storage: Storage,
  name: string,
  folders: FileBackupFolder[],
): Promise<Map<string, 'passed' | 'failed' | undefined>> {
  const complete = folders.filter((f) => f.manifest !== undefined);
  const statuses = await mapLimit(complete, 8, (f) => lastFileVerification(storage, name, f));
  return new Map(complete.map((f, i) => [f.id, statuses[i]]));
}

export async function runFilePrune(
  options: FilePruneOptions,
  deps: FilePruneDeps,
): Promise<FilePruneReport> {
  const now = deps.clock.now();
  const folders = await listFileBackups(deps.storage, options.name);
  const complete = completeFileBackups(folders);
  const verified = await lastVerifications(deps.storage, options.name, folders);
  const backups = complete.map((m) => catalogBackup(m, verified.get(m.id)));
  const plan = planRetention(backups, options.policy, now, { maxDelete: options.maxDelete });
  const report: FilePruneReport = {
    plan,
    keptForReferences: [],
    deletedKeys: [],
    locked: [],
    dryRun: options.dryRun,
  };
  if (plan.refused) {
    deps.logger.warning(`Nothing deleted: ${plan.refused}`);
    return report;
  }
  const kept = new Set(plan.entries.filter((e) => e.decision === 'keep').map((e) => e.backup.id));
  const referenced = referencedKeys(complete.filter((m) => kept.has(m.id)));
  const doomed = doomedFolders(folders, kept, options, now);
  const { manifests, data, keptForReferences } = keysToDelete(doomed, referenced, options.name);
  report.keptForReferences = keptForReferences;
  report.deletedKeys = [...manifests, ...data];
  if (options.dryRun) return report;
  // Manifests first: a backup is never listed complete while its data is going.
  for (const keys of [manifests, data]) {
    if (keys.length === 0) continue;
    const result = await deps.storage.delete(keys);
    report.locked.push(...result.locked);
  }
  deps.logger.info(
    `Deleted ${report.deletedKeys.length - report.locked.length} object(s); kept ${keptForReferences.length} archive(s) that kept backups still refer to.`,
  );
  return report;
}

/** Every archive key a kept backup's files live in. */
function referencedKeys(kept: FileManifest[]): Set<string> {
  return new Set(kept.flatMap((m) => m.archives.map((a) => a.key)));
}

/** Folders of deleted backups, and incomplete folders past the grace period. */
function doomedFolders(
  folders: FileBackupFolder[],
  kept: Set<string>,
  options: FilePruneOptions,
  now: Date,
): FileBackupFolder[] {
  const grace = options.deleteIncompleteAfterSeconds;
  return folders.filter((folder) => {
    if (folder.manifest) return !kept.has(folder.id);
    if (grace === undefined) return false;
    const newest = Math.max(...folder.objects.map((o) => o.lastModified.getTime()));
    return (now.getTime() - newest) / 1000 > grace;
  });
}

function keysToDelete(
  doomed: FileBackupFolder[],
  referenced: Set<string>,
  name: string,
): { manifests: string[]; data: string[]; keptForReferences: string[] } {
  const manifests: string[] = [];
  const data: string[] = [];
  const keptForReferences: string[] = [];
  for (const folder of doomed) {
    const manifest = fileManifestKey(name, folder.id);
    for (const object of folder.objects) {
      if (object.key === manifest) manifests.push(object.key);
      else if (referenced.has(object.key)) keptForReferences.push(object.key);
      else data.push(object.key);
    }
  }
  return { manifests, data, keptForReferences };
}
