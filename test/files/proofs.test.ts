/**
 * The proofs of file backups on the suite's S3 server (Swift with s3api): a restore whose
 * archive connection is cut resumes where it broke off; verify records its result beside the
 * backup and prune never deletes the newest verified one; the drill restores into a bucket
 * prefix, measures RTO and RPO against their targets, and leaves the prefix empty again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileVerificationsPrefix } from '../../src/catalog/keys.js';
import { MemoryLogger, systemClock } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runFileBackup, type FileBackupOptions } from '../../src/files/backup.js';
import { runFileDrill, type FileDrillOptions } from '../../src/files/drill.js';
import { runFilePrune } from '../../src/files/prune.js';
import { runFileRestore } from '../../src/files/restore.js';
import { FolderSource } from '../../src/files/source.js';
import { runFileVerify } from '../../src/files/verify.js';
import { LocalStorage } from '../../src/storage/local.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/storage.js';
import { createBucket, s3Settings, uniqueName } from '../support/env.js';
import { startRelay, type Relay } from '../support/relay.js';

const zstdPath = findOnPath('zstd') as string;
const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Every object of a store as key → SHA-256. */
async function contents(store: Storage): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  for await (const object of store.list('')) {
    const hash = createHash('sha256');
    for await (const chunk of await store.getStream(object.key)) hash.update(chunk as Buffer);
    result.set(object.key, hash.digest('hex'));
  }
  return result;
}

async function keys(store: Storage, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for await (const object of store.list(prefix)) found.push(object.key);
  return found;
}

