import { constants as fsConstants } from 'node:fs';
import { access, open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tc from '@actions/tool-cache';
import { OptionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { runCommand } from '../core/process.js';

/** One PostgreSQL program found on the machine, by absolute (realpath'd) path. */
export interface PgBinary {
  path: string;
  version: string;
  major: number;
}

/** A matching set of client programs, all from one bin dir. */
export interface ClientTools {
  binDir: string;
  version: string;
  major: number;
  pgDump: string;
  pgRestore: string;
  pgDumpall: string;
  psql: string;
}

/** A matching set of server programs, all from one bin dir. */
export interface ServerBinaries {
  binDir: string;
  version: string;
  major: number;
  initdb: string;
  pgCtl: string;
  postgres: string;
}

/** Where to look for programs. */
export interface ToolSearch {
  /**
   * Dirs searched before PATH. Defaults to /usr/lib/postgresql/<N>/bin (newest first),
   * /usr/local/pgsql/bin, Homebrew's postgresql@<N> and libpq, and the runner's tool cache.
   */
  searchDirs?: string[];
  /** The PATH value whose entries are searched last; defaults to process.env.PATH. */
  pathEnv?: string;
  logger: Logger;
}

/** The name under which client bin dirs are kept in the runner's tool cache. */
export const CLIENT_TOOL_CACHE_NAME = 'postgresql-client';

const VERSION_TOKEN = String.raw`(\d+)(?:\.(\d+))?(?:\.(\d+))?((?:devel|(?:alpha|beta|rc)\d*))?`;
const VERSION_PATTERNS = [
  // pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1), postgres (PostgreSQL) 18beta1
  new RegExp(String.raw`\(PostgreSQL\)\s+${VERSION_TOKEN}`),
  // SELECT version(): PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by ...
  new RegExp(String.raw`^\s*PostgreSQL\s+${VERSION_TOKEN}`),
  // a bare version: 9.6.24, 17.2, 18beta1
  new RegExp(String.raw`^\s*${VERSION_TOKEN}\s*$`),
  // other packagings: pg_dump (EnterpriseDB) 15.2.0, psql (Homebrew PostgreSQL) 17.2
  new RegExp(String.raw`^\s*\S+\s+\([^)]*\)\s+${VERSION_TOKEN}(?:\s|$)`),
];

/**
 * The version printed by `pg_dump --version` and friends, `SELECT version()` or a bare version
 * string. Releases before 10 have a two-part major (9.6); their `major` is the first part.
 */
export function parseToolVersion(output: string): { version: string; major: number } | undefined {
  const firstLine = output.split('\n').find((line) => line.trim() !== '') ?? '';
  for (const pattern of VERSION_PATTERNS) {
    const m = pattern.exec(firstLine);
    if (!m) continue;
    const major = Number(m[1]);
    if (!Number.isSafeInteger(major) || major < 6 || major > 999) return undefined;
    const numeric = [m[1], m[2], m[3]].filter((part): part is string => part !== undefined);
    return { version: numeric.join('.') + (m[4] ?? ''), major };
  }
  return undefined;
}

/** What a core asks for when it needs PostgreSQL programs (see ToolResolver). */
export interface ToolRequest {
  /** pg_dump, pg_restore and psql of at least this major. */
  major: number;
  /** The version that asks for it (the server's, or the archive's pg_dump), for messages. */
  version: string;
  /** Server binaries of that major or newer are needed too (a scratch target). */
  needServer?: boolean;
}

/** Finds the client tools a request asks for (installing them where that is allowed). */
export type ToolResolver = (request: ToolRequest) => Promise<ClientTools>;

/** The PostgreSQL major of a version string such as `15.18` (9.6 and older count as 9). */
export function majorOf(version: string, fallback = 0): number {
  return parseToolVersion(version)?.major ?? fallback;
}

/** The major of a `server_version_num` (150018 → 15, 90624 → 9 for 9.6.24). */
export function majorFromVersionNum(num: number): number {
  if (!Number.isSafeInteger(num) || num < 10000) {
    throw new Error(`not a PostgreSQL server_version_num: ${num}`);
  }
  return Math.floor(num / 10000);
}

/** Orders versions like '9.6.24', '15.18', '18beta1' (a pre-release sorts before its release). */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): number[] => {
    const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?(devel|alpha|beta|rc)?(\d*)/.exec(v);
    if (!m) return [0];
    const stage = { devel: 0, alpha: 1, beta: 2, rc: 3 }[m[4] ?? ''] ?? 4;
    return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0), stage, Number(m[5] || 0)];
  };
  const pa = parse(a);
  const pb = parse(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The `postgres-version` input: `auto` (or empty) picks client tools matching the server;
 * a major such as `16` demands exactly that major.
 */
export function resolvePostgresVersionInput(value: string): 'auto' | number {
  const v = value.trim().toLowerCase();
  if (v === '' || v === 'auto') return 'auto';
  if (/^\d+$/.test(v)) {
    const major = Number(v);
    if (major >= 10 && major <= 99) return major;
  }
  throw new OptionError(
    'postgres-version',
    (w) =>
      `${w.option('postgres-version')} must be 'auto' or a PostgreSQL major version such as '17' (10 or newer), got '${value}'.`,
  );
}

function majorDirs(parent: string, pattern: RegExp, suffix: string): Promise<string[]> {
  return readdir(parent)
    .then((names) =>
      names
        .map((name) => ({ name, m: pattern.exec(name) }))
        .filter((e): e is { name: string; m: RegExpExecArray } => e.m !== null)
        .sort((a, b) => Number(b.m[1]) - Number(a.m[1]))
        .map((e) => path.join(parent, e.name, suffix)),
    )
    .catch(() => []);
}

/** Bin dirs cached under RUNNER_TOOL_CACHE for `toolName`, newest first (none without it). */
export function toolCacheDirs(toolName: string = CLIENT_TOOL_CACHE_NAME): string[] {
  if (!process.env.RUNNER_TOOL_CACHE) return [];
  return tc
    .findAllVersions(toolName)
    .sort((a, b) => compareVersions(b, a))
    .map((version) => tc.find(toolName, version))
    .filter((dir) => dir !== '');
}

/** The default dirs searched before PATH, in order. */
export async function defaultSearchDirs(): Promise<string[]> {
  return [
    ...(await majorDirs('/usr/lib/postgresql', /^(\d+)$/, 'bin')),
    '/usr/local/pgsql/bin',
    ...(await majorDirs('/opt/homebrew/opt', /^postgresql@(\d+)$/, 'bin')),
    ...(await majorDirs('/usr/local/opt', /^postgresql@(\d+)$/, 'bin')),
    '/opt/homebrew/opt/libpq/bin',
    ...toolCacheDirs(),
  ];
}

async function searchDirs(search: ToolSearch, extra: string[] = []): Promise<string[]> {
  const pathEntries = (search.pathEnv ?? process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((entry) => entry !== '' && path.isAbsolute(entry));
  const dirs = [...extra, ...(search.searchDirs ?? (await defaultSearchDirs())), ...pathEntries];
  return [...new Set(dirs)];
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const info = await stat(file);
    if (!info.isFile()) return false;
    await access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Debian's /usr/bin/pg_dump is postgresql-common's pg_wrapper, which picks a major on its own. */
async function isPgWrapper(real: string): Promise<boolean> {
  if (path.basename(real) === 'pg_wrapper' || real.includes('/postgresql-common/')) return true;
  let handle;
  try {
    handle = await open(real, 'r');
    const head = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const text = head.subarray(0, bytesRead).toString('latin1');
    return text.startsWith('#!') && /PgCommon|pg_wrapper/.test(text);
  } catch {
    return false;
  } finally {
    await handle?.close();
  }
}

const versionCache = new Map<string, { version: string; major: number } | undefined>();

/** The version a program reports with `--version`, cached per file identity. */
export async function probeVersion(
  file: string,
): Promise<{ version: string; major: number } | undefined> {
  let key: string;
  try {
    const info = await stat(file);
    key = `${file}:${info.size}:${info.mtimeMs}:${info.ino}`;
  } catch {
    return undefined;
  }
  if (versionCache.has(key)) return versionCache.get(key);
  const result = await runCommand([file, '--version'], { timeoutMs: 15000 });
  const parsed = result.code === 0 ? parseToolVersion(result.stdout) : undefined;
  versionCache.set(key, parsed);
  return parsed;
}

async function listCandidates(
  program: string,
  dirs: string[],
  logger: Logger,
): Promise<PgBinary[]> {
  const seen = new Set<string>();
  const found: PgBinary[] = [];
  for (const dir of dirs) {
    const file = path.join(dir, program);
    if (!(await isExecutableFile(file))) continue;
    let real: string;
    try {
      real = await realpath(file);
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    if (await isPgWrapper(real)) {
      logger.debug(`Skipping ${file}: it is postgresql-common's pg_wrapper (${real})`);
      continue;
    }
    const parsed = await probeVersion(real);
    if (!parsed) {
      logger.debug(`Skipping ${real}: '${program} --version' did not print a PostgreSQL version`);
      continue;
    }
    found.push({ path: real, ...parsed });
  }
  // Newest first; the sort is stable, so equal versions keep the search order.
  return found.sort((a, b) => compareVersions(b.version, a.version));
}

/** Every pg_dump found (absolute, realpath'd, pg_wrapper skipped), newest first. */
export async function listClientCandidates(search: ToolSearch): Promise<PgBinary[]> {
  return listCandidates('pg_dump', await searchDirs(search), search.logger);
}

/** Every postgres server program found, newest first. */
export async function listServerCandidates(
  search: ToolSearch & { extraBinDirs?: string[] },
): Promise<PgBinary[]> {
  return listCandidates('postgres', await searchDirs(search, search.extraBinDirs), search.logger);
}

function describeWant(minMajor: number, maxMajor: number | undefined): string {
  if (maxMajor === minMajor) return `major ${minMajor}`;
  if (maxMajor === undefined) return `major ${minMajor} or newer`;
  return `major ${minMajor} to ${maxMajor}`;
}

/** Checks that `programs` sit beside `main` and report its major; returns their paths. */
async function siblings(
  main: PgBinary,
  programs: string[],
  logger: Logger,
): Promise<Record<string, string> | undefined> {
  const dir = path.dirname(main.path);
  // Probed side by side: each probe starts a process, and this runs before every dump.
  const probes = await Promise.all(
    programs.map(async (program) => {
      const file = path.join(dir, program);
      if (!(await isExecutableFile(file))) return { program, file, missing: true as const };
      return { program, file, missing: false as const, version: await probeVersion(file) };
    }),
  );
  const paths: Record<string, string> = {};
  for (const probe of probes) {
    if (probe.missing) {
      logger.debug(`Skipping ${dir}: it has ${path.basename(main.path)} but no ${probe.program}`);
      return undefined;
    }
    if (probe.version?.major !== main.major) {
      logger.debug(
        `Skipping ${dir}: ${probe.program} reports ${probe.version?.version ?? 'no version'}, ` +
          `${path.basename(main.path)} reports ${main.version}`,
      );
      return undefined;
    }
    paths[probe.program] = probe.file;
  }
  return paths;
}

/**
 * The newest client set (pg_dump, pg_restore, pg_dumpall, psql from one bin dir) with
 * major ≥ `minMajor` (and ≤ `options.maxMajor` when given). A newer pg_dump dumps older
 * servers, so the newest available wins.
 */
export async function findClientTools(
  minMajor: number,
  search: ToolSearch,
  options: { maxMajor?: number } = {},
): Promise<ClientTools | undefined> {
  const { logger } = search;
  const candidates = await listClientCandidates(search);
  const want = describeWant(minMajor, options.maxMajor);
  for (const c of candidates) {
    if (c.major < minMajor || (options.maxMajor !== undefined && c.major > options.maxMajor)) {
      logger.debug(`Not using pg_dump ${c.version} at ${c.path}: need ${want}`);
      continue;
    }
    const others = await siblings(c, ['pg_restore', 'pg_dumpall', 'psql'], logger);
    if (!others) continue;
    const reason =
      candidates.length > 1
        ? `the newest of ${candidates.length} client versions found that fits ${want}`
        : `the only client version found, and it fits ${want}`;
    logger.info(
      `Using the PostgreSQL ${c.version} client tools in ${path.dirname(c.path)} (pg_dump, pg_restore, psql: ${reason})`,
    );
    return {
      binDir: path.dirname(c.path),
      version: c.version,
      major: c.major,
      pgDump: c.path,
      pgRestore: others.pg_restore!,
      pgDumpall: others.pg_dumpall!,
      psql: others.psql!,
    };
  }
  logger.debug(`No complete PostgreSQL client set of ${want} found`);
  return undefined;
}

/** The newest server (postgres, initdb, pg_ctl from one bin dir) with major ≥ `minMajor`. */
export async function findServerBinaries(
  minMajor: number,
  search: ToolSearch & { extraBinDirs?: string[] },
): Promise<ServerBinaries | undefined> {
  const { logger } = search;
  for (const c of await listServerCandidates(search)) {
    if (c.major < minMajor) {
      logger.debug(`Not using postgres ${c.version} at ${c.path}: need ${minMajor} or newer`);
      continue;
    }
    const others = await siblings(c, ['initdb', 'pg_ctl'], logger);
    if (!others) continue;
    logger.info(`Using PostgreSQL server ${c.version} at ${path.dirname(c.path)}`);
    return {
      binDir: path.dirname(c.path),
      version: c.version,
      major: c.major,
      initdb: others.initdb!,
      pgCtl: others.pg_ctl!,
      postgres: c.path,
    };
  }
  logger.debug(`No PostgreSQL server of major ${minMajor} or newer found`);
  return undefined;
}
