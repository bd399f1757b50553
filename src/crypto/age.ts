/**
 * The age v1 file format (https://age-encryption.org/v1) as Node streams, built on node:crypto
 * only: X25519 and scrypt recipients, HKDF-SHA256, HMAC-SHA256 and the ChaCha20-Poly1305 STREAM
 * payload in 64 KiB chunks. Output is the binary format; files interoperate with the `age` CLI.
 */
import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { asError, ConfigurationError } from '../core/errors.js';
import { processingStream } from '../core/streams.js';
import { bech32Decode, bech32Encode } from './bech32.js';

/**
 * What failed, in the terms of the age test vectors (C2SP/CCTV): the header does not parse (or
 * the file is not binary age v1), no stanza unwraps with the keys given, the header MAC does not
 * match, or the payload does not decrypt to its end. `unsupported`: a valid age file in a form
 * this implementation does not read (ASCII armor).
 */
export type AgeFailure = 'header' | 'no match' | 'hmac' | 'payload' | 'unsupported';

/** Every failure to decrypt an age file. Messages name the cause and never contain key material. */
export class AgeError extends Error {
  constructor(
    message: string,
    readonly failure: AgeFailure,
  ) {
    super(message);
    this.name = 'AgeError';
  }
}

export interface AgeEncryptOptions {
  /** X25519 recipients (`age1...`). */
  recipients: string[];
  /** Encrypt with this passphrase (scrypt) instead of recipients. */
  passphrase?: string;
  /** log2 of the scrypt N parameter for passphrase encryption; 18 like the age CLI. */
  scryptWorkFactor?: number;
}

/** The keys that open an age file: X25519 identities, a passphrase, or both. */
export interface Decryption {
  /** X25519 identities (`AGE-SECRET-KEY-1...`). */
  identities: string[];
  /** Passphrase for files encrypted with scrypt. */
  passphrase?: string;
}

const INTRO = 'age-encryption.org/v1\n';
const INTRO_BYTES = Buffer.from(INTRO, 'latin1');
const VERSION_PREFIX = Buffer.from('age-encryption.org/', 'latin1');
const ARMOR_BEGIN = Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----', 'latin1');
const MAC_LINE_MARKER = Buffer.from('\n---', 'latin1');
const CHUNK_SIZE = 64 * 1024;
const TAG_SIZE = 16;
const ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE;
const FILE_KEY_SIZE = 16;
const NONCE_SIZE = 16;
const COLUMNS_PER_LINE = 64;
const BYTES_PER_LINE = (COLUMNS_PER_LINE / 4) * 3;
/** Headers larger than this are rejected instead of buffered (about 10,000 X25519 recipients). */
const MAX_HEADER_SIZE = 1024 * 1024;
/** Longer than any valid MAC line (48 bytes): a stray "\n---" is not waited on forever. */
const MAX_MAC_LINE = 128;
const X25519_LABEL = 'age-encryption.org/v1/X25519';
const SCRYPT_LABEL = 'age-encryption.org/v1/scrypt';
const IDENTITY_HRP = 'AGE-SECRET-KEY-';
const RECIPIENT_HRP = 'age';
const DEFAULT_SCRYPT_WORK_FACTOR = 18;
/** The age CLI refuses to decrypt above this work factor by default; so do we. */
const MAX_SCRYPT_WORK_FACTOR = 22;
const STREAM_HIGH_WATER_MARK = 4 * ENCRYPTED_CHUNK_SIZE;
const ZERO_NONCE = Buffer.alloc(12);
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
/** 2^48 chunks of 64 KiB is far beyond any real file; the nonce counter is written in 6 bytes. */
const MAX_CHUNKS = 2 ** 48;

// ---------------------------------------------------------------------------------------------
// Primitives

function hkdf(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, 32));
}

function aeadSeal(key: Buffer | crypto.KeyObject, nonce: Buffer, plaintext: Buffer): Buffer {
  const cipher = crypto.createCipheriv('chacha20-poly1305', key, nonce, {
    authTagLength: TAG_SIZE,
  });
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([body, cipher.getAuthTag()]);
}

/** Decrypts `sealed` (ciphertext followed by the tag); null when authentication fails. */
function aeadOpen(key: Buffer | crypto.KeyObject, nonce: Buffer, sealed: Buffer): Buffer | null {
  if (sealed.length < TAG_SIZE) return null;
  const decipher = crypto.createDecipheriv('chacha20-poly1305', key, nonce, {
    authTagLength: TAG_SIZE,
  });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const out = decipher.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return out;
}

