import { createWriteStream } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import {
  dumpObject,
  type DumpFormat,
  type Manifest,
  type ObjectEntry,
} from '../catalog/manifest.js';
import { createDecryptStream, type Decryption } from '../crypto/age.js';
import { ConfigurationError, OptionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  describeExit,
  startProcess,
  type ProcessExit,
  type RunningProcess,
} from '../core/process.js';
import { HashCounter, Progress, written, type ChunkConsumer } from '../core/streams.js';
import { archiveHeadLength, fillDataOffsets } from '../postgres/offsets.js';
import { hashObject, readObject, type Storage } from '../storage/storage.js';

/** The object did not match its manifest: its size or SHA-256 differ. */
export class IntegrityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IntegrityError';
  }
}

/** The keys a restore decrypts with: the age module's own type. */
export type { Decryption };

/** Tools that undo what backup did, when they are outside Node. */
export interface DecodeTools {
  /** Absolute path of `zstd` (needed for zstd-compressed objects). */
  zstdPath?: string;
}

export interface FetchResult {
  /** The restorable archive: a custom-format file, or a directory-format folder. */
  archivePath: string;
  format: DumpFormat;
  bytes: number;
  sha256: string;
}

/** Checks that a stored object is the one its manifest describes; call once the stream ended. */
export function checkIntegrity(entry: ObjectEntry, hash: HashCounter): void {
  if (hash.bytes !== entry.bytes) {
    throw new IntegrityError(
      `${entry.key} is ${hash.bytes} bytes but the manifest says ${entry.bytes}: ${
        hash.bytes < entry.bytes
          ? 'the object is truncated, or was replaced by another one'
          : 'the object was replaced by another one, or data was appended to it'
      } after the backup.`,
    );
  }
  const digest = hash.digest();
  if (digest !== entry.sha256) {
    throw new IntegrityError(
      `${entry.key} has SHA-256 ${digest} but the manifest says ${entry.sha256}: the object was changed, corrupted or replaced after the backup.`,
    );
  }
}

/** Reads a whole object through a SHA-256 and byte count, and checks both against its entry. */
export async function checkObject(
  storage: Storage,
  entry: ObjectEntry,
): Promise<{ bytes: number; sha256: string }> {
  const hash = await hashObject(storage, entry.key);
  checkIntegrity(entry, hash);
  return { bytes: hash.bytes, sha256: hash.digest() };
}

function decryptOptions(manifest: Manifest, decryption: Decryption | undefined): Decryption {
  const missing = missingKeyError(manifest, decryption);
  if (missing) throw missing;
  return { identities: decryption?.identities ?? [], passphrase: decryption?.passphrase };
}

/**
 * What turns a stored dump object into the archive pg_restore reads, in order: age, the
 * decompressor outside the archive, tar for the directory format. Empty when the object is the
 * archive itself.
 */
export function decodeSteps(manifest: Manifest): ('age' | 'zstd' | 'gzip' | 'tar')[] {
  const { method } = manifest.compression;
  return [
    ...(manifest.encryption ? (['age'] as const) : []),
    ...(method === 'zstd' || method === 'gzip' ? [method] : []),
    ...(manifest.format === 'directory' ? (['tar'] as const) : []),
  ];
}

/** An encrypted backup and no key to decrypt it with: what to set, in one sentence. */
export function missingKeyError(
  manifest: Manifest,
  decryption: Decryption | undefined,
): OptionError | undefined {
  if (!manifest.encryption || decryption?.identities.length || decryption?.passphrase) {
    return undefined;
  }
  const how = manifest.encryption.passphrase
    ? 'a passphrase'
    : `recipients ${manifest.encryption.recipients.join(', ')}`;
  return new OptionError(
    'encryption-identity',
    (w) =>
      `Backup ${manifest.id} is encrypted with age (${how}), and no key was given: ` +
      `set ${w.option('encryption-identity')} (the age secret key, AGE-SECRET-KEY-1...) or ` +
      `${w.option('encryption-passphrase')}.`,
  );
}

