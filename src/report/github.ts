import { ConfigurationError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** What the client needs to know about the workflow run and the repository it reports to. */
export interface GitHubContext {
  token: string;
  /** `owner/repo`. */
  repository: string;
  /** The REST API base, `GITHUB_API_URL` (https://api.github.com, or …/api/v3 on GitHub Enterprise Server). */
  apiUrl: string;
  /** The web base, `GITHUB_SERVER_URL`. */
  serverUrl: string;
  runId?: string;
  runAttempt?: string;
  workflow?: string;
}

/** The web address of the current workflow run, when the run id is known. */
export function runUrl(ctx: GitHubContext): string | undefined {
  if (!ctx.runId) return undefined;
  const base = ctx.serverUrl.replace(/\/+$/, '');
  return `${base}/${ctx.repository}/actions/runs/${encodeURIComponent(ctx.runId)}`;
}

export type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

/** The fields of a GitHub issue this project reads. */
export interface GitHubIssue {
  id: number;
  number: number;
  title: string;
  body?: string | null;
  state: string;
  state_reason?: string | null;
  html_url: string;
  labels: (string | { name?: string })[];
  /** Present only when the "issue" is a pull request. */
  pull_request?: unknown;
}

export interface GitHubComment {
  id: number;
  html_url: string;
  body?: string;
}

export interface GitHubLabel {
  id: number;
  name: string;
  color: string;
}

export type CloseReason = 'completed' | 'not_planned' | 'duplicate';

export interface UpdateIssue {
  state?: 'open' | 'closed';
  state_reason?: CloseReason | 'reopened' | null;
  /** The `id` (not the number) of the canonical issue, with `state_reason: 'duplicate'`. */
  duplicate_issue_id?: number;
  title?: string;
  body?: string;
}

/** A GitHub REST call that failed for a reason other than configuration. */
export class GitHubApiError extends Error {
  constructor(
    readonly status: number,
    readonly endpoint: string,
    message: string,
    /** A 422 whose errors say the resource already exists. */
    readonly alreadyExists = false,
  ) {
    super(message);
    this.name = 'GitHubApiError';
  }
}

/** The token may not write issues or labels: the workflow lacks `permissions: issues: write`. */
export class GitHubPermissionError extends ConfigurationError {
  constructor(
    readonly status: number,
    readonly endpoint: string,
    detail: string,
  ) {
    super(
      `GitHub refused ${endpoint} (${status}${detail ? `: ${detail}` : ''}). ` +
        'The workflow token may not write issues in this repository' +
        (status === 404 ? ' (GitHub answers 404 when the token lacks the permission). ' : '. ') +
        'Add `issues: write` under `permissions:` in the workflow, for example:\n' +
        '  permissions:\n' +
        '    contents: read\n' +
        '    issues: write',
    );
    this.name = 'GitHubPermissionError';
  }
}

export interface GitHubApiOptions {
  /** Waits before the retries of a 5xx answer or a network failure; its length is the retry count. */
  retryDelaysMs?: number[];
  /** Upper bound on the pages read by one listing. */
  maxPages?: number;
}

interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
}

const USER_AGENT = 'pg-backup-actions';
const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/** A small GitHub REST client over the global `fetch`, for the issue endpoints. */
export class GitHubApi {
  private readonly owner: string;
  private readonly repo: string;
  private readonly base: URL;
  private readonly retryDelaysMs: number[];
  private readonly maxPages: number;

  constructor(
    private readonly ctx: GitHubContext,
    private readonly logger: Logger,
    options: GitHubApiOptions = {},
  ) {
    if (!REPOSITORY.test(ctx.repository)) {
      throw new ConfigurationError(
        `The repository must be "owner/repo", got ${JSON.stringify(ctx.repository)}.`,
      );
    }
    if (!ctx.token) {
      throw new ConfigurationError(
        'No GitHub token was given; pass `github-token: ${{ github.token }}` to report issues.',
      );
    }
    let base: URL;
    try {
      base = new URL(ctx.apiUrl);
    } catch {
      throw new ConfigurationError(
        `The GitHub API URL is not a URL: ${JSON.stringify(ctx.apiUrl)}.`,
      );
    }
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.base = base;
    [this.owner, this.repo] = ctx.repository.split('/') as [string, string];
    this.retryDelaysMs = options.retryDelaysMs ?? [1000, 3000];
    this.maxPages = options.maxPages ?? 1000;
  }

