import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { runCommand } from '../../src/core/process.js';
import { machineClientTools } from '../support/embedded.js';
import {
  startSupabase,
  supabaseFingerprint,
  supabaseServer,
  type SupabaseServer,
} from '../support/supabase.js';

async function rows<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function one<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T> {
  const [row] = await rows<T>(url, sql, params);
  if (!row) throw new Error(`no row from: ${sql}`);
  return row;
}

const EXTENSIONS = [
  'pg_graphql',
  'pg_net',
  'pgjwt',
  'pgsodium',
  'supabase_vault',
  'pg_stat_statements',
  'pgcrypto',
  'uuid-ossp',
];

describe('the Supabase server copy', () => {
  it('is the machine PostgreSQL 15 with the fixture extensions in its own share/', () => {
    const server = supabaseServer();
    expect(server.major).toBe(15);
    expect(server.binDir).toContain(`${path.sep}.tmp${path.sep}supabase-pg${path.sep}`);
    const share = path.join(server.binDir, '../../../../share/postgresql/15/extension');
    for (const name of ['pg_graphql.control', 'pgsodium--3.1.8.sql', 'pgjwt.control']) {
      expect(existsSync(path.join(share, name))).toBe(true);
    }
    // Idempotent: the second call is the same copy.
    expect(supabaseServer()).toEqual(server);
  });
});