/** A zstd-compressed backup on a machine without zstd: how to install it. */
export function missingZstdError(
  manifest: Manifest,
  zstdPath: string | undefined,
): ConfigurationError | undefined {
  if (manifest.compression.method !== 'zstd' || zstdPath) return undefined;
  return new ConfigurationError(
    `Backup ${manifest.id} is compressed with zstd, and the zstd command is not installed: sudo apt-get install -y zstd`,
  );
}

/** What a stored dump object is decoded through, and where the restorable archive lands. */
export interface Decoder {
  /** The restorable archive: a custom-format file, or a directory-format folder. */
  archivePath: string;
  /** Transforms run in this process, in order (age decryption, gunzip). */
  stages: NodeJS.ReadWriteStream[];
  /** Where the bytes leave this process: a decompressor's or tar's stdin, or the archive file. */
  sink: Writable;
  /** External tools in the pipe, for their exits. */
  processes: { tool: string; proc: RunningProcess }[];
}

/**
 * Opens the way from the stored bytes to a restorable archive in `dir`: age decryption here,
 * then decompression, then the archive file (custom format) or `tar -x` (directory format).
 * zstd writes straight into the file or into tar, so the decompressed archive, several times
 * the object's size, never passes through this process. The archive file is readable by its
 * owner only: it holds the data in the clear.
 */
export async function openDecoder(
  manifest: Manifest,
  decryption: Decryption | undefined,
  tools: DecodeTools,
  dir: string,
): Promise<Decoder> {
  const steps = decodeSteps(manifest);
  const stages: NodeJS.ReadWriteStream[] = [];
  const processes: { tool: string; proc: RunningProcess }[] = [];
  if (steps.includes('age')) stages.push(createDecryptStream(decryptOptions(manifest, decryption)));
  const zstd = steps.includes('zstd');
  const noZstd = missingZstdError(manifest, tools.zstdPath);
  if (noZstd) throw noZstd;
  if (steps.includes('gzip')) stages.push(createGunzip());
  const startZstd = (stdout: number | 'pipe'): RunningProcess => {
    const proc = startProcess(tools.zstdPath as string, ['-d', '-q', '-c'], {
      stdio: ['pipe', stdout, 'pipe'],
    });
    processes.push({ tool: 'zstd -d', proc });
    return proc;
  };

  if (steps.includes('tar')) {
    const archivePath = path.join(dir, 'archive');
    await mkdir(archivePath, { recursive: true });
    const zstdProc = zstd ? startZstd('pipe') : undefined;
    const tar = startProcess('tar', ['-x', '-f', '-', '-C', archivePath], {
      stdio: [zstdProc ? (zstdProc.child.stdout as Readable) : 'pipe', 'ignore', 'pipe'],
    });
    processes.push({ tool: 'tar -x', proc: tar });
    // tar reads zstd's output itself; this process lets go of its end of that pipe.
    zstdProc?.child.stdout?.destroy();
    return { archivePath, stages, sink: (zstdProc ?? tar).child.stdin as Writable, processes };
  }
  const archivePath = path.join(dir, 'archive.pgc');
  if (!zstd) {
    const sink = createWriteStream(archivePath, { mode: 0o600 });
    return { archivePath, stages, sink, processes };
  }
  const file = await open(archivePath, 'w', 0o600);
  try {
    return { archivePath, stages, sink: startZstd(file.fd).child.stdin as Writable, processes };
  } finally {
    await file.close();
  }
}

/**
 * The decoding steps joined: `input` is where the stored bytes go in, `decoded` settles when the
 * last step finished. Every first step (age decryption, gunzip, a file, a tool's stdin) is done
 * with a chunk when it calls back, so the input may come from a reused buffer.
 */
export function connect(
  stages: NodeJS.ReadWriteStream[],
  sink: Writable,
): { input: Writable; decoded: Promise<void> } {
  if (stages.length === 0) return { input: sink, decoded: finished(sink, { readable: false }) };
  return {
    input: stages[0] as unknown as Writable,
    decoded: pipeline([...stages, sink] as NodeJS.ReadWriteStream[]),
  };
}

/**
 * Writes what `read` reads into `decode` (see `connect`), each chunk written before the next
 * read. With a `hash`, it keeps reading and hashing to the end even when decoding fails, so
 * damage is reported as what it is (the object does not match its manifest) rather than as the
 * decryption or decompression error it caused; without one, reading stops with the decoding.
 * Returns the decoding's error.
 */
