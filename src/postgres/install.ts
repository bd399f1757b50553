import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tc from '@actions/tool-cache';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import { quieter, type Logger } from '../core/logger.js';
import { runCommand, tail } from '../core/process.js';
import {
  CLIENT_TOOL_CACHE_NAME,
  type ClientTools,
  defaultSearchDirs,
  findClientTools,
  findServerBinaries,
  listClientCandidates,
  type PgBinary,
  type ToolResolver,
  type ToolSearch,
} from './tools.js';

/** Runs one program (argv, no shell); used for apt so tests can see or replace it. */
export type CommandRunner = (
  argv: string[],
  opts?: { env?: NodeJS.ProcessEnv },
) => Promise<{ code: number; stdout: string; stderr: string }>;

/** The real runner: spawns the program, 20 minutes at most. */
export const defaultRunner: CommandRunner = (argv, opts) =>
  runCommand(argv, { env: opts?.env, timeoutMs: 20 * 60 * 1000 });

/** How to install PostgreSQL packages from the PostgreSQL project's apt repository. */
export interface AptPlan {
  /** The repository's signing key, referenced by `signed-by`. */
  keyringPath: string;
  sourcesListPath: string;
  sourcesLine: string;
  /** Where the signing key is downloaded from when it is not on the machine yet. */
  keyUrl: string;
  /** Whether the repository has to be added first (false: the packages are already available). */
  repository: boolean;
  packages: string[];
  /** apt-get argv arrays, run in order after the repository files are in place. */
  commands: string[][];
}

/** postgresql-common (Debian and Ubuntu) ships the repository key here. */
export const PGDG_KEYRING = '/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc';
export const PGDG_SOURCES_LIST = '/etc/apt/sources.list.d/pgdg.list';
export const PGDG_KEY_URL = 'https://www.postgresql.org/media/keys/ACCC4CF8.asc';
export const PGDG_REPO_URL = 'https://apt.postgresql.org/pub/repos/apt';

/**
 * The plan for PostgreSQL `major` from apt.postgresql.org on a Debian/Ubuntu release
 * `codename`; `server` adds the server package, `root: false` prefixes sudo.
 */
export function pgdgAptPlan(
  major: number,
  opts: { server: boolean; codename: string; root: boolean; repository?: boolean },
): AptPlan {
  const sudo = opts.root ? [] : ['sudo'];
  const repository = opts.repository ?? true;
  const packages = aptPackages(major, opts.server);
  return {
    keyringPath: PGDG_KEYRING,
    sourcesListPath: PGDG_SOURCES_LIST,
    sourcesLine: `deb [signed-by=${PGDG_KEYRING}] ${PGDG_REPO_URL} ${opts.codename}-pgdg main`,
    keyUrl: PGDG_KEY_URL,
    repository,
    packages,
    // The runner's package lists may be stale even when no repository is added.
    commands: [
      [...sudo, 'apt-get', 'update'],
      [...sudo, 'apt-get', 'install', '-y', ...packages],
    ],
  };
}

/**
 * How this process runs a command of an apt plan: sudo never prompting, and apt-get waiting up
 * to five minutes for dpkg's lock instead of failing at once, since a fresh runner's unattended
 * upgrades can hold it for minutes after boot. The commands shown to users stay the plain ones.
 */
