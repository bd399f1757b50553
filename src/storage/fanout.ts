import { PassThrough, Writable } from 'node:stream';
import { asError } from '../core/errors.js';
import type { PutStreamOptions, Storage } from './storage.js';

/** What one store did with a body streamed to several. */
export type FanOutResult = { ok: true; bytes: number } | { ok: false; error: Error };

/**
 * A sink that streams one body to several stores at once. Each chunk is handed by reference to
 * every store still writing, and the next one is taken only when all of them took it: the
 * slowest store sets the pace and no store buffers more than its own stream's high-water mark
 * ahead. A store that fails drops out (its putStream aborts its own partial upload) and the
 * others go on; the sink fails only when none is left.
 *
 * The bodies end only once `commit` resolves (the producers exited cleanly); when it rejects,
 * every body is destroyed with its error, so no store completes an upload of a broken stream.
 */
export class FanOut extends Writable {
  /** One entry per store, in order, once the sink has finished or failed. */
  readonly results: Promise<FanOutResult[]>;
  /** Why `commit` rejected, once it did: the reason no store completed its upload. */
  commitError: Error | undefined;
  private readonly live = new Set<PassThrough>();

  constructor(
    stores: readonly Storage[],
    key: string,
    private readonly commit: Promise<void>,
    options: PutStreamOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.results = Promise.all(stores.map((store) => this.upload(store, key, options)));
  }

  private async upload(
    store: Storage,
    key: string,
    options: PutStreamOptions,
  ): Promise<FanOutResult> {
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    body.on('error', () => undefined);
    this.live.add(body);
    try {
      const { bytes } = await store.putStream(key, body, options);
      return { ok: true, bytes };
    } catch (error) {
      return { ok: false, error: asError(error) };
    } finally {
      this.drop(body);
    }
  }

  private drop(body: PassThrough): void {
    this.live.delete(body);
    if (!body.destroyed) body.destroy();
    body.emit('dropped');
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error) => void,
  ): void {
    if (this.live.size === 0) return callback(new Error('every store failed'));
    Promise.all([...this.live].map((body) => writeOrDrop(body, chunk))).then(() => callback());
  }

  override _final(callback: (error?: Error) => void): void {
    this.commit.then(
      () => {
        for (const body of this.live) body.end();
        callback();
      },
      (error: unknown) => {
        this.commitError = asError(error);
        for (const body of this.live) body.destroy(this.commitError);
        callback(this.commitError);
      },
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // After a clean finish the stores may still be reading what was written: leave them be.
    if (error || !this.writableFinished) {
      for (const body of this.live) body.destroy(error ?? new Error('the body was cut off'));
    }
    callback(error);
  }
}

/** Writes a chunk to a store's body; resolves once it has room again or the store dropped out. */
function writeOrDrop(body: PassThrough, chunk: Buffer): Promise<void> {
  if (body.write(chunk)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      body.off('drain', done);
      body.off('dropped', done);
      resolve();
    };
    body.on('drain', done);
    body.on('dropped', done);
  });
}
