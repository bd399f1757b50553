import type pg from 'pg';
import { quoteIdent } from './connection.js';
import { selectionMatcher, type DumpSelection } from './inventory.js';

/**
 * What the restore checks compare against: the source database's state, read in the dump's own
 * snapshot (the transaction that exported it), so "restored equals source" is checked item by
 * item instead of guessed from the restored copy alone.
 */
export interface SourceState {
  /** Table and domain constraints of the selected schemas (not those of extension members). */
  constraints: SourceConstraint[];
  /** Sequences of the selected schemas and of extensions, with their values. */
  sequences: SourceSequence[];
  /** Tables with row-level security enabled or forced, or with policies. */
  rowSecurity: SourceRowSecurity[];
  policies: SourcePolicy[];
  extensions: { name: string; version: string; schema: string }[];
  /** Large objects the dump carries (whole-database dumps only; else null). */
  largeObjects: number | null;
  /**
   * `ALTER DATABASE … SET` (role null) and `ALTER ROLE … IN DATABASE … SET`: pg_dump writes
   * them only with --create, so a restore re-applies them from here.
   */
  settings: { role: string | null; setting: string }[];
  /**
   * Row fingerprints of the tables a platform keeps its users, files and secrets in (Supabase's
   * auth.users, storage.objects, vault.secrets, …): a restore that changed a row (a trigger
   * re-encrypting a secret) shows, though the counts match. Absent for a plain database.
   */
  contents?: TableContent[];
}

/** A table's rows in one figure: their count and the MD5 of their rows' sorted MD5s. */
export interface TableContent {
  /** `schema.table`. */
  table: string;
  rows: number;
  md5: string;
}

export interface SourceConstraint {
  schema: string;
  /** The table or domain the constraint belongs to. */
  on: string;
  onKind: 'table' | 'domain';
  name: string;
  /** pg_constraint.contype: p, u, f, c, x, t. */
  type: string;
  validated: boolean;
}

export interface SourceSequence {
  schema: string;
  name: string;
  /** bigint as text. */
  lastValue: string;
  isCalled: boolean;
  /** Whether it counts down (a negative increment). */
  descending: boolean;
  /** The extension it belongs to: pg_dump does not carry such a sequence's value. */
  extension?: string;
}

export interface SourceRowSecurity {
  schema: string;
  table: string;
  enabled: boolean;
  forced: boolean;
}

export interface SourcePolicy {
  schema: string;
  table: string;
  name: string;
  command: string;
  permissive: boolean;
  roles: string[];
  using: string | null;
  check: string | null;
}

const USER_SCHEMA = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`;
const NOT_EXTENSION_MEMBER = (classid: string, oid: string): string =>
  `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${classid}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;

/** Reads the source's state in the client's transaction (the dump's snapshot). */
export async function readSourceState(
  client: pg.Client,
  selection: DumpSelection,
): Promise<SourceState> {
  const matcher = selectionMatcher(selection);
  const inSelection = <T extends { schema: string }>(rows: T[]): T[] =>
    rows.filter((r) => matcher.schemaIncluded(r.schema));
  const wholeDatabase = selection.schemas.length === 0;
  return {
    constraints: inSelection(await readConstraints(client)),
    sequences: (await readSequences(client)).filter(
      (s) => s.extension !== undefined || matcher.schemaIncluded(s.schema),
    ),
    rowSecurity: inSelection(await readRowSecurity(client)),
    policies: inSelection(await readPolicies(client)),
    extensions: await readExtensions(client),
    largeObjects: wholeDatabase ? await countLargeObjects(client) : null,
    settings: await readSettings(client),
  };
}

/**
 * The fingerprints of those of `tables` (`schema.table`) that exist and the role may read.
 * Values are rendered with fixed settings (UTC, ISO dates, full float digits, hex bytea), so
 * the same rows give the same figure on any server.
 */
export async function readContents(
  client: pg.Client,
  tables: readonly string[],
): Promise<TableContent[]> {
  return withSettings(client, STABLE_OUTPUT, async () => {
    const out: TableContent[] = [];
    for (const table of tables) {
      const [schema, name] = table.split('.');
      const qualified = `${quoteIdent(schema)}.${quoteIdent(name)}`;
      const readable = await client.query<{ ok: boolean }>(
        `SELECT to_regclass($1) IS NOT NULL AND has_table_privilege($1, 'SELECT') AS ok`,
        [qualified],
      );
      if (!readable.rows[0].ok) continue;
      // The MD5 of each row's JSON, sorted and hashed again: 32 bytes a row in memory, whatever
      // the rows hold.
      const row = 'md5(to_jsonb(t)::text)';
      const r = await client.query<{ rows: string; md5: string }>(
        `SELECT count(*)::text AS rows,
                md5(coalesce(string_agg(${row}, '' ORDER BY ${row} COLLATE "C"), '')) AS md5
           FROM ONLY ${qualified} t`,
      );
      out.push({ table, rows: Number(r.rows[0].rows), md5: r.rows[0].md5 });
    }
    return out;
  });
}

