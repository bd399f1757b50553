import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runBackup, type BackupOptions } from '../../src/backup/backup.js';
import { runDrill } from '../../src/drill/drill.js';
import { listVerifications } from '../../src/catalog/catalog.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger, systemClock, type Clock } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import { type ClientTools } from '../../src/postgres/tools.js';
import type { CheckResult, TableComparison } from '../../src/restore/checks.js';
import type { Storage } from '../../src/storage/storage.js';
import { failureIssueBody, failureMessage, verifyMarkdown } from '../../src/verify/report.js';
import { resolveName } from '../../src/catalog/catalog.js';
import {
  runVerify,
  type VerifyDeps,
  type VerifyOptions,
  type VerifyReport,
} from '../../src/verify/verify.js';
import { machineClientTools, machineServer } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  type TestStore,
} from '../support/env.js';
import { loadSample, newDatabase, withClient } from '../support/sample.js';

const zstdPath = findOnPath('zstd');
let tools: ClientTools;
let sourceUrl: string;

beforeAll(async () => {
  tools = await machineClientTools();
  sourceUrl = await newDatabase('vcore');
  await loadSample(sourceUrl);
});

async function backup(
  storage: Storage,
  name: string,
  overrides: Partial<BackupOptions> = {},
): Promise<Manifest> {
  const result = await runBackup(
    testBackupOptions(sourceUrl, name, { jobs: 2, ...overrides }),
    testBackupDeps(storage, tools, { zstdPath }),
  );
  return result.manifest;
}

function deps(
  storage: Storage,
  logger = new MemoryLogger(),
  clock: Clock = systemClock,
): VerifyDeps {
  return {
    storage,
    logger,
    clock,
    env: process.env,
    zstdPath,
    progressIntervalMs: 0,
    resolveTools: async ({ major }) => {
      expect(major).toBe(15);
      return tools;
    },
    findServer: async (minMajor) => {
      expect(minMajor).toBe(15);
      return machineServer();
    },
  };
}

function options(overrides: Partial<VerifyOptions> = {}): VerifyOptions {
  return { restore: true, checks: [], ...overrides };
}

function statuses(report: VerifyReport): [string, string][] {
  return report.checks.map((c) => [c.name, c.status]);
}

