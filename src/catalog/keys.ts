import { randomBytes } from 'node:crypto';

/** Key layout of the catalog inside a store. Every key is relative to the store's prefix. */

export function backupsPrefix(name: string): string {
  return `${name}/backups/`;
}

export function backupPrefix(name: string, id: string): string {
  return `${name}/backups/${id}/`;
}

export function manifestKey(name: string, id: string): string {
  return `${backupPrefix(name, id)}manifest.json`;
}

export function verificationsPrefix(name: string, id?: string): string {
  return id ? `${name}/verifications/${id}/` : `${name}/verifications/`;
}

type RandomSuffix = () => string;
const randomSuffix: RandomSuffix = () => randomBytes(3).toString('hex');

/** `20261121T051500.123Z-9f1c2a.json`: a record's file name, sortable by time, never shared. */
function timedRecordName(at: Date, random: RandomSuffix): string {
  return `${at.toISOString().replace(/[-:]/g, '')}-${random()}.json`;
}

/**
 * `<name>/verifications/<id>/20261121T051500.123Z-9f1c2a.json`: the finish time to the
 * millisecond plus a random suffix, so records sort by time and two runs never share a key.
 */
export function verificationKey(
  name: string,
  id: string,
  at: Date,
  random: RandomSuffix = randomSuffix,
): string {
  return `${verificationsPrefix(name, id)}${timedRecordName(at, random)}`;
}

/** `20261121T051500Z` */
export function compactTime(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

const ID_PATTERN = /^(\d{8}T\d{6}Z)-([0-9a-f]{6})$/;

/** A backup id: UTC time, sortable, unique per run, e.g. `20261121T051500Z-3f9a1c`. */
export function newBackupId(at: Date, random: () => string): string {
  return `${compactTime(at)}-${random()}`;
}

export function isBackupId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** The time encoded in a backup id. */
export function backupIdTime(id: string): Date | undefined {
  const m = ID_PATTERN.exec(id);
  if (!m) return undefined;
  const t = m[1];
  return new Date(
    `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}T${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}Z`,
  );
}

/** A catalog name must be one safe path segment. */
export function isCatalogName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name);
}

/** `<name>/runs/<action>/`: the outcome of each run of an action (see `runs.ts`). */
export function runsPrefix(name: string, action: string): string {
  return `${name}/runs/${action}/`;
}

/** `<name>/runs/<action>/20261121T051500.123Z-9f1c2a.json`, sortable by time like verification keys. */
export function runKey(
  name: string,
  action: string,
  at: Date,
  random: RandomSuffix = randomSuffix,
): string {
  return `${runsPrefix(name, action)}${timedRecordName(at, random)}`;
}

/** `<name>/exports/<backup-id>/`: tables of a backup exported as files (see extract/export.ts). */
export function exportsPrefix(name: string, id: string): string {
  return `${name}/exports/${id}/`;
}

/** `public.rental.csv.zst.age`: one exported table, compressed with zstd (and encrypted with age). */
export function exportObjectName(
  schema: string,
  table: string,
  format: 'csv' | 'jsonl',
  encrypted: boolean,
): string {
  return `${schema}.${table}.${format}.zst${encrypted ? '.age' : ''}`;
}

/** `<name>/files/`: the file backups of a catalog name, beside its database backups. */
export function fileBackupsPrefix(name: string): string {
  return `${name}/files/`;
}

export function fileBackupPrefix(name: string, id: string): string {
  return `${fileBackupsPrefix(name)}${id}/`;
}

export function fileManifestKey(name: string, id: string): string {
  return `${fileBackupPrefix(name, id)}manifest.json`;
}

/**
 * `<name>/files/<id>/verifications/20261121T051500.123Z-9f1c2a.json`: a verify or drill result of
 * a file backup, inside the backup's folder, so it goes when the backup goes.
 */
export function fileVerificationKey(
  name: string,
  id: string,
  at: Date,
  random: RandomSuffix = randomSuffix,
): string {
  return `${fileVerificationsPrefix(name, id)}${timedRecordName(at, random)}`;
}

export function fileVerificationsPrefix(name: string, id: string): string {
  return `${fileBackupPrefix(name, id)}verifications/`;
}
