import { existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { MemoryLogger } from '../../src/core/logger.js';
import {
  RESTORE_SERVER_SETTINGS,
  startScratchCluster,
  type ScratchCluster,
} from '../../src/postgres/cluster.js';
import { scratchTarget } from '../../src/restore/target.js';
import { ensureClientTools, ToolVersionError } from '../../src/postgres/install.js';
import { runCommand } from '../../src/core/process.js';
import { majorFromVersionNum, type ServerBinaries } from '../../src/postgres/tools.js';
import {
  EMBEDDED_MAJORS,
  embeddedServer,
  MACHINE_BIN_DIR,
  machineServer,
} from '../support/embedded.js';
import { withClient } from '../support/sample.js';

const PSQL = path.join(MACHINE_BIN_DIR, 'psql');
const PG_DUMP = path.join(MACHINE_BIN_DIR, 'pg_dump');
const PASSWORD = "s3cret pass'word";

/** psql 15 against a cluster, with libpq settings from the environment only. */
function psql(env: Record<string, string>, sql: string): ReturnType<typeof runCommand> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('PG')),
  );
  return runCommand([PSQL, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    env: { ...clean, ...env, PGCONNECT_TIMEOUT: '5' },
    timeoutMs: 20000,
  });
}

const servers: ServerBinaries[] = [
  machineServer(),
  ...EMBEDDED_MAJORS.map((m) => embeddedServer(m)),
];
const clusters = new Map<number, ScratchCluster>();
const logger = new MemoryLogger();
let withPassword: ScratchCluster[] = [];

beforeAll(async () => {
  const started = await Promise.all(
    servers.map((server) => startScratchCluster({ server, logger, settings: { work_mem: '7MB' } })),
  );
  for (const c of started) clusters.set(c.major, c);
  withPassword = await Promise.all(
    [machineServer(), embeddedServer(13), embeddedServer(18)].map((server) =>
      startScratchCluster({ server, logger, password: PASSWORD, superuser: 'backup_admin' }),
    ),
  );
}, 90000);

afterAll(async () => {
  await Promise.all([...clusters.values(), ...withPassword].map((c) => c.stop()));
});

describe.each(servers.map((s) => [s.major, s] as const))(
  'scratch cluster, PostgreSQL %i',
  (major, server) => {
    it('serves its major on 127.0.0.1 only, with the speed settings', async () => {
      const cluster = clusters.get(major)!;
      expect(cluster).toMatchObject({
        host: '127.0.0.1',
        user: 'postgres',
        version: server.version,
        major,
      });
      const r = await psql(
        cluster.env(),
        "select current_setting('server_version_num') || ' ' || current_setting('listen_addresses') " +
          "|| ' ' || current_setting('fsync') || ' ' || current_setting('work_mem') " +
          "|| ' ' || current_setting('server_encoding')",
      );
      expect(r.stderr).toBe('');
      const [num, listen, fsync, workMem, encoding] = r.stdout.trim().split(' ');
      expect(majorFromVersionNum(Number(num))).toBe(major);
      expect([listen, fsync, workMem, encoding]).toEqual(['127.0.0.1', 'off', '7MB', 'UTF8']);
      const base = path.dirname(cluster.dataDir);
      expect(existsSync(path.join(base, 's', `.s.PGSQL.${cluster.port}`))).toBe(true);
      expect(readFileSync(path.join(base, 'postgres.log'), 'utf8')).toMatch(
        /ready to accept connections/,
      );
      if (process.getuid?.() === 0) {
        // initdb refuses root, so the cluster belongs to an unprivileged user.
        expect(statSync(cluster.dataDir).uid).not.toBe(0);
      }
    });

    it('chooses client tools that can dump it, or says why not', async () => {
      const cluster = clusters.get(major)!;
      const r = await psql(
        cluster.env(),
        "select current_setting('server_version_num'), current_setting('server_version')",
      );
      const [num, version] = r.stdout.trim().split('|');
      const serverMajor = majorFromVersionNum(Number(num));
      const search = {
        searchDirs: undefined,
        pathEnv: '/usr/bin:/bin',
        logger: new MemoryLogger(),
      };
      const opts = {
        serverMajor,
        serverVersion: version!,
        postgresVersion: 'auto' as const,
        install: false,
        search,
      };
      if (serverMajor <= 15) {
        const tools = await ensureClientTools(opts);
        expect(tools).toMatchObject({ major: 15, pgDump: PG_DUMP, binDir: MACHINE_BIN_DIR });
        const dump = await runCommand([tools.pgDump, '--schema-only', '-d', cluster.url()], {
          timeoutMs: 30000,
        });
        expect(dump.stderr).toBe('');
        expect(dump.stdout).toContain(`-- Dumped from database version ${version}`);
      } else {
        const error = await ensureClientTools(opts).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ToolVersionError);
        const message = (error as ToolVersionError).message;
        expect(message).toContain(version);
        expect(message).toMatch(/pg_dump 15\.\d+ at \/usr\/lib\/postgresql\/15\/bin\/pg_dump/);
        expect(message).toContain(`sudo apt-get install -y postgresql-client-${serverMajor}`);
        // The premise: pg_dump 15 really refuses this server.
        const dump = await runCommand([PG_DUMP, '--schema-only', '-d', cluster.url()], {
          timeoutMs: 30000,
        });
        expect(dump.code).not.toBe(0);
        expect(dump.stderr).toMatch(/server version mismatch/);
      }
    });
  },
);

