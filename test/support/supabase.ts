/**
 * A Supabase-shaped PostgreSQL 15 for tests: the machine's PostgreSQL with the fixture's
 * extension files added, loaded with the platform side of a Supabase project
 * (../shared/fixtures/supabase beside the repository, see its README), optionally with an application on top.
 *
 * Layout under <repo>/.tmp/supabase-pg/:
 * - server-<key>/usr/...: a copy of the machine's PostgreSQL 15 keeping the Debian layout
 *   (bin/ copied, so the server finds ../../../../share/postgresql/15 beside it; the module
 *   folder a symlink; share/ copied with the fixture's ext/ files added to share/extension).
 * - data-<kind>-<key>.tar: the data folder of a cluster with the dump loaded (stopped cleanly).
 * - data-<kind>-<key>.json: what the load printed, and how long it took.
 * - data-<kind>-<key>.initdb: an "initdb" that unpacks that tarball (~43 MB), so
 *   startScratchCluster starts a loaded cluster in 0.5-1 s instead of initdb + load + checks
 *   (3-4 s) on an idle 2-core machine.
 * Everything is built in a temp name and renamed into place, so two jest workers may build
 * at once; the loser's copy is thrown away (or overwrites an identical one).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import pg from 'pg';
import { MemoryLogger } from '../../src/core/logger.js';
import { runCommand, tail } from '../../src/core/process.js';
import { startScratchCluster, type ScratchCluster } from '../../src/postgres/cluster.js';
import { parseToolVersion, type ServerBinaries } from '../../src/postgres/tools.js';
import { MACHINE_BIN_DIR } from './embedded.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The fixture folder (image.sql.gz, project.sql.gz, ext/). */
export const SUPABASE_FIXTURE_DIR =
  process.env.SUPABASE_FIXTURE_DIR ?? path.join(repoRoot, '..', 'shared', 'fixtures', 'supabase');
/** Where the server copy and the loaded data folders are cached. */
export const SUPABASE_CACHE_DIR = path.join(repoRoot, '.tmp', 'supabase-pg');
/** The password of every role in the fixture. */
export const SUPABASE_PASSWORD = 'sbpass';
/** The superuser the image's initdb makes. */
export const SUPABASE_ADMIN = 'supabase_admin';
/** The application SQL that `app: true` runs as `postgres`. */
export const SUPABASE_APP_SQL = path.join(repoRoot, 'test', 'support', 'supabase-app.sql');

/** Server settings a Supabase database runs with (the ones the dumps need). */
export const SUPABASE_SETTINGS: Record<string, string> = {
  shared_preload_libraries: 'pg_stat_statements',
  wal_level: 'logical',
};

/** Bump when the layout or the post-load steps change, to rebuild every cache entry. */
const CACHE_VERSION = '1';

export type SupabaseKind = 'project' | 'image';

/**
 * Run as supabase_admin after the dump. pg_dumpall only dumps the `postgres` database's own
 * properties with --clean (it does not --create template1 or postgres), so the dumps lack
 * what the image does to that database: post-setup's `GRANT ALL ON DATABASE postgres TO
 * dashboard_user` and demote-postgres's `GRANT ALL ON DATABASE postgres TO postgres`, and
 * `postgres` owning it (supabase/postgres migrations/tests/database/privs.sql expects
 * postgres to have CREATE on the database and on schema public, whose owner in 15 is
 * pg_database_owner). Without this, `postgres` can create nothing in public.
 * supautils lets `postgres` set session_replication_role; a GRANT emulates that.
 */
const POST_LOAD_SQL = `
ALTER DATABASE postgres OWNER TO postgres;
GRANT ALL ON DATABASE postgres TO dashboard_user;
GRANT SET ON PARAMETER session_replication_role TO postgres;
`;

/** Errors the load prints that are part of what Supabase dumps hold (see the fixture README). */
const EXPECTED_LOAD_ERRORS: RegExp[] = [
  // initdb -U supabase_admin made it; pg_dumpall dumps every role.
  /ERROR: {2}role "supabase_admin" already exists/,
  // supabase_vault's CREATE EXTENSION makes these, then the dump creates them again.
  /ERROR: {2}function "secrets_encrypt_secret_secret" already exists with same argument types/,
  /ERROR: {2}relation "decrypted_secrets" already exists/,
  // An event trigger makes graphql_public.graphql when pg_graphql is created; on a load
  // the event triggers come last, so the dump's comment and grants on it find nothing.
  /ERROR: {2}function graphql_public\.graphql\(text, text, jsonb, jsonb\) does not exist/,
  // The event trigger's owner in the dump is postgres, which is no superuser.
  /ERROR: {2}permission denied to change owner of event trigger "issue_pg_net_access"/,
];