export function aptArgv(argv: string[]): string[] {
  const sudo = argv[0] === 'sudo' ? ['sudo', '-n'] : [];
  const [tool, ...args] = sudo.length ? argv.slice(1) : argv;
  const wait = tool === 'apt-get' ? ['-o', 'DPkg::Lock::Timeout=300'] : [];
  return [...sudo, tool, ...wait, ...args];
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The shell lines a user can paste to do what the plan does, repository setup included. */
export function fixCommand(plan: AptPlan): string {
  const sudo = plan.commands[plan.commands.length - 1]?.[0] === 'sudo' ? 'sudo ' : '';
  const lines: string[] = [];
  if (plan.repository) {
    // A codename given as $(...) must reach the shell unquoted-by-single-quotes.
    const line = plan.sourcesLine.includes('$(')
      ? `"${plan.sourcesLine}"`
      : shellQuote(plan.sourcesLine);
    lines.push(
      `${sudo}install -d ${path.dirname(plan.keyringPath)}`,
      `[ -e ${plan.keyringPath} ] || ${sudo}curl -fsSL -o ${plan.keyringPath} ${plan.keyUrl}`,
      `echo ${line} | ${sudo}tee ${plan.sourcesListPath}`,
    );
  }
  for (const argv of plan.commands) lines.push(argv.map(shellQuote).join(' '));
  return lines.join('\n');
}

/** Downloads the repository key; the network boundary of the installation. */
export async function downloadKey(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(30000) });
  if (!response.ok) throw new Error(`downloading ${url} failed: HTTP ${response.status}`);
  return response.text();
}

function asRoot(rootDir: string, file: string): string {
  return path.join(rootDir, file);
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Whether an apt source under `rootDir` already points at apt.postgresql.org. */
export async function pgdgConfigured(rootDir = '/'): Promise<boolean> {
  const files = [asRoot(rootDir, '/etc/apt/sources.list')];
  const partsDir = asRoot(rootDir, '/etc/apt/sources.list.d');
  try {
    for (const name of await readdir(partsDir)) {
      if (name.endsWith('.list') || name.endsWith('.sources'))
        files.push(path.join(partsDir, name));
    }
  } catch {
    // no sources.list.d
  }
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (
      text
        .split('\n')
        .some((l) => !l.trim().startsWith('#') && l.includes('apt.postgresql.org/pub/repos/apt'))
    ) {
      return true;
    }
  }
  return false;
}

/**
 * Writes the plan's keyring (downloaded only when missing) and sources list under `rootDir`.
 * Root writes directly; otherwise the files are staged in a temp dir and put in place with
 * `sudo -n install`.
 */
