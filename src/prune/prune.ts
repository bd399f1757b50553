/**
 * The prune core: applies a retention policy to each catalog name, never losing the last good
 * backup. Every name is planned before anything is deleted; when any plan is refused (it would
 * delete every backup, or more than max-delete), nothing is deleted anywhere.
 *
 * Deletion order: the manifests of the doomed backups go first, in one batched request, then
 * (in a second batched request) their data objects and verification records, together with old
 * incomplete uploads and orphaned verification records. A run interrupted between the two
 * leaves data without a manifest, which is an incomplete upload that a later run removes, and
 * never a manifest that points at missing data. A manifest kept by Object Lock keeps its whole
 * backup.
 */

import {
  groupByFolder,
  ManifestError,
  damagedReason,
  listCatalog,
  listNames,
  listVerifications,
  type CatalogEntry,
} from '../catalog/catalog.js';
import { isCatalogName, manifestKey, verificationsPrefix } from '../catalog/keys.js';
import {
  planRetention,
  type CatalogBackup,
  type MaxDelete,
  type RetentionPlan,
  type RetentionPolicy,
} from '../catalog/retention.js';
import { compactDuration, formatDuration } from '../core/duration.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { formatBytes } from '../core/streams.js';
import type { Storage, StoredObject } from '../storage/storage.js';
import { ALL_NAMES } from './options.js';

export interface PruneOptions {
  /** Catalog names, each pruned on its own, or `*` for every name under the store's prefix. */
  names: readonly string[] | typeof ALL_NAMES;
  policy: RetentionPolicy;
  /** Largest share or number of a name's backups one run may delete; no limit when absent. */
  maxDelete?: MaxDelete;
  /**
   * Data without a manifest whose newest object is older than this many seconds is deleted;
   * younger data may be an upload in progress and is never touched. Undefined: never deleted.
   */
  deleteIncompleteAfterSeconds?: number;
  /** Plan and report only. */
  dryRun: boolean;
  /** Ask the store to bypass Object Lock governance retention (never compliance mode). */
  bypassGovernanceRetention: boolean;
}

export interface PruneDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
}

/**
 * What became of a backup: `kept` by a rule or protection; `deleted`; `would-delete` in a dry
 * run; `not-deleted` when the plan said delete but the run was refused or failed before it;
 * `kept-locked` when Object Lock kept its manifest, and with it the whole backup.
 */
export type BackupOutcome = 'kept' | 'deleted' | 'would-delete' | 'not-deleted' | 'kept-locked';

export interface LockedObject {
  key: string;
  reason: string;
}

export interface PrunedBackup {
  id: string;
  finishedAt: string;
  kind: string;
  /** Bytes of every object in the backup's folder, manifest included. */
  bytes: number;
  objects: number;
  keepUntil?: string;
  lastVerification?: 'passed' | 'failed';
  decision: 'keep' | 'delete';
  /** Every rule and protection that keeps it, or why nothing does. */
  reasons: string[];
  /** The decision with its reasons, e.g. `kept: daily 2026-11-20, monthly 2026-11`. */
  explanation: string;
  outcome: BackupOutcome;
  /** Objects of a deleted backup that Object Lock kept; they remain as an incomplete upload. */
  locked?: LockedObject[];
}

/** What became of leftovers: `left` (too young, or refused), `deleted`, `would-delete`, `kept-locked`, `not-deleted`. */
export type LeftoverOutcome = 'left' | 'deleted' | 'would-delete' | 'not-deleted' | 'kept-locked';

/** A backup folder without a manifest: an upload that never finished, or one in progress. */
export interface IncompleteUpload {
  id: string;
  /** Newest modification time among its objects. */
  lastModified: string;
  ageSeconds: number;
  bytes: number;
  objects: number;
  /** Verification records under its id, deleted with it. */
  records: number;
  decision: 'delete' | 'leave';
  why: string;
  outcome: LeftoverOutcome;
  locked?: LockedObject[];
}

