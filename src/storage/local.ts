import { randomBytes } from 'node:crypto';
import {
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rmdir,
  stat,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from '../core/logger.js';
import { readFileChunks, type ChunkConsumer } from '../core/streams.js';
import { putInParts } from './parts.js';
import {
  NotFoundError,
  type BucketVersioning,
  type DeleteResult,
  type Part,
  type PartUpload,
  type PutStreamOptions,
  type Storage,
  type StoredObject,
} from './storage.js';

/** A write with `ifNoneMatch` found an object already at the key. */
export class KeyExistsError extends Error {
  constructor(readonly key: string) {
    super(`An object already exists at ${key}`);
    this.name = 'KeyExistsError';
  }
}

/** Names of files being written; never listed, never visible under a key. */
const PARTIAL = /^\..+\.partial-[0-9a-f]{16}$/;

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}

/** The part size of a stream upload: how much is written at once. */
const WRITE_BATCH = 1 << 20;
/**
 * Bytes a stream upload writes between the flushes to disk it starts as it goes, so that the
 * fsync before the rename has little left to write.
 */
const FLUSH_EVERY = 16 << 20;

/** Writes every byte of `data` at `position`, across short writes. */
async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * A file being written in parts at their offsets, flushed to disk as it goes so that the fsync
 * before the rename has little left to write; the temporary file is removed when aborted.
 */
class FileUpload implements PartUpload {
  readonly partSize = WRITE_BATCH;
  readonly inFlight = 2;
  private written = 0;
  private flushedAt = 0;
  /** One flush at a time runs beside the writes; its failure fails the upload. */
  private flushing: Promise<void> | undefined;
  private flushError: unknown;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly handle: FileHandle,
    private readonly temp: string,
    private readonly path: string,
    private readonly syncDirectory: (folder: string) => Promise<void>,
  ) {}

  async sendPart({ offset, data }: Part): Promise<void> {
    await writeAll(this.handle, data, offset);
    this.written += data.length;
    this.flush();
    if (this.flushError !== undefined) throw this.flushError;
  }

  async complete(whole?: Buffer): Promise<void> {
    if (whole !== undefined) await writeAll(this.handle, whole, 0);
    await this.flushed();
    // The final fsync need not report a write error again once a flush did.
    if (this.flushError !== undefined) throw this.flushError;
    await this.handle.sync();
    await this.close();
    await rename(this.temp, this.path);
    await this.syncDirectory(dirname(this.path));
  }

  async abort(): Promise<void> {
    await this.flushed();
    await this.close().catch(() => undefined);
    await unlink(this.temp).catch(() => undefined);
  }

  private close(): Promise<void> {
    this.closing ??= this.handle.close();
    return this.closing;
  }

  private flush(): void {
    if (this.flushing || this.flushError !== undefined) return;
    if (this.written - this.flushedAt < FLUSH_EVERY) return;
    this.flushedAt = this.written;
    this.flushing = this.handle.datasync().then(
      () => {
        this.flushing = undefined;
        this.flush();
      },
      (error: unknown) => {
        this.flushError = error;
        this.flushing = undefined;
      },
    );
  }

  /** Waits for the flushes under way (a flush that ends may start the next one). */
  private async flushed(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}

/**
 * A folder as a store: each key is a file under the root. Writes go to a hidden temporary
 * sibling that is fsynced and renamed onto the key, so a crash never leaves a partial file
 * under a key's name. When a body fails or the disk does, the temporary file is removed and
 * the body is destroyed so its producer stops.
 */
export class LocalStorage implements Storage {
  readonly root: string;
  readonly description: string;

  constructor(
    rootPath: string,
    private readonly logger: Logger,
  ) {
    this.root = resolve(rootPath);
    this.description = `local folder ${this.root}`;
  }

  location(key: string): string {
    return this.pathOf(key);
  }

  private pathOf(key: string): string {
    const segments = key.split('/');
    if (
      key === '' ||
      key.includes('\0') ||
      segments.some((segment) => segment === '' || segment === '.' || segment === '..')
    ) {
      throw new Error(
        `Invalid storage key '${key}': keys are relative paths with non-empty segments and no '.' or '..'.`,
      );
    }
    const path = join(this.root, ...segments);
    if (!path.startsWith(this.root + sep)) {
      throw new Error(`Invalid storage key '${key}': it leaves the folder ${this.root}.`);
    }
    return path;
  }

  private tempPathFor(path: string): string {
    return join(dirname(path), `.${basename(path)}.partial-${randomBytes(8).toString('hex')}`);
  }

  putStream(
    key: string,
    body: Readable,
    options: PutStreamOptions = {},
  ): Promise<{ bytes: number }> {
    return putInParts(this.upload(key), body, options);
  }