export async function readConstraints(client: pg.Client): Promise<SourceConstraint[]> {
  // Constraints cloned onto partitions from their parent's (conparentid) are made by the parent's
  // constraint, under names the server picks; NOT NULL constraints (PostgreSQL 18) are columns'.
  const r = await client.query<SourceConstraint>(`
    SELECT n.nspname AS schema, COALESCE(t.relname, ty.typname) AS "on",
           CASE WHEN c.contypid <> 0 THEN 'domain' ELSE 'table' END AS "onKind",
           c.conname AS name, c.contype::text AS type, c.convalidated AS validated
      FROM pg_constraint c
      JOIN pg_namespace n ON n.oid = c.connamespace
      LEFT JOIN pg_class t ON t.oid = c.conrelid AND c.conrelid <> 0
      LEFT JOIN pg_type ty ON ty.oid = c.contypid AND c.contypid <> 0
     WHERE ${USER_SCHEMA}
       AND c.contype IN ('p', 'u', 'f', 'c', 'x', 't')
       AND c.conparentid = 0
       AND (t.oid IS NOT NULL OR ty.oid IS NOT NULL)
       AND (t.oid IS NULL OR ${NOT_EXTENSION_MEMBER('pg_class', 't.oid')})
       AND (ty.oid IS NULL OR ${NOT_EXTENSION_MEMBER('pg_type', 'ty.oid')})
     ORDER BY 1, 2, 4`);
  return r.rows;
}

interface SequenceRow {
  oid: string;
  schema: string;
  name: string;
  descending: boolean;
  extension: string | null;
  readable: boolean;
}

export async function readSequences(client: pg.Client): Promise<SourceSequence[]> {
  const r = await client.query<SequenceRow>(`
    SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, s.seqincrement < 0 AS descending,
           (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
               AND d.refclassid = 'pg_extension'::regclass LIMIT 1) AS extension,
           has_sequence_privilege(c.oid, 'SELECT') AS readable
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_sequence s ON s.seqrelid = c.oid
     WHERE c.relkind = 'S' AND ${USER_SCHEMA}
     ORDER BY 2, 3`);
  const readable = r.rows.filter((s) => s.readable);
  const values = new Map<string, { last: string; called: boolean }>();
  // One statement per 200 sequences: a database with thousands of them needs no thousand round trips.
  for (let i = 0; i < readable.length; i += 200) {
    const batch = readable.slice(i, i + 200);
    const union = batch
      .map(
        (s) =>
          `SELECT ${s.oid}::text AS oid, last_value::text AS last, is_called AS called FROM ${quoteIdent(s.schema)}.${quoteIdent(s.name)}`,
      )
      .join(' UNION ALL ');
    const v = await client.query<{ oid: string; last: string; called: boolean }>(union);
    for (const row of v.rows) values.set(row.oid, { last: row.last, called: row.called });
  }
  return readable.flatMap((s) => {
    const v = values.get(s.oid);
    if (!v) return [];
    return [
      {
        schema: s.schema,
        name: s.name,
        lastValue: v.last,
        isCalled: v.called,
        descending: s.descending,
        ...(s.extension ? { extension: s.extension } : {}),
      },
    ];
  });
}

export async function readRowSecurity(client: pg.Client): Promise<SourceRowSecurity[]> {
  const r = await client.query<SourceRowSecurity>(`
    SELECT n.nspname AS schema, c.relname AS table, c.relrowsecurity AS enabled,
           c.relforcerowsecurity AS forced
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND ${USER_SCHEMA}
       AND (c.relrowsecurity OR c.relforcerowsecurity
            OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
       AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
     ORDER BY 1, 2`);
  return r.rows;
}

/** Settings under which definitions and values print the same on any server and session. */
const STABLE_OUTPUT: Record<string, string> = {
  search_path: 'pg_catalog',
  TimeZone: 'UTC',
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'postgres',
  extra_float_digits: '3',
  bytea_output: 'hex',
};

/**
 * Runs `read` under `settings`, then puts the session's own values back (also inside the dump's
 * snapshot transaction, which must stay open). With only pg_catalog on the search path,
 * expressions come out schema-qualified, as pg_dump writes them.
 */
async function withSettings<T>(
  client: pg.Client,
  settings: Record<string, string>,
  read: () => Promise<T>,
): Promise<T> {
  const names = Object.keys(settings);
  const saved = await client.query<{ name: string; value: string }>(
    'SELECT n AS name, current_setting(n) AS value FROM unnest($1::text[]) AS n',
    [names],
  );
  for (const name of names) {
    await client.query('SELECT set_config($1, $2, false)', [name, settings[name]]);
  }
  try {
    return await read();
  } finally {
    for (const { name, value } of saved.rows) {
      await client.query('SELECT set_config($1, $2, false)', [name, value]);
    }
  }
}

