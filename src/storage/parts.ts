import { Writable } from 'node:stream';
import { asError } from '../core/errors.js';

/** Sends one part; resolves once the store holds it. */
export type SendPart = (partNumber: number, data: Buffer) => Promise<void>;

export interface PartWriterOptions {
  partSize: number;
  /** Parts being sent at once while the next one fills. */
  inFlight: number;
  /** Called before the first part is sent, when the body is larger than one part. */
  begin: () => Promise<void>;
  sendPart: SendPart;
  /** Called with the bytes the store holds so far, after each part. */
  onProgress?: (bytes: number) => void;
}

/**
 * A sink that cuts a stream into parts for a multipart upload. Part buffers are allocated
 * once and reused (at most `inFlight + 1` of them), so the memory in use stays at
 * part size × (parts in flight + 1) and no part becomes garbage; incoming chunks are copied
 * into the filling part exactly once. A body that fits in one part is never sent here: when
 * the stream ends, `single` holds it and the caller stores it in one request.
 *
 * A part that fails to send destroys the sink with the store's error, at once, even while the
 * body is stalled; the caller destroys the body in turn.
 */
export class PartWriter extends Writable {
  /** The bytes written so far. */
  bytes = 0;
  /** Set when the stream ended within the first part: the whole body, for a single request. */
  single: Buffer | undefined;
  /** Whether `begin` was called (a multipart upload exists and must be completed or aborted). */
  started = false;
  private readonly options: PartWriterOptions;
  private allocated = 0;
  private readonly free: Buffer[] = [];
  private readonly sending = new Set<Promise<void>>();
  private current: Buffer | undefined;
  private filled = 0;
  private parts = 0;
  private stored = 0;
  private failure: Error | undefined;
  /** The store's error when beginning the upload or sending a part failed. */
  storeError: Error | undefined;

  constructor(options: PartWriterOptions) {
    super({ highWaterMark: 1 << 20 });
    this.options = options;
  }

  /** How many parts were handed to `sendPart`. */
  get partCount(): number {
    return this.parts;
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
    callback(error);
  }

  private async take(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      // A full part is sent only once more data follows, so the last part is never empty
      // and a body of exactly one part is stored in one request.
      if (this.current === undefined || this.filled === this.options.partSize) {
        await this.nextBuffer();
      }
      const current = this.current as Buffer;
      const n = chunk.copy(current, this.filled, offset);
      this.filled += n;
      offset += n;
    }
    this.bytes += chunk.length;
  }

  /** Sends the full current part (if any) and makes a free buffer the current one. */
  private async nextBuffer(): Promise<void> {
    if (this.current !== undefined) {
      if (!this.started) {
        this.started = true;
        await this.options.begin().catch((error: unknown) => {
          throw this.storeFailed(error);
        });
      }
      await this.sendWhenRoom(this.current, this.filled);
      this.current = undefined;
      this.filled = 0;
    }
    if (this.failure) throw this.failure;
    // Every buffer but the current one is being sent or free, so there are never more than
    // inFlight + 1.
    let buffer = this.free.pop();
    if (buffer === undefined) {
      buffer = Buffer.allocUnsafeSlow(this.options.partSize);
      this.allocated++;
    }
    this.current = buffer;
  }

  /** How many part buffers were allocated. */
  get bufferCount(): number {
    return this.allocated;
  }

  /** Sends a part once fewer than `inFlight` parts are being sent. */
  private async sendWhenRoom(buffer: Buffer, length: number): Promise<void> {
    while (this.sending.size >= this.options.inFlight) {
      await Promise.race(this.sending).catch(() => undefined);
      if (this.failure) throw this.failure;
    }
    this.send(buffer, length);
  }

  private send(buffer: Buffer, length: number): void {
    const partNumber = ++this.parts;
    const sent = this.options.sendPart(partNumber, buffer.subarray(0, length)).then(
      () => {
        this.stored += length;
        this.free.push(buffer);
        this.options.onProgress?.(this.stored);
      },
      (error: unknown) => {
        const reason = this.storeFailed(error);
        this.destroy(reason);
        throw reason;
      },
    );
    this.sending.add(sent);
    sent.then(
      () => this.sending.delete(sent),
      () => this.sending.delete(sent),
    );
  }

  private storeFailed(error: unknown): Error {
    const reason = asError(error);
    this.storeError ??= reason;
    this.failure ??= reason;
    return reason;
  }

  private async finish(): Promise<void> {
    if (!this.started) {
      this.single = (this.current ?? Buffer.alloc(0)).subarray(0, this.filled);
      return;
    }
    if (this.filled > 0 && this.current !== undefined) {
      await this.sendWhenRoom(this.current, this.filled);
    }
    this.current = undefined;
    await this.settle();
    if (this.failure) throw this.failure;
  }

  /** Waits until no part is being sent, whatever the outcome. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.sending]);
  }
}