  /** A hidden temporary sibling of the key's file, renamed onto the key when complete. */
  async upload(key: string): Promise<PartUpload> {
    const path = this.pathOf(key);
    await mkdir(dirname(path), { recursive: true });
    const temp = this.tempPathFor(path);
    const handle = await open(temp, 'wx', 0o644);
    return new FileUpload(handle, temp, path, (folder) => this.syncDirectory(folder));
  }

  async putBytes(
    key: string,
    data: Buffer | string,
    options: { ifNoneMatch?: boolean } = {},
  ): Promise<void> {
    const path = this.pathOf(key);
    await mkdir(dirname(path), { recursive: true });
    const temp = this.tempPathFor(path);
    try {
      const handle = await open(temp, 'wx', 0o644);
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (options.ifNoneMatch) {
        try {
          await link(temp, path);
        } catch (error) {
          if (errnoCode(error) === 'EEXIST') throw new KeyExistsError(key);
          throw error;
        }
        await unlink(temp);
      } else {
        await rename(temp, path);
      }
      await this.syncDirectory(dirname(path));
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  private async syncDirectory(path: string): Promise<void> {
    try {
      const handle = await open(path, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      this.logger.debug(`Could not fsync the folder ${path}: ${String(error)}`);
    }
  }

  async getStream(key: string, options: { start?: number } = {}): Promise<Readable> {
    const handle = await this.openFile(key);
    return handle.createReadStream({ start: options.start });
  }

  async readChunks(key: string, consume: ChunkConsumer): Promise<void> {
    const handle = await this.openFile(key);
    try {
      await readFileChunks(handle, consume);
    } finally {
      await handle.close();
    }
  }

  /** Opens the file under a key for reading; NotFoundError when there is no file there. */
  private async openFile(key: string): Promise<FileHandle> {
    const path = this.pathOf(key);
    try {
      const handle = await open(path, 'r');
      if (!(await handle.stat()).isFile()) {
        await handle.close();
        throw new NotFoundError(key);
      }
      return handle;
    } catch (error) {
      if (['ENOENT', 'ENOTDIR', 'EISDIR'].includes(errnoCode(error) ?? '')) {
        throw new NotFoundError(key);
      }
      throw error;
    }
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.pathOf(key));
    } catch (error) {
      if (['ENOENT', 'ENOTDIR', 'EISDIR'].includes(errnoCode(error) ?? '')) return undefined;
      throw error;
    }
  }

  async head(key: string): Promise<StoredObject | undefined> {
    try {
      const info = await stat(this.pathOf(key));
      if (!info.isFile()) return undefined;
      return { key, size: info.size, lastModified: info.mtime };
    } catch (error) {
      if (['ENOENT', 'ENOTDIR'].includes(errnoCode(error) ?? '')) return undefined;
      throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const slash = prefix.lastIndexOf('/');
    const folderKey = slash === -1 ? '' : prefix.slice(0, slash);
    const start = folderKey === '' ? this.root : this.pathOf(folderKey);
    const keys: string[] = [];
    const walk = async (folder: string, keyPrefix: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(folder, { withFileTypes: true });
      } catch (error) {
        if (['ENOENT', 'ENOTDIR'].includes(errnoCode(error) ?? '')) return;
        throw error;
      }
      for (const entry of entries) {
        const key = keyPrefix + entry.name;
        if (entry.isDirectory()) {
          if ((key + '/').startsWith(prefix) || prefix.startsWith(key + '/')) {
            await walk(join(folder, entry.name), key + '/');
          }
        } else if (entry.isFile() && !PARTIAL.test(entry.name) && key.startsWith(prefix)) {
          keys.push(key);
        }
      }
    };
    await walk(start, folderKey === '' ? '' : folderKey + '/');
    keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of keys) {
      const object = await this.head(key);
      if (object !== undefined) yield object;
    }
  }

  async delete(keys: string[]): Promise<DeleteResult> {
    const deleted: string[] = [];
    const folders = new Set<string>();
    for (const key of new Set(keys)) {
      const path = this.pathOf(key);
      try {
        await unlink(path);
      } catch (error) {
        if (!['ENOENT', 'ENOTDIR'].includes(errnoCode(error) ?? '')) {
          throw new Error(`Could not delete ${path}: ${String(error)}`, { cause: error });
        }
      }
      deleted.push(key);
      folders.add(dirname(path));
    }
    const deepestFirst = [...folders].sort((a, b) => b.length - a.length);
    for (const folder of deepestFirst) await this.removeEmptyFolders(folder);
    return { deleted, locked: [] };
  }

  /** Removes `folder` and its parents while they are empty, never the root itself. */
  private async removeEmptyFolders(folder: string): Promise<void> {
    for (let current = folder; current.startsWith(this.root + sep); current = dirname(current)) {
      try {
        await rmdir(current);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') continue;
        return;
      }
    }
  }

  async versioning(): Promise<BucketVersioning | undefined> {
    return undefined;
  }
}
