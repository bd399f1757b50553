/**
 * The backup-files bundle under Node 24 as the runner runs it: a bucket on the suite's S3
 * server backed up with credentials of its own, restored into a folder, verified with a
 * restore, pruned; no secret in anything the runs printed or wrote.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle } from '../support/bundle.js';
import { createBucket, makeStore, s3Settings, uniqueName, type TestStore } from '../support/env.js';

const FILES: Record<string, string> = {
  'avatars/.emptyFolderPlaceholder': '',
  'avatars/user-1/photo.png': 'png bytes',
  'exams/2026/réponse-日本語.pdf': 'pdf bytes',
};

describe('backup-files bundle', () => {
  const settings = s3Settings();
  const { identity, recipient } = generateIdentity();
  const dirs: string[] = [];
  let store: TestStore;
  let source: string;
  const everything: string[] = [];

  function filesInputs(): Record<string, string> {
    return {
      'files-s3-endpoint': settings.endpoint,
      'files-s3-region': settings.region,
      'files-s3-access-key-id': settings.credentials.accessKeyId,
      'files-s3-secret-access-key': settings.credentials.secretAccessKey,
    };
  }

  async function run(
    inputs: Record<string, string>,
  ): Promise<Awaited<ReturnType<typeof runBundle>>> {
    const result = await runBundle(
      'backup-files',
      { storage: store.location, name: 'storage', ...store.inputs, ...inputs },
      // The store's credentials only: the source's come from the inputs.
      { ...store.env },
    );
    everything.push(result.everything);
    return result;
  }

  beforeAll(async () => {
    store = await makeStore('s3');
    source = uniqueName('supabase-storage');
    await createBucket(source);
    const client = new S3Client({ ...settings, forcePathStyle: true });
    for (const [key, body] of Object.entries(FILES)) {
      await client.send(new PutObjectCommand({ Bucket: source, Key: key, Body: body }));
    }
    client.destroy();
  });

  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('backs up, restores, verifies and prunes; the summary says what was written', async () => {
    const backup = await run({
      source: `s3://${source}`,
      'encryption-recipients': recipient,
      ...filesInputs(),
    });
    expect(backup.code).toBe(0);
    expect(backup.outputs).toMatchObject({ files: '3', 'files-new': '3', 'files-unchanged': '0' });
    expect(backup.summary).toMatch(/\| new \| changed \| unchanged \| deleted \|/);
    const again = await run({
      source: `s3://${source}`,
      'encryption-recipients': recipient,
      ...filesInputs(),
    });
    expect(again.outputs).toMatchObject({
      'files-new': '0',
      'files-unchanged': '3',
      'bytes-uploaded': '0',
    });

    const target = mkdtempSync(path.join(os.tmpdir(), 'files-bundle-'));
    dirs.push(target);
    const restore = await run({
      mode: 'restore',
      target,
      'backup-id': backup.outputs['backup-id'],
      'encryption-identity': identity,
    });
    expect(restore.code).toBe(0);
    expect(restore.outputs.files).toBe('3');
    const restored = readdirSync(target, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.relative(target, path.join(e.parentPath, e.name)))
      .sort();
    expect(restored).toEqual(Object.keys(FILES).sort());
    for (const [key, body] of Object.entries(FILES)) {
      expect(
        createHash('sha256')
          .update(readFileSync(path.join(target, key)))
          .digest('hex'),
      ).toBe(createHash('sha256').update(body).digest('hex'));
    }

    const verify = await run({ mode: 'verify', restore: 'true', 'encryption-identity': identity });
    expect([verify.code, verify.outputs.status]).toEqual([0, 'passed']);

    const prune = await run({ mode: 'prune', 'keep-last': '1' });
    expect(prune.code).toBe(0);
    expect(prune.outputs).toMatchObject({ kept: '1', deleted: '1' });
    expect(prune.summary).toMatch(/Archives kept for kept backups\*\* \| 1/);
  }, 600_000);

  test('no secret appears in what the runs printed or wrote', () => {
    const text = everything.join('\n');
    expect(text).toContain(recipient);
    expect(text).not.toContain(identity);
    expect(text).not.toContain(settings.credentials.secretAccessKey);
  });
});