/** What must exist after a load, else the load failed in a way the errors do not show. */
const REQUIRED: Record<SupabaseKind, { relations: string[]; extensions: string[] }> = {
  image: {
    relations: ['auth.users', 'storage.buckets', 'storage.objects', 'vault.secrets'],
    extensions: [
      'pg_graphql',
      'pg_stat_statements',
      'pgcrypto',
      'pgjwt',
      'pgsodium',
      'supabase_vault',
      'uuid-ossp',
    ],
  },
  project: {
    relations: [
      'auth.users',
      'auth.identities',
      'auth.sessions',
      'storage.buckets',
      'storage.objects',
      'realtime.messages',
      'supabase_functions.hooks',
      'vault.secrets',
    ],
    extensions: [
      'pg_graphql',
      'pg_net',
      'pg_stat_statements',
      'pgcrypto',
      'pgjwt',
      'pgsodium',
      'supabase_vault',
      'uuid-ossp',
    ],
  },
};

function sha(...parts: (string | Buffer)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 16);
}

function tempName(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The environment for libpq programs: ours without PG* variables, plus `extra`. */
function libpqEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  return { ...env, PGCONNECT_TIMEOUT: '10', ...extra };
}

interface ServerCopy {
  server: ServerBinaries;
  key: string;
}

let serverCopy: ServerCopy | undefined;

function machinePaths(): { binDir: string; pkglibDir: string; shareDir: string } {
  const out = execFileSync(
    path.join(MACHINE_BIN_DIR, 'pg_config'),
    ['--bindir', '--pkglibdir', '--sharedir'],
    { encoding: 'utf8' },
  );
  const [binDir, pkglibDir, shareDir] = out.trim().split('\n');
  if (!binDir || !pkglibDir || !shareDir) throw new Error(`pg_config printed: ${out}`);
  return { binDir, pkglibDir, shareDir };
}

