/**
 * The archive of a file backup: a tar stream (tar-stream), compressed by the `zstd` tool and
 * encrypted with age, so it also opens by hand: `age -d -i key files.tar.zst.age | zstd -d | tar x`.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Duplex, Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { describeExit, startProcess } from '../core/process.js';
import { reclaimer } from '../core/reclaim.js';
import { HashCounter } from '../core/streams.js';
import { AgeEncryptor, createDecryptStream, encryptingStream } from '../crypto/age.js';
import type { EncryptionChoice } from '../backup/backup.js';
import type { Storage } from '../storage/storage.js';

/** A tool between two streams; `finished` rejects when it exited otherwise than 0. */
interface ToolStage {
  stream: Duplex;
  finished(): Promise<void>;
  kill(): void;
}

function toolStage(command: string, args: string[], label: string): ToolStage {
  const proc = startProcess(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const { stdin, stdout } = proc.child;
  if (!stdin || !stdout) throw new Error(`${label} started without pipes`);
  return {
    stream: Duplex.from({ writable: stdin, readable: stdout }),
    finished: async () => {
      const exit = await proc.exited;
      if (exit.code !== 0) throw new Error(describeExit(label, exit));
    },
    kill: () => proc.kill(),
  };
}

export interface ArchiveWriter {
  /** The tar stream to add entries to. */
  pack: tar.Pack;
  /** Resolves with the stored object's size and SHA-256 once `pack` was finalized and stored. */
  stored: Promise<{ bytes: number; sha256: string }>;
}

/** Streams a tar archive through zstd and age into `storage` at `key`; nothing is visible unless complete. */
export async function writeArchive(
  storage: Storage,
  key: string,
  options: { zstdPath: string; level: number; encryption?: EncryptionChoice },
): Promise<ArchiveWriter> {
  const encryptor = options.encryption ? await AgeEncryptor.create(options.encryption) : undefined;
  const pack = tar.pack();
  const zstd = toolStage(options.zstdPath, ['-q', '-c', `-${options.level}`, '-T0'], 'zstd');
  const hash = new HashCounter({ beforeEnd: () => zstd.finished(), highWaterMark: 1 << 20 });
  const stages: (Readable | Duplex | Transform)[] = [Readable.from(pack), zstd.stream];
  if (encryptor) stages.push(encryptingStream(encryptor));
  stages.push(hash);
  const piped = pipeline(stages);
  const stored = (async () => {
    const [storing, streaming] = await Promise.allSettled([
      storage.putStream(key, hash, { contentType: 'application/octet-stream' }),
      piped,
    ]);
    if (storing.status === 'rejected' || streaming.status === 'rejected') {
      zstd.kill();
      throw storing.status === 'rejected'
        ? storing.reason
        : (streaming as PromiseRejectedResult).reason;
    }
    return { bytes: hash.bytes, sha256: hash.digest() };
  })();
  return { pack, stored };
}

/** Adds one entry of `size` bytes to the tar, returning the SHA-256 of what `body` gave. */
export async function addEntry(
  pack: tar.Pack,
  entry: { name: string; size: number; mtime: Date },
  body: Readable,
): Promise<string> {
  const hash = createHash('sha256');
  let sink!: ReturnType<tar.Pack['entry']>;
  const done = new Promise<void>((resolve, reject) => {
    sink = pack.entry(
      { name: entry.name, size: entry.size, mtime: entry.mtime, mode: 0o644, type: 'file' },
      (error) => (error ? reject(error) : resolve()),
    );
  });
  done.catch(() => undefined);
  for await (const chunk of body as AsyncIterable<Buffer>) {
    hash.update(chunk);
    if (!sink.write(chunk)) await once(sink, 'drain');
  }
  sink.end(undefined);
  await done;
  return hash.digest('hex');
}

/**
 * Reads an archive back: checks its SHA-256 and size on the way, decrypts and decompresses it,
 * and hands each tar entry to `onEntry`, which must consume the entry's stream.
 */
export async function readArchive(
  storage: Storage,
  archive: { key: string; bytes: number; sha256: string; encrypted: boolean },
  options: { zstdPath: string; identities: string[]; passphrase?: string; logger: Logger },
  onEntry: (name: string, body: Readable) => Promise<void>,
): Promise<void> {
  const zstd = toolStage(options.zstdPath, ['-q', '-d', '-c'], 'zstd -d');
  const hash = new HashCounter();
  const body = Readable.from(resumingRead(storage, archive.key, options.logger), {
    objectMode: false,
  });
  const stages: (Readable | Duplex | Transform)[] = [body, hash];
  if (archive.encrypted) {
    stages.push(
      createDecryptStream({ identities: options.identities, passphrase: options.passphrase }),
    );
  }
  stages.push(zstd.stream);
  const extract = tar.extract();
  const decoding = pipeline([...stages, extract as unknown as NodeJS.WritableStream]);
  try {
    const entries = (async () => {
      for await (const entry of extract) {
        await onEntry(entry.header.name, Readable.from(entry));
      }
    })();
    await Promise.all([decoding, entries]);
    await zstd.finished();
  } catch (error) {
    zstd.kill();
    throw error;
  }
  if (hash.bytes !== archive.bytes || hash.digest() !== archive.sha256) {
    throw new Error(
      `The archive ${storage.location(archive.key)} does not match its manifest: ${hash.bytes} bytes, SHA-256 ${hash.digest()}; the manifest says ${archive.bytes} bytes, SHA-256 ${archive.sha256}.`,
    );
  }
}

/** Breaks in a row, at the same byte, after which the archive counts as unreadable. */
const RESUMES = 5;

/**
 * An object's bytes, resumed from where they broke off. A restore reads an archive no faster
 * than it writes the files out, so while a slow target (a bucket answering one small PUT after
 * another) keeps the archive's connection waiting, the store may drop it: Swift after 60 s
 * without a read, S3 after a while too. The read goes on with a ranged GET from the byte
 * reached; the archive's SHA-256, checked over all of it, proves the pieces fit together. The
 * stream's buffers are freed every few MiB (see `reclaimer`), as `readObject` frees them.
 */
export async function* resumingRead(
  storage: Storage,
  key: string,
  logger: Logger,
): AsyncGenerator<Buffer> {
  let offset = 0;
  let brokeAt = -1;
  let breaks = 0;
  const reclaim = reclaimer();
  for (;;) {
    const body = await storage.getStream(key, offset > 0 ? { start: offset } : undefined);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        offset += chunk.length;
        reclaim(chunk.length);
        yield chunk;
      }
      return;
    } catch (error) {
      // Only breaks without progress in between count: a long, slow restore may resume often.
      breaks = offset > brokeAt ? 1 : breaks + 1;
      brokeAt = offset;
      if (breaks > RESUMES) {
        throw new Error(
          `Reading ${storage.location(key)} broke off ${breaks} times in a row at byte ${offset}: ${errorMessage(error)}`,
          { cause: error },
        );
      }
      logger.info(
        `Reading ${storage.location(key)} broke off at byte ${offset} (${errorMessage(error)}); resuming from there.`,
      );
    }
  }
}
