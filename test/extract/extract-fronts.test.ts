import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { exportsPrefix } from '../../src/catalog/keys.js';
import { main } from '../../src/cli/main.js';
import { runProcess } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle, type BundleRun } from '../support/bundle.js';
import {
  backupWithBundle,
  makeStore,
  sharedPostgresUrl,
  type TestStore,
  uniqueName,
} from '../support/env.js';
import { createDatabase, loadSample, withClient } from '../support/sample.js';

/** The shared test server's password: it is in every connection URL given below. */
const PASSWORD = 'source-secret-pw';
const key = generateIdentity();
let store: TestStore;
let database: string;
let liveUrl: string;
let backupId: string;
let tmp: string;

function expectNoSecrets(text: string): void {
  expect(text).not.toContain(PASSWORD);
  expect(text).not.toContain(key.identity);
}

/** Runs the CLI in this process, without a terminal on stdin. */
async function cli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = new PassThrough().on('data', (c: Buffer) => (stdout += c.toString()));
  const err = new PassThrough().on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await main(args, {
    stdout: out,
    stderr: err,
    stdin: new PassThrough(),
    env,
    cwd: tmp,
  });
  return { code, stdout, stderr };
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'extract-fronts-'));
  store = await makeStore('local');
  database = uniqueName('xshop').replace(/-/g, '_');
  liveUrl = await createDatabase(sharedPostgresUrl(), database);
  await loadSample(liveUrl);
  const backup = await backupWithBundle(store, liveUrl, 'shop', key.recipient);
  expect(backup.code).toBe(0);
  backupId = backup.outputs['backup-id'];
  // After the backup: 4 orders deleted, 2 customers renamed.
  await withClient(liveUrl, async (c) => {
    await c.query('DELETE FROM app.orders WHERE id <= 4');
    await c.query(`UPDATE app.customers SET name = 'Renamed' WHERE id IN (1, 2)`);
  });
}, 180_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('restore-drill bundle, modes extract and export', () => {
  const inputs = (): Record<string, string> => ({
    storage: store.location,
    name: 'shop',
    'encryption-identity': key.identity,
    'target-url': liveUrl,
    tables: 'app.orders, app.customers',
    ...store.inputs,
  });

  it('refuses to extract without confirm, and says so without a secret', async () => {
    const run = await runBundle('restore-drill', { ...inputs(), mode: 'extract' });
    expect(run.code).not.toBe(0);
    expect(run.stdout).toContain(`confirm must be the target database's name, '${database}'`);
    expectNoSecrets(run.everything);
  }, 120_000);

  it('masks scratch-url and its password, also when it cannot connect', async () => {
    const scratchPassword = 'scratch-secret-pw';
    const run = await runBundle('restore-drill', {
      ...inputs(),
      mode: 'extract',
      confirm: database,
      'scratch-url': `postgresql://nobody:${scratchPassword}@127.0.0.1:1/extract_scratch`,
    });
    expect(run.code).not.toBe(0);
    expect(run.stdout).toContain(`::add-mask::${scratchPassword}`);
    expect(run.everything).not.toContain(scratchPassword);
    expect(run.everything).toMatch(/127\.0\.0\.1:1/);
    expectNoSecrets(run.everything);
  }, 120_000);

  it('extracts the tables beside the live ones and sums up what changed', async () => {
    const run: BundleRun = await runBundle('restore-drill', {
      ...inputs(),
      mode: 'extract',
      confirm: database,
      'extract-schema': 'recovered_orders',
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.outputs).toMatchObject({
      status: 'passed',
      'backup-id': backupId,
      'extract-schema': 'recovered_orders',
    });
    expect(run.summary).toContain(
      'Extract from `shop`: ✅ 2 table(s) in schema `recovered_orders`',
    );
    expect(run.summary).toMatch(
      /`app\.orders` → `recovered_orders\.orders` \(2 partitions\) \| 3,000 \| 4 \| 0 \| 0 \| compare-app\.orders\.csv/,
    );
    expect(run.summary).toMatch(
      /`app\.customers` → `recovered_orders\.customers` \| 500 \| 0 \| 2 \| 0/,
    );
    expect(run.summary).toContain('INSERT INTO app.orders');
    expectNoSecrets(run.everything);
    await withClient(liveUrl, async (c) => {
      const r = await c.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM recovered_orders.orders',
      );
      expect(r.rows[0].n).toBe('3000');
    });
  }, 180_000);

  it('exports a table as JSON Lines next to the backup', async () => {
    const run = await runBundle('restore-drill', {
      ...inputs(),
      mode: 'export',
      tables: 'app.customers',
      'export-format': 'jsonl',
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const prefix = exportsPrefix('shop', backupId);
    expect(run.outputs['export-manifest']).toBe(store.storage.location(`${prefix}manifest.json`));
    expect(run.summary).toContain('`app.customers` | 500 |');
    expect(await store.storage.head(`${prefix}app.customers.jsonl.zst.age`)).toBeDefined();
    expectNoSecrets(run.everything);
  }, 180_000);
});

describe('pg-backup extract and export', () => {
  const env = (): NodeJS.ProcessEnv => ({
    PGBACKUP_STORAGE: store.location,
    AGE_IDENTITY: key.identity,
    DATABASE_URL: liveUrl,
  });

  it('refuses without --confirm when there is no terminal to ask on', async () => {
    const run = await cli(['extract', '--tables', 'app.orders'], env());
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`pass --confirm ${database}`);
    expectNoSecrets(run.stdout + run.stderr);
  });

  it('extracts into DATABASE_URL, with the comparison CSV in --output', async () => {
    const output = path.join(tmp, 'report');
    const run = await cli(
      ['extract', '--tables', 'app.orders', '--confirm', database, '--output', output],
      env(),
    );
    expect(run.stderr).not.toContain('error:');
    expect(run.code).toBe(0);
    const schema = `recovered_${backupId.toLowerCase().replace(/[^a-z0-9]/g, '_')}`;
    expect(run.stdout).toContain(
      `app.orders → ${schema}.orders (2 partitions): 3,000 rows; missing from live 4, changed 0, not in the backup 0`,
    );
    const csv = readFileSync(path.join(output, 'compare-app.orders.csv'), 'utf8').split('\n');
    expect(csv[0]).toBe('change,id,ordered_on,backup_row,live_row');
    expect(csv.filter((l) => l.startsWith('missing from live,'))).toHaveLength(4);
    expectNoSecrets(run.stdout + run.stderr);
  }, 180_000);

  it('exports into a local folder that age and zstd read back', async () => {
    const output = path.join(tmp, 'exported');
    const run = await cli(
      ['export', '--tables', 'app.customers', '--output', output, '--export-format', 'csv'],
      env(),
    );
    expect(run.stderr).not.toContain('error:');
    expect(run.code).toBe(0);
    expect(readdirSync(output).sort()).toEqual(['app.customers.csv.zst.age', 'manifest.json']);
    const manifest = JSON.parse(readFileSync(path.join(output, 'manifest.json'), 'utf8')) as {
      tables: { rows: number }[];
    };
    expect(manifest.tables[0].rows).toBe(500);
    const identity = path.join(tmp, 'identity');
    writeFileSync(identity, `${key.identity}\n`, { mode: 0o600 });
    const file = path.join(output, 'app.customers.csv.zst.age');
    const plain = await runProcess('bash', [
      '-c',
      `age -d -i "${identity}" "${file}" | zstd -d -q -c`,
    ]);
    expect(plain.code).toBe(0);
    const lines = plain.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('id,email,name,profile,created_at');
    expect(lines).toHaveLength(501);
    expectNoSecrets(run.stdout + run.stderr);
  }, 180_000);
});
