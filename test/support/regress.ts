/**
 * PostgreSQL's own regression database as a fixture: the `regression` database that
 * `pg_regress --schedule=parallel_schedule` leaves behind, built the way pg_upgrade's test
 * builds its old cluster (src/bin/pg_upgrade/t/002_pg_upgrade.pl). It holds hundreds of
 * tables of odd types, partitioned tables, domains with NOT VALID constraints, transforms,
 * foreign data wrappers, access methods, large objects, publications and so on.
 *
 * scripts/regress-build.sh builds pg_regress and regress.so from Debian's source package of
 * the installed PostgreSQL 15 into .tmp/regress/<debian version>/. The first run of the
 * schedule (about two minutes) is cached as a base backup tarball next to it; later calls
 * unpack that instead of running the schedule again.
 */
import { constants as fsConstants } from 'node:fs';
import {
  access,
  chmod,
  chown,
  copyFile,
  link,
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath, processAlive, runCommand, tail } from '../../src/core/process.js';
import { startScratchCluster, type ScratchCluster } from '../../src/postgres/cluster.js';
import type { ServerBinaries } from '../../src/postgres/tools.js';
import { machineClientTools, machineServer } from './embedded.js';

/** The repository root (jest runs with it as the working directory). */
const repoRoot = path.resolve(process.cwd());
const cacheRoot = path.join(repoRoot, '.tmp', 'regress');
const buildScript = path.join(repoRoot, 'scripts', 'regress-build.sh');

export const REGRESSION_DATABASE = 'regression';

export interface RegressionSource {
  /** The running scratch server (PostgreSQL 15 of the machine); `stop()` removes it. */
  cluster: ScratchCluster;
  /** A postgresql:// URL of the regression database. */
  url: string;
  /** `regression`. */
  database: string;
  /** The folder holding regress.so, which functions in the database reference by path. */
  libDir: string;
  /** Whether the cluster came from the cached tarball rather than a run of the schedule. */
  fromCache: boolean;
  /** Wall-clock times in milliseconds. */
  timings: { build: number; schedule?: number; cacheWrite?: number; start: number; total: number };
  stop(): Promise<void>;
}

export interface TableFingerprint {
  rows: number;
  /** md5 of the rows' text, one row a line, sorted bytewise. */
  md5: string;
  /** How a row became text: `to_jsonb(t)::text`, or `t::text` when jsonb failed. */
  via: 'jsonb' | 'text';
  /** 'r': a table or leaf partition; 'm': a populated materialized view. */
  relkind: 'r' | 'm';
}

interface Build {
  debianVersion: string;
  upstreamVersion: string;
  dir: string;
}

function parseStamp(text: string): Build | undefined {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) values.set(line.slice(0, at), line.slice(at + 1));
  }
  const debianVersion = values.get('debian_version');
  const upstreamVersion = values.get('upstream_version');
  if (!debianVersion || !upstreamVersion) return undefined;
  return { debianVersion, upstreamVersion, dir: path.join(cacheRoot, debianVersion) };
}

async function exists(file: string, mode = fsConstants.F_OK): Promise<boolean> {
  try {
    await access(file, mode);
    return true;
  } catch {
    return false;
  }
}

async function readBuild(server: ServerBinaries): Promise<Build | undefined> {
  const text = await readFile(path.join(cacheRoot, 'stamp'), 'utf8').catch(() => '');
  const build = parseStamp(text);
  if (!build || build.upstreamVersion !== server.version) return undefined;
  const needed = ['pg_regress', 'regress.so', 'parallel_schedule'];
  for (const file of needed) {
    if (!(await exists(path.join(build.dir, file)))) return undefined;
  }
  return build;
}