describe('runVerify', () => {
  let store: TestStore;

  beforeAll(async () => {
    store = await makeStore('local');
  });

  it('resolves the catalog name: the only one in the store, else a list to choose from', async () => {
    const empty = await makeStore('local');
    await expect(resolveName(empty.storage, undefined)).rejects.toThrow(
      /No backups in local folder .*set name/,
    );
    await expect(resolveName(empty.storage, 'a/b')).rejects.toThrow(ConfigurationError);
    await backup(empty.storage, 'alpha', { compression: { method: 'none' } });
    expect(await resolveName(empty.storage, undefined)).toBe('alpha');
    await backup(empty.storage, 'beta', { compression: { method: 'none' } });
    await expect(resolveName(empty.storage, undefined)).rejects.toThrow(
      /several databases \(alpha, beta\): set the name input/,
    );
  });

  it('restores a directory-format, gzip, unencrypted backup with its roles', async () => {
    const manifest = await backup(store.storage, 'dir', {
      format: 'directory',
      compression: { method: 'gzip' },
      globals: true,
    });
    const logger = new MemoryLogger();
    const report = await runVerify(options({ name: 'dir' }), deps(store.storage, logger));
    // The failures first: their details say why.
    expect(report.failures).toEqual([]);
    expect(statuses(report)).toEqual([
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
      ['SQL checks', 'skipped'],
    ]);
    expect(report.status).toBe('passed');
    expect(report.backup?.id).toBe(manifest.id);
    expect(report.checks[1].detail).toMatch(/^not encrypted; compression: gzip inside the archive/);
    expect(report.checks[3].detail).toMatch(
      /; roles from globals applied first; owners and grants kept$/,
    );
    expect(report.checks[4].detail).toMatch(/^restored into /);
    expect(report.target?.scratch).toBe(true);
    expect(logger.lines.some((l) => l.startsWith('group: Restore'))).toBe(true);
    const records = await listVerifications(store.storage, 'dir', manifest.id);
    expect(records.map((r) => [r.type, r.status])).toEqual([['verify', 'passed']]);
    expect(report.recordKey).toMatch(
      /^dir\/verifications\/\S+\/\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}\.json$/,
    );
  });

  it('drills the same backup through the same preflight and restore steps', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vcore-drill-'));
    try {
      const logger = new MemoryLogger();
      const result = await runDrill(
        {
          name: 'dir',
          jobs: 2,
          checks: [],
          postgresVersion: 'auto',
          git: {},
          rtoTargetSeconds: 1800,
        },
        testDrillDeps(store.storage, tools, dir, { logger }),
      );
      expect(result.error).toBeUndefined();
      expect(result.status).toBe('passed');
      // The globals' roles are given before the restore, as verify gives them.
      expect(logger.lines).toContainEqual(
        expect.stringMatching(
          /^Preflight: the archive's 0 extension\(s\) can be installed on .*; 1 role\(s\) named; roles from globals applied first; owners and grants kept$/,
        ),
      );
      const restored = result.phases.find((p) => p.name === 'restore');
      expect(restored?.detail).toMatch(/--exit-on-error with 2 jobs, then ANALYZE/);
      expect(result.checks.map((c) => c.status)).not.toContain('failed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('decrypts a passphrase backup, and reports a missing key as a setup problem', async () => {
    const passphrase = 'correct horse battery staple';
    const manifest = await backup(store.storage, 'pass', {
      encryption: { recipients: [], passphrase },
    });
    const ok = await runVerify(
      options({ name: 'pass', restore: false, decryption: { identities: [], passphrase } }),
      deps(store.storage),
    );
    expect(ok.status).toBe('passed');
    expect(ok.checks[1].detail).toMatch(
      /^decrypted with the given age passphrase; decompressed zstd/,
    );

    const noKey = await runVerify(options({ name: 'pass', restore: false }), deps(store.storage));
    expect(statuses(noKey).slice(0, 3)).toEqual([
      ['Manifest and checksum', 'passed'],
      ['Decryption and decompression', 'failed'],
      ['Archive readable (pg_restore --list)', 'skipped'],
    ]);
    expect(noKey.failures).toEqual([
      expect.stringMatching(
        /^Decryption and decompression: Backup \S+ is encrypted with age \(a passphrase\), and no key was given: set input 'encryption-identity'/,
      ),
    ]);
    // A missing key says nothing about the backup: no failed record for prune to see.
    const records = await listVerifications(store.storage, 'pass', manifest.id);
    expect(records.map((r) => r.status)).toEqual(['passed']);
    expect(noKey.recordKey).toBeUndefined();
  });

  it('fails every check but freshness when there is no backup of the name', async () => {
    const report = await runVerify(
      options({ name: 'nothing-here', maxAgeSeconds: 3600 }),
      deps(store.storage),
    );
    expect(report.status).toBe('failed');
    expect(report.checks[0]).toMatchObject({ name: 'Manifest and checksum', status: 'failed' });
    expect(report.checks[0].detail).toMatch(/No complete backup of 'nothing-here'/);
    expect(report.checks.slice(1, -1).every((c) => c.status === 'skipped')).toBe(true);
    expect(report.checks.slice(1, -1).map((c) => c.detail)).toContain(
      'there is no backup manifest to check against',
    );
    expect(report.checks.at(-1)).toMatchObject({ name: 'Freshness (max-age)', status: 'failed' });
    expect(report.backup).toBeUndefined();
  });

  it('judges freshness by the newest backup, saying when it is not the one verified', async () => {
    const older = await backup(store.storage, 'fresh', { compression: { method: 'none' } });
    const newer = await backup(store.storage, 'fresh', { compression: { method: 'none' } });
    const later: Clock = { now: () => new Date(new Date(newer.finishedAt).getTime() + 7200_000) };
    const report = await runVerify(
      options({ name: 'fresh', backupId: older.id, restore: false, maxAgeSeconds: 3 * 3600 }),
      deps(store.storage, new MemoryLogger(), later),
    );
    expect(report.status).toBe('passed');
    expect(report.freshness).toMatchObject({ newestId: newer.id, isVerifiedBackup: false });
    expect(report.checks.at(-1)?.detail).toMatch(
      new RegExp(
        `^the newest complete backup, ${newer.id} \\(not the backup verified here, ${older.id}\\), finished 2h 00m ago, within max-age 3h 00m`,
      ),
    );
    const stale = await runVerify(
      options({ name: 'fresh', restore: false, maxAgeSeconds: 3600 }),
      deps(store.storage, new MemoryLogger(), later),
    );
    expect(stale.failures).toEqual([
      expect.stringMatching(/^Freshness \(max-age\): .* older than max-age 1h 00m/),
    ]);
  });

  it('skips the checks after a restore that fails, with pg_restore saying why', async () => {
    await backup(store.storage, 'refused', { compression: { method: 'none' } });
    const url = await newDatabase('refuse');
    // A real fault the restore cannot get past: the target rejects every DDL command.
    await withClient(url, async (c) => {
      await c.query(`CREATE FUNCTION no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'DDL is frozen on this server'; END $$`);
      await c.query(
        'CREATE EVENT TRIGGER ddl_frozen ON ddl_command_start EXECUTE FUNCTION no_ddl()',
      );
    });
    const report = await runVerify(
      options({ name: 'refused', targetUrl: url, checks: [{ name: 'x', sql: 'SELECT 1' }] }),
      deps(store.storage),
    );
    expect(statuses(report).slice(3)).toEqual([
      ['Preflight (target, extensions, roles)', 'passed'],
      ['Restore', 'failed'],
      ['Tables and row counts', 'skipped'],
      ['Constraints', 'skipped'],
      ['Sequences', 'skipped'],
      ['Row security and policies', 'skipped'],
      ['Extensions', 'skipped'],
      ['Large objects', 'skipped'],
      ['Database settings', 'skipped'],
      ['SQL checks', 'skipped'],
    ]);
    expect(report.checks[3].detail).toMatch(/1 role\(s\) named, all present/);
    expect(report.checks[4].detail).toMatch(
      /pg_restore exited with code 1: .*DDL is frozen on this server/s,
    );
    expect(report.checks[5].detail).toBe('pg_restore failed');
    expect(report.failures).toHaveLength(1);
  });
});

