import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import {
  GitHubApi,
  GitHubApiError,
  GitHubPermissionError,
  runUrl,
  type GitHubContext,
} from '../../src/report/github.js';
import {
  markerComment,
  reportFailure,
  reportSuccess,
  type IssueLifecycle,
} from '../../src/report/issues.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';

const TOKEN = 'ghs_s3cretT0kenThatMustNeverLeak0123';
const REPO = 'octo-org/octo-repo';
const MARKER = 'verify:prod-db';
const TAG = '<!-- pg-backup-actions:marker=verify:prod-db -->';
const RUN = 'https://github.com/octo-org/octo-repo/actions/runs/987654';

const isListing = (method: string, path: string): boolean =>
  method === 'GET' && path.startsWith(`/repos/${REPO}/issues?`);

describe('issue lifecycle against the GitHub stand-in', () => {
  let fake: FakeGitHub;
  let logger: MemoryLogger;
  const thrown: string[] = [];

  function context(overrides: Partial<GitHubContext> = {}): GitHubContext {
    return {
      token: TOKEN,
      repository: REPO,
      apiUrl: fake.url,
      serverUrl: 'https://github.com',
      runId: '987654',
      runAttempt: '1',
      workflow: 'verify',
      ...overrides,
    };
  }

  function lifecycle(overrides: Partial<IssueLifecycle> = {}, ctx?: GitHubContext): IssueLifecycle {
    return {
      api: new GitHubApi(ctx ?? context(), logger, { retryAfterBaseMs: 5 }),
      labels: ['backup-failure', 'pg-backup'],
      marker: MARKER,
      title: 'Backup verification failed: prod-db',
      logger,
      ...overrides,
    };
  }

  /** Awaits a promise that must reject, and keeps the message for the token check. */
  async function rejection(promise: Promise<unknown>): Promise<Error> {
    try {
      await promise;
    } catch (error) {
      expect(error).toBeInstanceOf(Error);
      thrown.push((error as Error).message);
      return error as Error;
    }
    throw new Error('expected a rejection');
  }

  const writes = (): { method: string; path: string }[] =>
    fake.requests.filter((r) => r.method !== 'GET');

  beforeEach(async () => {
    fake = await startFakeGitHub({ repository: REPO, token: TOKEN });
    logger = new MemoryLogger();
    thrown.length = 0;
  });

  afterEach(async () => {
    await fake.stop();
    expect(fake.contractViolations).toEqual([]);
    for (const line of [...logger.lines, ...thrown]) expect(line).not.toContain(TOKEN);
  });

  it('opens an issue with the title, labels, body, marker and run link on the first failure', async () => {
    const result = await reportFailure(
      lifecycle(),
      'Verification of prod-db failed: restore exited 1',
    );
    expect(result).toMatchObject({ issueNumber: 1, action: 'opened' });
    expect(fake.issues).toHaveLength(1);
    const [issue] = fake.issues;
    expect(issue!.title).toBe('Backup verification failed: prod-db');
    expect(issue!.labels).toEqual(['backup-failure', 'pg-backup']);
    expect(issue!.state).toBe('open');
    expect(issue!.body).toContain('Verification of prod-db failed: restore exited 1');
    expect(issue!.body).toContain(TAG);
    expect(issue!.body).toContain(RUN);
    expect(fake.labels).toEqual(['backup-failure', 'pg-backup']);
    expect(writes().map((r) => `${r.method} ${r.path}`)).toEqual([
      `POST /repos/${REPO}/labels`,
      `POST /repos/${REPO}/labels`,
      `POST /repos/${REPO}/issues`,
    ]);
    expect(logger.lines.join('\n')).toContain('Opened issue #1');
  });

  it('comments on the open issue on the next failure instead of opening another', async () => {
    await reportFailure(lifecycle(), 'first failure');
    const second = await reportFailure(lifecycle(), 'second failure: checksum mismatch');
    expect(second).toMatchObject({ issueNumber: 1, action: 'commented' });
    expect(fake.issues).toHaveLength(1);
    expect(fake.comments).toHaveLength(1);
    expect(fake.comments[0]!.issue_number).toBe(1);
    expect(fake.comments[0]!.body).toContain('second failure: checksum mismatch');
    expect(fake.comments[0]!.body).toContain(RUN);
  });

  it('works when the labels exist already', async () => {
    fake.addIssue({ title: 'other', labels: ['backup-failure', 'pg-backup'] });
    const result = await reportFailure(lifecycle(), 'failed');
    expect(result).toMatchObject({ issueNumber: 2, action: 'opened' });
    expect(fake.labels).toEqual(['backup-failure', 'pg-backup']);
  });

  it('finds the issue by its marker, not by its title', async () => {
    fake.addIssue({ title: 'Backup verification failed: prod-db', labels: ['backup-failure'] });
    fake.addIssue({
      title: 'Renamed by a human',
      body: `Old text\n\n${TAG}`,
      labels: ['backup-failure'],
    });
    fake.addIssue({
      title: 'Backup verification failed: prod-db',
      body: '<!-- pg-backup-actions:marker=verify:prod-db-replica -->',
      labels: ['backup-failure'],
    });
    const result = await reportFailure(lifecycle(), 'failed again');
    expect(result).toMatchObject({ issueNumber: 2, action: 'commented' });
    expect(fake.issues).toHaveLength(3);
  });

  it('comments "passed again" and closes the issue as completed on success', async () => {
    await reportFailure(lifecycle(), 'failed');
    const result = await reportSuccess(lifecycle(), 'Verification of prod-db passed again.');
    expect(result).toMatchObject({ issueNumber: 1, action: 'closed' });
    const [issue] = fake.issues;
    expect(issue!.state).toBe('closed');
    expect(issue!.state_reason).toBe('completed');
    expect(fake.comments.at(-1)!.body).toContain('Verification of prod-db passed again.');
    expect(fake.comments.at(-1)!.body).toContain(RUN);
    const patch = fake.requests.find((r) => r.method === 'PATCH');
    expect(patch?.body).toEqual({ state: 'closed', state_reason: 'completed' });

    const again = await reportSuccess(lifecycle(), 'still passing');
    expect(again).toEqual({ action: 'none' });
    const next = await reportFailure(lifecycle(), 'failed once more');
    expect(next).toMatchObject({ issueNumber: 2, action: 'opened' });
  });

  it('writes nothing on success when no issue is open', async () => {
    fake.addIssue({ title: 'unrelated', body: 'no marker', labels: ['backup-failure'] });
    const closed = fake.addIssue({ title: 'old', body: TAG, labels: ['backup-failure'] });
    closed.state = 'closed';
    closed.state_reason = 'completed';
    const result = await reportSuccess(lifecycle(), 'passed again');
    expect(result).toEqual({ action: 'none' });
    expect(writes()).toEqual([]);
    expect(fake.requests.length).toBeGreaterThan(0);
    expect(fake.comments).toEqual([]);
  });

  it('leaves exactly one open issue when two runs fail at the same time', async () => {
    // Both runs list before either opens an issue, so both open one.
    fake.holdUntil(2, isListing);
    const results = await Promise.all([
      reportFailure(lifecycle(), 'run A: restore failed'),
      reportFailure(lifecycle(), 'run B: restore failed'),
    ]);
    expect(fake.issues).toHaveLength(2);
    const open = fake.issues.filter((i) => i.state === 'open' && i.body?.includes(TAG));
    expect(open.map((i) => i.number)).toEqual([1]);
    expect(results.map((r) => r.issueNumber)).toEqual([1, 1]);
    expect(results.map((r) => r.action).sort()).toEqual(['commented', 'opened']);
    const duplicate = fake.issues.find((i) => i.number === 2)!;
    expect(duplicate.state).toBe('closed');
    expect(duplicate.state_reason).toBe('duplicate');
    expect(duplicate.duplicate_of_id).toBe(fake.issues[0]!.id);
    expect(fake.comments.some((c) => c.issue_number === 2 && c.body.includes('#1'))).toBe(true);
    // The details of the run whose issue was closed are kept on the surviving issue.
    const onKept = fake.comments.filter((c) => c.issue_number === 1).map((c) => c.body);
    const keptText = [fake.issues[0]!.body, ...onKept].join('\n');
    expect(keptText).toContain('run A: restore failed');
    expect(keptText).toContain('run B: restore failed');
  });

  it('closes duplicates left open earlier and comments on the lowest-numbered one', async () => {
    fake.addIssue({ title: 'a', body: TAG, labels: ['backup-failure'] });
    fake.addIssue({ title: 'b', body: TAG, labels: ['backup-failure'] });
    const result = await reportFailure(lifecycle(), 'failed');
    expect(result).toMatchObject({ issueNumber: 1, action: 'commented' });
    expect(fake.issues.map((i) => i.state)).toEqual(['open', 'closed']);
  });

  it('pages through all open issues with the label to find the marked one', async () => {
    const pr = fake.addIssue({
      title: 'A pull request quoting the marker',
      body: TAG,
      labels: ['backup-failure'],
      pull_request: true,
    });
    const marked = fake.addIssue({
      title: 'Backup verification failed: prod-db',
      body: `failed before\n\n${TAG}`,
      labels: ['backup-failure'],
    });
    for (let i = 0; i < 150; i++) {
      fake.addIssue({ title: `unrelated ${i}`, body: `issue ${i}`, labels: ['backup-failure'] });
    }
    const result = await reportFailure(lifecycle(), 'failed again');
    expect(result).toMatchObject({ issueNumber: marked.number, action: 'commented' });
    expect(fake.issues).toHaveLength(152);
    expect(fake.comments.map((c) => c.issue_number)).toEqual([marked.number]);
    expect(fake.issues.find((i) => i.number === pr.number)!.state).toBe('open');
    const listings = fake.requests.filter((r) => isListing(r.method, r.path)).map((r) => r.path);
    expect(listings).toEqual([
      `/repos/${REPO}/issues?state=open&per_page=100&labels=backup-failure`,
      `/repos/${REPO}/issues?state=open&per_page=100&labels=backup-failure&page=2`,
    ]);
  });

  it('turns 403 on a write into a permission error that names `issues: write`', async () => {
    fake.setPermission('read');
    const error = await rejection(reportFailure(lifecycle(), 'failed'));
    expect(error).toBeInstanceOf(GitHubPermissionError);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain('`issues: write`');
    expect(error.message).toContain('`permissions:`');
    expect(error.message).toContain('    issues: write');
    expect(error.message).toContain(`POST /repos/${REPO}/labels`);
    expect(error.message).toContain('Resource not accessible by integration');
    expect(fake.issues).toEqual([]);
  });

  it('turns 403 on closing into a permission error too', async () => {
    await reportFailure(lifecycle(), 'failed');
    fake.failNext(403, (method) => method === 'PATCH');
    const error = await rejection(reportSuccess(lifecycle(), 'passed again'));
    expect(error).toBeInstanceOf(GitHubPermissionError);
    expect(error.message).toContain(`PATCH /repos/${REPO}/issues/1`);
  });

  it('retries 5xx answers with growing waits, then gives up with the status and endpoint', async () => {
    fake.failNext(502, (method, path) => method === 'POST' && path === `/repos/${REPO}/issues`);
    fake.failNext(503, (method, path) => method === 'POST' && path === `/repos/${REPO}/issues`);
    const result = await reportFailure(lifecycle(), 'failed');
    expect(result).toMatchObject({ issueNumber: 1, action: 'opened' });
    const creates = fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/issues'));
    expect(creates).toHaveLength(3);

    for (let i = 0; i < 4; i++) fake.failNext(500, isListing);
    const error = await rejection(reportSuccess(lifecycle(), 'passed again'));
    expect(error).toBeInstanceOf(GitHubApiError);
    expect((error as GitHubApiError).status).toBe(500);
    expect(error.message).toContain(`GET /repos/${REPO}/issues`);
    expect(error.message).toContain('500');
    expect(fake.issues[0]!.state).toBe('open');
  });

  it('reports a rejected token as a configuration error without echoing it', async () => {
    const wrong = 'ghs_wrongTokenAlsoSecret999';
    const error = await rejection(
      reportFailure(lifecycle({}, context({ token: wrong })), 'failed'),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error).not.toBeInstanceOf(GitHubPermissionError);
    expect(error.message).toMatch(/token/);
    expect(error.message).toContain('401');
    expect(error.message).not.toContain(wrong);
    expect(logger.lines.join('\n')).not.toContain(wrong);
  });

  it('does not leak the token when the API cannot be reached', async () => {
    const error = await rejection(
      reportFailure(lifecycle({}, context({ apiUrl: 'http://127.0.0.1:9/' })), 'failed'),
    );
    expect(error).toBeInstanceOf(GitHubApiError);
    expect(error.message).toContain(`GET /repos/${REPO}/issues`);
  });

  it('sends the token in the Authorization header and never logs it, even in debug lines', async () => {
    await reportFailure(lifecycle(), 'failed');
    await reportSuccess(lifecycle(), 'passed again');
    expect(logger.lines.some((l) => l.startsWith('debug: '))).toBe(true);
    expect(fake.requests.length).toBeGreaterThan(3);
    for (const request of fake.requests) {
      expect(request.headers).toMatchObject({
        accept: 'application/vnd.github+json',
        'x-github-api-version': '2022-11-28',
      });
      expect(request.headers['user-agent']).toMatch(/^pg-backup-actions /);
    }
  });

  it('refuses bad configuration before calling GitHub', () => {
    expect(() => new GitHubApi(context({ repository: 'not-a-repo' }), logger)).toThrow(
      ConfigurationError,
    );
    expect(() => new GitHubApi(context({ token: '' }), logger)).toThrow(ConfigurationError);
    expect(() => markerComment('bad-->marker')).toThrow(/HTML comment/);
    expect(markerComment(MARKER)).toBe(TAG);
    expect(runUrl(context())).toBe(RUN);
    expect(runUrl(context({ runId: undefined }))).toBeUndefined();
  });
});
