import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath, runCommand, runProcess } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runExport, type ExportResult } from '../../src/extract/export.js';
import { runExtract, type ExtractResult } from '../../src/extract/extract.js';
import { defaultExtractSchema, type ExtractOptions } from '../../src/extract/options.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { LocalStorage } from '../../src/storage/local.js';
import { machineClientTools, machineServer } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  type TestStore,
} from '../support/env.js';
import { tableFingerprints, type TableFingerprint } from '../support/regress.js';
import { withClient } from '../support/sample.js';
import {
  startSupabase,
  supabaseFingerprint,
  supabaseServer,
  SUPABASE_PASSWORD,
  type SupabaseServer,
} from '../support/supabase.js';

// Extract and export from the backup of a Supabase project with an application (the fixture's
// project, with RLS policies, a foreign key to auth.users, Vault secrets), backed up and
// extracted as Supabase users connect (the postgres role, no superuser). The scratch server is
// the step's own, with the platform's extensions installed (the fixture's server copy).

const zstdPath = findOnPath('zstd');
const key = generateIdentity();
const TABLES = ['public.profiles', 'public.todos', 'public.todo_tags', 'auth.users'];
const API_ROLES = ['anon', 'authenticated', 'service_role'];
let tools: ClientTools;
let work: string;
let source: SupabaseServer;
let store: TestStore;
let manifest: Manifest;
let schema: string;
/** Rows of the chosen tables as the backup holds them. */
let atBackup: Map<string, TableFingerprint>;
/** The same, as sorted CSV lines (header first). */
const backupCsv: Record<string, string[]> = {};

function extractOptions(overrides: Partial<ExtractOptions> = {}): ExtractOptions {
  return {
    name: manifest.name,
    backupId: manifest.id,
    decryption: { identities: [key.identity] },
    tables: TABLES,
    jobs: 2,
    postgresVersion: 'auto',
    targetUrl: source.postgresUrl(),
    confirm: 'postgres',
    replaceExtractSchema: false,
    compare: true,
    compareLimit: 10,
    ...overrides,
  };
}

function extractDeps(logger = new MemoryLogger()): Parameters<typeof runExtract>[1] {
  return {
    ...testDrillDeps(store.storage, tools, work, {
      logger,
      findServer: async () => supabaseServer(),
    }),
    reportDir: path.join(work, 'report'),
  };
}

/** `pg_dump --schema-only` of the project, owners and grants kept, without the side schema. */
async function projectSchema(): Promise<string> {
  const r = await runCommand(
    [tools.pgDump, '--schema-only', `--exclude-schema=${schema}`, `--dbname=${source.adminUrl()}`],
    { timeoutMs: 300_000 },
  );
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout
    .split('\n')
    .filter((line) => !/^\\(un)?restrict /.test(line))
    .join('\n');
}

/** Everything of the project outside the side schema: every table's rows, the definitions, the platform's state. */
async function projectState(): Promise<unknown> {
  const tables = await tableFingerprints(source.adminUrl());
  return {
    tables: new Map([...tables].filter(([table]) => !table.startsWith(`${schema}.`))),
    schema: await projectSchema(),
    platform: await supabaseFingerprint(source.adminUrl()),
    sequences: await withClient(source.adminUrl(), async (c) =>
      (
        await c.query<{ s: string }>(
          `SELECT format('%I.%I=%s', schemaname, sequencename, last_value) AS s FROM pg_sequences
            WHERE schemaname <> $1 AND (schemaname, sequencename) <> ('graphql', 'seq_schema_version')
            ORDER BY 1`,
          [schema],
        )
      ).rows.map((r) => r.s),
    ),
  };
}

