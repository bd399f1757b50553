import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { cacheClientTools } from '../../src/postgres/install.js';
import {
  compareVersions,
  findClientTools,
  findServerBinaries,
  listClientCandidates,
  majorFromVersionNum,
  parseToolVersion,
  resolvePostgresVersionInput,
  toolCacheDirs,
} from '../../src/postgres/tools.js';
import { embeddedServer, MACHINE_BIN_DIR } from '../support/embedded.js';

const MACHINE_PG_DUMP = path.join(MACHINE_BIN_DIR, 'pg_dump');
const CLIENT_PROGRAMS = ['pg_dump', 'pg_restore', 'pg_dumpall', 'psql'];

const scratch: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** A dir of tiny shell scripts that print `<program> (PostgreSQL) <version>`. */
function fakeClientDir(version: string, programs = CLIENT_PROGRAMS): string {
  const dir = tempDir('fake-pg-');
  for (const program of programs) {
    const file = path.join(dir, program);
    writeFileSync(file, `#!/bin/sh\necho '${program} (PostgreSQL) ${version}'\n`);
    chmodSync(file, 0o755);
  }
  return dir;
}

afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

describe('parseToolVersion', () => {
  it.each([
    ['pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)', '15.18', 15],
    ['pg_dump (PostgreSQL) 14.13 (Ubuntu 14.13-0ubuntu0.22.04.1)\n', '14.13', 14],
    ['psql (PostgreSQL) 16.4 (Ubuntu 16.4-1.pgdg22.04+1)', '16.4', 16],
    ['postgres (PostgreSQL) 18.4', '18.4', 18],
    ['postgres (PostgreSQL) 18beta1', '18beta1', 18],
    ['pg_dump (PostgreSQL) 17rc1 (Debian 17~rc1-1.pgdg120+1)', '17rc1', 17],
    ['pg_dump (PostgreSQL) 19devel', '19devel', 19],
    ['pg_dump (PostgreSQL) 9.6.24', '9.6.24', 9],
    ['9.6.24', '9.6.24', 9],
    ['18beta1', '18beta1', 18],
    ['  17.2 \n', '17.2', 17],
    ['pg_dump (PostgreSQL) 17.2 (Homebrew)', '17.2', 17],
    ['psql (EnterpriseDB) 15.2.0', '15.2.0', 15],
    ['PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 12.2.0, 64-bit', '16.4', 16],
  ])('%j → %s', (output, version, major) => {
    expect(parseToolVersion(output)).toEqual({ version, major });
  });

  it.each(['', 'command not found', 'pg_dump: invalid option', 'Python 3.11.2', '1.2.3'])(
    'rejects %j',
    (output) => {
      expect(parseToolVersion(output)).toBeUndefined();
    },
  );
});

describe('majorFromVersionNum and compareVersions', () => {
  it('reads majors from server_version_num', () => {
    expect(majorFromVersionNum(150018)).toBe(15);
    expect(majorFromVersionNum(180004)).toBe(18);
    expect(majorFromVersionNum(100023)).toBe(10);
    expect(majorFromVersionNum(90624)).toBe(9);
    expect(() => majorFromVersionNum(15)).toThrow(/server_version_num/);
    expect(() => majorFromVersionNum(Number.NaN)).toThrow(/server_version_num/);
  });

  it('orders versions, pre-releases before releases', () => {
    const sorted = ['17.2', '9.6.24', '18beta1', '18.0', '17.10', '18rc1', '15.18'].sort(
      compareVersions,
    );
    expect(sorted).toEqual(['9.6.24', '15.18', '17.2', '17.10', '18beta1', '18rc1', '18.0']);
  });
});

describe('resolvePostgresVersionInput', () => {
  it('accepts auto, empty and majors', () => {
    expect(resolvePostgresVersionInput('auto')).toBe('auto');
    expect(resolvePostgresVersionInput(' AUTO ')).toBe('auto');
    expect(resolvePostgresVersionInput('')).toBe('auto');
    expect(resolvePostgresVersionInput('16')).toBe(16);
    expect(resolvePostgresVersionInput('18 ')).toBe(18);
  });

  it.each(['16.4', 'latest', '9', 'v17', '-1', '100'])('rejects %j', (value) => {
    expect(() => resolvePostgresVersionInput(value)).toThrow(ConfigurationError);
    expect(() => resolvePostgresVersionInput(value)).toThrow(/postgres-version/);
  });
});