export async function readPolicies(client: pg.Client): Promise<SourcePolicy[]> {
  return withSettings(client, { search_path: 'pg_catalog' }, () => queryPolicies(client));
}

async function queryPolicies(client: pg.Client): Promise<SourcePolicy[]> {
  const r = await client.query<SourcePolicy>(`
    SELECT n.nspname AS schema, c.relname AS table, p.polname AS name,
           CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                         WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
           p.polpermissive AS permissive,
           ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
                   FROM unnest(p.polroles) AS r ORDER BY 1) AS roles,
           pg_get_expr(p.polqual, p.polrelid) AS using,
           pg_get_expr(p.polwithcheck, p.polrelid) AS check
      FROM pg_policy p
      JOIN pg_class c ON c.oid = p.polrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE ${USER_SCHEMA} AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
     ORDER BY 1, 2, 3`);
  return r.rows;
}

export async function readExtensions(
  client: pg.Client,
): Promise<{ name: string; version: string; schema: string }[]> {
  const r = await client.query<{ name: string; version: string; schema: string }>(
    `SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname <> 'plpgsql' ORDER BY 1`,
  );
  return r.rows;
}

export async function countLargeObjects(client: pg.Client): Promise<number> {
  const r = await client.query<{ n: string }>(
    'SELECT count(*)::text AS n FROM pg_largeobject_metadata',
  );
  return Number(r.rows[0].n);
}

/** The settings of the current database, for every role (null: the database's own). */
export async function readSettings(
  client: pg.Client,
): Promise<{ role: string | null; setting: string }[]> {
  const r = await client.query<{ role: string | null; setting: string }>(
    `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role,
            unnest(s.setconfig) AS setting
       FROM pg_db_role_setting s
      WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
      ORDER BY 1 NULLS FIRST, 2`,
  );
  return r.rows;
}

/** Row counts of extension configuration tables whose data pg_dump carries. */
export async function extensionConfigTables(
  client: pg.Client,
): Promise<{ schema: string; name: string; extension: string; bytes: number }[]> {
  const r = await client.query<{ schema: string; name: string; extension: string; bytes: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, e.extname AS extension,
            pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_extension e
       CROSS JOIN LATERAL unnest(e.extconfig) AS cfg(oid)
       JOIN pg_class c ON c.oid = cfg.oid AND c.relkind = 'r'
       JOIN pg_namespace n ON n.oid = c.relnamespace
      ORDER BY 1, 2`,
  );
  return r.rows.map((row) => ({ ...row, bytes: Number(row.bytes) }));
}

/**
 * What a backup of selected schemas relies on outside them, which a restore must find in the
 * target: foreign keys to other schemas' tables, column defaults calling other schemas'
 * functions, triggers on other schemas' tables running a selected function (left out of the
 * dump with their table), and the roles the selected schemas' policies name.
 */
export async function dependenciesOutside(
  client: pg.Client,
  selection: DumpSelection,
): Promise<string[]> {
  if (selection.schemas.length === 0 && selection.excludeSchemas.length === 0) return [];
  const matcher = selectionMatcher(selection);
  const r = await client.query<{ kind: string; inside: string; outside: string; what: string }>(`
    SELECT 'fk' AS kind, sn.nspname AS inside, tn.nspname AS outside,
           format('foreign key %s on %I.%I references %I.%I', c.conname, sn.nspname, s.relname, tn.nspname, t.relname) AS what
      FROM pg_constraint c
      JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
      JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
     WHERE c.contype = 'f'
    UNION ALL
    SELECT 'default', n.nspname, pn.nspname,
           format('default of %I.%I.%I calls %I.%I()', n.nspname, cl.relname, a.attname, pn.nspname, p.proname)
      FROM pg_attrdef ad
      JOIN pg_class cl ON cl.oid = ad.adrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
      JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                      AND d.refclassid = 'pg_proc'::regclass
      JOIN pg_proc p ON p.oid = d.refobjid JOIN pg_namespace pn ON pn.oid = p.pronamespace
     WHERE pn.nspname <> 'pg_catalog'
    UNION ALL
    SELECT 'trigger', pn.nspname, tn.nspname,
           format('trigger %s on %I.%I runs %I.%I(), and is not in the backup', tg.tgname, tn.nspname, t.relname, pn.nspname, p.proname)
      FROM pg_trigger tg
      JOIN pg_class t ON t.oid = tg.tgrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
      JOIN pg_proc p ON p.oid = tg.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
     WHERE NOT tg.tgisinternal`);
  const found = r.rows
    .filter((x) => matcher.schemaIncluded(x.inside) && !matcher.schemaIncluded(x.outside))
    .map((x) => x.what);
  const roles = new Set(
    (await readPolicies(client))
      .filter((p) => matcher.schemaIncluded(p.schema))
      .flatMap((p) => p.roles)
      .filter((role) => role !== 'public'),
  );
  if (roles.size > 0) found.push(`policies name the roles ${[...roles].sort().join(', ')}`);
  return found;
}
