import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listVerifications } from '../../src/catalog/catalog.js';
import { manifestKey } from '../../src/catalog/keys.js';
import type { Manifest, VerificationRecord } from '../../src/catalog/manifest.js';
import { generateIdentity } from '../../src/crypto/age.js';
import type { VerifyReport } from '../../src/verify/verify.js';
import { runBundle, type BundleRun } from '../support/bundle.js';
import { makeStore, sharedPostgresUrl, uniqueName, type TestStore } from '../support/env.js';
import {
  loadPagila,
  loadSample,
  newDatabase,
  readPagilaTableNames,
  urlOfDatabase,
} from '../support/sample.js';

const PASSWORD = 'source-secret-pw';

let sourceUrl: string;
let pagilaUrl: string;

beforeAll(async () => {
  sourceUrl = await newDatabase('vsrc');
  await loadSample(sourceUrl);
  pagilaUrl = await newDatabase('vpagila');
  await loadPagila(pagilaUrl);
});

/** A database URL on the shared server that does not exist yet (verify creates and drops it). */
function freshTargetUrl(): string {
  return urlOfDatabase(sharedPostgresUrl(), uniqueName('vtarget').replace(/-/g, '_'));
}

function expectNoSecrets(run: BundleRun, ...secrets: string[]): void {
  for (const secret of [PASSWORD, ...secrets]) expect(run.everything).not.toContain(secret);
}