export async function feedDecoder(
  read: (consume: ChunkConsumer) => Promise<void>,
  decode: Writable,
  decoded: Promise<void>,
  hash?: HashCounter,
): Promise<Error | undefined> {
  let decodeError: Error | undefined;
  const settled = decoded.then(
    () => undefined,
    (error: Error) => {
      decodeError = error;
    },
  );
  try {
    await read(async (chunk) => {
      hash?.update(chunk);
      if (decodeError && !hash) throw decodeError;
      if (decodeError) return;
      // A decoding failure destroys `decode` with its error; `settled` reports it instead.
      await Promise.race([written(decode, chunk), settled]);
    });
  } catch (error) {
    if (error !== undefined && error === decodeError) return decodeError;
    decode.destroy();
    await settled;
    throw error;
  }
  if (!decodeError) decode.end();
  await settled;
  return decodeError;
}

/**
 * Streams a backup's dump object to disk as a restorable archive: storage → SHA-256 and size
 * (checked against the manifest while streaming) → age → decompression → file (or `tar -x`
 * for the directory format). An object that does not match its manifest is an IntegrityError,
 * even when decryption or decompression failed first because of the damage.
 */
export async function fetchArchive(options: {
  storage: Storage;
  manifest: Manifest;
  decryption?: Decryption;
  tools: DecodeTools;
  dir: string;
  logger: Logger;
  progressIntervalMs?: number;
  /**
   * Called once the object's size and SHA-256 were found to match the manifest, before any
   * decryption or decompression error is thrown: an error after it is the decoding's own.
   */
  onIntegrityChecked?: (object: { bytes: number; sha256: string }) => void;
}): Promise<FetchResult> {
  const { storage, manifest, logger } = options;
  const entry = dumpObject(manifest);
  await mkdir(options.dir, { recursive: true });
  const hash = new HashCounter();
  const { archivePath, stages, sink, processes } = await openDecoder(
    manifest,
    options.decryption,
    options.tools,
    options.dir,
  );
  const progress = new Progress(
    logger,
    'Downloaded',
    () => hash.bytes,
    options.progressIntervalMs ?? 5000,
  );
  try {
    const { input, decoded } = connect(stages, sink);
    const read = (consume: ChunkConsumer): Promise<void> => readObject(storage, entry.key, consume);
    const decodeError = await feedDecoder(read, input, decoded, hash).then(async (error) =>
      error && !(await benignBrokenPipe(error, processes)) ? error : undefined,
    );
    if (decodeError) for (const p of processes) p.proc.kill();
    checkIntegrity(entry, hash);
    options.onIntegrityChecked?.({ bytes: hash.bytes, sha256: hash.digest() });
    if (decodeError) throw decodeError;
    for (const p of processes) {
      const exit = await p.proc.exited;
      if (exit.code !== 0) throw new Error(describeExit(p.tool, exit));
    }
    progress.report();
    return withDataOffsets({
      archivePath,
      format: manifest.format,
      bytes: hash.bytes,
      sha256: hash.digest(),
    });
  } finally {
    progress.stop();
    for (const p of processes) p.proc.kill();
  }
}

/**
 * A broken pipe into a tool that then exited 0 is the tool having read all it needed (tar
 * stops at its end-of-archive blocks, and a pipe can close before its writer sees 'finish'):
 * the decoding is complete. Any other error, or a tool that failed, is not.
 */
export async function benignBrokenPipe(
  error: unknown,
  processes: { proc: RunningProcess }[],
): Promise<boolean> {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (processes.length === 0 || (code !== 'EPIPE' && code !== 'ERR_STREAM_PREMATURE_CLOSE')) {
    return false;
  }
  const exits = await Promise.all(processes.map((p) => p.proc.exited));
  return exits.every((exit) => exit.code === 0);
}

/**
 * A custom-format archive written through a pipe has no data offsets in its table of contents;
 * they are filled in once it is on disk, so `pg_restore -j` seeks to each table's data as in a
 * file pg_dump wrote itself, instead of each job reading the archive from its start.
 */