describe('file backup proofs on an S3 store', () => {
  const settings = s3Settings();
  const logger = new MemoryLogger();
  const { identity, recipient } = generateIdentity();
  const wrong = generateIdentity();
  const dirs: string[] = [];
  const files = new Map<string, Buffer>();
  let bucket: string;
  let store: S3Storage;
  let source: string;
  const ids: string[] = [];

  const options: FileBackupOptions = {
    name: 'uploads',
    kind: 'scheduled',
    labels: {},
    git: {},
    encryption: { recipients: [recipient] },
  };

  function tempDir(prefix: string): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  }

  function put(key: string, data: Buffer): void {
    mkdirSync(path.dirname(path.join(source, key)), { recursive: true });
    writeFileSync(path.join(source, key), data);
    files.set(key, data);
  }

  async function backup(): Promise<string> {
    const folder = new FolderSource(new LocalStorage(source, logger));
    const result = await runFileBackup(options, {
      source: folder,
      storage: store,
      logger,
      clock: systemClock,
      zstdPath,
    });
    ids.push(result.manifest.id);
    return result.manifest.id;
  }

  beforeAll(async () => {
    bucket = uniqueName('proofs');
    await createBucket(bucket);
    store = new S3Storage(bucket, 'backups', settings, logger);
    source = tempDir('files-proofs-');
    // About 6 MB of archive: room to cut its connection well inside it.
    for (let i = 0; i < 300; i++) put(`docs/${i % 10}/file-${i}.bin`, randomBytes(20_000));
    put('empty', Buffer.alloc(0));
    await backup();
  }, 300_000);

  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('a restore whose archive connection is cut', () => {
    let relay: Relay;
    beforeAll(async () => {
      relay = await startRelay(settings.endpoint);
    });
    afterAll(async () => {
      await relay.stop();
    });

    test('resumes the archive where it broke off and restores every file', async () => {
      const viaRelay = new S3Storage(
        bucket,
        'backups',
        { ...settings, endpoint: relay.endpoint },
        logger,
      );
      const target = new LocalStorage(tempDir('files-resumed-'), logger);
      let cuts = 0;
      relay.onceOut(3_000_000, () => {
        cuts++;
        relay.cut();
      });
      await runFileRestore(
        { name: 'uploads', backupId: ids[0], identities: [identity] },
        { storage: viaRelay, target, logger, clock: systemClock, zstdPath },
      );
      viaRelay.destroy();
      expect(cuts).toBe(1);
      expect(logger.lines.join('\n')).toMatch(
        /Reading s3:\/\/\S+\/files\.tar\.zst\.age broke off at byte [1-9]\d* \(.+\); resuming from there\./,
      );
      expect(await contents(target)).toEqual(
        new Map([...files].map(([key, data]) => [key, sha(data)])),
      );
    }, 300_000);
  });

  describe('verify and prune', () => {
    test('verify with a restore compares the files and records a passed verification', async () => {
      const workDir = tempDir('files-work-');
      const report = await runFileVerify(
        { name: 'uploads', backupId: ids[0], restore: true, identities: [identity] },
        { storage: store, logger, clock: systemClock, zstdPath, workDir },
      );
      expect(report.status).toBe('passed');
      expect(report.checks[0].detail).toMatch(/301 files restored .* equal to the manifest/);
      expect(report.restoreSeconds).toBeGreaterThan(0);
      // The scratch folder is gone.
      expect(await keys(new LocalStorage(workDir, logger))).toEqual([]);
      expect(report.recordKey?.startsWith(fileVerificationsPrefix('uploads', ids[0]))).toBe(true);
      const record = JSON.parse(String(await store.getBytes(report.recordKey as string)));
      expect(record).toMatchObject({ backupId: ids[0], type: 'verify', status: 'passed' });
    }, 300_000);

    test('a failed verification is recorded as failed', async () => {
      put('docs/late.txt', Buffer.from('late'));
      await backup();
      put('docs/later.txt', Buffer.from('later'));
      await backup();
      const report = await runFileVerify(
        { name: 'uploads', backupId: ids[2], restore: true, identities: [wrong.identity] },
        { storage: store, logger, clock: systemClock, zstdPath, workDir: tempDir('files-work-') },
      );
      expect(report.status).toBe('failed');
      expect(report.checks[0].detail).toMatch(/recipient|identit/i);
      const record = JSON.parse(String(await store.getBytes(report.recordKey as string)));
      expect(record).toMatchObject({ backupId: ids[2], type: 'verify', status: 'failed' });
    }, 300_000);

    test('prune keeps the newest verified backup whatever the policy says', async () => {
      const report = await runFilePrune(
        { name: 'uploads', policy: { timezone: 'UTC', keepLast: 1 }, dryRun: false },
        { storage: store, logger, clock: systemClock },
      );
      const decisions = new Map(report.plan.entries.map((e) => [e.backup.id, e]));
      expect(decisions.get(ids[2])?.decision).toBe('keep');
      expect(decisions.get(ids[1])?.decision).toBe('delete');
      expect(decisions.get(ids[0])?.decision).toBe('keep');
      expect(decisions.get(ids[0])?.reasons).toContain('newest verified backup');
      // The deleted backup lost its manifest; its archive stays for the newest, which refers to it.
      expect(await keys(store, `uploads/files/${ids[1]}/`)).toEqual([
        `uploads/files/${ids[1]}/files.tar.zst.age`,
      ]);
      expect(await keys(store, fileVerificationsPrefix('uploads', ids[0]))).toHaveLength(1);
    }, 300_000);
  });

  describe('the drill', () => {
    const drill = (o: Partial<FileDrillOptions>, target?: Storage) =>
      runFileDrill(
        { name: 'uploads', backupId: 'latest', identities: [identity], ...o },
        { storage: store, target, logger, clock: systemClock, zstdPath },
      );

    test('restores into a bucket prefix, times it against RTO and RPO, and empties it', async () => {
      const target = new S3Storage(bucket, 'drill', settings, logger);
      const result = await drill({ rtoTargetSeconds: 3600, rpoTargetSeconds: 86_400 }, target);
      expect(result.status).toBe('passed');
      expect(result.manifest.id).toBe(ids[2]);
      expect(result.files).toBe(files.size);
      expect(result.rtoSeconds).toBeGreaterThan(0);
      expect(result.rpoSeconds).toBeGreaterThan(0);
      expect(result.checks.map((c) => [c.name, c.status])).toEqual([
        ['restore', 'passed'],
        ['Recovery time (RTO)', 'passed'],
        ['Backup age (RPO)', 'passed'],
      ]);
      expect(await keys(target)).toEqual([]);
      const record = JSON.parse(String(await store.getBytes(result.recordKey as string)));
      expect(record).toMatchObject({ type: 'drill', status: 'passed', rtoTargetSeconds: 3600 });
      expect(record.rtoSeconds).toBe(result.rtoSeconds);
    }, 300_000);

    test('fails when the newest file backup is older than the RPO target', async () => {
      const result = await drill({ rpoTargetSeconds: 0.001 });
      expect(result.status).toBe('failed');
      expect(result.checks.find((c) => c.name === 'Backup age (RPO)')).toMatchObject({
        status: 'failed',
        detail: expect.stringMatching(/against a target of/),
      });
    }, 300_000);

    test('refuses a target that holds anything, and leaves it as it was', async () => {
      const target = new S3Storage(bucket, 'live', settings, logger);
      await target.putBytes('docs/0/file-0.bin', 'live data');
      await expect(drill({}, target)).rejects.toThrow(/is not empty/);
      expect(String(await target.getBytes('docs/0/file-0.bin'))).toBe('live data');
    });
  });

  test('no secret reaches the logs', () => {
    const text = logger.lines.join('\n');
    expect(text).not.toContain(identity);
    expect(text).not.toContain(settings.credentials.secretAccessKey);
  });
});
