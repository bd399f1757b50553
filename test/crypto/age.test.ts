import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { inspect } from 'node:util';
import { ConfigurationError } from '../../src/core/errors.js';
import {
  AgeEncryptor,
  AgeError,
  createDecryptStream,
  createEncryptStream,
  generateIdentity,
  identityToRecipient,
  invalidRecipientValues,
  parseIdentities,
  parseRecipients,
  type Decryption,
  type AgeEncryptOptions,
} from '../../src/crypto/age.js';
import { written } from '../../src/core/streams.js';
import { mistypedSecretKeys, showsKey } from '../support/mistyped-keys.js';

const CHUNK = 65536;
const SEALED_CHUNK = CHUNK + 16;
const PASSPHRASE = 'correct horse battery staple 7f3c';

let dir: string;
/** Every secret used in this file; no error message may contain one of them. */
const secrets: string[] = [PASSPHRASE];
/** Every error observed by the failure tests, checked for secrets at the end. */
const observedErrors: unknown[] = [];

interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function run(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        if (error && code === -1) reject(error);
        else resolve({ code, stdout, stderr: stderr.toString() });
      },
    );
  });
}

async function runOk(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Buffer> {
  const result = await run(command, args, env);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  }
  return result.stdout;
}

/** Runs the age CLI on a pseudo-terminal, answering every passphrase prompt. */
const PTY_DRIVER = `
import os, pty, sys
pw = os.environ['AGE_TEST_PASSPHRASE'].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b''
answered = 0
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    seen += data
    prompts = seen.count(b'Enter passphrase') + seen.count(b'Confirm passphrase')
    while answered < prompts:
        try:
            os.write(fd, pw + b'\\n')
        except OSError:
            pass
        answered += 1
_, status = os.waitpid(pid, 0)
sys.stderr.write('prompts answered: %d\\n' % answered)
sys.exit(os.waitstatus_to_exitcode(status))
`;

function ageOnTerminal(args: string[], passphrase: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', PTY_DRIVER, 'age', ...args], {
      env: { ...process.env, AGE_TEST_PASSPHRASE: passphrase },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString(),
      }),
    );
  });
}

function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

async function through(stream: Transform, input: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(input), stream, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk);
  });
  return Buffer.concat(out);
}

function encrypt(data: Buffer, options: AgeEncryptOptions, pieceSize = 100_000): Promise<Buffer> {
  return through(createEncryptStream(options), pieces(data, pieceSize));
}

function decrypt(data: Buffer, options: Decryption, pieceSize = 100_000): Promise<Buffer> {
  return through(createDecryptStream(options), pieces(data, pieceSize));
}

/** Decrypts, expecting an AgeError; returns its message. */
async function decryptError(data: Buffer, options: Decryption): Promise<string> {
  let caught: unknown;
  try {
    await decrypt(data, options);
  } catch (err) {
    caught = err;
  }
  observedErrors.push(caught);
  expect(caught).toBeInstanceOf(AgeError);
  return (caught as AgeError).message;
}

function write(name: string, data: Buffer | string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return file;
}

/** Where the payload (nonce) starts: just after the "--- MAC" line. */
function headerLength(file: Buffer): number {
  const marker = file.indexOf('\n---');
  return file.indexOf('\n', marker + 1) + 1;
}

function flip(data: Buffer, offset: number): Buffer {
  const copy = Buffer.from(data);
  copy[offset] ^= 0x01;
  return copy;
}

