import { detectPlatform } from '../../src/postgres/platform.js';
/**
 * Restoring a Supabase project's pg_dump archive onto Supabase: into a new project as
 * `postgres`, again over it, into a supabase/postgres service container, and an app-only
 * (`-n public`) archive. Real servers from test/support/supabase.ts throughout.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runProcess } from '../../src/core/process.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import {
  planPlatformRestore,
  planScratchPreparation,
  replicaRoleEnv,
  truncateStatement,
  type PlatformRestorePlan,
} from '../../src/restore/platform.js';
import { machineClientTools } from '../support/embedded.js';
import { newDatabase, withClient } from '../support/sample.js';
import { startSupabase, supabaseFingerprint, type SupabaseServer } from '../support/supabase.js';

/** Our environment without libpq variables (the URLs say everything). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  return env;
}

let tools: ClientTools;
let dir: string;
let source: SupabaseServer;
/** pg_dump -Fc of the whole project, taken as postgres. */
let wholeArchive: string;
let wholeListing: string;
/** pg_dump -Fc -n public, taken as postgres. */
let appArchive: string;
let appListing: string;
let sourceFingerprint: Record<string, string>;
const servers: SupabaseServer[] = [];

async function run(command: string, args: string[], env = cleanEnv()): Promise<string> {
  const r = await runProcess(command, args, { env, timeoutMs: 180000 });
  if (r.code !== 0) throw new Error(`${path.basename(command)} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** pg_restore --exit-on-error -L <plan> with session_replication_role = replica. */
async function restore(url: string, archive: string, listFile: string): Promise<void> {
  const list = path.join(dir, `list-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  await writeFile(list, listFile);
  await run(
    tools.pgRestore,
    ['--exit-on-error', '--no-password', '-L', list, '-d', url, archive],
    replicaRoleEnv(cleanEnv()),
  );
}

async function sql(url: string, text: string): Promise<void> {
  await withClient(url, async (c) => {
    await c.query(text);
  });
}

async function start(options: Parameters<typeof startSupabase>[0]): Promise<SupabaseServer> {
  const server = await startSupabase(options);
  servers.push(server);
  return server;
}

function entryOf(plan: PlatformRestorePlan, pattern: RegExp): { entry: string; why: string } {
  const found = plan.leftOut.find((l) => pattern.test(l.entry));
  if (!found) throw new Error(`no left-out entry matches ${pattern}`);
  return found;
}

/** Whether the plan restores the listing line matching `pattern` (present, not commented). */
function restores(plan: PlatformRestorePlan, pattern: RegExp): boolean {
  return plan.listFile.split('\n').some((line) => !line.startsWith(';') && pattern.test(line));
}

/** What the application keeps in public: tables, RLS flags and the policies on them. */
async function publicFingerprint(url: string): Promise<Record<string, string>> {
  const all = await supabaseFingerprint(url);
  const picked = Object.fromEntries(
    Object.entries(all).filter(([k]) => k.startsWith('public.') || k === 'rls'),
  );
  picked.publicPolicies = await withClient(url, async (c) => {
    await c.query(`SET search_path = ''`);
    const r = await c.query<{ d: string }>(
      `SELECT string_agg(to_jsonb(p)::text, E'\\n' ORDER BY policyname) AS d
         FROM (SELECT tablename, policyname, permissive, roles, cmd, qual, with_check
                 FROM pg_policies WHERE schemaname = 'public') p`,
    );
    return r.rows[0]?.d ?? '';
  });
  return picked;
}

beforeAll(async () => {
  tools = await machineClientTools();
  dir = await mkdtemp(path.join(os.tmpdir(), 'platform-test-'));
  source = await start({ kind: 'project', app: true });
  // The migration history the Supabase CLI keeps (as postgres) once `supabase db push` ran.
  await sql(
    source.postgresUrl(),
    `CREATE SCHEMA supabase_migrations;
     CREATE TABLE supabase_migrations.schema_migrations
       (version text NOT NULL PRIMARY KEY, statements text[], name text);
     INSERT INTO supabase_migrations.schema_migrations
       VALUES ('20260101000000', ARRAY['create table public.profiles ...'], 'init')`,
  );
  wholeArchive = path.join(dir, 'whole.dump');
  appArchive = path.join(dir, 'app.dump');
  await run(tools.pgDump, ['-Fc', '-f', wholeArchive, '-d', source.postgresUrl()]);
  await run(tools.pgDump, ['-Fc', '-n', 'public', '-f', appArchive, '-d', source.postgresUrl()]);
  wholeListing = await run(tools.pgRestore, ['--list', wholeArchive]);
  appListing = await run(tools.pgRestore, ['--list', appArchive]);
  sourceFingerprint = await supabaseFingerprint(source.postgresUrl());
  // The fixture's application is there to compare: rows in each place the restore must bring.
  expect(sourceFingerprint['auth.users']).toMatch(/^3:/);
  expect(sourceFingerprint['storage.objects']).toMatch(/^2:/);
  expect(sourceFingerprint['vault.decrypted_secrets']).toMatch(/^2:/);
}, 240000);

afterAll(async () => {
  for (const server of servers) await server.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('detectPlatform', () => {
  it('finds Supabase on a project, with its platform schemas and extensions', async () => {
    const platform = await withClient(source.postgresUrl(), detectPlatform);
    expect(platform?.name).toBe('supabase');
    expect(platform?.managedSchemas).toEqual(
      expect.arrayContaining(['auth', 'storage', 'realtime', 'vault', 'extensions', 'graphql']),
    );
    expect(platform?.managedSchemas).not.toContain('public');
    expect(platform?.extensions).toEqual(
      expect.arrayContaining([
        { name: 'supabase_vault', version: '0.2.8' },
        { name: 'pgsodium', version: '3.1.8' },
      ]),
    );
  });

  it('finds nothing on a plain database', async () => {
    const url = await newDatabase('platform_plain');
    expect(await withClient(url, detectPlatform)).toBeUndefined();
  });
});

describe('a whole-project archive into a new project, as postgres', () => {
  let target: SupabaseServer;
  let firstPlan: PlatformRestorePlan;

  beforeAll(async () => {
    target = await start({ kind: 'project' });
  }, 120000);

  it('plans a data-only restore of the platform and a whole one of the application', async () => {
    firstPlan = await withClient(target.postgresUrl(), async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the target is no Supabase project');
      return planPlatformRestore({
        listing: wholeListing,
        platform,
        target: client,
        archive: { pgRestore: tools.pgRestore, path: wholeArchive },
      });
    });
    expect(firstPlan.missingOnTarget).toEqual([]);
    expect(firstPlan.conflicts).toEqual([]);
    expect(firstPlan.truncate).toEqual([]);
    expect(firstPlan.dataOnly).toEqual(
      expect.arrayContaining([
        'auth.users',
        'auth.identities',
        'auth.sessions',
        'storage.buckets',
        'storage.objects',
        'vault.secrets',
        'pgsodium.key',
      ]),
    );
    for (const bookkeeping of [
      'auth.schema_migrations',
      'storage.migrations',
      'realtime.messages',
    ]) {
      expect(firstPlan.dataOnly).not.toContain(bookkeeping);
    }

    // pg_dump's second copy of what CREATE EXTENSION supabase_vault made, each named.
    expect(entryOf(firstPlan, /VIEW vault decrypted_secrets /).why).toMatch(
      /already on the target, where CREATE EXTENSION supabase_vault made it/,
    );
    expect(entryOf(firstPlan, /FUNCTION vault secrets_encrypt_secret_secret\(\) /).why).toMatch(
      /already on the target, where CREATE EXTENSION supabase_vault made it/,
    );
    // The services' migration history stays the target's.
    expect(entryOf(firstPlan, /TABLE DATA auth schema_migrations /).why).toMatch(
      /migration history/,
    );
    expect(entryOf(firstPlan, /TABLE DATA storage migrations /).why).toMatch(/migration history/);
    expect(entryOf(firstPlan, /TABLE DATA supabase_functions migrations /).why).toMatch(
      /migration history/,
    );
    // The platform's schemas and objects are the target's.
    expect(entryOf(firstPlan, /SCHEMA - auth /).why).toMatch(/the platform's schema auth/);
    expect(entryOf(firstPlan, /TABLE auth users /).why).toMatch(/already on the target/);
    expect(entryOf(firstPlan, /EXTENSION - supabase_vault /).why).toMatch(/already on the target/);
    expect(entryOf(firstPlan, /EVENT TRIGGER - issue_pg_net_access /).why).toMatch(/platform/);
    expect(entryOf(firstPlan, /PUBLICATION - supabase_realtime /).why).toMatch(/already/);
    // supabase_admin's default privileges in public: postgres cannot set them.
    expect(entryOf(firstPlan, /DEFAULT ACL public .* supabase_admin$/).why).toMatch(
      /not a member of supabase_admin/,
    );
    // Every left-out entry says why.
    for (const l of firstPlan.leftOut) expect(l.why.length).toBeGreaterThan(10);

    // The application's objects on the platform's tables come with it.
    expect(restores(firstPlan, /TRIGGER auth users on_auth_user_created /)).toBe(true);
    expect(restores(firstPlan, /POLICY storage objects Avatar images are publicly/)).toBe(true);
    expect(restores(firstPlan, /PUBLICATION TABLE public supabase_realtime todos /)).toBe(true);
    expect(restores(firstPlan, /TABLE public profiles /)).toBe(true);
    expect(restores(firstPlan, /ACL - SCHEMA public /)).toBe(true);
    expect(restores(firstPlan, /TABLE DATA auth users /)).toBe(true);
    expect(restores(firstPlan, /TABLE DATA vault secrets /)).toBe(true);
    expect(restores(firstPlan, /SCHEMA - supabase_migrations /)).toBe(true);
  });

  it('restores it: every application table, auth, storage and Vault come back identical', async () => {
    const migrationsBefore = await withClient(
      target.postgresUrl(),
      async (c) =>
        (await c.query<{ n: string }>('SELECT count(*)::text AS n FROM auth.schema_migrations'))
          .rows[0].n,
    );
    await restore(target.postgresUrl(), wholeArchive, firstPlan.listFile);
    expect(await supabaseFingerprint(target.postgresUrl())).toEqual(sourceFingerprint);

    await withClient(target.postgresUrl(), async (c) => {
      // Not encrypted a second time: the plaintext reads back.
      const secrets = await c.query<{ name: string; decrypted_secret: string }>(
        'SELECT name, decrypted_secret FROM vault.decrypted_secrets ORDER BY name',
      );
      expect(secrets.rows).toEqual([
        { name: 'stripe_secret_key', decrypted_secret: 'sk_test_4eC39HqLyjWDarjtT1zdp7dc' },
        { name: 'webhook_signing_secret', decrypted_secret: 'whsec_0123456789abcdef' },
      ]);
      // The trigger on auth.users is back and runs the application's function.
      const trigger = await c.query<{ fn: string }>(
        `SELECT tgfoid::regprocedure::text AS fn FROM pg_trigger
          WHERE tgrelid = 'auth.users'::regclass AND tgname = 'on_auth_user_created'`,
      );
      expect(trigger.rows).toEqual([{ fn: 'handle_new_user()' }]);
      const published = await c.query<{ t: string }>(
        `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables
          WHERE pubname = 'supabase_realtime'`,
      );
      expect(published.rows).toEqual([{ t: 'public.todos' }]);
      // The CLI's migration history, absent from the new project, came with the application.
      const history = await c.query<{ version: string }>(
        'SELECT version FROM supabase_migrations.schema_migrations',
      );
      expect(history.rows).toEqual([{ version: '20260101000000' }]);
      // The target's own migration history is untouched.
      const migrations = await c.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM auth.schema_migrations',
      );
      expect(migrations.rows[0].n).toBe(migrationsBefore);
    });
  });

  it('needs the replica role: else the foreign keys and Vault refuse or rework the rows', async () => {
    const other = await start({ kind: 'project' });
    const plan = await withClient(other.postgresUrl(), async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the target is no Supabase project');
      return planPlatformRestore({ listing: wholeListing, platform, target: client });
    });
    const plain = async (listFile: string): Promise<void> => {
      const list = path.join(dir, 'no-replica.list');
      await writeFile(list, listFile);
      await run(tools.pgRestore, [
        '--exit-on-error',
        '--no-password',
        '-L',
        list,
        '-d',
        other.postgresUrl(),
        wholeArchive,
      ]);
    };
    // The target's platform tables keep their foreign keys: rows come in the archive's order.
    await expect(plain(plan.listFile)).rejects.toThrow(/identities_user_id_fkey/);
    // Vault's trigger fires on COPY and encrypts the (already encrypted) secrets again.
    const vaultOnly = plan.listFile
      .split('\n')
      .map((line) =>
        /^\d+;.* TABLE DATA (vault secrets|pgsodium key) /.test(line) ? line : `;${line}`,
      )
      .join('\n');
    await plain(vaultOnly);
    const fingerprint = await supabaseFingerprint(other.postgresUrl());
    expect(fingerprint['vault.decrypted_secrets']).toMatch(/^2:/);
    expect(fingerprint['vault.decrypted_secrets']).not.toBe(
      sourceFingerprint['vault.decrypted_secrets'],
    );
  });

  it('restores it again over the same project: truncate, drop the application, restore', async () => {
    // What the real restore must do first: empty the application's schema (dropping public
    // also drops the application's trigger on auth.users, which depends on its function).
    await sql(target.postgresUrl(), 'DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    const plan = await withClient(target.postgresUrl(), async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the target is no Supabase project');
      return planPlatformRestore({
        listing: wholeListing,
        platform,
        target: client,
        archive: { pgRestore: tools.pgRestore, path: wholeArchive },
      });
    });
    expect(plan.missingOnTarget).toEqual([]);
    expect(plan.conflicts).toEqual([]);
    expect(plan.truncate).toEqual(
      expect.arrayContaining([
        'auth.users',
        'auth.identities',
        'auth.sessions',
        'storage.buckets',
        'storage.objects',
        'vault.secrets',
        'pgsodium.key',
        'supabase_migrations.schema_migrations',
      ]),
    );
    // The application's policies on storage.objects survived the drop: named, not recreated.
    expect(entryOf(plan, /POLICY storage objects Avatar images are publicly/).why).toMatch(
      /already on the target/,
    );
    // The trigger on auth.users went with public: it comes back.
    expect(restores(plan, /TRIGGER auth users on_auth_user_created /)).toBe(true);

    const truncate = truncateStatement(plan);
    if (!truncate) throw new Error('nothing to truncate');
    await sql(target.postgresUrl(), truncate);
    await restore(target.postgresUrl(), wholeArchive, plan.listFile);
    expect(await supabaseFingerprint(target.postgresUrl())).toEqual(sourceFingerprint);
  });
});