/** Verification records of a backup id that has no object left under backups/. */
export interface OrphanedRecords {
  backupId: string;
  lastModified: string;
  bytes: number;
  records: number;
  decision: 'delete' | 'leave';
  outcome: LeftoverOutcome;
  locked?: LockedObject[];
}

export interface NamePrune {
  name: string;
  /** Newest first, by the manifests' finishedAt. */
  backups: PrunedBackup[];
  incomplete: IncompleteUpload[];
  orphanedRecords: OrphanedRecords[];
  /** Why this name's plan was refused; nothing was deleted anywhere when set. */
  refused?: string;
  /** Backups that remain (in a dry run: that would remain). */
  kept: number;
  /** Backups deleted (in a dry run: that would be deleted). */
  deleted: number;
  /** Bytes deleted, leftovers included (in a dry run: that would be deleted). */
  freedBytes: number;
}

export interface PruneReport {
  /** The store, safe to show. */
  storage: string;
  now: string;
  dryRun: boolean;
  policy: RetentionPolicy;
  maxDelete?: MaxDelete;
  deleteIncompleteAfterSeconds?: number;
  bypassGovernanceRetention: boolean;
  names: NamePrune[];
  kept: number;
  deleted: number;
  freedBytes: number;
  /** Objects Object Lock kept, all names together. */
  locked: number;
  /** The bucket's versioning, when the store tells. */
  versioning?: 'Enabled' | 'Suspended' | 'Off';
  /** `<name>: <why>` for every refused plan; when any is set nothing was deleted. */
  refused: string[];
  /** Deletes that failed for a reason other than Object Lock. */
  errors: string[];
}

/** One name, planned, with the keys each decision would delete. */
interface NamePlan {
  result: NamePrune;
  /** Objects of each doomed backup, by id (manifest included). */
  backupObjects: Map<string, StoredObject[]>;
  /** Verification record objects by backup id. */
  records: Map<string, StoredObject[]>;
  incompleteObjects: Map<string, StoredObject[]>;
}

function newest(objects: StoredObject[]): Date {
  return new Date(Math.max(0, ...objects.map((o) => o.lastModified.getTime())));
}

function sumSizes(objects: StoredObject[]): number {
  return objects.reduce((n, o) => n + o.size, 0);
}

function explanation(decision: 'keep' | 'delete', reasons: string[]): string {
  return `${decision === 'keep' ? 'kept' : 'delete'}: ${reasons.join(', ')}`;
}

/** The catalog view the planner needs, from a complete entry. Times come from the manifest. */
function catalogBackup(
  storage: Storage,
  entry: CatalogEntry,
  lastVerification: 'passed' | 'failed' | undefined,
  logger: Logger,
): CatalogBackup {
  const manifest = entry.manifest;
  if (!manifest) throw new Error(`catalogBackup: ${entry.id} has no manifest`);
  const where = storage.location(manifestKey(entry.name, entry.id));
  const finishedAt = new Date(manifest.finishedAt);
  if (Number.isNaN(finishedAt.getTime())) {
    throw new Error(
      `The manifest ${where} has an invalid finishedAt ${JSON.stringify(manifest.finishedAt)}; ` +
        'prune orders backups by it and stops before deleting anything.',
    );
  }
  const backup: CatalogBackup = {
    id: entry.id,
    name: entry.name,
    finishedAt,
    kind: manifest.kind,
    bytes: sumSizes(entry.objects),
  };
  if (manifest.keepUntil !== undefined) {
    const until = new Date(manifest.keepUntil);
    if (Number.isNaN(until.getTime())) {
      logger.warning(
        `The manifest ${where} has an unreadable keepUntil ${JSON.stringify(manifest.keepUntil)}; ` +
          'the backup is kept as if pinned forever.',
      );
      backup.keepUntil = new Date(8.64e15);
    } else {
      backup.keepUntil = until;
    }
  }
  if (lastVerification !== undefined) backup.lastVerification = lastVerification;
  return backup;
}