const alice = generateIdentity();
const bob = generateIdentity();
const carol = generateIdentity();
secrets.push(alice.identity, bob.identity, carol.identity);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'age-test-'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('keys', () => {
  it('generates identities that age-keygen -y maps to the same recipient', async () => {
    const file = write('ours.key', `${alice.identity}\n`);
    const cli = (await runOk('age-keygen', ['-y', file])).toString().trim();
    expect(cli).toBe(alice.recipient);
    expect(alice.identity).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    expect(alice.recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect(identityToRecipient(alice.identity)).toBe(alice.recipient);
    expect(alice.identity).not.toBe(bob.identity);
  });

  it('derives the recipient of an age-keygen identity like age-keygen -y', async () => {
    const file = path.join(dir, 'cli.key');
    await runOk('age-keygen', ['-o', file]);
    const text = fs.readFileSync(file, 'utf8');
    const [identity] = parseIdentities(text);
    secrets.push(identity);
    const cli = (await runOk('age-keygen', ['-y', file])).toString().trim();
    expect(identityToRecipient(identity)).toBe(cli);
    expect(text).toContain(`# public key: ${cli}`);
  });

  it('rejects an invalid identity without echoing it', () => {
    const broken = alice.identity.slice(0, -1) + (alice.identity.endsWith('Q') ? 'P' : 'Q');
    let caught: unknown;
    try {
      identityToRecipient(broken);
    } catch (err) {
      caught = err;
    }
    observedErrors.push(caught);
    expect(caught).toBeInstanceOf(ConfigurationError);
    expect((caught as Error).message).not.toContain(broken);
    expect((caught as Error).message).toMatch(/not a valid age X25519 identity/);
  });
});

describe('our encryption, decrypted by the age CLI', () => {
  const sizes = [0, 1, 65535, 65536, 65537, 3 * 65536, 3 * 1024 * 1024 + 7];
  for (const size of sizes) {
    it(`round-trips ${size} bytes for one recipient`, async () => {
      const plaintext = crypto.randomBytes(size);
      const encrypted = await encrypt(plaintext, { recipients: [alice.recipient] }, 7777);
      expect(encrypted.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
      const file = write(`ours-${size}.age`, encrypted);
      const keyFile = write('alice.key', `${alice.identity}\n`);
      const decrypted = await runOk('age', ['-d', '-i', keyFile, file]);
      expect(decrypted.equals(plaintext)).toBe(true);
      // Our own decryption, fed in awkward piece sizes.
      expect(
        (await decrypt(encrypted, { identities: [alice.identity] }, 4099)).equals(plaintext),
      ).toBe(true);
      // STREAM framing: one 64 KiB chunk (+16) per full chunk, a final chunk even when empty.
      const payload = encrypted.length - headerLength(encrypted) - 16;
      const chunks = Math.max(1, Math.ceil(size / CHUNK));
      expect(payload).toBe(size + chunks * 16);
    });
  }

  it('encrypts to several recipients, each of which the CLI can decrypt with', async () => {
    const cliKey = path.join(dir, 'multi-cli.key');
    await runOk('age-keygen', ['-o', cliKey]);
    const cliRecipient = (await runOk('age-keygen', ['-y', cliKey])).toString().trim();
    secrets.push(...parseIdentities(fs.readFileSync(cliKey, 'utf8')));
    const plaintext = crypto.randomBytes(200_000);
    const encrypted = await encrypt(plaintext, {
      recipients: [alice.recipient, bob.recipient, cliRecipient],
    });
    const file = write('multi.age', encrypted);
    const keys = [
      write('multi-alice.key', `${alice.identity}\n`),
      write('multi-bob.key', `${bob.identity}\n`),
      cliKey,
    ];
    for (const key of keys) {
      expect((await runOk('age', ['-d', '-i', key, file])).equals(plaintext)).toBe(true);
    }
    const carolKey = write('multi-carol.key', `${carol.identity}\n`);
    const refused = await run('age', ['-d', '-i', carolKey, file]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/no identity matched/);
  });
});

describe('AgeEncryptor, fed synchronously from a reused buffer', () => {
  it('keeps no reference to its input: the CLI decrypts what was fed, not what the buffer later held', async () => {
    const plaintext = crypto.randomBytes(5 * CHUNK + 1234);
    const encryptor = await AgeEncryptor.create({ recipients: [alice.recipient] });
    const reused = Buffer.alloc(10_000);
    const out: Buffer[] = [];
    for (let at = 0; at < plaintext.length; at += reused.length) {
      const n = plaintext.copy(reused, 0, at, at + reused.length);
      out.push(...encryptor.update(reused.subarray(0, n)));
      reused.fill(0xee);
    }
    out.push(...encryptor.final());
    const file = write('reused.age', Buffer.concat(out));
    const keyFile = write('alice.key', `${alice.identity}\n`);
    expect((await runOk('age', ['-d', '-i', keyFile, file])).equals(plaintext)).toBe(true);
  });

  it('rejects invalid options with a ConfigurationError', async () => {
    await expect(AgeEncryptor.create({ recipients: ['age1nope'] })).rejects.toBeInstanceOf(
      ConfigurationError,
    );
  });
});

describe('decryption fed from a reused buffer', () => {
  /**
   * Decrypts `encrypted` written in pieces of `pieceSize` from one buffer, overwritten as soon as
   * each write calls back, as a reader reusing its buffer does.
   */
  async function decryptReused(
    encrypted: Buffer,
    options: Decryption,
    pieceSize: number,
  ): Promise<Buffer> {
    const stream = createDecryptStream(options);
    const out: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => out.push(chunk));
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const reused = Buffer.alloc(pieceSize);
    for (let at = 0; at < encrypted.length; at += pieceSize) {
      const n = encrypted.copy(reused, 0, at, at + pieceSize);
      await written(stream, reused.subarray(0, n));
      reused.fill(0xee);
    }
    stream.end();
    await ended;
    return Buffer.concat(out);
  }

  it('keeps no reference to its input once a write called back, across header, nonce and chunks', async () => {
    const plaintext = crypto.randomBytes(5 * CHUNK + 1234);
    const encrypted = await encrypt(plaintext, { recipients: [alice.recipient] });
    // Pieces smaller than the header, across chunk edges, and larger than several chunks.
    for (const pieceSize of [7, 1000, SEALED_CHUNK - 1, SEALED_CHUNK + 1, 3 * SEALED_CHUNK + 5]) {
      const decrypted = await decryptReused(encrypted, { identities: [alice.identity] }, pieceSize);
      expect(decrypted.equals(plaintext)).toBe(true);
    }
  });

  it('holds while the passphrase is being checked, which takes time', async () => {
    const plaintext = crypto.randomBytes(2 * CHUNK + 99);
    const encrypted = await encrypt(plaintext, {
      recipients: [],
      passphrase: PASSPHRASE,
      scryptWorkFactor: 14,
    });
    const options = { identities: [], passphrase: PASSPHRASE };
    for (const pieceSize of [64, 100_000]) {
      expect((await decryptReused(encrypted, options, pieceSize)).equals(plaintext)).toBe(true);
    }
  });
});

describe('age CLI encryption, decrypted by us', () => {
  it('decrypts files for age-keygen keys and for our keys, several recipients', async () => {
    const cliKey = path.join(dir, 'cli2.key');
    await runOk('age-keygen', ['-o', cliKey]);
    const cliIdentities = parseIdentities(fs.readFileSync(cliKey, 'utf8'));
    secrets.push(...cliIdentities);
    const cliRecipient = (await runOk('age-keygen', ['-y', cliKey])).toString().trim();
    for (const size of [0, 1, 65536, 65537, 1_000_000]) {
      const plaintext = crypto.randomBytes(size);
      const input = write(`cli-${size}.bin`, plaintext);
      const output = path.join(dir, `cli-${size}.age`);
      await runOk('age', ['-r', cliRecipient, '-r', alice.recipient, '-o', output, input]);
      const encrypted = fs.readFileSync(output);
      expect((await decrypt(encrypted, { identities: cliIdentities })).equals(plaintext)).toBe(
        true,
      );
      // One-byte writes across the header and the first chunks; a megabyte of them adds nothing.
      const pieceSize = size > 65537 ? 7919 : 1;
      expect((await decrypt(encrypted, { identities: [alice.identity] }, pieceSize)).length).toBe(
        size,
      );
      expect(
        (await decrypt(encrypted, { identities: [bob.identity, alice.identity] })).equals(
          plaintext,
        ),
      ).toBe(true);
    }
  });
});

describe('passphrases', () => {
  it('our passphrase encryption decrypts with the age CLI', async () => {
    const plaintext = crypto.randomBytes(150_000);
    const encrypted = await encrypt(plaintext, {
      recipients: [],
      passphrase: PASSPHRASE,
      scryptWorkFactor: 10,
    });
    expect(encrypted.toString('latin1', 0, 200)).toMatch(/\n-> scrypt [A-Za-z0-9+/]{22} 10\n/);
    const file = write('pass-ours.age', encrypted);
    const out = path.join(dir, 'pass-ours.out');
    const result = await ageOnTerminal(['-d', '-o', out, file], PASSPHRASE);
    expect(result.code).toBe(0);
    expect(fs.readFileSync(out).equals(plaintext)).toBe(true);
    expect(
      (await decrypt(encrypted, { identities: [], passphrase: PASSPHRASE })).equals(plaintext),
    ).toBe(true);
  });

  it('decrypts a file the age CLI encrypted with a passphrase (work factor 18)', async () => {
    const plaintext = crypto.randomBytes(70_000);
    const input = write('pass-cli.bin', plaintext);
    const file = path.join(dir, 'pass-cli.age');
    const result = await ageOnTerminal(['-p', '-o', file, input], PASSPHRASE);
    expect(result.code).toBe(0);
    const encrypted = fs.readFileSync(file);
    expect(encrypted.toString('latin1', 0, 200)).toMatch(/\n-> scrypt [A-Za-z0-9+/]{22} 18\n/);
    const decrypted = await decrypt(encrypted, {
      identities: [alice.identity],
      passphrase: PASSPHRASE,
    });
    expect(decrypted.equals(plaintext)).toBe(true);
  });

  it('refuses recipients together with a passphrase', () => {
    expect(() =>
      createEncryptStream({ recipients: [alice.recipient], passphrase: PASSPHRASE }),
    ).toThrow(ConfigurationError);
    expect(() =>
      createEncryptStream({ recipients: [alice.recipient], passphrase: PASSPHRASE }),
    ).toThrow(/either public-key recipients or one passphrase, not both/);
    expect(() => createEncryptStream({ recipients: [] })).toThrow(ConfigurationError);
    expect(() =>
      createEncryptStream({ recipients: [], passphrase: PASSPHRASE, scryptWorkFactor: 23 }),
    ).toThrow(/work factor/);
  });
});

describe('decryption failures', () => {
  // 3 full chunks and a short final one.
  const plaintext = crypto.randomBytes(3 * CHUNK + 1000);
  let file: Buffer;
  let twoRecipients: Buffer;
  let passphraseFile: Buffer;
  const aliceOnly: Decryption = { identities: [alice.identity] };

  beforeAll(async () => {
    file = await encrypt(plaintext, { recipients: [alice.recipient] });
    twoRecipients = await encrypt(plaintext, { recipients: [alice.recipient, bob.recipient] });
    passphraseFile = await encrypt(plaintext, {
      recipients: [],
      passphrase: PASSPHRASE,
      scryptWorkFactor: 10,
    });
  });

  it('wrong identity', async () => {
    expect(await decryptError(file, { identities: [bob.identity, carol.identity] })).toBe(
      'the age identity given does not match any recipient of this backup',
    );
  });

  it('wrong passphrase, and missing passphrase or identity', async () => {
    expect(
      await decryptError(passphraseFile, { identities: [], passphrase: `${PASSPHRASE}!` }),
    ).toMatch(/^the passphrase is wrong/);
    expect(await decryptError(passphraseFile, aliceOnly)).toMatch(
      /encrypted with a passphrase, but no passphrase was given/,
    );
    expect(await decryptError(file, { identities: [], passphrase: PASSPHRASE })).toMatch(
      /encrypted to age public keys, not with a passphrase/,
    );
  });

  it('a flipped byte in the payload names the chunk', async () => {
    const start = headerLength(file) + 16;
    expect(await decryptError(flip(file, start + SEALED_CHUNK + 100), aliceOnly)).toBe(
      'payload chunk 1 failed authentication: the backup data is corrupted',
    );
    expect(await decryptError(flip(file, start + 3 * SEALED_CHUNK + 5), aliceOnly)).toMatch(
      /^the final payload chunk \(chunk 3\) failed authentication/,
    );
    // The payload nonce feeds the payload key: every chunk fails.
    expect(await decryptError(flip(file, start - 3), aliceOnly)).toMatch(/^payload chunk 0 failed/);
  });

  it('a flipped byte in the header fails the header MAC', async () => {
    // Bob's stanza body (the 4th line) does not matter to Alice, but the MAC covers it.
    const lines = twoRecipients
      .subarray(0, headerLength(twoRecipients))
      .toString('latin1')
      .split('\n');
    expect(lines[3]).toMatch(/^-> X25519 /);
    const bobBody = lines.slice(0, 4).join('\n').length + 1 + 10;
    const tampered = Buffer.from(twoRecipients);
    tampered[bobBody] = tampered[bobBody] === 0x41 ? 0x42 : 0x41;
    expect(await decryptError(tampered, aliceOnly)).toMatch(
      /^the age header MAC does not match: the header was modified/,
    );
    const macByte = headerLength(file) - 10;
    const badMac = Buffer.from(file);
    badMac[macByte] = badMac[macByte] === 0x41 ? 0x42 : 0x41;
    expect(await decryptError(badMac, aliceOnly)).toMatch(/^the age header MAC does not match/);
    // A flip in Alice's own stanza means the identity no longer matches it.
    const aliceBody = lines.slice(0, 2).join('\n').length + 1 + 10;
    const broken = Buffer.from(twoRecipients);
    broken[aliceBody] = broken[aliceBody] === 0x41 ? 0x42 : 0x41;
    expect(await decryptError(broken, aliceOnly)).toBe(
      'the age identity given does not match any recipient of this backup',
    );
  });

  it('truncation', async () => {
    const payloadStart = headerLength(file) + 16;
    // Drop the final chunk: the file now ends on a full, non-final chunk.
    expect(await decryptError(file.subarray(0, payloadStart + 3 * SEALED_CHUNK), aliceOnly)).toBe(
      'the age file is truncated: it ends after chunk 2 without the final chunk',
    );
    expect(await decryptError(file.subarray(0, file.length - 5), aliceOnly)).toMatch(
      /^the final payload chunk \(chunk 3\) failed authentication: the backup data is corrupted or the file is truncated/,
    );
    expect(
      await decryptError(file.subarray(0, payloadStart + 2 * SEALED_CHUNK + 7), aliceOnly),
    ).toBe('the age file is truncated: chunk 2 is incomplete');
    expect(await decryptError(file.subarray(0, payloadStart), aliceOnly)).toBe(
      'the age file is truncated: it has no payload',
    );
    expect(await decryptError(file.subarray(0, payloadStart - 4), aliceOnly)).toBe(
      'the age file is truncated: it ends before the payload nonce',
    );
    expect(await decryptError(file.subarray(0, 60), aliceOnly)).toBe(
      'the age file is truncated: it ends inside the header',
    );
    // The CLI agrees these files are broken.
    const cut = write('cut.age', file.subarray(0, payloadStart + 3 * SEALED_CHUNK));
    const key = write('cut.key', `${alice.identity}\n`);
    expect(
      (await run('age', ['-d', '-i', key, '-o', path.join(dir, 'cut.out'), cut])).code,
    ).not.toBe(0);
  });

  it('trailing data after the final chunk', async () => {
    const full = await encrypt(crypto.randomBytes(2 * CHUNK), { recipients: [alice.recipient] });
    expect(await decryptError(Buffer.concat([full, Buffer.from('garbage')]), aliceOnly)).toBe(
      'the age file has trailing data after the final chunk (chunk 1)',
    );
    expect(
      await decryptError(Buffer.concat([full, crypto.randomBytes(SEALED_CHUNK + 5)]), aliceOnly),
    ).toBe('the age file has trailing data after the final chunk (chunk 1)');
    // After a short final chunk the garbage is indistinguishable from a corrupted final chunk.
    expect(await decryptError(Buffer.concat([file, Buffer.from('garbage')]), aliceOnly)).toMatch(
      /^the final payload chunk \(chunk 3\) failed authentication/,
    );
  });

  it('not an age file', async () => {
    expect(await decryptError(crypto.randomBytes(1000), aliceOnly)).toMatch(
      /^the input is not an age encrypted file/,
    );
    expect(await decryptError(Buffer.from('hello\n'), aliceOnly)).toMatch(
      /^the input is not an age encrypted file/,
    );
    expect(await decryptError(Buffer.alloc(0), aliceOnly)).toBe(
      'the input is empty: it is not an age encrypted file',
    );
    expect(await decryptError(Buffer.from('age-encryption.org/v2\n-> X\n'), aliceOnly)).toMatch(
      /^unsupported age format version: the file starts with "age-encryption.org\/v2"/,
    );
    const plain = write('armor.txt', 'armored');
    const armored = await runOk('age', ['-a', '-r', alice.recipient, plain]);
    expect(await decryptError(armored, aliceOnly)).toMatch(/ASCII-armored/);
  });

  it('enforces the header rules', async () => {
    const header = passphraseFile.subarray(0, headerLength(passphraseFile)).toString('latin1');
    const rest = passphraseFile.subarray(headerLength(passphraseFile));
    const withWorkFactor = (wf: string): Buffer =>
      Buffer.concat([Buffer.from(header.replace(/ 10\n/, ` ${wf}\n`), 'latin1'), rest]);
    const options = { identities: [], passphrase: PASSPHRASE };
    expect(await decryptError(withWorkFactor('23'), options)).toBe(
      'the scrypt work factor of this file (23) is above the limit of 22',
    );
    expect(await decryptError(withWorkFactor('010'), options)).toMatch(
      /invalid scrypt work factor/,
    );
    // Padding in a stanza body is not allowed.
    const lines = header.split('\n');
    lines[2] = `${lines[2]}=`;
    expect(
      await decryptError(Buffer.concat([Buffer.from(lines.join('\n'), 'latin1'), rest]), options),
    ).toBe('the age header is malformed (line 3): invalid stanza body line');
    // An scrypt stanza must be alone.
    const withX25519 = file.subarray(0, headerLength(file)).toString('latin1').split('\n');
    const mixed = [
      lines[0],
      lines[1],
      lines[2].slice(0, -1),
      withX25519[1],
      withX25519[2],
      lines[3],
      '',
    ];
    expect(
      await decryptError(Buffer.concat([Buffer.from(mixed.join('\n'), 'latin1'), rest]), options),
    ).toMatch(/scrypt\) stanza must be the only stanza/);
  });
});

