/**
 * Restores one point in time of a file backup into a folder or a bucket/prefix: every archive
 * the manifest refers to is read once, and the entries that point in time holds are written,
 * each checked against its SHA-256. Timed like a drill: how long until every file was back.
 */
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { ConfigurationError } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { HashCounter, formatBytes, formatCount } from '../core/streams.js';
import type { Storage } from '../storage/storage.js';
import { readArchive } from './archive.js';
import { selectFileBackup } from './catalog.js';
import { filesBytes, type FileEntry, type FileManifest } from './manifest.js';

export interface FileRestoreOptions {
  name: string;
  /** A backup id, or `latest`. */
  backupId: string;
  identities: string[];
  passphrase?: string;
}

export interface FileRestoreDeps {
  /** Where the backups are. */
  storage: Storage;
  /** Where the files go: an empty folder or bucket/prefix. */
  target: Storage;
  logger: Logger;
  clock: Clock;
  zstdPath: string;
}

export interface FileRestoreResult {
  manifest: FileManifest;
  files: number;
  bytes: number;
  archivesRead: number;
  /** From the start until the last file was written and checked. */
  seconds: number;
  /** Age of the restored point in time when the restore began. */
  backupAgeSeconds: number;
}

export async function runFileRestore(
  options: FileRestoreOptions,
  deps: FileRestoreDeps,
): Promise<FileRestoreResult> {
  const started = deps.clock.now();
  const manifest = await selectFileBackup(deps.storage, options.name, options.backupId);
  await requireEmptyTarget(deps.target);
  deps.logger.info(
    `Restoring file backup ${manifest.id}: ${formatCount(manifest.files.length)} files, ${formatBytes(filesBytes(manifest))}, from ${manifest.archives.length} archive(s), into ${deps.target.description}.`,
  );
  const restored = new Set<string>();
  for (const archive of manifest.archives) {
    const wanted = new Map(
      manifest.files.filter((f) => f.archive === archive.backupId).map((f) => [f.key, f]),
    );
    const writer = new TargetWriter(deps.target);
    await deps.logger.group(`Archive of ${archive.backupId} (${wanted.size} files)`, async () => {
      await readArchive(deps.storage, archive, decryption(options, deps), async (name, body) => {
        const entry = wanted.get(name);
        if (!entry || restored.has(name)) return drain(body);
        restored.add(name);
        await writer.write(entry, body);
      });
      await writer.finish();
    });
  }
  requireAll(manifest, restored);
  const finished = deps.clock.now();
  return {
    manifest,
    files: restored.size,
    bytes: filesBytes(manifest),
    archivesRead: manifest.archives.length,
    seconds: (finished.getTime() - started.getTime()) / 1000,
    backupAgeSeconds: (started.getTime() - Date.parse(manifest.finishedAt)) / 1000,
  };
}

function decryption(
  options: FileRestoreOptions,
  deps: FileRestoreDeps,
): { zstdPath: string; identities: string[]; passphrase?: string; logger: Logger } {
  return {
    logger: deps.logger,
    zstdPath: deps.zstdPath,
    identities: options.identities,
    passphrase: options.passphrase,
  };
}

/** Restoring never overwrites: the target must hold nothing yet. */
export async function requireEmptyTarget(target: Storage): Promise<void> {
  for await (const object of target.list('')) {
    throw new ConfigurationError(
      `The restore target ${target.description} is not empty (it holds ${object.key}). Restore into an empty folder or prefix.`,
    );
  }
}

async function drain(body: Readable): Promise<void> {
  for await (const chunk of body) void chunk;
}

/** Files up to this size are read whole and written while the archive goes on. */
const SMALL_FILE = 1024 * 1024;
/** Small files written at once: a store's round trip, not its bandwidth, bounds them. */
const WRITES_IN_FLIGHT = 16;

/**
 * Writes restored files to the target, checking each against its SHA-256. Small files are
 * buffered, checked before they are written, and written in one request each, several at a
 * time, so the archive keeps streaming while a bucket answers one request after another
 * (memory: at most WRITES_IN_FLIGHT small files).
 */
class TargetWriter {
  private readonly pending = new Set<Promise<void>>();
  private failure: unknown;

  constructor(private readonly target: Storage) {}

  async write(entry: FileEntry, body: Readable): Promise<void> {
    this.throwIfFailed();
    if (entry.size > SMALL_FILE) return restoreOne(entry, body, this.target);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    requireMatch(entry, data.length, createHash('sha256').update(data).digest('hex'), this.target);
    while (this.pending.size >= WRITES_IN_FLIGHT) await Promise.race(this.pending);
    this.throwIfFailed();
    const writing = this.target.putBytes(entry.key, data, contentTypeOf(entry)).then(
      () => undefined,
      (error: unknown) => {
        this.failure ??= error;
      },
    );
    this.pending.add(writing);
    void writing.finally(() => this.pending.delete(writing));
  }

  async finish(): Promise<void> {
    await Promise.all(this.pending);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}

function contentTypeOf(entry: FileEntry): { contentType?: string } {
  return entry.contentType ? { contentType: entry.contentType } : {};
}

/** A large file, streamed to the target while its SHA-256 is taken. */
async function restoreOne(entry: FileEntry, body: Readable, target: Storage): Promise<void> {
  const hash = new HashCounter();
  await Promise.all([
    target.putStream(entry.key, hash, { sizeHint: entry.size, ...contentTypeOf(entry) }),
    pipeline(body, hash),
  ]);
  requireMatch(entry, hash.bytes, hash.digest(), target);
}

function requireMatch(entry: FileEntry, bytes: number, sha256: string, target: Storage): void {
  if (bytes === entry.size && sha256 === entry.sha256) return;
  throw new Error(
    `The restored file ${target.location(entry.key)} does not match the manifest: ${bytes} bytes, SHA-256 ${sha256}; expected ${entry.size} bytes, SHA-256 ${entry.sha256}.`,
  );
}

function requireAll(manifest: FileManifest, restored: Set<string>): void {
  const missing = manifest.files.filter((f) => !restored.has(f.key));
  if (missing.length === 0) return;
  throw new Error(
    `${missing.length} file(s) of backup ${manifest.id} were not found in their archives, first: ${missing[0].key} (archive of ${missing[0].archive}).`,
  );
}
