/**
 * An incremental file backup: the files added or changed since the previous complete file
 * backup go into one new archive; every other file is recorded by reference to the archive that
 * already holds it. The manifest, written last, lists every file of the source at that time.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { EncryptionChoice } from '../backup/backup.js';
import { fileManifestKey, newBackupId } from '../catalog/keys.js';
import type { BackupKind, GitContext } from '../catalog/manifest.js';
import type { Clock, Logger } from '../core/logger.js';
import { formatBytes, formatCount } from '../core/streams.js';
import type { Storage } from '../storage/storage.js';
import { addEntry, writeArchive } from './archive.js';
import { archiveKey, completeFileBackups, listFileBackups } from './catalog.js';
import {
  FILES_MANIFEST_SCHEMA_VERSION,
  type ArchiveEntry,
  type FileChanges,
  type FileEntry,
  type FileManifest,
} from './manifest.js';
import type { FileSource, SourceFile } from './source.js';

/** zstd level of file archives: fast, and most stored files (images, PDFs) are compressed already. */
export const FILES_ZSTD_LEVEL = 3;

export interface FileBackupOptions {
  name: string;
  kind: BackupKind;
  labels: Record<string, string>;
  encryption?: EncryptionChoice;
  keepUntil?: Date;
  git: GitContext;
}

export interface FileBackupDeps {
  source: FileSource;
  storage: Storage;
  logger: Logger;
  clock: Clock;
  /** Absolute path of the `zstd` tool. */
  zstdPath: string;
  randomSuffix?: () => string;
}

export interface FileBackupResult {
  manifest: FileManifest;
  manifestKey: string;
  durationSeconds: number;
}

/** A source file that must be archived, and whether an earlier version existed. */
interface ToArchive {
  file: SourceFile;
  existed: boolean;
}

/** How the source compares with the previous backup, before any content is read. */
interface Comparison {
  carried: FileEntry[];
  /** Same key and size, but another ETag and date: the content decides. */
  suspects: { file: SourceFile; before: FileEntry }[];
  toArchive: ToArchive[];
  deleted: number;
}

export async function runFileBackup(
  options: FileBackupOptions,
  deps: FileBackupDeps,
): Promise<FileBackupResult> {
  const started = deps.clock.now();
  const id = newBackupId(started, deps.randomSuffix ?? (() => randomBytes(3).toString('hex')));
  const previous = await previousBackup(deps.storage, options.name);
  deps.logger.info(
    previous
      ? `Comparing with file backup ${previous.id}.`
      : 'No earlier file backup: every file is archived.',
  );
  const files = await deps.logger.group(`Listing ${deps.source.description}`, () =>
    listSource(deps),
  );
  const comparison = compare(files, previous);
  const settled = await settleSuspects(comparison, deps);
  const written = await archiveFiles(settled.toArchive, id, options, deps);
  const manifest = buildManifest({ id, started, options, deps, previous, settled, written });
  const manifestKey = fileManifestKey(options.name, id);
  await deps.storage.putBytes(manifestKey, `${JSON.stringify(manifest, null, 2)}\n`, {
    ifNoneMatch: true,
  });
  deps.logger.info(`Wrote ${deps.storage.location(manifestKey)}.`);
  return {
    manifest,
    manifestKey,
    durationSeconds: (deps.clock.now().getTime() - started.getTime()) / 1000,
  };
}

async function previousBackup(storage: Storage, name: string): Promise<FileManifest | undefined> {
  return completeFileBackups(await listFileBackups(storage, name))[0];
}

async function listSource(deps: FileBackupDeps): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  for await (const file of deps.source.list()) files.push(file);
  deps.logger.info(`${formatCount(files.length)} files.`);
  return files;
}

/**
 * Same size, and the same ETag when the source has them (S3), else the same date (a folder):
 * unchanged without reading. A date alone is too coarse where the source has ETags: S3 dates
 * have whole seconds.
 */
function looksUnchanged(file: SourceFile, before: FileEntry): boolean {
  if (file.size !== before.size) return false;
  if (file.etag !== undefined && before.etag !== undefined) return file.etag === before.etag;
  return file.lastModified.getTime() === Date.parse(before.lastModified);
}

function compare(files: SourceFile[], previous: FileManifest | undefined): Comparison {
  const before = new Map((previous?.files ?? []).map((f) => [f.key, f]));
  const result: Comparison = { carried: [], suspects: [], toArchive: [], deleted: 0 };
  for (const file of files) {
    const old = before.get(file.key);
    if (!old) result.toArchive.push({ file, existed: false });
    else if (looksUnchanged(file, old)) result.carried.push(old);
    else if (file.size === old.size) result.suspects.push({ file, before: old });
    else result.toArchive.push({ file, existed: true });
  }
  const current = new Set(files.map((f) => f.key));
  result.deleted = [...before.keys()].filter((key) => !current.has(key)).length;
  return result;
}

