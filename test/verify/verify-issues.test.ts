import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle } from '../support/bundle.js';
import { backupWithBundle, makeStore, type TestStore } from '../support/env.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { loadSample, newDatabase } from '../support/sample.js';

const RUN_ID = '4242';

let sourceUrl: string;

beforeAll(async () => {
  sourceUrl = await newDatabase('visrc');
  await loadSample(sourceUrl);
});

describe.each(['s3', 'local'] as const)('verify issue lifecycle against %s storage', (kind) => {
  let store: TestStore;
  let fake: FakeGitHub;
  let backupId: string;
  const key = generateIdentity();
  const wrongKey = generateIdentity();

  beforeAll(async () => {
    store = await makeStore(kind);
    const run = await backupWithBundle(store, sourceUrl, 'shop', key.recipient);
    if (run.code !== 0) throw new Error(`backup failed:\n${run.stdout}\n${run.stderr}`);
    backupId = run.outputs['backup-id'];
    fake = await startFakeGitHub();
  });

  afterAll(async () => {
    await fake.stop();
  });

  /** A verification of the object only (fast); it fails with the wrong key. */
  function verify(identity: string) {
    return runBundle(
      'verify',
      {
        storage: store.location,
        ...store.inputs,
        name: 'shop',
        restore: 'false',
        'encryption-identity': identity,
        'github-token': fake.token,
      },
      {
        ...store.env,
        GITHUB_API_URL: fake.url,
        GITHUB_REPOSITORY: fake.repository,
        GITHUB_SERVER_URL: 'https://github.com',
        GITHUB_RUN_ID: RUN_ID,
      },
    );
  }

  it('opens an issue on failure, comments on a repeat, and closes it on success', async () => {
    const first = await verify(wrongKey.identity);
    expect(first.code).toBe(1);
    expect(first.outputs.status).toBe('failed');
    expect(fake.issues).toHaveLength(1);
    const issue = fake.issues[0];
    expect(first.outputs['issue-number']).toBe(String(issue.number));
    expect(issue.title).toBe('Backup verification failed: shop');
    expect(issue.state).toBe('open');
    expect(issue.labels).toEqual(['backup-verification']);
    expect(issue.body).toContain('Decryption and decompression');
    expect(issue.body).toContain('does not match any recipient');
    expect(issue.body).toContain(`\`${backupId}\``);
    expect(issue.body).toMatch(/finished \S+ \(\S+ before this verification\)/);
    expect(issue.body).toContain(`https://github.com/${fake.repository}/actions/runs/${RUN_ID}`);
    expect(issue.body).toContain('<!-- pg-backup-actions:marker=verify:shop -->');

    const second = await verify(wrongKey.identity);
    expect(second.code).toBe(1);
    expect(fake.issues).toHaveLength(1);
    expect(second.outputs['issue-number']).toBe(String(issue.number));
    expect(fake.comments.map((c) => c.issue_number)).toEqual([issue.number]);
    expect(fake.comments[0].body).toContain('does not match any recipient');

    const third = await verify(key.identity);
    expect(third.code).toBe(0);
    expect(third.outputs.status).toBe('passed');
    expect(third.outputs['issue-number']).toBe(String(issue.number));
    expect(fake.issues).toHaveLength(1);
    expect(fake.issues[0].state).toBe('closed');
    expect(fake.issues[0].state_reason).toBe('completed');
    expect(fake.comments).toHaveLength(2);
    expect(fake.comments[1].body).toContain('passed again');

    // Nothing open, nothing to do: another success writes nothing.
    const writes = fake.requests.filter((r) => r.method !== 'GET').length;
    const fourth = await verify(key.identity);
    expect(fourth.code).toBe(0);
    expect(fake.requests.filter((r) => r.method !== 'GET').length).toBe(writes);

    for (const run of [first, second, third, fourth]) {
      expect(run.everything).not.toContain(fake.token);
      expect(run.everything).not.toContain(key.identity);
      expect(run.everything).not.toContain(wrongKey.identity);
    }
    expect(fake.contractViolations).toEqual([]);
  });

  it('warns, naming issues: write, when the token may not write issues; the result stays the verification', async () => {
    fake.setPermission('read');
    try {
      const failing = await verify(wrongKey.identity);
      expect(failing.code).toBe(1);
      expect(failing.outputs.status).toBe('failed');
      expect(failing.stdout).toMatch(/::warning::GitHub refused .*issues: write/s);
      expect(failing.stdout).toMatch(/::error::Backup verification of shop .*failed: Decryption/);
      expect(failing.outputs['issue-number']).toBe('');

      // An issue someone opened earlier cannot be closed without the permission either.
      fake.setPermission('write');
      const opened = await verify(wrongKey.identity);
      expect(opened.code).toBe(1);
      fake.setPermission('read');
      const passing = await verify(key.identity);
      expect(passing.code).toBe(0);
      expect(passing.outputs.status).toBe('passed');
      expect(passing.stdout).toMatch(/::warning::GitHub refused .*issues: write/s);
      expect(passing.stdout).not.toContain('::error::');
    } finally {
      fake.setPermission('write');
    }
    expect(fake.contractViolations).toEqual([]);
  });
});
