import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup, type BackupResult } from '../../src/backup/backup.js';
import { listVerifications } from '../../src/catalog/catalog.js';
import { manifestSchemaProblem } from '../../src/catalog/manifest-schema.js';
import { findOnPath } from '../../src/core/process.js';
import { runDrill } from '../../src/drill/drill.js';
import type { ClientTools } from '../../src/postgres/tools.js';
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
import { startSupabase, type SupabaseServer } from '../support/supabase.js';

// A Supabase project with an application on top, backed up as Supabase users connect (the
// postgres role, not a superuser), then verified and drilled the way the README shows: into a
// supabase/postgres-like service server, and not into a plain scratch server that lacks the
// platform.

const zstdPath = findOnPath('zstd');
let tools: ClientTools;
let store: TestStore;
let source: SupabaseServer;
let image: SupabaseServer;
let backup: BackupResult;

beforeAll(async () => {
  tools = await machineClientTools();
  store = await makeStore('local');
  [source, image] = await Promise.all([
    startSupabase({ kind: 'project', app: true }),
    startSupabase({ kind: 'image' }),
  ]);
  const options = testBackupOptions(source.postgresUrl(), 'project');
  backup = await runBackup(
    { ...options, name: undefined },
    testBackupDeps(store.storage, tools, { zstdPath }),
  );
}, 600_000);

afterAll(async () => {
  await Promise.all([source?.stop(), image?.stop()]);
});

describe('a Supabase project', () => {
  it('is recorded as one, with a word about the catalog name every project shares', () => {
    expect(backup.manifest.name).toBe('postgres');
    expect(backup.manifest.platform?.name).toBe('supabase');
    expect(manifestSchemaProblem(backup.manifest)).toBeUndefined();
    expect(backup.manifest.platform?.managedSchemas).toEqual(
      expect.arrayContaining(['auth', 'storage', 'vault', 'extensions']),
    );
    expect(backup.warnings).toContainEqual(expect.stringMatching(/Supabase project.*set name/));
    expect(backup.manifest.sourceState?.policies.length).toBeGreaterThanOrEqual(10);
    expect(backup.manifest.sourceState?.contents?.map((c) => c.table)).toEqual([
      'auth.users',
      'auth.identities',
      'storage.buckets',
      'storage.objects',
      'vault.secrets',
    ]);
    // Fingerprints, never the secrets themselves.
    expect(JSON.stringify(backup.manifest)).not.toMatch(
      /sk_test_4eC39HqLyjWDarjtT1zdp7dc|whsec_0123456789abcdef|sbpass/,
    );
  });

  it('fails on a plain scratch server before restoring, naming everything it lacks', async () => {
    const report = await runVerify(
      { restore: true, checks: [] },
      testVerifyDeps(store.storage, tools),
    );
    expect(report.status).toBe('failed');
    const preflight = report.checks.find((c) => c.name.startsWith('Preflight'))!;
    expect(preflight.status).toBe('failed');
    for (const extension of ['pg_graphql', 'pg_net', 'pgjwt', 'pgsodium', 'supabase_vault']) {
      expect(preflight.detail).toContain(extension);
    }
    for (const role of ['anon', 'authenticated', 'service_role', 'supabase_admin']) {
      expect(preflight.detail).toMatch(new RegExp(`roles the server lacks: .*\\b${role}\\b`));
    }
    expect(preflight.detail).toMatch(/Supabase platform extensions/);
    expect(preflight.detail).toMatch(/image: supabase\/postgres:/);
    expect(preflight.detail).toMatch(/target-url: postgresql:\/\/supabase_admin:/);
    expect(report.checks.find((c) => c.name === 'Restore')?.status).toBe('skipped');
    // The setup's failure, not the backup's: no verdict recorded.
    expect(report.recordKey).toBeUndefined();
    expect(await listVerifications(store.storage, 'postgres', backup.manifest.id)).toEqual([]);
  }, 600_000);

  it('verifies into a supabase/postgres-like service server with every check passing', async () => {
    const report = await runVerify(
      { restore: true, checks: [], targetUrl: image.adminUrl('restore_check') },
      testVerifyDeps(store.storage, tools),
    );
    expect(report.failures).toEqual([]);
    expect(report.checks.map((c) => [c.name, c.status])).toEqual(
      expect.arrayContaining([
        ['Restore', 'passed'],
        ['Tables and row counts', 'passed'],
        ['Constraints', 'passed'],
        ['Sequences', 'passed'],
        ['Row security and policies', 'passed'],
        ['Extensions', 'passed'],
        ['Platform rows (users, files, secrets)', 'passed'],
      ]),
    );
    const preflight = report.checks.find((c) => c.name.startsWith('Preflight'))!;
    expect(preflight.detail).toMatch(/Supabase's route into a new database on the Supabase server/);
    const policies = report.checks.find((c) => c.name === 'Row security and policies')!;
    expect(policies.detail).toMatch(/all \d+ policies as in the source/);
    for (const table of ['auth.users', 'auth.identities', 'storage.objects', 'vault.secrets']) {
      expect(report.tables).toContainEqual(expect.objectContaining({ table, status: 'same' }));
    }
  }, 600_000);

  it('drills into the same kind of server', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'supabase-drill-'));
    try {
      const result = await runDrill(
        {
          jobs: 2,
          checks: [],
          postgresVersion: 'auto',
          git: {},
          targetUrl: image.adminUrl('drill_check'),
        },
        testDrillDeps(store.storage, tools, dir),
      );
      expect(result.error).toBeUndefined();
      expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
      expect(result.status).toBe('passed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
