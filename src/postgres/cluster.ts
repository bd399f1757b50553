import { spawnSync } from 'node:child_process';
import { constants as fsConstants, rmSync } from 'node:fs';
import {
  access,
  appendFile,
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../core/logger.js';
import { processAlive, runCommand, tail } from '../core/process.js';
import type { ServerBinaries } from './tools.js';

/** A throwaway PostgreSQL server on 127.0.0.1, all of whose files live in one temp folder. */
export interface ScratchCluster {
  host: string;
  port: number;
  user: string;
  password?: string;
  dataDir: string;
  version: string;
  major: number;
  /** A postgresql:// URL (with the password when there is one). */
  url(database?: string): string;
  /** PGHOST, PGPORT, PGUSER, PGPASSWORD (when set) and PGDATABASE for libpq programs. */
  env(database?: string): Record<string, string>;
  /** Fast shutdown, then removes every file the cluster made. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILLs the postmaster (for fault tests), then removes the files. Idempotent. */
  kill(): Promise<void>;
}

export interface ScratchClusterOptions {
  server: ServerBinaries;
  logger: Logger;
  /** With a password, every connection (socket and TCP) needs scram-sha-256; else trust. */
  password?: string;
  superuser?: string;
  /** A fixed port (no retry when taken); default: a free one. */
  port?: number;
  /** postgresql.conf settings, applied after the built-in ones. */
  settings?: Record<string, string>;
  /** The folder the cluster's own folder goes in (its data directory); default: the OS temp folder. */
  parentDir?: string;
}

/** How to run a program as the unprivileged owner of the cluster (root only). */
interface RunAs {
  name: string;
  uid: number;
  gid: number;
  prefix: string[];
}

const SPEED_SETTINGS: Record<string, string> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  shared_buffers: '32MB',
  max_connections: '50',
  huge_pages: 'off',
  logging_collector: 'off',
  lc_messages: 'C',
};

/**
 * For a server a restore starts and throws away (verify, the drill, extract), never a user's:
 * the least write-ahead log (`wal_level=minimal`: a new index or a table created in the loading
 * transaction is synced rather than logged; no senders, no archiving), recycled at a checkpoint
 * every 64 MB instead of growing to the default 1 GB beside the restored data, index builds
 * sorting in memory up to 256 MB each (`pg_restore -j 2`: two at once) instead of spilling
 * 64 MB runs to temporary files, and a lock table of 25,600 slots (9 MB of shared memory) that
 * holds a one-transaction restore of an archive of up to 12,800 entries.
 */
export const RESTORE_SERVER_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'minimal',
  max_wal_senders: '0',
  archive_mode: 'off',
  max_wal_size: '64MB',
  min_wal_size: '32MB',
  maintenance_work_mem: '256MB',
  max_locks_per_transaction: '256',
};

const live = new Set<{ stopSync(): void }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const cluster of [...live]) cluster.stopSync();
  });
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function firstExecutable(candidates: string[]): Promise<string | undefined> {
  for (const file of candidates) {
    try {
      await access(file, fsConstants.X_OK);
      return file;
    } catch {
      // try the next
    }
  }
  return undefined;
}

let runAsPromise: Promise<RunAs> | undefined;

/** The unprivileged account a root process runs initdb and pg_ctl as: postgres, else nobody. */
function unprivilegedUser(): Promise<RunAs> {
  runAsPromise ??= (async () => {
    const passwd = await readFile('/etc/passwd', 'utf8');
    const entries = new Map<string, { uid: number; gid: number }>();
    for (const line of passwd.split('\n')) {
      const [name, , uid, gid] = line.split(':');
      if (name && uid && gid) entries.set(name, { uid: Number(uid), gid: Number(gid) });
    }
    const name = entries.has('postgres') ? 'postgres' : 'nobody';
    const account = entries.get(name);
    if (!account) {
      throw new Error(
        'running as root, but neither a postgres nor a nobody user exists to run PostgreSQL',
      );
    }
    const dirs = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
    const runuser = await firstExecutable(dirs.map((d) => path.join(d, 'runuser')));
    if (runuser) return { name, ...account, prefix: [runuser, '-u', name, '--'] };
    const setpriv = await firstExecutable(dirs.map((d) => path.join(d, 'setpriv')));
    if (setpriv) {
      return {
        name,
        ...account,
        prefix: [
          setpriv,
          `--reuid=${account.uid}`,
          `--regid=${account.gid}`,
          '--clear-groups',
          '--',
        ],
      };
    }
    throw new Error(
      'running as root, but neither runuser nor setpriv is available to drop privileges',
    );
  })();
  return runAsPromise;
}

/** Gives "others" the search bit on `dir` and its ancestors, so the cluster's owner can reach it. */
async function ensureTraversable(dir: string, logger: Logger): Promise<void> {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of ['', ...parts]) {
    current = part ? path.join(current, part) : current;
    const info = await stat(current);
    if ((info.mode & 0o001) === 0) {
      logger.warning(`Adding o+x to ${current} so the PostgreSQL server user can reach its files`);
      await chmod(current, (info.mode & 0o7777) | 0o001);
    }
  }
}

