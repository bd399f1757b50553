/** The manifest schema: written last, its presence marks a backup complete. */
import type { PlatformInfo } from '../postgres/platform.js';
import type { SourceState } from '../postgres/source-state.js';

/**
 * 2: the source's state from the dump's snapshot (`sourceState`) and extension configuration
 * tables in `tables`. Manifests of version 1 are checked the way they were before.
 */
export const MANIFEST_SCHEMA_VERSION = 2;

export type BackupKind = 'scheduled' | 'pre-migration' | 'manual' | 'pre-restore';
export const BACKUP_KINDS: readonly BackupKind[] = [
  'scheduled',
  'pre-migration',
  'manual',
  'pre-restore',
];

export type DumpFormat = 'custom' | 'directory';

/** How the dump object was compressed, and so what restore must undo. */
export interface CompressionInfo {
  /** `pg_dump` compressed inside the archive (restore needs nothing extra); `zstd`/`gzip` wrap the whole stream. */
  method: 'none' | 'pg_dump-gzip' | 'pg_dump-zstd' | 'zstd' | 'gzip';
  level?: number;
}

export interface EncryptionInfo {
  scheme: 'age';
  /** age public keys (never identities). */
  recipients: string[];
  /** Whether a passphrase (scrypt) stanza is present. */
  passphrase: boolean;
}

export interface ObjectEntry {
  /** Key relative to the store's prefix. */
  key: string;
  /** What the object holds. */
  role: 'dump' | 'globals';
  bytes: number;
  sha256: string;
}

export interface TableInventoryEntry {
  schema: string;
  name: string;
  /** Exact count in the dump's snapshot, a planner estimate, or null when counting was off. */
  rows: number | null;
  /** On-disk size of the table with its indexes and toast, bytes. */
  bytes: number;
  /** The table's data was left out (`exclude-table-data`): it restores empty. */
  dataExcluded?: boolean;
  /**
   * An extension's configuration table: the count is the whole table's (the rows the extension
   * makes plus those the dump carries), as a restore with the same extension version holds them.
   */
  extension?: string;
}

export interface GitContext {
  repository?: string;
  sha?: string;
  ref?: string;
  runId?: string;
  runAttempt?: string;
  workflow?: string;
  prNumber?: number;
  actor?: string;
  serverUrl?: string;
}

export interface Manifest {
  schemaVersion: number;
  id: string;
  name: string;
  kind: BackupKind;
  labels: Record<string, string>;
  startedAt: string;
  finishedAt: string;
  source: {
    database: string;
    serverVersion: string;
    serverVersionNum: number;
  };
  tools: {
    pgDumpVersion: string;
    pgDumpPath?: string;
  };
  format: DumpFormat;
  compression: CompressionInfo;
  encryption: EncryptionInfo | null;
  objects: ObjectEntry[];
  /**
   * The decoded archive's size: what decompressing the dump object gives back (custom format),
   * or the directory format's files. Absent when the object is the archive itself (compression
   * inside pg_dump, or none), and in manifests written before it was recorded.
   */
  archiveBytes?: number;
  rowCounts: 'exact' | 'estimate' | 'off';
  tables: TableInventoryEntry[];
  /** Roles and other globals were dumped into a `globals` object. */
  globals: boolean;
  git: GitContext;
  /** ISO date until which prune must keep this backup, when pinned. */
  keepUntil?: string;
  previous?: {
    id: string;
    bytes: number;
    /** Percent change of the dump size against the previous backup. */
    changePercent: number;
  };
  /** The source's state in the dump's snapshot, which the restore checks compare against. */
  sourceState?: SourceState;
  /** The managed platform the source runs on (Supabase), when it is one. */
  platform?: PlatformInfo;
  /** Options that shaped the dump, for the record. */
  options: {
    schemas: string[];
    excludeSchemas: string[];
    excludeTableData: string[];
  };
}

/** The result record that verify and restore-drill append under `verifications/`. */
export interface VerificationRecord {
  schemaVersion: number;
  backupId: string;
  name: string;
  /** `verify` or `drill` or `restore`. */
  type: 'verify' | 'drill' | 'restore';
  status: 'passed' | 'failed';
  startedAt: string;
  finishedAt: string;
  /** Each check and its outcome. */
  checks: { name: string; status: 'passed' | 'failed' | 'skipped'; detail: string }[];
  /** Phase timings and targets for drills, seconds. */
  timings?: Record<string, number>;
  rtoSeconds?: number;
  rpoSeconds?: number;
  rtoTargetSeconds?: number;
  rpoTargetSeconds?: number;
  git?: GitContext;
}

/** The dump object's entry. */
export function dumpObject(manifest: Manifest): ObjectEntry {
  const entry = manifest.objects.find((o) => o.role === 'dump');
  if (!entry) throw new Error(`Manifest of ${manifest.id} lists no dump object`);
  return entry;
}

/** Total bytes of every object of a backup. */
/** The restored tables' size with their indexes, as the source held them (data left out: 0). */
export function restoredTableBytes(manifest: Manifest): number {
  return manifest.tables.reduce((sum, t) => sum + (t.dataExcluded ? 0 : t.bytes), 0);
}

export function totalBytes(manifest: Manifest): number {
  return manifest.objects.reduce((sum, o) => sum + o.bytes, 0);
}

/** `age (2 recipients, passphrase)`: how a backup is encrypted, in words. */
export function describeEncryption(encryption: EncryptionInfo): string {
  const parts: string[] = [];
  const n = encryption.recipients.length;
  if (n > 0) parts.push(`${n} recipient${n > 1 ? 's' : ''}`);
  if (encryption.passphrase) parts.push('passphrase');
  return `age (${parts.join(', ')})`;
}

/** `zstd level 3`, `gzip inside the archive (pg_dump)`, `none`: how a dump was compressed. */
export function describeCompression(c: CompressionInfo): string {
  switch (c.method) {
    case 'zstd':
    case 'gzip':
      return `${c.method}${c.level !== undefined ? ` level ${c.level}` : ''}`;
    case 'pg_dump-gzip':
    case 'pg_dump-zstd':
      return `${c.method.slice('pg_dump-'.length)} inside the archive (pg_dump)`;
    default:
      return 'none';
  }
}
