import { readFile, writeFile } from 'node:fs/promises';
import type pg from 'pg';
import { ConfigurationError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { describeExit, runProcess } from '../core/process.js';
import {
  childEnv,
  describeConnection,
  quoteIdent,
  quoteLiteral,
  type ConnectionInfo,
} from '../postgres/connection.js';
import type { ClientTools } from '../postgres/tools.js';
import { qualified, type ChosenTable } from './scratch.js';

/** What marks a schema as an extract's, so that only such a schema is ever replaced. */
export const EXTRACT_COMMENT = 'pg-backup extract';

/**
 * Moves the chosen tables of a scratch copy into `schema`, with the enum, domain, range (with its
 * multirange) and composite types their columns use and the sequences their defaults draw from,
 * and leaves out what would reach beyond it: triggers, and foreign keys to tables that were not
 * chosen.
 */
export async function buildSideSchema(
  client: pg.Client,
  tables: ChosenTable[],
  schema: string,
  backupId: string,
): Promise<void> {
  const names = new Map<string, ChosenTable>();
  for (const t of tables) {
    const other = names.get(t.name);
    if (other) {
      throw new ConfigurationError(
        `Input 'tables': ${other.schema}.${t.name} and ${t.schema}.${t.name} share a name, and an extract puts its tables into one schema: extract them one at a time.`,
      );
    }
    names.set(t.name, t);
  }
  await refuseExtensionTables(client, tables);
  const s = quoteIdent(schema);
  await client.query(`CREATE SCHEMA ${s}`);
  await client.query(
    `COMMENT ON SCHEMA ${s} IS ${quoteLiteral(`${EXTRACT_COMMENT}: tables of backup ${backupId}`)}`,
  );
  for (const t of tables) {
    await client.query(`ALTER TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)} SET SCHEMA ${s}`);
  }
  for (const statement of await sideSchemaChanges(client, schema)) await client.query(statement);
}

/**
 * A table an extension makes (Vault's vault.secrets, PostGIS's spatial_ref_sys) is refused:
 * pg_dump writes only its rows, as CREATE EXTENSION makes the table, so it cannot go into a
 * schema of its own. Export takes such a table.
 */
async function refuseExtensionTables(client: pg.Client, tables: ChosenTable[]): Promise<void> {
  const members = await client.query<{ name: string; extension: string }>(
    `SELECT c.oid::regclass::text AS name, e.extname AS extension
       FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN pg_extension e ON e.oid = d.refobjid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
        AND d.deptype = 'e' AND c.oid = ANY($1::text[]::regclass[])
      ORDER BY 1`,
    [tables.map(qualified)],
  );
  if (members.rows.length === 0) return;
  throw new ConfigurationError(
    `Input 'tables': ${members.rows.map((m) => `${m.name} (of extension ${m.extension})`).join(', ')} ` +
      `belong to an extension, which makes them itself: an extract cannot move them into a schema of their own. ` +
      `Leave them out, or export them (mode: export). Nothing was changed.`,
  );
}

/** The statements that bring the side schema's types and sequences in, and cut what reaches out. */
async function sideSchemaChanges(client: pg.Client, schema: string): Promise<string[]> {
  const r = await client.query<{ statement: string }>(
    `WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
     types AS (
       SELECT DISTINCT t.oid, t.typtype FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid AND c.relnamespace = (SELECT oid FROM ns)
         JOIN pg_type t0 ON t0.oid = a.atttypid
         JOIN pg_type t ON t.oid = CASE WHEN t0.typcategory = 'A' THEN t0.typelem ELSE t0.oid END
        WHERE a.attnum > 0 AND NOT a.attisdropped AND t.typnamespace <> (SELECT oid FROM ns)
          AND t.typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
          AND (t.typtype IN ('e', 'd', 'r')
               OR t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                                AND d.objid = t.oid AND d.deptype = 'e')),
     sequences AS (
       SELECT DISTINCT s.oid FROM pg_attrdef ad
         JOIN pg_class c ON c.oid = ad.adrelid AND c.relnamespace = (SELECT oid FROM ns)
         JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                         AND d.refclassid = 'pg_class'::regclass
         JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
        WHERE s.relnamespace <> (SELECT oid FROM ns)
          AND NOT EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass
                                AND o.objid = s.oid AND o.deptype IN ('a', 'i')))
     SELECT 1 AS step, false AS part, format('ALTER %s %s SET SCHEMA %I',
              CASE WHEN typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, oid::regtype, $1) AS statement
       FROM types
     UNION ALL
     -- A range's multirange stays behind when the range moves; the dump names it.
     SELECT 1, false, format('ALTER TYPE %s SET SCHEMA %I', r.rngmultitypid::regtype, $1)
       FROM types JOIN pg_range r ON r.rngtypid = types.oid
      WHERE (SELECT typnamespace FROM pg_type WHERE oid = r.rngmultitypid) <> (SELECT oid FROM ns)
     UNION ALL
     SELECT 2, false, format('ALTER SEQUENCE %s SET SCHEMA %I', oid::regclass, $1) FROM sequences
     UNION ALL
     SELECT 3, c.relispartition, format('DROP TRIGGER IF EXISTS %I ON %s', t.tgname, c.oid::regclass)
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      WHERE c.relnamespace = (SELECT oid FROM ns) AND NOT t.tgisinternal
     UNION ALL
     SELECT 4, c.relispartition, format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', c.oid::regclass, k.conname)
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class f ON f.oid = k.confrelid
      WHERE k.contype = 'f' AND c.relnamespace = (SELECT oid FROM ns)
        AND f.relnamespace <> (SELECT oid FROM ns)
     ORDER BY 1, 2`,
    [schema],
  );
  // Partitions come after their parents in each step: dropping a parent's trigger or foreign
  // key drops the partitions' copies, which IF EXISTS then passes over.
  return r.rows.map((row) => row.statement);
}

/** `pg_dump` of the side schema, as a plain SQL script for psql. */
export async function dumpSideSchema(o: {
  tools: ClientTools;
  connection: ConnectionInfo;
  database: string;
  schema: string;
  file: string;
  env: NodeJS.ProcessEnv;
}): Promise<void> {
  const r = await runProcess(
    o.tools.pgDump,
    [
      '--no-password',
      `--schema=${o.schema}`,
      '--no-owner',
      '--no-privileges',
      '--format=plain',
      `--file=${o.file}`,
    ],
    { env: childEnv(o.env, o.connection, o.database) },
  );
  if (r.code !== 0) throw new Error(describeExit('pg_dump (side schema)', r));
}

/**
 * What an existing schema of that name means: nothing when there is none; a refusal unless
 * `replace`; a refusal when it is not an extract's (its comment), or when objects of other
 * schemas depend on it, since replacing it would drop them too.
 */
export async function checkExistingSchema(
  client: pg.Client,
  schema: string,
  replace: boolean,
): Promise<'new' | 'replace'> {
  const found = await client.query<{ comment: string | null }>(
    `SELECT obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = $1`,
    [schema],
  );
  if (found.rows.length === 0) return 'new';
  if (!replace) {
    throw new ConfigurationError(
      `Refusing to extract into schema ${schema}: it exists. Choose another extract-schema, or set replace-extract-schema: true to replace it. Nothing was changed.`,
    );
  }
  if (!found.rows[0].comment?.startsWith(EXTRACT_COMMENT)) {
    throw new ConfigurationError(
      `Refusing to replace schema ${schema}: it was not made by an extract (its comment does not start with '${EXTRACT_COMMENT}'). Nothing was changed.`,
    );
  }
  const outside = await dependentsOutside(client, schema);
  if (outside.length > 0) {
    throw new ConfigurationError(
      `Refusing to replace schema ${schema}: objects of other schemas depend on it (${outside.join(', ')}), and replacing it would drop them. Nothing was changed.`,
    );
  }
  return 'replace';
}

/** Relations of other schemas holding something (a view, a column, a constraint) that depends on the schema's objects. */
async function dependentsOutside(client: pg.Client, schema: string): Promise<string[]> {
  const r = await client.query<{ rel: string }>(
    `WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
     inside AS (SELECT oid FROM pg_class WHERE relnamespace = (SELECT oid FROM ns)
                UNION SELECT oid FROM pg_type WHERE typnamespace = (SELECT oid FROM ns)),
     deps AS (
       SELECT CASE d.classid
                WHEN 'pg_class'::regclass THEN d.objid
                WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid)
                WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = d.objid)
                WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid)
                WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
              END AS rel
         FROM pg_depend d WHERE d.refobjid IN (SELECT oid FROM inside) AND d.deptype = 'n')
     SELECT DISTINCT c.oid::regclass::text AS rel FROM deps JOIN pg_class c ON c.oid = deps.rel
      WHERE c.relnamespace <> (SELECT oid FROM ns) ORDER BY 1`,
    [schema],
  );
  return r.rows.map((row) => row.rel);
}

/**
 * The statements that leave the side schema and its tables and sequences to their owner (the
 * role that loaded them): every privilege another role or PUBLIC holds on them, which default
 * privileges (`ALTER DEFAULT PRIVILEGES`) may have given as they were created, is revoked. So
 * the API roles of a platform (Supabase's anon, authenticated, service_role) cannot reach the
 * backup's rows, whatever the platform exposes.
 */
export function ownerOnlyStatements(schema: string): string {
  return `DO $extract$
DECLARE
  statement text;
BEGIN
  FOR statement IN
    SELECT DISTINCT format('REVOKE ALL ON %s %s FROM %s', o.kind, o.name,
             CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
      FROM (SELECT 'SCHEMA' AS kind, quote_ident(nspname) AS name, nspacl AS acl, nspowner AS owner
              FROM pg_namespace WHERE nspname = ${quoteLiteral(schema)}
            UNION ALL
            SELECT CASE WHEN relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, oid::regclass::text,
                   relacl, relowner
              FROM pg_class WHERE relnamespace = ${quoteLiteral(quoteIdent(schema))}::regnamespace
               AND relkind IN ('r', 'p', 'S')) o,
           aclexplode(o.acl) a
     WHERE a.grantee <> o.owner
  LOOP
    EXECUTE statement;
  END LOOP;
END
$extract$;
`;
}

/**
 * Loads the side schema's script into the target in one transaction (after dropping the
 * earlier extract's schema when replacing it), with every privilege of other roles on it
 * revoked, so a failure leaves the target as it was.
 */
export async function loadSideSchema(o: {
  tools: ClientTools;
  connection: ConnectionInfo;
  database: string;
  serverMajor: number;
  schema: string;
  replace: boolean;
  script: string;
  prelude: string;
  epilogue: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}): Promise<void> {
  await writeFile(
    o.prelude,
    o.replace ? `DROP SCHEMA IF EXISTS ${quoteIdent(o.schema)} CASCADE;\n` : '',
  );
  await writeFile(o.epilogue, ownerOnlyStatements(o.schema));
  await writeFile(o.script, scriptForServer(await readFile(o.script, 'utf8'), o.serverMajor));
  const r = await runProcess(
    o.tools.psql,
    [
      '-X',
      '-q',
      '--no-password',
      '-v',
      'ON_ERROR_STOP=1',
      '-1',
      '-f',
      o.prelude,
      '-f',
      o.script,
      '-f',
      o.epilogue,
    ],
    { env: childEnv(o.env, o.connection, o.database) },
  );
  if (r.code !== 0) {
    throw new Error(
      `${describeExit('psql (loading the extract)', r)}\nThe transaction was rolled back: ${describeConnection(o.connection, o.database)} is as it was.`,
    );
  }
}

/**
 * A newer pg_dump's script for an older server: pg_dump 17 and later set transaction_timeout,
 * which servers before 17 do not know (pg_restore leaves it out for them; a script cannot).
 */
export function scriptForServer(script: string, serverMajor: number): string {
  return serverMajor >= 17 ? script : script.replace(/^SET transaction_timeout = 0;\n/m, '');
}