/** An independent writer of age files, to exercise header shapes our encryptor never makes. */
function craftAgeFile(
  recipient: string,
  extraStanzas: string,
  plaintext: Buffer,
  options: { rewrap?: (header: string) => string; emptyFinalChunk?: boolean } = {},
): Buffer {
  const b64 = (data: Buffer): string => data.toString('base64').replace(/=+$/, '');
  const hkdf = (ikm: Buffer, salt: Buffer, info: string): Buffer =>
    Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, 32));
  const seal = (key: Buffer, nonce: Buffer, data: Buffer): Buffer => {
    const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
  };
  const fileKey = crypto.randomBytes(16);
  const words = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
  const bits = [...recipient.slice(4, -6)].map((c) =>
    words.indexOf(c).toString(2).padStart(5, '0'),
  );
  const point = Buffer.from(
    bits
      .join('')
      .slice(0, 256)
      .match(/.{8}/g)!
      .map((b) => parseInt(b, 2)),
  );
  const ephemeral = crypto.generateKeyPairSync('x25519');
  const share = Buffer.from(ephemeral.publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const recipientKey = crypto.createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: point.toString('base64url') },
    format: 'jwk',
  });
  const shared = crypto.diffieHellman({
    privateKey: ephemeral.privateKey,
    publicKey: recipientKey,
  });
  const wrapKey = hkdf(shared, Buffer.concat([share, point]), 'age-encryption.org/v1/X25519');
  let header =
    'age-encryption.org/v1\n' +
    extraStanzas +
    `-> X25519 ${b64(share)}\n${b64(seal(wrapKey, Buffer.alloc(12), fileKey))}\n---`;
  if (options.rewrap) header = options.rewrap(header);
  const mac = crypto
    .createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(header)
    .digest();
  const nonce = crypto.randomBytes(16);
  const payloadKey = hkdf(fileKey, nonce, 'payload');
  const chunks: Buffer[] = [];
  const count =
    Math.max(1, Math.ceil(plaintext.length / CHUNK)) + (options.emptyFinalChunk ? 1 : 0);
  for (let i = 0; i < count; i++) {
    const chunkNonce = Buffer.alloc(12);
    chunkNonce.writeUIntBE(i, 5, 6);
    chunkNonce[11] = i === count - 1 ? 1 : 0;
    chunks.push(seal(payloadKey, chunkNonce, plaintext.subarray(i * CHUNK, (i + 1) * CHUNK)));
  }
  return Buffer.concat([Buffer.from(`${header} ${b64(mac)}\n`, 'latin1'), nonce, ...chunks]);
}

