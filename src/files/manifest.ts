/** The manifest of a file backup: every file of the source at that time, and where its bytes are. */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import filesManifestSchema from '../../docs/files-manifest.schema.json' with { type: 'json' };
import { ManifestError } from '../catalog/catalog.js';
import type { BackupKind, EncryptionInfo, GitContext } from '../catalog/manifest.js';

export const FILES_MANIFEST_SCHEMA_VERSION = 1;

/** One file of the source as it was when the backup ran. */
export interface FileEntry {
  /** Key relative to the source's prefix or folder; also the entry's name in the tar archive. */
  key: string;
  size: number;
  sha256: string;
  /** ISO time the source reported. */
  lastModified: string;
  /** The object's content type (S3 sources); null for a folder. */
  contentType: string | null;
  /** The source's ETag (S3 sources), used to tell an unchanged object without reading it. */
  etag?: string;
  /** Id of the file backup whose archive holds this file's bytes. */
  archive: string;
}

/** One archive a backup's files live in: its own, and earlier backups' it refers to. */
export interface ArchiveEntry {
  /** The file backup that wrote it. */
  backupId: string;
  /** Key relative to the store's prefix. */
  key: string;
  bytes: number;
  sha256: string;
  /** Files stored in it (some may belong only to earlier points in time). */
  files: number;
  compression: { method: 'zstd'; level: number };
  encrypted: boolean;
}

/** What a run found against the previous complete file backup. */
export interface FileChanges {
  new: number;
  changed: number;
  unchanged: number;
  deleted: number;
  /** Bytes of the new and changed files, read and archived by this run. */
  bytesArchived: number;
  /** Bytes of the archive this run stored (compressed, encrypted). */
  bytesUploaded: number;
}

export interface FileManifest {
  schemaVersion: number;
  /** Tells a file backup's manifest from a database backup's. */
  type: 'files';
  id: string;
  name: string;
  kind: BackupKind;
  labels: Record<string, string>;
  startedAt: string;
  finishedAt: string;
  /** Where the files came from, safe to show (no credentials). */
  source: { type: 's3' | 'folder'; location: string };
  /** The complete file backup this one was compared with, when there was one. */
  previous: string | null;
  encryption: EncryptionInfo | null;
  /** Every archive the files below refer to; this backup's own is the one with its id. */
  archives: ArchiveEntry[];
  /** Every file of the source at that time, in key order. */
  files: FileEntry[];
  changes: FileChanges;
  git: GitContext;
  keepUntil?: string;
}

let validate: ValidateFunction | undefined;

/** What is wrong with a parsed manifest against docs/files-manifest.schema.json, or undefined. */
function problem(value: unknown): string | undefined {
  validate ??= new Ajv2020({
    allErrors: true,
    allowUnionTypes: true,
    validateFormats: false,
  }).compile(filesManifestSchema);
  if (!validate(value)) {
    return (validate.errors ?? [])
      .slice(0, 3)
      .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`)
      .join('; ');
  }
  const m = value as FileManifest;
  const archives = new Set(m.archives.map((a) => a.backupId));
  const orphan = m.files.find((f) => !archives.has(f.archive));
  if (orphan)
    return `file '${orphan.key}' refers to archive ${orphan.archive}, which is not listed`;
  return undefined;
}

/** Parses and checks a file manifest; throws a ManifestError naming `where`. */
export function parseFileManifest(data: Buffer | string, where: string): FileManifest {
  let value: unknown;
  try {
    value = JSON.parse(data.toString());
  } catch (error) {
    throw new ManifestError(`The file manifest ${where} is not valid JSON: ${String(error)}`);
  }
  const why = problem(value);
  if (why) throw new ManifestError(`The file manifest ${where} is damaged: ${why}.`);
  return value as FileManifest;
}

/** Total bytes of the files of a point in time. */
export function filesBytes(manifest: FileManifest): number {
  return manifest.files.reduce((sum, f) => sum + f.size, 0);
}
