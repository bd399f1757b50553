import type { Storage, StoredObject } from '../storage/storage.js';
import { ConfigurationError, errorMessage, OptionError } from '../core/errors.js';
import {
  backupsPrefix,
  isBackupId,
  isCatalogName,
  manifestKey,
  verificationKey,
  verificationsPrefix,
} from './keys.js';
import { MANIFEST_SCHEMA_VERSION, type Manifest, type VerificationRecord } from './manifest.js';
import { manifestSchemaProblem } from './manifest-schema.js';

/** A backup folder as found in storage: complete when its manifest exists. */
export interface CatalogEntry {
  id: string;
  name: string;
  objects: StoredObject[];
  manifest?: Manifest;
  /** Why the manifest that is there cannot be read (a ManifestError's message), if so. */
  damaged?: string;
  /** Newest modification time among its objects (for the grace period of incomplete uploads). */
  lastModified: Date;
}

/** Reads and checks one manifest; a manifest that does not parse is an error, not a missing backup. */
export async function readManifest(
  storage: Storage,
  name: string,
  id: string,
): Promise<Manifest | undefined> {
  const key = manifestKey(name, id);
  const data = await storage.getBytes(key);
  if (!data) return undefined;
  return parseManifest(data, storage.location(key));
}

/** A manifest that exists but cannot be read: not JSON, not as its schema says, or a newer schema. */
export class ManifestError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ManifestError';
  }
}