/** Reads each suspect once: an equal SHA-256 is carried by reference, anything else archived. */
async function settleSuspects(comparison: Comparison, deps: FileBackupDeps): Promise<Comparison> {
  const settled: Comparison = { ...comparison, carried: [...comparison.carried], suspects: [] };
  for (const { file, before } of comparison.suspects) {
    const opened = await deps.source.open(file.key);
    const hash = createHash('sha256');
    for await (const chunk of opened.body as AsyncIterable<Buffer>) hash.update(chunk);
    if (hash.digest('hex') === before.sha256) {
      settled.carried.push({
        ...before,
        lastModified: file.lastModified.toISOString(),
        etag: file.etag,
        contentType: opened.contentType ?? before.contentType,
      });
    } else {
      settled.toArchive.push({ file, existed: true });
    }
  }
  return settled;
}

interface Written {
  entries: FileEntry[];
  archive?: ArchiveEntry;
}

async function archiveFiles(
  toArchive: ToArchive[],
  id: string,
  options: FileBackupOptions,
  deps: FileBackupDeps,
): Promise<Written> {
  if (toArchive.length === 0) return { entries: [] };
  const key = archiveKey(options.name, id, options.encryption !== undefined);
  const bytes = toArchive.reduce((sum, t) => sum + t.file.size, 0);
  return deps.logger.group(
    `Archiving ${formatCount(toArchive.length)} files (${formatBytes(bytes)}) to ${deps.storage.location(key)}`,
    async () => {
      const writer = await writeArchive(deps.storage, key, {
        zstdPath: deps.zstdPath,
        level: FILES_ZSTD_LEVEL,
        encryption: options.encryption,
      });
      const entries: FileEntry[] = [];
      try {
        for (const { file } of toArchive)
          entries.push(await archiveOne(writer.pack, file, id, deps));
        writer.pack.finalize();
      } catch (error) {
        writer.pack.destroy(error as Error);
        await writer.stored.catch(() => undefined);
        throw error;
      }
      const stored = await writer.stored;
      deps.logger.info(`Stored ${formatBytes(stored.bytes)}.`);
      const archive: ArchiveEntry = {
        backupId: id,
        key,
        bytes: stored.bytes,
        sha256: stored.sha256,
        files: entries.length,
        compression: { method: 'zstd', level: FILES_ZSTD_LEVEL },
        encrypted: options.encryption !== undefined,
      };
      return { entries, archive };
    },
  );
}

async function archiveOne(
  pack: Parameters<typeof addEntry>[0],
  file: SourceFile,
  id: string,
  deps: FileBackupDeps,
): Promise<FileEntry> {
  const opened = await deps.source.open(file.key);
  const sha256 = await addEntry(
    pack,
    { name: file.key, size: file.size, mtime: file.lastModified },
    opened.body,
  );
  return {
    key: file.key,
    size: file.size,
    sha256,
    lastModified: file.lastModified.toISOString(),
    contentType: opened.contentType ?? null,
    ...(file.etag !== undefined ? { etag: file.etag } : {}),
    archive: id,
  };
}

function buildManifest(run: {
  id: string;
  started: Date;
  options: FileBackupOptions;
  deps: FileBackupDeps;
  previous: FileManifest | undefined;
  settled: Comparison;
  written: Written;
}): FileManifest {
  const { id, options, deps, previous, settled, written } = run;
  const files = [...settled.carried, ...written.entries].sort((a, b) =>
    Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)),
  );
  const known = new Map((previous?.archives ?? []).map((a) => [a.backupId, a]));
  if (written.archive) known.set(id, written.archive);
  const used = [...new Set(files.map((f) => f.archive))].sort();
  const changes: FileChanges = {
    new: settled.toArchive.filter((t) => !t.existed).length,
    changed: settled.toArchive.filter((t) => t.existed).length,
    unchanged: settled.carried.length,
    deleted: settled.deleted,
    bytesArchived: written.entries.reduce((sum, f) => sum + f.size, 0),
    bytesUploaded: written.archive?.bytes ?? 0,
  };
  return {
    schemaVersion: FILES_MANIFEST_SCHEMA_VERSION,
    type: 'files',
    id,
    name: options.name,
    kind: options.kind,
    labels: options.labels,
    startedAt: run.started.toISOString(),
    finishedAt: deps.clock.now().toISOString(),
    source: { type: deps.source.type, location: deps.source.description },
    previous: previous?.id ?? null,
    encryption: options.encryption
      ? {
          scheme: 'age',
          recipients: options.encryption.recipients,
          passphrase: options.encryption.passphrase !== undefined,
        }
      : null,
    archives: used.map((a) => known.get(a) as ArchiveEntry),
    files,
    changes,
    git: options.git,
    ...(options.keepUntil ? { keepUntil: options.keepUntil.toISOString() } : {}),
  };
}
