import { readFileSync } from 'node:fs';
import pg from 'pg';
import { ConfigurationError, errorMessage, OptionError } from '../core/errors.js';
import { majorFromVersionNum } from './tools.js';

/**
 * A PostgreSQL connection as libpq understands it. Built from a `postgres://` URL, a
 * `key=value` string, or the standard PG* environment variables.
 */
export interface ConnectionInfo {
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  sslmode?: string;
  /** Other libpq parameters (sslrootcert, application_name, options, connect_timeout, ...). */
  params: Record<string, string>;
  /** The option the connection was given in, which its errors name (default database-url). */
  option?: string;
}

const ENV_FOR_PARAM: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  dbname: 'PGDATABASE',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslcrl: 'PGSSLCRL',
  application_name: 'PGAPPNAME',
  options: 'PGOPTIONS',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
  passfile: 'PGPASSFILE',
  service: 'PGSERVICE',
};

/** The input text never appears in an error: it may carry a password. */
export function parseConnectionString(text: string, inputName = 'database-url'): ConnectionInfo {
  const trimmed = text.trim();
  const raw: Record<string, string> = {};
  if (/^postgres(ql)?:\/\//i.test(trimmed)) {
    let url: URL;
    try {
      url = new URL(trimmed);
    } catch {
      throw new OptionError(
        inputName,
        (w) =>
          `${w.option(inputName)} is not a valid postgres:// URL (the value is not shown because it may contain a password). ` +
          `Expected postgresql://user:password@host:5432/dbname?sslmode=require; percent-encode special characters in the password.`,
      );
    }
    if (url.hostname) raw.host = decodeURIComponent(url.hostname.replace(/^\[|\]$/g, ''));
    if (url.port) raw.port = url.port;
    if (url.username) raw.user = decodeURIComponent(url.username);
    if (url.password) raw.password = decodeURIComponent(url.password);
    const db = decodeURIComponent(url.pathname.replace(/^\//, ''));
    if (db) raw.dbname = db;
    for (const [k, v] of url.searchParams) raw[k] = v;
  } else if (trimmed !== '') {
    parseKeyValue(trimmed, raw, inputName);
  }
  return { ...fromParams(raw), option: inputName };
}

function parseKeyValue(text: string, out: Record<string, string>, inputName: string): void {
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /\s/.test(text[i])) i++;
    if (i >= n) break;
    const keyStart = i;
    while (i < n && /[A-Za-z_]/.test(text[i])) i++;
    const key = text.slice(keyStart, i);
    while (i < n && /\s/.test(text[i])) i++;
    if (!key || text[i] !== '=') {
      throw new OptionError(
        inputName,
        (w) =>
          `${w.option(inputName)} is neither a postgres:// URL nor a libpq key=value string ` +
          `(the value is not shown because it may contain a password). Expected e.g. "host=db.example.com port=5432 dbname=app user=backup".`,
      );
    }
    i++;
    while (i < n && /\s/.test(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      while (i < n && text[i] !== "'") {
        if (text[i] === '\\' && i + 1 < n) i++;
        value += text[i++];
      }
      if (text[i] !== "'") {
        throw new OptionError(
          inputName,
          (w) => `${w.option(inputName)} has an unterminated quoted value.`,
        );
      }
      i++;
    } else {
      while (i < n && !/\s/.test(text[i])) {
        if (text[i] === '\\' && i + 1 < n) i++;
        value += text[i++];
      }
    }
    out[key] = value;
  }
}

function fromParams(raw: Record<string, string>): ConnectionInfo {
  const params: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!['host', 'port', 'user', 'password', 'dbname', 'sslmode'].includes(k)) params[k] = v;
  }
  const port = raw.port ? Number(raw.port) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port <= 0 || port > 65535)) {
    throw new ConfigurationError(
      `The connection's port must be a number from 1 to 65535, got '${raw.port}'.`,
    );
  }
  return {
    host: raw.host || undefined,
    port,
    user: raw.user || undefined,
    password: raw.password || undefined,
    database: raw.dbname || undefined,
    sslmode: raw.sslmode || undefined,
    params,
  };
}