export function parseManifest(data: Buffer | string, where: string): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString());
  } catch (error) {
    throw new ManifestError(`The manifest ${where} is not valid JSON: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const version = (parsed as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === 'number' && version > MANIFEST_SCHEMA_VERSION) {
    throw new ManifestError(
      `The manifest ${where} has schema version ${version}; this version reads up to ${MANIFEST_SCHEMA_VERSION}. Use a newer release of the actions.`,
    );
  }
  const problem = manifestSchemaProblem(parsed);
  if (problem !== undefined) {
    throw new ManifestError(`The manifest ${where} is damaged: ${problem}.`);
  }
  return parsed as Manifest;
}

/**
 * Every backup folder of a name, oldest id first, with manifests read for the complete ones.
 * One listing pass; manifests are fetched only for folders that have one. A manifest that is
 * there but cannot be read marks its entry `damaged` instead of failing the listing: each
 * caller decides what a damaged backup means for it.
 */
export async function listCatalog(storage: Storage, name: string): Promise<CatalogEntry[]> {
  const byId = await groupByFolder(storage, backupsPrefix(name));
  for (const id of byId.keys()) if (!isBackupId(id)) byId.delete(id);
  const entries: CatalogEntry[] = [];
  const ids = [...byId.keys()].sort();
  const manifests = await mapLimit(ids, 8, async (id) => {
    const objects = byId.get(id) ?? [];
    const hasManifest = objects.some((o) => o.key === manifestKey(name, id));
    if (!hasManifest) return {};
    try {
      return { manifest: await readManifest(storage, name, id) };
    } catch (error) {
      if (error instanceof ManifestError) return { damaged: error.message };
      throw error;
    }
  });
  ids.forEach((id, i) => {
    const objects = byId.get(id) ?? [];
    entries.push({
      id,
      name,
      objects,
      ...manifests[i],
      lastModified: new Date(Math.max(...objects.map((o) => o.lastModified.getTime()))),
    });
  });
  return entries;
}

/** The first damaged manifest's reason, with how many more there are; undefined when none is. */
export function damagedReason(entries: CatalogEntry[]): string | undefined {
  const damaged = entries.filter((e) => e.damaged !== undefined);
  if (damaged.length === 0) return undefined;
  const more = damaged.length > 1 ? ` (and ${damaged.length - 1} more damaged manifest(s))` : '';
  return `${damaged[0].damaged}${more}`;
}

/** Throws damagedReason as a ManifestError: for verify, which must not go on past one. */
export function assertReadable(entries: CatalogEntry[]): void {
  const reason = damagedReason(entries);
  if (reason !== undefined) throw new ManifestError(reason);
}

/**
 * The complete backups of a listing, newest first, or the reason there are none: a damaged
 * manifest when there is one, else a ConfigurationError saying the catalog has no complete backup.
 */
export function requireComplete(
  entries: CatalogEntry[],
  storage: Storage,
  name: string,
): Manifest[] {
  const complete = completeBackups(entries);
  if (complete.length > 0) return complete;
  assertReadable(entries);
  throw new ConfigurationError(
    `No complete backup of '${name}' in ${storage.description}. Check the storage and name inputs.`,
  );
}

/** The objects under `prefix`, grouped by the folder right below it (a backup id). One listing pass. */
export async function groupByFolder(
  storage: Storage,
  prefix: string,
): Promise<Map<string, StoredObject[]>> {
  const byFolder = new Map<string, StoredObject[]>();
  for await (const object of storage.list(prefix)) {
    const rest = object.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) continue;
    const folder = rest.slice(0, slash);
    let list = byFolder.get(folder);
    if (!list) byFolder.set(folder, (list = []));
    list.push(object);
  }
  return byFolder;
}

/** Complete backups (with manifest), newest finish time first. */
export function completeBackups(entries: CatalogEntry[]): Manifest[] {
  return entries
    .flatMap((e) => (e.manifest ? [e.manifest] : []))
    .sort((a, b) => b.finishedAt.localeCompare(a.finishedAt) || b.id.localeCompare(a.id));
}

/**
 * The complete backup of a name whose manifest was stored last (ties: the greater id), or
 * undefined when there is none. One listing pass and, unless that backup is pruned in between,
 * one manifest read: a backup needs its predecessor, not the whole catalog.
 */
export async function lastStoredBackup(
  storage: Storage,
  name: string,
): Promise<Manifest | undefined> {
  const byId = await groupByFolder(storage, backupsPrefix(name));
  const stored = [...byId]
    .flatMap(([id, objects]) => {
      const key = manifestKey(name, id);
      const manifest = isBackupId(id) ? objects.find((o) => o.key === key) : undefined;
      return manifest ? [{ id, at: manifest.lastModified.getTime() }] : [];
    })
    .sort((a, b) => b.at - a.at || b.id.localeCompare(a.id));
  for (const { id } of stored) {
    const manifest = await readManifest(storage, name, id);
    if (manifest) return manifest;
  }
  return undefined;
}

/**
 * The backup to work on: the given id, or the newest complete one. A missing id or an empty
 * catalog is a ConfigurationError that says what exists.
 */
export async function selectBackup(
  storage: Storage,
  name: string,
  backupId?: string,
): Promise<Manifest> {
  if (backupId) {
    if (!isBackupId(backupId)) {
      throw new OptionError(
        'backup-id',
        (w) =>
          `${w.option('backup-id')} must look like 20261121T051500Z-3f9a1c, got '${backupId}'.`,
      );
    }
    const manifest = await readManifest(storage, name, backupId);
    if (!manifest) {
      throw new ConfigurationError(
        `Backup '${backupId}' of '${name}' has no manifest in ${storage.description}: it does not exist or its upload never completed.`,
      );
    }
    return manifest;
  }
  return requireComplete(await listCatalog(storage, name), storage, name)[0];
}

/** Catalog names under the store's prefix (the first path segment of keys that have backups/). */
export async function listNames(storage: Storage): Promise<string[]> {
  const names = new Set<string>();
  for await (const object of storage.list('')) {
    const m = /^([^/]+)\/backups\//.exec(object.key);
    if (m) names.add(m[1]);
  }
  return [...names].sort();
}

/** Verification records of a name (optionally one backup), oldest first. */
export async function listVerifications(
  storage: Storage,
  name: string,
  backupId?: string,
): Promise<VerificationRecord[]> {
  const keys = await verificationKeys(storage, name, backupId);
  const records = await mapLimit(keys, 8, (key) => readVerificationRecord(storage, key));
  return records
    .filter((r): r is VerificationRecord => r !== undefined)
    .sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
}

/** The keys of the verification records of a name (optionally one backup). */
export async function verificationKeys(
  storage: Storage,
  name: string,
  backupId?: string,
): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of storage.list(verificationsPrefix(name, backupId))) {
    if (object.key.endsWith('.json')) keys.push(object.key);
  }
  return keys;
}

/** One verification record; undefined when it is gone or does not parse. */
export async function readVerificationRecord(
  storage: Storage,
  key: string,
): Promise<VerificationRecord | undefined> {
  const data = await storage.getBytes(key);
  if (!data) return undefined;
  try {
    return JSON.parse(data.toString()) as VerificationRecord;
  } catch {
    return undefined;
  }
}

/** Runs `fn` over items with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return results;
}

/**
 * Appends a verification or drill result under `verifications/<backup-id>/<time>.json`. Never
 * rewrites anything: a record that exists already is an error.
 */
export async function appendVerificationRecord(
  storage: Storage,
  record: VerificationRecord,
): Promise<string> {
  const key = verificationKey(record.name, record.backupId, new Date(record.finishedAt));
  await storage.putBytes(key, `${JSON.stringify(record, null, 2)}\n`, { ifNoneMatch: true });
  return key;
}

/**
 * The catalog name to verify: the one given, or the only one in the store. Several names, or
 * none, is a ConfigurationError that lists what exists.
 */
export async function resolveName(storage: Storage, name: string | undefined): Promise<string> {
  if (name) {
    if (!isCatalogName(name)) {
      throw new OptionError(
        'name',
        (w) =>
          `${w.option('name')} must be one path segment of letters, digits, '.', '_' or '-', got '${name}'.`,
      );
    }
    return name;
  }
  const names = await listNames(storage);
  if (names.length === 1) return names[0];
  if (names.length === 0) {
    throw new ConfigurationError(
      `No backups in ${storage.description}: check the storage input (and s3-endpoint/s3-region), or set name to the backup's catalog name.`,
    );
  }
  throw new ConfigurationError(
    `${storage.description} holds backups of several databases (${names.join(', ')}): set the name input to one of them.`,
  );
}
