/**
 * Alerts of the four bundles end to end, as the runner runs them: a GitHub stand-in checked
 * against GitHub's OpenAPI description, and a local HTTP receiver standing in for a webhook.
 * Each action fails twice for a real cause (a wrong password, a wrong key, a refused prune), then
 * passes: one issue, one comment, then "recovered" and closed; one message per run.
 */
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle, type BundleRun } from '../support/bundle.js';
import { makeStore, type TestStore } from '../support/env.js';
import {
  issueTitled as issueTitledIn,
  startFakeGitHub,
  type FakeGitHub,
} from '../support/fake-github.js';
import { notificationsAbout, startReceiver, type Receiver } from '../support/receiver.js';
import { loadSample, newDatabase, withClient } from '../support/sample.js';

const WRONG_PASSWORD = 'not-the-password-4711';
const HOOK_PATH = '/hooks/T0ALERT/B0ALERT/s3cr3tWebhookPath';

describe('alerts of the four actions', () => {
  let store: TestStore;
  let github: FakeGitHub;
  let receiver: Receiver;
  let sourceUrl: string;
  let password: string;
  const key = generateIdentity();
  const wrongKey = generateIdentity();
  const runs: BundleRun[] = [];

  beforeAll(async () => {
    sourceUrl = await newDatabase('alerts');
    await loadSample(sourceUrl);
    password = decodeURIComponent(new URL(sourceUrl).password);
    store = await makeStore('local');
    github = await startFakeGitHub();
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await github.stop();
    await receiver.stop();
    expect(github.contractViolations).toEqual([]);
    const secrets = [github.token, receiver.url, HOOK_PATH, 's3cr3t', WRONG_PASSWORD, password];
    for (const run of runs)
      for (const secret of secrets) expect(run.everything).not.toContain(secret);
  });

  const env = (): Record<string, string> => ({
    ...store.env,
    GITHUB_REPOSITORY: github.repository,
    GITHUB_API_URL: github.url,
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_RUN_ID: '5151',
  });
  const alertInputs = (): Record<string, string> => ({
    storage: store.location,
    ...store.inputs,
    name: 'shop',
    'github-token': github.token,
    notify: `${receiver.url}${HOOK_PATH}`,
  });

  async function run(action: string, inputs: Record<string, string>): Promise<BundleRun> {
    const result = await runBundle(action, { ...alertInputs(), ...inputs }, env());
    runs.push(result);
    return result;
  }

  const messages = (action: string) => notificationsAbout(receiver, action);

  const issueTitled = (title: string) => issueTitledIn(github, title);

  /** Two failing runs and a passing one: the whole lifecycle of one action's issue and messages. */
  async function cycle(
    action: string,
    title: string,
    failing: Record<string, string>,
    passing: Record<string, string>,
    cause: RegExp,
  ): Promise<void> {
    const first = await run(action, failing);
    expect(first.code).toBe(1);
    const issue = issueTitled(title);
    expect(issue.state).toBe('open');
    expect(issue.body).toMatch(cause);
    expect(issue.body).toContain('This is the first failed run.');
    expect(issue.body).toContain('**Next step:**');
    expect(issue.body).toContain('https://github.com/octo-org/octo-repo/actions/runs/5151');
    expect(messages(action).map((n) => n.event)).toEqual(['failure']);
    expect(messages(action)[0]!.message).toMatch(cause);

    const second = await run(action, failing);
    expect(second.code).toBe(1);
    expect(issueTitled(title).number).toBe(issue.number);
    const comments = github.comments.filter((c) => c.issue_number === issue.number);
    expect(comments).toHaveLength(1);
    expect(comments[0]!.body).toMatch(/Failing since \S+: 2 runs in a row\./);
    expect(messages(action).map((n) => n.event)).toEqual(['failure', 'failure']);
    expect(messages(action)[1]!.failedRuns).toBe(2);

    const third = await run(action, passing);
    expect(third.code).toBe(0);
    expect(issueTitled(title).state).toBe('closed');
    expect(github.comments.filter((c) => c.issue_number === issue.number).at(-1)!.body).toMatch(
      /^Recovered: /,
    );
    expect(messages(action).map((n) => n.event)).toEqual(['failure', 'failure', 'recovery']);
    expect(messages(action)[2]).toMatchObject({
      event: 'recovery',
      name: 'shop',
      failedRuns: 2,
      repository: 'octo-org/octo-repo',
      runUrl: 'https://github.com/octo-org/octo-repo/actions/runs/5151',
    });
  }

  it('backup: a wrong password opens one issue, repeats comment, the next backup recovers', async () => {
    const wrong = new URL(sourceUrl);
    wrong.password = WRONG_PASSWORD;
    await cycle(
      'backup',
      'Backup failed: shop',
      { 'database-url': wrong.toString(), 'encryption-recipients': key.recipient },
      { 'database-url': sourceUrl, 'encryption-recipients': key.recipient },
      /password authentication failed/,
    );
    expect(messages('backup')[2]!.backupId).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/);
  });

  it('backup: a size change over the threshold is a warning, not a failure', async () => {
    await withClient(sourceUrl, (c) =>
      c.query(`CREATE TABLE app.padding AS
        SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS filler
          FROM generate_series(1, 40000) g`),
    );
    const grown = await run('backup', {
      'database-url': sourceUrl,
      'encryption-recipients': key.recipient,
      'size-change-threshold': '10',
    });
    expect(grown.code).toBe(0);
    expect(grown.stdout).toMatch(/::warning::Backup size changed by \+/);
    const last = messages('backup').at(-1)!;
    expect(last).toMatchObject({ event: 'warning', backupId: grown.outputs['backup-id'] });
    expect(last.message).toMatch(/^Backup size changed by \+[\d.]+% against the previous backup/);
    expect(messages('backup').filter((n) => n.event === 'failure')).toHaveLength(2);
    const warning = issueTitled('Backup warning: shop');
    expect(warning.labels).toEqual(['backup-failure', 'warning']);
    expect(warning.state).toBe('open');
  });

  it('verify: a wrong key fails twice, the right one recovers', async () => {
    await cycle(
      'verify',
      'Backup verification failed: shop',
      { restore: 'false', 'encryption-identity': wrongKey.identity },
      { restore: 'false', 'encryption-identity': key.identity },
      /does not match any recipient/,
    );
  });

  it('verify: a backup older than max-age alone is a warning; the step still fails', async () => {
    const stale = await run('verify', {
      restore: 'false',
      'encryption-identity': key.identity,
      'max-age': '1s',
    });
    expect(stale.code).toBe(1);
    expect(stale.outputs.status).toBe('failed');
    const last = messages('verify').at(-1)!;
    expect(last.event).toBe('warning');
    expect(last.message).toMatch(
      /^Freshness \(max-age\): the newest complete backup, .* older than max-age 1s/,
    );
    expect(messages('verify').filter((n) => n.event === 'failure')).toHaveLength(2);
    expect(issueTitled('Backup verification failed: shop').state).toBe('closed');
    expect(issueTitled('Backup verification warning: shop').labels).toEqual([
      'backup-verification',
      'warning',
    ]);
  });

  it('restore-drill: a wrong key fails twice, a drill that passes recovers', async () => {
    await cycle(
      'restore-drill',
      'Restore drill failed: shop',
      { 'encryption-identity': wrongKey.identity },
      { 'encryption-identity': key.identity },
      /does not match any recipient/,
    );
  });

  it('prune: a refused prune fails twice, the next prune recovers', async () => {
    await cycle(
      'prune',
      'Prune failed: shop',
      { 'keep-last': '1', 'max-delete': '0' },
      { 'keep-last': '1', 'max-delete': '100%' },
      /Prune refused, nothing was deleted/,
    );
  });
});
