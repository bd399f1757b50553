import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { recentRuns } from '../../src/catalog/runs.js';
import { MemoryLogger, type Clock } from '../../src/core/logger.js';
import { reportOutcome, type AlertDeps, type JobOutcome } from '../../src/report/alerts.js';
import { GitHubApi } from '../../src/report/github.js';
import { fetchPoster, parseNotifyTargets, type Notification } from '../../src/report/notify.js';
import { LocalStorage } from '../../src/storage/local.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
import { startReceiver, type Receiver } from '../support/receiver.js';

const RUN = 'https://github.com/octo-org/octo-repo/actions/runs/77';

describe('alert lifecycle: issue, notifications and run records', () => {
  let fake: FakeGitHub;
  let receiver: Receiver;
  let dir: string;
  let storage: LocalStorage;
  let logger: MemoryLogger;
  let now: Date;
  const clock: Clock = { now: () => now };

  beforeEach(async () => {
    fake = await startFakeGitHub();
    receiver = await startReceiver();
    dir = mkdtempSync(path.join(os.tmpdir(), 'alerts-'));
    logger = new MemoryLogger();
    storage = new LocalStorage(dir, logger);
    now = new Date('2026-12-01T02:17:00Z');
  });

  afterEach(async () => {
    await fake.stop();
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
    expect(fake.contractViolations).toEqual([]);
    for (const line of logger.lines) {
      expect(line).not.toContain(fake.token);
      expect(line).not.toContain(receiver.url);
    }
  });

  function deps(options: { issues?: boolean; notify?: boolean } = {}): AlertDeps {
    return {
      logger,
      clock,
      history: { storage, names: ['shop'] },
      issues:
        options.issues === false
          ? undefined
          : {
              api: new GitHubApi(
                {
                  token: fake.token,
                  repository: fake.repository,
                  apiUrl: fake.url,
                  serverUrl: 'https://github.com',
                  runId: '77',
                },
                logger,
                { retryAfterBaseMs: 5 },
              ),
              labels: ['backup-failure'],
              title: 'Backup failed: shop',
              warningTitle: 'Backup warning: shop',
            },
      notify:
        options.notify === false
          ? undefined
          : {
              targets: parseNotifyTargets([`${receiver.url}/hook`], 'notify'),
              on: 'failure,recovery',
              post: fetchPoster,
            },
      runUrl: RUN,
      repository: fake.repository,
    };
  }

  const failed = (message: string): JobOutcome => ({
    action: 'backup',
    name: 'shop',
    status: 'failed',
    message,
    warnings: [],
    nextStep: 'Update the database-url secret.',
  });
  const passed: JobOutcome = {
    action: 'backup',
    name: 'shop',
    status: 'passed',
    message: 'Backup 20261203T021700Z-abcdef stored (1.2 MB).',
    backupId: '20261203T021700Z-abcdef',
    warnings: [],
  };
  const sent = (): Notification[] => receiver.accepted().map((r) => r.body as Notification);

  it('opens, comments, then says recovered and closes; one message each', async () => {
    const first = await reportOutcome(failed('password authentication failed'), deps());
    expect(first).toEqual({ event: 'failure', issueNumber: 1, failedRuns: 1 });
    expect(fake.issues).toHaveLength(1);
    const issue = fake.issues[0]!;
    expect(issue.title).toBe('Backup failed: shop');
    expect(issue.body).toContain('**What failed:** password authentication failed');
    expect(issue.body).toContain('This is the first failed run.');
    expect(issue.body).toContain('**Next step:** Update the database-url secret.');
    expect(issue.body).toContain(RUN);

    now = new Date('2026-12-02T02:17:00Z');
    const second = await reportOutcome(failed('could not connect to server'), deps());
    expect(second).toEqual({ event: 'failure', issueNumber: 1, failedRuns: 2 });
    expect(fake.issues).toHaveLength(1);
    expect(fake.comments).toHaveLength(1);
    expect(fake.comments[0]!.body).toContain('could not connect to server');
    expect(fake.comments[0]!.body).toContain(
      'Failing since 2026-12-01T02:17:00.000Z: 2 runs in a row.',
    );

    now = new Date('2026-12-03T02:17:00Z');
    const third = await reportOutcome(passed, deps());
    expect(third).toEqual({ event: 'recovery', issueNumber: 1, failedRuns: 2 });
    expect(fake.issues[0]!.state).toBe('closed');
    expect(fake.comments.at(-1)!.body).toMatch(/^Recovered: the backup of `shop` passed again/);

    expect(sent().map((n) => n.event)).toEqual(['failure', 'failure', 'recovery']);
    expect(sent()[1]).toMatchObject({
      action: 'backup',
      name: 'shop',
      runUrl: RUN,
      repository: fake.repository,
      failedRuns: 2,
      failingSince: '2026-12-01T02:17:00.000Z',
      issueUrl: `https://github.com/${fake.repository}/issues/1`,
    });
    expect(sent()[2]).toMatchObject({
      event: 'recovery',
      backupId: '20261203T021700Z-abcdef',
      failedRuns: 2,
      message: expect.stringMatching(
        /^The backup of shop recovered after 2 failed runs since 2026-12-01T02:17:00.000Z/,
      ) as unknown,
    });

    // Success again: nothing to say, nothing written to GitHub.
    const writes = fake.requests.filter((r) => r.method !== 'GET').length;
    now = new Date('2026-12-04T02:17:00Z');
    expect((await reportOutcome(passed, deps())).event).toBe('success');
    expect(fake.requests.filter((r) => r.method !== 'GET').length).toBe(writes);
    expect(sent()).toHaveLength(3);

    const records = await recentRuns(storage, 'shop', 'backup');
    expect(records.map((r) => r.status)).toEqual(['passed', 'passed', 'failed', 'failed']);
  });

  it('knows a recovery from the run records alone, without GitHub', async () => {
    await reportOutcome(failed('bucket refused the upload'), deps({ issues: false }));
    now = new Date('2026-12-02T02:17:00Z');
    const result = await reportOutcome(passed, deps({ issues: false }));
    expect(result.event).toBe('recovery');
    expect(sent().map((n) => n.event)).toEqual(['failure', 'recovery']);
    expect(fake.requests).toEqual([]);
  });

  it('reports a size change as a warning issue and message, and closes it when it is gone', async () => {
    const warning = 'Backup size changed by +80% against the previous backup.';
    const result = await reportOutcome({ ...passed, warnings: [warning] }, deps());
    expect(result.event).toBe('warning');
    expect(sent()).toHaveLength(1);
    expect(sent()[0]).toMatchObject({ event: 'warning', message: warning });
    expect(fake.issues).toHaveLength(1);
    expect(fake.issues[0]!.title).toBe('Backup warning: shop');
    expect(fake.issues[0]!.labels).toEqual(['backup-failure', 'warning']);
    expect(fake.issues[0]!.body).toContain(warning);

    now = new Date('2026-12-02T02:17:00Z');
    expect((await reportOutcome(passed, deps())).event).toBe('success');
    expect(fake.issues[0]!.state).toBe('closed');
    expect(sent()).toHaveLength(1);
  });

  it('keeps going when GitHub and the receiver fail: warnings only', async () => {
    fake.setPermission('read');
    receiver.fallback = 404;
    const result = await reportOutcome(failed('pg_dump exited 1'), deps());
    expect(result.event).toBe('failure');
    expect(logger.lines.filter((l) => l.startsWith('warning:'))).toEqual([
      expect.stringContaining('issues: write') as unknown,
      expect.stringContaining(
        'Could not deliver the failure notification to webhook #1',
      ) as unknown,
    ]);
  });

  it('sends a success only with notify-on: always', async () => {
    const always = deps({ issues: false });
    always.notify!.on = 'always';
    await reportOutcome(passed, always);
    expect(sent().map((n) => n.event)).toEqual(['success']);
    const quiet = deps({ issues: false });
    await reportOutcome(passed, quiet);
    expect(sent()).toHaveLength(1);
  });
});