/** Runs scripts/regress-build.sh unless its stamp matches the machine's server. */
async function ensureBuild(server: ServerBinaries): Promise<Build> {
  const ready = await readBuild(server);
  if (ready) return ready;
  await mkdir(cacheRoot, { recursive: true });
  const r = await runCommand(['bash', buildScript], {
    cwd: repoRoot,
    timeoutMs: 25 * 60_000,
  });
  await writeFile(path.join(cacheRoot, 'build.log'), `${r.stdout}\n${r.stderr}`);
  if (r.code !== 0) {
    throw new Error(
      `scripts/regress-build.sh failed with exit ${r.code}:\n${tail(`${r.stdout}\n${r.stderr}`, 30)}`,
    );
  }
  const built = await readBuild(server);
  if (!built) {
    throw new Error(
      `scripts/regress-build.sh left no build for PostgreSQL ${server.version} in ${cacheRoot}`,
    );
  }
  return built;
}

/** Gives "others" the search bit on `dir` and its ancestors, so the server user reaches it. */
async function ensureTraversable(dir: string): Promise<void> {
  let current = path.resolve(dir);
  for (;;) {
    const info = await stat(current);
    if ((info.mode & 0o001) === 0) await chmod(current, (info.mode & 0o7777) | 0o001);
    const parent = path.dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

/** The program prefix that runs as the owner of `dir` (the cluster's user) when we are root. */
async function ownerPrefix(dir: string): Promise<{ prefix: string[]; uid: number; gid: number }> {
  const info = await stat(dir);
  if (process.getuid?.() !== 0 || info.uid === 0) {
    return { prefix: [], uid: info.uid, gid: info.gid };
  }
  const setpriv = findOnPath('setpriv', `${process.env.PATH ?? ''}:/usr/bin:/bin`);
  if (setpriv) {
    return {
      prefix: [setpriv, `--reuid=${info.uid}`, `--regid=${info.gid}`, '--clear-groups', '--'],
      uid: info.uid,
      gid: info.gid,
    };
  }
  const passwd = await readFile('/etc/passwd', 'utf8');
  const name = passwd
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[2] === String(info.uid))?.[0];
  const runuser = findOnPath('runuser', `${process.env.PATH ?? ''}:/usr/sbin:/sbin`);
  if (!name || !runuser) throw new Error(`cannot run programs as uid ${info.uid}`);
  return { prefix: [runuser, '-u', name, '--'], uid: info.uid, gid: info.gid };
}

/** Our environment without libpq's PG* variables, in the C locale. */
function clientEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG') && key !== 'LANGUAGE' && !key.startsWith('LC_')) env[key] = value;
  }
  return { ...env, LC_ALL: 'C', LANG: 'C', ...extra };
}

/** The cached cluster's tarball: keyed on the build and where regress.so lives (probin). */
function tarballPath(build: Build, compressed: boolean): string {
  const key = createHash('sha256').update(build.dir).digest('hex').slice(0, 10);
  return path.join(
    cacheRoot,
    `cluster-${build.debianVersion}-${key}.tar${compressed ? '.zst' : ''}`,
  );
}

async function cachedTarball(build: Build): Promise<string | undefined> {
  for (const compressed of [true, false]) {
    const file = tarballPath(build, compressed);
    if (await exists(file)) return file;
  }
  return undefined;
}

/**
 * Runs `fn` holding a lock file with our pid (written whole, then linked into place); a lock
 * whose process is gone is stale.
 */
