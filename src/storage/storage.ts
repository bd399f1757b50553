import type { Readable } from 'node:stream';
import { reclaimer } from '../core/reclaim.js';
import { HashCounter, type ChunkConsumer } from '../core/streams.js';

/** One object (or file) in a store, with its key relative to the store's prefix. */
export interface StoredObject {
  key: string;
  size: number;
  lastModified: Date;
  /** S3 storage class when the store reports one (STANDARD, GLACIER, DEEP_ARCHIVE, ...). */
  storageClass?: string;
  /**
   * For an object in an archive class: true when a restore request has completed and its
   * temporary copy can be read, false while one is in progress. Undefined when the store reports
   * no restore request (HEAD only; listings never say).
   */
  restored?: boolean;
}

export interface PutStreamOptions {
  /** Expected total size, when known, so the part size can grow to stay under 10,000 parts. */
  sizeHint?: number;
  contentType?: string;
  /** Called with the number of bytes sent so far. */
  onProgress?: (bytes: number) => void;
}

/** What a store needs to know to begin writing an object in parts. */
export type UploadOptions = Pick<PutStreamOptions, 'sizeHint' | 'contentType'>;

/** One part of an object being written: its number (from 1), where it starts, its bytes. */
export interface Part {
  number: number;
  offset: number;
  data: Buffer;
}

/**
 * An object being written in parts (see `Storage.upload`). The writer cuts the body into parts
 * of one size (at least this upload's `partSize`; the last part may be shorter) and hands the
 * same bytes to every store it writes to. Nothing is visible under the key until `complete`
 * resolves.
 */
export interface PartUpload {
  /** The smallest part size this store accepts for this object. */
  readonly partSize: number;
  /** How many parts this store sends at once. */
  readonly inFlight: number;
  /**
   * Stores one part, possibly while others are being stored. Resolves once the store holds it;
   * the caller reuses `part.data` afterwards, so the store keeps no reference to it. Rejects
   * with an error that names the store.
   */
  sendPart(part: Part): Promise<void>;
  /**
   * Makes the object visible from the parts sent; `whole` is the entire body when it fitted in
   * one part, in which case no part was sent.
   */
  complete(whole?: Buffer): Promise<void>;
  /** Drops what was sent, or written by a `complete` that failed; never rejects. */
  abort(): Promise<void>;
}

export interface PutBytesOptions {
  ifNoneMatch?: boolean;
  /** Stored with the object where the store keeps one (S3). */
  contentType?: string;
}

/** What a delete did with each key. */
export interface DeleteResult {
  deleted: string[];
  /** Keys kept because of Object Lock (retention or legal hold), with the store's reason. */
  locked: { key: string; reason: string }[];
}

export interface DeleteOptions {
  /** Object Lock governance mode may be bypassed when this is set; compliance mode never is. */
  bypassGovernanceRetention?: boolean;
}

/**
 * A place backups live: an S3 bucket and prefix, or a local folder.
 * Keys are relative to the store's prefix and use `/` as separator.
 */
/** A bucket's versioning state: `Off` when it was never enabled. */
export type BucketVersioning = 'Enabled' | 'Suspended' | 'Off';

export interface Storage {
  /** Where this store points, safe to log (no credentials). */
  readonly description: string;
  /** The key as the store names it outright (bucket key with prefix, or absolute path). */
  location(key: string): string;
  /**
   * Streams `body` to `key`. Nothing is visible under `key` until the whole stream was
   * stored; when the body errors or the store fails, the partial upload is aborted and the
   * promise rejects with the body's own error when there is one.
   */
  putStream(key: string, body: Readable, options?: PutStreamOptions): Promise<{ bytes: number }>;
  /**
   * Begins writing `key` in parts, for a writer that sends the same parts to several stores
   * (`putStream` is that writer with one store).
   */
  upload(key: string, options?: UploadOptions): Promise<PartUpload>;
  /** Writes a small object in one request. With `ifNoneMatch`, fails when the key exists. */
  putBytes(key: string, data: Buffer | string, options?: PutBytesOptions): Promise<void>;
  /**
   * Reads an object as a stream, from byte `start` on when given (to resume a read that broke
   * off); rejects with NotFoundError when it is missing.
   */
  getStream(key: string, options?: { start?: number }): Promise<Readable>;
  /**
   * Reads a whole object in order, each read handed to `consume` and the next made once it
   * settled; for stores that read into a reused buffer (a folder does). Call `readObject`,
   * which streams the object where a store has no such reader.
   */
  readChunks?(key: string, consume: ChunkConsumer): Promise<void>;
  /** Reads a small object whole; undefined when it is missing. */
  getBytes(key: string): Promise<Buffer | undefined>;
  /** Size and date of an object; undefined when it is missing. */
  head(key: string): Promise<StoredObject | undefined>;
  /** Every object whose key starts with `prefix`, in key (UTF-8 byte) order, across all pages. */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Deletes keys (in batches of at most 1,000); a missing key counts as deleted. */
  delete(keys: string[], options?: DeleteOptions): Promise<DeleteResult>;
  /** Whether the bucket keeps old versions (for summaries); undefined when it cannot tell. */
  versioning?(): Promise<BucketVersioning | undefined>;
}

/**
 * Reads a whole object into `consume`, one chunk at a time (see `ChunkConsumer`); rejects with
 * NotFoundError when it is missing. Chunks of a stream are new buffers, and with its consumer's
 * (age decryption's) they are freed every few MiB (see `reclaimer`), as `readFileChunks` does.
 */
export async function readObject(
  storage: Storage,
  key: string,
  consume: ChunkConsumer,
): Promise<void> {
  if (storage.readChunks) return storage.readChunks(key, consume);
  const reclaim = reclaimer();
  for await (const chunk of await storage.getStream(key)) {
    const buffer = chunk as Buffer;
    reclaim(buffer.length);
    await consume(buffer);
  }
}

/** Reads a whole object (as `readObject` does) through a SHA-256 and byte count; returns them. */
export async function hashObject(storage: Storage, key: string): Promise<HashCounter> {
  const hash = new HashCounter();
  await readObject(storage, key, async (chunk) => hash.update(chunk));
  return hash;
}

export class NotFoundError extends Error {
  constructor(readonly key: string) {
    super(`No object at ${key}`);
    this.name = 'NotFoundError';
  }
}
