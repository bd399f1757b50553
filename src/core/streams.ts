import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { asError } from './errors.js';
import type { ChunkProcessor } from './fifo.js';
import type { Logger } from './logger.js';
import { reclaimer } from './reclaim.js';

export interface HashCounterOptions {
  /**
   * Holds back the end of the stream until it resolves, and fails the stream when it rejects.
   * A backup body ends only once pg_dump (and every tool in the pipe) exited cleanly, so a
   * dump that died cannot be stored as a complete, shorter object.
   */
  beforeEnd?: () => Promise<void>;
  /** Bytes buffered for the reader before the writer waits (default 16 KiB). */
  highWaterMark?: number;
}

/** Passes bytes through while computing their SHA-256 and count. */
export class HashCounter extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private readonly beforeEnd: (() => Promise<void>) | undefined;
  bytes = 0;
  private digestValue?: string;

  constructor(options: HashCounterOptions = {}) {
    super({ readableHighWaterMark: options.highWaterMark });
    this.beforeEnd = options.beforeEnd;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.update(chunk);
    callback(null, chunk);
  }

  /** Counts and hashes bytes given outside the stream, as `readObject` reads them. */
  update(chunk: Buffer): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  override _flush(callback: TransformCallback): void {
    if (!this.beforeEnd) return callback();
    this.beforeEnd().then(
      () => callback(),
      (error: Error) => callback(error),
    );
  }

  /** The hex digest; valid once the stream has ended. */
  digest(): string {
    this.digestValue ??= this.hash.digest('hex');
    return this.digestValue;
  }
}

/**
 * Takes one read of a stored object or file. The chunk may be a buffer the reader reuses: it is
 * valid only until the returned promise settles, and nothing may keep a reference to it.
 */
export type ChunkConsumer = (chunk: Buffer) => Promise<void>;

/** Bytes per read of a file into its reused buffer: fewer, larger reads decode faster. */
export const FILE_READ_SIZE = 1024 * 1024;

/**
 * Reads a file from its start into one reused buffer, each read handed to `consume` and the next
 * made once it settled. A file's stream allocates a new buffer per read instead, and V8 frees
 * those only at its next collections: decoding 1.6 GB that way held up to 120 MiB of them. What
 * the consumer allocates per chunk (age decryption does) is freed every few MiB (see `reclaimer`).
 */
export async function readFileChunks(file: FileHandle, consume: ChunkConsumer): Promise<void> {
  const buffer = Buffer.allocUnsafeSlow(FILE_READ_SIZE);
  const reclaim = reclaimer();
  for (;;) {
    const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
    if (bytesRead === 0) return;
    reclaim(bytesRead);
    await consume(buffer.subarray(0, bytesRead));
  }
}

/**
 * Writes a chunk and resolves when `stream` calls back, whether it failed or not (its error is
 * reported by the stream). A stream that consumes its input before calling back (a file, a
 * pipe, zlib, age decryption) holds no reference to the chunk then; a pass-through one does.
 */
export function written(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => stream.write(chunk, () => resolve()));
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/**
 * A whole number with commas between groups of three digits (1,234,567), as `en-US` prints it,
 * without `toLocaleString`: its first call loads ICU data, some 15 ms at the end of a backup.
 */
export function formatCount(value: number): string {
  const digits = String(Math.abs(Math.trunc(value)));
  const grouped = digits.replace(/\B(?=(\d{3})+$)/g, ',');
  return value < 0 ? `-${grouped}` : grouped;
}

/** MB/s (decimal megabytes, as tools print rates). */
export function rate(bytes: number, seconds: number): string {
  return seconds > 0 ? `${(bytes / 1e6 / seconds).toFixed(1)} MB/s` : '-';
}

/** Logs bytes, rate and elapsed time every `intervalMs` while a long step runs. */
export class Progress {
  private timer?: NodeJS.Timeout;
  private readonly started = Date.now();
  constructor(
    private readonly logger: Logger,
    private readonly label: string,
    private readonly bytes: () => number,
    intervalMs = 5000,
  ) {
    if (intervalMs > 0) {
      this.timer = setInterval(() => this.report(), intervalMs);
      this.timer.unref();
    }
  }
  elapsedSeconds(): number {
    return (Date.now() - this.started) / 1000;
  }
  report(): void {
    const seconds = this.elapsedSeconds();
    const b = this.bytes();
    this.logger.info(
      `${this.label}: ${formatBytes(b)}, ${rate(b, seconds)}, ${seconds.toFixed(0)}s elapsed`,
    );
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * A chunk processor (see Fifo) as a transform stream, for input that is not a named pipe. A
 * processor still being made (a promise) is awaited before the first chunk.
 */
export function processingStream(
  processor: ChunkProcessor | Promise<ChunkProcessor>,
  highWaterMark?: number,
): Transform {
  let ready: ChunkProcessor | undefined;
  const pass = (stream: Transform, step: () => Buffer[], callback: TransformCallback): void => {
    try {
      for (const b of step()) stream.push(b);
      callback();
    } catch (error) {
      callback(asError(error));
    }
  };
  return new Transform({
    readableHighWaterMark: highWaterMark,
    writableHighWaterMark: highWaterMark,
    construct(callback) {
      Promise.resolve(processor).then(
        (made) => {
          ready = made;
          callback();
        },
        (error: unknown) => callback(asError(error)),
      );
    },
    transform(chunk: Buffer, _encoding, callback) {
      pass(this, () => (ready as ChunkProcessor).update(chunk), callback);
    },
    flush(callback) {
      pass(this, () => (ready as ChunkProcessor).final(), callback);
    },
  });
}