export async function installRepositoryFiles(
  plan: AptPlan,
  opts: {
    rootDir?: string;
    root: boolean;
    logger: Logger;
    runner?: CommandRunner;
    fetchKey?: (url: string) => Promise<string>;
  },
): Promise<void> {
  const rootDir = opts.rootDir ?? '/';
  const runner = opts.runner ?? defaultRunner;
  const keyring = asRoot(rootDir, plan.keyringPath);
  const sources = asRoot(rootDir, plan.sourcesListPath);
  const files: { dest: string; content: string }[] = [];
  if (await exists(keyring)) {
    opts.logger.info(`Using the repository key already at ${plan.keyringPath}`);
  } else {
    opts.logger.info(`Downloading the repository key from ${plan.keyUrl}`);
    const key = await (opts.fetchKey ?? downloadKey)(plan.keyUrl);
    if (!key.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) {
      throw new Error(`${plan.keyUrl} did not return a PGP public key`);
    }
    files.push({ dest: keyring, content: key });
  }
  files.push({ dest: sources, content: `${plan.sourcesLine}\n` });
  if (opts.root) {
    for (const f of files) {
      await mkdir(path.dirname(f.dest), { recursive: true });
      await writeFile(f.dest, f.content, { mode: 0o644 });
    }
    return;
  }
  const staging = await mkdtemp(path.join(os.tmpdir(), 'pgdg-'));
  try {
    for (const [i, f] of files.entries()) {
      const staged = path.join(staging, String(i));
      await writeFile(staged, f.content, { mode: 0o644 });
      const r = await runner(['sudo', '-n', 'install', '-D', '-m', '0644', staged, f.dest]);
      if (r.code !== 0) throw new Error(`could not write ${f.dest}: ${tail(r.stderr, 5)}`);
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** The fields of an /etc/os-release text. */
export function parseOsRelease(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!.trim();
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    fields[m[1]!] = value.replace(/\\(["$`\\])/g, '$1');
  }
  return fields;
}

/** The apt codename to use when the OS is Debian, Ubuntu or a derivative; else undefined. */
export function debianCodename(osRelease: string): string | undefined {
  const f = parseOsRelease(osRelease);
  const family = [f.ID ?? '', ...(f.ID_LIKE ?? '').split(/\s+/)];
  if (!family.some((id) => id === 'debian' || id === 'ubuntu')) return undefined;
  const codename = f.UBUNTU_CODENAME || f.VERSION_CODENAME;
  return codename && /^[a-z]+$/.test(codename) ? codename : undefined;
}

/** Whether this process runs as root (apt needs no sudo then). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function onPath(program: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      await access(path.join(dir, program), fsConstants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Whether apt already offers `pkg` (so no repository has to be added). */
async function aptHasCandidate(pkg: string, runner: CommandRunner): Promise<boolean> {
  const r = await runner(['apt-cache', 'policy', pkg], { env: { ...process.env, LC_ALL: 'C' } });
  const m = /Candidate:\s*(\S+)/.exec(r.stdout);
  return r.code === 0 && m !== null && m[1] !== '(none)';
}

/** The client tools cannot run against the server, and could not be fixed here. */
export class ToolVersionError extends ConfigurationError {
  constructor(
    message: string,
    readonly serverVersion: string,
    readonly found: PgBinary[],
    readonly fix: string,
  ) {
    super(message);
    this.name = 'ToolVersionError';
  }
}

/** A semver for the tool cache: '17.2' → '17.2.0', '18beta1' → '18.0.0-beta1'. */
export function toolCacheVersion(version: string): string {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?([a-z]+\d*)?$/.exec(version);
  if (!m) return version;
  return `${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}${m[4] ? `-${m[4]}` : ''}`;
}

/** Copies the client bin dir into RUNNER_TOOL_CACHE (when set); returns the cached dir. */
export async function cacheClientTools(
  tools: ClientTools,
  logger: Logger,
): Promise<string | undefined> {
  if (!process.env.RUNNER_TOOL_CACHE) return undefined;
  try {
    const dir = await tc.cacheDir(
      tools.binDir,
      CLIENT_TOOL_CACHE_NAME,
      toolCacheVersion(tools.version),
    );
    logger.info(`Cached the PostgreSQL ${tools.version} client tools in ${dir}`);
    return dir;
  } catch (error) {
    logger.warning(`Could not cache the client tools: ${errorMessage(error)}`);
    return undefined;
  }
}

export interface EnsureClientToolsOptions {
  serverMajor: number;
  serverVersion: string;
  postgresVersion: 'auto' | number;
  install: boolean;
  /** Also require server binaries (initdb, pg_ctl, postgres) of that major or newer. */
  needServer?: boolean;
  search: ToolSearch;
  runner?: CommandRunner;
  /** Content of /etc/os-release; read from the machine when absent. */
  osRelease?: string;
  /** The filesystem root the apt repository files are written under (default '/'). */
  aptRoot?: string;
  fetchKey?: (url: string) => Promise<string>;
}

/** What `ensureClientTools` looks for, and on which machine. */
interface ToolNeed {
  opts: EnsureClientToolsOptions;
  logger: Logger;
  runner: CommandRunner;
  /** The major `postgres-version` asks for exactly, if any. */
  exact: number | undefined;
  /** The major looked for: `exact`, else the server's (or newer). */
  target: number;
  osRelease: string;
  /** The Debian or Ubuntu release, when this is one. */
  codename: string | undefined;
}

/**
 * Client tools able to dump a server of `serverMajor`: the newest found with major ≥ the
 * server's, or exactly `postgresVersion` when one is given. When none fits and `install` is
 * allowed on Debian/Ubuntu, installs postgresql-client-<N> with apt (adding the PostgreSQL
 * apt repository when the package is not offered yet) and searches again.
 */
export async function ensureClientTools(opts: EnsureClientToolsOptions): Promise<ClientTools> {
  const exact = opts.postgresVersion === 'auto' ? undefined : opts.postgresVersion;
  const osRelease =
    opts.osRelease ??
    (process.platform === 'linux' ? await readFile('/etc/os-release', 'utf8').catch(() => '') : '');
  const need: ToolNeed = {
    opts,
    logger: opts.search.logger,
    runner: opts.runner ?? defaultRunner,
    exact,
    target: exact ?? opts.serverMajor,
    osRelease,
    codename: debianCodename(osRelease),
  };

  if (exact !== undefined && exact < opts.serverMajor) {
    return failTools(
      need,
      `postgres-version is ${exact}, but the server runs PostgreSQL ${opts.serverVersion}: ` +
        `pg_dump ${exact} refuses to dump a newer server. Use 'auto' or ${opts.serverMajor} or newer.`,
      false,
      opts.serverMajor,
    );
  }
  const first = await lookForTools(need, opts.search);
  if (first.tools && first.server) return first.tools;

  const reason = notFoundReason(need, first.tools !== undefined);
  const needServerPackage = !first.server;
  const refusal = await whyNotInstall(need);
  if (refusal !== undefined) return failTools(need, `${reason}\n${refusal}`, needServerPackage);
  return installWithApt(need, reason, needServerPackage);
}

/** Throws the ToolVersionError for `reason`: the pg_dumps found, and the command that fixes it. */
async function failTools(
  need: ToolNeed,
  reason: string,
  server = false,
  major = need.target,
): Promise<never> {
  const { opts, codename, runner } = need;
  const found = await listClientCandidates({ ...opts.search, logger: quieter(need.logger) });
  const plan = pgdgAptPlan(major, {
    server,
    codename: codename ?? '$(lsb_release -cs)',
    root: false,
    repository: codename ? !(await hasAll(aptPackages(major, server), runner)) : true,
  });
  const foundLines = found.length
    ? found.map((b) => `  pg_dump ${b.version} at ${b.path}`).join('\n')
    : '  (none)';
  const fix = fixCommand(plan);
  const message = [
    reason,
    `pg_dump versions found on this machine:`,
    foundLines,
    `To fix it, install the PostgreSQL ${major} client tools before this step; on a Debian or Ubuntu runner:`,
    fix.replace(/^/gm, '  '),
  ].join('\n');
  throw new ToolVersionError(message, opts.serverVersion, found, fix);
}

/** The client tools of the wanted major, and whether the server binaries are there if needed. */
async function lookForTools(
  need: ToolNeed,
  search: ToolSearch,
): Promise<{ tools?: ClientTools; server: boolean }> {
  const tools = await findClientTools(need.target, search, { maxMajor: need.exact });
  const server =
    !need.opts.needServer || (await findServerBinaries(need.target, search)) !== undefined;
  return { tools, server };
}

function notFoundReason(need: ToolNeed, clientFound: boolean): string {
  const { exact, target, opts } = need;
  const want = exact === undefined ? `${target} or newer` : `${target}`;
  const missing = clientFound
    ? `no PostgreSQL server binaries of major ${want} were found (needed to restore into a scratch server)`
    : `no pg_dump of major ${want} was found`;
  return exact === undefined
    ? `The server runs PostgreSQL ${opts.serverVersion}, and ${missing}; ` +
        `a pg_dump older than the server refuses to dump it.`
    : `postgres-version is ${exact} (server: PostgreSQL ${opts.serverVersion}), but ${missing}.`;
}

/** Why the tools cannot be installed here, if they cannot. */
async function whyNotInstall(need: ToolNeed): Promise<string | undefined> {
  if (!need.opts.install) return 'Automatic installation is disabled.';
  if (!need.codename) {
    const fields = parseOsRelease(need.osRelease);
    const name = fields.PRETTY_NAME ?? fields.NAME ?? process.platform;
    return `Automatic installation works only on Debian or Ubuntu with apt; this is ${name}.`;
  }
  if (!(await onPath('apt-get'))) {
    return 'Automatic installation needs apt-get, which is not on PATH.';
  }
  if (!isRoot() && !(await onPath('sudo'))) {
    return 'Automatic installation needs root or sudo; this process is not root and sudo is missing.';
  }
  return undefined;
}

/** Installs the packages with apt (adding the repository when needed), then looks again. */
async function installWithApt(
  need: ToolNeed,
  reason: string,
  needServerPackage: boolean,
): Promise<ClientTools> {
  const { opts, logger, runner, target } = need;
  const root = isRoot();
  const available = await hasAll(aptPackages(target, needServerPackage), runner);
  const configured = !available && (await pgdgConfigured(opts.aptRoot));
  const plan = pgdgAptPlan(target, {
    server: needServerPackage,
    // whyNotInstall refused any machine without one.
    codename: need.codename ?? '',
    root,
    repository: !available,
  });
  const fail = (why: string): Promise<never> =>
    failTools(need, `${reason}\n${why}`, needServerPackage);
  return logger.group(`Installing ${plan.packages.join(', ')}`, async () => {
    if (plan.repository && configured) {
      logger.info('The PostgreSQL apt repository is already configured');
    } else if (plan.repository) {
      logger.info(`Adding the PostgreSQL apt repository: ${plan.sourcesLine}`);
      try {
        await installRepositoryFiles(plan, {
          rootDir: opts.aptRoot,
          root,
          logger,
          runner,
          fetchKey: opts.fetchKey,
        });
      } catch (error) {
        return fail(`Adding the PostgreSQL apt repository failed: ${errorMessage(error)}`);
      }
    }
    for (const argv of plan.commands) {
      logger.info(`$ ${argv.join(' ')}`);
      const r = await runner(aptArgv(argv), {
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
      if (r.code !== 0) {
        return fail(
          `'${argv.join(' ')}' failed (exit ${r.code}):\n${tail(r.stderr || r.stdout, 15)}`,
        );
      }
    }
    const installedDir = `/usr/lib/postgresql/${target}/bin`;
    const again = await lookForTools(need, {
      ...opts.search,
      searchDirs: [installedDir, ...(opts.search.searchDirs ?? (await defaultSearchDirs()))],
    });
    if (!again.tools || !again.server) {
      return fail(
        `Installed ${plan.packages.join(', ')}, but the programs are still not found in ${installedDir}.`,
      );
    }
    await cacheClientTools(again.tools, logger);
    return again.tools;
  });
}

function aptPackages(major: number, server: boolean): string[] {
  return [`postgresql-client-${major}`, ...(server ? [`postgresql-${major}`] : [])];
}

async function hasAll(packages: string[], runner: CommandRunner): Promise<boolean> {
  if (!(await onPath('apt-cache'))) return false;
  for (const pkg of packages) {
    if (!(await aptHasCandidate(pkg, runner))) return false;
  }
  return true;
}

/**
 * Tools are installed with apt only on GitHub-hosted runners (or when PG_BACKUP_INSTALL_TOOLS
 * is true): a self-hosted machine gets the exact command to run instead of a changed system.
 */
export function mayInstallTools(env: NodeJS.ProcessEnv): boolean {
  return env.RUNNER_ENVIRONMENT === 'github-hosted' || env.PG_BACKUP_INSTALL_TOOLS === 'true';
}

/**
 * The client tools for a server (or an archive's pg_dump) of `major`/`version`, found or, where
 * `mayInstallTools` allows, installed: what every action and the CLI hand their cores.
 */
export function clientToolResolver(
  postgresVersion: 'auto' | number,
  env: NodeJS.ProcessEnv,
  logger: Logger,
): ToolResolver {
  return ({ major, version, needServer = false }) =>
    ensureClientTools({
      serverMajor: major,
      serverVersion: version,
      postgresVersion,
      install: mayInstallTools(env),
      needServer,
      search: { logger },
    });
}