async function planName(
  name: string,
  options: PruneOptions,
  deps: PruneDeps,
  now: Date,
): Promise<NamePlan> {
  const { storage, logger } = deps;
  const entries = await listCatalog(storage, name);
  // A folder whose manifest cannot be read would otherwise look like an unfinished upload.
  const damaged = damagedReason(entries);
  if (damaged !== undefined) {
    throw new ManifestError(
      `Nothing was pruned: ${damaged.replace(/\.$/, '')}. Prune stops until that manifest is repaired or the backup is removed by hand.`,
    );
  }
  const recordObjects = await groupByFolder(storage, verificationsPrefix(name));
  const lastStatus = await lastVerifications(storage, name, recordObjects.size > 0);
  const complete = entries.filter((e) => e.manifest !== undefined);
  const backups = complete.map((e) => catalogBackup(storage, e, lastStatus.get(e.id), logger));
  const plan = planRetention(backups, options.policy, now, { maxDelete: options.maxDelete });
  const backupObjects = new Map<string, StoredObject[]>();
  const pruned = prunedBackups(plan, complete, backupObjects);
  const incompleteObjects = new Map<string, StoredObject[]>();
  const incomplete = incompleteUploads(entries, recordObjects, options, now, incompleteObjects);
  const orphanedRecords = orphanedRecordsOf(entries, recordObjects, options, now);

  const result: NamePrune = {
    name,
    backups: pruned,
    incomplete,
    orphanedRecords,
    kept: pruned.length,
    deleted: 0,
    freedBytes: 0,
  };
  if (plan.refused !== undefined) result.refused = plan.refused;
  logPlan(result, plan, logger);
  return { result, backupObjects, records: recordObjects, incompleteObjects };
}

/** The last passed or failed verification of each backup id (oldest record first: the last decides). */
async function lastVerifications(
  storage: Storage,
  name: string,
  any: boolean,
): Promise<Map<string, 'passed' | 'failed'>> {
  const lastStatus = new Map<string, 'passed' | 'failed'>();
  if (!any) return lastStatus;
  for (const record of await listVerifications(storage, name)) {
    if (record.status === 'passed' || record.status === 'failed') {
      lastStatus.set(record.backupId, record.status);
    }
  }
  return lastStatus;
}

/** The report line of each complete backup; the objects of those to delete go into `doomed`. */
function prunedBackups(
  plan: RetentionPlan,
  complete: CatalogEntry[],
  doomed: Map<string, StoredObject[]>,
): PrunedBackup[] {
  const byId = new Map(complete.map((e) => [e.id, e]));
  return plan.entries.map((entry) => {
    const objects = byId.get(entry.backup.id)?.objects ?? [];
    if (entry.decision === 'delete') doomed.set(entry.backup.id, objects);
    const item: PrunedBackup = {
      id: entry.backup.id,
      finishedAt: entry.backup.finishedAt.toISOString(),
      kind: entry.backup.kind,
      bytes: entry.backup.bytes,
      objects: objects.length,
      decision: entry.decision,
      reasons: entry.reasons,
      explanation: explanation(entry.decision, entry.reasons),
      outcome: entry.decision === 'keep' ? 'kept' : 'not-deleted',
    };
    const keepUntil = byId.get(entry.backup.id)?.manifest?.keepUntil;
    if (keepUntil !== undefined) item.keepUntil = keepUntil;
    if (entry.backup.lastVerification !== undefined) {
      item.lastVerification = entry.backup.lastVerification;
    }
    return item;
  });
}

/**
 * Folders without a manifest: older than the grace period they are deleted (their objects and
 * records go into `doomed`), younger ones may be uploads in progress and are left.
 */
