/**
 * Synthetic catalogs for the prune tests: a manifest and a small dump object written straight
 * through the store, with whatever finish time, kind and pin a test needs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendVerificationRecord, mapLimit } from '../../src/catalog/catalog.js';
import { backupPrefix, manifestKey, newBackupId } from '../../src/catalog/keys.js';
import {
  MANIFEST_SCHEMA_VERSION,
  type BackupKind,
  type Manifest,
  type VerificationRecord,
} from '../../src/catalog/manifest.js';
import type { Storage } from '../../src/storage/storage.js';

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

export interface SyntheticSpec {
  name: string;
  finishedAt: Date;
  kind?: BackupKind;
  keepUntil?: Date;
  /** The time the id is made of; default: five minutes before finishedAt. */
  idTime?: Date;
}

export interface SyntheticBackup {
  id: string;
  name: string;
  finishedAt: Date;
  kind: BackupKind;
  keys: string[];
}

function hex6(): string {
  return randomBytes(3).toString('hex');
}

export function syntheticManifest(
  spec: SyntheticSpec,
  id: string,
  dump: { key: string; bytes: number; sha256: string },
): Manifest {
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    id,
    name: spec.name,
    kind: spec.kind ?? 'scheduled',
    labels: {},
    startedAt: new Date(spec.finishedAt.getTime() - 60_000).toISOString(),
    finishedAt: spec.finishedAt.toISOString(),
    source: { database: spec.name, serverVersion: '15.8', serverVersionNum: 150008 },
    tools: { pgDumpVersion: '15.8' },
    format: 'custom',
    compression: { method: 'none' },
    encryption: null,
    objects: [{ key: dump.key, role: 'dump', bytes: dump.bytes, sha256: dump.sha256 }],
    rowCounts: 'off',
    tables: [],
    globals: false,
    git: {},
    options: { schemas: [], excludeSchemas: [], excludeTableData: [] },
  };
  if (spec.keepUntil) manifest.keepUntil = spec.keepUntil.toISOString();
  return manifest;
}

/** Writes the dump object, then the manifest, as the backup action does. */
export async function writeSynthetic(
  storage: Storage,
  spec: SyntheticSpec,
): Promise<SyntheticBackup> {
  const id = newBackupId(spec.idTime ?? new Date(spec.finishedAt.getTime() - 300_000), hex6);
  const body = Buffer.from(`synthetic dump of ${spec.name} ${id}\n`.repeat(8));
  const dumpKey = `${backupPrefix(spec.name, id)}dump.pgc`;
  await storage.putBytes(dumpKey, body);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const manifest = syntheticManifest(spec, id, { key: dumpKey, bytes: body.length, sha256 });
  await storage.putBytes(manifestKey(spec.name, id), `${JSON.stringify(manifest, null, 2)}\n`);
  return {
    id,
    name: spec.name,
    finishedAt: spec.finishedAt,
    kind: spec.kind ?? 'scheduled',
    keys: [dumpKey, manifestKey(spec.name, id)],
  };
}

export async function writeSynthetics(
  storage: Storage,
  specs: SyntheticSpec[],
): Promise<SyntheticBackup[]> {
  return mapLimit(specs, 16, (spec) => writeSynthetic(storage, spec));
}

/** Data without a manifest: an upload that never finished (or is still going). */
export async function writeIncomplete(
  storage: Storage,
  name: string,
  idTime: Date,
): Promise<{ id: string; key: string }> {
  const id = newBackupId(idTime, hex6);
  const key = `${backupPrefix(name, id)}dump.pgc.zst.age`;
  await storage.putBytes(key, randomBytes(2048));
  return { id, key };
}

export async function writeVerification(
  storage: Storage,
  name: string,
  backupId: string,
  status: 'passed' | 'failed',
  finishedAt: Date,
): Promise<string> {
  const record: VerificationRecord = {
    schemaVersion: 1,
    backupId,
    name,
    type: 'verify',
    status,
    startedAt: new Date(finishedAt.getTime() - 60_000).toISOString(),
    finishedAt: finishedAt.toISOString(),
    checks: [{ name: 'restore', status, detail: 'synthetic' }],
  };
  return appendVerificationRecord(storage, record);
}

/** Every key in the store under `prefix`, in key order. */
export async function allKeys(storage: Storage, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of storage.list(prefix)) keys.push(object.key);
  return keys;
}

/**
 * Manifests whose listed objects are not all in the store: what an interrupted prune must
 * never leave behind.
 */
export async function manifestsPointingAtNothing(storage: Storage): Promise<string[]> {
  const keys = new Set(await allKeys(storage));
  const broken: string[] = [];
  for (const key of keys) {
    if (!key.endsWith('/manifest.json')) continue;
    const data = await storage.getBytes(key);
    const manifest = JSON.parse(String(data)) as Manifest;
    if (manifest.objects.some((o) => !keys.has(o.key))) broken.push(key);
  }
  return broken;
}
