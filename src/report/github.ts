import { getOctokit } from '@actions/github';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
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
  /**
   * The unit of the retry plugin's waits: retry n waits n² units (1 s, 4 s, 9 s by default).
   * Tests shorten it.
   */
  retryAfterBaseMs?: number;
  /** Retries of a 5xx answer or a network failure. */
  retries?: number;
}

const USER_AGENT = 'pg-backup-actions';
const API_VERSION = '2022-11-28';
const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;
/** Rate-limit waits accepted before giving up: reporting must not hold a job for an hour. */
const RATE_LIMIT_RETRIES = 2;
const RATE_LIMIT_MAX_WAIT_SECONDS = 120;

type Octokit = ReturnType<typeof getOctokit>;

/** The error shape of `@octokit/request-error`, read structurally. */
interface OctokitRequestError {
  status: number;
  message: string;
  response?: { data?: unknown; headers?: Record<string, string | number | undefined> };
}

/**
 * GitHub's issue endpoints over Octokit (`@actions/github`), with GitHub's recommended request
 * throttling and retries of 5xx answers and network failures with growing waits.
 */
export class GitHubApi {
  private readonly owner: string;
  private readonly repo: string;
  private readonly octokit: Octokit;

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
    [this.owner, this.repo] = ctx.repository.split('/') as [string, string];
    const onLimit =
      (kind: string) =>
      (
        retryAfter: number,
        request: { method: string; url: string },
        _o: unknown,
        count: number,
      ) => {
        const retrying = count < RATE_LIMIT_RETRIES && retryAfter <= RATE_LIMIT_MAX_WAIT_SECONDS;
        this.logger.warning(
          `GitHub's ${kind} rate limit stopped ${request.method} ${endpointPath(request.url)}` +
            (retrying ? `; retrying in ${retryAfter} s.` : '; giving up.'),
        );
        return retrying;
      };
    this.octokit = getOctokit(
      ctx.token,
      {
        baseUrl: base.toString().replace(/\/+$/, ''),
        userAgent: USER_AGENT,
        log: {
          debug: (m: string) => this.logger.debug(this.redact(m)),
          info: (m: string) => this.logger.debug(this.redact(m)),
          warn: (m: string) => this.logger.warning(this.redact(m)),
          error: (m: string) => this.logger.warning(this.redact(m)),
        },
        retry: {
          retries: options.retries ?? 3,
          retryAfterBaseValue: options.retryAfterBaseMs ?? 1000,
        },
        throttle: {
          onRateLimit: onLimit('primary'),
          onSecondaryRateLimit: onLimit('secondary'),
        },
      },
      retry,
      throttling,
    );
    this.octokit.hook.before('request', (request) => {
      request.headers.accept = 'application/vnd.github+json';
      request.headers['x-github-api-version'] = API_VERSION;
    });
    this.octokit.hook.after('request', (response, request) => {
      this.logger.debug(`${request.method} ${endpointPath(request.url)} → ${response.status}`);
    });
  }

  /** The web address of the current workflow run, when known. */
  runUrl(): string | undefined {
    return runUrl(this.ctx);
  }

  private get repoParams(): { owner: string; repo: string } {
    return { owner: this.owner, repo: this.repo };
  }

  /** All open issues (pull requests left out) that carry every one of `labels`. */
  async listOpenIssues(labels: string[]): Promise<GitHubIssue[]> {
    const endpoint = `GET /repos/${this.ctx.repository}/issues`;
    const items = await this.call(endpoint, () =>
      this.octokit.paginate(this.octokit.rest.issues.listForRepo, {
        ...this.repoParams,
        state: 'open',
        per_page: 100,
        ...(labels.length > 0 ? { labels: labels.join(',') } : {}),
      }),
    );
    return (items as GitHubIssue[]).filter((item) => item.pull_request === undefined);
  }

  async createIssue(issue: {
    title: string;
    body: string;
    labels: string[];
  }): Promise<GitHubIssue> {
    const endpoint = `POST /repos/${this.ctx.repository}/issues`;
    const response = await this.call(endpoint, () =>
      this.octokit.rest.issues.create({ ...this.repoParams, ...issue }),
    );
    return response.data as GitHubIssue;
  }

  async createComment(issueNumber: number, body: string): Promise<GitHubComment> {
    const endpoint = `POST /repos/${this.ctx.repository}/issues/${issueNumber}/comments`;
    const response = await this.call(endpoint, () =>
      this.octokit.rest.issues.createComment({
        ...this.repoParams,
        issue_number: issueNumber,
        body,
      }),
    );
    return response.data as GitHubComment;
  }

  async updateIssue(issueNumber: number, update: UpdateIssue): Promise<GitHubIssue> {
    const endpoint = `PATCH /repos/${this.ctx.repository}/issues/${issueNumber}`;
    const response = await this.call(endpoint, () =>
      this.octokit.rest.issues.update({ ...this.repoParams, issue_number: issueNumber, ...update }),
    );
    return response.data as GitHubIssue;
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
    const endpoint = `POST /repos/${this.ctx.repository}/labels`;
    try {
      await this.call(endpoint, () =>
        this.octokit.rest.issues.createLabel({
          ...this.repoParams,
          name,
          color,
          ...(description !== undefined ? { description } : {}),
        }),
      );
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

  /** Runs one Octokit call and turns its failure into this module's errors. */
  private async call<T>(endpoint: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.failure(endpoint, error);
    }
  }

  private failure(endpoint: string, error: unknown): Error {
    if (!isRequestError(error)) {
      const text = error instanceof Error ? causeMessage(error) : String(error);
      return new GitHubApiError(0, endpoint, `${endpoint} failed: ${this.redact(text)}`);
    }
    const { status } = error;
    const info = errorInfo(error.response?.data);
    if (!error.response) {
      // No answer at all: the request itself failed (after the retries).
      return new GitHubApiError(
        0,
        endpoint,
        `${endpoint} failed: ${this.redact(causeMessage(error as unknown as Error))}`,
      );
    }
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

function isRequestError(error: unknown): error is OctokitRequestError {
  return (
    error instanceof Error &&
    typeof (error as { status?: unknown }).status === 'number' &&
    'request' in error
  );
}

function endpointPath(url: string): string {
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  try {
    return new URL(path).pathname;
  } catch {
    return path;
  }
}

function errorInfo(data: unknown): { message: string; codes: string[] } {
  if (!data || typeof data !== 'object') return { message: '', codes: [] };
  const parsed = data as { message?: unknown; errors?: unknown };
  const message = typeof parsed.message === 'string' ? parsed.message : '';
  const codes = Array.isArray(parsed.errors)
    ? parsed.errors
        .map((e: unknown) => (e && typeof e === 'object' ? (e as { code?: unknown }).code : e))
        .filter((c): c is string => typeof c === 'string')
    : [];
  return { message, codes };
}

function causeMessage(error: Error): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}
