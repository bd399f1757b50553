import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import {
  aptArgv,
  type CommandRunner,
  debianCodename,
  defaultRunner,
  ensureClientTools,
  fixCommand,
  installRepositoryFiles,
  pgdgAptPlan,
  pgdgConfigured,
  PGDG_KEY_URL,
  ToolVersionError,
  toolCacheVersion,
} from '../../src/postgres/install.js';
import { runCommand } from '../../src/core/process.js';
import { embeddedServer, MACHINE_BIN_DIR } from '../support/embedded.js';

const MACHINE_PG_DUMP = path.join(MACHINE_BIN_DIR, 'pg_dump');
const SHIPPED_KEY = '/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc';
const isRoot = process.getuid?.() === 0;
const hasApt = existsSync('/usr/bin/apt-get');

const OS_RELEASE = {
  bookworm:
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
  noble:
    'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\nUBUNTU_CODENAME=noble\n',
  jammy:
    'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy\nUBUNTU_CODENAME=jammy\n',
  mint: 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_CODENAME=wilma\nUBUNTU_CODENAME=noble\n',
  fedora:
    'NAME="Fedora Linux"\nPRETTY_NAME="Fedora Linux 40 (Workstation Edition)"\nID=fedora\nVERSION_ID=40\n',
  alpine: 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n',
};

const scratch: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}
/** The ToolVersionError a promise rejects with; fails the test when it resolves or rejects otherwise. */
async function toolError(promise: Promise<unknown>): Promise<ToolVersionError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ToolVersionError)) {
    throw new Error(`expected a ToolVersionError, got ${String(error)}`);
  }
  return error;
}

afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

describe('pgdgAptPlan and fixCommand', () => {
  it.each(['noble', 'jammy', 'bookworm'])(
    'plans the PostgreSQL apt repository for %s',
    (codename) => {
      const plan = pgdgAptPlan(17, { server: false, codename, root: false });
      expect(plan.keyringPath).toBe(SHIPPED_KEY);
      expect(plan.sourcesListPath).toBe('/etc/apt/sources.list.d/pgdg.list');
      expect(plan.sourcesLine).toBe(
        `deb [signed-by=${SHIPPED_KEY}] https://apt.postgresql.org/pub/repos/apt ${codename}-pgdg main`,
      );
      expect(plan.packages).toEqual(['postgresql-client-17']);
      expect(plan.commands).toEqual([
        ['sudo', 'apt-get', 'update'],
        ['sudo', 'apt-get', 'install', '-y', 'postgresql-client-17'],
      ]);
    },
  );

  it('adds the server package, drops sudo for root, and skips the repository when told', () => {
    const plan = pgdgAptPlan(16, { server: true, codename: 'noble', root: true });
    expect(plan.packages).toEqual(['postgresql-client-16', 'postgresql-16']);
    expect(plan.commands).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', 'postgresql-client-16', 'postgresql-16'],
    ]);
    const direct = pgdgAptPlan(15, {
      server: false,
      codename: 'bookworm',
      root: true,
      repository: false,
    });
    expect(direct.commands).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', 'postgresql-client-15'],
    ]);
    expect(fixCommand(direct)).toBe('apt-get update\napt-get install -y postgresql-client-15');
  });

  it('writes a paste-able shell fix, valid for sh', async () => {
    const fix = fixCommand(pgdgAptPlan(17, { server: false, codename: 'noble', root: false }));
    expect(fix.split('\n')).toEqual([
      'sudo install -d /usr/share/postgresql-common/pgdg',
      `[ -e ${SHIPPED_KEY} ] || sudo curl -fsSL -o ${SHIPPED_KEY} ${PGDG_KEY_URL}`,
      `echo 'deb [signed-by=${SHIPPED_KEY}] https://apt.postgresql.org/pub/repos/apt noble-pgdg main' | sudo tee /etc/apt/sources.list.d/pgdg.list`,
      'sudo apt-get update',
      'sudo apt-get install -y postgresql-client-17',
    ]);
    const unknown = fixCommand(
      pgdgAptPlan(18, { server: false, codename: '$(lsb_release -cs)', root: false }),
    );
    expect(unknown).toContain('echo "deb [signed-by=');
    expect(unknown).toContain('apt $(lsb_release -cs)-pgdg main" | sudo tee');
    for (const text of [fix, unknown]) {
      const check = await runCommand(['sh', '-n', '-c', text]);
      expect(check).toMatchObject({ code: 0, stderr: '' });
    }
  });

  it('reads the apt codename from os-release', () => {
    expect(debianCodename(OS_RELEASE.bookworm)).toBe('bookworm');
    expect(debianCodename(OS_RELEASE.noble)).toBe('noble');
    expect(debianCodename(OS_RELEASE.jammy)).toBe('jammy');
    expect(debianCodename(OS_RELEASE.mint)).toBe('noble');
    expect(debianCodename(OS_RELEASE.fedora)).toBeUndefined();
    expect(debianCodename(OS_RELEASE.alpine)).toBeUndefined();
    expect(debianCodename('')).toBeUndefined();
    expect(debianCodename(readFileSync('/etc/os-release', 'utf8'))).toBe('bookworm');
  });

  it('turns PostgreSQL versions into tool-cache semvers', () => {
    expect(toolCacheVersion('17.2')).toBe('17.2.0');
    expect(toolCacheVersion('9.6.24')).toBe('9.6.24');
    expect(toolCacheVersion('18beta1')).toBe('18.0.0-beta1');
  });
});