describe('a whole-project archive into a supabase/postgres service container', () => {
  let image: SupabaseServer;

  beforeAll(async () => {
    image = await start({ kind: 'image' });
  }, 120000);

  it("cannot take the project's rows in its own postgres database (the image's platform is older)", async () => {
    const plan = await withClient(image.postgresUrl(), async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the image is no Supabase database');
      return planPlatformRestore({ listing: wholeListing, platform, target: client });
    });
    // GoTrue, storage-api and the webhooks migrate these; a service container runs none.
    expect(plan.missingOnTarget).toEqual(
      expect.arrayContaining([
        'table auth.identities',
        'table auth.sessions',
        'schema supabase_functions',
      ]),
    );
  });

  it('restores it whole into a new database, leaving out what CREATE EXTENSION made', async () => {
    await sql(image.adminUrl(), 'CREATE DATABASE restored');
    const url = image.adminUrl('restored');

    let prep = await withClient(url, (client) =>
      planScratchPreparation({ listing: wholeListing, target: client }),
    );
    // The services' roles: the image lacks those of realtime and the webhooks. The restore's
    // roles step makes them (here by hand, as the backup holds no roles file).
    expect(prep.missingOnTarget).toEqual([
      'role supabase_functions_admin',
      'role supabase_realtime_admin',
    ]);
    await sql(
      image.adminUrl(),
      'CREATE ROLE supabase_functions_admin NOLOGIN; CREATE ROLE supabase_realtime_admin NOLOGIN',
    );
    prep = await withClient(url, (client) =>
      planScratchPreparation({ listing: wholeListing, target: client }),
    );
    expect(prep.missingOnTarget).toEqual([]);
    expect(prep.conflicts).toEqual([]);
    expect(prep.kept).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/EXTENSION - supabase_vault /),
        expect.stringMatching(/EXTENSION - pg_net /),
        expect.stringMatching(/SCHEMA - auth /),
      ]),
    );
    await restore(url, wholeArchive, prep.listFile);
    // Prepared, the database is no longer new: a second preparation would say so.
    const again = await withClient(url, (client) =>
      planScratchPreparation({ listing: wholeListing, target: client }),
    );
    expect(again.conflicts).toEqual(
      expect.arrayContaining(['schema auth', 'extension supabase_vault']),
    );

    const plan = await withClient(url, async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the prepared database is no Supabase database');
      return planPlatformRestore({
        listing: wholeListing,
        platform,
        target: client,
        mode: 'scratch',
      });
    });
    expect(plan.missingOnTarget).toEqual([]);
    // Left out: only what the preparation made (schemas, extensions) and Vault's second copy.
    for (const { entry } of plan.leftOut) {
      expect(entry).toMatch(
        /(SCHEMA|EXTENSION) - |VIEW vault decrypted_secrets |FUNCTION vault secrets_encrypt_secret_secret\(\) /,
      );
    }
    expect(entryOf(plan, /VIEW vault decrypted_secrets /).why).toMatch(
      /where CREATE EXTENSION supabase_vault made it/,
    );
    expect(entryOf(plan, /FUNCTION vault secrets_encrypt_secret_secret\(\) /).why).toMatch(
      /where CREATE EXTENSION supabase_vault made it/,
    );
    // Everything else comes from the archive: the platform as the source had it.
    expect(restores(plan, /TABLE auth identities /)).toBe(true);
    expect(restores(plan, /TABLE DATA auth schema_migrations /)).toBe(true);
    expect(restores(plan, /ACL - SCHEMA auth /)).toBe(true);
    const truncate = truncateStatement(plan);
    if (truncate) await sql(url, truncate);
    await restore(url, wholeArchive, plan.listFile);
    expect(await supabaseFingerprint(url)).toEqual(sourceFingerprint);
    // The container's own database is untouched.
    await withClient(image.adminUrl(), async (c) => {
      const r = await c.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace`,
      );
      expect(r.rows[0].n).toBe('0');
    });
  });
});

describe('an app-only archive (pg_dump -n public) into a project', () => {
  it('says a new project lacks the auth users the application refers to', async () => {
    const fresh = await start({ kind: 'project' });
    const plan = await withClient(fresh.postgresUrl(), async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the target is no Supabase project');
      return planPlatformRestore({
        listing: appListing,
        platform,
        target: client,
        archive: { pgRestore: tools.pgRestore, path: appArchive },
      });
    });
    expect(plan.missingOnTarget).toEqual([
      expect.stringMatching(/^rows of auth\.users: profiles_id_fkey of public\.profiles/),
    ]);
    // And it is right: the foreign key cannot be made over profiles without their users.
    await expect(restore(fresh.postgresUrl(), appArchive, plan.listFile)).rejects.toThrow(
      /profiles_id_fkey/,
    );
  });

  it('restores public into a project that holds the users, keeping schema public as it is', async () => {
    const project = await start({ kind: 'project', app: true });
    // Lose the application (not the auth users), as an app-only restore would find it.
    await sql(
      project.postgresUrl(),
      `DROP SCHEMA public CASCADE; CREATE SCHEMA public;
       ALTER SCHEMA public OWNER TO pg_database_owner`,
    );
    const plan = await withClient(project.postgresUrl(), async (client) => {
      const platform = await detectPlatform(client);
      if (!platform) throw new Error('the target is no Supabase project');
      return planPlatformRestore({
        listing: appListing,
        platform,
        target: client,
        archive: { pgRestore: tools.pgRestore, path: appArchive },
      });
    });
    expect(plan.missingOnTarget).toEqual([]);
    expect(plan.conflicts).toEqual([]);
    expect(plan.dataOnly).toEqual([]);
    // pg_dump -n public writes CREATE SCHEMA public: left out, its comment and grants kept.
    expect(entryOf(plan, /SCHEMA - public /).why).toMatch(
      /already on the target .*comment and privileges are restored/,
    );
    expect(restores(plan, /COMMENT - SCHEMA public /)).toBe(true);
    expect(restores(plan, /ACL - SCHEMA public /)).toBe(true);
    await restore(project.postgresUrl(), appArchive, plan.listFile);
    expect(await publicFingerprint(project.postgresUrl())).toEqual(
      await publicFingerprint(source.postgresUrl()),
    );
    await withClient(project.postgresUrl(), async (c) => {
      const r = await c.query<{ comment: string; owner: string }>(
        `SELECT obj_description('public'::regnamespace, 'pg_namespace') AS comment,
                nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'public'`,
      );
      expect(r.rows).toEqual([{ comment: 'standard public schema', owner: 'pg_database_owner' }]);
    });
  });
});
