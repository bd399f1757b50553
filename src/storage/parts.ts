import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asError } from '../core/errors.js';
import { reclaimer } from '../core/reclaim.js';
import type { PartUpload, PutStreamOptions } from './storage.js';

/** What one store did with the body: stored it whole, or failed (its upload aborted). */
export type UploadResult = { ok: true; bytes: number } | { ok: false; error: Error };

export interface PartWriterOptions {
  /**
   * Resolves once the body may become visible (its producers succeeded): the uploads are
   * completed only then, and aborted when it rejects.
   */
  commit?: Promise<void>;
  /** Called with the bytes every store still writing holds so far. */
  onProgress?: (bytes: number) => void;
}

/** One store written to: its upload once begun, and why it dropped out, if it did. */
interface Target {
  upload?: PartUpload;
  error?: Error;
  /** The abort of its upload, once it dropped out. */
  aborted?: Promise<void>;
}

/**
 * A sink that cuts a stream into parts once and sends each part to every store at once, the
 * same bytes to each: the one uploader, whether there is one store (`putInParts`) or several (a
 * backup's destinations). Part buffers are allocated once and reused, at most `inFlight + 1` of
 * them, whatever the number of stores: a part's buffer is free again once every store still
 * writing holds it, so the slowest store sets the pace. Incoming chunks are copied into the
 * filling part exactly once, and the buffers they came in are freed every few MiB (see
 * `reclaimer`). A body that fits in one part is stored with one request per store.
 *
 * A store that fails drops out (its upload aborted) and the others go on; the sink fails when
 * none is left, at once, even while the body is stalled.
 */
export class PartWriter extends Writable {
  /** The bytes written so far. */
  bytes = 0;
  /** One entry per store, in order, once the sink has finished or failed. */
  readonly results: Promise<UploadResult[]>;
  /** Why `commit` rejected, once it did: the reason no store completed its upload. */
  commitError: Error | undefined;
  /** The first error a store reported. */
  storeError: Error | undefined;
  private targets: Target[] = [];
  private partSize = 0;
  private inFlight = 0;
  private allocated = 0;
  private readonly free: Buffer[] = [];
  private readonly sending = new Set<Promise<void>>();
  private current: Buffer | undefined;
  private filled = 0;
  private parts = 0;
  private stored = 0;
  private completed = false;
  private failure: Error | undefined;
  private readonly reclaim = reclaimer();
  private resolveResults: (results: UploadResult[]) => void = () => undefined;

  /** `uploads`: each store's upload as it is begun, in order. */
  constructor(
    private readonly uploads: readonly Promise<PartUpload>[],
    private readonly options: PartWriterOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    for (const upload of uploads) upload.catch(() => undefined);
    options.commit?.catch(() => undefined);
    this.results = new Promise((resolve) => (this.resolveResults = resolve));
  }

  /** How many parts were sent. */
  get partCount(): number {
    return this.parts;
  }