describe('repository files', () => {
  const realKey = readFileSync(SHIPPED_KEY, 'utf8');

  it('writes the key and the sources list under a root dir, fetching the key only when missing', async () => {
    const root = tempDir('apt-root-');
    const plan = pgdgAptPlan(17, { server: false, codename: 'bookworm', root: true });
    const fetched: string[] = [];
    const fetchKey = async (url: string): Promise<string> => {
      fetched.push(url);
      return realKey;
    };
    expect(await pgdgConfigured(root)).toBe(false);
    const logger = new MemoryLogger();
    await installRepositoryFiles(plan, { rootDir: root, root: true, logger, fetchKey });
    expect(fetched).toEqual([PGDG_KEY_URL]);
    expect(readFileSync(path.join(root, SHIPPED_KEY), 'utf8')).toBe(realKey);
    const list = path.join(root, '/etc/apt/sources.list.d/pgdg.list');
    expect(readFileSync(list, 'utf8')).toBe(`${plan.sourcesLine}\n`);
    expect(statSync(list).mode & 0o777).toBe(0o644);
    expect(await pgdgConfigured(root)).toBe(true);

    // Second time the key is there: no download.
    await installRepositoryFiles(plan, {
      rootDir: root,
      root: true,
      logger,
      fetchKey: () => Promise.reject(new Error('must not download')),
    });
    expect(logger.lines).toContain(`Using the repository key already at ${SHIPPED_KEY}`);
  });

  it('refuses a download that is not a PGP key', async () => {
    const root = tempDir('apt-root-');
    const plan = pgdgAptPlan(17, { server: false, codename: 'noble', root: true });
    await expect(
      installRepositoryFiles(plan, {
        rootDir: root,
        root: true,
        logger: new MemoryLogger(),
        fetchKey: async () => '<html>captive portal</html>',
      }),
    ).rejects.toThrow(/did not return a PGP public key/);
    expect(existsSync(path.join(root, '/etc/apt/sources.list.d/pgdg.list'))).toBe(false);
  });

  it('notices a repository configured in deb822 form', async () => {
    const root = tempDir('apt-root-');
    mkdirSync(path.join(root, 'etc/apt/sources.list.d'), { recursive: true });
    writeFileSync(
      path.join(root, 'etc/apt/sources.list.d/pgdg.sources'),
      'Types: deb\nURIs: https://apt.postgresql.org/pub/repos/apt\nSuites: noble-pgdg\nComponents: main\n',
    );
    expect(await pgdgConfigured(root)).toBe(true);
  });

  (hasApt ? it : it.skip)(
    'writes a sources line that apt itself accepts (no download)',
    async () => {
      const root = tempDir('apt-root-');
      const plan = pgdgAptPlan(17, { server: false, codename: 'bookworm', root: true });
      await installRepositoryFiles(plan, {
        rootDir: root,
        root: true,
        logger: new MemoryLogger(),
        fetchKey: async () => realKey,
      });
      mkdirSync(path.join(root, 'lists/partial'), { recursive: true });
      const r = await runCommand(
        [
          'apt-get',
          '-o',
          `Dir::Etc::sourcelist=${path.join(root, plan.sourcesListPath)}`,
          '-o',
          'Dir::Etc::sourceparts=-',
          '-o',
          `Dir::State::Lists=${path.join(root, 'lists')}`,
          '--print-uris',
          'update',
        ],
        { timeoutMs: 30000 },
      );
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(
        "'https://apt.postgresql.org/pub/repos/apt/dists/bookworm-pgdg/InRelease'",
      );
    },
  );
});