describe('scratch cluster with a password', () => {
  it('needs the right password over TCP and the socket', async () => {
    for (const cluster of withPassword) {
      expect(cluster.user).toBe('backup_admin');
      expect(cluster.env().PGPASSWORD).toBe(PASSWORD);
      expect(cluster.url('app')).toBe(
        `postgresql://backup_admin:${encodeURIComponent(PASSWORD)}@127.0.0.1:${cluster.port}/app`,
      );
      const ok = await psql(
        cluster.env(),
        "select current_user, current_setting('password_encryption')",
      );
      expect(ok.stderr).toBe('');
      expect(ok.stdout.trim()).toBe('backup_admin|scram-sha-256');
      const viaUrl = await runCommand([PSQL, '-X', '-Atc', 'select 1', cluster.url()], {
        timeoutMs: 20000,
      });
      expect(viaUrl.stdout.trim()).toBe('1');

      const wrong = await psql({ ...cluster.env(), PGPASSWORD: 'not-it' }, 'select 1');
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toMatch(/password authentication failed for user "backup_admin"/);
      const noPassword: Record<string, string> = { ...cluster.env() };
      delete noPassword.PGPASSWORD;
      const none = await psql({ ...noPassword, PGPASSFILE: '/dev/null' }, 'select 1');
      expect(none.code).not.toBe(0);
      const socket = await psql(
        {
          ...cluster.env(),
          PGHOST: path.join(path.dirname(cluster.dataDir), 's'),
          PGPASSWORD: 'not-it',
        },
        'select 1',
      );
      expect(socket.stderr).toMatch(/password authentication failed/);
    }
  });

  it('refuses a password initdb could not read back', async () => {
    await expect(
      startScratchCluster({ server: machineServer(), logger, password: 'two\nlines' }),
    ).rejects.toThrow(/single line/);
  });

  it('keeps the password out of the log and the data folder', () => {
    expect(logger.lines.join('\n')).not.toContain(PASSWORD);
    for (const cluster of withPassword) {
      expect(existsSync(path.join(path.dirname(cluster.dataDir), 'pwfile'))).toBe(false);
    }
  });
});

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

describe('stopping', () => {
  it('stop() shuts down and removes the folder, and is idempotent', async () => {
    const cluster = await startScratchCluster({ server: embeddedServer(17), logger });
    const base = path.dirname(cluster.dataDir);
    expect(await portOpen(cluster.port)).toBe(true);
    await Promise.all([cluster.stop(), cluster.stop()]);
    expect(existsSync(base)).toBe(false);
    expect(await portOpen(cluster.port)).toBe(false);
    await cluster.stop();
    await cluster.kill();
  });

  it('kill() SIGKILLs the postmaster and removes the folder', async () => {
    const cluster = await startScratchCluster({ server: machineServer(), logger });
    const base = path.dirname(cluster.dataDir);
    const pid = Number(
      readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    await cluster.kill();
    expect(existsSync(base)).toBe(false);
    const state = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    expect(state === '' || / Z /.test(state)).toBe(true);
    expect(await portOpen(cluster.port)).toBe(false);
    await cluster.stop();
  });

  it('reports the server log when a fixed port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const error = await startScratchCluster({ server: embeddedServer(14), logger, port }).catch(
        (e: unknown) => e as Error,
      );
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(
        /pg_ctl start \(PostgreSQL 14\.\d+, port \d+\) failed/,
      );
      expect((error as Error).message).toMatch(
        /could not bind IPv4 address "127\.0\.0\.1": Address already in use/,
      );
    } finally {
      blocker.close();
    }
  });
});

describe("a restore's scratch server", () => {
  it.each([machineServer(), embeddedServer(18)])(
    'logs the least write-ahead log and sorts index builds in memory (PostgreSQL $major)',
    async (server) => {
      const target = await scratchTarget({ server, logger: new MemoryLogger() });
      try {
        const shown = await withClient(target.scratch!.url('postgres'), (c) =>
          c.query<{ name: string; setting: string }>(
            'SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY($1)',
            [Object.keys(RESTORE_SERVER_SETTINGS)],
          ),
        );
        expect(Object.fromEntries(shown.rows.map((r) => [r.name, r.setting]))).toEqual(
          RESTORE_SERVER_SETTINGS,
        );
      } finally {
        await target.cleanup();
      }
    },
  );
});