export async function withDataOffsets(result: FetchResult): Promise<FetchResult> {
  if (result.format === 'custom') await fillDataOffsets(result.archivePath);
  return result;
}

/**
 * Fetches a backup's roles script (`globals.sql[.age]`), checked against the manifest and
 * decrypted, into `dir`. Undefined when the backup has none.
 */
export async function fetchGlobals(options: {
  storage: Storage;
  manifest: Manifest;
  decryption?: Decryption;
  dir: string;
}): Promise<string | undefined> {
  const entry = options.manifest.objects.find((o) => o.role === 'globals');
  if (!entry) return undefined;
  await mkdir(options.dir, { recursive: true });
  const file = path.join(options.dir, 'globals.sql');
  const hash = new HashCounter();
  const stages: NodeJS.ReadWriteStream[] = options.manifest.encryption
    ? [createDecryptStream(decryptOptions(options.manifest, options.decryption))]
    : [];
  const { input, decoded } = connect(stages, createWriteStream(file, { mode: 0o600 }));
  const decodeError = await feedDecoder(
    (consume) => readObject(options.storage, entry.key, consume),
    input,
    decoded,
    hash,
  );
  checkIntegrity(entry, hash);
  if (decodeError) throw decodeError;
  return file;
}

/** The streamed plan's decoding of a custom-format object: in this process, then zstd. */
interface DecodingSteps {
  /** Transforms run in this process, in order (age decryption, gunzip). */
  stages: NodeJS.ReadWriteStream[];
  /** `zstd -d`, for a zstd-compressed object: the decoded archive is its stdout. */
  zstd?: RunningProcess;
}