describe('header parsing against the spec', () => {
  const body96 = crypto.randomBytes(96).toString('base64'); // 128 characters, no padding
  const wrapped = `${body96.slice(0, 64)}\n${body96.slice(64)}\n\n`;

  it('skips unknown stanzas with multi-line bodies (as the CLI does)', async () => {
    const plaintext = crypto.randomBytes(CHUNK + 3);
    const crafted = craftAgeFile(
      alice.recipient,
      `-> unknown-grease a-b !x~\n${wrapped}-> other\nAA\n`,
      plaintext,
    );
    expect((await decrypt(crafted, { identities: [alice.identity] }, 13)).equals(plaintext)).toBe(
      true,
    );
    const file = write('crafted.age', crafted);
    const key = write('crafted.key', `${alice.identity}\n`);
    expect((await runOk('age', ['-d', '-i', key, file])).equals(plaintext)).toBe(true);
  });

  it('rejects bodies that break the 64-column rule', async () => {
    const options = { identities: [alice.identity] };
    const longLine = craftAgeFile(alice.recipient, `-> grease\n${body96}\n`, Buffer.from('x'));
    expect(await decryptError(longLine, options)).toBe(
      'the age header is malformed (line 3): invalid stanza body line',
    );
    const noShortLine = craftAgeFile(
      alice.recipient,
      `-> grease\n${body96.slice(0, 64)}\n${body96.slice(64)}\n`,
      Buffer.from('x'),
    );
    expect(await decryptError(noShortLine, options)).toBe(
      'the age header is malformed (line 5): stanza ended without a short body line',
    );
    const emptyArg = craftAgeFile(alice.recipient, '-> grease  x\n\n', Buffer.from('x'));
    expect(await decryptError(emptyArg, options)).toBe(
      'the age header is malformed (line 2): invalid stanza line',
    );
    const crlfIntro = craftAgeFile(alice.recipient, '', Buffer.from('x'), {
      rewrap: (h) => h.replace('\n-> X', '\r\n-> X'),
    });
    expect(await decryptError(crlfIntro, options)).toMatch(/^unsupported age format version/);
    const crlfBody = craftAgeFile(alice.recipient, '', Buffer.from('x'), {
      rewrap: (h) => h.replace('\n---', '\r\n---'),
    });
    expect(await decryptError(crlfBody, options)).toBe(
      'the age header is malformed (line 3): invalid stanza body line',
    );
  });

  it('rejects an empty final chunk after a full one', async () => {
    const crafted = craftAgeFile(alice.recipient, '', crypto.randomBytes(CHUNK), {
      emptyFinalChunk: true,
    });
    expect(await decryptError(crafted, { identities: [alice.identity] })).toBe(
      'the age payload is malformed: the final chunk 1 is empty',
    );
    const file = write('empty-final.age', crafted);
    const key = write('empty-final.key', `${alice.identity}\n`);
    expect(
      (await run('age', ['-d', '-i', key, '-o', path.join(dir, 'ef.out'), file])).code,
    ).not.toBe(0);
    // The same crafting without the extra chunk is a valid file.
    const valid = craftAgeFile(alice.recipient, '', crypto.randomBytes(CHUNK));
    expect((await runOk('age', ['-d', '-i', key, write('valid.age', valid)])).length).toBe(CHUNK);
  });
});

