import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { findOnPath } from '../../src/core/process.js';
import { runRestore, type RestoreOptions } from '../../src/drill/drill.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  type TestStore,
} from '../support/env.js';
import {
  schemaSnapshot,
  startRegressionSource,
  tableFingerprints,
  type RegressionSource,
} from '../support/regress.js';
import { urlOfDatabase, withClient } from '../support/sample.js';
import { startSupabase, supabaseFingerprint, type SupabaseServer } from '../support/supabase.js';

// The real restore over an existing database, on databases nobody here designed: PostgreSQL's
// regression database over a copy of itself (transforms, FDWs, access methods live at database
// level), its undo, and a Supabase project restored as the postgres role.

const zstdPath = findOnPath('zstd');
let tools: ClientTools;
let dir: string;

beforeAll(async () => {
  tools = await machineClientTools();
  dir = mkdtempSync(path.join(os.tmpdir(), 'restore-over-'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function restoreOptions(url: string, overrides: Partial<RestoreOptions> = {}): RestoreOptions {
  return {
    targetUrl: url,
    confirm: new URL(url).pathname.slice(1),
    terminateConnections: true,
    safetyBackup: false,
    jobs: 2,
    checks: [],
    postgresVersion: 'auto',
    git: {},
    ...overrides,
  };
}

const tablesOnly = (m: Map<string, { rows: number; md5: string; relkind: string }>): string[] =>
  [...m].filter(([, f]) => f.relkind === 'r').map(([t, f]) => `${t} ${f.rows} ${f.md5}`);

describe("PostgreSQL's regression database restored over a copy of itself", () => {
  let source: RegressionSource;
  let store: TestStore;
  let copyUrl: string;

  beforeAll(async () => {
    source = await startRegressionSource();
    store = await makeStore('local');
    await runBackup(
      testBackupOptions(source.url, 'regression'),
      testBackupDeps(store.storage, tools, { zstdPath }),
    );
    copyUrl = urlOfDatabase(source.url, 'regression_copy');
    await withClient(urlOfDatabase(source.url, 'postgres'), (c) =>
      c.query('CREATE DATABASE regression_copy TEMPLATE regression'),
    );
  }, 1_200_000);

  afterAll(async () => {
    await source?.stop();
  });

  it('passes twice in a row, with the data equal to the source', async () => {
    const expected = tablesOnly(await tableFingerprints(source.url));
    for (let round = 0; round < 2; round++) {
      const result = await runRestore(
        restoreOptions(copyUrl),
        testDrillDeps(store.storage, tools, dir),
      );
      expect(result.error).toBeUndefined();
      expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
      expect(result.targetState).toBe('restored');
      expect(result.targetStateText).toMatch(
        /^The target is restored from backup .*every check passed/,
      );
      expect(tablesOnly(await tableFingerprints(copyUrl))).toEqual(expected);
    }
  }, 1_200_000);

  it('is undone by the command it prints, back to the target as it was', async () => {
    await withClient(copyUrl, (c) =>
      c.query(`CREATE TABLE public.made_after_the_backup (id int); INSERT INTO public.made_after_the_backup VALUES (1), (2);
               DELETE FROM public.tenk1 WHERE unique1 < 100`),
    );
    const before = await schemaSnapshot(copyUrl);
    const beforeData = tablesOnly(await tableFingerprints(copyUrl));
    const result = await runRestore(
      restoreOptions(copyUrl, { safetyBackup: true }),
      testDrillDeps(store.storage, tools, dir),
    );
    expect(result.status).toBe('passed');
    expect(result.undoRehearsal).toMatch(/was rehearsed/);
    const undo = /backup-id: (\S+) \(CLI: pg-backup restore --backup-id \1\)/.exec(
      result.targetStateText ?? '',
    );
    expect(undo).not.toBeNull();
    // As printed: mode restore, that backup-id, the same target-url and confirm.
    const undone = await runRestore(
      restoreOptions(copyUrl, { backupId: undo![1] }),
      testDrillDeps(store.storage, tools, dir),
    );
    expect(undone.checks.filter((c) => c.status === 'failed')).toEqual([]);
    expect(await schemaSnapshot(copyUrl)).toEqual(before);
    expect(tablesOnly(await tableFingerprints(copyUrl))).toEqual(beforeData);
  }, 1_200_000);
});

/** Who may do what on the tables of public, and who owns them. */
async function publicGrants(url: string): Promise<string[]> {
  const r = await withClient(url, (c) =>
    c.query<{ line: string }>(
      `SELECT format('%s %s %s', table_name, grantee, privilege_type) AS line
         FROM information_schema.role_table_grants WHERE table_schema = 'public'
       UNION ALL
       SELECT format('%s owned by %s', tablename, tableowner) FROM pg_tables WHERE schemaname = 'public'
        ORDER BY 1`,
    ),
  );
  return r.rows.map((x) => x.line);
}

describe('a Supabase project restored as the postgres role', () => {
  let source: SupabaseServer;
  let target: SupabaseServer;
  let store: TestStore;

  beforeAll(async () => {
    [source, target] = await Promise.all([
      startSupabase({ kind: 'project', app: true }),
      startSupabase({ kind: 'project' }),
    ]);
    store = await makeStore('local');
    await runBackup(
      testBackupOptions(source.postgresUrl(), 'project'),
      testBackupDeps(store.storage, tools, { zstdPath }),
    );
  }, 600_000);

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('restores into a new project and again over it, identical to the source', async () => {
    const expected = await supabaseFingerprint(source.adminUrl());
    let safety: string | undefined;
    for (let round = 0; round < 2; round++) {
      const result = await runRestore(
        restoreOptions(target.postgresUrl(), { safetyBackup: round === 1 }),
        testDrillDeps(store.storage, tools, dir),
      );
      expect(result.error).toBeUndefined();
      expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
      expect(result.phases.find((p) => p.name === 'restore')?.detail).toMatch(
        /in one transaction, owners and grants kept$/,
      );
      // Vault's secrets decrypt to the source's values: not encrypted a second time.
      expect(await supabaseFingerprint(target.adminUrl())).toEqual(expected);
      // The API roles' grants came back with the tables (PostgREST serves nothing without them).
      expect(await publicGrants(target.adminUrl())).toEqual(await publicGrants(source.adminUrl()));
      safety = result.safetyBackup?.id;
      // The undo was rehearsed as postgres before the second restore touched the project.
      if (round === 1) expect(result.undoRehearsal).toMatch(/ as postgres was rehearsed/);
    }
    // The pre-restore safety backup, taken as postgres, restores into the same project as
    // postgres: the undo the summary prints works on Supabase too.
    await withClient(target.adminUrl(), (c) =>
      c.query("UPDATE public.profiles SET full_name = 'changed after the backup'"),
    );
    expect(safety).toBeDefined();
    const undo = await runRestore(
      restoreOptions(target.postgresUrl(), { backupId: safety }),
      testDrillDeps(store.storage, tools, dir),
    );
    expect(undo.checks.filter((c) => c.status === 'failed')).toEqual([]);
    expect(await supabaseFingerprint(target.adminUrl())).toEqual(expected);
  }, 600_000);

  it('restores an app-only backup (schemas: public) over the project, keeping its trigger on auth.users', async () => {
    const appOnly = await runBackup(
      testBackupOptions(source.postgresUrl(), 'app', {
        selection: { schemas: ['public'], excludeSchemas: [], excludeTableData: [] },
      }),
      testBackupDeps(store.storage, tools, { zstdPath }),
    );
    // What it relies on outside public, said at backup time.
    const relies = appOnly.warnings.find((w) => w.includes('relies on what is outside them'));
    expect(relies).toMatch(
      /foreign key profiles_id_fkey on public\.profiles references auth\.users/,
    );
    expect(relies).toMatch(
      /trigger on_auth_user_created on auth\.users runs public\.handle_new_user\(\)/,
    );
    expect(relies).toMatch(/policies name the roles .*authenticated/);

    const expected = await supabaseFingerprint(source.adminUrl());
    await withClient(target.adminUrl(), (c) =>
      c.query("UPDATE public.todos SET task = 'changed after the backup'"),
    );
    const result = await runRestore(
      restoreOptions(target.postgresUrl(), { name: 'app' }),
      testDrillDeps(store.storage, tools, dir),
    );
    expect(result.error).toBeUndefined();
    expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
    expect(await supabaseFingerprint(target.adminUrl())).toEqual(expected);
    const trigger = await withClient(target.adminUrl(), (c) =>
      c.query(`SELECT 1 FROM pg_trigger WHERE tgname = 'on_auth_user_created'`),
    );
    expect(trigger.rowCount).toBe(1);
    const realtime = await withClient(target.adminUrl(), (c) =>
      c.query(
        `SELECT 1 FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND tablename = 'todos'`,
      ),
    );
    expect(realtime.rowCount).toBe(1);
  }, 600_000);
});
