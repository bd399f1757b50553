/**
 * A local HTTP server standing in for the GitHub REST endpoints the issue reporter uses.
 *
 * Every request is checked against GitHub's published OpenAPI description (`@octokit/openapi`):
 * the method and path must match an operation, query parameters must be declared by it, and the
 * JSON body must validate against its request schema. Every answer is checked against the
 * operation's response schema. Anything off-contract is answered with 400/404/422 and recorded
 * in `contractViolations`.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { Ajv, type ValidateFunction } from 'ajv';
import * as ajvFormats from 'ajv-formats';

export interface FakeIssue {
  id: number;
  number: number;
  title: string;
  body: string | null;
  state: 'open' | 'closed';
  state_reason: 'completed' | 'not_planned' | 'duplicate' | 'reopened' | null;
  labels: string[];
  /** Pull requests share the issue numbering and show up in the issue listing. */
  pull_request: boolean;
  comments: number;
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  duplicate_of_id?: number;
}

export interface FakeComment {
  id: number;
  issue_number: number;
  body: string;
  created_at: string;
}

export interface FakeRequest {
  method: string;
  /** Path and query, as sent. */
  path: string;
  body: unknown;
  /** The request headers, lower-cased, without Authorization. */
  headers: Record<string, string>;
}

export interface FakeGitHub {
  url: string;
  repository: string;
  token: string;
  issues: FakeIssue[];
  comments: FakeComment[];
  labels: string[];
  requests: FakeRequest[];
  /** Requests or answers that broke the OpenAPI contract; tests assert this stays empty. */
  contractViolations: string[];
  /** The next matching request is answered with `status` instead of being served. */
  failNext(status: number, match?: (method: string, path: string) => boolean): void;
  setPermission(mode: 'write' | 'read'): void;
  /** Parks the next `count` matching requests until all of them have arrived, then serves them. */
  holdUntil(count: number, match: (method: string, path: string) => boolean): void;
  /** Adds an issue (or pull request) as if someone else had opened it. */
  addIssue(issue: Partial<Omit<FakeIssue, 'id' | 'number'>> & { title: string }): FakeIssue;
  stop(): Promise<void>;
}

interface OpenApiParameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: object;
}

interface OpenApiOperation {
  operationId: string;
  parameters?: OpenApiParameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: object }> };
  responses: Record<string, { content?: Record<string, { schema?: object }> }>;
}

interface OpenApiDescription {
  openapi: string;
  paths: Record<string, Record<string, OpenApiOperation | unknown>>;
}

interface PathTemplate {
  template: string;
  pattern: RegExp;
  names: string[];
  literals: number;
  item: Record<string, OpenApiOperation | unknown>;
}

interface Contract {
  templates: PathTemplate[];
  ajv: Ajv;
  compiled: WeakMap<object, ValidateFunction>;
}

const DESCRIPTION = '@octokit/openapi/generated/api.github.com.deref.json';
const API_VERSION = '2022-11-28';
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

let contract: Contract | undefined;

/** Loads the (large) description once per module registry and indexes its path templates. */
function loadContract(): Contract {
  if (contract) return contract;
  const file = createRequire(import.meta.url).resolve(DESCRIPTION);
  const description = JSON.parse(readFileSync(file, 'utf8')) as OpenApiDescription;
  const templates = Object.entries(description.paths).map(([template, item]): PathTemplate => {
    const names: string[] = [];
    const segments = template.split('/').map((segment) => {
      const param = /^\{([^}]+)\}$/.exec(segment);
      if (param) {
        names.push(param[1]!);
        return '([^/]+)';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    });
    return {
      template,
      pattern: new RegExp(`^${segments.join('/')}$`),
      names,
      literals: template.split('/').length - names.length,
      item,
    };
  });
  // A literal segment is more specific than a parameter: /issues/comments beats /issues/{number}.
  templates.sort((a, b) => b.literals - a.literals);
  const ajv = new Ajv({ strict: false, allErrors: true, logger: false });
  const addFormats = (ajvFormats as unknown as { default: (a: Ajv) => Ajv }).default;
  addFormats(ajv);
  for (const format of ['int32', 'int64', 'float', 'double']) ajv.addFormat(format, true);
  contract = { templates, ajv, compiled: new WeakMap() };
  return contract;
}

