/**
 * The backup-files bundle under Node 24 as the runner runs it: a bucket on the suite's S3
 * server backed up with credentials of its own, restored into a bucket prefix, verified with a
 * restore, drilled, pruned; a failing verify or drill opens its own GitHub issue (on the local
 * stand-in for the REST API) and the next pass closes it; no secret in anything the runs printed
 * or wrote.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle } from '../support/bundle.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { createBucket, makeStore, s3Settings, uniqueName, type TestStore } from '../support/env.js';

const FILES: Record<string, string> = {
  'avatars/.emptyFolderPlaceholder': '',
  'avatars/user-1/photo.png': 'png bytes',
  'exams/2026/réponse-日本語.pdf': 'pdf bytes',
};

const CONTENT_TYPES: Record<string, string> = {
  'avatars/.emptyFolderPlaceholder': 'application/octet-stream',
  'avatars/user-1/photo.png': 'image/png',
  'exams/2026/réponse-日本語.pdf': 'application/pdf',
};

describe('backup-files bundle', () => {
  const settings = s3Settings();
  const { identity, recipient } = generateIdentity();
  const wrong = generateIdentity();
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
    env: Record<string, string> = {},
  ): Promise<Awaited<ReturnType<typeof runBundle>>> {
    const result = await runBundle(
      'backup-files',
      { storage: store.location, name: 'storage', ...store.inputs, ...inputs },
      // The store's credentials only: the source's come from the inputs.
      { ...store.env, ...env },
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
      await client.send(
        new PutObjectCommand({
          Bucket: source,
          Key: key,
          Body: body,
          ContentType: CONTENT_TYPES[key],
        }),
      );
    }
    client.destroy();
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

    // Into a bucket prefix, as a restore of Storage would go; then read back with its content type.
    const restore = await run({
      mode: 'restore',
      target: `s3://${source}/restored`,
      'backup-id': backup.outputs['backup-id'],
      'encryption-identity': identity,
      ...filesInputs(),
    });
    expect(restore.code).toBe(0);
    expect(restore.outputs.files).toBe('3');
    const client = new S3Client({ ...settings, forcePathStyle: true });
    try {
      for (const [key, body] of Object.entries(FILES)) {
        const got = await client.send(
          new GetObjectCommand({ Bucket: source, Key: `restored/${key}` }),
        );
        expect(await got.Body?.transformToString()).toBe(body);
        expect(got.ContentType).toBe(CONTENT_TYPES[key]);
      }
    } finally {
      client.destroy();
    }

    const verify = await run({ mode: 'verify', restore: 'true', 'encryption-identity': identity });
    expect([verify.code, verify.outputs.status]).toEqual([0, 'passed']);

    const prune = await run({ mode: 'prune', 'keep-last': '1' });
    expect(prune.code).toBe(0);
    expect(prune.outputs).toMatchObject({ kept: '1', deleted: '1' });
    expect(prune.summary).toMatch(/Archives kept for kept backups\*\* \| 1/);
  }, 600_000);

  describe('alerts of verify and drill', () => {
    let fake: FakeGitHub;
    beforeAll(async () => {
      fake = await startFakeGitHub();
    });
    afterAll(async () => {
      await fake.stop();
    });

    const withGitHub = (inputs: Record<string, string>) =>
      run(
        { 'github-token': fake.token, ...inputs },
        {
          GITHUB_API_URL: fake.url,
          GITHUB_REPOSITORY: fake.repository,
          GITHUB_SERVER_URL: 'https://github.com',
          GITHUB_RUN_ID: '77',
        },
      );

    test('a failing verify opens a files issue, a passing one closes it', async () => {
      const failing = await withGitHub({
        mode: 'verify',
        restore: 'true',
        'encryption-identity': wrong.identity,
      });
      expect([failing.code, failing.outputs.status]).toEqual([1, 'failed']);
      expect(fake.issues).toHaveLength(1);
      const issue = fake.issues[0];
      expect(issue.title).toBe('File backup verification failed: storage');
      expect(issue.labels).toEqual(['file-backup-verification']);
      expect(issue.body).toContain('<!-- pg-backup-actions:marker=files-verify:storage -->');
      expect(issue.body).toMatch(/The file backup verification of `storage` failed/);
      expect(failing.outputs['issue-number']).toBe(String(issue.number));

      const passing = await withGitHub({
        mode: 'verify',
        restore: 'true',
        'encryption-identity': identity,
      });
      expect([passing.code, passing.outputs.status]).toEqual([0, 'passed']);
      expect(fake.issues[0].state).toBe('closed');
      expect(fake.comments.at(-1)?.body).toContain('passed again');
      expect(fake.contractViolations).toEqual([]);
    }, 300_000);

    test('a drill into a bucket prefix reports RTO and RPO; a missed target opens a drill issue', async () => {
      const target = `s3://${source}/drill`;
      const drill = await withGitHub({
        mode: 'drill',
        target,
        'rto-target': '1h',
        'encryption-identity': identity,
        ...filesInputs(),
      });
      expect([drill.code, drill.outputs.status, drill.outputs.files]).toEqual([0, 'passed', '3']);
      expect(Number(drill.outputs['rto-seconds'])).toBeGreaterThan(0);
      expect(drill.summary).toMatch(/\| \*\*RTO\*\* \| \*\*.+\*\* \| 1h/);

      const late = await withGitHub({
        mode: 'drill',
        target,
        'rpo-target': '1s',
        'encryption-identity': identity,
        ...filesInputs(),
      });
      expect([late.code, late.outputs.status]).toEqual([1, 'failed']);
      const issue = fake.issues.find((i) => i.title === 'File restore drill failed: storage');
      expect(issue?.body).toContain('Backup age (RPO)');
      expect(issue?.body).toContain('<!-- pg-backup-actions:marker=files-drill:storage -->');
      expect(late.outputs['issue-number']).toBe(String(issue?.number));
      expect(fake.contractViolations).toEqual([]);
    }, 300_000);

    test('the token never shows', () => {
      expect(everything.join('\n')).not.toContain(fake.token);
    });
  });

  test('no secret appears in what the runs printed or wrote', () => {
    const text = everything.join('\n');
    expect(text).toContain('### File backup storage');
    expect(text).not.toContain(identity);
    expect(text).not.toContain(wrong.identity);
    expect(text).not.toContain(settings.credentials.secretAccessKey);
  });
});
