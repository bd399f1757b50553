import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { completeBackups, listCatalog } from '../../src/catalog/catalog.js';
import { manifestKey } from '../../src/catalog/keys.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { bundlePath, node24 } from '../support/bundle.js';
import {
  backupWithBundle,
  makeStore,
  sharedPostgresUrl,
  type TestStore,
  uniqueName,
} from '../support/env.js';
import {
  createDatabase,
  loadSample,
  rowCounts,
  urlOfDatabase,
  withClient,
} from '../support/sample.js';
import { writeSynthetic } from '../prune/synthetic.js';

const PASSWORD = 'source-secret-pw';

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli/index.js <args>` under Node 24, without a terminal on stdin. */
function runCli(args: string[], env: Record<string, string>): Promise<CliRun> {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(PG|PGBACKUP_|GITHUB_|INPUT_|AGE_|DATABASE_URL)/.test(k)) base[k] = v;
  }
  const child = spawn(node24, [bundlePath('cli'), ...args], {
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

function storeEnv(store: TestStore): Record<string, string> {
  const env: Record<string, string> = { ...store.env, PGBACKUP_STORAGE: store.location };
  if (store.kind === 's3') {
    env.PGBACKUP_S3_ENDPOINT = store.inputs['s3-endpoint'];
    env.PGBACKUP_S3_REGION = store.inputs['s3-region'];
    env.PGBACKUP_S3_FORCE_PATH_STYLE = 'true';
  }
  return env;
}

describe('the pg-backup CLI without a catalog', () => {
  it('prints help, and exits 2 on usage errors', async () => {
    const help = await runCli(['--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: pg-backup <command>');
    expect((await runCli(['frobnicate'], {})).code).toBe(2);
    const unknown = await runCli(['list', '--storage', '/tmp', '--colour'], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--colour'");
    const noStorage = await runCli(['list'], {});
    expect(noStorage.code).toBe(2);
    expect(noStorage.stderr).toContain('--storage (or the environment variable PGBACKUP_STORAGE)');
    const secretFlag = await runCli(['drill', '--encryption-identity', 'AGE-SECRET-KEY-1X'], {});
    expect(secretFlag.code).toBe(2);
    expect(secretFlag.stderr).toContain('AGE_IDENTITY');
    expect(secretFlag.stderr).not.toContain('AGE-SECRET-KEY-1X');
  });
});

describe.each(['s3', 'local'] as const)('the pg-backup CLI against %s storage', (kind) => {
  let store: TestStore;
  let env: Record<string, string>;
  let sourceDb: string;
  let sourceUrl: string;
  let backupId: string;
  const key = generateIdentity();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'cli-test-'));

  beforeAll(async () => {
    store = await makeStore(kind);
    env = storeEnv(store);
    sourceDb = uniqueName('clisrc').replace(/-/g, '_');
    sourceUrl = await createDatabase(sharedPostgresUrl(), sourceDb);
    await loadSample(sourceUrl);
    const backup = await backupWithBundle(store, sourceUrl, 'shop', key.recipient);
    expect(backup.code).toBe(0);
    backupId = backup.outputs['backup-id'];
  });

  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('backs up (DATABASE_URL from the environment) and lists the catalog', async () => {
    const backup = await runCli(
      ['backup', '--name', 'shop', '--encryption-recipients', key.recipient],
      { ...env, DATABASE_URL: sourceUrl },
    );
    expect(backup.stderr).not.toContain('error:');
    expect(backup.code).toBe(0);
    const manualId = backup.stdout.trim();
    expect(manualId).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/);

    const list = await runCli(['list'], env);
    expect(list.code).toBe(0);
    const lines = list.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^NAME\s+ID\s+KIND\s+FINISHED \(UTC\)\s+SIZE\s+ENCRYPTED\s+LAST CHECK$/,
    );
    expect(lines.find((l) => l.includes(backupId))).toMatch(
      /shop\s+\S+\s+scheduled\s+.+\s+age\s+-$/,
    );
    expect(lines.find((l) => l.includes(manualId))).toMatch(/\smanual\s/);

    const json = await runCli(['list', '--json'], env);
    const entries = JSON.parse(json.stdout) as { id: string; encrypted: boolean; bytes: number }[];
    expect(entries.map((e) => e.id)).toEqual([backupId, manualId]);
    expect(entries.every((e) => e.encrypted && e.bytes > 1000)).toBe(true);
    for (const run of [backup, list, json]) {
      expect(run.stdout + run.stderr).not.toContain(PASSWORD);
    }

    // A backup whose manifest cannot be read is listed as damaged, not as an unfinished upload.
    const cracked = await writeSynthetic(store.storage, {
      name: 'cracked',
      finishedAt: new Date(),
    });
    await store.storage.putBytes(manifestKey('cracked', cracked.id), 'not json');
    try {
      const damaged = await runCli(['list', '--name', 'cracked'], env);
      expect(damaged.code).toBe(0);
      expect(damaged.stdout).toMatch(new RegExp(`\\ncracked\\s+${cracked.id}\\s+damaged\\s+-\\s`));
      const damagedJson = await runCli(['list', '--name', 'cracked', '--json'], env);
      expect(JSON.parse(damagedJson.stdout)).toEqual([
        expect.objectContaining({
          id: cracked.id,
          complete: false,
          damaged: expect.stringContaining('is not valid JSON') as unknown,
        }),
      ]);
    } finally {
      await store.storage.delete(cracked.keys);
    }
  });

  it('drills a backup (exit 0), fails a drill over its targets (exit 1), and list shows both', async () => {
    const keyFile = path.join(tmp, 'key.txt');
    writeFileSync(keyFile, `# created: today\n${key.identity}\n`, { mode: 0o600 });
    const drill = await runCli(
      [
        'drill',
        '--backup-id',
        backupId,
        '--encryption-identity-file',
        keyFile,
        '--rto-target',
        '10m',
        '--smoke-command',
        'psql -X -At -c "select count(*) from app.customers"',
      ],
      env,
    );
    expect(drill.stderr).not.toContain('error:');
    expect(drill.code).toBe(0);
    expect(drill.stdout).toContain(`drill passed: shop ${backupId}`);
    expect(drill.stderr).toContain('== Smoke command\n500\n');

    const db = uniqueName('clidrill').replace(/-/g, '_');
    const late = await runCli(['drill', '--backup-id', backupId, '--rpo-target', '1s', '--json'], {
      ...env,
      AGE_IDENTITY: key.identity,
      PGBACKUP_TARGET_URL: urlOfDatabase(sharedPostgresUrl(), db),
    });
    expect(late.code).toBe(1);
    const result = JSON.parse(late.stdout) as {
      status: string;
      checks: { name: string; status: string }[];
    };
    expect(result.status).toBe('failed');
    expect(result.checks.find((c) => c.name === 'Backup age (RPO)')?.status).toBe('failed');

    const list = await runCli(['list', '--name', 'shop'], env);
    expect(list.stdout.split('\n').find((l) => l.includes(backupId))).toMatch(
      /failed \(drill \d{4}-\d\d-\d\d \d\d:\d\d\)$/,
    );
    for (const run of [drill, late, list]) {
      expect(run.stdout + run.stderr).not.toContain(PASSWORD);
      expect(run.stdout + run.stderr).not.toContain(key.identity);
    }
  });

  it('verifies a backup and plans a prune', async () => {
    const verify = await runCli(['verify', '--backup-id', backupId], {
      ...env,
      AGE_IDENTITY: key.identity,
    });
    expect(verify.stderr).not.toContain('error:');
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain(`verify passed: shop ${backupId}`);
    const noKey = await runCli(['verify', '--backup-id', backupId], env);
    expect(noKey.code).toBe(1);
    expect(noKey.stdout).toMatch(/FAIL Decryption and decompression: .*encryption-identity/);
    const prune = await runCli(['prune', '--name', 'shop', '--keep-last', '1', '--dry-run'], env);
    expect(prune.stderr).not.toContain('error:');
    expect(prune.code).toBe(0);
    expect(prune.stdout).toMatch(/would keep \d+, would delete \d+/);
  });

  it('restores only with the database name confirmed, then matches the backup', async () => {
    await withClient(sourceUrl, async (c) => {
      await c.query("UPDATE app.customers SET name = 'CHANGED' WHERE id = 7");
      await c.query('TRUNCATE audit.events');
    });
    const restoreEnv = { ...env, AGE_IDENTITY: key.identity, DATABASE_URL: sourceUrl };
    const unconfirmed = await runCli(['restore', '--backup-id', backupId], restoreEnv);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain(`pass --confirm ${sourceDb}`);
    const name = await withClient(sourceUrl, (c) =>
      c.query<{ name: string }>('SELECT name FROM app.customers WHERE id = 7'),
    );
    expect(name.rows[0].name).toBe('CHANGED');

    const restore = await runCli(
      ['restore', '--backup-id', backupId, '--confirm', sourceDb, '--no-safety-backup'],
      restoreEnv,
    );
    expect(restore.stderr).not.toContain('error:');
    expect(restore.code).toBe(0);
    expect(restore.stdout).toContain(`restore passed: shop ${backupId}`);
    const manifest = completeBackups(await listCatalog(store.storage, 'shop')).find(
      (m) => m.id === backupId,
    )!;
    const counts = await rowCounts(sourceUrl);
    for (const t of manifest.tables) expect(counts[`${t.schema}.${t.name}`]).toBe(t.rows);
    const restored = await withClient(sourceUrl, (c) =>
      c.query<{ name: string }>('SELECT name FROM app.customers WHERE id = 7'),
    );
    expect(restored.rows[0].name).toBe('Customer 7');
    for (const run of [unconfirmed, restore]) {
      expect(run.stdout + run.stderr).not.toContain(PASSWORD);
      expect(run.stdout + run.stderr).not.toContain(key.identity);
    }
  });
});