/** Every row of a table as CSV lines, sorted, with its header first. */
async function csvLines(table: string): Promise<string[]> {
  const r = await runProcess(tools.psql, [
    '-X',
    '-q',
    '-d',
    source.adminUrl(),
    '-c',
    `COPY (SELECT * FROM ${table}) TO STDOUT WITH (FORMAT csv, HEADER)`,
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const [header, ...rows] = r.stdout.trimEnd().split('\n');
  return [header, ...rows.sort()];
}

beforeAll(async () => {
  tools = await machineClientTools();
  work = mkdtempSync(path.join(os.tmpdir(), 'supabase-extract-'));
  store = await makeStore('local');
  source = await startSupabase({ kind: 'project', app: true });
  ({ manifest } = await runBackup(
    testBackupOptions(source.postgresUrl(), 'project', {
      encryption: { recipients: [key.recipient] },
    }),
    testBackupDeps(store.storage, tools, { zstdPath }),
  ));
  schema = defaultExtractSchema(manifest.id);
  atBackup = await tableFingerprints(source.adminUrl());
  for (const table of TABLES) backupCsv[table] = await csvLines(table);
  // What went wrong after the backup, as the app's users (postgres) would do it: a todo deleted
  // (its tag goes with it), another edited, a profile deleted and one edited, a todo added.
  await withClient(source.postgresUrl(), async (c) => {
    await c.query(`DELETE FROM public.todos WHERE task = 'Restore it on Friday'`);
    await c.query(
      `UPDATE public.todos SET is_complete = false WHERE task = 'Rotate the service key'`,
    );
    await c.query(`DELETE FROM public.profiles WHERE username = 'cid'`);
    await c.query(
      `UPDATE public.profiles SET website = 'https://bob.example.com' WHERE username = 'bob'`,
    );
    await c.query(
      `UPDATE auth.users SET raw_user_meta_data = raw_user_meta_data || '{"full_name": "Ann E."}' WHERE email = 'ann@example.com'`,
    );
    await c.query(
      `INSERT INTO public.todos (user_id, task) VALUES ('b0000000-0000-4000-8000-00000000000b', 'Buy a second drive')`,
    );
  });
}, 600_000);

afterAll(async () => {
  await source?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('extract from the backup of a Supabase project into the project', () => {
  let before: unknown;
  let result: ExtractResult;
  const logger = new MemoryLogger();

  beforeAll(async () => {
    before = await projectState();
    result = await runExtract(extractOptions(), extractDeps(logger));
  }, 600_000);

  it('brings the backup rows of each table into the side schema', async () => {
    expect(result.schema).toBe(schema);
    const now = await tableFingerprints(source.adminUrl());
    for (const table of TABLES) {
      const name = table.split('.')[1];
      expect([name, now.get(`${schema}.${name}`)]).toEqual([name, atBackup.get(table)]);
    }
    expect(result.tables.map((t) => [t.name, t.rows])).toEqual([
      ['profiles', 3],
      ['todos', 3],
      ['todo_tags', 4],
      ['users', 3],
    ]);
  });

  it('counts exactly what changed since the backup', () => {
    expect(
      Object.fromEntries(
        result.diffs.map((d) => [d.table, [d.missing, d.changed, d.extra, d.skipped]]),
      ),
    ).toEqual({
      'public.profiles': [1, 1, 0, undefined],
      'public.todos': [1, 1, 1, undefined],
      'public.todo_tags': [1, 0, 0, undefined],
      'auth.users': [0, 1, 0, undefined],
    });
  });

  it('leaves every other schema of the project as it was', async () => {
    expect(await projectState()).toEqual(before);
  });

  it('leaves the side schema to its owner: the API roles cannot read it', async () => {
    await withClient(source.adminUrl(), async (c) => {
      const privileges = await c.query<{ role: string; can: boolean }>(
        `SELECT r AS role,
                has_schema_privilege(r, $1, 'USAGE') OR has_schema_privilege(r, $1, 'CREATE')
                OR bool_or(has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE')) AS can
           FROM unnest($2::text[]) r, pg_class c
          WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')
          GROUP BY r ORDER BY r`,
        [schema, API_ROLES],
      );
      expect(privileges.rows).toEqual(API_ROLES.map((role) => ({ role, can: false })));
      const owner = await c.query<{ owner: string }>(
        `SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = $1`,
        [schema],
      );
      expect(owner.rows).toEqual([{ owner: 'postgres' }]);
    });
    for (const role of ['anon', 'authenticated']) {
      await withClient(source.postgresUrl(), async (c) => {
        await c.query('BEGIN');
        await c.query(`SET LOCAL ROLE ${role}`);
        await expect(c.query(`SELECT * FROM ${schema}.profiles`)).rejects.toThrow(
          /permission denied for schema/,
        );
        await c.query('ROLLBACK');
      });
    }
  });

  it('refuses a second extract into the same schema, changing nothing', async () => {
    const now = await projectState();
    const error = await runExtract(extractOptions(), extractDeps()).then(
      () => new Error('extracted'),
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(
      new RegExp(`schema ${schema}: it exists.*replace-extract-schema`),
    );
    expect(await projectState()).toEqual(now);
  }, 600_000);

  it('keeps secrets out of the log', () => {
    const log = logger.lines.join('\n');
    expect(log).not.toContain(SUPABASE_PASSWORD);
    expect(log).not.toContain(key.identity);
    expect(log).toMatch(/Supabase's route into a new database on the Supabase server/);
  });
});

describe('extract through scratch-url, a new database on a supabase/postgres server', () => {
  let image: SupabaseServer;
  let result: ExtractResult;
  let rolesBefore: string[];
  const logger = new MemoryLogger();
  const roles = (): Promise<string[]> =>
    withClient(image.adminUrl(), async (c) =>
      (await c.query<{ r: string }>('SELECT rolname AS r FROM pg_roles ORDER BY 1')).rows.map(
        (row) => row.r,
      ),
    );

  beforeAll(async () => {
    image = await startSupabase({ kind: 'image' });
    rolesBefore = await roles();
    result = await runExtract(
      extractOptions({
        extractSchema: 'recovered_via_image',
        tables: ['public.todos'],
        scratchUrl: image.adminUrl('extract_scratch'),
      }),
      {
        ...extractDeps(logger),
        findServer: () => Promise.reject(new Error('no server is started with scratch-url')),
      },
    );
  }, 600_000);

  afterAll(async () => {
    await image?.stop();
  });

  it('brings the backup rows, counted against live', async () => {
    const now = await tableFingerprints(source.adminUrl());
    expect(now.get('recovered_via_image.todos')).toEqual(atBackup.get('public.todos'));
    expect(result.diffs.map((d) => [d.table, d.missing, d.changed, d.extra])).toEqual([
      ['public.todos', 1, 1, 1],
    ]);
  });

  it('drops its database and the roles it created on that server', async () => {
    const databases = await withClient(image.adminUrl(), (c) =>
      c.query(`SELECT datname FROM pg_database WHERE datname = 'extract_scratch'`),
    );
    expect(databases.rows).toEqual([]);
    expect(await roles()).toEqual(rolesBefore);
    expect(logger.lines.join('\n')).toMatch(/Created database extract_scratch/);
    expect(logger.lines.join('\n')).not.toContain(SUPABASE_PASSWORD);
  });
});

describe('export from the backup of a Supabase project', () => {
  let result: ExportResult;
  let output: string;

  beforeAll(async () => {
    output = mkdtempSync(path.join(work, 'export-'));
    result = await runExport(
      {
        name: manifest.name,
        backupId: manifest.id,
        decryption: { identities: [key.identity] },
        tables: ['public.profiles', 'public.todos'],
        jobs: 1,
        postgresVersion: 'auto',
        format: 'csv',
        recipients: [],
      },
      {
        ...testDrillDeps(store.storage, tools, work, { findServer: async () => supabaseServer() }),
        destination: { storage: new LocalStorage(output, new MemoryLogger()), prefix: '' },
      },
    );
  }, 600_000);

  it('writes files that age and zstd turn back into the backup rows', async () => {
    expect(result.exportManifest.tables.map((t) => [t.table, t.rows])).toEqual([
      ['public.profiles', 3],
      ['public.todos', 3],
    ]);
    const identityFile = path.join(work, 'identity');
    writeFileSync(identityFile, `${key.identity}\n`, { mode: 0o600 });
    for (const t of result.exportManifest.tables) {
      const r = await runProcess('bash', [
        '-c',
        `age -d -i "${identityFile}" "${path.join(output, t.key)}" | zstd -d -q -c`,
      ]);
      expect(r.code).toBe(0);
      const [header, ...rows] = r.stdout.trimEnd().split('\n');
      expect(rows).toHaveLength(t.rows);
      expect([header, ...rows.sort()]).toEqual(backupCsv[t.table]);
    }
    const manifestText = readFileSync(path.join(output, 'manifest.json'), 'utf8');
    expect(manifestText).not.toContain(SUPABASE_PASSWORD);
  });
});

describe('what an extract from a Supabase backup refuses, before the project is written to', () => {
  /** The error of an extract, and the project as it was before it. */
  async function refused(options: Partial<ExtractOptions>, deps = extractDeps()): Promise<Error> {
    const before = await projectState();
    const error = await runExtract(extractOptions(options), deps).then(
      () => new Error('extracted'),
      (e: unknown) => e as Error,
    );
    expect(await projectState()).toEqual(before);
    const left = await withClient(source.adminUrl(), (c) =>
      c.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'refused%'`),
    );
    expect(left.rows).toEqual([]);
    return error;
  }

  it("a table an extension makes (Vault's secrets), naming it", async () => {
    const error = await refused({
      tables: ['public.todos', 'vault.secrets'],
      extractSchema: 'refused_vault',
    });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(
      /vault\.secrets \(of extension supabase_vault\) belong to an extension.*export them/,
    );
  }, 600_000);

  it("a scratch server without the platform's extensions, naming them", async () => {
    const error = await refused(
      { extractSchema: 'refused_plain' },
      { ...extractDeps(), findServer: async () => machineServer() },
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    for (const extension of ['pg_graphql', 'pg_net', 'pgjwt', 'pgsodium', 'supabase_vault']) {
      expect(error.message).toContain(extension);
    }
    expect(error.message).toMatch(/these are the Supabase platform's: give scratch-url/);
  }, 600_000);

  it("a backup of the application's schemas only, before downloading it", async () => {
    const appOnly = await runBackup(
      testBackupOptions(source.postgresUrl(), 'app-only', {
        selection: { schemas: ['public'], excludeSchemas: [], excludeTableData: [] },
      }),
      testBackupDeps(store.storage, tools, { zstdPath }),
    );
    const logger = new MemoryLogger();
    const error = await refused(
      {
        name: 'app-only',
        backupId: appOnly.manifest.id,
        decryption: undefined,
        extractSchema: 'refused_app_only',
      },
      extractDeps(logger),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/holds only schema\(s\) public of a Supabase project/);
    expect(logger.lines.join('\n')).not.toMatch(/Download/);
  }, 600_000);
});