describe('the 1 MiB header limit, however the input is split into writes', () => {
  const LIMIT = 1024 * 1024;
  /** The intro line, the X25519 stanza and the MAC line of craftAgeFile's header. */
  const FIXED = 22 + 98 + 48;

  /** A file whose header (through the MAC line's newline) is `size` bytes. */
  function fileWithHeader(size: number, plaintext: Buffer): Buffer {
    let extra = size - FIXED;
    let stanzas = '';
    // Unknown stanzas with an empty body, "-> g <argument>\n\n": 1,007 bytes each, the last
    // one cut to what remains.
    while (extra > 0) {
      const n = extra >= 1007 + 8 || extra <= 1007 ? Math.min(extra, 1007) : extra - 8;
      stanzas += `-> g ${'a'.repeat(n - 7)}\n\n`;
      extra -= n;
    }
    const file = craftAgeFile(alice.recipient, stanzas, plaintext);
    expect(headerLength(file)).toBe(size);
    return file;
  }

  /** Splits `data` at every one of `sizes` in turn. */
  function cut(data: Buffer, sizes: number[]): Buffer[] {
    const out: Buffer[] = [];
    for (let at = 0, i = 0; at < data.length; i++) {
      const n = sizes[i % sizes.length];
      out.push(data.subarray(at, at + n));
      at += n;
    }
    return out;
  }

  const splits = (file: Buffer): Record<string, Buffer[]> => ({
    'one write': [file],
    // Byte by byte across the limit (a megabyte of one-byte writes before it tests nothing more).
    'one-byte writes across the limit': [
      file.subarray(0, LIMIT - 4096),
      ...cut(file.subarray(LIMIT - 4096, LIMIT + 4096), [1]),
      file.subarray(LIMIT + 4096),
    ],
    'writes of 1 to 5,000 bytes': cut(file, [1, 4999, 17, 3000, 64, 2]),
    'a write ending at the limit': cut(file, [LIMIT, file.length]),
    'a write ending just past the limit': cut(file, [LIMIT + 1, file.length]),
  });

  it('accepts a header of exactly 1 MiB in every split', async () => {
    const plaintext = crypto.randomBytes(CHUNK + 5);
    const file = fileWithHeader(LIMIT, plaintext);
    for (const [split, input] of Object.entries(splits(file))) {
      const out = await through(createDecryptStream({ identities: [alice.identity] }), input);
      expect([split, out.equals(plaintext)]).toEqual([split, true]);
    }
  });

  it('rejects a header one byte over in every split', async () => {
    const file = fileWithHeader(LIMIT + 1, crypto.randomBytes(100));
    for (const [split, input] of Object.entries(splits(file))) {
      let caught: unknown;
      const out: Buffer[] = [];
      await pipeline(
        Readable.from(input),
        createDecryptStream({ identities: [alice.identity] }),
        async (source: AsyncIterable<Buffer>) => {
          for await (const chunk of source) out.push(chunk);
        },
      ).catch((error: unknown) => (caught = error));
      expect([split, (caught as Error | undefined)?.message]).toEqual([
        split,
        `the age header is larger than ${LIMIT} bytes`,
      ]);
      expect(out).toHaveLength(0);
    }
  });

  it('rejects a closing line that does not end the same way in every split', async () => {
    const file = craftAgeFile(alice.recipient, '', Buffer.from('x'));
    const at = headerLength(file) - 1;
    const long = Buffer.concat([file.subarray(0, at), Buffer.alloc(200, 'A'), file.subarray(at)]);
    for (const [split, input] of Object.entries(splits(long))) {
      let caught: unknown;
      await through(createDecryptStream({ identities: [alice.identity] }), input).catch(
        (error: unknown) => (caught = error),
      );
      expect([split, (caught as Error | undefined)?.message]).toEqual([
        split,
        'the age header is malformed: invalid closing (MAC) line',
      ]);
    }
  });
});

