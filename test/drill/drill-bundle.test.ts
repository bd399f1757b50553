import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { completeBackups, listCatalog, listVerifications } from '../../src/catalog/catalog.js';
import { manifestKey } from '../../src/catalog/keys.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle, type BundleRun } from '../support/bundle.js';
import { startFakeGitHub, type FakeGitHub } from '../support/fake-github.js';
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

const PASSWORD = 'source-secret-pw';

function databaseUrl(name: string): string {
  return urlOfDatabase(sharedPostgresUrl(), name);
}

async function databaseExists(name: string): Promise<boolean> {
  return withClient(sharedPostgresUrl(), async (c) => {
    const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return r.rowCount === 1;
  });
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function expectNoSecrets(run: BundleRun, secrets: string[]): void {
  for (const s of secrets) expect(run.everything).not.toContain(s);
}

describe.each(['s3', 'local'] as const)('restore-drill bundle against %s storage', (kind) => {
  let store: TestStore;
  let sourceDb: string;
  let sourceUrl: string;
  let backupId: string;
  const key = generateIdentity();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'drill-test-'));
  let github: FakeGitHub;
  const githubEnv = (): Record<string, string> => ({
    GITHUB_REPOSITORY: github.repository,
    GITHUB_API_URL: github.url,
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_RUN_ID: '4242',
  });

  const common = (): Record<string, string> => ({
    storage: store.location,
    name: 'shop',
    'encryption-identity': key.identity,
    ...store.inputs,
  });

  beforeAll(async () => {
    github = await startFakeGitHub();
    store = await makeStore(kind);
    sourceDb = uniqueName('drillsrc').replace(/-/g, '_');
    sourceUrl = await createDatabase(sharedPostgresUrl(), sourceDb);
    await loadSample(sourceUrl);
    const backup = await backupWithBundle(store, sourceUrl, 'shop', key.recipient);
    expect(backup.code).toBe(0);
    backupId = backup.outputs['backup-id'];
  });

  afterAll(async () => {
    rmSync(tmp, { recursive: true, force: true });
    await github.stop();
    expect(github.contractViolations).toEqual([]);
  });

  it('drills the newest backup with 2 jobs within its targets; the smoke command sees the restored database', async () => {
    const runnerTemp = mkdtempSync(path.join(tmp, 'runner-'));
    const countFile = path.join(tmp, `count-${kind}.txt`);
    const run = await runBundle(
      'restore-drill',
      {
        ...common(),
        jobs: '2',
        'rto-target': '10m',
        'rpo-target': '1h',
        checks: "SELECT id FROM app.customers WHERE email NOT LIKE '%@%'",
        'smoke-command': `psql -X -At -c 'select count(*) from app.customers' > ${countFile} && echo "$PGDATABASE $PGHOST" >> ${countFile} && psql -X -At "$DATABASE_URL" -c 'select count(*) from app.orders' >> ${countFile}`,
      },
      { ...store.env, RUNNER_TEMP: runnerTemp },
    );
    expect(run.stdout).not.toContain('::error::');
    expect(run.code).toBe(0);
    expect(run.outputs.status).toBe('passed');
    expect(run.outputs['backup-id']).toBe(backupId);
    for (const output of [
      'rto-seconds',
      'download-seconds',
      'decrypt-seconds',
      'restore-seconds',
    ]) {
      expect(Number(run.outputs[output])).toBeGreaterThanOrEqual(0);
      expect(run.outputs[output]).not.toBe('');
    }
    expect(run.outputs['smoke-seconds']).not.toBe('');
    expect(Number(run.outputs['rpo-seconds'])).toBeLessThan(3600);
    expect(readFileSync(countFile, 'utf8')).toBe('500\nrestore_drill 127.0.0.1\n3000\n');

    expect(run.summary).toContain('Recovery time (RTO)');
    expect(run.summary).toContain('Backup age (RPO)');
    expect(run.summary).toContain('Recent drills');
    expect(run.summary).toContain(backupId);
    expect(run.summary).toContain('with 2 jobs');

    const records = await listVerifications(store.storage, 'shop', backupId);
    const drill = records.find((r) => r.type === 'drill');
    expect(drill?.status).toBe('passed');
    expect(drill?.rtoSeconds).toBeGreaterThan(0);
    expect(drill?.rtoTargetSeconds).toBe(600);
    expect(drill?.timings?.download).toBeGreaterThanOrEqual(0);

    // The scratch server is gone and no download is left in the runner's temp folder.
    const port = /Started a scratch PostgreSQL \S+ on port (\d+)/.exec(run.stdout)?.[1];
    expect(port).toBeDefined();
    expect(await portAccepts(Number(port))).toBe(false);
    expect(readdirSync(runnerTemp).filter((f) => f.startsWith('restore-drill-'))).toEqual([]);
    const report = JSON.parse(readFileSync(run.outputs['report-path'], 'utf8')) as {
      status: string;
      backupId: string;
      rtoSeconds: number;
    };
    expect(report).toMatchObject({ status: 'passed', backupId });
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(path.dirname(run.outputs['report-path'])).toBe(runnerTemp);
    expectNoSecrets(run, [PASSWORD, key.identity]);
  });

  it('fails when the recovery is slower than rto-target, the backup older than rpo-target, and a check returns rows', async () => {
    const db = uniqueName('drilltarget').replace(/-/g, '_');
    const run = await runBundle(
      'restore-drill',
      {
        ...common(),
        'target-url': databaseUrl(db),
        'rto-target': '1s',
        'rpo-target': '1s',
        'smoke-command': 'sleep 2',
        checks: 'SELECT id, name FROM app.customers WHERE id <= 2',
        'github-token': github.token,
      },
      { ...store.env, ...githubEnv() },
    );
    expect(run.code).toBe(1);
    expect(run.outputs.status).toBe('failed');
    const failures = run.outputs.failures;
    expect(failures).toMatch(/Recovery time \(RTO\): \S+ against a target of 1s/);
    expect(failures).toMatch(/Backup age \(RPO\): \S+ against a target of 1s/);
    expect(failures).toContain('Check: SELECT id, name FROM app.customers WHERE id <= 2');
    expect(failures).toContain('Customer 1');
    expect(failures).not.toContain('Tables and row counts');
    expect(failures).not.toContain('Smoke command');
    expect(Number(run.outputs['rto-seconds'])).toBeGreaterThan(2);
    expect(run.stdout).toMatch(/::error::Restore drill of shop failed/);
    expect(await databaseExists(db)).toBe(false);
    expectNoSecrets(run, [PASSWORD, key.identity, github.token]);
    // The failure opened an issue that says what failed.
    const issue = github.issues.find((i) => i.title === 'Restore drill failed: shop');
    expect(issue?.state).toBe('open');
    expect(issue?.labels).toEqual(['restore-drill']);
    expect(issue?.body).toContain('Backup age (RPO)');
    expect(run.outputs['issue-number']).toBe(String(issue?.number));
  });

  it('fails when the smoke command exits non-zero, with its output in the log', async () => {
    const db = uniqueName('drillsmoke').replace(/-/g, '_');
    const run = await runBundle(
      'restore-drill',
      {
        ...common(),
        'target-url': databaseUrl(db),
        'rto-target': '10m',
        'rpo-target': '1h',
        'smoke-command': 'echo "smoke says $PGDATABASE"; echo to-stderr >&2; exit 3',
        'report-artifact': 'drill-report',
        'github-token': github.token,
      },
      { ...store.env, ...githubEnv() },
    );
    expect(run.code).toBe(1);
    expect(run.outputs.status).toBe('failed');
    expect(run.outputs.failures).toContain('Smoke command: the smoke command exited with code 3');
    expect(run.outputs.failures).not.toContain('RTO');
    expect(run.stdout).toMatch(/::group::Smoke command\n(.*\n)*smoke says .*\n(.*\n)*to-stderr\n/);
    expect(run.stdout).toMatch(
      /::warning::report-artifact is 'drill-report', but ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL are not set/,
    );
    expect(await databaseExists(db)).toBe(false);
    expectNoSecrets(run, [PASSWORD, key.identity, github.token]);
    const issue = github.issues.find((i) => i.title === 'Restore drill failed: shop')!;
    expect(github.comments.some((c) => c.issue_number === issue.number)).toBe(true);

    // A drill that passes again closes the issue.
    const again = await runBundle(
      'restore-drill',
      {
        ...common(),
        'target-url': databaseUrl(`${db}_ok`),
        'github-token': github.token,
      },
      { ...store.env, ...githubEnv() },
    );
    expect(again.code).toBe(0);
    expect(github.issues.find((i) => i.number === issue.number)?.state).toBe('closed');
    expectNoSecrets(again, [PASSWORD, key.identity, github.token]);
  });

  it('passes over a newer backup whose manifest is damaged, restoring the one before, and says so', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const backup = await backupWithBundle(store, sourceUrl, 'cracked', key.recipient);
      expect(backup.code).toBe(0);
      ids.push(backup.outputs['backup-id']);
    }
    const damagedKey = manifestKey('cracked', ids[1]);
    const data = (await store.storage.getBytes(damagedKey))!;
    await store.storage.putBytes(damagedKey, data.subarray(0, 100));

    const db = uniqueName('drillcracked').replace(/-/g, '_');
    const run = await runBundle(
      'restore-drill',
      { ...common(), name: 'cracked', 'target-url': databaseUrl(db) },
      store.env,
    );
    expect(run.stdout).not.toContain('::error::');
    expect(run.code).toBe(0);
    expect(run.outputs['backup-id']).toBe(ids[0]);
    const warning = `Backup ${ids[1]} of 'cracked' is newer than ${ids[0]}, the one used here, but its manifest cannot be read, so it was passed over: The manifest ${store.storage.location(damagedKey)} is not valid JSON`;
    expect(run.stdout).toContain(`::warning::${warning}`);
    expect(run.summary).toContain(warning);
  });

  it('drills a directory-format backup and an unencrypted one compressed by pg_dump', async () => {
    for (const [name, inputs] of [
      ['shopdir', { format: 'directory', 'encryption-recipients': key.recipient }],
      ['shopgz', { compression: 'gzip' }],
    ] as const) {
      const backup = await runBundle(
        'backup',
        { 'database-url': sourceUrl, storage: store.location, name, ...inputs, ...store.inputs },
        store.env,
      );
      expect(backup.code).toBe(0);
      const db = uniqueName(name).replace(/-/g, '_');
      const drill = await runBundle(
        'restore-drill',
        {
          ...common(),
          name,
          jobs: '2',
          'target-url': databaseUrl(db),
          checks: 'SELECT 1 FROM app.orders HAVING count(*) <> 3000',
        },
        store.env,
      );
      expect(drill.stdout).not.toContain('::error::');
      expect(drill.code).toBe(0);
      expect(drill.summary).toContain(
        name === 'shopdir'
          ? 'age → zstd → tar into a directory-format archive'
          : 'nothing to decrypt or decompress',
      );
      expect(drill.summary).toContain('every row count matches the manifest');
    }
  });

  describe('mode restore', () => {
    const drift = async (): Promise<void> => {
      await withClient(sourceUrl, async (c) => {
        await c.query("UPDATE app.customers SET name = 'CHANGED' WHERE id = 1");
        await c.query(
          "INSERT INTO app.customers (email, name) VALUES ('late@example.com', 'Late')",
        );
        await c.query('DELETE FROM app.orders WHERE id <= 100');
        await c.query('DROP TABLE public.documents');
      });
    };
    const restoreInputs = (): Record<string, string> => ({
      ...common(),
      mode: 'restore',
      'target-url': sourceUrl,
      confirm: sourceDb,
    });

    it('refuses without the database name in confirm, and while other sessions are connected; nothing changes', async () => {
      await drift();
      const before = await rowCounts(sourceUrl);
      const wrong = await runBundle(
        'restore-drill',
        { ...restoreInputs(), confirm: 'production' },
        store.env,
      );
      expect(wrong.code).toBe(1);
      expect(wrong.stdout).toContain(
        `input 'confirm' must be the target database's name, '${sourceDb}', got 'production'. Nothing was changed.`,
      );
      const session = new pg.Client({ connectionString: sourceUrl });
      await session.connect();
      try {
        const busy = await runBundle('restore-drill', restoreInputs(), store.env);
        expect(busy.code).toBe(1);
        expect(busy.stdout).toContain('1 other session(s) are connected to it');
        expect(busy.stdout).toContain('terminate-connections: true');
        expectNoSecrets(busy, [PASSWORD, key.identity]);
      } finally {
        await session.end();
      }
      expect(await rowCounts(sourceUrl)).toEqual(before);
      const name = await withClient(sourceUrl, (c) =>
        c.query<{ name: string }>('SELECT name FROM app.customers WHERE id = 1'),
      );
      expect(name.rows[0].name).toBe('CHANGED');
      const kinds = completeBackups(await listCatalog(store.storage, 'shop')).map((m) => m.kind);
      expect(kinds).not.toContain('pre-restore');
      expectNoSecrets(wrong, [PASSWORD, key.identity]);
    });

    it('brings a drifted database back to the backup after a safety backup, which itself restores', async () => {
      const session = new pg.Client({ connectionString: sourceUrl });
      session.on('error', () => undefined);
      await session.connect();
      const run = await runBundle(
        'restore-drill',
        { ...restoreInputs(), 'terminate-connections': 'true', jobs: '1' },
        store.env,
      );
      await session.end().catch(() => undefined);
      expect(run.stdout).not.toContain('::error::');
      expect(run.code).toBe(0);
      expect(run.outputs.status).toBe('passed');
      expect(run.outputs['backup-id']).toBe(backupId);
      expect(run.stdout).toContain('Terminated 1 other session(s)');
      expect(run.summary).toContain('Safety backup');

      const manifests = completeBackups(await listCatalog(store.storage, 'shop'));
      const original = manifests.find((m) => m.id === backupId)!;
      const counts = await rowCounts(sourceUrl);
      for (const t of original.tables) expect(counts[`${t.schema}.${t.name}`]).toBe(t.rows);
      expect(Object.keys(counts).sort()).toEqual(
        original.tables.map((t) => `${t.schema}.${t.name}`).sort(),
      );
      const name = await withClient(sourceUrl, (c) =>
        c.query<{ name: string }>('SELECT name FROM app.customers WHERE id = 1'),
      );
      expect(name.rows[0].name).toBe('Customer 1');

      const safety = manifests.find((m) => m.kind === 'pre-restore');
      expect(safety).toBeDefined();
      expect(safety!.labels['restore-of']).toBe(backupId);
      expect(safety!.encryption?.recipients).toEqual([key.recipient]);
      expect(safety!.tables.find((t) => t.name === 'documents')).toBeUndefined();
      const restoreRecord = (await listVerifications(store.storage, 'shop', backupId)).find(
        (r) => r.type === 'restore',
      );
      expect(restoreRecord?.status).toBe('passed');

      // The safety backup restores, and holds the drifted state.
      const nameFile = path.join(tmp, `safety-${kind}.txt`);
      const drill = await runBundle(
        'restore-drill',
        {
          ...common(),
          'backup-id': safety!.id,
          'smoke-command': `psql -X -At -c 'select name from app.customers where id = 1' > ${nameFile}`,
        },
        store.env,
      );
      expect(drill.code).toBe(0);
      expect(drill.outputs['backup-id']).toBe(safety!.id);
      expect(readFileSync(nameFile, 'utf8').trim()).toBe('CHANGED');
      expectNoSecrets(run, [PASSWORD, key.identity]);
      expectNoSecrets(drill, [PASSWORD, key.identity]);
    });
  });
});
