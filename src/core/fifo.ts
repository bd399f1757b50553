import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';

/** Bytes asked for per read: a pipe holds 64 KiB by default. */
const READ_SIZE = 64 * 1024;

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

  private constructor(
    private readonly dir: string,
    readonly writeFd: number,
    private readonly handle: FileHandle,
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
        return new Fifo(dir, writeFd, await open(file, 'r'));
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

  /** The pipe's content as a stream, through `processor` when given. */
  reader(processor?: ChunkProcessor): Readable {
    return new FifoReader(this.handle, processor);
  }

  async dispose(): Promise<void> {
    this.closeWriteEnd();
    await this.handle.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

class FifoReader extends Readable {
  /** Reused for every read when a processor copies what it needs; else one buffer per read. */
  private readonly shared: Buffer | undefined;

  constructor(
    private readonly handle: FileHandle,
    private readonly processor: ChunkProcessor | undefined,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.shared = processor ? Buffer.allocUnsafeSlow(READ_SIZE) : undefined;
  }

  override _read(): void {
    this.fill().catch((error: unknown) =>
      this.destroy(error instanceof Error ? error : new Error(String(error))),
    );
  }

  /** Reads until there is something to push (the processor may hold back a partial chunk). */
  private async fill(): Promise<void> {
    for (;;) {
      const buffer = this.shared ?? Buffer.allocUnsafe(READ_SIZE);
      const { bytesRead } = await this.handle.read(buffer, 0, buffer.length, null);
      if (this.destroyed) return;
      if (bytesRead === 0) {
        for (const b of this.processor?.final() ?? []) this.push(b);
        this.push(null);
        return;
      }
      const data = buffer.subarray(0, bytesRead);
      const out = this.processor ? this.processor.update(data) : [data];
      if (out.length > 0) {
        for (const b of out) this.push(b);
        return;
      }
    }
  }
}
