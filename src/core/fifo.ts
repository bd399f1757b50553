import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net, { type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { asError } from './errors.js';

/** Bytes asked for per read: a pipe holds 64 KiB by default. */
export const READ_SIZE = 64 * 1024;

/** A synchronous step applied to what is read; it must not keep references to its input. */
export interface ChunkProcessor {
  update(data: Buffer): Buffer[];
  final(): Buffer[];
}

/**
 * A named pipe for a child process's output. A child's stdout as a Node stream arrives in a
 * new 64 KiB buffer per read, and that garbage is what fills the memory of a long backup; read
 * from a named pipe, the output lands in one buffer that is reused, when a processor (the
 * encryption) copies what it needs before the next read.
 *
 * Use: `create`, give `writeFd` to the child as its stdout, call `closeWriteEnd` once it is
 * spawned, read `reader()`, and `dispose` at the end. The reader ends when every writer closed
 * (the child exited, however it exited).
 */
export class Fifo {
  private writeFdOpen = true;
  private fifoReader: FifoReader | undefined;

  private constructor(
    private readonly dir: string,
    readonly writeFd: number,
    private readonly readFd: number,
  ) {}

  /**
   * A new named pipe in a private folder under `parent`; undefined where there is no `mkfifo`
   * on the PATH of `env`.
   */
  static async create(
    parent: string,
    env: NodeJS.ProcessEnv = process.env,
  ): Promise<Fifo | undefined> {
    const dir = await mkdtemp(path.join(parent, 'pg-backup-pipe-'));
    const file = path.join(dir, 'out');
    try {
      await new Promise<void>((resolve, reject) =>
        execFile('mkfifo', ['-m', '600', file], { env }, (error) =>
          error ? reject(error) : resolve(),
        ),
      );
      // Opened for writing first, so that opening it for reading does not wait for a writer.
      const writeFd = openSync(file, constants.O_RDWR);
      try {
        return new Fifo(dir, writeFd, openSync(file, constants.O_RDONLY | constants.O_NONBLOCK));
      } catch (error) {
        closeSync(writeFd);
        throw error;
      }
    } catch {
      await rm(dir, { recursive: true, force: true });
      return undefined;
    }
  }

  /** Lets go of this process's write end, so the reader sees the end when the child exits. */
  closeWriteEnd(): void {
    if (!this.writeFdOpen) return;
    this.writeFdOpen = false;
    closeSync(this.writeFd);
  }

  /** The pipe's content as a stream, through `processor` when given; call once. */
  reader(processor?: ChunkProcessor): Readable {
    if (this.fifoReader) throw new Error('Fifo.reader may be called once.');
    this.fifoReader = new FifoReader(this.readFd, processor);
    return this.fifoReader;
  }

  async dispose(): Promise<void> {
    this.closeWriteEnd();
    if (this.fifoReader) await this.fifoReader.close();
    else closeSync(this.readFd);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Reads the pipe in the event loop, as a socket does (non-blocking reads when the pipe is
 * readable), rather than with one thread-pool request per read: each read lands in the shared
 * buffer and goes through the processor at once. Reading stops while the consumer is full and
 * starts again when it asks for more.
 */
class FifoReader extends Readable {
  private readonly socket: net.Socket;

  constructor(fd: number, processor: ChunkProcessor | undefined) {
    super({ highWaterMark: 1 << 20 });
    const shared = processor ? Buffer.allocUnsafeSlow(READ_SIZE) : undefined;
    const onread: OnReadOpts = {
      // Without a processor every read keeps its own buffer, since it is pushed as it is.
      buffer: shared ?? (() => Buffer.allocUnsafe(READ_SIZE)),
      callback: (bytes, buffer) =>
        this.passOn(processor, Buffer.from(buffer.buffer, buffer.byteOffset, bytes)),
    };
    const options: SocketConstructorOpts & { onread: OnReadOpts } = {
      fd,
      readable: true,
      writable: false,
      onread,
    };
    this.socket = new net.Socket(options);
    this.socket.on('end', () => {
      if (this.destroyed) return;
      try {
        for (const b of processor?.final() ?? []) this.push(b);
        this.push(null);
      } catch (error) {
        this.destroy(asError(error));
      }
    });
    this.socket.on('error', (error) => this.destroy(error));
  }

  /** Passes one read on; false stops reading until `_read` asks for more. */
  private passOn(processor: ChunkProcessor | undefined, data: Buffer): boolean {
    if (this.destroyed) return false;
    try {
      let wantsMore = true;
      for (const b of processor ? processor.update(data) : [data]) wantsMore = this.push(b);
      return wantsMore;
    } catch (error) {
      this.destroy(asError(error));
      return false;
    }
  }

  override _read(): void {
    this.socket.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  /** Closes the read end (the socket owns the descriptor). */
  async close(): Promise<void> {
    if (this.socket.closed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
  }
}