const helpCache = new Map<string, Promise<string>>();

function initdbHelp(initdb: string): Promise<string> {
  let help = helpCache.get(initdb);
  if (!help) {
    help = runCommand([initdb, '--help'], { timeoutMs: 15000 }).then((r) => r.stdout);
    helpCache.set(initdb, help);
  }
  return help;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function confValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * The environment for server programs: ours without libpq's PG* variables. No
 * LD_LIBRARY_PATH is needed: the embedded builds carry RUNPATH $ORIGIN/../lib.
 */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  env.LC_ALL = 'C';
  return env;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!processAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !processAlive(pid);
}

async function readLogTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return tail(text, 30) || '(the server log is empty)';
}

/** The files of one scratch cluster, all inside `baseDir`. */
interface ClusterFiles {
  baseDir: string;
  dataDir: string;
  sockDir: string;
  logFile: string;
  pwFile: string;
}

/** How the server programs run: as whom (`prefix`, root only) and in which environment. */
interface ServerRunner {
  server: ServerBinaries;
  runAs: RunAs | undefined;
  prefix: string[];
  env: NodeJS.ProcessEnv;
}

/**
 * Creates and starts a throwaway cluster: initdb into a fresh temp folder, listening on
 * 127.0.0.1 only with its socket dir and log inside that folder, durability off for speed.
 * As root, initdb and pg_ctl run as `postgres` (or `nobody`), which owns the folder.
 */
export async function startScratchCluster(opts: ScratchClusterOptions): Promise<ScratchCluster> {
  const superuser = opts.superuser ?? 'postgres';
  if (opts.password !== undefined && (opts.password === '' || /[\r\n]/.test(opts.password))) {
    // initdb reads the password as the first line of a file.
    throw new Error('the scratch cluster password must be non-empty and a single line');
  }
  const runAs = isRoot() ? await unprivilegedUser() : undefined;
  const runner: ServerRunner = {
    server: opts.server,
    runAs,
    prefix: runAs?.prefix ?? [],
    env: serverEnv(),
  };
  const baseDir = await mkdtemp(path.join(opts.parentDir ?? os.tmpdir(), 'pg-scratch-'));
  const files: ClusterFiles = {
    baseDir,
    dataDir: path.join(baseDir, 'data'),
    sockDir: path.join(baseDir, 's'),
    logFile: path.join(baseDir, 'postgres.log'),
    pwFile: path.join(baseDir, 'pwfile'),
  };
  try {
    await prepareClusterFolder(opts, runner, files);
    await runInitdb(opts, runner, files, superuser);
    const port = await startServer(opts, runner, files);
    const pidText = await readFile(path.join(files.dataDir, 'postmaster.pid'), 'utf8');
    const pid = Number(pidText.split('\n')[0]);
    opts.logger.debug(
      `Started scratch PostgreSQL ${opts.server.version} on 127.0.0.1:${port} (pid ${pid})`,
    );
    return clusterHandle(opts, runner, files, { superuser, port, pid });
  } catch (error) {
    await rm(baseDir, { recursive: true, force: true });
    throw error;
  }
}

/** The socket folder and password file, owned by the server's user when running as root. */
async function prepareClusterFolder(
  opts: ScratchClusterOptions,
  { runAs, server }: ServerRunner,
  files: ClusterFiles,
): Promise<void> {
  await mkdir(files.sockDir, { mode: 0o700 });
  if (opts.password !== undefined) {
    await writeFile(files.pwFile, `${opts.password}\n`, { mode: 0o600 });
  }
  if (runAs) {
    await ensureTraversable(path.dirname(files.baseDir), opts.logger);
    await ensureTraversable(path.dirname(server.binDir), opts.logger);
    const owned = [files.baseDir, files.sockDir];
    if (opts.password !== undefined) owned.push(files.pwFile);
    for (const p of owned) await chown(p, runAs.uid, runAs.gid);
  }
}

async function runInitdb(
  opts: ScratchClusterOptions,
  { server, prefix, env }: ServerRunner,
  files: ClusterFiles,
  superuser: string,
): Promise<void> {
  const help = await initdbHelp(server.initdb);
  const initdbArgs = [
    server.initdb,
    '-D',
    files.dataDir,
    '-U',
    superuser,
    '--encoding=UTF8',
    '--locale=C',
    ...(opts.password !== undefined
      ? ['--auth=scram-sha-256', `--pwfile=${files.pwFile}`]
      : ['--auth=trust']),
    ...(help.includes('--no-sync') ? ['--no-sync'] : []),
    ...(help.includes('--no-instructions') ? ['--no-instructions'] : []),
  ];
  const init = await runCommand([...prefix, ...initdbArgs], {
    env,
    cwd: files.baseDir,
    timeoutMs: 120000,
  });
  await rm(files.pwFile, { force: true });
  if (init.code !== 0) {
    throw new Error(
      `initdb (PostgreSQL ${server.version}) failed with exit ${init.code}:\n${tail(init.stderr || init.stdout)}`,
    );
  }
}