function x25519PrivateKey(secret: Buffer): crypto.KeyObject {
  return crypto.createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, secret]),
    format: 'der',
    type: 'pkcs8',
  });
}

function x25519PublicKey(point: Buffer): crypto.KeyObject {
  return crypto.createPublicKey({
    key: Buffer.concat([SPKI_X25519_PREFIX, point]),
    format: 'der',
    type: 'spki',
  });
}

/** The raw 32-byte public key of a public or private X25519 key. */
function rawPublicKey(key: crypto.KeyObject): Buffer {
  const publicKey = key.type === 'private' ? crypto.createPublicKey(key) : key;
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** X25519 shared secret, or null when it is all zeros (a low-order point). */
function x25519(privateKey: crypto.KeyObject, publicKey: crypto.KeyObject): Buffer | null {
  try {
    const shared = crypto.diffieHellman({ privateKey, publicKey });
    return shared.every((b) => b === 0) ? null : shared;
  } catch {
    return null;
  }
}

function scryptKey(passphrase: string, salt: Buffer, workFactor: number): Promise<Buffer> {
  const N = 2 ** workFactor;
  const r = 8;
  const p = 1;
  const maxmem = 128 * r * (N + p + 2) + 1024 * 1024;
  return new Promise((resolve, reject) => {
    crypto.scrypt(
      Buffer.from(passphrase, 'utf8'),
      Buffer.concat([Buffer.from(SCRYPT_LABEL, 'latin1'), salt]),
      32,
      { N, r, p, maxmem },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

function b64Encode(data: Buffer): string {
  return data.toString('base64').replace(/=+$/, '');
}

/** Strict unpadded standard base64, as age requires (canonical, no padding, no whitespace). */
function b64Decode(text: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return null;
  const data = Buffer.from(text, 'base64');
  return b64Encode(data) === text ? data : null;
}

// ---------------------------------------------------------------------------------------------
// Keys

function decodeRecipient(recipient: string): Buffer | null {
  try {
    const { hrp, data } = bech32Decode(recipient);
    return hrp === RECIPIENT_HRP && data.length === 32 ? data : null;
  } catch {
    return null;
  }
}

function decodeIdentity(identity: string): Buffer | null {
  try {
    const { hrp, data } = bech32Decode(identity);
    return hrp === IDENTITY_HRP.toLowerCase() && data.length === 32 ? data : null;
  } catch {
    return null;
  }
}

/**
 * Whether a value may be a secret key, however mistyped: `AGE-SECRET-KEY-1…`, `AGE_SECRET_KEY_1…`,
 * `age secret key 1…`, or an age plugin identity. Only to word the error better: no error
 * message shows a recipient or identity value of any kind.
 */
function mayBeSecretKey(value: string): boolean {
  const letters = value.toUpperCase().replace(/[^A-Z0-9]/g, '');
  return letters.includes('SECRETKEY') || letters.startsWith('AGEPLUGIN');
}

/** What is wrong with a recipient value, in words that never include the value. */
function recipientProblem(value: string): string {
  if (mayBeSecretKey(value)) {
    return (
      'this looks like an age secret key (identity), not a recipient: give its public key ' +
      '(age1..., as age-keygen -y prints it), and rotate the secret key if it was exposed'
    );
  }
  if (/^(ssh-|ecdsa-)/i.test(value)) {
    return 'SSH keys are not supported, only age X25519 recipients (age1...)';
  }
  if (/^age1pq1/i.test(value)) return 'post-quantum hybrid recipients are not supported';
  if (/^age1[a-z0-9]+1/.test(value)) return 'age plugin recipients are not supported';
  if (/^age1/i.test(value)) {
    return 'not a valid age X25519 recipient: a character is wrong, missing or extra (its checksum does not match)';
  }
  return 'not an age X25519 recipient (age1...)';
}

/** What is wrong with an identity value, in words that never include the value. */
function identityProblem(value: string): string {
  if (/^age1/i.test(value)) return 'this is a public key (recipient), not an identity';
  if (/^AGE-SECRET-KEY-PQ-/i.test(value)) {
    return 'post-quantum hybrid identities are not supported';
  }
  if (/^AGE-PLUGIN-/i.test(value)) return 'age plugin identities are not supported';
  if (/^-----BEGIN/.test(value) || /^(ssh-|ecdsa-)/i.test(value)) {
    return 'SSH keys are not supported, only age X25519 identities';
  }
  return 'not a valid age X25519 identity (AGE-SECRET-KEY-1...)';
}

function recipientKey(recipient: string, index: number): Buffer {
  const value = recipient.trim();
  const raw = decodeRecipient(value);
  if (!raw) {
    throw new ConfigurationError(`age recipient ${index + 1}: ${recipientProblem(value)}`);
  }
  return raw;
}

function identitySecret(identity: string, where: string): Buffer {
  const value = identity.trim();
  const raw = decodeIdentity(value);
  if (!raw) {
    throw new ConfigurationError(`invalid age identity ${where}: ${identityProblem(value)}`);
  }
  return raw;
}

/** A new X25519 key pair in the age-keygen encodings. */
export function generateIdentity(): { identity: string; recipient: string } {
  const secret = crypto.randomBytes(32);
  return {
    identity: bech32Encode(IDENTITY_HRP, secret),
    recipient: bech32Encode(RECIPIENT_HRP, rawPublicKey(x25519PrivateKey(secret))),
  };
}

/** The recipient (public key) of an identity, as `age-keygen -y` prints it. */
export function identityToRecipient(identity: string): string {
  const secret = identitySecret(identity, 'given');
  return bech32Encode(RECIPIENT_HRP, rawPublicKey(x25519PrivateKey(secret)));
}

/** The items of a recipients text, with where each one is (1-based). */
function recipientItems(text: string): { value: string; line: number; item?: number }[] {
  const out: { value: string; line: number; item?: number }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const items = line
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
    items.forEach((value, j) =>
      out.push({ value, line: i + 1, item: items.length > 1 ? j + 1 : undefined }),
    );
  });
  return out;
}

/**
 * Recipients from text: one `age1...` per line or several separated by commas; lines starting with
 * '#' and blank lines are ignored; duplicates are dropped. May return an empty list. Errors name
 * the line (and the item on a line of several) and what is wrong, never the value: a secret key
 * pasted here by mistake must not reach a log.
 */
export function parseRecipients(text: string): string[] {
  const out: string[] = [];
  for (const { value, line, item } of recipientItems(text)) {
    if (!decodeRecipient(value)) {
      const where = item === undefined ? `line ${line}` : `line ${line}, item ${item}`;
      throw new ConfigurationError(`age recipients, ${where}: ${recipientProblem(value)}`);
    }
    if (!out.includes(value)) out.push(value);
  }
  return out;
}

/**
 * The values of a recipients text that are not recipients, each whole and each of its words of
 * 20 characters or more: front doors mask them in their logs, as they may be secret keys.
 */
export function invalidRecipientValues(text: string): string[] {
  const out = new Set<string>();
  for (const { value } of recipientItems(text)) {
    if (decodeRecipient(value)) continue;
    out.add(value);
    for (const word of value.split(/\s+/)) if (word.length >= 20) out.add(word);
  }
  return [...out];
}

/**
 * Identities from text in the age-keygen file format: `AGE-SECRET-KEY-1...` lines, with '#'
 * comment lines and blank lines ignored. Errors name the line number, never its content. May
 * return an empty list.
 */
export function parseIdentities(text: string): string[] {
  const out: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!decodeIdentity(line)) {
      throw new ConfigurationError(`age identities, line ${i + 1}: ${identityProblem(line)}`);
    }
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Header

interface Stanza {
  type: string;
  args: string[];
  body: Buffer;
}

function formatStanza(stanza: Stanza): string {
  let text = `-> ${[stanza.type, ...stanza.args].join(' ')}\n`;
  const encoded = b64Encode(stanza.body);
  for (let i = 0; i <= encoded.length; i += COLUMNS_PER_LINE) {
    text += `${encoded.slice(i, i + COLUMNS_PER_LINE)}\n`;
  }
  return text;
}

function headerMac(fileKey: Buffer, headerUpToDashes: Buffer): Buffer {
  return crypto
    .createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(headerUpToDashes)
    .digest();
}

function isArgument(text: string): boolean {
  return text.length > 0 && /^[\x21-\x7e]+$/.test(text);
}

function malformed(line: number, reason: string): AgeError {
  return new AgeError(`the age header is malformed (line ${line}): ${reason}`, 'header');
}

/** Parses a complete header (intro line through the MAC line, excluding the final newline). */
function parseHeader(text: string): { stanzas: Stanza[]; mac: Buffer; macInputLength: number } {
  const lines = text.split('\n');
  const stanzas: Stanza[] = [];
  let offset = lines[0].length + 1;
  let i = 1;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith('---')) {
      const parts = line.split(' ');
      const mac = parts.length === 2 && parts[0] === '---' ? b64Decode(parts[1]) : null;
      if (!mac || mac.length !== 32 || i !== lines.length - 1) {
        throw malformed(i + 1, 'invalid closing (MAC) line');
      }
      if (stanzas.length === 0) throw malformed(i + 1, 'the header has no recipient stanza');
      return { stanzas, mac, macInputLength: offset + 3 };
    }
    if (!line.startsWith('->')) throw malformed(i + 1, 'unexpected line');
    const parts = line.split(' ');
    if (parts[0] !== '->' || parts.length < 2 || !parts.slice(1).every(isArgument)) {
      throw malformed(i + 1, 'invalid stanza line');
    }
    offset += line.length + 1;
    i++;
    const chunks: Buffer[] = [];
    for (;;) {
      if (i >= lines.length) throw malformed(i, 'stanza body is not terminated');
      const bodyLine = lines[i];
      const decoded = b64Decode(bodyLine);
      if (!decoded || bodyLine.length > COLUMNS_PER_LINE) {
        throw malformed(
          i + 1,
          bodyLine.startsWith('-')
            ? 'stanza ended without a short body line'
            : 'invalid stanza body line',
        );
      }
      chunks.push(decoded);
      offset += bodyLine.length + 1;
      i++;
      if (decoded.length < BYTES_PER_LINE) break;
    }
    stanzas.push({ type: parts[1], args: parts.slice(2), body: Buffer.concat(chunks) });
  }
  throw malformed(lines.length, 'missing closing (MAC) line');
}

/** Why a buffer that does not start with the age intro line is not readable; null to wait. */
function classifyBadStart(data: Buffer, final: boolean): AgeError | null {
  const starts = (prefix: Buffer): boolean =>
    data
      .subarray(0, Math.min(data.length, prefix.length))
      .equals(prefix.subarray(0, Math.min(data.length, prefix.length)));
  if (data.length >= VERSION_PREFIX.length && starts(VERSION_PREFIX)) {
    const end = data.indexOf(0x0a);
    const line = data
      .subarray(0, end < 0 ? Math.min(data.length, 64) : Math.min(end, 64))
      .toString('latin1')
      .replace(/[^\x20-\x7e]/g, '?');
    return new AgeError(`unsupported age format version: the file starts with "${line}"`, 'header');
  }
  if (starts(ARMOR_BEGIN)) {
    if (data.length >= ARMOR_BEGIN.length) {
      return new AgeError(
        'the input is an ASCII-armored age file; only the binary age format is supported',
        'unsupported',
      );
    }
    if (!final) return null;
  }
  return new AgeError(
    'the input is not an age encrypted file (it does not start with "age-encryption.org/v1")',
    'header',
  );
}

function chunkNonce(nonce: Buffer, counter: number, last: boolean): Buffer {
  if (counter >= MAX_CHUNKS) throw new AgeError('the age payload has too many chunks', 'payload');
  nonce.fill(0);
  nonce.writeUIntBE(counter, 5, 6);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

// ---------------------------------------------------------------------------------------------
// Encryption

interface EncryptConfig {
  recipientKeys: Buffer[];
  passphrase: string | undefined;
  workFactor: number;
}

/** Validates encryption options; throws ConfigurationError before any stream exists. */
function encryptConfig(options: AgeEncryptOptions): EncryptConfig {
  const recipients = options.recipients ?? [];
  const passphrase = options.passphrase;
  if (passphrase !== undefined && recipients.length > 0) {
    throw new ConfigurationError(
      'age files can have either public-key recipients or one passphrase, not both: ' +
        'give only age recipients or only a passphrase',
    );
  }
  if (passphrase === undefined && recipients.length === 0) {
    throw new ConfigurationError('age encryption needs at least one recipient or a passphrase');
  }
  if (passphrase !== undefined && passphrase.length === 0) {
    throw new ConfigurationError('the age passphrase is empty');
  }
  const workFactor = options.scryptWorkFactor ?? DEFAULT_SCRYPT_WORK_FACTOR;
  if (!Number.isInteger(workFactor) || workFactor < 1 || workFactor > MAX_SCRYPT_WORK_FACTOR) {
    throw new ConfigurationError(
      `the scrypt work factor must be an integer from 1 to ${MAX_SCRYPT_WORK_FACTOR}, got ${workFactor}`,
    );
  }
  return { recipientKeys: recipients.map((r, i) => recipientKey(r, i)), passphrase, workFactor };
}

/** The header (stanzas for each recipient or the passphrase, and its MAC) and payload key. */
async function encryptionKeys(
  config: EncryptConfig,
): Promise<{ header: Buffer; payloadKey: crypto.KeyObject }> {
  const fileKey = crypto.randomBytes(FILE_KEY_SIZE);
  const stanzas: Stanza[] = [];
  if (config.passphrase !== undefined) {
    const salt = crypto.randomBytes(16);
    const key = await scryptKey(config.passphrase, salt, config.workFactor);
    stanzas.push({
      type: 'scrypt',
      args: [b64Encode(salt), String(config.workFactor)],
      body: aeadSeal(key, ZERO_NONCE, fileKey),
    });
  }
  for (const recipient of config.recipientKeys) {
    const ephemeral = crypto.generateKeyPairSync('x25519');
    const share = rawPublicKey(ephemeral.publicKey);
    const shared = x25519(ephemeral.privateKey, x25519PublicKey(recipient));
    if (!shared) throw new ConfigurationError('an age recipient is an invalid X25519 point');
    const wrapKey = hkdf(shared, Buffer.concat([share, recipient]), X25519_LABEL);
    stanzas.push({
      type: 'X25519',
      args: [b64Encode(share)],
      body: aeadSeal(wrapKey, ZERO_NONCE, fileKey),
    });
  }
  const upToDashes = Buffer.from(INTRO + stanzas.map(formatStanza).join('') + '---', 'latin1');
  const mac = headerMac(fileKey, upToDashes);
  const nonce = crypto.randomBytes(NONCE_SIZE);
  return {
    header: Buffer.concat([upToDashes, Buffer.from(` ${b64Encode(mac)}\n`, 'latin1'), nonce]),
    payloadKey: crypto.createSecretKey(hkdf(fileKey, nonce, 'payload')),
  };
}

/**
 * Encrypts one age file, fed synchronously. Input is copied into a single 64 KiB chunk buffer
 * and never referenced once `update` returns, so callers may reuse their buffers at once;
 * each sealed chunk comes out as new buffers (ciphertext, then tag).
 */
export class AgeEncryptor {
  private header: Buffer | null;
  private readonly chunk = Buffer.allocUnsafe(CHUNK_SIZE);
  private filled = 0;
  private readonly nonce = Buffer.alloc(12);
  private counter = 0;

  private constructor(
    header: Buffer,
    private readonly payloadKey: crypto.KeyObject,
  ) {
    this.header = header;
  }

  /** Rejects with a ConfigurationError (never echoing a secret) for invalid options. */
  static async create(options: AgeEncryptOptions): Promise<AgeEncryptor> {
    return AgeEncryptor.fromConfig(encryptConfig(options));
  }

  static async fromConfig(config: EncryptConfig): Promise<AgeEncryptor> {
    const { header, payloadKey } = await encryptionKeys(config);
    return new AgeEncryptor(header, payloadKey);
  }

  /** Encrypts `data`; returns what is ready to be written (possibly nothing). */
  update(data: Buffer): Buffer[] {
    const out = this.takeHeader();
    let offset = 0;
    while (offset < data.length) {
      // A full chunk is sealed only once more data follows: the last chunk is marked as last.
      if (this.filled === CHUNK_SIZE) this.seal(false, out);
      const n = data.copy(this.chunk, this.filled, offset);
      this.filled += n;
      offset += n;
    }
    return out;
  }

  /** Seals the last chunk; nothing may be encrypted afterwards. */
  final(): Buffer[] {
    const out = this.takeHeader();
    this.seal(true, out);
    return out;
  }

  private takeHeader(): Buffer[] {
    if (!this.header) return [];
    const out = [this.header];
    this.header = null;
    return out;
  }

  private seal(last: boolean, out: Buffer[]): void {
    const cipher = crypto.createCipheriv(
      'chacha20-poly1305',
      this.payloadKey,
      chunkNonce(this.nonce, this.counter, last),
      { authTagLength: TAG_SIZE },
    );
    this.counter++;
    const body = cipher.update(this.chunk.subarray(0, this.filled));
    cipher.final();
    this.filled = 0;
    // The sealed chunk goes out as the ciphertext and its tag: concatenating them would copy
    // every byte once more and double the garbage the collector has to catch up with.
    out.push(body, cipher.getAuthTag());
  }
}

/** A stream that turns plaintext into a binary age file for the given recipients or passphrase. */
export function createEncryptStream(options: AgeEncryptOptions): Transform {
  return processingStream(AgeEncryptor.fromConfig(encryptConfig(options)), STREAM_HIGH_WATER_MARK);
}

/** A stream that encrypts through an encryptor that has not been used yet. */
export function encryptingStream(encryptor: AgeEncryptor): Transform {
  return processingStream(encryptor, STREAM_HIGH_WATER_MARK);
}

// ---------------------------------------------------------------------------------------------
// Decryption

interface X25519Identity {
  privateKey: crypto.KeyObject;
  publicKey: Buffer;
}

interface DecryptConfig {
  identities: X25519Identity[];
  passphrase: string | undefined;
}

/** Validates decryption options; throws ConfigurationError (never echoing a secret). */
function decryptConfig(options: Decryption): DecryptConfig {
  const identities = options.identities ?? [];
  if (identities.length === 0 && options.passphrase === undefined) {
    throw new ConfigurationError('age decryption needs an identity or a passphrase');
  }
  if (options.passphrase !== undefined && options.passphrase.length === 0) {
    throw new ConfigurationError('the age passphrase is empty');
  }
  return {
    identities: identities.map((identity, i) => {
      const privateKey = x25519PrivateKey(identitySecret(identity, `number ${i + 1}`));
      return { privateKey, publicKey: rawPublicKey(privateKey) };
    }),
    passphrase: options.passphrase,
  };
}

type DecryptState = 'header' | 'nonce' | 'payload';

class AgeDecryptStream extends Transform {
  private readonly identities: X25519Identity[];
  private readonly passphrase: string | undefined;
  private state: DecryptState = 'header';
  /** Header bytes so far, copied into an owned buffer grown by doubling. */
  private headerStore: Buffer = Buffer.alloc(0);
  private headerSize = 0;
  private markerSearchFrom = 0;
  private fileKey: Buffer | null = null;
  private payloadKey: crypto.KeyObject | null = null;
  /**
   * Sealed bytes not opened yet, copied: no input chunk is referenced once its write completes,
   * so a reader may reuse its buffer for the next read.
   */
  private readonly pending = Buffer.allocUnsafe(ENCRYPTED_CHUNK_SIZE);
  private pendingLength = 0;
  private readonly nonce = Buffer.alloc(12);
  private counter = 0;

  constructor(config: DecryptConfig) {
    super({
      readableHighWaterMark: STREAM_HIGH_WATER_MARK,
      writableHighWaterMark: STREAM_HIGH_WATER_MARK,
    });
    this.identities = config.identities;
    this.passphrase = config.passphrase;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.state !== 'header') {
      this.consume(chunk, callback);
      return;
    }
    const headerEnd = this.collectHeader(chunk);
    if (headerEnd instanceof AgeError) {
      callback(headerEnd);
      return;
    }
    if (headerEnd < 0) {
      callback();
      return;
    }
    const header = this.headerBuffer;
    this.headerStore = Buffer.alloc(0);
    this.headerSize = 0;
    this.unwrap(header.subarray(0, headerEnd)).then(
      () => {
        this.state = 'nonce';
        this.consume(header.subarray(headerEnd), callback);
      },
      (err: unknown) => callback(asError(err)),
    );
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.state === 'header') {
        if (this.headerBuffer.length === 0) {
          throw new AgeError('the input is empty: it is not an age encrypted file', 'header');
        }
        throw (
          this.checkStart(true) ??
          new AgeError('the age file is truncated: it ends inside the header', 'header')
        );
      }
      if (this.state === 'nonce') {
        throw new AgeError('the age file is truncated: it ends before the payload nonce', 'header');
      }
      this.finishPayload();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  private checkStart(final: boolean): AgeError | null {
    const data = this.headerBuffer;
    const n = Math.min(data.length, INTRO_BYTES.length);
    if (data.subarray(0, n).equals(INTRO_BYTES.subarray(0, n))) return null;
    return classifyBadStart(data, final);
  }

  /** Adds header bytes; returns the header length once complete, -1 to wait, or an error. */
  private get headerBuffer(): Buffer {
    return this.headerStore.subarray(0, this.headerSize);
  }

  private appendHeader(chunk: Buffer): void {
    const needed = this.headerSize + chunk.length;
    if (needed > this.headerStore.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, 2 * this.headerStore.length, 4096));
      this.headerStore.copy(grown, 0, 0, this.headerSize);
      this.headerStore = grown;
    }
    chunk.copy(this.headerStore, this.headerSize);
    this.headerSize += chunk.length;
  }

  private collectHeader(chunk: Buffer): number | AgeError {
    this.appendHeader(chunk);
    const data = this.headerBuffer;
    const bad = this.checkStart(false);
    if (bad) return bad;
    if (data.length < INTRO_BYTES.length) return -1;
    const marker = data.indexOf(MAC_LINE_MARKER, this.markerSearchFrom);
    if (marker < 0) this.markerSearchFrom = Math.max(0, data.length - MAC_LINE_MARKER.length + 1);
    const newline = marker >= 0 ? data.indexOf(0x0a, marker + 1) : -1;
    // The input length at which each outcome is known when bytes come one at a time: the size
    // limit passed, the header's end, a MAC line too long. The earliest within the input wins,
    // so the outcome does not depend on how the input was split into writes.
    const tooLarge = MAX_HEADER_SIZE + 1;
    const complete = newline >= 0 ? newline + 1 : Infinity;
    const macTooLong = marker >= 0 ? marker + MAX_MAC_LINE + 1 : Infinity;
    const first = Math.min(tooLarge, complete, macTooLong);
    if (first > data.length) return -1;
    if (first === tooLarge) {
      return new AgeError(`the age header is larger than ${MAX_HEADER_SIZE} bytes`, 'header');
    }
    if (first === complete) return complete;
    return new AgeError('the age header is malformed: invalid closing (MAC) line', 'header');
  }

  private async unwrap(header: Buffer): Promise<void> {
    const { stanzas, mac, macInputLength } = parseHeader(
      header.subarray(0, header.length - 1).toString('latin1'),
    );
    const scryptStanzas = stanzas.filter((s) => s.type === 'scrypt');
    let fileKey: Buffer;
    if (scryptStanzas.length > 0) {
      if (stanzas.length !== 1) {
        throw new AgeError(
          'the age header is malformed: a passphrase (scrypt) stanza must be the only stanza',
          'header',
        );
      }
      fileKey = await this.unwrapScrypt(scryptStanzas[0]);
    } else {
      fileKey = this.unwrapX25519(stanzas);
    }
    const expected = headerMac(fileKey, header.subarray(0, macInputLength));
    if (!crypto.timingSafeEqual(expected, mac)) {
      throw new AgeError(
        'the age header MAC does not match: the header was modified (tampered with or corrupted)',
        'hmac',
      );
    }
    this.fileKey = fileKey;
  }

  private async unwrapScrypt(stanza: Stanza): Promise<Buffer> {
    if (this.passphrase === undefined) {
      throw new AgeError(
        'this backup is encrypted with a passphrase, but no passphrase was given to decrypt it',
        'no match',
      );
    }
    const salt = stanza.args.length === 2 ? b64Decode(stanza.args[0]) : null;
    if (!salt || salt.length !== 16 || stanza.body.length !== FILE_KEY_SIZE + TAG_SIZE) {
      throw new AgeError(
        'the age header is malformed: invalid passphrase (scrypt) stanza',
        'header',
      );
    }
    if (!/^[1-9][0-9]?$/.test(stanza.args[1])) {
      throw new AgeError('the age header is malformed: invalid scrypt work factor', 'header');
    }
    const workFactor = Number(stanza.args[1]);
    if (workFactor > MAX_SCRYPT_WORK_FACTOR) {
      throw new AgeError(
        `the scrypt work factor of this file (${workFactor}) is above the limit of ${MAX_SCRYPT_WORK_FACTOR}`,
        'header',
      );
    }
    const key = await scryptKey(this.passphrase, salt, workFactor);
    const fileKey = aeadOpen(key, ZERO_NONCE, stanza.body);
    if (!fileKey) {
      throw new AgeError('the passphrase is wrong: it does not decrypt this backup', 'no match');
    }
    return fileKey;
  }

  private unwrapX25519(stanzas: Stanza[]): Buffer {
    const x25519Stanzas = stanzas.filter((s) => s.type === 'X25519');
    const parsed = x25519Stanzas.map((stanza) => {
      const share = stanza.args.length === 1 ? b64Decode(stanza.args[0]) : null;
      if (!share || share.length !== 32 || stanza.body.length !== FILE_KEY_SIZE + TAG_SIZE) {
        throw new AgeError('the age header is malformed: invalid X25519 stanza', 'header');
      }
      return { share, shareKey: x25519PublicKey(share), body: stanza.body };
    });
    for (const identity of this.identities) {
      for (const stanza of parsed) {
        const shared = x25519(identity.privateKey, stanza.shareKey);
        if (!shared) {
          throw new AgeError('the age header is malformed: invalid X25519 share', 'header');
        }
        const wrapKey = hkdf(
          shared,
          Buffer.concat([stanza.share, identity.publicKey]),
          X25519_LABEL,
        );
        const fileKey = aeadOpen(wrapKey, ZERO_NONCE, stanza.body);
        if (fileKey) return fileKey;
      }
    }
    if (this.identities.length === 0) {
      throw new AgeError(
        'this backup is encrypted to age public keys, not with a passphrase: give its age identity',
        'no match',
      );
    }
    throw new AgeError(
      'the age identity given does not match any recipient of this backup',
      'no match',
    );
  }

  private consume(data: Buffer, callback: TransformCallback): void {
    try {
      let offset = 0;
      if (this.state === 'nonce') {
        offset = this.fill(data, offset, NONCE_SIZE);
        if (this.pendingLength < NONCE_SIZE) {
          callback();
          return;
        }
        const nonce = Buffer.from(this.pending.subarray(0, NONCE_SIZE));
        this.pendingLength = 0;
        this.payloadKey = crypto.createSecretKey(hkdf(this.fileKey as Buffer, nonce, 'payload'));
        this.fileKey = null;
        this.state = 'payload';
      }
      while (offset < data.length) {
        // A full chunk is opened only once more data follows: the last one is opened at the end.
        if (this.pendingLength === ENCRYPTED_CHUNK_SIZE) {
          this.openMiddleChunk(this.pending);
          this.pendingLength = 0;
        }
        if (this.pendingLength === 0 && data.length - offset > ENCRYPTED_CHUNK_SIZE) {
          // A whole chunk in the input with more after it is opened where it lies, uncopied.
          this.openMiddleChunk(data.subarray(offset, offset + ENCRYPTED_CHUNK_SIZE));
          offset += ENCRYPTED_CHUNK_SIZE;
          continue;
        }
        offset = this.fill(data, offset, ENCRYPTED_CHUNK_SIZE);
      }
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  /** Copies input from `offset` into `pending` until it holds `limit` bytes; returns the new offset. */
  private fill(data: Buffer, offset: number, limit: number): number {
    const copied = data.copy(
      this.pending,
      this.pendingLength,
      offset,
      offset + limit - this.pendingLength,
    );
    this.pendingLength += copied;
    return offset + copied;
  }

  private open(sealed: Buffer, last: boolean): Buffer | null {
    return aeadOpen(
      this.payloadKey as crypto.KeyObject,
      chunkNonce(this.nonce, this.counter, last),
      sealed,
    );
  }

  /**
   * A full chunk with more data after it. Like the reference implementation, a chunk that
   * authenticates is released before a failure that follows it: the plaintext a failed file
   * releases is what the age test vectors expect.
   */
  private openMiddleChunk(sealed: Buffer): void {
    const plaintext = this.open(sealed, false);
    if (!plaintext) {
      const final = this.open(sealed, true);
      if (final) {
        this.push(final);
        throw new AgeError(
          `the age file has trailing data after the final chunk (chunk ${this.counter})`,
          'payload',
        );
      }
      throw new AgeError(
        `payload chunk ${this.counter} failed authentication: the backup data is corrupted`,
        'payload',
      );
    }
    this.counter++;
    this.push(plaintext);
  }

  /** The rest of the input, which must be exactly the final chunk. */
  private finishPayload(): void {
    const rest = this.pendingLength;
    if (rest === 0) {
      throw new AgeError(
        this.counter === 0
          ? 'the age file is truncated: it has no payload'
          : `the age file is truncated: it ends after chunk ${this.counter - 1} without the final chunk`,
        'payload',
      );
    }
    if (rest < TAG_SIZE) {
      throw new AgeError(
        `the age file is truncated: chunk ${this.counter} is incomplete`,
        'payload',
      );
    }
    const sealed = this.pending.subarray(0, rest);
    const plaintext = this.open(sealed, true);
    if (!plaintext) {
      const middle = rest === ENCRYPTED_CHUNK_SIZE ? this.open(sealed, false) : null;
      if (middle) {
        this.push(middle);
        throw new AgeError(
          `the age file is truncated: it ends after chunk ${this.counter} without the final chunk`,
          'payload',
        );
      }
      throw new AgeError(
        `the final payload chunk (chunk ${this.counter}) failed authentication: ` +
          'the backup data is corrupted or the file is truncated',
        'payload',
      );
    }
    if (plaintext.length === 0 && this.counter > 0) {
      throw new AgeError(
        `the age payload is malformed: the final chunk ${this.counter} is empty`,
        'payload',
      );
    }
    this.counter++;
    this.push(plaintext);
  }
}

/** A stream that turns a binary age file into its plaintext; failures are AgeError. */
export function createDecryptStream(options: Decryption): Transform {
  return new AgeDecryptStream(decryptConfig(options));
}