function incompleteUploads(
  entries: CatalogEntry[],
  recordObjects: Map<string, StoredObject[]>,
  options: PruneOptions,
  now: Date,
  doomed: Map<string, StoredObject[]>,
): IncompleteUpload[] {
  const grace = options.deleteIncompleteAfterSeconds;
  const graceText = grace === undefined ? 'never' : compactDuration(grace);
  return entries
    .filter((e) => e.manifest === undefined)
    .map((e) => {
      const records = recordObjects.get(e.id) ?? [];
      const ageSeconds = Math.max(0, (now.getTime() - e.lastModified.getTime()) / 1000);
      const old = grace !== undefined && ageSeconds > grace;
      if (old) doomed.set(e.id, [...e.objects, ...records]);
      return {
        id: e.id,
        lastModified: e.lastModified.toISOString(),
        ageSeconds: Math.round(ageSeconds),
        bytes: sumSizes(e.objects) + sumSizes(records),
        objects: e.objects.length,
        records: records.length,
        decision: old ? 'delete' : 'leave',
        why: old
          ? `no manifest, last written ${formatDuration(ageSeconds)} ago (more than ${graceText})`
          : grace === undefined
            ? 'no manifest; delete-incomplete-after is never'
            : `no manifest, last written ${formatDuration(ageSeconds)} ago (less than ${graceText}): an upload may be in progress`,
        outcome: 'left',
      };
    });
}

/** Verification records of backup ids that have no folder at all. */
function orphanedRecordsOf(
  entries: CatalogEntry[],
  recordObjects: Map<string, StoredObject[]>,
  options: PruneOptions,
  now: Date,
): OrphanedRecords[] {
  const grace = options.deleteIncompleteAfterSeconds;
  const folders = new Set(entries.map((e) => e.id));
  const orphaned: OrphanedRecords[] = [];
  for (const [backupId, objects] of recordObjects) {
    if (folders.has(backupId)) continue;
    const lastModified = newest(objects);
    const old = grace !== undefined && (now.getTime() - lastModified.getTime()) / 1000 > grace;
    orphaned.push({
      backupId,
      lastModified: lastModified.toISOString(),
      bytes: sumSizes(objects),
      records: objects.length,
      decision: old ? 'delete' : 'leave',
      outcome: 'left',
    });
  }
  return orphaned;
}

function logPlan(result: NamePrune, plan: RetentionPlan, logger: Logger): void {
  const { name, incomplete, orphanedRecords } = result;
  const leaving = incomplete.filter((u) => u.decision === 'leave').length;
  logger.info(
    `${name}: ${result.backups.length} complete backup(s); the policy keeps ${plan.keep} and deletes ` +
      `${plan.delete}; ${incomplete.length - leaving} incomplete upload(s) to remove, ${leaving} to leave` +
      (orphanedRecords.length > 0
        ? `; ${orphanedRecords.length} backup id(s) with verification records but no backup`
        : ''),
  );
  if (plan.refused !== undefined) logger.info(`${name}: refused: ${plan.refused}`);
}

/** Where each key of the second delete belongs, to attribute locked objects. */
type Owner =
  | { type: 'backup'; item: PrunedBackup }
  | { type: 'incomplete'; item: IncompleteUpload }
  | { type: 'records'; item: OrphanedRecords };

/**
 * Deletes keys in one call (the store batches them) and returns the keys Object Lock kept, with
 * the store's reason. Every other key is gone: the store throws for any other failure.
 */
async function deleteKeys(
  storage: Storage,
  keys: string[],
  bypassGovernanceRetention: boolean,
): Promise<Map<string, string>> {
  if (keys.length === 0) return new Map();
  const result = await storage.delete(keys, { bypassGovernanceRetention });
  return new Map(result.locked.map((l) => [l.key, l.reason]));
}

/** A complete backup the plan deletes, with its name's plan. */
interface Doomed {
  plan: NamePlan;
  item: PrunedBackup;
}

/**
 * Deletes in two steps: the manifests of the backups to delete first (a backup whose manifest
 * Object Lock keeps stays whole), then everything else in one batched request.
 */
