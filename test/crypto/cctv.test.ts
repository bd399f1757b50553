/**
 * The C2SP/CCTV age test vectors (test/fixtures/cctv-age, format in its README): every vector
 * is decrypted and its expectation asserted. In scope (binary format, X25519 and scrypt): the
 * expected outcome and the SHA-256 of all plaintext released, even before a failure. Out of
 * scope (ASCII armor, post-quantum hybrid keys): a clean rejection that releases no plaintext.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { ConfigurationError } from '../../src/core/errors.js';
import {
  AgeError,
  createDecryptStream,
  generateIdentity,
  type Decryption,
  type AgeFailure,
} from '../../src/crypto/age.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/cctv-age');

type Expect = 'success' | 'no match' | 'HMAC failure' | 'header failure' | 'payload failure';

interface Vector {
  name: string;
  expect: Expect | 'armor failure';
  payload?: string;
  identities: string[];
  passphrases: string[];
  armored: boolean;
  file: Buffer;
}

const FAILURE_OF: Record<Exclude<Expect, 'success'>, AgeFailure> = {
  'no match': 'no match',
  'HMAC failure': 'hmac',
  'header failure': 'header',
  'payload failure': 'payload',
};

function readVector(name: string): Vector {
  const data = fs.readFileSync(path.join(DIR, name));
  const blank = data.indexOf('\n\n');
  const fields = data
    .subarray(0, blank)
    .toString('utf8')
    .split('\n')
    .map((line) => {
      const at = line.indexOf(': ');
      return [line.slice(0, at), line.slice(at + 2)] as const;
    });
  const all = (key: string): string[] => fields.filter(([k]) => k === key).map(([, v]) => v);
  const one = (key: string): string | undefined => all(key)[0];
  const body = data.subarray(blank + 2);
  const compressed = one('compressed');
  if (compressed !== undefined && compressed !== 'zlib') {
    throw new Error(`${name}: unknown compression ${compressed}`);
  }
  return {
    name,
    expect: one('expect') as Vector['expect'],
    payload: one('payload'),
    identities: all('identity'),
    passphrases: all('passphrase'),
    armored: one('armored') === 'yes',
    file: compressed ? zlib.inflateSync(body) : body,
  };
}

interface Outcome {
  /** Every byte the stream released, even when it then failed. */
  released: Buffer;
  error?: unknown;
}

/** Feeds `file` in pieces of the given sizes (cycled) and collects what comes out. */
async function decrypt(
  file: Buffer,
  options: Decryption,
  pieces: number[] = [file.length || 1],
): Promise<Outcome> {
  const out: Buffer[] = [];
  function* split(): Generator<Buffer> {
    for (let at = 0, i = 0; at < file.length; i++) {
      const n = pieces[i % pieces.length];
      yield file.subarray(at, at + n);
      at += n;
    }
  }
  try {
    await pipeline(
      Readable.from(split()),
      createDecryptStream(options),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          out.push(chunk);
          callback();
        },
      }),
    );
    return { released: Buffer.concat(out) };
  } catch (error) {
    return { released: Buffer.concat(out), error };
  }
}

/**
 * The vector's keys, X25519 ones only; a vector that gives none (it fails before a key matters)
 * gets an unrelated identity, as the API needs one key or a passphrase.
 */
function supportedKeys(v: Vector): Decryption {
  const identities = v.identities.filter((i) => !/^AGE-SECRET-KEY-PQ-/.test(i));
  const passphrase = v.passphrases[0];
  if (identities.length === 0 && passphrase === undefined) {
    return { identities: [generateIdentity().identity] };
  }
  return { identities, passphrase };
}

const sha256 = (data: Buffer): string => crypto.createHash('sha256').update(data).digest('hex');

const names = fs
  .readdirSync(DIR)
  .filter((name) => !['LICENSE', 'README.md'].includes(name))
  .sort();
const vectors = names.map(readVector);
const isHybrid = (v: Vector): boolean => v.identities.some((i) => /^AGE-SECRET-KEY-PQ-/.test(i));
const inScope = vectors.filter((v) => !v.armored && !isHybrid(v));
const armored = vectors.filter((v) => v.armored);
const hybrid = vectors.filter((v) => !v.armored && isHybrid(v));

/** Splits that put piece boundaries everywhere in the header, nonce and first chunk. */
const SPLITS: Record<string, number[]> = {
  'one write': [],
  'varied writes': [1, 7, 64, 4096, 65536 + 16 + 3],
};

it('reads all the vectors: 143 files, and each expectation is known', () => {
  expect(vectors).toHaveLength(143);
  expect(inScope.length + armored.length + hybrid.length).toBe(143);
  for (const v of vectors) {
    expect(['success', 'armor failure', ...Object.keys(FAILURE_OF)]).toContain(v.expect);
  }
  expect(inScope.length).toBeGreaterThan(90);
});

describe.each(Object.entries(SPLITS))('vectors in scope, fed in %s', (_split, pieces) => {
  it.each(inScope.map((v) => [v.name, v] as const))('%s', async (_name, v) => {
    const outcome = await decrypt(v.file, supportedKeys(v), pieces.length ? pieces : undefined);
    if (v.payload !== undefined) expect(sha256(outcome.released)).toBe(v.payload);
    if (v.expect === 'success') {
      expect(outcome.error).toBeUndefined();
      return;
    }
    expect(outcome.error).toBeInstanceOf(AgeError);
    expect((outcome.error as AgeError).failure).toBe(
      FAILURE_OF[v.expect as keyof typeof FAILURE_OF],
    );
    if (v.expect !== 'payload failure') expect(outcome.released).toHaveLength(0);
  });
});

describe('vectors out of scope are rejected without releasing plaintext', () => {
  it.each(armored.map((v) => [v.name, v] as const))('armored: %s', async (_name, v) => {
    const outcome = await decrypt(v.file, supportedKeys(v));
    expect(outcome.error).toBeInstanceOf(AgeError);
    expect(outcome.released).toHaveLength(0);
    // Those that start like an armored file are named as such.
    if (v.file.toString('latin1').startsWith('-----BEGIN AGE ENCRYPTED FILE-----')) {
      expect((outcome.error as AgeError).failure).toBe('unsupported');
      expect((outcome.error as AgeError).message).toMatch(/ASCII-armored/);
    }
  });

  it.each(hybrid.map((v) => [v.name, v] as const))('hybrid: %s', async (_name, v) => {
    // The vector's post-quantum identity is refused as an option, without echoing it.
    let refused: unknown;
    try {
      createDecryptStream({ identities: v.identities });
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ConfigurationError);
    const message = (refused as Error).message;
    expect(message).toMatch(/post-quantum/);
    for (const identity of v.identities) {
      expect(message).not.toContain(identity.slice(0, 20));
      expect(message.toLowerCase()).not.toContain(identity.slice(-20).toLowerCase());
    }
    // With the X25519 keys the vector gives, or an unrelated one, the file does not decrypt.
    const outcome = await decrypt(v.file, supportedKeys(v));
    expect(outcome.error).toBeInstanceOf(AgeError);
    expect(['no match', 'header']).toContain((outcome.error as AgeError).failure);
    expect(outcome.released).toHaveLength(0);
  });
});