describe('verify report', () => {
  const check = (name: string, status: CheckResult['status'], detail = 'ok'): CheckResult => ({
    name,
    status,
    detail,
    seconds: 1.25,
  });

  function report(tables: TableComparison[], checks: CheckResult[]): VerifyReport {
    return {
      status: checks.some((c) => c.status === 'failed') ? 'failed' : 'passed',
      name: 'prod',
      storage: 's3://bucket/prefix',
      backup: {
        id: '20261121T051500Z-3f9a1c',
        kind: 'scheduled',
        finishedAt: '2026-11-21T05:20:00.000Z',
        ageSeconds: 3 * 3600,
        bytes: 5 * 1024 * 1024,
        totalBytes: 5 * 1024 * 1024,
        format: 'custom',
        compression: 'zstd level 3',
        encryption: 'age (1 recipient)',
        sourceVersion: '16.4',
        pgDumpVersion: '16.4',
        objectLocation: 's3://bucket/prefix/prod/backups/x/dump.pgc.zst.age',
        manifestLocation: 's3://bucket/prefix/prod/backups/x/manifest.json',
      },
      restore: true,
      target: { description: 'scratch PostgreSQL 16.4', serverVersion: '16.4', scratch: true },
      checks,
      tables,
      failures: checks.filter((c) => c.status === 'failed').map((c) => `${c.name}: ${c.detail}`),
      startedAt: '2026-11-21T08:20:00.000Z',
      finishedAt: '2026-11-21T08:21:00.000Z',
      durationSeconds: 60,
      warnings: [],
    };
  }

  it('shows differing tables first and caps the rest', () => {
    const tables: TableComparison[] = Array.from({ length: 250 }, (_, i) => ({
      table: `public.t${String(i).padStart(3, '0')}`,
      expected: i,
      actual: i,
      status: 'same' as const,
    }));
    tables[240] = { table: 'public.t240', expected: 240, actual: 7, status: 'differs' };
    const md = verifyMarkdown(report(tables, [check('Tables and row counts', 'failed', 'x | y')]));
    expect(md).toContain('## ❌ Backup verification failed: prod');
    expect(md).toContain('### Tables (250, 1 with a problem)');
    const rows = md.split('\n').filter((l) => l.startsWith('| public.t'));
    expect(rows[0]).toBe('| public.t240 | 240 | 7 | ❌ differs |');
    expect(rows).toHaveLength(200);
    expect(md).toContain('…and 50 more tables whose row counts match.');
    expect(md).toContain('| Tables and row counts | ❌ failed | x \\| y | 1.3 |');
    expect(md).toMatch(/\| \*\*Finished\*\* \| 2026-11-21T05:20:00\.000Z \(3h 00m ago\) \|/);
  });

  it('writes an issue body and a step message that name the failed checks', () => {
    const r = report(
      [],
      [
        check('Manifest and checksum', 'passed'),
        { ...check('Check: orphans', 'failed', '1 failing row(s): [{"id":7}]'), rows: [{ id: 7 }] },
      ],
    );
    const body = failureIssueBody(r);
    expect(body).toContain('The backup verification of `prod` failed.');
    expect(body).toContain(
      'Backup `20261121T051500Z-3f9a1c` of `prod`, finished 2026-11-21T05:20:00.000Z (3h 00m before this verification)',
    );
    expect(body).toMatch(
      /### Failed checks\n\n\| Check \| Detail \|\n\| --- \| --- \|\n\| Check: orphans \|/,
    );
    expect(body).toContain('<details><summary>Check: orphans: failing rows</summary>');
    expect(failureMessage(r)).toBe(
      'Backup verification of prod (backup 20261121T051500Z-3f9a1c) failed: Check: orphans: 1 failing row(s): [{"id":7}]',
    );
  });
});