/** Reads the standard libpq environment variables. */
export function connectionFromEnv(env: NodeJS.ProcessEnv): ConnectionInfo {
  const raw: Record<string, string> = {};
  for (const [param, name] of Object.entries(ENV_FOR_PARAM)) {
    const v = env[name];
    if (v) raw[param] = v;
  }
  return fromParams(raw);
}

/** The connection from `database-url`, or the PG* environment when it is empty. */
export function resolveConnection(
  databaseUrl: string | undefined,
  env: NodeJS.ProcessEnv,
): ConnectionInfo {
  return databaseUrl && databaseUrl.trim() !== ''
    ? withEnvDefaults(parseConnectionString(databaseUrl), env)
    : connectionFromEnv(env);
}

function withEnvDefaults(info: ConnectionInfo, env: NodeJS.ProcessEnv): ConnectionInfo {
  // libpq falls back to PG* variables for what the string leaves out; so do we.
  const fromEnv = connectionFromEnv(env);
  return {
    host: info.host ?? fromEnv.host,
    port: info.port ?? fromEnv.port,
    user: info.user ?? fromEnv.user,
    password: info.password ?? fromEnv.password,
    database: info.database ?? fromEnv.database,
    sslmode: info.sslmode ?? fromEnv.sslmode,
    params: { ...fromEnv.params, ...info.params },
  };
}

/** The database name the connection lands in, as libpq would choose it. */
export function databaseName(info: ConnectionInfo): string {
  return info.database ?? info.user ?? process.env.USER ?? 'postgres';
}

/**
 * Environment for a libpq child process (pg_dump, pg_restore, psql): the connection is passed
 * in PG* variables, never on the command line, where other processes could read the password.
 */
export function libpqEnv(info: ConnectionInfo, database?: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (info.host) env.PGHOST = info.host;
  if (info.port) env.PGPORT = String(info.port);
  if (info.user) env.PGUSER = info.user;
  if (info.password) env.PGPASSWORD = info.password;
  const db = database ?? info.database;
  if (db) env.PGDATABASE = db;
  if (info.sslmode) env.PGSSLMODE = info.sslmode;
  for (const [k, v] of Object.entries(info.params)) {
    const name = ENV_FOR_PARAM[k];
    if (name) env[name] = v;
  }
  return env;
}

/** A process environment with every inherited PG* variable replaced by the connection's own. */
export function childEnv(
  base: NodeJS.ProcessEnv,
  info: ConnectionInfo,
  database?: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    if (!/^PG[A-Z]+$/.test(k)) env[k] = v;
  }
  return { ...env, ...libpqEnv(info, database) };
}

/** A `postgres://` URL for the connection (contains the password: mask it before logging). */
export function connectionUrl(info: ConnectionInfo, database?: string): string {
  const url = new URL('postgresql://localhost');
  const host = info.host ?? 'localhost';
  if (host.startsWith('/')) {
    url.searchParams.set('host', host);
  } else {
    url.hostname = host.includes(':') ? `[${host}]` : host;
  }
  if (info.port) url.port = String(info.port);
  if (info.user) url.username = encodeURIComponent(info.user);
  if (info.password) url.password = encodeURIComponent(info.password);
  url.pathname = `/${encodeURIComponent(database ?? info.database ?? '')}`;
  if (info.sslmode) url.searchParams.set('sslmode', info.sslmode);
  return url.toString();
}

/** Where the connection goes, without credentials: `user@host:port/db`. */
export function describeConnection(info: ConnectionInfo, database?: string): string {
  return `${info.user ?? '(default user)'}@${info.host ?? 'localhost'}:${info.port ?? 5432}/${database ?? databaseName(info)}`;
}

/**
 * A connection through a transaction-mode pooler cannot hold the exported snapshot the
 * dump relies on, so it is refused with the session-mode alternative.
 */