describe('streaming', () => {
  it('pipes 64 MiB through encrypt and decrypt with bounded buffering', async () => {
    const total = 64 * 1024 * 1024;
    const pieceSize = 48 * 1024 + 5;
    let produced = 0;
    let consumed = 0;
    let maxInFlight = 0;
    const inputHash = crypto.createHash('sha256');
    const outputHash = crypto.createHash('sha256');
    function* source(): Generator<Buffer> {
      while (produced < total) {
        const piece = crypto.randomBytes(Math.min(pieceSize, total - produced));
        inputHash.update(piece);
        produced += piece.length;
        maxInFlight = Math.max(maxInFlight, produced - consumed);
        yield piece;
      }
    }
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        outputHash.update(chunk);
        consumed += chunk.length;
        callback();
      },
    });
    await pipeline(
      Readable.from(source()),
      createEncryptStream({ recipients: [alice.recipient] }),
      createDecryptStream({ identities: [alice.identity] }),
      sink,
    );
    expect(consumed).toBe(total);
    expect(outputHash.digest('hex')).toBe(inputHash.digest('hex'));
    // Only the streams' buffers are in flight, never a sizeable part of the input.
    expect(maxInFlight).toBeLessThan(6 * 1024 * 1024);
  });

  it('waits for a slow consumer (backpressure)', async () => {
    let produced = 0;
    const encryptor = createEncryptStream({ recipients: [alice.recipient] });
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 1000; i++) {
          produced += CHUNK;
          yield Buffer.alloc(CHUNK, i);
        }
      })(),
    );
    source.pipe(encryptor);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Nobody reads the output: production stops after a few chunks instead of 64 MB.
    expect(produced).toBeLessThan(64 * CHUNK);
    expect(produced).toBeGreaterThan(0);
    source.destroy();
    encryptor.destroy();
  });

  it('handles one-byte writes', async () => {
    const plaintext = crypto.randomBytes(CHUNK + 10);
    const encrypted = await encrypt(plaintext, { recipients: [alice.recipient] }, 1);
    expect((await decrypt(encrypted, { identities: [alice.identity] }, 1)).equals(plaintext)).toBe(
      true,
    );
  });
});