  /** The web address of the current workflow run, when known. */
  runUrl(): string | undefined {
    return runUrl(this.ctx);
  }

  /** `/repos/{owner}/{repo}` with both parts encoded. */
  get repoPath(): string {
    return `/repos/${encodeURIComponent(this.owner)}/${encodeURIComponent(this.repo)}`;
  }

  /** One REST call; resolves with the parsed JSON answer of a 2xx status. */
  async request<T>(method: HttpMethod, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, body);
    return parseJson<T>(response.text, `${method} ${path}`);
  }

  /** All open issues (pull requests left out) that carry every one of `labels`. */
  async listOpenIssues(labels: string[]): Promise<GitHubIssue[]> {
    const query = new URLSearchParams({ state: 'open', per_page: '100', page: '1' });
    if (labels.length > 0) query.set('labels', labels.join(','));
    let path: string | undefined = `${this.repoPath}/issues?${query.toString()}`;
    const issues: GitHubIssue[] = [];
    for (let page = 1; path; page++) {
      if (page > this.maxPages) {
        throw new GitHubApiError(
          0,
          `GET ${this.repoPath}/issues`,
          'Too many pages of open issues.',
        );
      }
      const response = await this.send('GET', path);
      const items = parseJson<GitHubIssue[]>(response.text, `GET ${path}`);
      if (!Array.isArray(items)) {
        throw new GitHubApiError(response.status, `GET ${path}`, 'Expected a list of issues.');
      }
      for (const item of items) if (item.pull_request === undefined) issues.push(item);
      path = this.nextPage(response.headers.get('link'));
    }
    return issues;
  }

  async createIssue(issue: {
    title: string;
    body: string;
    labels: string[];
  }): Promise<GitHubIssue> {
    return this.request<GitHubIssue>('POST', `${this.repoPath}/issues`, issue);
  }

  async createComment(issueNumber: number, body: string): Promise<GitHubComment> {
    return this.request<GitHubComment>('POST', `${this.repoPath}/issues/${issueNumber}/comments`, {
      body,
    });
  }

  async updateIssue(issueNumber: number, update: UpdateIssue): Promise<GitHubIssue> {
    return this.request<GitHubIssue>('PATCH', `${this.repoPath}/issues/${issueNumber}`, update);
  }

  /** Closes an issue with the given reason. */
  async closeIssue(
    issueNumber: number,
    reason: CloseReason,
    duplicateOf?: { id: number },
  ): Promise<GitHubIssue> {
    const update: UpdateIssue = { state: 'closed', state_reason: reason };
    if (reason === 'duplicate' && duplicateOf) update.duplicate_issue_id = duplicateOf.id;
    return this.updateIssue(issueNumber, update);
  }

  /** Creates the label unless it exists; returns whether it was created. */
  async ensureLabel(name: string, color = 'b60205', description?: string): Promise<boolean> {
    const path = `${this.repoPath}/labels`;
    const body: { name: string; color: string; description?: string } = { name, color };
    if (description !== undefined) body.description = description;
    try {
      await this.send('POST', path, body);
      this.logger.info(`Created the label "${name}".`);
      return true;
    } catch (error) {
      if (error instanceof GitHubApiError && error.status === 422 && error.alreadyExists) {
        this.logger.debug(`The label "${name}" exists.`);
        return false;
      }
      throw error;
    }
  }

  /** The `rel="next"` link as a path relative to the API base, if it points at the same API. */
  private nextPage(link: string | null): string | undefined {
    if (!link) return undefined;
    for (const part of link.split(',')) {
      const match = /<([^>]+)>\s*;\s*rel="?([^";]+)"?/.exec(part.trim());
      if (!match || !match[2]!.split(/\s+/).includes('next')) continue;
      const next = new URL(match[1]!, this.base);
      if (next.origin !== this.base.origin || !next.pathname.startsWith(this.base.pathname)) {
        throw new GitHubApiError(0, 'GET issues', 'The next-page link points away from the API.');
      }
      return `/${next.pathname.slice(this.base.pathname.length)}${next.search}`;
    }
    return undefined;
  }

  private async send(method: HttpMethod, path: string, body?: unknown): Promise<RawResponse> {
    const endpoint = `${method} ${endpointPath(path)}`;
    const url = new URL(path.replace(/^\/+/, ''), this.base);
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.ctx.token}`,
      Accept: 'application/vnd.github+json',
      'X-GitHub-Api-Version': '2022-11-28',
      'User-Agent': USER_AGENT,
    };
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    for (let attempt = 0; ; attempt++) {
      let response: RawResponse;
      try {
        const res = await fetch(url, init);
        response = { status: res.status, headers: res.headers, text: await res.text() };
      } catch (error) {
        const reason = this.redact(error instanceof Error ? causeMessage(error) : String(error));
        if (attempt < this.retryDelaysMs.length) {
          this.logger.warning(`${endpoint} failed (${reason}); retrying.`);
          await sleep(this.retryDelaysMs[attempt]!);
          continue;
        }
        throw new GitHubApiError(0, endpoint, `${endpoint} failed: ${reason}`);
      }
      this.logger.debug(`${endpoint} → ${response.status}`);
      if (response.status >= 200 && response.status < 300) return response;
      if (response.status >= 500 && attempt < this.retryDelaysMs.length) {
        this.logger.warning(`${endpoint} answered ${response.status}; retrying.`);
        await sleep(this.retryDelaysMs[attempt]!);
        continue;
      }
      throw this.failure(endpoint, response);
    }
  }

  private failure(endpoint: string, response: RawResponse): Error {
    const { status } = response;
    const info = errorInfo(response.text);
    const detail = this.redact(info.message);
    if (status === 401) {
      return new ConfigurationError(
        `GitHub rejected the token for ${endpoint} (401${detail ? `: ${detail}` : ''}). ` +
          'Pass a valid token, for example `github-token: ${{ github.token }}`.',
      );
    }
    const rateLimited = status === 429 || /rate limit/i.test(detail);
    if ((status === 403 || status === 404) && !rateLimited) {
      return new GitHubPermissionError(status, endpoint, detail);
    }
    if (status === 410) {
      return new ConfigurationError(
        `GitHub answered ${endpoint} with 410 (${detail || 'Gone'}): issues are disabled in ` +
          `${this.ctx.repository}. Enable them in the repository settings.`,
      );
    }
    return new GitHubApiError(
      status,
      endpoint,
      `GitHub answered ${endpoint} with ${status}${detail ? `: ${detail}` : ''}`,
      info.codes.includes('already_exists'),
    );
  }

  /** Removes the token from text that came back from the network. */
  private redact(text: string): string {
    return this.ctx.token ? text.split(this.ctx.token).join('***') : text;
  }
}

function endpointPath(path: string): string {
  const query = path.indexOf('?');
  return query === -1 ? path : path.slice(0, query);
}

function parseJson<T>(text: string, endpoint: string): T {
  if (text === '') return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new GitHubApiError(0, endpoint, `${endpoint} answered with something that is not JSON.`);
  }
}

function errorInfo(text: string): { message: string; codes: string[] } {
  try {
    const parsed = JSON.parse(text) as { message?: unknown; errors?: unknown };
    const message = typeof parsed.message === 'string' ? parsed.message : '';
    const codes = Array.isArray(parsed.errors)
      ? parsed.errors
          .map((e: unknown) => (e && typeof e === 'object' ? (e as { code?: unknown }).code : e))
          .filter((c): c is string => typeof c === 'string')
      : [];
    return { message, codes };
  } catch {
    return { message: '', codes: [] };
  }
}

function causeMessage(error: Error): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