/** Configures and starts the server; returns its port (another free one when taken). */
async function startServer(
  opts: ScratchClusterOptions,
  runner: ServerRunner,
  files: ClusterFiles,
): Promise<number> {
  const { server, prefix, env } = runner;
  // Unix socket paths are limited to about 107 bytes; without room, TCP only.
  const socketDirs = `${files.sockDir}/.s.PGSQL.65535`.length < 100 ? files.sockDir : '';
  await appendFile(path.join(files.dataDir, 'postgresql.conf'), "\ninclude 'scratch.conf'\n");

  let port = opts.port ?? (await freePort());
  for (let attempt = 1; ; attempt++) {
    await writeScratchConf(runner, files, {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: socketDirs,
      ...SPEED_SETTINGS,
      ...opts.settings,
    });
    const start = await runCommand(
      [
        ...prefix,
        server.pgCtl,
        'start',
        '-w',
        '-t',
        '60',
        '-D',
        files.dataDir,
        '-l',
        files.logFile,
      ],
      { env, cwd: files.baseDir, timeoutMs: 90000 },
    );
    if (start.code === 0) return port;
    const log = await readLogTail(files.logFile);
    const portTaken =
      /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(log);
    if (portTaken && opts.port === undefined && attempt < 5) {
      opts.logger.debug(`Port ${port} was taken; retrying the scratch server on another port`);
      port = await freePort();
      continue;
    }
    throw new Error(
      `pg_ctl start (PostgreSQL ${server.version}, port ${port}) failed with exit ${start.code}:\n` +
        `${tail(start.stderr || start.stdout, 5)}\nServer log:\n${log}`,
    );
  }
}

async function writeScratchConf(
  { runAs }: ServerRunner,
  files: ClusterFiles,
  settings: Record<string, string>,
): Promise<void> {
  const confFile = path.join(files.dataDir, 'scratch.conf');
  await writeFile(
    confFile,
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${confValue(v)}\n`)
      .join(''),
    { mode: 0o644 },
  );
  if (runAs) await chown(confFile, runAs.uid, runAs.gid);
}

/** The running cluster: its addresses, and stops that also remove its files (and at exit). */
function clusterHandle(
  opts: ScratchClusterOptions,
  runner: ServerRunner,
  files: ClusterFiles,
  started: { superuser: string; port: number; pid: number },
): ScratchCluster {
  const { server, logger } = opts;
  const { prefix, env } = runner;
  const { superuser, port, pid } = started;
  const handle = { stopSync: (): void => stopSync(runner, files, pid, handle) };
  live.add(handle);
  installExitHook();

  let finished: Promise<void> | undefined;
  const finish = (how: () => Promise<void>): Promise<void> => {
    finished ??= (async () => {
      try {
        await how();
      } finally {
        await rm(files.baseDir, { recursive: true, force: true });
        live.delete(handle);
      }
    })();
    return finished;
  };

  const credentials = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}`;
  return {
    host: '127.0.0.1',
    port,
    user: superuser,
    password: opts.password,
    dataDir: files.dataDir,
    version: server.version,
    major: server.major,
    url: (database = 'postgres') =>
      `postgresql://${encodeURIComponent(superuser)}${credentials}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    env: (database = 'postgres') => ({
      PGHOST: '127.0.0.1',
      PGPORT: String(port),
      PGUSER: superuser,
      ...(opts.password === undefined ? {} : { PGPASSWORD: opts.password }),
      PGDATABASE: database,
    }),
    stop: () =>
      finish(async () => {
        const r = await runCommand(
          [...prefix, server.pgCtl, 'stop', '-m', 'fast', '-w', '-t', '30', '-D', files.dataDir],
          { env, cwd: os.tmpdir(), timeoutMs: 45000 },
        );
        if (r.code !== 0 && processAlive(pid)) {
          logger.warning(`pg_ctl stop failed (${tail(r.stderr, 3)}); killing the scratch server`);
          process.kill(pid, 'SIGKILL');
        }
        await waitGone(pid, 10000);
      }),
    kill: () =>
      finish(async () => {
        if (processAlive(pid)) process.kill(pid, 'SIGKILL');
        await waitGone(pid, 10000);
      }),
  };
}

/** At process exit (no awaiting there): immediate shutdown, SIGKILL if need be, files removed. */
function stopSync(
  { server, prefix, env }: ServerRunner,
  files: ClusterFiles,
  pid: number,
  handle: { stopSync(): void },
): void {
  spawnSync(
    prefix[0] ?? server.pgCtl,
    [
      ...prefix.slice(1),
      ...(prefix.length ? [server.pgCtl] : []),
      'stop',
      '-m',
      'immediate',
      '-w',
      '-D',
      files.dataDir,
    ],
    { env, cwd: os.tmpdir(), stdio: 'ignore', timeout: 15000 },
  );
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(files.baseDir, { recursive: true, force: true });
  live.delete(handle);
}