describe('client tool search', () => {
  it("resolves /usr/bin/pg_dump to postgresql-common's pg_wrapper and skips it", async () => {
    expect(realpathSync('/usr/bin/pg_dump')).toBe('/usr/share/postgresql-common/pg_wrapper');
    const logger = new MemoryLogger();
    const found = await listClientCandidates({ searchDirs: [], pathEnv: '/usr/bin', logger });
    expect(found).toEqual([]);
    expect(logger.lines.join('\n')).toMatch(/Skipping \/usr\/bin\/pg_dump: .*pg_wrapper/);
  });

  it('picks the machine 15 even when PATH has an older pg_dump first', async () => {
    const old = fakeClientDir('12.22');
    const logger = new MemoryLogger();
    const search = { pathEnv: `${old}:/usr/bin:/bin`, logger };
    const found = await listClientCandidates(search);
    expect(found).toContainEqual({ path: path.join(old, 'pg_dump'), version: '12.22', major: 12 });
    expect(found.map((b) => b.path)).toContain(MACHINE_PG_DUMP);
    expect(found.map((b) => b.path)).not.toContain('/usr/bin/pg_dump');
    expect(found[0]?.major).toBeGreaterThanOrEqual(15);

    const tools = await findClientTools(12, search);
    expect(tools).toMatchObject({
      binDir: MACHINE_BIN_DIR,
      major: 15,
      pgDump: MACHINE_PG_DUMP,
      pgRestore: path.join(MACHINE_BIN_DIR, 'pg_restore'),
      pgDumpall: path.join(MACHINE_BIN_DIR, 'pg_dumpall'),
      psql: path.join(MACHINE_BIN_DIR, 'psql'),
    });
    expect(tools?.version).toMatch(/^15\.\d+$/);
    expect(logger.lines.join('\n')).toContain(
      `Using the PostgreSQL ${tools?.version} client tools in ${MACHINE_BIN_DIR}`,
    );
  });

  it('prefers the newest set when only PATH is searched, older dirs first', async () => {
    const old = fakeClientDir('12.22');
    const logger = new MemoryLogger();
    const tools = await findClientTools(11, {
      searchDirs: [],
      pathEnv: `${old}:/usr/bin:${MACHINE_BIN_DIR}`,
      logger,
    });
    expect(tools?.pgDump).toBe(MACHINE_PG_DUMP);
    // Only the old one fits an upper bound of 12.
    const exact = await findClientTools(
      12,
      { searchDirs: [], pathEnv: `${old}:${MACHINE_BIN_DIR}`, logger },
      { maxMajor: 12 },
    );
    expect(exact).toMatchObject({ major: 12, version: '12.22', binDir: realpathSync(old) });
  });

  it('finds nothing when every client is older than the server', async () => {
    const old = fakeClientDir('12.22');
    const logger = new MemoryLogger();
    const search = { searchDirs: [], pathEnv: old, logger };
    expect(await findClientTools(13, search)).toBeUndefined();
    expect(logger.lines.join('\n')).toContain('Not using pg_dump 12.22');
  });

  it('skips a dir whose pg_dump has no pg_restore beside it, or a mismatched one', async () => {
    const lonely = fakeClientDir('16.4', ['pg_dump']);
    const mixed = fakeClientDir('17.1', ['pg_dump', 'pg_dumpall', 'psql']);
    writeFileSync(
      path.join(mixed, 'pg_restore'),
      "#!/bin/sh\necho 'pg_restore (PostgreSQL) 14.1'\n",
      {
        mode: 0o755,
      },
    );
    const logger = new MemoryLogger();
    const tools = await findClientTools(13, {
      searchDirs: [lonely, mixed],
      pathEnv: MACHINE_BIN_DIR,
      logger,
    });
    expect(tools?.pgDump).toBe(MACHINE_PG_DUMP);
    const log = logger.lines.join('\n');
    expect(log).toContain(`Skipping ${realpathSync(lonely)}: it has pg_dump but no pg_restore`);
    expect(log).toContain(`Skipping ${realpathSync(mixed)}: pg_restore reports 14.1`);
  });

  it('resolves a symlinked pg_dump to its real dir and lists it once', async () => {
    const links = tempDir('pg-links-');
    symlinkSync(MACHINE_PG_DUMP, path.join(links, 'pg_dump'));
    const logger = new MemoryLogger();
    const found = await listClientCandidates({
      searchDirs: [links, MACHINE_BIN_DIR],
      pathEnv: '',
      logger,
    });
    expect(found.map((b) => b.path)).toEqual([MACHINE_PG_DUMP]);
    const tools = await findClientTools(15, { searchDirs: [links], pathEnv: '', logger });
    expect(tools?.binDir).toBe(MACHINE_BIN_DIR);
  });

  it('finds client tools cached in the runner tool cache', async () => {
    const cacheRoot = tempDir('tool-cache-');
    const saved = process.env.RUNNER_TOOL_CACHE;
    process.env.RUNNER_TOOL_CACHE = cacheRoot;
    try {
      const logger = new MemoryLogger();
      expect(toolCacheDirs()).toEqual([]);
      const machine = await findClientTools(15, {
        searchDirs: [MACHINE_BIN_DIR],
        pathEnv: '',
        logger,
      });
      expect(machine).toBeDefined();
      const cached = await cacheClientTools(machine!, logger);
      expect(cached?.startsWith(cacheRoot)).toBe(true);
      expect(toolCacheDirs()).toEqual([cached]);
      const fromCache = await findClientTools(15, {
        searchDirs: toolCacheDirs(),
        pathEnv: '',
        logger,
      });
      expect(fromCache).toMatchObject({ binDir: cached, version: machine!.version });
      // The default search includes the tool cache.
      const all = await listClientCandidates({ pathEnv: '', logger });
      expect(all.map((b) => b.path)).toContain(path.join(cached!, 'pg_dump'));
    } finally {
      if (saved === undefined) delete process.env.RUNNER_TOOL_CACHE;
      else process.env.RUNNER_TOOL_CACHE = saved;
    }
  });
});