async function executePlans(
  plans: NamePlan[],
  options: PruneOptions,
  deps: PruneDeps,
  errors: string[],
): Promise<void> {
  const sizes = new Map<string, number>();
  const doomed = doomedBackups(plans, sizes);
  const gone = await deleteManifests(doomed, sizes, options, deps, errors);
  if (gone === undefined) return;
  const owners = objectOwners(plans, gone, sizes);
  await deleteOwnedObjects(owners, gone.length, sizes, options, deps, errors);
}

function doomedBackups(plans: NamePlan[], sizes: Map<string, number>): Doomed[] {
  const doomed: Doomed[] = [];
  for (const plan of plans) {
    for (const item of plan.result.backups) {
      if (item.decision !== 'delete') continue;
      doomed.push({ plan, item });
      for (const o of plan.backupObjects.get(item.id) ?? []) sizes.set(o.key, o.size);
    }
  }
  return doomed;
}

/** Step 1: the manifests. Returns the backups whose manifest went; undefined when the call failed. */
async function deleteManifests(
  doomed: Doomed[],
  sizes: Map<string, number>,
  options: PruneOptions,
  deps: PruneDeps,
  errors: string[],
): Promise<Doomed[] | undefined> {
  const manifestKeys = doomed.map(({ plan, item }) => manifestKey(plan.result.name, item.id));
  let locked;
  try {
    locked = await deleteKeys(deps.storage, manifestKeys, options.bypassGovernanceRetention);
  } catch (error) {
    errors.push(
      `Deleting the manifests of ${doomed.length} backup(s) failed: ${errorMessage(error)}. ` +
        'Their data was not touched; a backup whose manifest did go is now an incomplete upload ' +
        'that a later run removes.',
    );
    return undefined;
  }
  const gone: Doomed[] = [];
  for (const d of doomed) {
    const key = manifestKey(d.plan.result.name, d.item.id);
    const reason = locked.get(key);
    if (reason !== undefined) {
      d.item.outcome = 'kept-locked';
      d.item.locked = [{ key, reason }];
    } else {
      d.item.outcome = 'deleted';
      d.plan.result.freedBytes += sizes.get(key) ?? 0;
      gone.push(d);
    }
  }
  return gone;
}

/** Who owns each key of step 2, and the plan each owner's freed bytes are counted in. */
interface Owners {
  byKey: Map<string, Owner>;
  plan: Map<Owner['item'], NamePlan>;
}

function objectOwners(plans: NamePlan[], gone: Doomed[], sizes: Map<string, number>): Owners {
  const byKey = new Map<string, Owner>();
  const plan = new Map<Owner['item'], NamePlan>();
  const own = (key: string, size: number, owner: Owner, of: NamePlan): void => {
    byKey.set(key, owner);
    sizes.set(key, size);
    plan.set(owner.item, of);
  };
  for (const d of gone) {
    const name = d.plan.result.name;
    plan.set(d.item, d.plan);
    for (const o of d.plan.backupObjects.get(d.item.id) ?? []) {
      if (o.key !== manifestKey(name, d.item.id))
        byKey.set(o.key, { type: 'backup', item: d.item });
    }
    for (const o of d.plan.records.get(d.item.id) ?? []) {
      own(o.key, o.size, { type: 'backup', item: d.item }, d.plan);
    }
  }
  for (const p of plans) {
    for (const item of p.result.incomplete) {
      if (item.decision !== 'delete') continue;
      plan.set(item, p);
      for (const o of p.incompleteObjects.get(item.id) ?? []) {
        own(o.key, o.size, { type: 'incomplete', item }, p);
      }
    }
    for (const item of p.result.orphanedRecords) {
      if (item.decision !== 'delete') continue;
      plan.set(item, p);
      for (const o of p.records.get(item.backupId) ?? []) {
        own(o.key, o.size, { type: 'records', item }, p);
      }
    }
  }
  return { byKey, plan };
}

