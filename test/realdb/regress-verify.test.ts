import { runBackup } from '../../src/backup/backup.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { runDrill } from '../../src/drill/drill.js';
import { runVerify } from '../../src/verify/verify.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  testVerifyDeps,
  type TestStore,
} from '../support/env.js';
import {
  startRegressionSource,
  tableFingerprints,
  type RegressionSource,
} from '../support/regress.js';
import { newDatabase } from '../support/sample.js';
import { runPgRestore, listArchive } from '../../src/restore/pg-restore.js';
import { fetchArchive } from '../../src/restore/fetch.js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConnectionString } from '../../src/postgres/connection.js';

// PostgreSQL's own regression database (the parallel schedule, as pg_upgrade's test round-trips
// it): a database nobody here designed, with domains holding NOT VALID constraints, identity
// columns behind their rows, transforms, foreign-data wrappers, access methods, large objects,
// publications and an aclitem column naming its owner.

const zstdPath = findOnPath('zstd');
let source: RegressionSource;
let tools: ClientTools;
let store: TestStore;
let manifest: Manifest;

beforeAll(async () => {
  source = await startRegressionSource();
  tools = await machineClientTools();
  store = await makeStore('local');
  const result = await runBackup(
    testBackupOptions(source.url, 'regression'),
    testBackupDeps(store.storage, tools, { zstdPath }),
  );
  manifest = result.manifest;
}, 1_200_000);

afterAll(async () => {
  await source?.stop();
});

describe("PostgreSQL's regression database", () => {
  it('records the source state the checks compare against', () => {
    const state = manifest.sourceState!;
    expect(manifest.schemaVersion).toBe(2);
    expect(manifest.tables.length).toBeGreaterThan(400);
    expect(state.constraints.some((c) => c.onKind === 'domain' && !c.validated)).toBe(true);
    expect(state.largeObjects).toBeGreaterThan(0);
    expect(state.sequences.length).toBeGreaterThan(40);
  });

  it('verifies with default inputs on a scratch server, every time', async () => {
    // Twice here (each is a whole restore of the database); the README's figure of 5 of 5 comes
    // from the same test run by hand with more repetitions.
    for (let i = 0; i < 2; i++) {
      const report = await runVerify(
        { restore: true, checks: [] },
        testVerifyDeps(store.storage, tools),
      );
      const failed = report.checks.filter((c) => c.status !== 'passed');
      expect(failed.map((c) => `${c.name}: ${c.detail}`)).toEqual([
        'SQL checks: none given (the checks input)',
      ]);
      expect(report.status).toBe('passed');
    }
  }, 1_200_000);

  it('verifies streamed into pg_restore in one transaction, with every check as from disk', async () => {
    const report = await runVerify(
      { restore: true, checks: [], restorePlan: 'stream' },
      testVerifyDeps(store.storage, tools),
    );
    const failed = report.checks.filter((c) => c.status !== 'passed');
    expect(failed.map((c) => `${c.name}: ${c.detail}`)).toEqual([
      'SQL checks: none given (the checks input)',
    ]);
    expect(report.restorePlan?.name).toBe('stream');
    expect(report.checks.find((c) => c.name === 'Restore')?.detail).toMatch(
      /reading the archive as it streamed, in one transaction/,
    );
  }, 1_200_000);

  it('drills with default inputs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regress-drill-'));
    try {
      const result = await runDrill(
        { jobs: 2, checks: [], postgresVersion: 'auto', git: {} },
        testDrillDeps(store.storage, tools, dir),
      );
      expect(result.error).toBeUndefined();
      expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
      expect(result.status).toBe('passed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 1_200_000);

  it('restores into an empty database with every table identical to the source', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regress-restore-'));
    const url = await newDatabase('regress_copy');
    try {
      const fetched = await fetchArchive({
        storage: store.storage,
        manifest,
        tools: { zstdPath },
        dir,
        logger: new MemoryLogger(),
      });
      await listArchive(tools.pgRestore, fetched.archivePath);
      await runPgRestore({
        pgRestore: tools.pgRestore,
        archivePath: fetched.archivePath,
        connection: parseConnectionString(url),
        database: parseConnectionString(url).database!,
        jobs: 2,
        keepOwnership: false,
        env: process.env,
        logger: new MemoryLogger(),
      });
      const [before, after] = await Promise.all([
        tableFingerprints(source.url),
        tableFingerprints(url),
      ]);
      expect(after.size).toBe(before.size);
      // Tables only: a materialized view is refreshed by the restore, so one the source left stale
      // (mvtest_bb) holds the rows of its query, not the source's old ones, as with plain pg_restore.
      const differ = [...before].filter(([table, f]) => {
        if (f.relkind === 'm') return false;
        const r = after.get(table);
        return !r || r.rows !== f.rows || r.md5 !== f.md5;
      });
      expect(differ.map(([t]) => t)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 1_200_000);
});