describe.each(['s3', 'local'] as const)('verify bundle against %s storage', (kind) => {
  let store: TestStore;
  let runnerTemp: string;
  const key = generateIdentity();
  const ids: Record<string, string> = {};

  async function backup(name: string, url = sourceUrl, extra: Record<string, string> = {}) {
    const run = await runBundle(
      'backup',
      {
        'database-url': url,
        storage: store.location,
        name,
        'encryption-recipients': key.recipient,
        ...store.inputs,
        ...extra,
      },
      store.env,
    );
    if (run.code !== 0) throw new Error(`backup of ${name} failed:\n${run.stdout}\n${run.stderr}`);
    ids[name] = run.outputs['backup-id'];
    return ids[name];
  }

  function verify(inputs: Record<string, string>, env: Record<string, string> = {}) {
    return runBundle(
      'verify',
      { storage: store.location, ...store.inputs, ...inputs },
      { ...store.env, RUNNER_TEMP: runnerTemp, ...env },
    );
  }

  async function manifestOf(name: string): Promise<Manifest> {
    const data = await store.storage.getBytes(manifestKey(name, ids[name]));
    return JSON.parse(data!.toString()) as Manifest;
  }

  beforeAll(async () => {
    store = await makeStore(kind);
    runnerTemp = mkdtempSync(path.join(os.tmpdir(), 'verify-runner-temp-'));
    // Backups to damage, one per case, and the one kept intact.
    for (const name of ['flip', 'trunc', 'swap', 'counts', 'mangled', 'shop']) await backup(name);
  });

  afterAll(() => rmSync(runnerTemp, { recursive: true, force: true }));

  it('passes an encrypted backup of a rich database, restored into a throwaway server', async () => {
    const run = await verify({
      name: 'shop',
      'encryption-identity': `# the nightly key\n${key.identity}\n`,
      checks: "SELECT id FROM app.customers WHERE email NOT LIKE '%@%';\nSELECT 1 WHERE false",
      'max-age': '1h',
      'report-artifact': 'verify-report',
    });
    expect(run.outputs.status).toBe('passed');
    expect(run.code).toBe(0);
    expect(run.outputs['backup-id']).toBe(ids.shop);
    expect(run.outputs.failures).toBe('0');
    expect(run.outputs['issue-number']).toBe('');
    expect(run.stdout).toMatch(/Started a scratch PostgreSQL 15\.\d+ on port \d+/);

    const report = JSON.parse(readFileSync(run.outputs['report-path'], 'utf8')) as VerifyReport;
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['Manifest and checksum', 'passed'],
      ['Decryption and decompression', 'passed'],
      ['Archive readable (pg_restore --list)', 'passed'],
      ['Preflight (target, extensions, roles)', 'passed'],
      ['Restore', 'passed'],
      ['Tables and row counts', 'passed'],
      ['Constraints', 'passed'],
      ['Sequences', 'passed'],
      ['Row security and policies', 'passed'],
      ['Extensions', 'passed'],
      ['Large objects', 'passed'],
      ['Database settings', 'passed'],
      [expect.stringMatching(/^Check: SELECT id FROM app\.customers/), 'passed'],
      ['Check: SELECT 1 WHERE false', 'passed'],
      ['Freshness (max-age)', 'passed'],
    ]);
    expect(report.target?.scratch).toBe(true);
    expect(report.target?.serverVersion).toMatch(/^15\./);
    expect(report.tables.length).toBeGreaterThanOrEqual(5);
    expect(report.tables.every((t) => t.status === 'same')).toBe(true);
    expect(report.checks.find((c) => c.name === 'Constraints')?.detail).toMatch(
      /^all \d+ constraints of the source restored as they were/,
    );
    expect(report.freshness).toMatchObject({ newestId: ids.shop, isVerifiedBackup: true });
    const markdownPath = path.join(path.dirname(run.outputs['report-path']), 'verify-report.md');
    expect(readFileSync(markdownPath, 'utf8')).toContain('Backup verification passed: shop');

    // The job summary: every check, the table counts side by side, the backup and the target.
    expect(run.summary).toContain('## ✅ Backup verification passed: shop');
    expect(run.summary).toContain(`\`${ids.shop}\``);
    expect(run.summary).toMatch(/\| Check \| Result \| Detail \| Seconds \|/);
    expect(run.summary).toMatch(/\| Table \| Manifest \| Restored \| Status \|/);
    expect(run.summary).toMatch(/\| app\.customers \| 500 \| 500 \| ✅ same \|/);
    expect(run.summary).toMatch(/\| app\.orders_2026 \| \d+ \| \d+ \| ✅ same \|/);
    expect(run.summary).toMatch(
      /\| \*\*Restored into\*\* \| scratch PostgreSQL 15\.\d+ \(127\.0\.0\.1:\d+\/restore_check\) \(throwaway, removed afterwards\) \|/,
    );

    // Outside a runner the artifact cannot be uploaded: a warning, not a failure.
    expect(run.stdout).toMatch(
      /::warning::report-artifact is 'verify-report', but ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL are not set/,
    );

    const records = await listVerifications(store.storage, 'shop', ids.shop);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ type: 'verify', status: 'passed', backupId: ids.shop });
    expect(records[0].checks.map((c) => c.name)).not.toContain('Freshness (max-age)');
    expectNoSecrets(run, key.identity);
  });

  it('checks the object alone, without any PostgreSQL server, when restore is false', async () => {
    const run = await verify(
      {
        name: 'shop',
        'encryption-identity': key.identity,
        restore: 'false',
        'max-age': '1h',
        'report-artifact': 'object-report',
      },
      {
        // No server can start (no usable temp folder for a cluster) and no connection can be
        // made (libpq defaults point nowhere); pg_restore --list needs neither.
        TMPDIR: '/nonexistent/tmp',
        PGHOST: '/nonexistent/socket',
        PGPORT: '1',
        // An artifact service that refuses connections: the upload fails, the step does not.
        ACTIONS_RUNTIME_TOKEN: 'x.eyJzY3AiOiJBY3Rpb25zLlJlc3VsdHM6YTpiIn0.y',
        ACTIONS_RESULTS_URL: 'http://127.0.0.1:9/',
      },
    );
    expect(run.outputs.status).toBe('passed');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /::warning::Could not upload the report as artifact 'object-report': .*ECONNREFUSED/,
    );
    expect(run.stdout).not.toMatch(/scratch|Using PostgreSQL server|Created database/i);
    const report = JSON.parse(readFileSync(run.outputs['report-path'], 'utf8')) as VerifyReport;
    expect(report.target).toBeUndefined();
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['Manifest and checksum', 'passed'],
      ['Decryption and decompression', 'passed'],
      ['Archive readable (pg_restore --list)', 'passed'],
      ['Preflight (target, extensions, roles)', 'skipped'],
      ['Restore', 'skipped'],
      ['Tables and row counts', 'skipped'],
      ['Constraints', 'skipped'],
      ['Sequences', 'skipped'],
      ['Row security and policies', 'skipped'],
      ['Extensions', 'skipped'],
      ['Large objects', 'skipped'],
      ['Database settings', 'skipped'],
      ['SQL checks', 'skipped'],
      ['Freshness (max-age)', 'passed'],
    ]);
    expect(report.checks[3].detail).toBe('restore is false: only the stored object was checked');
    expect(run.summary).toContain('nothing: restore is false (object checks only)');

    // The control: in the same environment a restore needs a server, and this one is not there.
    const control = await verify(
      {
        name: 'shop',
        'encryption-identity': key.identity,
        'max-age': '1h',
        'target-url': 'postgresql://nobody@127.0.0.1:1/restore_check',
      },
      { TMPDIR: '/nonexistent/tmp', PGHOST: '/nonexistent/socket', PGPORT: '1' },
    );
    expect(control.code).toBe(1);
    expect(control.stdout).toMatch(
      /::error::.*Preflight \(target, extensions, roles\): .*(ECONNREFUSED|127\.0\.0\.1:1)/,
    );
    // Not the backup's fault: no failed record for prune to see.
    const controlReport = JSON.parse(
      readFileSync(control.outputs['report-path'], 'utf8'),
    ) as VerifyReport;
    expect(controlReport.recordKey).toBeUndefined();
    expect(control.stdout).toContain('No verification record was written');
  });

  it('decrypts a passphrase backup without showing the passphrase', async () => {
    const passphrase = 'verify-passphrase-that-must-not-leak';
    const made = await runBundle(
      'backup',
      {
        'database-url': sourceUrl,
        storage: store.location,
        name: 'secret',
        'encryption-passphrase': passphrase,
        ...store.inputs,
      },
      store.env,
    );
    expect(made.code).toBe(0);
    const run = await verify({
      name: 'secret',
      'encryption-passphrase': passphrase,
      restore: 'false',
    });
    expect(run.outputs.status).toBe('passed');
    expect(run.code).toBe(0);
    expect(run.summary).toContain('decrypted with the given age passphrase');
    expectNoSecrets(run, passphrase);
  });

  it('fails on one flipped byte in the object, naming the checksum', async () => {
    const entry = (await manifestOf('flip')).objects[0];
    const data = (await store.storage.getBytes(entry.key))!;
    data[Math.floor(data.length / 2)] ^= 0x01;
    await store.storage.putBytes(entry.key, data);
    const run = await verify({ name: 'flip', 'encryption-identity': key.identity });
    expect(run.code).toBe(1);
    expect(run.outputs.status).toBe('failed');
    expect(run.outputs.failures).toBe('1');
    expect(run.stdout).toMatch(
      /::error::Backup verification of flip \(backup \S+\) failed: Manifest and checksum: .*has SHA-256 [0-9a-f]{64} but the manifest says [0-9a-f]{64}: the object was changed, corrupted or replaced/,
    );
    expect(run.summary).toMatch(
      /Decryption and decompression \| ➖ skipped \| the stored object does not match its manifest/,
    );
    const records = await listVerifications(store.storage, 'flip');
    expect(records.map((r) => r.status)).toEqual(['failed']);
  });

  it('fails on a truncated object', async () => {
    const entry = (await manifestOf('trunc')).objects[0];
    const data = (await store.storage.getBytes(entry.key))!;
    await store.storage.putBytes(entry.key, data.subarray(0, data.length - 100));
    const run = await verify({ name: 'trunc', 'encryption-identity': key.identity });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      new RegExp(
        `::error::.*Manifest and checksum: .*is ${data.length - 100} bytes but the manifest says ${data.length}: the object is truncated`,
      ),
    );
  });

  it("fails on an object replaced by another backup's object", async () => {
    const entry = (await manifestOf('swap')).objects[0];
    const other = (await manifestOf('shop')).objects[0];
    await store.storage.putBytes(entry.key, (await store.storage.getBytes(other.key))!);
    const run = await verify({ name: 'swap', 'encryption-identity': key.identity });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/::error::.*Manifest and checksum: .*replaced/);
  });

  it('fails when the manifest row counts were edited, showing both counts', async () => {
    const manifest = await manifestOf('counts');
    const customers = manifest.tables.find((t) => t.schema === 'app' && t.name === 'customers')!;
    customers.rows = 499;
    await store.storage.putBytes(manifestKey('counts', ids.counts), JSON.stringify(manifest));
    const run = await verify({
      name: 'counts',
      'encryption-identity': key.identity,
      'target-url': freshTargetUrl(),
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /::error::.*Tables and row counts: row counts differ: app\.customers 499 in the manifest, 500 restored/,
    );
    expect(run.summary).toMatch(/\| app\.customers \| 499 \| 500 \| ❌ differs \|/);
    // Differences come first in the table.
    expect(run.summary.indexOf('app.customers | 499')).toBeLessThan(
      run.summary.indexOf('| app.orders_2025 |'),
    );
    expectNoSecrets(run, key.identity);
  });

  it('fails on a damaged manifest, naming it, even when a newer backup is intact', async () => {
    const damagedKey = manifestKey('mangled', ids.mangled);
    const data = (await store.storage.getBytes(damagedKey))!;
    await store.storage.putBytes(damagedKey, data.subarray(0, data.length / 2));
    await backup('mangled');
    const run = await verify({ name: 'mangled', 'encryption-identity': key.identity });
    expect(run.code).toBe(1);
    expect(run.outputs.status).toBe('failed');
    expect(run.stdout).toContain(
      `Manifest and checksum: The manifest ${store.storage.location(damagedKey)} is not valid JSON`,
    );
  });

  it('fails with a wrong age key, naming the recipients it does not match', async () => {
    const run = await verify({
      name: 'shop',
      'encryption-identity': generateIdentity().identity,
      restore: 'false',
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      new RegExp(
        `::error::.*Decryption and decompression: Decryption failed: the age identity given does not match any recipient of this backup\\. The backup is encrypted to recipients ${key.recipient}`,
      ),
    );
    const report = JSON.parse(readFileSync(run.outputs['report-path'], 'utf8')) as VerifyReport;
    expect(report.checks[0].status).toBe('passed');
  });

  it('fails the freshness gate when the newest backup is older than max-age', async () => {
    const finished = new Date((await manifestOf('shop')).finishedAt).getTime();
    const wait = finished + 1100 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const run = await verify({
      name: 'shop',
      'backup-id': ids.shop,
      'encryption-identity': key.identity,
      restore: 'false',
      'max-age': '1s',
    });
    expect(run.code).toBe(1);
    expect(run.outputs.failures).toBe('1');
    expect(run.stdout).toMatch(
      new RegExp(
        `::error::.*Freshness \\(max-age\\): the newest complete backup, ${ids.shop} \\(the backup verified here\\), finished (?:\\d+m )?[\\d.]+s ago \\(.*\\), older than max-age 1s`,
      ),
    );
    // The backup itself passed: its record says so; freshness is about the catalog.
    const report = JSON.parse(readFileSync(run.outputs['report-path'], 'utf8')) as VerifyReport;
    const recorded = JSON.parse(
      (await store.storage.getBytes(report.recordKey!))!.toString(),
    ) as VerificationRecord;
    expect(recorded).toMatchObject({ backupId: ids.shop, type: 'verify', status: 'passed' });
  });

  it('fails on a user check that returns rows, and shows them', async () => {
    const run = await verify({
      name: 'shop',
      'encryption-identity': key.identity,
      'target-url': freshTargetUrl(),
      checks: 'SELECT id, email FROM app.customers WHERE id <= 2 ORDER BY id',
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /::error::.*Check: SELECT id, email FROM app\.customers WHERE id <= 2 ORDER BY id: 2 failing row\(s\)/,
    );
    expect(run.summary).toContain('failing rows</summary>');
    expect(run.summary).toMatch(/\| id \| email \|/);
    expect(run.summary).toMatch(/\| 1 \| user1@example\.com \|/);
    expectNoSecrets(run, key.identity);
  });

  it('refuses a non-empty target database, without showing its password', async () => {
    const run = await verify({
      name: 'shop',
      'encryption-identity': key.identity,
      'target-url': sourceUrl,
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /::error::.*Preflight \(target, extensions, roles\): The target database .* is not empty/,
    );
    expectNoSecrets(run, key.identity);
  });

  it('passes the Pagila sample database', async () => {
    const id = await backup('pagila', pagilaUrl);
    const run = await verify({ name: 'pagila', 'encryption-identity': key.identity });
    expect(run.outputs.status).toBe('passed');
    expect(run.code).toBe(0);
    const report = JSON.parse(readFileSync(run.outputs['report-path'], 'utf8')) as VerifyReport;
    expect(report.backup?.id).toBe(id);
    const restored = new Set(report.tables.map((t) => t.table));
    for (const table of readPagilaTableNames()) {
      if (table !== 'payment') expect(restored).toContain(`public.${table}`);
    }
    expect(report.tables.find((t) => t.table === 'public.rental')?.actual).toBeGreaterThan(10000);
    expect(existsSync(run.outputs['report-path'])).toBe(true);
  });
});