/** Step 2: backup data, verification records and incomplete uploads, in one batched request. */
async function deleteOwnedObjects(
  owners: Owners,
  manifestsDeleted: number,
  sizes: Map<string, number>,
  options: PruneOptions,
  deps: PruneDeps,
  errors: string[],
): Promise<void> {
  const keys = [...owners.byKey.keys()];
  deps.logger.info(
    `Deleted ${manifestsDeleted} manifest(s); deleting ${keys.length} more object(s) ` +
      '(backup data, verification records, incomplete uploads).',
  );
  let locked;
  try {
    locked = await deleteKeys(deps.storage, keys, options.bypassGovernanceRetention);
  } catch (error) {
    errors.push(
      `Deleting ${keys.length} object(s) failed after ${manifestsDeleted} manifest(s) were deleted: ` +
        `${errorMessage(error)}. What is left is data without a manifest, which a later run ` +
        'removes as incomplete uploads.',
    );
    for (const [, owner] of owners.byKey) {
      if (owner.type !== 'backup') owner.item.outcome = 'not-deleted';
    }
    return;
  }
  for (const [key, owner] of owners.byKey) {
    const reason = locked.get(key);
    if (reason !== undefined) {
      (owner.item.locked ??= []).push({ key, reason });
      if (owner.type !== 'backup') owner.item.outcome = 'kept-locked';
    } else {
      if (owner.type !== 'backup' && owner.item.outcome !== 'kept-locked') {
        owner.item.outcome = 'deleted';
      }
      const plan = owners.plan.get(owner.item);
      if (plan) plan.result.freedBytes += sizes.get(key) ?? 0;
    }
  }
}

/** Counts and leftover outcomes once the run's fate is known (dry run, refused, failed). */
function settle(plan: NamePlan, mode: 'dry-run' | 'refused' | 'done'): void {
  const r = plan.result;
  if (mode !== 'done') {
    for (const item of r.backups) {
      if (item.decision === 'delete')
        item.outcome = mode === 'dry-run' ? 'would-delete' : 'not-deleted';
    }
    for (const item of [...r.incomplete, ...r.orphanedRecords]) {
      if (item.decision === 'delete')
        item.outcome = mode === 'dry-run' ? 'would-delete' : 'not-deleted';
    }
    if (mode === 'dry-run') {
      r.freedBytes =
        r.backups
          .filter((b) => b.decision === 'delete')
          .reduce((n, b) => n + b.bytes + sumSizes(plan.records.get(b.id) ?? []), 0) +
        r.incomplete.filter((u) => u.decision === 'delete').reduce((n, u) => n + u.bytes, 0) +
        r.orphanedRecords.filter((o) => o.decision === 'delete').reduce((n, o) => n + o.bytes, 0);
    }
  }
  for (const item of [...r.incomplete, ...r.orphanedRecords]) {
    if (item.decision === 'delete' && item.outcome === 'left') item.outcome = 'not-deleted';
  }
  r.deleted = r.backups.filter(
    (b) => b.outcome === 'deleted' || b.outcome === 'would-delete',
  ).length;
  r.kept = r.backups.length - r.deleted;
}

async function versioningOf(deps: PruneDeps): Promise<PruneReport['versioning']> {
  if (!deps.storage.versioning) return undefined;
  try {
    return await deps.storage.versioning();
  } catch (error) {
    deps.logger.debug(`Could not read the bucket's versioning: ${errorMessage(error)}`);
    return undefined;
  }
}

/**
 * Prunes the catalog names of a store by the policy. Plans every name first; deletes only when
 * no plan is refused and this is not a dry run. Never throws for a refused plan or a failed
 * delete: both are in the report (`refused`, `errors`), see {@link pruneFailure}. Throws for an
 * invalid name, and for listing or manifest errors, before anything is deleted.
 */