const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs']);
const SCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
const SCHEMA_ONE = new Set([
  'items',
  'additionalProperties',
  'not',
  'if',
  'then',
  'else',
  'contains',
  'propertyNames',
  'additionalItems',
]);
const OPENAPI_ONLY = new Set(['nullable', 'example', 'discriminator', 'xml', 'externalDocs']);

/** Rewrites an OpenAPI 3.0 schema object as JSON Schema (chiefly `nullable`). */
export function toJsonSchema(schema: unknown): unknown {
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) return schema;
  const source = schema as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    if (OPENAPI_ONLY.has(key) || key.startsWith('x-')) continue;
    if (SCHEMA_MAPS.has(key) && value && typeof value === 'object') {
      out[key] = Object.fromEntries(
        Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, toJsonSchema(v)]),
      );
    } else if (SCHEMA_LISTS.has(key) && Array.isArray(value)) {
      out[key] = value.map(toJsonSchema);
    } else if (SCHEMA_ONE.has(key)) {
      out[key] = Array.isArray(value) ? value.map(toJsonSchema) : toJsonSchema(value);
    } else {
      out[key] = value;
    }
  }
  if (source.exclusiveMinimum === true && typeof source.minimum === 'number') {
    out.exclusiveMinimum = source.minimum;
    delete out.minimum;
  } else if (typeof source.exclusiveMinimum === 'boolean') delete out.exclusiveMinimum;
  if (source.exclusiveMaximum === true && typeof source.maximum === 'number') {
    out.exclusiveMaximum = source.maximum;
    delete out.maximum;
  } else if (typeof source.exclusiveMaximum === 'boolean') delete out.exclusiveMaximum;
  if (source.nullable === true) {
    const combined = 'oneOf' in out || 'anyOf' in out || 'allOf' in out;
    if (!combined && typeof out.type === 'string') {
      out.type = [out.type, 'null'];
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    } else {
      return { anyOf: [out, { type: 'null' }] };
    }
  }
  return out;
}

function validator(schema: object): ValidateFunction {
  const { ajv, compiled } = loadContract();
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(toJsonSchema(schema) as object);
    compiled.set(schema, validate);
  }
  return validate;
}