describe('server binary search', () => {
  it('prefers the newest server, embedded dirs included', async () => {
    const logger = new MemoryLogger();
    const pg16 = embeddedServer(16);
    const pg18 = embeddedServer(18);
    const found = await findServerBinaries(15, {
      pathEnv: '',
      extraBinDirs: [pg16.binDir, pg18.binDir],
      logger,
    });
    expect(found).toEqual({ ...pg18, binDir: realpathSync(pg18.binDir) });
    const machine = await findServerBinaries(15, { pathEnv: '/usr/bin', logger });
    expect(machine).toMatchObject({ binDir: MACHINE_BIN_DIR, major: 15 });
    expect(await findServerBinaries(16, { pathEnv: '/usr/bin', logger })).toBeUndefined();
  });

  it('skips a server dir without initdb', async () => {
    const dir = tempDir('pg-server-');
    mkdirSync(path.join(dir, 'bin'));
    symlinkSync(path.join(MACHINE_BIN_DIR, 'postgres'), path.join(dir, 'bin', 'postgres'));
    const logger = new MemoryLogger();
    // The symlink resolves into the machine's complete bin dir, so it is found there.
    const found = await findServerBinaries(15, {
      searchDirs: [path.join(dir, 'bin')],
      pathEnv: '',
      logger,
    });
    expect(found?.binDir).toBe(MACHINE_BIN_DIR);
    const fake = fakeClientDir('16.2', ['postgres', 'pg_ctl']);
    expect(
      await findServerBinaries(16, { searchDirs: [fake], pathEnv: '', logger }),
    ).toBeUndefined();
    expect(logger.lines.join('\n')).toContain('it has postgres but no initdb');
  });
});