describe('pg-backup backup with several --storage flags', () => {
  let sourceUrl: string;
  let s3: TestStore;
  let folder: TestStore;

  beforeAll(async () => {
    sourceUrl = await createDatabase(sharedPostgresUrl(), uniqueName('clidest').replace(/-/g, '_'));
    await loadSample(sourceUrl);
    s3 = await makeStore('s3');
    folder = await makeStore('local');
  });

  function backupTo(locations: string[], more: string[] = []): Promise<CliRun> {
    const args = ['backup', '--name', 'two', '--json', '--compression', 'none', ...more];
    for (const location of locations) args.push('--storage', location);
    // The S3 settings and credentials from the environment, the destinations from the flags.
    const env = Object.fromEntries(
      Object.entries(storeEnv(s3)).filter(([name]) => name !== 'PGBACKUP_STORAGE'),
    );
    return runCli(args, { ...env, DATABASE_URL: sourceUrl });
  }

  it('writes a complete copy to the Swift store and to a folder, with equal SHA-256', async () => {
    const run = await backupTo([s3.location, folder.location]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({
      code: 0,
      stderr: expect.not.stringContaining('error') as unknown,
    });
    const result = JSON.parse(run.stdout) as {
      id: string;
      sha256: string;
      bytes: number;
      copies: { location: string; status: string }[];
    };
    expect(result.copies.map((c) => c.status)).toEqual(['stored', 'stored']);
    for (const store of [s3, folder]) {
      const [manifest] = completeBackups(await listCatalog(store.storage, 'two'));
      expect(manifest.id).toBe(result.id);
      const dump = manifest.objects.find((o) => o.role === 'dump');
      expect(dump).toEqual(expect.objectContaining({ sha256: result.sha256, bytes: result.bytes }));
      expect((await store.storage.head(dump?.key ?? ''))?.size).toBe(result.bytes);
    }
    expect(result.copies[1].location).toContain(folder.location);
  });

  it('fails when a destination fails, unless --destinations-required allows it', async () => {
    // A folder under a regular file cannot be created: that destination fails at once.
    const file = path.join(folder.location, 'not-a-folder');
    writeFileSync(file, 'x');
    const broken = path.join(file, 'backups');
    const failed = await backupTo([s3.location, broken]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/1 of 2 destinations hold backup \S+, 2 required/);

    const allowed = await backupTo([s3.location, broken], ['--destinations-required', '1']);
    expect(allowed.code).toBe(0);
    expect(allowed.stderr).toMatch(
      /1 of 2 destinations hold backup \S+ \(destinations-required 1\)/,
    );
    const result = JSON.parse(allowed.stdout) as { copies: { status: string }[] };
    expect(result.copies.map((c) => c.status)).toEqual(['stored', 'failed']);
  });
});