function buildServerCopy(): ServerCopy {
  const machine = machinePaths();
  const versionText = execFileSync(path.join(machine.binDir, 'postgres'), ['--version'], {
    encoding: 'utf8',
  });
  const parsed = parseToolVersion(versionText);
  if (!parsed) throw new Error(`postgres --version printed: ${versionText}`);
  const extDir = path.join(SUPABASE_FIXTURE_DIR, 'ext');
  const extFiles = readdirSync(extDir).sort();
  const key = sha(
    CACHE_VERSION,
    versionText,
    JSON.stringify(machine),
    ...extFiles.flatMap((name) => [name, readFileSync(path.join(extDir, name))]),
  );
  const root = path.join(SUPABASE_CACHE_DIR, `server-${key}`);
  // Every path keeps its place below the root, so bin/ finds share/ where the build put it.
  const under = (dir: string): string => path.join(root, dir);
  const server: ServerBinaries = {
    binDir: under(machine.binDir),
    ...parsed,
    initdb: path.join(under(machine.binDir), 'initdb'),
    pgCtl: path.join(under(machine.binDir), 'pg_ctl'),
    postgres: path.join(under(machine.binDir), 'postgres'),
  };
  if (existsSync(root)) return { server, key };

  mkdirSync(SUPABASE_CACHE_DIR, { recursive: true });
  const temp = tempName(root);
  try {
    const at = (dir: string): string => path.join(temp, dir);
    mkdirSync(path.dirname(at(machine.binDir)), { recursive: true });
    cpSync(machine.binDir, at(machine.binDir), { recursive: true, verbatimSymlinks: true });
    if (!existsSync(at(machine.pkglibDir))) {
      mkdirSync(path.dirname(at(machine.pkglibDir)), { recursive: true });
      symlinkSync(machine.pkglibDir, at(machine.pkglibDir));
    }
    mkdirSync(path.dirname(at(machine.shareDir)), { recursive: true });
    cpSync(machine.shareDir, at(machine.shareDir), { recursive: true, verbatimSymlinks: true });
    for (const name of extFiles) {
      const target = path.join(at(machine.shareDir), 'extension', name);
      cpSync(path.join(extDir, name), target);
      chmodSync(target, 0o644);
    }
    // The copy must find its own share/: pg_config and postgres share the lookup.
    const shareSeen = execFileSync(path.join(at(machine.binDir), 'pg_config'), ['--sharedir'], {
      encoding: 'utf8',
    }).trim();
    if (shareSeen !== at(machine.shareDir)) {
      throw new Error(
        `the PostgreSQL copy in ${temp} looks for share/ at ${shareSeen}, not ${at(machine.shareDir)}`,
      );
    }
    try {
      renameSync(temp, root);
    } catch (error) {
      // Another worker finished first: use its copy.
      if (!existsSync(root)) throw error;
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  return { server, key };
}

function ensureServerCopy(): ServerCopy {
  serverCopy ??= buildServerCopy();
  return serverCopy;
}

/**
 * The machine's PostgreSQL 15 with the fixture's extension files (pg_graphql, pg_net, pgjwt,
 * pgsodium, supabase_vault) added, built once under .tmp/supabase-pg/.
 */
export function supabaseServer(): ServerBinaries {
  return ensureServerCopy().server;
}

/** What loading a dump printed, kept beside its tarball. */
export interface SupabaseLoadReport {
  kind: SupabaseKind;
  /** The ERROR lines psql printed (all of them expected, else the load throws). */
  errors: string[];
  /** initdb + start + load + checks + stop + tar, in ms. */
  buildMs: number;
  builtAt: string;
}

export interface SupabaseTimings {
  /** Finding (or building) the server copy. */
  serverMs: number;
  /** Building the loaded data tarball; 0 when it was cached. */
  buildMs: number;
  /** Unpacking the tarball and starting the server. */
  startMs: number;
  /** Running supabase-app.sql; 0 without `app`. */
  appMs: number;
}

export interface SupabaseServer {
  kind: SupabaseKind;
  cluster: ScratchCluster;
  /** supabase_admin, the superuser. */
  adminUrl(database?: string): string;
  /** postgres: not a superuser (CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS), as users connect. */
  postgresUrl(database?: string): string;
  /** libpq variables for `user` (default supabase_admin). */
  env(user?: string, database?: string): Record<string, string>;
  /** What the dump load printed (when the data tarball was built). */
  load: SupabaseLoadReport;
  /** Whether the loaded data folder came from the cache. */
  cached: boolean;
  timings: SupabaseTimings;
  stop(): Promise<void>;
}

function urlFor(cluster: ScratchCluster, user: string, database = 'postgres'): string {
  return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(SUPABASE_PASSWORD)}@${cluster.host}:${cluster.port}/${encodeURIComponent(database)}`;
}

async function psqlRun(
  cluster: ScratchCluster,
  user: string,
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand([path.join(MACHINE_BIN_DIR, 'psql'), '-X', '-q', ...args], {
    env: libpqEnv({ ...cluster.env('postgres'), PGUSER: user, PGPASSWORD: SUPABASE_PASSWORD }),
    input,
    timeoutMs: 180000,
  });
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Throws when the load left out something a database of this kind must have. */
async function checkLoaded(kind: SupabaseKind, url: string): Promise<void> {
  const want = REQUIRED[kind];
  const rows = await query<{ missing: string | null }>(
    url,
    `SELECT 'relation ' || r AS missing FROM unnest(ARRAY[${want.relations.map((r) => `'${r}'`).join(',')}]) r
       WHERE to_regclass(r) IS NULL
     UNION ALL
     SELECT 'extension ' || e FROM unnest(ARRAY[${want.extensions.map((e) => `'${e}'`).join(',')}]) e
       WHERE NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = e)
     UNION ALL
     SELECT 'publication supabase_realtime'
       WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime')
     UNION ALL
     SELECT 'role postgres (non-superuser with login)'
       WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'postgres' AND rolcanlogin AND NOT rolsuper)`,
  );
  if (rows.length > 0) {
    throw new Error(
      `loading ${kind}.sql.gz left these missing: ${rows.map((r) => r.missing).join(', ')}`,
    );
  }
}

interface DataCache {
  tarball: string;
  reportFile: string;
  initdb: string;
}

function dataCache(kind: SupabaseKind, copy: ServerCopy): DataCache {
  const dump = readFileSync(path.join(SUPABASE_FIXTURE_DIR, `${kind}.sql.gz`));
  const key = sha(
    CACHE_VERSION,
    copy.key,
    dump,
    POST_LOAD_SQL,
    JSON.stringify(SUPABASE_SETTINGS),
    EXPECTED_LOAD_ERRORS.map(String).join('\n'),
  );
  const base = path.join(SUPABASE_CACHE_DIR, `data-${kind}-${key}`);
  return { tarball: `${base}.tar`, reportFile: `${base}.json`, initdb: `${base}.initdb` };
}

/** Initdb, load the dump, check it, stop the server and tar its data folder. */
async function buildData(
  kind: SupabaseKind,
  copy: ServerCopy,
  cache: DataCache,
): Promise<SupabaseLoadReport> {
  const started = Date.now();
  const cluster = await startScratchCluster({
    server: copy.server,
    logger: new MemoryLogger(),
    superuser: SUPABASE_ADMIN,
    password: SUPABASE_PASSWORD,
    settings: SUPABASE_SETTINGS,
  });
  try {
    const sql = gunzipSync(await readFile(path.join(SUPABASE_FIXTURE_DIR, `${kind}.sql.gz`)));
    const load = await psqlRun(
      cluster,
      SUPABASE_ADMIN,
      ['-d', 'postgres', '-f', '-'],
      sql.toString(),
    );
    const errors = load.stderr.split('\n').filter((line) => /\bERROR: /.test(line));
    const unexpected = errors.filter((line) => !EXPECTED_LOAD_ERRORS.some((re) => re.test(line)));
    if (load.code !== 0 || unexpected.length > 0) {
      throw new Error(
        `psql loading ${kind}.sql.gz exited ${load.code} with unexpected errors:\n` +
          `${unexpected.join('\n') || tail(load.stderr)}`,
      );
    }
    const post = await psqlRun(cluster, SUPABASE_ADMIN, [
      '-v',
      'ON_ERROR_STOP=1',
      '-d',
      'postgres',
      '-c',
      POST_LOAD_SQL,
    ]);
    if (post.code !== 0) throw new Error(`the post-load SQL failed: ${tail(post.stderr)}`);
    await checkLoaded(kind, cluster.url('postgres'));

    // A clean (fast) shutdown that keeps the folder, which cluster.stop() would remove;
    // SIGINT to the postmaster is what pg_ctl stop -m fast sends.
    await fastShutdown(cluster.dataDir);
    const conf = path.join(cluster.dataDir, 'postgresql.conf');
    const confText = await readFile(conf, 'utf8');
    await writeFile(conf, confText.replace(/\ninclude 'scratch\.conf'\n$/, '\n'));
    await rm(path.join(cluster.dataDir, 'scratch.conf'), { force: true });
    await rm(path.join(cluster.dataDir, 'postmaster.opts'), { force: true });

    const tempTar = tempName(cache.tarball);
    const tar = await runCommand(['tar', '-cf', tempTar, '-C', cluster.dataDir, '.'], {
      timeoutMs: 120000,
    });
    if (tar.code !== 0) {
      await rm(tempTar, { force: true });
      throw new Error(`tar of the loaded data folder failed: ${tail(tar.stderr)}`);
    }
    chmodSync(tempTar, 0o644);
    await rename(tempTar, cache.tarball);

    const report: SupabaseLoadReport = {
      kind,
      errors,
      buildMs: Date.now() - started,
      builtAt: new Date().toISOString(),
    };
    const tempReport = tempName(cache.reportFile);
    await writeFile(tempReport, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o644 });
    await rename(tempReport, cache.reportFile);

    // Written last: its presence means the tarball and the report are in place.
    const script = [
      '#!/bin/sh',
      '# An initdb for startScratchCluster that unpacks a loaded Supabase data folder.',
      'set -eu',
      `real=${shellQuote(copy.server.initdb)}`,
      `tarball=${shellQuote(cache.tarball)}`,
      'for arg in "$@"; do',
      '  case "$arg" in --help|--version|-V|-\\?) exec "$real" "$@" ;; esac',
      'done',
      'data=',
      'while [ $# -gt 0 ]; do',
      '  case "$1" in',
      '    -D) data=$2; shift 2 ;;',
      '    --pgdata=*) data=${1#--pgdata=}; shift ;;',
      '    *) shift ;;',
      '  esac',
      'done',
      '[ -n "$data" ] || { echo "no -D given" >&2; exit 2; }',
      'mkdir -m 700 "$data"',
      'tar -xf "$tarball" -C "$data"',
      'chmod 700 "$data"',
      '',
    ].join('\n');
    const tempScript = tempName(cache.initdb);
    await writeFile(tempScript, script, { mode: 0o755 });
    chmodSync(tempScript, 0o755);
    await rename(tempScript, cache.initdb);
    return report;
  } finally {
    await cluster.stop();
  }
}

async function fastShutdown(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 60000;
  while (existsSync(pidFile)) {
    if (Date.now() > deadline) throw new Error(`PostgreSQL (pid ${pid}) did not shut down`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Starts a Supabase-shaped server: `image` is what a supabase/postgres service container
 * holds, `project` a new hosted project (image + auth + storage + realtime + webhooks).
 * With `app`, test/support/supabase-app.sql runs on top as `postgres`.
 */
export async function startSupabase(options: {
  kind: SupabaseKind;
  app?: boolean;
}): Promise<SupabaseServer> {
  const { kind } = options;
  if (options.app && kind !== 'project') {
    // The image's auth schema is GoTrue's first one: no identities, sessions or the
    // columns GoTrue writes now. The services' migrations (the project) add them.
    throw new Error('the application needs a project (auth, storage and realtime migrated)');
  }
  let t = Date.now();
  const copy = ensureServerCopy();
  const serverMs = Date.now() - t;

  t = Date.now();
  const cache = dataCache(kind, copy);
  const cached = existsSync(cache.initdb) && existsSync(cache.tarball);
  if (!cached) await buildData(kind, copy, cache);
  const load = JSON.parse(await readFile(cache.reportFile, 'utf8')) as SupabaseLoadReport;
  const buildMs = cached ? 0 : Date.now() - t;

  t = Date.now();
  const cluster = await startScratchCluster({
    server: { ...copy.server, initdb: cache.initdb },
    logger: new MemoryLogger(),
    superuser: SUPABASE_ADMIN,
    password: SUPABASE_PASSWORD,
    settings: SUPABASE_SETTINGS,
  });
  const startMs = Date.now() - t;

  const server: SupabaseServer = {
    kind,
    cluster,
    adminUrl: (database) => cluster.url(database),
    postgresUrl: (database) => urlFor(cluster, 'postgres', database),
    env: (user = SUPABASE_ADMIN, database = 'postgres') => ({
      ...cluster.env(database),
      PGUSER: user,
      PGPASSWORD: SUPABASE_PASSWORD,
    }),
    load,
    cached,
    timings: { serverMs, buildMs, startMs, appMs: 0 },
    stop: () => cluster.stop(),
  };

  if (options.app) {
    t = Date.now();
    try {
      const app = await psqlRun(cluster, 'postgres', [
        '-v',
        'ON_ERROR_STOP=1',
        '-d',
        'postgres',
        '-f',
        SUPABASE_APP_SQL,
      ]);
      if (app.code !== 0) {
        throw new Error(`supabase-app.sql (as postgres) failed: ${tail(app.stderr)}`);
      }
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    server.timings.appMs = Date.now() - t;
  }
  return server;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** count:md5 of a query's rows as to_jsonb text, in the order of that text. */
function rowsDigestSql(from: string): string {
  return `SELECT count(*)::text || ':' || md5(coalesce(string_agg(j, E'\\n' ORDER BY j), ''))
            FROM (SELECT to_jsonb(t)::text AS j FROM (${from}) t) rows`;
}

/**
 * A fingerprint of what a Supabase app keeps: every table in public, auth.users,
 * auth.identities, auth.sessions, storage.buckets, storage.objects (each count:md5 of its
 * rows as ordered to_jsonb text), the decrypted Vault secrets (name + plaintext), the
 * policies on public and storage tables and the RLS flags of public tables. A table that
 * does not exist reads `absent`. Connect as supabase_admin or postgres (which bypasses RLS
 * and reads all data).
 */
export async function supabaseFingerprint(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // pg_policies deparses expressions against the search_path (supabase_admin's has auth,
    // postgres's not): qualify everything.
    await client.query(`SET search_path = ''`);
    const publicTables = await client.query<{ relname: string }>(
      `SELECT relname FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
        ORDER BY relname`,
    );
    const tables = [
      ...publicTables.rows.map((r) => `public.${r.relname}`),
      'auth.users',
      'auth.identities',
      'auth.sessions',
      'storage.buckets',
      'storage.objects',
    ];
    const fingerprint: Record<string, string> = {};
    const digest = async (sql: string): Promise<string> =>
      (await client.query<{ d: string }>(`SELECT (${rowsDigestSql(sql)}) AS d`)).rows[0]!.d;
    const exists = async (relation: string): Promise<boolean> =>
      (await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [relation]))
        .rows[0]!.ok;

    for (const table of tables) {
      const [schema, name] = table.split('.') as [string, string];
      const qualified = `${quoteIdent(schema)}.${quoteIdent(name)}`;
      fingerprint[table] = (await exists(qualified))
        ? await digest(`SELECT * FROM ${qualified}`)
        : 'absent';
    }
    fingerprint['vault.decrypted_secrets'] = (await exists('vault.decrypted_secrets'))
      ? await digest('SELECT name, decrypted_secret FROM vault.decrypted_secrets')
      : 'absent';
    fingerprint.policies = await digest(
      `SELECT schemaname, tablename, policyname, permissive, roles, cmd, qual, with_check
         FROM pg_policies WHERE schemaname IN ('public', 'storage')`,
    );
    fingerprint.rls = await digest(
      `SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')`,
    );
    return fingerprint;
  } finally {
    await client.end();
  }
}