describe('ensureClientTools', () => {
  const search = (): { pathEnv: string; logger: MemoryLogger } => ({
    pathEnv: '/usr/bin:/bin',
    logger: new MemoryLogger(),
  });
  const base = { postgresVersion: 'auto' as const, install: false };

  it.each([13, 14] as const)('picks the machine 15 client for a %i server', async (major) => {
    const server = embeddedServer(major);
    const s = search();
    const tools = await ensureClientTools({
      ...base,
      serverMajor: major,
      serverVersion: server.version,
      search: s,
    });
    expect(tools).toMatchObject({ major: 15, pgDump: MACHINE_PG_DUMP, binDir: MACHINE_BIN_DIR });
    expect(s.logger.lines.join('\n')).toMatch(
      /Using the PostgreSQL 15\.\d+ client tools in \/usr\/lib\/postgresql\/15\/bin /,
    );
  });

  it.each([16, 17, 18] as const)(
    'explains what to install for a %i server when install is off',
    async (major) => {
      const server = embeddedServer(major);
      const error = await ensureClientTools({
        ...base,
        serverMajor: major,
        serverVersion: server.version,
        search: search(),
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ToolVersionError);
      expect(error).toBeInstanceOf(ConfigurationError);
      const e = error as ToolVersionError;
      expect(e.message).toContain(`PostgreSQL ${server.version}`);
      expect(e.message).toMatch(/pg_dump 15\.\d+ at \/usr\/lib\/postgresql\/15\/bin\/pg_dump/);
      expect(e.message).toContain('Automatic installation is disabled');
      expect(e.message).toContain(`sudo apt-get install -y postgresql-client-${major}`);
      // bookworm does not offer 16+, so the repository lines come with it.
      expect(e.message).toContain('bookworm-pgdg main');
      expect(e.serverVersion).toBe(server.version);
      expect(e.found.map((b) => b.path)).toContain(MACHINE_PG_DUMP);
      expect(e.fix).toContain(`postgresql-client-${major}`);
    },
  );

  it.each(['fedora', 'alpine'] as const)(
    'refuses to install on %s and still says how',
    async (name) => {
      const error = await toolError(
        ensureClientTools({
          ...base,
          install: true,
          serverMajor: 17,
          serverVersion: '17.10',
          search: search(),
          osRelease: OS_RELEASE[name],
        }),
      );
      expect(error).toBeInstanceOf(ToolVersionError);
      expect(error.message).toContain('PostgreSQL 17.10');
      expect(error.message).toMatch(
        /works only on Debian or Ubuntu with apt; this is (Fedora|Alpine)/,
      );
      expect(error.message).toContain('15.');
      expect(error.message).toContain(MACHINE_PG_DUMP);
      expect(error.message).toContain('sudo apt-get install -y postgresql-client-17');
      expect(error.message).toContain('$(lsb_release -cs)-pgdg main');
    },
  );

  it('uses exactly the requested major', async () => {
    const tools = await ensureClientTools({
      ...base,
      postgresVersion: 15,
      serverMajor: 13,
      serverVersion: '13.23',
      search: search(),
    });
    expect(tools).toMatchObject({ major: 15, pgDump: MACHINE_PG_DUMP });
    const missing = await toolError(
      ensureClientTools({
        ...base,
        postgresVersion: 16,
        serverMajor: 13,
        serverVersion: '13.23',
        search: search(),
      }),
    );
    expect(missing.message).toContain('postgres-version is 16');
    expect(missing.message).toContain('sudo apt-get install -y postgresql-client-16');
  });

  it('rejects a requested major older than the server', async () => {
    const error = await toolError(
      ensureClientTools({
        ...base,
        install: true,
        postgresVersion: 15,
        serverMajor: 17,
        serverVersion: '17.10',
        search: search(),
      }),
    );
    expect(error).toBeInstanceOf(ToolVersionError);
    expect(error.message).toContain('postgres-version is 15, but the server runs PostgreSQL 17.10');
    expect(error.message).toContain('sudo apt-get install -y postgresql-client-17');
  });

  it('also wants server binaries when asked', async () => {
    const s = search();
    const tools = await ensureClientTools({
      ...base,
      needServer: true,
      serverMajor: 14,
      serverVersion: '14.23',
      search: s,
    });
    expect(tools.major).toBe(15);
    const error = await ensureClientTools({
      ...base,
      needServer: true,
      postgresVersion: 15,
      serverMajor: 15,
      serverVersion: '15.20',
      search: { searchDirs: [], pathEnv: MACHINE_BIN_DIR, logger: new MemoryLogger() },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // The machine's 15 has both client and server in one dir, so this passes too.
    expect(error).toBeUndefined();
    const noServer = await toolError(
      ensureClientTools({
        ...base,
        needServer: true,
        serverMajor: 16,
        serverVersion: '16.14',
        search: search(),
      }),
    );
    expect(noServer.message).toContain(
      'sudo apt-get install -y postgresql-client-16 postgresql-16',
    );
  });

  /**
   * The install path up to the network: apt-cache is real (it reports that bookworm has no
   * postgresql-client-16), the repository files go into a temp root, and apt-get, which would
   * download, is recorded instead of run.
   */
  (isRoot && hasApt ? it : it.skip)(
    'adds the repository and runs apt-get when installing is allowed',
    async () => {
      const root = tempDir('apt-root-');
      const seen: string[][] = [];
      const runner: CommandRunner = async (argv, opts) => {
        seen.push(argv);
        if (argv[0] === 'apt-cache') return defaultRunner(argv, opts);
        if (
          argv.join(' ') === 'apt-get -o DPkg::Lock::Timeout=300 install -y postgresql-client-16'
        ) {
          return {
            code: 100,
            stdout: '',
            stderr: 'E: Unable to locate package postgresql-client-16\n',
          };
        }
        return { code: 0, stdout: '', stderr: '' };
      };
      const s = search();
      const error = await toolError(
        ensureClientTools({
          ...base,
          install: true,
          serverMajor: 16,
          serverVersion: '16.14',
          search: s,
          runner,
          osRelease: OS_RELEASE.bookworm,
          aptRoot: root,
          fetchKey: async () => readFileSync(SHIPPED_KEY, 'utf8'),
        }),
      );
      expect(seen).toContainEqual(['apt-cache', 'policy', 'postgresql-client-16']);
      expect(seen.filter((a) => a[0] === 'apt-get')).toEqual([
        ['apt-get', '-o', 'DPkg::Lock::Timeout=300', 'update'],
        ['apt-get', '-o', 'DPkg::Lock::Timeout=300', 'install', '-y', 'postgresql-client-16'],
      ]);
      expect(readFileSync(path.join(root, '/etc/apt/sources.list.d/pgdg.list'), 'utf8')).toContain(
        'bookworm-pgdg main',
      );
      expect(error).toBeInstanceOf(ToolVersionError);
      expect(error.message).toContain(
        "'apt-get install -y postgresql-client-16' failed (exit 100)",
      );
      expect(error.message).toContain('E: Unable to locate package postgresql-client-16');
      expect(s.logger.lines).toContain('group: Installing postgresql-client-16');
    },
  );

  (isRoot && hasApt ? it : it.skip)(
    'says so when apt-get succeeded but the tools are still missing',
    async () => {
      const runner: CommandRunner = async (argv, opts) =>
        argv[0] === 'apt-cache' ? defaultRunner(argv, opts) : { code: 0, stdout: '', stderr: '' };
      const error = await toolError(
        ensureClientTools({
          ...base,
          install: true,
          serverMajor: 18,
          serverVersion: '18.4',
          search: search(),
          runner,
          osRelease: OS_RELEASE.bookworm,
          aptRoot: tempDir('apt-root-'),
          fetchKey: async () => readFileSync(SHIPPED_KEY, 'utf8'),
        }),
      );
      expect(error.message).toContain(
        'Installed postgresql-client-18, but the programs are still not found in /usr/lib/postgresql/18/bin',
      );
    },
  );
});

describe('apt for real', () => {
  /**
   * Runs the plan's install command through the real runner. postgresql-client-15 is already
   * installed, so with --no-upgrade this is a no-op that touches neither the network nor the
   * machine's PostgreSQL 15, which other tests use at the same time.
   */
  (isRoot && hasApt ? it : it.skip)(
    'runs apt-get install -y postgresql-client-15 as a no-op',
    async () => {
      const pgdgBefore = existsSync('/etc/apt/sources.list.d/pgdg.list');
      const plan = pgdgAptPlan(15, {
        server: false,
        codename: 'bookworm',
        root: true,
        repository: false,
      });
      // Only the install step: `apt-get update` would download package lists.
      const install = plan.commands.find((argv) => argv[1] === 'install');
      expect(install).toEqual(['apt-get', 'install', '-y', 'postgresql-client-15']);
      // The extension-install test runs apt-get at the same time: aptArgv waits for dpkg's lock.
      const argv = aptArgv([...install!.slice(0, 3), '--no-upgrade', ...install!.slice(3)]);
      const r = await defaultRunner(argv, {
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(r.stdout).toMatch(/postgresql-client-15.*already/);
      expect(r.stdout).toMatch(/0 newly installed/);
      expect(existsSync('/etc/apt/sources.list.d/pgdg.list')).toBe(pgdgBefore);
    },
  );

  /**
   * Another process holds dpkg's frontend lock for three seconds (an fcntl lock, as apt takes
   * it, from perl, which Debian always has): plain apt-get fails at once, the command as the
   * action runs it waits and succeeds. `apt-get check` takes the lock and changes nothing.
   */
  (isRoot && hasApt ? it : it.skip)(
    "waits for dpkg's lock where plain apt-get fails at once",
    async () => {
      const holder = spawn(
        'perl',
        [
          '-MFcntl',
          '-e',
          'open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die "open: $!";' +
            ' fcntl($f, F_SETLKW, pack("s s x4 q q i x4", F_WRLCK, SEEK_SET, 0, 0, 0)) or die "lock: $!";' +
            ' $| = 1; print "locked\\n"; sleep 3;',
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const released = new Promise((resolve) => holder.on('close', resolve));
      await new Promise((resolve) => holder.stdout.once('data', resolve));
      const plain = await runCommand(['apt-get', 'check']);
      expect(plain.code).toBe(100);
      expect(plain.stderr).toContain('Could not get lock');
      const started = performance.now();
      const waited = await runCommand(aptArgv(['apt-get', 'check']));
      expect({ code: waited.code, stderr: waited.stderr }).toEqual({ code: 0, stderr: '' });
      expect(await Promise.race([released, 'still held'])).not.toBe('still held');
      expect(performance.now() - started).toBeGreaterThan(1000);
    },
    30_000,
  );

  it('runs apt-get with the lock wait and sudo without a prompt', () => {
    expect(aptArgv(['sudo', 'apt-get', 'update'])).toEqual([
      'sudo',
      '-n',
      'apt-get',
      '-o',
      'DPkg::Lock::Timeout=300',
      'update',
    ]);
    expect(aptArgv(['apt-get', 'install', '-y', 'postgresql-client-16'])).toEqual([
      'apt-get',
      '-o',
      'DPkg::Lock::Timeout=300',
      'install',
      '-y',
      'postgresql-client-16',
    ]);
  });
});
