import { startFakeGitHub, toJsonSchema, type FakeGitHub } from '../support/fake-github.js';

/** The headers every well-behaved client sends. */
function headers(fake: FakeGitHub, extra: Record<string, string> = {}): Record<string, string> {
  return {
    Authorization: `Bearer ${fake.token}`,
    Accept: 'application/vnd.github+json',
    'X-GitHub-Api-Version': '2022-11-28',
    'User-Agent': 'fake-github-test',
    ...extra,
  };
}

async function call(
  fake: FakeGitHub,
  method: string,
  path: string,
  body?: unknown,
  extra?: Record<string, string>,
): Promise<{ status: number; json: unknown; link: string | null }> {
  const init: RequestInit = { method, headers: headers(fake, extra) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['Content-Type'] = 'application/json';
  }
  const res = await fetch(`${fake.url}${path}`, init);
  const text = await res.text();
  return {
    status: res.status,
    json: text ? JSON.parse(text) : undefined,
    link: res.headers.get('link'),
  };
}

describe('fake GitHub', () => {
  let fake: FakeGitHub;
  const repo = '/repos/octo-org/octo-repo';

  beforeEach(async () => {
    fake = await startFakeGitHub({ repository: 'octo-org/octo-repo', token: 'ghs_testtoken123' });
  });
  afterEach(async () => {
    await fake.stop();
  });

  it('serves a well-formed request and its answer matches the response schema', async () => {
    const created = await call(fake, 'POST', `${repo}/issues`, {
      title: 'Nightly verification failed',
      body: 'details',
      labels: ['backup-failure'],
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      number: 1,
      state: 'open',
      title: 'Nightly verification failed',
      labels: [{ name: 'backup-failure' }],
      html_url: 'https://github.com/octo-org/octo-repo/issues/1',
    });
    expect(created.json).not.toHaveProperty('pull_request');
    const listed = await call(fake, 'GET', `${repo}/issues?state=open&labels=backup-failure`);
    expect(listed.status).toBe(200);
    expect(listed.json).toHaveLength(1);
    expect(fake.contractViolations).toEqual([]);
  });

  it('rejects a create-issue body whose labels are not an array', async () => {
    const res = await call(fake, 'POST', `${repo}/issues`, { title: 't', labels: 5 });
    expect(res.status).toBe(422);
    expect(fake.issues).toHaveLength(0);
    expect(fake.contractViolations).toHaveLength(1);
    expect(fake.contractViolations[0]).toMatch(/issues\/create.*\/labels must be array/);
  });

  it('rejects a create-issue body without the required title', async () => {
    const res = await call(fake, 'POST', `${repo}/issues`, { body: 'no title' });
    expect(res.status).toBe(422);
    expect(fake.contractViolations[0]).toMatch(/must have required property 'title'/);
  });

  it('rejects an update with an unknown state or state_reason', async () => {
    fake.addIssue({ title: 'x', labels: ['backup-failure'] });
    const badState = await call(fake, 'PATCH', `${repo}/issues/1`, { state: 'resolved' });
    expect(badState.status).toBe(422);
    const badReason = await call(fake, 'PATCH', `${repo}/issues/1`, {
      state: 'closed',
      state_reason: 'fixed',
    });
    expect(badReason.status).toBe(422);
    expect(fake.issues[0]!.state).toBe('open');
    expect(fake.contractViolations).toHaveLength(2);
    expect(fake.contractViolations.join('\n')).toMatch(/\/state must be equal to one of/);
    expect(fake.contractViolations.join('\n')).toMatch(/\/state_reason must be equal to one of/);
  });

  it('accepts a null state_reason (OpenAPI nullable)', async () => {
    fake.addIssue({ title: 'x' });
    const res = await call(fake, 'PATCH', `${repo}/issues/1`, { state_reason: null });
    expect(res.status).toBe(200);
    expect(fake.contractViolations).toEqual([]);
  });

  it('rejects a path that is not in the description, and a method the path lacks', async () => {
    const unknown = await call(fake, 'GET', `${repo}/issue-reports`);
    expect(unknown.status).toBe(404);
    const wrongMethod = await call(fake, 'DELETE', `${repo}/issues/1/comments`);
    expect(wrongMethod.status).toBe(404);
    expect(fake.contractViolations).toHaveLength(2);
    expect(fake.contractViolations[0]).toMatch(/no operation in the OpenAPI description/);
  });

  it('rejects undeclared or ill-typed query parameters', async () => {
    const undeclared = await call(fake, 'GET', `${repo}/issues?status=open`);
    expect(undeclared.status).toBe(400);
    const badState = await call(fake, 'GET', `${repo}/issues?state=pending`);
    expect(badState.status).toBe(422);
    const badPage = await call(fake, 'GET', `${repo}/issues?page=two`);
    expect(badPage.status).toBe(422);
    expect(fake.contractViolations).toHaveLength(3);
    expect(fake.contractViolations[0]).toMatch(/"status" is not declared/);
  });

  it('rejects a body on an operation that takes none, and missing API headers', async () => {
    const withBody = await call(fake, 'DELETE', `${repo}/issues/1/labels/bug`, { name: 'bug' });
    expect(withBody.status).toBe(400);
    const noVersion = await fetch(`${fake.url}${repo}/issues`, {
      headers: { Authorization: `Bearer ${fake.token}`, 'User-Agent': 't' },
    });
    expect(noVersion.status).toBe(400);
    expect(fake.contractViolations).toHaveLength(2);
  });

  it('checks the token', async () => {
    const res = await call(fake, 'GET', `${repo}/issues`, undefined, {
      Authorization: 'Bearer wrong',
    });
    expect(res.status).toBe(401);
    expect(res.json).toMatchObject({ message: 'Bad credentials' });
    // Octokit sends the `token` scheme; GitHub takes either.
    const tokenScheme = await call(fake, 'GET', `${repo}/issues`, undefined, {
      Authorization: `token ${fake.token}`,
    });
    expect(tokenScheme.status).toBe(200);
    const wrongScheme = await call(fake, 'GET', `${repo}/issues`, undefined, {
      Authorization: `Basic ${fake.token}`,
    });
    expect(wrongScheme.status).toBe(401);
    expect(fake.contractViolations).toEqual([]);
  });

  it('pages the issue listing with a Link header and lists pull requests like GitHub', async () => {
    for (let i = 0; i < 5; i++) fake.addIssue({ title: `i${i}`, labels: ['l'] });
    fake.addIssue({ title: 'a pull request', labels: ['l'], pull_request: true });
    const first = await call(fake, 'GET', `${repo}/issues?labels=l&per_page=2&page=1`);
    expect((first.json as { number: number }[]).map((i) => i.number)).toEqual([6, 5]);
    expect(first.json).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ number: 6, pull_request: expect.anything() }),
      ]),
    );
    expect(first.link).toContain('rel="next"');
    expect(first.link).toContain(
      `${fake.url}${repo}/issues?labels=l&per_page=2&page=2>; rel="next"`,
    );
    const last = await call(fake, 'GET', `${repo}/issues?labels=l&per_page=2&page=3`);
    expect((last.json as { number: number }[]).map((i) => i.number)).toEqual([2, 1]);
    expect(last.link).not.toContain('rel="next"');
    expect(fake.contractViolations).toEqual([]);
  });

  it('answers writes with 403 in read-only mode and injects failures', async () => {
    fake.setPermission('read');
    const denied = await call(fake, 'POST', `${repo}/issues`, { title: 't' });
    expect(denied.status).toBe(403);
    expect(denied.json).toMatchObject({ message: 'Resource not accessible by integration' });
    expect((await call(fake, 'GET', `${repo}/issues`)).status).toBe(200);
    fake.setPermission('write');
    fake.failNext(502, (method) => method === 'POST');
    expect((await call(fake, 'GET', `${repo}/issues`)).status).toBe(200);
    expect((await call(fake, 'POST', `${repo}/issues`, { title: 't' })).status).toBe(502);
    expect((await call(fake, 'POST', `${repo}/issues`, { title: 't' })).status).toBe(201);
    expect(fake.contractViolations).toEqual([]);
  });

  it('flags its own answers when they leave the response schema', async () => {
    const issue = fake.addIssue({ title: 'x' });
    (issue as { state_reason: string }).state_reason = 'fixed';
    expect((await call(fake, 'GET', `${repo}/issues`)).status).toBe(200);
    expect(fake.contractViolations).toHaveLength(1);
    expect(fake.contractViolations[0]).toMatch(/response 200 off-schema: \/0\/state_reason/);
  });

  it('reports an existing label as already_exists', async () => {
    expect((await call(fake, 'POST', `${repo}/labels`, { name: 'Backup' })).status).toBe(201);
    const again = await call(fake, 'POST', `${repo}/labels`, { name: 'backup', color: 'b60205' });
    expect(again.status).toBe(422);
    expect(again.json).toMatchObject({ errors: [{ code: 'already_exists' }] });
    expect(fake.contractViolations).toEqual([]);
  });
});

describe('toJsonSchema', () => {
  it('turns OpenAPI nullable into JSON Schema null', () => {
    expect(toJsonSchema({ type: 'string', enum: ['a'], nullable: true })).toEqual({
      type: ['string', 'null'],
      enum: ['a', null],
    });
    expect(toJsonSchema({ oneOf: [{ type: 'string' }], nullable: true })).toEqual({
      anyOf: [{ oneOf: [{ type: 'string' }] }, { type: 'null' }],
    });
    expect(toJsonSchema({ properties: { nullable: { type: 'boolean' } } })).toEqual({
      properties: { nullable: { type: 'boolean' } },
    });
  });
});
