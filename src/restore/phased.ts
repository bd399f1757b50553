import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { dumpObject, type Manifest } from '../catalog/manifest.js';
import type { Logger } from '../core/logger.js';
import { describeExit, type RunningProcess } from '../core/process.js';
import { HashCounter, Progress, readFileChunks, type ChunkConsumer } from '../core/streams.js';
import { readObject, type Storage } from '../storage/storage.js';
import {
  benignBrokenPipe,
  checkIntegrity,
  connect,
  decodeSteps,
  feedDecoder,
  openDecoder,
  type Decryption,
  type DecodeTools,
  withDataOffsets,
  type FetchResult,
} from './fetch.js';

/**
 * The restore pipeline of fetch.ts cut in two, so each half can be timed: `downloadObject`
 * stores the raw object (checked against the manifest's size and SHA-256) as a local file,
 * and `decodeFile` turns that file into a restorable archive (age, then decompression, then
 * `tar -x` for the directory format). The raw file is removed once it is decoded, so at most
 * the object and its decoded archive are on disk at the same time.
 */

export interface DownloadedObject {
  path: string;
  bytes: number;
  sha256: string;
}

/** Downloads the dump object to `dir`; an object that does not match its manifest is an IntegrityError. */
export async function downloadObject(options: {
  storage: Storage;
  manifest: Manifest;
  dir: string;
  logger: Logger;
  progressIntervalMs?: number;
}): Promise<DownloadedObject> {
  const entry = dumpObject(options.manifest);
  await mkdir(options.dir, { recursive: true });
  const file = path.join(options.dir, path.basename(entry.key));
  const hash = new HashCounter();
  const progress = new Progress(
    options.logger,
    'Downloaded',
    () => hash.bytes,
    options.progressIntervalMs ?? 5000,
  );
  try {
    const { input, decoded } = connect([], createWriteStream(file, { mode: 0o600 }));
    const read = (consume: ChunkConsumer): Promise<void> =>
      readObject(options.storage, entry.key, (chunk) => {
        hash.update(chunk);
        return consume(chunk);
      });
    const error = await feedDecoder(read, input, decoded);
    if (error) throw error;
    progress.report();
    checkIntegrity(entry, hash);
    return { path: file, bytes: hash.bytes, sha256: hash.digest() };
  } catch (error) {
    await rm(file, { force: true });
    throw error;
  } finally {
    progress.stop();
  }
}

/**
 * Decodes a downloaded object into `dir/archive.pgc` (custom format) or `dir/archive/`
 * (directory format). An object that needs no decoding is renamed, not copied.
 */
export async function decodeFile(options: {
  manifest: Manifest;
  file: string;
  decryption?: Decryption;
  tools: DecodeTools;
  dir: string;
  logger: Logger;
  progressIntervalMs?: number;
}): Promise<FetchResult> {
  const { manifest, logger } = options;
  const entry = dumpObject(manifest);
  if (decodeSteps(manifest).length === 0) {
    const archivePath = path.join(options.dir, 'archive.pgc');
    await rename(options.file, archivePath);
    return withDataOffsets({
      archivePath,
      format: 'custom',
      bytes: entry.bytes,
      sha256: entry.sha256,
    });
  }
  const all: { tool: string; proc: RunningProcess }[] = [];
  try {
    const decoder = await openDecoder(manifest, options.decryption, options.tools, options.dir);
    all.push(...decoder.processes);
    let bytesRead = 0;
    const progress = new Progress(
      logger,
      'Decoded',
      () => bytesRead,
      options.progressIntervalMs ?? 5000,
    );
    const file = await open(options.file, 'r');
    try {
      const { input, decoded } = connect(decoder.stages, decoder.sink);
      const read = (consume: ChunkConsumer): Promise<void> =>
        readFileChunks(file, (chunk) => {
          bytesRead += chunk.length;
          return consume(chunk);
        });
      const error = await feedDecoder(read, input, decoded);
      if (error && !(await benignBrokenPipe(error, all))) throw error;
      for (const p of all) {
        const exit = await p.proc.exited;
        if (exit.code !== 0) throw new Error(describeExit(p.tool, exit));
      }
      progress.report();
    } finally {
      progress.stop();
      await file.close();
    }
    await rm(options.file, { force: true });
    return withDataOffsets({
      archivePath: decoder.archivePath,
      format: manifest.format,
      bytes: entry.bytes,
      sha256: entry.sha256,
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
      // A tool that died explains the broken pipe better than the pipe does.
      for (const p of all) p.proc.kill();
      for (const p of all) {
        const exit = await p.proc.exited;
        if (exit.code !== 0 && exit.signal !== 'SIGTERM') {
          throw new Error(describeExit(p.tool, exit), { cause: error });
        }
      }
    }
    throw error;
  } finally {
    for (const p of all) p.proc.kill();
  }
}