  /** How many part buffers were allocated. */
  get bufferCount(): number {
    return this.allocated;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    void Promise.allSettled(this.uploads).then((begun) => {
      this.targets = begun.map((b) =>
        b.status === 'fulfilled' ? { upload: b.value } : { error: asError(b.reason) },
      );
      const live = this.live();
      if (live.length === 0) {
        this.storeError = this.targets[0]?.error ?? new Error('no store to write to');
        return callback(this.storeError);
      }
      this.partSize = Math.max(...live.map((t) => t.upload.partSize));
      this.inFlight = Math.max(...live.map((t) => t.upload.inFlight));
      callback();
    });
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error) => void,
  ): void {
    this.take(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error) => void): void {
    this.finish().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.failure ??= error ?? undefined;
    if (!this.completed) {
      const reason = error ?? new Error('the body was cut off');
      for (const target of this.live()) this.drop(target, reason);
    }
    void this.settle().then(() => this.resolveResults(this.report()));
    callback(error);
  }

  /** The stores still writing. */
  private live(): (Target & { upload: PartUpload })[] {
    return this.targets.filter(
      (t): t is Target & { upload: PartUpload } => t.upload !== undefined && !t.error,
    );
  }

  private async take(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      // A full part is sent only once more data follows, so the last part is never empty
      // and a body of exactly one part is stored in one request.
      if (this.current === undefined || this.filled === this.partSize) await this.nextBuffer();
      const current = this.current as Buffer;
      const n = chunk.copy(current, this.filled, offset);
      this.filled += n;
      offset += n;
    }
    this.bytes += chunk.length;
    this.reclaim(chunk.length);
  }

  /** Sends the full current part (if any) and makes a free buffer the current one. */
  private async nextBuffer(): Promise<void> {
    if (this.current !== undefined) {
      await this.sendWhenRoom(this.current, this.filled);
      this.current = undefined;
      this.filled = 0;
    }
    if (this.failure) throw this.failure;
    // Every buffer but the current one is being sent or free, so there are never more than
    // inFlight + 1.
    let buffer = this.free.pop();
    if (buffer === undefined) {
      buffer = Buffer.allocUnsafeSlow(this.partSize);
      this.allocated++;
    }
    this.current = buffer;
  }

  /** Sends a part once fewer than `inFlight` parts are being sent. */
  private async sendWhenRoom(buffer: Buffer, length: number): Promise<void> {
    while (this.sending.size >= this.inFlight) {
      await Promise.race(this.sending);
      if (this.failure) throw this.failure;
    }
    this.send(buffer, length);
  }

  /** Hands the part to every store still writing; its buffer is free once all of them hold it. */
  private send(buffer: Buffer, length: number): void {
    const number = ++this.parts;
    const part = { number, offset: (number - 1) * this.partSize, data: buffer.subarray(0, length) };
    const sent = Promise.all(
      this.live().map((target) =>
        target.upload.sendPart(part).catch((error: unknown) => this.storeFailed(target, error)),
      ),
    ).then(() => {
      this.stored += length;
      this.free.push(buffer);
      this.sending.delete(sent);
      if (!this.failure) this.options.onProgress?.(this.stored);
    });
    this.sending.add(sent);
  }

  /** A store reported an error: it drops out, and the sink fails when none is left. */
  private storeFailed(target: Target, error: unknown): void {
    if (target.error) return;
    const reason = asError(error);
    this.storeError ??= reason;
    this.drop(target, reason);
    if (this.live().length === 0) {
      this.failure ??= reason;
      this.destroy(reason);
    }
  }

  private drop(target: Target, reason: Error): void {
    target.error ??= reason;
    target.aborted ??= target.upload?.abort();
  }

  private async finish(): Promise<void> {
    if (this.options.commit) {
      await this.options.commit.catch((error: unknown) => {
        this.commitError = asError(error);
        throw this.commitError;
      });
    }
    let whole: Buffer | undefined;
    if (this.parts === 0) whole = (this.current ?? Buffer.alloc(0)).subarray(0, this.filled);
    else if (this.filled > 0 && this.current !== undefined) {
      await this.sendWhenRoom(this.current, this.filled);
    }
    this.current = undefined;
    await Promise.allSettled([...this.sending]);
    if (this.failure) throw this.failure;
    await Promise.all(
      this.live().map((target) =>
        target.upload.complete(whole).catch((error: unknown) => {
          this.storeError ??= asError(error);
          this.drop(target, asError(error));
        }),
      ),
    );
    const live = this.live();
    if (live.length === 0) throw this.storeError ?? new Error('every store failed');
    this.completed = true;
    if (whole !== undefined) this.options.onProgress?.(this.bytes);
    await this.settle();
    this.resolveResults(this.report());
  }

  /** Waits until no part is being sent and every dropped store's upload is aborted. */
  private async settle(): Promise<void> {
    await Promise.allSettled([...this.sending]);
    await Promise.all(this.targets.map((t) => t.aborted));
  }

  private report(): UploadResult[] {
    return this.targets.map((t) =>
      t.error || !this.completed
        ? { ok: false, error: t.error ?? this.failure ?? new Error('the upload did not finish') }
        : { ok: true, bytes: this.bytes },
    );
  }
}

/**
 * Streams `body` to one store in parts. When the body errors or the store fails, the upload is
 * aborted and the promise rejects with the body's own error when there is one, else the
 * store's; a store that fails destroys the body so its producer stops.
 */
export async function putInParts(
  upload: Promise<PartUpload>,
  body: Readable,
  options: PutStreamOptions = {},
): Promise<{ bytes: number }> {
  const writer = new PartWriter([upload], { onProgress: options.onProgress });
  let bodyError: unknown;
  const onBodyError = (error: unknown): void => {
    if (error !== writer.storeError) bodyError ??= error;
  };
  body.on('error', onBodyError);
  try {
    await pipeline(body, writer).catch(() => undefined);
    const [result] = await writer.results;
    if (bodyError !== undefined) throw bodyError;
    if (!result.ok) throw result.error;
    return { bytes: result.bytes };
  } finally {
    if (!body.destroyed) body.destroy();
    body.off('error', onBodyError);
    // Destroying the body emits its error again; keep it from going unhandled.
    body.on('error', () => undefined);
  }
}
