/**
 * File backups of a Storage-like bucket on the suite's S3 server (Swift with s3api): 2,000
 * files with nested prefixes, unicode names, a 0-byte placeholder and a 200 MB file. A first
 * backup, then 50 changed, 10 deleted and 20 added: the second run archives only those 70;
 * each point in time restores to exactly its files; prune of the first backup keeps the
 * archive the second still refers to.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeleteObjectsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { fileManifestKey } from '../../src/catalog/keys.js';
import { mapLimit } from '../../src/catalog/catalog.js';
import { MemoryLogger, systemClock } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runFileBackup, type FileBackupOptions } from '../../src/files/backup.js';
import { listFileBackups } from '../../src/files/catalog.js';
import type { FileManifest } from '../../src/files/manifest.js';
import { runFilePrune } from '../../src/files/prune.js';
import { runFileRestore } from '../../src/files/restore.js';
import { openFileSource } from '../../src/files/source.js';
import { LocalStorage } from '../../src/storage/local.js';
import { S3Storage, addContentMd5Middleware } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/storage.js';
import { createBucket, s3Settings, uniqueName } from '../support/env.js';

const zstdPath = findOnPath('zstd') as string;
const BIG = 200 * 1024 * 1024;
const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** The bucket as the test wrote it: key → content type and SHA-256. */
type State = Map<string, { sha256: string; contentType: string }>;

function storageLikeKeys(): string[] {
  const keys: string[] = ['avatars/.emptyFolderPlaceholder'];
  for (let i = 0; keys.length < 1999; i++) {
    const user = `user-${i % 40}`;
    keys.push(
      i % 7 === 0
        ? `exams/2026/${user}/réponse-${i}-日本語-ü.pdf`
        : i % 3 === 0
          ? `avatars/${user}/photo-${i}.png`
          : `submissions/term-${i % 4}/${user}/work ${i}.txt`,
    );
  }
  keys.push('videos/lecture-01.mp4');
  return keys;
}

function contentTypeOf(key: string): string {
  if (key.endsWith('.pdf')) return 'application/pdf';
  if (key.endsWith('.png')) return 'image/png';
  if (key.endsWith('.mp4')) return 'video/mp4';
  return 'text/plain; charset=utf-8';
}

function bodyFor(key: string, size?: number): Buffer {
  if (key.endsWith('.emptyFolderPlaceholder')) return Buffer.alloc(0);
  if (key.endsWith('.mp4')) return randomBytes(BIG);
  return randomBytes(size ?? 200 + Math.floor(Math.random() * 4000));
}