export async function runPrune(options: PruneOptions, deps: PruneDeps): Promise<PruneReport> {
  const { storage, logger } = deps;
  const now = deps.clock.now();
  if (options.names !== ALL_NAMES) {
    for (const name of options.names) {
      if (!isCatalogName(name)) {
        throw new ConfigurationError(
          `${JSON.stringify(name)} is not a catalog name: names are one path segment of ` +
            'letters, digits, ".", "_" and "-".',
        );
      }
    }
  }
  const names =
    options.names === ALL_NAMES ? await listNames(storage) : [...new Set(options.names)];
  if (options.names === ALL_NAMES && names.length === 0) {
    logger.warning(`No catalog names under ${storage.description}; nothing to prune.`);
  }

  const plans: NamePlan[] = [];
  await logger.group(`Planning ${names.length} name(s) in ${storage.description}`, async () => {
    for (const name of names) {
      const plan = await planName(name, options, deps, now);
      const r = plan.result;
      if (r.backups.length === 0 && r.incomplete.length === 0 && r.orphanedRecords.length === 0) {
        logger.warning(
          `No backups of ${name} in ${storage.description}; check the name and storage inputs.`,
        );
      }
      plans.push(plan);
    }
  });

  const refused = plans.flatMap((p) =>
    p.result.refused === undefined ? [] : [`${p.result.name}: ${p.result.refused}`],
  );
  const errors: string[] = [];
  if (refused.length > 0) {
    for (const plan of plans) settle(plan, 'refused');
  } else if (options.dryRun) {
    for (const plan of plans) settle(plan, 'dry-run');
  } else {
    await logger.group('Deleting', () => executePlans(plans, options, deps, errors));
    for (const plan of plans) settle(plan, 'done');
  }

  const results = plans.map((p) => p.result);
  const report: PruneReport = {
    storage: storage.description,
    now: now.toISOString(),
    dryRun: options.dryRun,
    policy: options.policy,
    bypassGovernanceRetention: options.bypassGovernanceRetention,
    names: results,
    kept: results.reduce((n, r) => n + r.kept, 0),
    deleted: results.reduce((n, r) => n + r.deleted, 0),
    freedBytes: results.reduce((n, r) => n + r.freedBytes, 0),
    locked: results.reduce(
      (n, r) =>
        n +
        [...r.backups, ...r.incomplete, ...r.orphanedRecords].reduce(
          (m, item) => m + (item.locked?.length ?? 0),
          0,
        ),
      0,
    ),
    refused,
    errors,
  };
  if (options.maxDelete !== undefined) report.maxDelete = options.maxDelete;
  if (options.deleteIncompleteAfterSeconds !== undefined) {
    report.deleteIncompleteAfterSeconds = options.deleteIncompleteAfterSeconds;
  }
  const versioning = await versioningOf(deps);
  if (versioning !== undefined) report.versioning = versioning;

  const verb = options.dryRun ? 'would delete' : 'deleted';
  logger.info(
    `Prune ${refused.length > 0 ? 'refused, nothing deleted' : 'done'}: kept ${report.kept}, ` +
      `${verb} ${report.deleted} backup(s), ${options.dryRun ? 'would free' : 'freed'} ` +
      `${formatBytes(report.freedBytes)}` +
      (report.locked > 0 ? `; ${report.locked} object(s) kept by Object Lock` : ''),
  );
  return report;
}

/**
 * The error that should fail the step or command, or undefined when the run succeeded: a
 * failed delete is an Error, a refused plan a ConfigurationError (raise max-delete or change
 * the policy). Object Lock keeping objects is not a failure.
 */
export function pruneFailure(report: PruneReport): Error | undefined {
  if (report.errors.length > 0) return new Error(report.errors.join('\n'));
  if (report.refused.length > 0) {
    return new ConfigurationError(
      `Prune refused, nothing was deleted in any name: ${report.refused.join('; ')}.`,
    );
  }
  return undefined;
}