function openDecodingSteps(
  manifest: Manifest,
  decryption: Decryption | undefined,
  tools: DecodeTools,
): DecodingSteps {
  const steps = decodeSteps(manifest);
  const noZstd = missingZstdError(manifest, tools.zstdPath);
  if (noZstd) throw noZstd;
  const stages: NodeJS.ReadWriteStream[] = [];
  if (steps.includes('age')) stages.push(createDecryptStream(decryptOptions(manifest, decryption)));
  if (steps.includes('gzip')) stages.push(createGunzip());
  if (!steps.includes('zstd')) return { stages };
  const zstd = startProcess(tools.zstdPath as string, ['-d', '-q', '-c'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return { stages, zstd };
}

/**
 * The streamed plan's first read: the custom-format archive's header and table of contents,
 * decoded from the start of the stored object into `dir/archive-head.pgc`; the download stops
 * there. `pg_restore --list` and the restore of entries without data read it as the archive
 * (the data blocks are not in it). The object's size and SHA-256 are checked by the stream
 * that follows (archiveFeed).
 */
export async function fetchArchiveHead(options: {
  storage: Storage;
  manifest: Manifest;
  decryption?: Decryption;
  tools: DecodeTools;
  dir: string;
}): Promise<{ archivePath: string; bytes: number }> {
  const entry = dumpObject(options.manifest);
  await mkdir(options.dir, { recursive: true });
  const { stages, zstd } = openDecodingSteps(options.manifest, options.decryption, options.tools);
  const output = (zstd?.child.stdout as Readable | undefined) ?? new PassThrough();
  const { input, decoded } = connect(stages, (zstd?.child.stdin as Writable) ?? output);
  decoded.catch(() => undefined);
  // The stream's own buffers, since the head is read while more is written.
  const source = await options.storage.getStream(entry.key);
  source.once('error', (error: Error) => input.destroy(error));
  source.pipe(input);
  try {
    const head = await readHead(output, entry.key);
    const archivePath = path.join(options.dir, 'archive-head.pgc');
    await writeFile(archivePath, head, { mode: 0o600 });
    return { archivePath, bytes: head.length };
  } finally {
    source.destroy();
    input.destroy();
    output.destroy();
    zstd?.kill();
  }
}

/** Reads a decoded archive until its header and table of contents are whole; returns them. */
async function readHead(output: Readable, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let nextTry = 64 * 1024;
  const whole = (): Buffer | undefined => {
    const bytes = Buffer.concat(chunks);
    const length = archiveHeadLength(bytes, bytes.length, key);
    return length === undefined ? undefined : bytes.subarray(0, length);
  };
  for await (const chunk of output) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    if (total < nextTry) continue;
    // Parsed when the bytes read doubled, so a large table of contents costs linear time.
    nextTry = total * 2;
    const head = whole();
    if (head) return head;
  }
  const head = whole();
  if (!head) throw new Error(`${key}: the archive ends inside its table of contents`);
  return head;
}

/**
 * Runs a tool with the decoded archive on its standard input: `start` is given what to use as
 * its stdin and starts it. Resolves with the tool's exit once the whole stored object was read
 * and its size and SHA-256 matched the manifest.
 */
export type ArchiveFeed = (
  start: (stdin: Readable | 'pipe') => RunningProcess,
) => Promise<ProcessExit>;

/**
 * The streamed plan: storage → SHA-256 and size → age → decompression → a tool's stdin (for
 * pg_restore), no archive on disk. The object's size and SHA-256 are checked as it streams; a
 * mismatch is found only at its end, after the tool loaded what it read, so the IntegrityError
 * says that what was restored must not be trusted.
 */
export function archiveFeed(options: {
  storage: Storage;
  manifest: Manifest;
  decryption?: Decryption;
  tools: DecodeTools;
  logger: Logger;
  progressIntervalMs?: number;
  /** Called once the whole object was read and matched its manifest (as in fetchArchive). */
  onIntegrityChecked?: (object: { bytes: number; sha256: string }) => void;
  /** Whether the tool restores what it reads (default true): a mismatch then says so. */
  restores?: boolean;
}): ArchiveFeed {
  return async (start) => {
    const { manifest, logger } = options;
    const entry = dumpObject(manifest);
    const { stages, zstd } = openDecodingSteps(manifest, options.decryption, options.tools);
    const hash = new HashCounter();
    const tool = start((zstd?.child.stdout as Readable | undefined) ?? 'pipe');
    const decoders = zstd ? [{ tool: 'zstd -d', proc: zstd }] : [];
    const processes = [...decoders, { tool: 'the restore', proc: tool }];
    // The tool reads zstd's stdout itself; this process lets go of its end of that pipe.
    zstd?.child.stdout?.destroy();
    const { input, decoded } = connect(stages, (zstd ?? tool).child.stdin as Writable);
    const progress = new Progress(
      logger,
      'Streamed',
      () => hash.bytes,
      options.progressIntervalMs ?? 5000,
    );
    try {
      const read = (consume: ChunkConsumer): Promise<void> =>
        readObject(options.storage, entry.key, consume);
      const decodeError = await feedDecoder(read, input, decoded, hash).then(async (error) =>
        error && !(await benignBrokenPipe(error, processes)) ? error : undefined,
      );
      const toolFailed = decodeError && (await failedFirst(tool, decodeError));
      if (decodeError) for (const p of processes) p.proc.kill();
      checkStreamedIntegrity(entry, hash, options.restores ?? true);
      options.onIntegrityChecked?.({ bytes: hash.bytes, sha256: hash.digest() });
      // The tool stopped reading because it failed: its own error says why, not the broken pipe.
      if (toolFailed) return await tool.exited;
      if (decodeError) throw decodeError;
      for (const p of decoders) {
        const exit = await p.proc.exited;
        if (exit.code !== 0) throw new Error(describeExit(p.tool, exit));
      }
      progress.report();
      return await tool.exited;
    } finally {
      progress.stop();
      for (const p of processes) p.proc.kill();
    }
  };
}

/** Whether a broken pipe into the decoders came from the tool at its end exiting with an error. */
async function failedFirst(tool: RunningProcess, error: Error): Promise<boolean> {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'EPIPE' && code !== 'ERR_STREAM_PREMATURE_CLOSE') return false;
  const exit = await tool.exited;
  return exit.code !== 0;
}

/** checkIntegrity for an object that was restored as it streamed. */
function checkStreamedIntegrity(entry: ObjectEntry, hash: HashCounter, restores: boolean): void {
  try {
    checkIntegrity(entry, hash);
  } catch (error) {
    if (!(error instanceof IntegrityError) || !restores) throw error;
    throw new IntegrityError(
      `${error.message} The restore read the object as it streamed, so the restored data must not be trusted; the database it went into is discarded.`,
    );
  }
}