export function transactionPoolerHint(info: ConnectionInfo): string | undefined {
  const host = (info.host ?? '').toLowerCase();
  if (info.port === 6543) {
    const supabase = host.includes('supabase');
    return (
      `The connection uses port 6543, the transaction-mode pooler port (Supabase Supavisor, PgBouncer). ` +
      `A transaction-mode pooler hands each transaction to another server connection, so pg_dump cannot share ` +
      `the exported snapshot and session settings a consistent backup needs. ` +
      (supabase
        ? `Use the session-mode pooler on port 5432 (same host) or the direct connection db.<project-ref>.supabase.co:5432.`
        : `Connect in session mode (PgBouncer pool_mode=session, usually port 5432) or directly to the server.`)
    );
  }
  if (/-pooler\./.test(host)) {
    return (
      `The host '${info.host}' is a transaction-mode connection pooler (Neon's '-pooler' endpoint). ` +
      `pg_dump needs a session that holds its snapshot: use the direct endpoint, the same host without '-pooler'.`
    );
  }
  return undefined;
}

function sslFor(info: ConnectionInfo): pg.ClientConfig['ssl'] | 'prefer' {
  const mode = info.sslmode ?? 'prefer';
  switch (mode) {
    case 'disable':
    case 'allow':
      return false;
    case 'prefer':
      return 'prefer';
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full': {
      const ca = info.params.sslrootcert
        ? readFileSync(info.params.sslrootcert, 'utf8')
        : undefined;
      return mode === 'verify-ca'
        ? { rejectUnauthorized: true, ca, checkServerIdentity: () => undefined }
        : { rejectUnauthorized: true, ca };
    }
    default:
      throw new ConfigurationError(
        `sslmode '${mode}' is not one of disable, allow, prefer, require, verify-ca, verify-full.`,
      );
  }
}

/** Opens a client connection with the same parameters the child tools get. */
export async function connect(info: ConnectionInfo, database?: string): Promise<pg.Client> {
  const ssl = sslFor(info);
  const base: pg.ClientConfig = {
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: database ?? info.database,
    application_name: info.params.application_name ?? 'pg-backup-actions',
    connectionTimeoutMillis: Number(info.params.connect_timeout ?? 30) * 1000,
  };
  const attempt = async (sslOption: pg.ClientConfig['ssl']): Promise<pg.Client> => {
    const client = new pg.Client({ ...base, ssl: sslOption });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return client;
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
  };
  const isLocal =
    !info.host ||
    info.host.startsWith('/') ||
    info.host === 'localhost' ||
    info.host === '127.0.0.1' ||
    info.host === '::1';
  try {
    if (ssl === 'prefer') {
      if (isLocal) return await attempt(false);
      try {
        return await attempt({ rejectUnauthorized: false });
      } catch (error) {
        if (/does not support SSL/i.test(errorMessage(error))) return await attempt(false);
        throw error;
      }
    }
    return await attempt(ssl);
  } catch (error) {
    throw connectionError(error, info, database);
  }
}

/** Turns a connection failure into a message that says where and why, without the password. */
export function connectionError(error: unknown, info: ConnectionInfo, database?: string): Error {
  const where = describeConnection(info, database);
  const code = (error as { code?: string }).code;
  let message = errorMessage(error);
  if (info.password) message = message.split(info.password).join('***');
  const key = info.option ?? 'database-url';
  const check = (what: string): OptionError =>
    new OptionError(
      key,
      (w) => `cannot connect to ${where}: ${message}. Check ${what} in ${w.option(key)}.`,
    );
  if (code === '28P01' || code === '28000') return check('the user and password');
  if (code === '3D000') return check('the database name');
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    code === 'ETIMEDOUT' ||
    code === 'EHOSTUNREACH'
  ) {
    return new ConfigurationError(
      `Cannot connect to ${where}: ${message}. Is the server reachable from this runner?`,
    );
  }
  return new Error(`Cannot connect to ${where}: ${message}`);
}

export interface ServerInfo {
  version: string;
  versionNum: number;
  major: number;
  database: string;
}

export async function serverInfo(client: pg.Client): Promise<ServerInfo> {
  const r = await client.query<{ v: string; n: string; db: string }>(
    "SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n, current_database() AS db",
  );
  const versionNum = Number(r.rows[0].n);
  return {
    version: r.rows[0].v.split(' ')[0],
    versionNum,
    major: majorFromVersionNum(versionNum),
    database: r.rows[0].db,
  };
}

/** Quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes a string literal for SQL. */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