function describeErrors(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`)
    .join('; ');
}

/** A query or path value as the operation's schema would read it. */
function coerce(value: string, schema: object | undefined): unknown {
  const type = (schema as { type?: unknown } | undefined)?.type;
  if ((type === 'integer' || type === 'number') && /^-?\d+(\.\d+)?$/.test(value)) {
    return Number(value);
  }
  if (type === 'boolean' && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface Matched {
  template: string;
  operation: OpenApiOperation;
  params: Record<string, string>;
}

const BASIC_ERRORS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Bad credentials',
  403: 'Forbidden',
  404: 'Not Found',
  410: 'Gone',
  422: 'Validation Failed',
  500: 'Internal Server Error',
  502: 'Server Error',
  503: 'Service Unavailable',
};

function basicError(status: number, message = BASIC_ERRORS[status] ?? `Error ${status}`): Reply {
  return {
    status,
    body: { message, documentation_url: 'https://docs.github.com/rest', status: String(status) },
  };
}

function timestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export async function startFakeGitHub(
  options: { repository?: string; token?: string } = {},
): Promise<FakeGitHub> {
  const { templates } = loadContract();
  const repository = options.repository ?? 'octo-org/octo-repo';
  const token = options.token ?? `ghs_fake${randomBytes(12).toString('hex')}`;
  const [owner, repo] = repository.split('/') as [string, string];
  let permission: 'write' | 'read' = 'write';
  const failures: { status: number; match?: (method: string, path: string) => boolean }[] = [];
  const holds: {
    remaining: number;
    match: (method: string, path: string) => boolean;
    parked: (() => void)[];
  }[] = [];
  let nextIssueId = 1_000_001;
  let nextCommentId = 2_000_001;
  let nextLabelId = 3_000_001;
  const labelIds = new Map<string, number>();

  let url = '';
  const web = `https://github.com/${repository}`;
  const bot = {
    login: 'github-actions[bot]',
    id: 41898282,
    node_id: 'MDM6Qm90NDE4OTgyODI=',
    avatar_url: 'https://avatars.githubusercontent.com/in/15368?v=4',
    gravatar_id: '',
    url: 'https://api.github.com/users/github-actions%5Bbot%5D',
    html_url: 'https://github.com/apps/github-actions',
    followers_url: 'https://api.github.com/users/github-actions%5Bbot%5D/followers',
    following_url: 'https://api.github.com/users/github-actions%5Bbot%5D/following{/other_user}',
    gists_url: 'https://api.github.com/users/github-actions%5Bbot%5D/gists{/gist_id}',
    starred_url: 'https://api.github.com/users/github-actions%5Bbot%5D/starred{/owner}{/repo}',
    subscriptions_url: 'https://api.github.com/users/github-actions%5Bbot%5D/subscriptions',
    organizations_url: 'https://api.github.com/users/github-actions%5Bbot%5D/orgs',
    repos_url: 'https://api.github.com/users/github-actions%5Bbot%5D/repos',
    events_url: 'https://api.github.com/users/github-actions%5Bbot%5D/events{/privacy}',
    received_events_url: 'https://api.github.com/users/github-actions%5Bbot%5D/received_events',
    type: 'Bot',
    user_view_type: 'public',
    site_admin: false,
  };

  const fake: FakeGitHub = {
    url: '',
    repository,
    token,
    issues: [],
    comments: [],
    labels: [],
    requests: [],
    contractViolations: [],
    failNext(status, match) {
      failures.push({ status, match });
    },
    setPermission(mode) {
      permission = mode;
    },
    holdUntil(count, match) {
      holds.push({ remaining: count, match, parked: [] });
    },
    addIssue(issue) {
      const now = timestamp();
      const stored: FakeIssue = {
        id: nextIssueId++,
        number: fake.issues.reduce((max, i) => Math.max(max, i.number), 0) + 1,
        body: null,
        state: 'open',
        state_reason: null,
        labels: [],
        pull_request: false,
        comments: 0,
        created_at: now,
        updated_at: now,
        closed_at: null,
        ...issue,
      };
      for (const label of stored.labels) addLabel(label);
      fake.issues.push(stored);
      return stored;
    },
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };

  function addLabel(name: string): void {
    if (fake.labels.some((l) => l.toLowerCase() === name.toLowerCase())) return;
    fake.labels.push(name);
  }

  function labelJson(name: string): Record<string, unknown> {
    const canonical = fake.labels.find((l) => l.toLowerCase() === name.toLowerCase()) ?? name;
    let id = labelIds.get(canonical);
    if (id === undefined) {
      id = nextLabelId++;
      labelIds.set(canonical, id);
    }
    return {
      id,
      node_id: Buffer.from(`Label${id}`).toString('base64'),
      url: `${url}/repos/${repository}/labels/${encodeURIComponent(canonical)}`,
      name: canonical,
      description: null,
      color: 'ededed',
      default: false,
    };
  }

  function issueJson(issue: FakeIssue): Record<string, unknown> {
    const api = `${url}/repos/${repository}/issues/${issue.number}`;
    const json: Record<string, unknown> = {
      id: issue.id,
      node_id: Buffer.from(`Issue${issue.id}`).toString('base64'),
      url: api,
      repository_url: `${url}/repos/${repository}`,
      labels_url: `${api}/labels{/name}`,
      comments_url: `${api}/comments`,
      events_url: `${api}/events`,
      html_url: `${web}/${issue.pull_request ? 'pull' : 'issues'}/${issue.number}`,
      number: issue.number,
      state: issue.state,
      state_reason: issue.state_reason,
      title: issue.title,
      body: issue.body,
      user: bot,
      labels: issue.labels.map(labelJson),
      assignee: null,
      assignees: [],
      milestone: null,
      locked: false,
      active_lock_reason: null,
      comments: issue.comments,
      closed_at: issue.closed_at,
      created_at: issue.created_at,
      updated_at: issue.updated_at,
      author_association: 'NONE',
    };
    if (issue.pull_request) {
      json.pull_request = {
        url: `${url}/repos/${repository}/pulls/${issue.number}`,
        html_url: `${web}/pull/${issue.number}`,
        diff_url: `${web}/pull/${issue.number}.diff`,
        patch_url: `${web}/pull/${issue.number}.patch`,
        merged_at: null,
      };
    }
    return json;
  }

  function commentJson(comment: FakeComment): Record<string, unknown> {
    return {
      id: comment.id,
      node_id: Buffer.from(`IssueComment${comment.id}`).toString('base64'),
      url: `${url}/repos/${repository}/issues/comments/${comment.id}`,
      html_url: `${web}/issues/${comment.issue_number}#issuecomment-${comment.id}`,
      issue_url: `${url}/repos/${repository}/issues/${comment.issue_number}`,
      body: comment.body,
      user: bot,
      created_at: comment.created_at,
      updated_at: comment.created_at,
      author_association: 'NONE',
    };
  }

  function violation(message: string): void {
    fake.contractViolations.push(message);
  }

  function match(method: string, pathname: string): Matched | undefined {
    for (const t of templates) {
      const found = t.pattern.exec(pathname);
      if (!found) continue;
      const operation = t.item[method.toLowerCase()];
      if (!METHODS.includes(method.toLowerCase()) || !operation) continue;
      const params: Record<string, string> = {};
      t.names.forEach((name, i) => (params[name] = decodeURIComponent(found[i + 1]!)));
      return { template: t.template, operation: operation as OpenApiOperation, params };
    }
    return undefined;
  }

  /** Checks the request against the operation; returns the reply for an off-contract request. */
  function checkRequest(
    endpoint: string,
    matched: Matched,
    query: URLSearchParams,
    raw: string,
    contentType: string | undefined,
  ): { reply?: Reply; body?: unknown } {
    const parameters = matched.operation.parameters ?? [];
    for (const p of parameters.filter((p) => p.in === 'path')) {
      const value = coerce(matched.params[p.name] ?? '', p.schema);
      if (p.schema && !validator(p.schema)(value)) {
        violation(`${endpoint}: path parameter ${p.name}=${matched.params[p.name]} is invalid`);
        return { reply: basicError(404) };
      }
    }
    for (const [name, value] of query) {
      const declared = parameters.find((p) => p.in === 'query' && p.name === name);
      if (!declared) {
        violation(`${endpoint}: query parameter "${name}" is not declared by ${matched.template}`);
        return { reply: basicError(400, `Unknown query parameter: ${name}`) };
      }
      const validate = declared.schema ? validator(declared.schema) : undefined;
      if (validate && !validate(coerce(value, declared.schema))) {
        violation(`${endpoint}: query ${name}=${value}: ${describeErrors(validate)}`);
        return { reply: basicError(422, `Invalid value for ${name}`) };
      }
    }
    for (const p of parameters.filter((p) => p.in === 'query' && p.required)) {
      if (!query.has(p.name)) {
        violation(`${endpoint}: required query parameter "${p.name}" is missing`);
        return { reply: basicError(400, `Missing ${p.name}`) };
      }
    }
    const requestBody = matched.operation.requestBody;
    if (raw === '') {
      if (requestBody?.required) {
        violation(`${endpoint}: the request body is required`);
        return { reply: basicError(400, 'Problems parsing JSON') };
      }
      return {};
    }
    if (!requestBody) {
      violation(`${endpoint}: the operation takes no request body`);
      return { reply: basicError(400, 'This endpoint takes no body') };
    }
    if (!contentType?.toLowerCase().startsWith('application/json')) {
      violation(`${endpoint}: content-type ${contentType ?? '(none)'} is not application/json`);
      return { reply: basicError(415, 'Unsupported Media Type') };
    }
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      violation(`${endpoint}: the body is not JSON`);
      return { reply: basicError(400, 'Problems parsing JSON') };
    }
    const schema = requestBody.content['application/json']?.schema;
    if (schema) {
      const validate = validator(schema);
      if (!validate(body)) {
        const errors = describeErrors(validate);
        violation(`${endpoint}: body does not match ${matched.operation.operationId}: ${errors}`);
        return {
          reply: {
            status: 422,
            body: {
              message: `Invalid request.\n\n${errors}`,
              documentation_url: 'https://docs.github.com/rest',
              status: '422',
            },
          },
        };
      }
    }
    return { body };
  }

  function checkResponse(endpoint: string, matched: Matched, reply: Reply): void {
    const declared = matched.operation.responses[String(reply.status)];
    const schema = declared?.content?.['application/json']?.schema;
    if (!schema) {
      if (reply.status < 300) violation(`${endpoint}: status ${reply.status} is not declared`);
      return;
    }
    const validate = validator(schema);
    if (!validate(reply.body)) {
      violation(`${endpoint}: response ${reply.status} off-schema: ${describeErrors(validate)}`);
    }
  }

  function checkHeaders(endpoint: string, req: IncomingMessage): Reply | undefined {
    if (!req.headers['user-agent']) {
      violation(`${endpoint}: no User-Agent header`);
      return basicError(
        403,
        'Request forbidden by administrative rules. Please make sure your request has a User-Agent header',
      );
    }
    const version = req.headers['x-github-api-version'];
    if (version !== API_VERSION) {
      violation(`${endpoint}: X-GitHub-Api-Version is ${String(version)}, not ${API_VERSION}`);
      return basicError(400, `API version ${String(version)} is not supported.`);
    }
    if (!String(req.headers.accept ?? '').includes('application/vnd.github+json')) {
      violation(`${endpoint}: Accept does not ask for application/vnd.github+json`);
      return basicError(415, 'Unsupported Accept header');
    }
    return undefined;
  }

  function serve(method: string, matched: Matched, query: URLSearchParams, body: unknown): Reply {
    const p = matched.params;
    if (
      p.owner?.toLowerCase() !== owner.toLowerCase() ||
      p.repo?.toLowerCase() !== repo.toLowerCase()
    ) {
      return basicError(404);
    }
    const key = `${method} ${matched.template}`;
    const now = timestamp();
    switch (key) {
      case 'GET /repos/{owner}/{repo}/issues': {
        const state = query.get('state') ?? 'open';
        const wanted = (query.get('labels') ?? '')
          .split(',')
          .map((l) => l.trim().toLowerCase())
          .filter((l) => l !== '');
        const perPage = Math.min(Number(query.get('per_page') ?? 30), 100);
        const page = Math.max(Number(query.get('page') ?? 1), 1);
        const sort = (query.get('sort') ?? 'created') as 'created' | 'updated' | 'comments';
        const direction = query.get('direction') ?? 'desc';
        const selected = fake.issues
          .filter((i) => state === 'all' || i.state === state)
          .filter((i) => wanted.every((w) => i.labels.some((l) => l.toLowerCase() === w)))
          .sort((a, b) => {
            const by =
              sort === 'comments'
                ? a.comments - b.comments
                : sort === 'updated'
                  ? a.updated_at.localeCompare(b.updated_at)
                  : 0;
            const order = by !== 0 ? by : a.number - b.number;
            return direction === 'asc' ? order : -order;
          });
        const last = Math.max(Math.ceil(selected.length / perPage), 1);
        const items = selected.slice((page - 1) * perPage, page * perPage);
        const headers: Record<string, string> = {};
        if (last > 1) {
          const link = (n: number, rel: string): string => {
            const q = new URLSearchParams(query);
            q.set('page', String(n));
            return `<${url}/repos/${repository}/issues?${q.toString()}>; rel="${rel}"`;
          };
          const parts: string[] = [];
          if (page > 1) parts.push(link(page - 1, 'prev'));
          if (page < last) parts.push(link(page + 1, 'next'), link(last, 'last'));
          if (page > 1) parts.push(link(1, 'first'));
          headers.Link = parts.join(', ');
        }
        return { status: 200, body: items.map(issueJson), headers };
      }
      case 'POST /repos/{owner}/{repo}/issues': {
        const b = body as { title: string | number; body?: string; labels?: unknown[] };
        const labels = (b.labels ?? []).map((l) =>
          typeof l === 'string' ? l : String((l as { name?: unknown }).name ?? ''),
        );
        const issue: FakeIssue = {
          id: nextIssueId++,
          number: fake.issues.reduce((max, i) => Math.max(max, i.number), 0) + 1,
          title: String(b.title),
          body: b.body ?? null,
          state: 'open',
          state_reason: null,
          labels: labels.filter((l) => l !== ''),
          pull_request: false,
          comments: 0,
          created_at: now,
          updated_at: now,
          closed_at: null,
        };
        for (const label of issue.labels) addLabel(label);
        fake.issues.push(issue);
        return {
          status: 201,
          body: issueJson(issue),
          headers: { Location: `${url}/repos/${repository}/issues/${issue.number}` },
        };
      }
      case 'PATCH /repos/{owner}/{repo}/issues/{issue_number}': {
        const issue = fake.issues.find((i) => i.number === Number(p.issue_number));
        if (!issue) return basicError(404);
        const b = body as {
          state?: 'open' | 'closed';
          state_reason?: FakeIssue['state_reason'];
          duplicate_issue_id?: number;
          title?: string | number | null;
          body?: string | null;
          labels?: unknown[];
        };
        if (b.state_reason === 'duplicate' && b.duplicate_issue_id !== undefined) {
          if (!fake.issues.some((i) => i.id === b.duplicate_issue_id)) {
            return {
              status: 422,
              body: {
                message: 'Validation Failed',
                documentation_url: 'https://docs.github.com/rest',
                errors: [{ resource: 'Issue', field: 'duplicate_issue_id', code: 'invalid' }],
              },
            };
          }
          issue.duplicate_of_id = b.duplicate_issue_id;
        }
        if (b.title !== undefined && b.title !== null) issue.title = String(b.title);
        if (b.body !== undefined) issue.body = b.body;
        if (b.labels !== undefined) {
          issue.labels = b.labels.map((l) =>
            typeof l === 'string' ? l : String((l as { name?: unknown }).name ?? ''),
          );
          for (const label of issue.labels) addLabel(label);
        }
        if (b.state === 'closed' && issue.state === 'open') {
          issue.state = 'closed';
          issue.closed_at = now;
          issue.state_reason = b.state_reason ?? 'completed';
        } else if (b.state === 'open' && issue.state === 'closed') {
          issue.state = 'open';
          issue.closed_at = null;
          issue.state_reason = 'reopened';
        } else if (b.state === 'closed' && b.state_reason) {
          issue.state_reason = b.state_reason;
        }
        issue.updated_at = now;
        return { status: 200, body: issueJson(issue) };
      }
      case 'POST /repos/{owner}/{repo}/issues/{issue_number}/comments': {
        const issue = fake.issues.find((i) => i.number === Number(p.issue_number));
        if (!issue) return basicError(404);
        const comment: FakeComment = {
          id: nextCommentId++,
          issue_number: issue.number,
          body: (body as { body: string }).body,
          created_at: now,
        };
        fake.comments.push(comment);
        issue.comments += 1;
        issue.updated_at = now;
        return {
          status: 201,
          body: commentJson(comment),
          headers: { Location: `${url}/repos/${repository}/issues/comments/${comment.id}` },
        };
      }
      case 'POST /repos/{owner}/{repo}/labels': {
        const b = body as { name: string; color?: string; description?: string };
        if (b.color !== undefined && !/^[0-9a-fA-F]{6}$/.test(b.color)) {
          return {
            status: 422,
            body: {
              message: 'Validation Failed',
              documentation_url: 'https://docs.github.com/rest/issues/labels#create-a-label',
              errors: [{ resource: 'Label', code: 'invalid', field: 'color' }],
            },
          };
        }
        if (fake.labels.some((l) => l.toLowerCase() === b.name.toLowerCase())) {
          return {
            status: 422,
            body: {
              message: 'Validation Failed',
              documentation_url: 'https://docs.github.com/rest/issues/labels#create-a-label',
              errors: [{ resource: 'Label', code: 'already_exists', field: 'name' }],
            },
          };
        }
        addLabel(b.name);
        const json = labelJson(b.name);
        json.color = b.color ?? 'ededed';
        json.description = b.description ?? null;
        return {
          status: 201,
          body: json,
          headers: { Location: `${url}/repos/${repository}/labels/${encodeURIComponent(b.name)}` },
        };
      }
      default:
        violation(`${method} ${matched.template} is in the description but not served by the fake`);
        return basicError(404);
    }
  }

  async function park(method: string, path: string): Promise<void> {
    const hold = holds.find((h) => h.remaining > 0 && h.match(method, path));
    if (!hold) return;
    hold.remaining -= 1;
    if (hold.remaining === 0) {
      holds.splice(holds.indexOf(hold), 1);
      for (const release of hold.parked) release();
      return;
    }
    await new Promise<void>((resolve) => hold.parked.push(resolve));
  }

  async function handle(req: IncomingMessage): Promise<Reply> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const method = req.method ?? 'GET';
    const target = new URL(req.url ?? '/', 'http://fake');
    const path = `${target.pathname}${target.search}`;
    let recorded: unknown;
    try {
      recorded = raw === '' ? undefined : JSON.parse(raw);
    } catch {
      recorded = raw;
    }
    const seen: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (name !== 'authorization' && value !== undefined) seen[name] = String(value);
    }
    fake.requests.push({ method, path, body: recorded, headers: seen });
    const endpoint = `${method} ${target.pathname}`;

    const matched = match(method, target.pathname);
    if (!matched) {
      violation(`${endpoint}: no operation in the OpenAPI description matches`);
      return basicError(404);
    }
    const headerProblem = checkHeaders(endpoint, req);
    if (headerProblem) return headerProblem;
    const checked = checkRequest(
      endpoint,
      matched,
      target.searchParams,
      raw,
      req.headers['content-type'],
    );
    const reply = await (async (): Promise<Reply> => {
      if (checked.reply) return checked.reply;
      // GitHub takes the token after either scheme: `Bearer` or `token` (Octokit's choice).
      const auth = req.headers.authorization ?? '';
      if (auth !== `Bearer ${token}` && auth !== `token ${token}`) return basicError(401);
      await park(method, path);
      const failure = failures.findIndex((f) => !f.match || f.match(method, path));
      if (failure !== -1) {
        const [{ status }] = failures.splice(failure, 1) as [{ status: number }];
        return basicError(status);
      }
      if (permission === 'read' && method !== 'GET') {
        return {
          status: 403,
          body: {
            message: 'Resource not accessible by integration',
            documentation_url: 'https://docs.github.com/rest',
            status: '403',
          },
        };
      }
      return serve(method, matched, target.searchParams, checked.body);
    })();
    checkResponse(endpoint, matched, reply);
    return reply;
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    handle(req)
      .then((reply) => {
        const text = reply.body === undefined ? '' : JSON.stringify(reply.body);
        res.writeHead(reply.status, {
          'Content-Type': 'application/json; charset=utf-8',
          'X-GitHub-Api-Version-Selected': API_VERSION,
          ...reply.headers,
        });
        res.end(text);
      })
      .catch((error: unknown) => {
        violation(`fake failed: ${error instanceof Error ? error.stack : String(error)}`);
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ message: 'fake failed' }));
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.url = url;
  return fake;
}

/** The one issue titled `title`; the test fails unless there is exactly one. */
export function issueTitled(github: FakeGitHub, title: string): FakeIssue {
  const found = github.issues.filter((i) => i.title === title);
  expect(found).toHaveLength(1);
  return found[0]!;
}
