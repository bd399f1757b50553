import { runBackup } from '../../src/backup/backup.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath, runCommand } from '../../src/core/process.js';
import { extensionPackages, installExtensions } from '../../src/postgres/extensions.js';
import { aptArgv, type CommandRunner } from '../../src/postgres/install.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { runVerify } from '../../src/verify/verify.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testVerifyDeps,
  type TestStore,
} from '../support/env.js';
import { newDatabase, withClient } from '../support/sample.js';

// A backup whose extension the scratch server lacks: verify installs it with apt, from the
// package of the PostgreSQL project's naming, where the run may change the machine.

describe('the apt packages of extensions', () => {
  it('maps extensions to postgresql-<major>-<package>, and names those without one', () => {
    expect(extensionPackages(['vector', 'postgis_topology', 'postgis', 'made_up'], 16)).toEqual({
      packages: [
        'postgresql-16-pgvector',
        'postgresql-16-postgis-3',
        'postgresql-16-postgis-3-scripts',
      ],
      unknown: ['made_up'],
    });
  });

  it('refreshes the package lists once when the first install fails, with sudo when not root', async () => {
    const calls: string[] = [];
    let installs = 0;
    const runner: CommandRunner = async (argv) => {
      calls.push(argv.join(' '));
      if (argv.includes('install')) installs++;
      const code = argv.includes('install') && installs === 1 ? 100 : 0;
      return { code, stdout: '', stderr: code ? 'E: Unable to locate package' : '' };
    };
    const note = await installExtensions({
      names: ['pg_cron', 'nope'],
      major: 15,
      logger: new MemoryLogger(),
      runner,
      root: false,
    });
    expect(calls).toEqual([
      'sudo -n apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends postgresql-15-cron',
      'sudo -n apt-get -o DPkg::Lock::Timeout=300 update -q',
      'sudo -n apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends postgresql-15-cron',
    ]);
    expect(note).toBe('installed with apt: postgresql-15-cron; no apt package known for: nope');
  });
});

const PACKAGE = 'postgresql-15-semver';
const asRoot = process.getuid?.() === 0 && findOnPath('apt-get') !== undefined;

async function apt(...args: string[]): Promise<void> {
  const r = await runCommand(aptArgv(['apt-get', ...args]), {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeoutMs: 600_000,
  });
  if (r.code !== 0) throw new Error(`apt-get ${args.join(' ')}: ${r.stderr}`);
}

// Installing and removing a system package needs root and apt: CI runs as root on Debian.
(asRoot ? describe : describe.skip)('verify with an extension the scratch server lacks', () => {
  let tools: ClientTools;
  let store: TestStore;

  beforeAll(async () => {
    tools = await machineClientTools();
    store = await makeStore('local');
    await apt('install', '-y', '-q', '--no-install-recommends', PACKAGE);
    const url = await newDatabase('semver');
    await withClient(url, (c) =>
      c.query(`CREATE EXTENSION semver;
               CREATE TABLE releases (id int PRIMARY KEY, version semver NOT NULL);
               INSERT INTO releases VALUES (1, '1.0.0'), (2, '1.2.3-beta.1'), (3, '2.0.0')`),
    );
    await runBackup(
      testBackupOptions(url, 'semver'),
      testBackupDeps(store.storage, tools, { zstdPath: findOnPath('zstd') }),
    );
    // The machine as a runner without the package: the scratch server cannot install semver.
    await apt('remove', '-y', '-q', PACKAGE);
  }, 600_000);

  it('fails in the preflight, naming the extension, where the run may not install', async () => {
    const report = await runVerify(
      { name: 'semver', restore: true, checks: [] },
      testVerifyDeps(store.storage, tools),
    );
    const preflight = report.checks.find((c) => c.name.startsWith('Preflight'));
    expect(preflight?.status).toBe('failed');
    expect(preflight?.detail).toMatch(/needs extensions that .* cannot install: semver/);
  }, 600_000);

  it('installs it with apt and passes, where the run may', async () => {
    const logger = new MemoryLogger();
    const report = await runVerify(
      { name: 'semver', restore: true, checks: [] },
      testVerifyDeps(store.storage, tools, {
        logger,
        installExtensions: (names, major) => installExtensions({ names, major, logger }),
      }),
    );
    expect(report.failures).toEqual([]);
    const preflight = report.checks.find((c) => c.name.startsWith('Preflight'));
    expect(preflight?.detail).toMatch(
      /^the archive's 1 extension\(s\) can be installed on .* \(installed with apt: postgresql-15-semver\)/,
    );
    expect(report.tables).toContainEqual(
      expect.objectContaining({ table: 'public.releases', status: 'same' }),
    );
  }, 600_000);
});