describe('parseRecipients and parseIdentities', () => {
  it('reads recipients one per line or comma separated, with comments', () => {
    const text = `# team keys\n\n${alice.recipient}\n  ${bob.recipient} , ${carol.recipient}\r\n# end\n${alice.recipient}\n`;
    expect(parseRecipients(text)).toEqual([alice.recipient, bob.recipient, carol.recipient]);
    expect(parseRecipients('')).toEqual([]);
  });

  it('rejects a bad recipient naming its line and item, never the value', () => {
    const bad = `${alice.recipient.slice(0, -1)}${alice.recipient.endsWith('q') ? 'p' : 'q'}`;
    const problem = (text: string): string => {
      let caught: unknown;
      try {
        parseRecipients(text);
      } catch (err) {
        caught = err;
      }
      observedErrors.push(caught);
      expect(caught).toBeInstanceOf(ConfigurationError);
      return (caught as Error).message;
    };
    expect(problem(`# keys\n${alice.recipient}\n${bad}\n`)).toBe(
      'age recipients, line 3: not a valid age X25519 recipient: a character is wrong, missing or extra (its checksum does not match)',
    );
    expect(problem(`${alice.recipient},nope`)).toBe(
      'age recipients, line 1, item 2: not an age X25519 recipient (age1...)',
    );
    expect(problem('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG')).toBe(
      'age recipients, line 1: SSH keys are not supported, only age X25519 recipients (age1...)',
    );
    expect(problem(`${bad}`)).not.toContain(bad.slice(4, 12));
  });

  it('never shows a secret key typed into the recipients, however it is spelled', () => {
    for (const [spelling, value] of Object.entries(mistypedSecretKeys(alice.identity))) {
      for (const [where, attempt] of [
        ['line 2', () => parseRecipients(`# keys\n${value}\n${bob.recipient}`)],
        ['line 1, item 2', () => parseRecipients(`${bob.recipient}, ${value}`)],
        ['age recipient 2', () => createEncryptStream({ recipients: [bob.recipient, value] })],
      ] as const) {
        let caught: unknown;
        try {
          attempt();
        } catch (err) {
          caught = err;
        }
        observedErrors.push(caught);
        expect([spelling, caught]).toEqual([spelling, expect.any(ConfigurationError)]);
        const message = (caught as Error).message;
        expect([spelling, message]).toEqual([spelling, expect.stringContaining(where)]);
        expect([spelling, showsKey(message, alice.identity)]).toEqual([spelling, false]);
        if (spelling !== 'without its prefix') {
          expect([spelling, message]).toEqual([
            spelling,
            expect.stringContaining(
              'this looks like an age secret key (identity), not a recipient',
            ),
          ]);
        }
      }
    }
  });

  it('lists what to mask in a recipients text: what is not a recipient', () => {
    const spelled = mistypedSecretKeys(alice.identity)['with spaces'];
    const text = `# team keys, rotated\n${bob.recipient}\n${carol.recipient}, ${spelled}\n`;
    const masked = invalidRecipientValues(text);
    expect(masked).toContain(spelled);
    expect(masked).toContain(spelled.split(' ')[1]);
    expect(masked).toContain(spelled.split(' ')[2]);
    expect(masked.join('\n')).not.toContain(bob.recipient);
    expect(masked.join('\n')).not.toContain('rotated');
    expect(invalidRecipientValues(`${bob.recipient}\n# note`)).toEqual([]);
  });

  it('reads the age-keygen file format', async () => {
    const file = path.join(dir, 'parse.key');
    await runOk('age-keygen', ['-o', file]);
    const identities = parseIdentities(
      `${fs.readFileSync(file, 'utf8')}\n# second\n${alice.identity}\r\n\n`,
    );
    secrets.push(identities[0]);
    expect(identities).toHaveLength(2);
    expect(identities[0]).toMatch(/^AGE-SECRET-KEY-1/);
    expect(identities[1]).toBe(alice.identity);
  });

  it('rejects a bad identity line by number, never echoing it', () => {
    // Two checksum characters changed, never to what they were: the key is random.
    const badTail = alice.identity.endsWith('AA') ? 'QQ' : 'AA';
    const cases: Array<[string, RegExp]> = [
      [`${alice.identity.slice(0, -2)}${badTail}`, /line 3: not a valid age X25519 identity/],
      [alice.recipient, /line 3: this is a public key/],
      [alice.identity.toLowerCase().slice(0, 40) + alice.identity.slice(40), /line 3: not a valid/],
    ];
    for (const [line, expected] of cases) {
      let caught: unknown;
      try {
        parseIdentities(`# created: now\n# public key: x\n${line}\n`);
      } catch (err) {
        caught = err;
      }
      observedErrors.push(caught);
      expect(caught).toBeInstanceOf(ConfigurationError);
      expect((caught as Error).message).toMatch(expected);
      expect((caught as Error).message).not.toContain(line);
      expect((caught as Error).message).not.toContain(line.slice(16, 40));
    }
    expect(() => createDecryptStream({ identities: ['AGE-SECRET-KEY-1NOPE'] })).toThrow(
      'invalid age identity number 1: not a valid age X25519 identity (AGE-SECRET-KEY-1...)',
    );
    for (const [spelling, value] of Object.entries(mistypedSecretKeys(alice.identity))) {
      if (spelling === 'as age-keygen writes it' || spelling === 'in lower case') continue;
      for (const [where, attempt] of [
        ['line 2', () => parseIdentities(`# created: now\n${value}\n`)],
        ['number 1', () => createDecryptStream({ identities: [value] })],
      ] as const) {
        let caught: unknown;
        try {
          attempt();
        } catch (err) {
          caught = err;
        }
        observedErrors.push(caught);
        expect([spelling, caught]).toEqual([spelling, expect.any(ConfigurationError)]);
        const message = (caught as Error).message;
        expect([spelling, message]).toEqual([spelling, expect.stringContaining(where)]);
        expect([spelling, showsKey(message, alice.identity)]).toEqual([spelling, false]);
      }
    }
  });
});

describe('secrets', () => {
  it('never appear in error messages or stream errors', () => {
    // Runs last: the failure tests above have filled observedErrors.
    expect(observedErrors.length).toBeGreaterThan(25);
    for (const err of observedErrors) {
      expect(err).toBeInstanceOf(Error);
      const rendered = `${String(err)}\n${(err as Error).stack ?? ''}\n${inspect(err)}`;
      for (const secret of secrets) {
        expect(rendered).not.toContain(secret);
        expect(rendered.toLowerCase()).not.toContain(secret.toLowerCase().slice(16, 48));
      }
    }
  });
});
