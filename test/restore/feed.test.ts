import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import { startProcess } from '../../src/core/process.js';
import { HashCounter, readFileChunks } from '../../src/core/streams.js';
import { AgeEncryptor, createDecryptStream, generateIdentity } from '../../src/crypto/age.js';
import { connect, feedDecoder } from '../../src/restore/fetch.js';

// The restore reads a stored file into one reused buffer, each read written into the first
// decoding step before the next: every such step (age, gunzip, a file, zstd's stdin) must be
// done with a chunk when its write calls back. Objects of many reads, real zstd.

const key = generateIdentity();
const data = Buffer.concat([
  randomBytes(3_000_000),
  Buffer.alloc(4_000_000, 'pg_dump '),
  randomBytes(3_000_000),
]);
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'feed-'));
  writeFileSync(path.join(dir, 'plain'), data);
  writeFileSync(path.join(dir, 'gz'), gzipSync(data));
  execFileSync('zstd', ['-q', '-1', path.join(dir, 'plain'), '-o', path.join(dir, 'zst')]);
  const encryptor = await AgeEncryptor.create({ recipients: [key.recipient] });
  const zst = readFileSync(path.join(dir, 'zst'));
  writeFileSync(
    path.join(dir, 'zst.age'),
    Buffer.concat([...encryptor.update(zst), ...encryptor.final()]),
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A decoding chain: in-process stages, then zstd or not, into `out`. */
async function decode(
  object: string,
  stages: NodeJS.ReadWriteStream[],
  withZstd: boolean,
  hash?: HashCounter,
): Promise<{ error: Error | undefined; out: string; read: number; zstdCode?: number | null }> {
  const out = path.join(dir, `${object}.out`);
  const file = await open(out, 'w');
  const zstd = withZstd
    ? startProcess('zstd', ['-d', '-q', '-c'], { stdio: ['pipe', file.fd, 'pipe'] })
    : undefined;
  const sink = (zstd?.child.stdin as Writable | undefined) ?? createWriteStream(out);
  const input = await open(path.join(dir, object), 'r');
  let read = 0;
  try {
    const { input: first, decoded } = connect(stages, sink);
    const error = await feedDecoder(
      (consume) =>
        readFileChunks(input, async (chunk) => {
          read += chunk.length;
          await consume(chunk);
          // What a step still holding the chunk would write from now on.
          chunk.fill(0xee);
        }),
      first,
      decoded,
      hash,
    );
    const zstdCode = zstd ? (await zstd.exited).code : undefined;
    return { error, out, read, zstdCode };
  } finally {
    await input.close();
    await file.close();
  }
}

describe('decoding a file read into one reused buffer', () => {
  it('writes every byte once, whatever the first step', async () => {
    const cases: [string, () => NodeJS.ReadWriteStream[], boolean][] = [
      ['plain', () => [], false],
      ['gz', () => [createGunzip()], false],
      ['zst', () => [], true],
      ['zst.age', () => [createDecryptStream({ identities: [key.identity] })], true],
    ];
    for (const [object, stages, withZstd] of cases) {
      const hash = new HashCounter();
      const { error, out, zstdCode } = await decode(object, stages(), withZstd, hash);
      expect(error).toBeUndefined();
      if (withZstd) expect(zstdCode).toBe(0);
      expect(readFileSync(out).equals(data)).toBe(true);
      const stored = readFileSync(path.join(dir, object));
      expect(hash.bytes).toBe(stored.length);
      expect(hash.digest()).toBe(createHash('sha256').update(stored).digest('hex'));
    }
  });

  it('reads on to the end after a decoding failure when hashing, and stops when not', async () => {
    // zstd refuses what is not zstd at its first bytes, and the pipe into it breaks.
    const stored = data.length;
    const hash = new HashCounter();
    const hashed = await decode('plain', [], true, hash);
    expect((hashed.error as NodeJS.ErrnoException).code).toMatch(
      /^(EPIPE|ERR_STREAM_PREMATURE_CLOSE)$/,
    );
    expect(hashed.zstdCode).not.toBe(0);
    expect(hash.bytes).toBe(stored);

    const unhashed = await decode('plain', [], true);
    expect((unhashed.error as NodeJS.ErrnoException).code).toMatch(
      /^(EPIPE|ERR_STREAM_PREMATURE_CLOSE)$/,
    );
    expect(unhashed.zstdCode).not.toBe(0);
    expect(unhashed.read).toBeLessThan(stored);
  });
});