async function withLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30 * 60_000;
  const mine = `${lockFile}.${process.pid}`;
  await writeFile(mine, String(process.pid));
  try {
    for (;;) {
      try {
        await link(mine, lockFile);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
      if (holder && !processAlive(holder)) {
        await unlink(lockFile).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockFile}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  } finally {
    await unlink(mine).catch(() => undefined);
  }
  try {
    return await fn();
  } finally {
    await unlink(lockFile).catch(() => undefined);
  }
}

/**
 * A stand-in for initdb that unpacks the cached cluster into -D, so that startScratchCluster
 * starts the server on it (as the unprivileged user, when we are root) with its own port,
 * socket and log settings. `--help` goes to the real initdb.
 */
async function restoringInitdb(server: ServerBinaries, tarball: string): Promise<string> {
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const zstd = findOnPath('zstd');
  if (tarball.endsWith('.zst') && !zstd) throw new Error(`zstd is needed to unpack ${tarball}`);
  const extract = tarball.endsWith('.zst')
    ? `tar -I ${quote(zstd ?? 'zstd')} -xf ${quote(tarball)} -C "$data"`
    : `tar -xf ${quote(tarball)} -C "$data"`;
  const script = [
    '#!/bin/sh',
    '# initdb stand-in (test/support/regress.ts): unpacks the cached regression cluster.',
    'set -eu',
    'for arg in "$@"; do',
    '  case "$arg" in',
    `    --help | -V | --version) exec ${quote(server.initdb)} "$@" ;;`,
    '  esac',
    'done',
    'data=',
    'while [ $# -gt 0 ]; do',
    '  case "$1" in',
    '    -D | --pgdata) data="$2"; shift 2 ;;',
    '    --pgdata=*) data="${1#--pgdata=}"; shift ;;',
    '    *) shift ;;',
    '  esac',
    'done',
    '[ -n "$data" ] || { echo "no -D given" >&2; exit 1; }',
    'mkdir -m 0700 "$data"',
    extract,
    '',
  ].join('\n');
  const file = path.join(cacheRoot, `initdb-restore-${path.basename(tarball)}.sh`);
  const current = await readFile(file, 'utf8').catch(() => '');
  if (current !== script) {
    const temp = `${file}.${process.pid}`;
    await writeFile(temp, script, { mode: 0o755 });
    await rename(temp, file);
  }
  return file;
}

const logger = new MemoryLogger();

async function startFromCache(server: ServerBinaries, tarball: string): Promise<ScratchCluster> {
  await ensureTraversable(cacheRoot);
  await chmod(tarball, 0o644);
  const initdb = await restoringInitdb(server, tarball);
  return startScratchCluster({ server: { ...server, initdb }, logger });
}

/** What pg_regress said about the run: `All 217 tests passed.` or `3 of 217 tests failed.` */
function scheduleSummary(output: string): string | undefined {
  return /^\s*((All \d+ tests passed|\d+ of \d+ tests failed)[^\n]*)$/m.exec(output)?.[1]?.trim();
}

/** Runs parallel_schedule against the cluster as pg_upgrade's test does. */
async function runSchedule(cluster: ScratchCluster, server: ServerBinaries, build: Build) {
  const baseDir = path.dirname(cluster.dataDir);
  const outputDir = path.join(baseDir, 'regress-output');
  const owner = await ownerPrefix(baseDir);
  await mkdir(outputDir, { recursive: true });
  await chown(outputDir, owner.uid, owner.gid);
  await ensureTraversable(build.dir);

  const r = await runCommand(
    [
      ...owner.prefix,
      path.join(build.dir, 'pg_regress'),
      `--dlpath=${build.dir}`,
      `--bindir=${server.binDir}`,
      `--host=${cluster.host}`,
      `--port=${cluster.port}`,
      `--user=${cluster.user}`,
      `--schedule=${path.join(build.dir, 'parallel_schedule')}`,
      '--max-concurrent-tests=20',
      `--inputdir=${build.dir}`,
      `--outputdir=${outputDir}`,
    ],
    { cwd: outputDir, env: clientEnv({ HOME: outputDir }), timeoutMs: 20 * 60_000 },
  );
  const output = `${r.stdout}\n${r.stderr}`;
  // Keep the last run's output and diffs for a look after the cluster is gone.
  const keep = path.join(cacheRoot, 'last-run');
  await rm(keep, { recursive: true, force: true });
  await mkdir(keep, { recursive: true });
  await writeFile(path.join(keep, 'pg_regress.out'), output);
  await copyFile(
    path.join(outputDir, 'regression.diffs'),
    path.join(keep, 'regression.diffs'),
  ).catch(() => undefined);
  const summary = scheduleSummary(output);
  // 0: all passed; 1: some tests failed (locale, timing: fine here); 2: could not run.
  if ((r.code !== 0 && r.code !== 1) || !summary) {
    throw new Error(`pg_regress failed with exit ${r.code}:\n${tail(output, 30)}`);
  }
  if (r.code === 1) logger.warning(`pg_regress: ${summary} (see ${keep})`);
}

/** A base backup of the running cluster, as a tarball in the cache (published atomically). */
async function writeCache(cluster: ScratchCluster, server: ServerBinaries, build: Build) {
  const baseDir = path.dirname(cluster.dataDir);
  const backupDir = path.join(baseDir, 'base-backup');
  const r = await runCommand(
    [
      path.join(server.binDir, 'pg_basebackup'),
      `--dbname=${cluster.url('postgres')}`,
      `--pgdata=${backupDir}`,
      '--format=tar',
      '--wal-method=fetch',
      '--checkpoint=fast',
      '--no-sync',
      '--no-manifest',
    ],
    { env: clientEnv(), timeoutMs: 10 * 60_000 },
  );
  if (r.code !== 0) throw new Error(`pg_basebackup failed with exit ${r.code}:\n${tail(r.stderr)}`);
  const baseTar = path.join(backupDir, 'base.tar');
  const zstd = findOnPath('zstd');
  const target = tarballPath(build, zstd !== undefined);
  const temp = `${target}.${process.pid}.tmp`;
  if (zstd) {
    const z = await runCommand([zstd, '-q', '-f', '-1', '-T0', baseTar, '-o', temp], {
      timeoutMs: 10 * 60_000,
    });
    if (z.code !== 0) throw new Error(`zstd failed with exit ${z.code}:\n${tail(z.stderr)}`);
  } else {
    await copyFile(baseTar, temp);
  }
  await chmod(temp, 0o644);
  await rename(temp, target);
  await rm(backupDir, { recursive: true, force: true });
  // Clusters of other builds (and their initdb stand-ins) are stale.
  for (const name of await readdir(cacheRoot)) {
    const stale =
      (name.startsWith('cluster-') || name.startsWith('initdb-restore-')) &&
      !name.includes(path.basename(target)) &&
      !name.endsWith('.tmp');
    if (stale) await rm(path.join(cacheRoot, name), { force: true });
  }
}

/**
 * Starts a throwaway PostgreSQL 15 server holding the `regression` database of PostgreSQL's
 * parallel_schedule. Builds pg_regress and regress.so first when needed (about a minute), and
 * runs the schedule only when no cached cluster exists (about two minutes; then seconds).
 */
export async function startRegressionSource(): Promise<RegressionSource> {
  const started = Date.now();
  const server = machineServer();
  const build = await ensureBuild(server);
  const built = Date.now();
  const timings: RegressionSource['timings'] = { build: built - started, start: 0, total: 0 };

  let cluster: ScratchCluster | undefined;
  let fromCache = false;
  let tarball = await cachedTarball(build);
  if (!tarball) {
    cluster = await withLock(path.join(cacheRoot, 'cluster.lock'), async () => {
      tarball = await cachedTarball(build);
      if (tarball) return undefined;
      const freshStart = Date.now();
      const fresh = await startScratchCluster({ server, logger });
      timings.start = Date.now() - freshStart;
      try {
        const scheduleStart = Date.now();
        await runSchedule(fresh, server, build);
        const cacheStart = Date.now();
        timings.schedule = cacheStart - scheduleStart;
        await writeCache(fresh, server, build);
        timings.cacheWrite = Date.now() - cacheStart;
        return fresh;
      } catch (error) {
        await fresh.stop();
        throw error;
      }
    });
  }
  if (!cluster) {
    if (!tarball) throw new Error('no cached regression cluster after waiting for the lock');
    const restoreStart = Date.now();
    cluster = await startFromCache(server, tarball);
    fromCache = true;
    timings.start = Date.now() - restoreStart;
  }
  const running = cluster;
  try {
    const client = new pg.Client({ connectionString: running.url(REGRESSION_DATABASE) });
    await client.connect();
    await client.end();
  } catch (error) {
    await running.stop();
    throw new Error(`the regression database is not there: ${(error as Error).message}`, {
      cause: error,
    });
  }
  timings.total = Date.now() - started;
  await writeFile(
    path.join(cacheRoot, 'last-start.json'),
    `${JSON.stringify({ fromCache, timings }, null, 2)}\n`,
  ).catch(() => undefined);
  return {
    cluster: running,
    url: running.url(REGRESSION_DATABASE),
    database: REGRESSION_DATABASE,
    libDir: build.dir,
    fromCache,
    timings,
    stop: () => running.stop(),
  };
}

/** Session settings that make the text of values independent of the server's defaults. */
const STABLE_OUTPUT = [
  "SET TimeZone = 'UTC'",
  "SET DateStyle = 'ISO, YMD'",
  "SET IntervalStyle = 'postgres'",
  'SET extra_float_digits = 1',
  "SET bytea_output = 'hex'",
  "SET lc_monetary = 'C'",
  "SET xmloption = 'content'",
  'SET search_path = pg_catalog',
  'SET statement_timeout = 0',
];

/**
 * Row count and md5 of the sorted rows of every table with data outside the system schemas:
 * tables and leaf partitions (relkind r, read with ONLY so inheritance children count
 * separately) and populated materialized views; extension-owned tables are included.
 * Partitioned parents, views and foreign tables hold no rows of their own and are left out.
 * Keys are `schema.table`, quoted as needed. Rows are `to_jsonb(t)::text` (its keys are
 * sorted, so column order does not matter); a table whose rows do not cast to jsonb falls
 * back to `t::text`.
 */
export async function tableFingerprints(url: string): Promise<Map<string, TableFingerprint>> {
  const listClient = new pg.Client({ connectionString: url });
  await listClient.connect();
  let tables: { name: string; relkind: 'r' | 'm' }[];
  try {
    const r = await listClient.query<{ name: string; relkind: 'r' | 'm' }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS relkind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated))
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
        ORDER BY 1`,
    );
    tables = r.rows;
  } finally {
    await listClient.end();
  }

  const result = new Map<string, TableFingerprint>();
  let next = 0;
  const worker = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      for (const statement of STABLE_OUTPUT) await client.query(statement);
      while (next < tables.length) {
        const table = tables[next++];
        if (!table) break;
        const fingerprint = async (via: 'jsonb' | 'text'): Promise<TableFingerprint> => {
          const row = via === 'jsonb' ? 'to_jsonb(t)::text' : 't::text';
          const r = await client.query<{ rows: string; md5: string }>(
            `SELECT count(*) AS rows,
                    md5(coalesce(string_agg(${row}, E'\\n' ORDER BY ${row} COLLATE "C"), '')) AS md5
               FROM ONLY ${table.name} t`,
          );
          const first = r.rows[0];
          if (!first) throw new Error(`no result for ${table.name}`);
          return { rows: Number(first.rows), md5: first.md5, via, relkind: table.relkind };
        };
        let entry: TableFingerprint;
        try {
          entry = await fingerprint('jsonb');
        } catch (jsonbError) {
          try {
            entry = await fingerprint('text');
          } catch (textError) {
            throw new Error(
              `cannot read ${table.name}: ${(jsonbError as Error).message}; as text: ${(textError as Error).message}`,
              { cause: textError },
            );
          }
        }
        result.set(table.name, entry);
      }
    } finally {
      await client.end();
    }
  };
  await Promise.all([worker(), worker()]);
  return new Map([...result.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * `pg_dump --schema-only` of the database (owners and privileges kept), without the lines
 * that differ between two dumps of the same database: the version comments and the random
 * key of `\restrict` / `\unrestrict`.
 */
export async function schemaSnapshot(url: string): Promise<string> {
  const tools = await machineClientTools();
  const r = await runCommand([tools.pgDump, '--schema-only', `--dbname=${url}`], {
    env: clientEnv(),
    timeoutMs: 10 * 60_000,
  });
  if (r.code !== 0)
    throw new Error(`pg_dump --schema-only failed with exit ${r.code}:\n${tail(r.stderr)}`);
  return r.stdout
    .split('\n')
    .filter(
      (line) =>
        !/^-- Dumped (from database|by pg_dump) version /.test(line) &&
        !/^\\(un)?restrict /.test(line),
    )
    .join('\n');
}
