import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup, type BackupResult } from '../../src/backup/backup.js';
import { listVerifications } from '../../src/catalog/catalog.js';
import { manifestSchemaProblem } from '../../src/catalog/manifest-schema.js';
import { findOnPath } from '../../src/core/process.js';
import { runDrill, runRestore } from '../../src/drill/drill.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { runVerify } from '../../src/verify/verify.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  testRestoreOptions,
  testVerifyDeps,
  type TestStore,
} from '../support/env.js';
import { withClient } from '../support/sample.js';
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

  it("verifies streamed into pg_restore along the platform's route", async () => {
    const report = await runVerify(
      {
        restore: true,
        checks: [],
        targetUrl: image.adminUrl('restore_stream'),
        restorePlan: 'stream',
      },
      testVerifyDeps(store.storage, tools),
    );
    expect(report.failures).toEqual([]);
    expect(report.restorePlan?.name).toBe('stream');
    const detail = (name: string): string | undefined =>
      report.checks.find((c) => c.name === name)?.detail;
    expect(detail('Restore')).toMatch(/reading the archive as it streamed/);
    // A given server's settings are its own: no one-transaction restore there.
    expect(detail('Restore')).not.toMatch(/one transaction/);
    expect(detail('Platform rows (users, files, secrets)')).toBeDefined();
    expect(report.checks.find((c) => c.name.startsWith('Platform rows'))?.status).toBe('passed');
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

describe('an app-only backup of a Supabase project (schemas: public)', () => {
  let appOnly: BackupResult | undefined;

  beforeAll(async () => {
    appOnly = await runBackup(
      testBackupOptions(source.postgresUrl(), 'app-only', {
        selection: { schemas: ['public'], excludeSchemas: [], excludeTableData: [] },
      }),
      testBackupDeps(store.storage, tools, { zstdPath }),
    );
  }, 600_000);

  it('verifies into a new database on a supabase/postgres-like server', async () => {
    const report = await runVerify(
      { name: 'app-only', restore: true, checks: [], targetUrl: image.adminUrl('restore_app') },
      testVerifyDeps(store.storage, tools),
    );
    expect(appOnly?.manifest.options?.schemas).toEqual(['public']);
    expect(report.failures).toEqual([]);
    expect(report.status).toBe('passed');
    const detail = (name: string): string | undefined =>
      report.checks.find((c) => c.name === name)?.detail;
    // The new database is scaffolded from the server's own project: auth.users exists, empty.
    expect(detail('Preflight (target, extensions, roles)')).toMatch(
      /Supabase's route into a Supabase project/,
    );
    // The foreign key to auth.users is there, NOT VALID: the backup holds no users, and says so.
    expect(detail('Constraints')).toMatch(
      /1 foreign key\(s\) restored NOT VALID, as the rows they refer to are not in the backup: public\.profiles\.profiles_id_fkey$/,
    );
    // RLS policies naming auth.uid() and the API roles restored as in the source.
    expect(detail('Row security and policies')).toMatch(/all \d+ policies as in the source/);
    expect(report.tables.map((t) => [t.table, t.status])).toEqual(
      expect.arrayContaining([['public.profiles', 'same']]),
    );
  }, 600_000);

  it('drills into a new database the same way', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'supabase-app-drill-'));
    try {
      const result = await runDrill(
        {
          name: 'app-only',
          jobs: 2,
          checks: [],
          postgresVersion: 'auto',
          git: {},
          targetUrl: image.adminUrl('drill_app'),
        },
        testDrillDeps(store.storage, tools, dir),
      );
      expect(result.error).toBeUndefined();
      expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);

  it('is refused, before anything changes, as a real restore into a project without its users', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'supabase-app-restore-'));
    const url = image.postgresUrl('postgres');
    const publicObjects = (): Promise<number> =>
      withClient(image.adminUrl('postgres'), async (c) =>
        Number(
          (
            await c.query(
              "SELECT count(*) AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace",
            )
          ).rows[0].n,
        ),
      );
    const before = await publicObjects();
    try {
      const error = await runRestore(
        testRestoreOptions(url, { name: 'app-only' }),
        testDrillDeps(store.storage, tools, dir),
      ).then(
        (r) => new Error(r.error ?? 'restored'),
        (e: unknown) => e as Error,
      );
      expect(error.message).toMatch(
        /lacks rows of auth\.users: profiles_id_fkey of public\.profiles refer to them and the archive does not hold them/,
      );
      expect(await publicObjects()).toBe(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