async function putAll(
  client: S3Client,
  bucket: string,
  prefix: string,
  files: Map<string, Buffer>,
  state: State,
): Promise<void> {
  await mapLimit([...files], 16, async ([key, body]) => {
    const contentType = contentTypeOf(key);
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}/${key}`,
        Body: body,
        ContentType: contentType,
      }),
    );
    state.set(key, { sha256: sha(body), contentType });
  });
}

/** Every object under the store's prefix as key → SHA-256, read back over S3 or from the folder. */
async function contents(store: Storage): Promise<Map<string, string>> {
  const keys: string[] = [];
  for await (const object of store.list('')) keys.push(object.key);
  const digests = await mapLimit(keys, 16, async (key) => {
    const hash = createHash('sha256');
    for await (const chunk of await store.getStream(key)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  });
  return new Map(keys.map((key, i) => [key, digests[i]]));
}

function hashes(state: State): Map<string, string> {
  return new Map([...state].map(([key, v]) => [key, v.sha256]));
}

describe('incremental file backups of a Storage-like bucket', () => {
  const settings = s3Settings();
  const client = new S3Client({ ...settings, forcePathStyle: true });
  addContentMd5Middleware(client);
  const logger = new MemoryLogger();
  const dirs: string[] = [];
  const { identity, recipient } = generateIdentity();
  let sourceBucket: string;
  let storeBucket: string;
  let store: S3Storage;
  const state1: State = new Map();
  let state2: State;
  let first: FileManifest;
  let second: FileManifest;

  const options: FileBackupOptions = {
    name: 'storage',
    kind: 'scheduled',
    labels: {},
    git: {},
    encryption: { recipients: [recipient] },
  };

  async function backup(): Promise<FileManifest> {
    const source = await openFileSource(`s3://${sourceBucket}/project`, settings, logger);
    const result = await runFileBackup(options, {
      source,
      storage: store,
      logger,
      clock: systemClock,
      zstdPath,
    });
    return result.manifest;
  }

  async function restoreInto(id: string, target: Storage): Promise<void> {
    await runFileRestore(
      { name: 'storage', backupId: id, identities: [identity] },
      { storage: store, target, logger, clock: systemClock, zstdPath },
    );
  }

  function scratchFolder(): LocalStorage {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'files-restore-'));
    dirs.push(dir);
    return new LocalStorage(dir, logger);
  }

  beforeAll(async () => {
    sourceBucket = uniqueName('source');
    storeBucket = uniqueName('store');
    await Promise.all([createBucket(sourceBucket), createBucket(storeBucket)]);
    store = new S3Storage(storeBucket, 'backups', settings, logger);
    const files = new Map(storageLikeKeys().map((key) => [key, bodyFor(key)]));
    await putAll(client, sourceBucket, 'project', files, state1);
  }, 600_000);

  afterAll(() => {
    client.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('the first backup archives every file and lists each with size, hash, date and type', async () => {
    first = await backup();
    expect(first.files).toHaveLength(2000);
    expect(first.changes).toMatchObject({ new: 2000, changed: 0, unchanged: 0, deleted: 0 });
    expect(first.archives.map((a) => a.backupId)).toEqual([first.id]);
    const big = first.files.find((f) => f.key === 'videos/lecture-01.mp4');
    expect(big).toMatchObject({
      size: BIG,
      contentType: 'video/mp4',
      sha256: state1.get('videos/lecture-01.mp4')?.sha256,
    });
    expect(first.files.find((f) => f.key.endsWith('.emptyFolderPlaceholder'))?.size).toBe(0);
    for (const f of first.files) expect(f.sha256).toBe(state1.get(f.key)?.sha256);
  }, 900_000);

  test('the second backup archives only the 70 new or changed files', async () => {
    const keys = [...state1.keys()].filter(
      (k) => !k.endsWith('.mp4') && !k.endsWith('Placeholder'),
    );
    const changed = keys.slice(0, 50);
    const deleted = keys.slice(50, 60);
    const added = Array.from({ length: 20 }, (_, i) => `submissions/late/ñew-${i}.txt`);
    state2 = new Map(state1);
    const rewrites = new Map<string, Buffer>();
    // Half keep their size (the content decides), half change it.
    changed.forEach((key, i) => rewrites.set(key, randomBytes(i % 2 === 0 ? 1000 : 5000)));
    for (const key of added) rewrites.set(key, bodyFor(key));
    await putAll(client, sourceBucket, 'project', rewrites, state2);
    await client.send(
      new DeleteObjectsCommand({
        Bucket: sourceBucket,
        Delete: { Objects: deleted.map((key) => ({ Key: `project/${key}` })) },
      }),
    );
    for (const key of deleted) state2.delete(key);

    second = await backup();
    expect(second.previous).toBe(first.id);
    expect(second.changes).toMatchObject({ new: 20, changed: 50, unchanged: 1940, deleted: 10 });
    const own = second.archives.find((a) => a.backupId === second.id);
    expect(own?.files).toBe(70);
    const archivedBytes = [...rewrites.values()].reduce((sum, b) => sum + b.length, 0);
    expect(second.changes.bytesArchived).toBe(archivedBytes);
    expect(
      second.files
        .filter((f) => f.archive === second.id)
        .map((f) => f.key)
        .sort(),
    ).toEqual([...rewrites.keys()].sort());
    expect(second.files).toHaveLength(2010);
  }, 900_000);

  test('each point in time restores to exactly its files, into bucket prefixes', async () => {
    const one = new S3Storage(storeBucket, 'restored-1', settings, logger);
    await restoreInto(first.id, one);
    expect(await contents(one)).toEqual(hashes(state1));
    const two = new S3Storage(storeBucket, 'restored-2', settings, logger);
    await restoreInto(second.id, two);
    expect(await contents(two)).toEqual(hashes(state2));
  }, 900_000);

  test('a restore refuses a target that is not empty', async () => {
    const prefix = new S3Storage(storeBucket, 'restored', settings, logger);
    await prefix.putBytes('already-here.txt', 'x');
    await expect(restoreInto(second.id, prefix)).rejects.toThrow(/is not empty/);
  });

  test('prune of the first backup keeps the archive the second refers to', async () => {
    const report = await runFilePrune(
      { name: 'storage', policy: { timezone: 'UTC', keepLast: 1 }, dryRun: false },
      { storage: store, logger, clock: systemClock },
    );
    expect(report.plan.entries.map((e) => [e.backup.id, e.decision])).toEqual([
      [second.id, 'keep'],
      [first.id, 'delete'],
    ]);
    expect(report.deletedKeys).toEqual([fileManifestKey('storage', first.id)]);
    expect(report.keptForReferences).toEqual([first.archives[0].key]);
    const folders = await listFileBackups(store, 'storage');
    expect(folders.map((f) => [f.id, f.manifest !== undefined])).toEqual([
      [first.id, false],
      [second.id, true],
    ]);

    const folder = scratchFolder();
    await restoreInto(second.id, folder);
    expect(await contents(folder)).toEqual(hashes(state2));
  }, 900_000);

  test('no secret reaches the logs or the manifests', async () => {
    const text = [...logger.lines, JSON.stringify(first), JSON.stringify(second)].join('\n');
    expect(text).toContain(recipient);
    expect(text).not.toContain(identity);
    expect(text).not.toContain(settings.credentials.secretAccessKey);
    expect(text).not.toContain(settings.credentials.accessKeyId);
  });
});
