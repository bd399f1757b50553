import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { MemoryLogger } from '../../src/core/logger.js';
import { runProcess } from '../../src/core/process.js';
import { parseConnectionString } from '../../src/postgres/connection.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import {
  CommitWithholder,
  RESTORE_APPLICATION_NAME,
  nonTransactionalStatements,
  parseArchiveEntries,
  planReplacement,
  readArchiveContents,
  restoreAtomically,
  type ReplacementPlan,
} from '../../src/restore/replace.js';
import { machineClientTools } from '../support/embedded.js';
import { sharedPostgresUrl, uniqueName } from '../support/env.js';
import { SAMPLE_SQL, newDatabase, urlOfDatabase, withClient } from '../support/sample.js';

const PASSWORD = 'source-secret-pw';

let tools: ClientTools;
let work: string;

beforeAll(async () => {
  tools = await machineClientTools();
  work = mkdtempSync(path.join(os.tmpdir(), 'replace-'));
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/**
 * Objects that live at database level, outside every schema, and that a whole-database archive
 * creates again: an extension, a transform, a cast, an access method, a foreign-data wrapper with
 * a server and user mappings, a procedural language, an event trigger, publications.
 */
const DATABASE_LEVEL_SQL = `
CREATE EXTENSION citext;
ALTER TABLE app.customers ADD COLUMN nickname citext;
CREATE FUNCTION public.int_from_sql(internal) RETURNS internal LANGUAGE internal IMMUTABLE AS 'int4recv';
CREATE TRANSFORM FOR integer LANGUAGE sql (FROM SQL WITH FUNCTION public.int_from_sql(internal));
CREATE TYPE app.money_pair AS (amount numeric, currency text);
CREATE FUNCTION app.to_money_pair(numeric) RETURNS app.money_pair LANGUAGE sql IMMUTABLE AS $$SELECT ROW($1, 'EUR')::app.money_pair$$;
CREATE CAST (numeric AS app.money_pair) WITH FUNCTION app.to_money_pair(numeric);
CREATE ACCESS METHOD heap_copy TYPE TABLE HANDLER heap_tableam_handler;
CREATE TABLE audit.archived (id int PRIMARY KEY, what text) USING heap_copy;
INSERT INTO audit.archived SELECT g, 'archived ' || g FROM generate_series(1, 50) g;
CREATE FOREIGN DATA WRAPPER files_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER files_fdw OPTIONS (root '/srv');
CREATE USER MAPPING FOR PUBLIC SERVER files;
CREATE USER MAPPING FOR CURRENT_USER SERVER files OPTIONS (token 'x');
CREATE FUNCTION public.plsample_handler() RETURNS language_handler LANGUAGE c AS 'plpgsql', 'plpgsql_call_handler';
CREATE LANGUAGE plsample HANDLER public.plsample_handler;
CREATE FUNCTION audit.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$;
CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION audit.note_ddl();
SET client_min_messages = error;
CREATE PUBLICATION orders_pub FOR TABLE app.customers;
CREATE PUBLICATION audit_pub FOR TABLES IN SCHEMA audit;
`;

/** A big table, so that a restore spends seconds in its COPY. */
const BIG_SQL = `
CREATE TABLE public.big (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO public.big SELECT g, md5(g::text) || repeat('x', 60) FROM generate_series(1, 1500000) g;
`;

interface Snapshot {
  schema: string;
  data: Record<string, string>;
}

async function psqlRun(url: string, sql: string): Promise<void> {
  const r = await runProcess(tools.psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url], {
    input: sql,
  });
  if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
}

/** The schema as `pg_dump --schema-only` prints it, and each table's row count and contents. */
async function snapshot(url: string): Promise<Snapshot> {
  const r = await runProcess(tools.pgDump, ['--schema-only', '-d', url]);
  if (r.code !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
  // \restrict and \unrestrict carry a random key in every dump.
  const schema = r.stdout
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join('\n');
  const data = await withClient(url, async (c) => {
    const out: Record<string, string> = {};
    const tables = await c.query<{ s: string; t: string }>(`
      SELECT n.nspname AS s, c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
         AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2`);
    for (const { s, t } of tables.rows) {
      const q = await c.query<{ n: string; h: string | null }>(
        `SELECT count(*)::text AS n, md5(string_agg(to_jsonb(x)::text, E'\\n' ORDER BY to_jsonb(x)::text)) AS h
           FROM ONLY "${s}"."${t}" x`,
      );
      out[`${s}.${t}`] = `${q.rows[0].n} ${q.rows[0].h ?? '-'}`;
    }
    const lo = await c.query<{ h: string | null }>(
      `SELECT string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid) AS h FROM pg_largeobject_metadata`,
    );
    out['(large objects)'] = lo.rows[0].h ?? '-';
    const seq = await c.query<{ h: string | null }>(
      `SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY 1) AS h FROM pg_sequences`,
    );
    out['(sequences)'] = seq.rows[0].h ?? '-';
    return out;
  });
  return { schema, data };
}

async function dumpArchive(url: string, name: string, args: string[] = []): Promise<string> {
  const file = path.join(work, `${name}.pgc`);
  const r = await runProcess(tools.pgDump, ['-Fc', '-f', file, ...args, '-d', url]);
  if (r.code !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
  return file;
}

function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/** A new database with the contents of `template` (no session may be connected to it). */
async function copyOf(templateUrl: string, prefix: string): Promise<string> {
  const name = uniqueName(prefix).replace(/-/g, '_');
  await withClient(sharedPostgresUrl(), (c) =>
    c.query(`CREATE DATABASE "${name}" TEMPLATE "${databaseOf(templateUrl)}"`),
  );
  return urlOfDatabase(sharedPostgresUrl(), name);
}

async function plan(
  url: string,
  archivePath: string,
  schemas: string[] = [],
): Promise<ReplacementPlan> {
  const archive = await readArchiveContents({ pgRestore: tools.pgRestore, archivePath });
  return withClient(url, (c: pg.Client) =>
    planReplacement(c, { selection: { schemas, excludeSchemas: [] }, archive }),
  );
}

function restore(
  url: string,
  archivePath: string,
  p: ReplacementPlan,
  logger = new MemoryLogger(),
) {
  return restoreAtomically({
    pgRestore: tools.pgRestore,
    psql: tools.psql,
    archivePath,
    connection: parseConnectionString(url),
    database: databaseOf(url),
    env: process.env,
    logger,
    plan: p,
    keepOwnership: true,
  });
}

async function restoringSessions(url: string): Promise<number> {
  return withClient(url, async (c) => {
    const r = await c.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
      [RESTORE_APPLICATION_NAME],
    );
    return r.rowCount ?? 0;
  });
}

/** Waits until the restoring session has copied `rows` rows into public.big; returns its pid. */
async function whenCopying(url: string, rows: number): Promise<number> {
  return withClient(url, async (c) => {
    for (let i = 0; i < 1200; i++) {
      const r = await c
        .query<{ pid: number; n: string }>(
          `SELECT a.pid, p.tuples_processed::text AS n
           FROM pg_stat_activity a JOIN pg_stat_progress_copy p ON p.pid = a.pid
          WHERE a.datname = current_database() AND a.application_name = $1
            AND a.query LIKE 'COPY public.big %'`,
          [RESTORE_APPLICATION_NAME],
        )
        .catch(() => ({ rows: [] as { pid: number; n: string }[] }));
      if (r.rows.length > 0 && Number(r.rows[0].n) >= rows) return r.rows[0].pid;
      await sleep(50);
    }
    throw new Error('the restore never got to copy public.big');
  });
}

/** Processes whose command line contains all of `parts`. */
function processesWith(...parts: string[]): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ');
        return parts.every((part) => cmd.includes(part));
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('pure parts', () => {
  it('reads pg_restore --list lines, database-level entries included', () => {
    const entries = parseArchiveEntries(
      [
        ';',
        '; Archive created at 2026-01-01',
        '2; 3079 16385 EXTENSION - citext ',
        '3427; 3576 16665 TRANSFORM - TRANSFORM FOR integer LANGUAGE sql ',
        ';3428; 1417 16652 SERVER - files postgres',
        '218; 1259 16626 TABLE public profiles postgres',
      ].join('\n'),
    );
    expect(entries).toEqual([
      { dumpId: 2, catalog: 3079, oid: 16385, text: 'EXTENSION - citext ' },
      {
        dumpId: 3427,
        catalog: 3576,
        oid: 16665,
        text: 'TRANSFORM - TRANSFORM FOR integer LANGUAGE sql ',
      },
      { dumpId: 218, catalog: 1259, oid: 16626, text: 'TABLE public profiles postgres' },
    ]);
  });

  it('finds statements that cannot run in a transaction, not words inside bodies, strings or data', () => {
    const sql = [
      '\\restrict abc',
      "SET standard_conforming_strings = 'on';",
      'CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$',
      'BEGIN',
      '  COMMIT;',
      '  VACUUM;',
      'END $body$;',
      "COMMENT ON TABLE t IS 'BEGIN; VACUUM; \\connect x';",
      "SELECT E'it\\'s; VACUUM';",
      '/* VACUUM; /* nested */ COMMIT; */',
      '-- COMMIT;',
      'COPY public.t (a) FROM stdin;',
      'VACUUM',
      '\\connect other',
      '\\.',
      'CREATE INDEX CONCURRENTLY i ON t (a);',
      'COMMIT;',
      'ALTER SYSTEM SET work_mem = 1;',
      "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (connect = false, slot_name = 's');",
      "CREATE SUBSCRIPTION s2 CONNECTION 'x' PUBLICATION p;",
      '\\connect - someone',
      '\\unrestrict abc',
    ].join('\n');
    expect(nonTransactionalStatements(sql)).toEqual([
      'CREATE INDEX CONCURRENTLY i ON t (a)',
      'COMMIT',
      'ALTER SYSTEM SET work_mem = 1',
      "CREATE SUBSCRIPTION s2 CONNECTION '' PUBLICATION p",
      'psql meta-command \\connect',
    ]);
  });

  it('withholds only the final COMMIT and its footer, whatever the chunks', async () => {
    const body =
      'BEGIN;\nCOPY t (a) FROM stdin;\nCOMMIT;\n--x\n\\N\nrow\n\\.\n\nALTER TABLE t OWNER TO x;\n';
    const footer =
      '\nCOMMIT;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict k\n\n';
    const text = body + footer.slice(1);
    for (const size of [1, 2, 3, 7, 8, 9, 64, text.length]) {
      const w = new CommitWithholder();
      const out: Buffer[] = [];
      w.on('data', (b: Buffer) => out.push(b));
      for (let i = 0; i < text.length; i += size) w.write(Buffer.from(text.slice(i, i + size)));
      w.end();
      await new Promise((resolve) => w.on('end', resolve));
      const passed = Buffer.concat(out).toString();
      expect(passed + w.withheld.toString()).toBe(text);
      expect(passed).toBe(body.slice(0, -1));
      expect(w.endsWithCommit).toBe(true);
    }
    const cut = new CommitWithholder();
    cut.end(Buffer.from('BEGIN;\nCREATE TABLE t ();\nCOMMI'));
    cut.resume();
    await new Promise((resolve) => cut.on('end', resolve));
    expect(cut.endsWithCommit).toBe(false);
  });
});

describe('a real restore in one transaction', () => {
  let bigSource: string;
  let bigArchive: string;

  beforeAll(async () => {
    bigSource = await newDatabase('replace_big');
    await psqlRun(bigSource, SAMPLE_SQL + BIG_SQL);
    bigArchive = await dumpArchive(bigSource, 'big');
    // The target's state differs from the archive's.
    await psqlRun(
      bigSource,
      `DELETE FROM public.big WHERE id % 3 = 0; CREATE TABLE app.added (x int); INSERT INTO app.added VALUES (1);
       UPDATE app.customers SET name = 'changed' WHERE id < 10;`,
    );
  }, 300_000);

  it('(a) leaves the target exactly as it was when pg_restore is killed midway', async () => {
    const target = await copyOf(bigSource, 'replace_kill');
    const before = await snapshot(target);
    const p = await plan(target, bigArchive);
    expect(p.summary.schemas).toEqual(['app', 'audit', 'public']);
    const running = restore(target, bigArchive, p);
    const outcome = running.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    await whenCopying(target, 200_000);
    const pids = processesWith(tools.pgRestore, bigArchive);
    expect(pids).toHaveLength(1);
    process.kill(pids[0], 'SIGKILL');
    const error = await outcome;
    expect(error).toBeInstanceOf(Error);
    expect(error?.message).toMatch(/^pg_restore was killed by SIGKILL/);
    expect(error?.message).toMatch(/Nothing was committed: the target is as it was\./);
    expect(await restoringSessions(target)).toBe(0);
    expect(await snapshot(target)).toEqual(before);
  });

  it('(a) leaves the target as it was when pg_restore stops on its own error midway (a truncated archive)', async () => {
    const target = await copyOf(bigSource, 'replace_trunc');
    const before = await snapshot(target);
    const truncated = path.join(work, 'truncated.pgc');
    await runProcess('cp', [bigArchive, truncated]);
    truncateSync(truncated, Math.floor(statSync(bigArchive).size * 0.6));
    // pg_restore writes part of public.big's rows before it finds the end of the file: psql,
    // left to itself at the end of its input, would end the COPY there and commit.
    const partial = await runProcess(tools.pgRestore, [
      '--single-transaction',
      '--file=-',
      truncated,
    ]);
    expect(partial.code).toBe(1);
    expect(partial.stdout).toMatch(/^COPY public\.big .* FROM stdin;\n1\t/m);
    expect(partial.stdout).not.toMatch(/^COMMIT;$/m);
    const p = await plan(target, truncated);
    const error = await restore(target, truncated, p).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(
      /^pg_restore exited with code 1: pg_restore: error: could not read from input file: end of file\n/,
    );
    expect(await snapshot(target)).toEqual(before);
  });

  it('(c) leaves the target as it was when the server terminates the restoring session', async () => {
    const target = await copyOf(bigSource, 'replace_term');
    const before = await snapshot(target);
    const p = await plan(target, bigArchive);
    const outcome = restore(target, bigArchive, p).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const pid = await whenCopying(target, 200_000);
    await withClient(target, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
    const error = await outcome;
    expect(error?.message).toMatch(/^psql exited with code 2 at line \d+ of pg_restore's SQL: /);
    expect(error?.message).toMatch(/FATAL: +terminating connection due to administrator command/);
    expect(await restoringSessions(target)).toBe(0);
    expect(processesWith(tools.pgRestore, bigArchive)).toEqual([]);
    expect(await snapshot(target)).toEqual(before);
  });
});

describe('database-level objects', () => {
  let source: string;
  let archive: string;
  let sourceState: Snapshot;

  beforeAll(async () => {
    source = await newDatabase('replace_dblevel');
    await psqlRun(source, SAMPLE_SQL + DATABASE_LEVEL_SQL);
    archive = await dumpArchive(source, 'dblevel');
    sourceState = await snapshot(source);
  });

  it('(b) restores a whole-database backup over a copy of its database: transform, server and all', async () => {
    const target = await copyOf(source, 'replace_copy');
    await psqlRun(
      target,
      `DELETE FROM app.orders WHERE id % 2 = 0; UPDATE public.documents SET title = 'edited';
       SELECT lo_unlink(blob) FROM public.documents WHERE blob IS NOT NULL;
       SELECT lo_from_bytea(0, 'a large object made after the backup');
       INSERT INTO audit.archived VALUES (1000, 'new');`,
    );
    expect((await snapshot(target)).data).not.toEqual(sourceState.data);
    const p = await plan(target, archive);
    expect(p.summary.schemas).toEqual(['app', 'audit', 'public']);
    expect(p.summary.extensions).toEqual(['citext']);
    expect(p.summary.other).toEqual(
      expect.arrayContaining([
        'event trigger note_ddl',
        'publication audit_pub',
        'publication orders_pub',
        'transform for integer language sql',
        'cast from numeric to app.money_pair',
        'server files',
        'foreign-data wrapper files_fdw',
        'access method heap_copy',
        'language plsample',
      ]),
    );
    // The large object the archive carries was unlinked by the change; the new one is not the archive's.
    expect(p.summary.largeObjects).toBe(0);
    expect(p.outside).toEqual([]);
    const logger = new MemoryLogger();
    await restore(target, archive, p, logger);
    expect(logger.lines.join('\n')).toMatch(/Replaced the target in one transaction/);
    const after = await snapshot(target);
    expect(after.schema).toEqual(sourceState.schema);
    // The large object made after the backup is not the archive's and is kept.
    const { ['(large objects)']: los, ...data } = after.data;
    const { ['(large objects)']: sourceLos, ...sourceData } = sourceState.data;
    expect(data).toEqual(sourceData);
    expect(los.startsWith(sourceLos)).toBe(true);
    expect(los.split(',')).toHaveLength(2);
  });

  it('(e) restores a whole-database backup over its own database twice in a row', async () => {
    const target = await copyOf(source, 'replace_self');
    for (let round = 0; round < 2; round++) {
      const p = await plan(target, archive);
      expect(p.summary.largeObjects).toBe(1);
      expect(p.statements[0]).toBe('DROP EVENT TRIGGER IF EXISTS note_ddl');
      await restore(target, archive, p);
      expect(await snapshot(target)).toEqual(sourceState);
    }
  });

  it('(f) carries psql error text, never the password', async () => {
    const target = await copyOf(source, 'replace_err');
    const before = await snapshot(target);
    expect(target).toContain(PASSWORD);
    // A plan that empties no schema (only the archive's large object): its first CREATE fails.
    const p = await plan(target, archive, ['no_such_schema']);
    expect(p.summary).toEqual({ schemas: [], extensions: [], other: [], largeObjects: 1 });
    const error = await restore(target, archive, p).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(
      /^psql exited with code 3 at line \d+ of pg_restore's SQL: psql:<stdin>:\d+: ERROR: +schema "app" already exists/,
    );
    expect(error?.message).toMatch(/Nothing was committed: the target is as it was\.$/);
    expect(error?.message).not.toContain(PASSWORD);
    expect(await snapshot(target)).toEqual(before);

    // psql's text would name the password (a schema so named): it is masked.
    await psqlRun(target, `CREATE SCHEMA "${PASSWORD}"`);
    const named = await newDatabase('replace_named');
    await psqlRun(named, `CREATE SCHEMA "${PASSWORD}"`);
    const namedArchive = await dumpArchive(named, 'named');
    const masked = await restore(
      target,
      namedArchive,
      await plan(target, namedArchive, ['x']),
    ).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(masked?.message).toMatch(/ERROR: +schema "\*\*\*" already exists/);
    expect(masked?.message).not.toContain(PASSWORD);

    // A failing statement of the plan is named, with psql's error.
    const role = uniqueName('restorer').replace(/-/g, '_');
    const rolePassword = `pw-${uniqueName('x')}`;
    await withClient(sharedPostgresUrl(), (c) =>
      c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${rolePassword}'`),
    );
    const url = new URL(target);
    url.username = role;
    url.password = rolePassword;
    const asRole = url.toString();
    const denied = await restore(asRole, archive, await plan(target, archive)).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(denied?.message).toMatch(
      /^psql exited with code 3 while emptying the target, at: DROP EVENT TRIGGER IF EXISTS note_ddl: psql:<stdin>:\d+: ERROR: +must be owner of event trigger note_ddl/,
    );
    expect(denied?.message).not.toContain(rolePassword);
    expect(await snapshot(target)).toEqual({
      ...before,
      schema: expect.stringContaining(`CREATE SCHEMA "${PASSWORD}"`) as unknown as string,
    });
    await withClient(sharedPostgresUrl(), (c) => c.query(`DROP ROLE ${role}`));
  });
});

describe('a backup of some schemas', () => {
  it('(d) lists what a CASCADE reaches outside the schemas: a trigger on auth.users, a view, a foreign key, a default', async () => {
    const url = await newDatabase('replace_outside');
    await psqlRun(
      url,
      `CREATE SCHEMA auth;
       CREATE TABLE auth.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text NOT NULL);
       CREATE TABLE public.profiles (id uuid PRIMARY KEY REFERENCES auth.users (id), name text);
       CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
         BEGIN INSERT INTO public.profiles (id) VALUES (NEW.id); RETURN NEW; END $$;
       CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
         FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
       CREATE VIEW auth.profile_names AS SELECT p.id, p.name FROM public.profiles p;
       CREATE FUNCTION public.new_token() RETURNS text LANGUAGE sql AS $$SELECT md5(random()::text)$$;
       CREATE TABLE auth.sessions (id serial PRIMARY KEY, profile_id uuid REFERENCES public.profiles (id),
                                   token text DEFAULT public.new_token());
       INSERT INTO auth.users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 20) g;
       INSERT INTO auth.sessions (profile_id) SELECT id FROM public.profiles LIMIT 5;`,
    );
    const archive = await dumpArchive(url, 'outside', ['--schema=public']);
    const p = await plan(url, archive, ['public']);
    // pg_dump -n public creates public: it is dropped, not re-created.
    expect(p.statements).toEqual(['DROP SCHEMA IF EXISTS "public" CASCADE']);
    expect(p.summary).toEqual({ schemas: ['public'], extensions: [], other: [], largeObjects: 0 });
    expect(p.outside).toEqual([
      'constraint sessions_profile_id_fkey on table auth.sessions',
      'default value for column token of table auth.sessions',
      'trigger on_auth_user_created on table auth.users',
      'view auth.profile_names',
    ]);

    // Of those, the trigger is re-created after the restore from the target's own definition.
    expect(p.recreate).toEqual([
      {
        what: 'trigger on_auth_user_created on table auth.users',
        sql: expect.stringMatching(
          /^CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth\.users FOR EACH ROW EXECUTE FUNCTION public\.handle_new_user\(\)$/,
        ),
      },
    ]);

    // What the plan said is what happens: the restore brings public back and the trigger, not
    // the others.
    const before = await snapshot(url);
    await restore(url, archive, p);
    const after = await snapshot(url);
    expect(after.data).toEqual(before.data);
    expect(after.schema).toMatch(/CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth\.users/);
    expect(after.schema).not.toMatch(/profile_names|sessions_profile_id_fkey/);
    expect(after.schema).not.toMatch(/DEFAULT public\.new_token\(\)/);
    expect(after.schema).toMatch(/CREATE FUNCTION public\.handle_new_user\(\)/);
  });

  it('re-creates public as it was when the archive does not create it, though it lists it', async () => {
    const url = await newDatabase('replace_public');
    const owner = uniqueName('owner').replace(/-/g, '_');
    await withClient(sharedPostgresUrl(), (c) => c.query(`CREATE ROLE ${owner}`));
    await psqlRun(
      url,
      `COMMENT ON SCHEMA public IS 'the app'; ALTER SCHEMA public OWNER TO ${owner};
       CREATE TABLE public.t (a int); INSERT INTO public.t VALUES (1);
       CREATE SCHEMA keep; CREATE TABLE keep.k (a int);`,
    );
    const archive = await dumpArchive(url, 'public-whole', ['--exclude-schema=keep']);
    const contents = await readArchiveContents({
      pgRestore: tools.pgRestore,
      archivePath: archive,
    });
    // With an owner other than pg_database_owner, pg_dump lists public (to set its owner) but
    // writes "-- *not* creating schema, since initdb creates it" for it.
    expect(contents.entries.map((e) => e.text)).toContain(`SCHEMA - public ${owner}`);
    expect(contents.createsPublic).toBe(false);
    const p = await withClient(url, (c) =>
      planReplacement(c, {
        selection: { schemas: [], excludeSchemas: ['keep'] },
        archive: contents,
      }),
    );
    expect(p.statements).toEqual([
      'DROP SCHEMA IF EXISTS "public" CASCADE',
      `CREATE SCHEMA public AUTHORIZATION "${owner}"`,
      'GRANT USAGE ON SCHEMA public TO PUBLIC',
      "COMMENT ON SCHEMA public IS 'the app'",
    ]);
    const before = await snapshot(url);
    await psqlRun(url, 'INSERT INTO public.t VALUES (2)');
    await restore(url, archive, p);
    expect(await snapshot(url)).toEqual(before);
    await withClient(sharedPostgresUrl(), async (c) => {
      await c.query(`DROP DATABASE "${databaseOf(url)}" WITH (FORCE)`);
      await c.query(`DROP ROLE ${owner}`);
    });
  });
});
