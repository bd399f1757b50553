/**
 * The backup-files bundle under Node 24 as the runner runs it: a bucket on the suite's S3
 * server backed up with credentials of its own, restored into a bucket prefix, verified with a
 * restore, drilled, pruned; a failing backup, verify, drill or prune opens its own GitHub issue
 * (on the local stand-in for the REST API), repeats comment on it, and the next pass closes it,
 * with a message to a local webhook receiver each time; no secret in anything the runs printed
 * or wrote, nor in the issues and messages.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { generateIdentity } from '../../src/crypto/age.js';
import type { Notification } from '../../src/report/notify.js';
import { runBundle } from '../support/bundle.js';
import {
  issueTitled as issueTitledIn,
  startFakeGitHub,
  type FakeGitHub,
} from '../support/fake-github.js';
import { createBucket, makeStore, s3Settings, uniqueName, type TestStore } from '../support/env.js';
import { notificationValidator } from '../support/notification-schema.js';
import { notificationsAbout, startReceiver, type Receiver } from '../support/receiver.js';

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

  describe('alerts of backup and prune', () => {
    const HOOK_PATH = '/hooks/T0FILES/B0FILES/s3cr3tFilesWebhookPath';
    const WRONG_STORAGE_SECRET = 'not-the-storage-secret-4711';
    let fake: FakeGitHub;
    let receiver: Receiver;
    /** A source folder that does not exist until the backup is to recover. */
    let folder: string;

    beforeAll(async () => {
      fake = await startFakeGitHub();
      receiver = await startReceiver();
      folder = path.join(mkdtempSync(path.join(os.tmpdir(), 'files-source-')), 'uploads');
    });
    afterAll(async () => {
      await fake.stop();
      await receiver.stop();
    });

    const alerting = (inputs: Record<string, string>, env: Record<string, string> = {}) =>
      run(
        { 'github-token': fake.token, notify: `${receiver.url}${HOOK_PATH}`, ...inputs },
        {
          GITHUB_API_URL: fake.url,
          GITHUB_REPOSITORY: fake.repository,
          GITHUB_SERVER_URL: 'https://github.com',
          GITHUB_RUN_ID: '88',
          ...env,
        },
      );

    const messages = (action: string) => notificationsAbout(receiver, action);

    const issueTitled = (title: string) => issueTitledIn(fake, title);

    const commentsOn = (issue: number) => fake.comments.filter((c) => c.issue_number === issue);

    const backupInputs = () => ({
      name: 'uploads',
      source: folder,
      'encryption-recipients': recipient,
    });

    test('a backup of a folder that does not exist fails twice; the next backup recovers', async () => {
      const first = await alerting(backupInputs());
      expect(first.code).toBe(1);
      expect(first.stdout).toContain(`::error::The source folder ${folder} does not exist.`);
      const issue = issueTitled('File backup failed: uploads');
      expect(issue.state).toBe('open');
      expect(issue.labels).toEqual(['file-backup-failure']);
      expect(issue.body).toContain('<!-- pg-backup-actions:marker=files-backup:uploads -->');
      expect(issue.body).toContain(`The file backup of \`uploads\` failed at `);
      expect(issue.body).toContain(`**What failed:** The source folder ${folder} does not exist.`);
      expect(issue.body).toContain('This is the first failed run.');
      expect(issue.body).toContain('**Next step:** Fix the cause above');
      expect(issue.body).toContain('https://github.com/octo-org/octo-repo/actions/runs/88');
      expect(messages('files-backup')).toEqual([
        expect.objectContaining({ event: 'failure', name: 'uploads', failedRuns: 1 }),
      ]);
      expect(messages('files-backup')[0]!.message).toMatch(
        /^The file backup of uploads failed: The source folder .+ does not exist\.\n/,
      );
      expect(messages('files-backup')[0]!.issueUrl).toContain(`/issues/${issue.number}`);

      const second = await alerting(backupInputs());
      expect(second.code).toBe(1);
      expect(issueTitled('File backup failed: uploads').number).toBe(issue.number);
      expect(commentsOn(issue.number)).toHaveLength(1);
      expect(commentsOn(issue.number)[0]!.body).toMatch(/Failing since \S+: 2 runs in a row\./);
      expect(messages('files-backup').map((n) => [n.event, n.failedRuns])).toEqual([
        ['failure', 1],
        ['failure', 2],
      ]);

      mkdirSync(path.join(folder, 'user-1'), { recursive: true });
      writeFileSync(path.join(folder, 'user-1', 'photo.png'), 'png bytes');
      writeFileSync(path.join(folder, 'notes.txt'), 'notes');
      const third = await alerting(backupInputs());
      expect(third.code).toBe(0);
      expect(third.outputs).toMatchObject({ files: '2', 'issue-number': String(issue.number) });
      expect(issueTitled('File backup failed: uploads').state).toBe('closed');
      expect(commentsOn(issue.number).at(-1)!.body).toMatch(
        /^Recovered: the file backup of `uploads` passed again\. File backup \S+ stored: 2 files, 2 new/,
      );
      expect(messages('files-backup').map((n) => n.event)).toEqual([
        'failure',
        'failure',
        'recovery',
      ]);
      expect(messages('files-backup')[2]).toMatchObject({
        event: 'recovery',
        action: 'files-backup',
        name: 'uploads',
        backupId: third.outputs['backup-id'],
        failedRuns: 2,
        repository: 'octo-org/octo-repo',
        runUrl: 'https://github.com/octo-org/octo-repo/actions/runs/88',
      });
      expect(fake.contractViolations).toEqual([]);
    }, 300_000);

    test('a prune refused by max-delete fails twice; the next prune recovers', async () => {
      // A second backup, so that keep-last 1 deletes one; a plain success sends nothing.
      const backup = await alerting(backupInputs());
      expect(backup.code).toBe(0);
      expect(messages('files-backup')).toHaveLength(3);

      const refused = { name: 'uploads', mode: 'prune', 'keep-last': '1', 'max-delete': '0' };
      const first = await alerting(refused);
      expect(first.code).toBe(1);
      expect(first.outputs).toMatchObject({ kept: '2', deleted: '0' });
      const issue = issueTitled('File prune failed: uploads');
      expect(issue.labels).toEqual(['file-backup-prune']);
      expect(issue.body).toContain('<!-- pg-backup-actions:marker=files-prune:uploads -->');
      expect(issue.body).toMatch(
        /\*\*What failed:\*\* Prune refused, nothing was deleted: would delete 1 of 2 backups, more than max-delete 0/,
      );
      expect(issue.body).toContain('**Next step:** Read the reason above.');
      expect(first.outputs['issue-number']).toBe(String(issue.number));

      const second = await alerting(refused);
      expect(second.code).toBe(1);
      expect(issueTitled('File prune failed: uploads').number).toBe(issue.number);
      expect(commentsOn(issue.number)).toHaveLength(1);
      expect(commentsOn(issue.number)[0]!.body).toMatch(/Failing since \S+: 2 runs in a row\./);

      const third = await alerting({ ...refused, 'max-delete': '100%' });
      expect(third.code).toBe(0);
      expect(third.outputs).toMatchObject({ kept: '1', deleted: '1' });
      expect(issueTitled('File prune failed: uploads').state).toBe('closed');
      expect(commentsOn(issue.number).at(-1)!.body).toMatch(
        /^Recovered: the file prune of `uploads` passed again\. Deleted 1 file backup\(s\), kept 1\./,
      );
      expect(messages('files-prune').map((n) => [n.event, n.failedRuns])).toEqual([
        ['failure', 1],
        ['failure', 2],
        ['recovery', 2],
      ]);
      expect(messages('files-prune')[0]!.message).toMatch(
        /^The file prune of uploads failed: Prune refused, nothing was deleted/,
      );
      expect(fake.contractViolations).toEqual([]);
    }, 300_000);

    test('a bad input and a storage that refuses fail the backup and alert', async () => {
      // An age identity typed where its public key belongs: refused before anything runs.
      const typo = await alerting({
        name: 'typo',
        source: folder,
        'encryption-recipients': identity,
      });
      expect(typo.code).toBe(1);
      expect(typo.stdout).toContain(
        '::error::age recipients, line 1: this looks like an age secret key',
      );
      const issue = issueTitled('File backup failed: typo');
      expect(issue.body).toContain('**What failed:** age recipients, line 1:');

      const refusing = await alerting(
        { name: 'typo', source: folder, 'encryption-recipients': recipient },
        { AWS_SECRET_ACCESS_KEY: WRONG_STORAGE_SECRET },
      );
      expect(refusing.code).toBe(1);
      expect(issueTitled('File backup failed: typo').state).toBe('open');
      expect(commentsOn(issue.number)).toHaveLength(1);
      expect(commentsOn(issue.number)[0]!.body).toMatch(
        /\*\*What failed:\*\* The secret access key does not match .*\(SignatureDoesNotMatch\)/,
      );
      const typos = receiver
        .accepted()
        .map((r) => r.body as Notification)
        .filter((n) => n.name === 'typo');
      expect(typos.map((n) => [n.action, n.event])).toEqual([
        ['files-backup', 'failure'],
        ['files-backup', 'failure'],
      ]);
      expect(fake.contractViolations).toEqual([]);
    }, 300_000);

    test('a restore that fails alerts nobody', async () => {
      const issues = fake.issues.length;
      const received = receiver.received.length;
      const restore = await alerting({
        name: 'uploads',
        mode: 'restore',
        target: folder, // holds files: refused
        'encryption-identity': identity,
      });
      expect(restore.code).toBe(1);
      expect(fake.issues).toHaveLength(issues);
      expect(receiver.received).toHaveLength(received);
    }, 300_000);

    test('every message follows the schema; no secret in the issues or messages', () => {
      const valid = notificationValidator();
      for (const r of receiver.received) {
        expect(r.path).toBe(HOOK_PATH);
        expect(valid(r.body)).toBe(true);
      }
      const written = [
        ...fake.issues.map((i) => `${i.title}\n${i.body ?? ''}`),
        ...fake.comments.map((c) => c.body),
        ...receiver.received.map((r) => JSON.stringify(r.body)),
      ].join('\n');
      const printed = everything.join('\n');
      for (const secret of [
        fake.token,
        receiver.url,
        HOOK_PATH,
        's3cr3t',
        identity,
        WRONG_STORAGE_SECRET,
        settings.credentials.secretAccessKey,
      ]) {
        expect(written).not.toContain(secret);
        expect(printed).not.toContain(secret);
      }
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