describe('a Supabase project with an application', () => {
  let sb: SupabaseServer;

  beforeAll(async () => {
    sb = await startSupabase({ kind: 'project', app: true });
    console.log(
      `project+app: cached=${sb.cached} timings=${JSON.stringify(sb.timings)} ` +
        `load errors:\n${sb.load.errors.join('\n')}`,
    );
  }, 180000);

  afterAll(async () => {
    await sb?.stop();
  });

  it('lets users connect as postgres, which is no superuser', async () => {
    const role = await one<{ user: string; rolsuper: boolean; rolbypassrls: boolean }>(
      sb.postgresUrl(),
      `SELECT current_user AS user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`,
    );
    expect(role).toEqual({ user: 'postgres', rolsuper: false, rolbypassrls: true });
    const admin = await one<{ rolsuper: boolean }>(
      sb.adminUrl(),
      `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`,
    );
    expect(admin.rolsuper).toBe(true);
  });

  it('gives postgres what it has on Supabase, and no more', async () => {
    const can = await one<Record<string, boolean>>(
      sb.postgresUrl(),
      `SELECT has_database_privilege('postgres', 'CREATE') AS create_schemas,
              has_schema_privilege('public', 'CREATE') AS create_in_public,
              pg_has_role('supabase_auth_admin', 'USAGE') AS owns_auth_tables,
              pg_has_role('supabase_storage_admin', 'USAGE') AS owns_storage_tables,
              pg_has_role('supabase_admin', 'USAGE') AS is_supabase_admin,
              pg_has_role('supabase_realtime_admin', 'USAGE') AS owns_realtime_tables`,
    );
    expect(can).toEqual({
      create_schemas: true,
      create_in_public: true,
      owns_auth_tables: true,
      owns_storage_tables: true,
      is_supabase_admin: false,
      owns_realtime_tables: false,
    });
    const owners = await rows<{ nspname: string }>(
      sb.postgresUrl(),
      `SELECT nspname FROM pg_namespace WHERE nspowner = 'postgres'::regrole ORDER BY 1`,
    );
    expect(owners.map((r) => r.nspname)).toEqual(['extensions']);
    const client = new pg.Client({ connectionString: sb.postgresUrl() });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('CREATE SCHEMA private');
      await client.query(
        'CREATE FUNCTION private.noop() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$',
      );
      await expect(
        client.query(
          'CREATE EVENT TRIGGER noop ON ddl_command_end EXECUTE FUNCTION private.noop()',
        ),
      ).rejects.toThrow(/Must be superuser|permission denied/i);
      await client.query('ROLLBACK');
      await expect(client.query(`ALTER ROLE supabase_admin PASSWORD 'x'`)).rejects.toThrow(
        /must be superuser/,
      );
    } finally {
      await client.end();
    }
  });

  it('has the Supabase extensions installed', async () => {
    const installed = await rows<{ extname: string }>(
      sb.postgresUrl(),
      'SELECT extname FROM pg_extension',
    );
    expect(installed.map((r) => r.extname)).toEqual(expect.arrayContaining(EXTENSIONS));
  });

  it('has the schemas, roles and publication of a hosted project', async () => {
    const schemas = await rows<{ nspname: string }>(
      sb.postgresUrl(),
      'SELECT nspname FROM pg_namespace',
    );
    expect(schemas.map((r) => r.nspname)).toEqual(
      expect.arrayContaining([
        'auth',
        'storage',
        'realtime',
        'vault',
        'pgsodium',
        'graphql',
        'graphql_public',
        'extensions',
        'net',
        'supabase_functions',
        'pgbouncer',
      ]),
    );
    const roles = await rows<{ rolname: string }>(sb.postgresUrl(), 'SELECT rolname FROM pg_roles');
    expect(roles.map((r) => r.rolname)).toEqual(
      expect.arrayContaining([
        'anon',
        'authenticated',
        'service_role',
        'authenticator',
        'supabase_auth_admin',
        'supabase_storage_admin',
        'supabase_functions_admin',
        'supabase_realtime_admin',
      ]),
    );
    const published = await rows<{ tablename: string }>(
      sb.postgresUrl(),
      `SELECT schemaname || '.' || tablename AS tablename FROM pg_publication_tables
        WHERE pubname = 'supabase_realtime'`,
    );
    expect(published.map((r) => r.tablename)).toEqual(['public.todos']);
  });

  it('has the application: RLS policies, the auth trigger, users and profiles', async () => {
    const policies = await one<{ n: number }>(
      sb.postgresUrl(),
      `SELECT count(*)::int AS n FROM pg_policies WHERE schemaname = 'public'`,
    );
    expect(policies.n).toBeGreaterThanOrEqual(10);
    const rls = await rows<{ relname: string; relrowsecurity: boolean }>(
      sb.postgresUrl(),
      `SELECT relname, relrowsecurity FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname`,
    );
    expect(rls).toEqual([
      { relname: 'profiles', relrowsecurity: true },
      { relname: 'todo_tags', relrowsecurity: true },
      { relname: 'todos', relrowsecurity: true },
    ]);
    const trigger = await one<{ owner: string; fn: string }>(
      sb.postgresUrl(),
      `SELECT p.proowner::regrole::text AS owner, t.tgfoid::regprocedure::text AS fn
         FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgrelid = 'auth.users'::regclass AND t.tgname = 'on_auth_user_created'`,
    );
    expect(trigger).toEqual({ owner: 'postgres', fn: 'handle_new_user()' });
    const profiles = await rows<{ username: string }>(
      sb.postgresUrl(),
      'SELECT username FROM public.profiles ORDER BY username',
    );
    expect(profiles.map((r) => r.username)).toEqual(['ann', 'bob', 'cid']);
  });

  it('enforces the policies for the API roles', async () => {
    const client = new pg.Client({ connectionString: sb.postgresUrl() });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL ROLE anon');
      const anon = await client.query<{ task: string }>('SELECT task FROM public.todos');
      expect(anon.rows.map((r) => r.task)).toEqual(['Write the backup drill']);
      await client.query('RESET ROLE');
      await client.query('SET LOCAL ROLE authenticated');
      await client.query(
        `SELECT set_config('request.jwt.claim.sub', 'b0000000-0000-4000-8000-00000000000b', true)`,
      );
      const bob = await client.query<{ task: string }>('SELECT task FROM public.todos ORDER BY 1');
      expect(bob.rows.map((r) => r.task)).toEqual([
        'Rotate the service key',
        'Write the backup drill',
      ]);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });

  it('gives the Vault plaintext back through vault.decrypted_secrets', async () => {
    const secret = await one<{ secret: string; decrypted_secret: string }>(
      sb.postgresUrl(),
      `SELECT secret, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'stripe_secret_key'`,
    );
    expect(secret.decrypted_secret).toBe('sk_test_4eC39HqLyjWDarjtT1zdp7dc');
    expect(secret.secret).not.toBe(secret.decrypted_secret);
  });

  it('lets postgres set session_replication_role', async () => {
    const client = new pg.Client({ connectionString: sb.postgresUrl() });
    await client.connect();
    try {
      await client.query('SET session_replication_role = replica');
      const shown = await client.query<{ session_replication_role: string }>(
        'SHOW session_replication_role',
      );
      expect(shown.rows[0]?.session_replication_role).toBe('replica');
    } finally {
      await client.end();
    }
  });

  it('fingerprints the same database twice alike, and sees a change', async () => {
    const first = await supabaseFingerprint(sb.postgresUrl());
    expect(Object.keys(first).sort()).toEqual(
      [
        'auth.identities',
        'auth.sessions',
        'auth.users',
        'policies',
        'public.profiles',
        'public.todo_tags',
        'public.todos',
        'rls',
        'storage.buckets',
        'storage.objects',
        'vault.decrypted_secrets',
      ].sort(),
    );
    expect(first['auth.users']).toMatch(/^3:[0-9a-f]{32}$/);
    expect(first['vault.decrypted_secrets']).toMatch(/^2:/);
    expect(first.policies).toMatch(/^15:/);
    expect(await supabaseFingerprint(sb.adminUrl())).toEqual(first);
    // A byte-for-byte copy of the database is another identical database.
    await rows(sb.adminUrl(), 'CREATE DATABASE fingerprint_copy TEMPLATE postgres');
    try {
      expect(await supabaseFingerprint(sb.postgresUrl('fingerprint_copy'))).toEqual(first);
    } finally {
      await rows(sb.adminUrl(), 'DROP DATABASE fingerprint_copy');
    }

    await rows(sb.postgresUrl(), `UPDATE public.todos SET task = task || '!' WHERE id = 1`);
    const changed = await supabaseFingerprint(sb.postgresUrl());
    expect(changed['public.todos']).not.toBe(first['public.todos']);
    expect({ ...changed, 'public.todos': '' }).toEqual({ ...first, 'public.todos': '' });
    await rows(sb.postgresUrl(), `UPDATE public.todos SET task = rtrim(task, '!') WHERE id = 1`);
  });

  it('dumps with pg_dump as postgres', async () => {
    const tools = await machineClientTools();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sb-dump-'));
    try {
      const file = path.join(dir, 'project.dump');
      const env: NodeJS.ProcessEnv = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !k.startsWith('PG')),
      );
      const dump = await runCommand([tools.pgDump, '-Fc', '-f', file, '-d', sb.postgresUrl()], {
        env,
        timeoutMs: 120000,
      });
      console.log(`pg_dump as postgres: exit ${dump.code}, stderr:\n${dump.stderr}`);
      expect(dump.code).toBe(0);
      expect(dump.stderr).not.toMatch(/permission denied|error:/i);
      const list = await runCommand([tools.pgRestore, '-l', file], { env, timeoutMs: 60000 });
      expect(list.code).toBe(0);
      expect(list.stdout).toMatch(/TABLE DATA public todos postgres/);
      expect(list.stdout).toMatch(/TRIGGER auth users on_auth_user_created/);
      expect(list.stdout).toMatch(
        /POLICY public todos Individuals can view their own todos\. postgres/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the supabase/postgres image alone', () => {
  let sb: SupabaseServer;

  beforeAll(async () => {
    sb = await startSupabase({ kind: 'image' });
    console.log(`image: cached=${sb.cached} timings=${JSON.stringify(sb.timings)}`);
  }, 180000);

  afterAll(async () => {
    await sb?.stop();
  });

  it("holds the image's own auth and storage schemas, without the services' tables", async () => {
    const tables = await rows<{ t: string }>(
      sb.postgresUrl(),
      `SELECT schemaname || '.' || tablename AS t FROM pg_tables
        WHERE schemaname IN ('auth', 'storage', 'realtime') ORDER BY 1`,
    );
    expect(tables.map((r) => r.t)).toEqual([
      'auth.audit_log_entries',
      'auth.instances',
      'auth.refresh_tokens',
      'auth.schema_migrations',
      'auth.users',
      'storage.buckets',
      'storage.migrations',
      'storage.objects',
    ]);
    const missing = await one<{ identities: string | null; net: string | null }>(
      sb.postgresUrl(),
      `SELECT to_regclass('auth.identities')::text AS identities,
              (SELECT nspname FROM pg_namespace WHERE nspname = 'net') AS net`,
    );
    expect(missing).toEqual({ identities: null, net: null });
    const extensions = await rows<{ extname: string }>(
      sb.postgresUrl(),
      'SELECT extname FROM pg_extension',
    );
    const names = extensions.map((r) => r.extname);
    expect(names).toEqual(expect.arrayContaining(EXTENSIONS.filter((e) => e !== 'pg_net')));
    expect(names).not.toContain('pg_net');
    const role = await one<{ rolsuper: boolean }>(
      sb.postgresUrl(),
      'SELECT rolsuper FROM pg_roles WHERE rolname = current_user',
    );
    expect(role.rolsuper).toBe(false);
  });
});
