/**
 * Restoring a backup of a database that lives on a managed platform (Supabase) back onto that
 * platform.
 *
 * A whole-database `pg_dump -Fc` of a Supabase project holds two things: the application (its
 * schemas, and what it hangs on the platform's tables: triggers on auth.users, policies on
 * storage.objects, tables in the realtime publication) and the platform itself (auth, storage,
 * realtime, vault... made by the image and by the services' own migrations). A new project
 * already holds the platform, owned by roles the `postgres` user is not, so a plain pg_restore
 * fails (`must be owner of schema auth`) and objects pg_dump writes twice (Vault's view and
 * trigger function, made by `CREATE EXTENSION supabase_vault` and dumped again) collide.
 *
 * Supabase's own route (https://supabase.com/docs/guides/platform/migrating-within-supabase/backup-restore,
 * supabase/cli apps/cli-go/pkg/migration/{dump.go,scripts/dump_schema.sh,scripts/dump_data.sh})
 * dumps the application's schemas without the platform's, then the data of everything but the
 * services' bookkeeping, and loads that data with `SET session_replication_role = replica`. The
 * plan here does the same with one archive: `planPlatformRestore` comments out of the archive's
 * table of contents what the target owns, keeping the platform tables' rows and the whole
 * application; `replicaRoleEnv` loads it with no trigger firing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { describeExit, runProcess } from '../core/process.js';
import { quoteIdent } from '../postgres/connection.js';
import {
  CLI_SCHEMA,
  SUPABASE_BOOKKEEPING_TABLES,
  SUPABASE_DATA_LEFT_OUT_SCHEMAS,
  isPlatformSchema,
  matchesAny,
  type PlatformInfo,
} from '../postgres/platform.js';

// ---------------------------------------------------------------------------------------------
// The archive's table of contents

/** One entry of `pg_restore --list`: `dumpId; catalog oid DESC NAMESPACE TAG OWNER`. */
export interface TocEntry {
  /** The line as pg_restore printed it. */
  line: string;
  dumpId: number;
  desc: string;
  /** The schema, undefined for `-` (database-level objects). */
  namespace: string | undefined;
  tag: string;
  /** Empty for entries without one (extensions). */
  owner: string;
}

/** pg_dump's entry kinds (its `desc`), longest first so `TABLE DATA` wins over `TABLE`. */
const DESCS = [
  'ACCESS METHOD',
  'ACL',
  'AGGREGATE',
  'BLOB',
  'BLOB METADATA',
  'BLOBS',
  'CAST',
  'CHECK CONSTRAINT',
  'COLLATION',
  'COMMENT',
  'CONSTRAINT',
  'CONVERSION',
  'DATABASE',
  'DATABASE PROPERTIES',
  'DEFAULT',
  'DEFAULT ACL',
  'DOMAIN',
  'ENCODING',
  'EVENT TRIGGER',
  'EXTENSION',
  'FK CONSTRAINT',
  'FOREIGN DATA WRAPPER',
  'FOREIGN SERVER',
  'FOREIGN TABLE',
  'FUNCTION',
  'INDEX',
  'INDEX ATTACH',
  'LARGE OBJECT',
  'MATERIALIZED VIEW',
  'MATERIALIZED VIEW DATA',
  'OPERATOR',
  'OPERATOR CLASS',
  'OPERATOR FAMILY',
  'POLICY',
  'PROCEDURAL LANGUAGE',
  'PROCEDURE',
  'PUBLICATION',
  'PUBLICATION TABLE',
  'PUBLICATION TABLES IN SCHEMA',
  'ROW SECURITY',
  'RULE',
  'SCHEMA',
  'SEARCHPATH',
  'SECURITY LABEL',
  'SEQUENCE',
  'SEQUENCE OWNED BY',
  'SEQUENCE SET',
  'SERVER',
  'SHELL TYPE',
  'STATISTICS',
  'STATISTICS DATA',
  'STDSTRINGS',
  'SUBSCRIPTION',
  'SUBSCRIPTION TABLE',
  'TABLE',
  'TABLE ATTACH',
  'TABLE DATA',
  'TEXT SEARCH CONFIGURATION',
  'TEXT SEARCH DICTIONARY',
  'TEXT SEARCH PARSER',
  'TEXT SEARCH TEMPLATE',
  'TRANSFORM',
  'TRIGGER',
  'TYPE',
  'USER MAPPING',
  'VIEW',
].sort((a, b) => b.length - a.length);

const ENTRY_LINE = /^(\d+);\s+\d+\s+\d+\s+(.*)$/;

/** The entries of `pg_restore --list` text (lines starting with `;` are not entries). */
export function parseToc(listing: string): TocEntry[] {
  const entries: TocEntry[] = [];
  for (const raw of listing.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const m = ENTRY_LINE.exec(line);
    if (!m) continue;
    const rest = m[2];
    const desc = DESCS.find((d) => rest.startsWith(`${d} `));
    if (!desc) continue;
    const after = rest.slice(desc.length + 1);
    const space = after.indexOf(' ');
    const ns = space < 0 ? after : after.slice(0, space);
    const tagOwner = space < 0 ? '' : after.slice(space + 1);
    const last = tagOwner.lastIndexOf(' ');
    entries.push({
      line,
      dumpId: Number(m[1]),
      desc,
      namespace: ns === '-' ? undefined : ns,
      tag: last < 0 ? tagOwner : tagOwner.slice(0, last),
      owner: last < 0 ? '' : tagOwner.slice(last + 1),
    });
  }
  return entries;
}

/** Splits `first rest...` at the first space (a table's constraint, trigger, policy...). */
function splitFirst(tag: string): [string, string] {
  const i = tag.indexOf(' ');
  return i < 0 ? [tag, ''] : [tag.slice(0, i), tag.slice(i + 1)];
}

/** Reads one identifier, quoted or not, from the start of `text`: [name, rest]. */
function readIdent(text: string): [string, string] {
  if (text.startsWith('"')) {
    let i = 1;
    let name = '';
    while (i < text.length) {
      if (text[i] === '"') {
        if (text[i + 1] === '"') {
          name += '"';
          i += 2;
          continue;
        }
        return [name, text.slice(i + 1)];
      }
      name += text[i];
      i++;
    }
    return [name, ''];
  }
  const m = /^[^\s.(]*/.exec(text);
  const name = m ? m[0] : '';
  return [name, text.slice(name.length)];
}

/** Splits `schema.name` (either quoted) at its dot: [schema, name]. */
function splitQualified(text: string): [string | undefined, string] {
  const [first, rest] = readIdent(text.trim());
  if (!rest.startsWith('.')) return [undefined, first];
  return [first, readIdent(rest.slice(1))[0]];
}

/** The key of the object a creating entry makes, comparable with the target's catalog. */
function objectKey(e: TocEntry): string | undefined {
  const ns = e.namespace ?? '';
  switch (e.desc) {
    case 'SCHEMA':
      return `schema:${e.tag}`;
    case 'TABLE':
    case 'VIEW':
    case 'MATERIALIZED VIEW':
    case 'SEQUENCE':
    case 'INDEX':
    case 'FOREIGN TABLE':
      return `rel:${ns}.${e.tag}`;
    case 'TYPE':
    case 'DOMAIN':
    case 'SHELL TYPE':
      return `type:${ns}.${e.tag}`;
    case 'FUNCTION':
    case 'PROCEDURE':
    case 'AGGREGATE':
      return `func:${ns}.${e.tag}`;
    case 'CONSTRAINT':
    case 'FK CONSTRAINT':
    case 'CHECK CONSTRAINT': {
      const [table, name] = splitFirst(e.tag);
      return `con:${ns}.${table} ${name}`;
    }
    case 'TRIGGER':
    case 'POLICY':
    case 'RULE':
    case 'DEFAULT': {
      const [table, name] = splitFirst(e.tag);
      const kinds: Record<string, string> = {
        TRIGGER: 'trg',
        POLICY: 'pol',
        RULE: 'rule',
        DEFAULT: 'default',
      };
      const kind = kinds[e.desc];
      return `${kind}:${ns}.${table} ${name}`;
    }
    case 'ROW SECURITY':
      return `rls:${ns}.${e.tag}`;
    case 'TABLE ATTACH':
    case 'INDEX ATTACH':
      return `attach:${ns}.${e.tag}`;
    case 'SEQUENCE OWNED BY':
      return `owned:${ns}.${e.tag}`;
    case 'EXTENSION':
      return `ext:${e.tag}`;
    case 'EVENT TRIGGER':
      return `evt:${e.tag}`;
    case 'PUBLICATION':
      return `pub:${e.tag}`;
    case 'PUBLICATION TABLE': {
      const [pub, table] = splitFirst(e.tag);
      return `pubtab:${pub} ${ns}.${table}`;
    }
    case 'PUBLICATION TABLES IN SCHEMA':
      return `pubns:${splitFirst(e.tag)[0]} ${ns}`;
    case 'PROCEDURAL LANGUAGE':
      return `lang:${e.tag}`;
    case 'FOREIGN DATA WRAPPER':
      return `fdw:${e.tag}`;
    case 'SERVER':
    case 'FOREIGN SERVER':
      return `srv:${e.tag}`;
    case 'COLLATION':
      return `coll:${ns}.${e.tag}`;
    case 'TEXT SEARCH CONFIGURATION':
      return `tscfg:${ns}.${e.tag}`;
    case 'TEXT SEARCH DICTIONARY':
      return `tsdict:${ns}.${e.tag}`;
    case 'STATISTICS':
      return `stat:${ns}.${e.tag}`;
    case 'CONVERSION':
      return `conv:${ns}.${e.tag}`;
    default:
      return undefined;
  }
}

/** The keys under which COMMENT / ACL / SECURITY LABEL entries find a creating entry. */
function followKeys(e: TocEntry): string[] {
  const key = objectKey(e);
  if (!key) return [];
  if (key.startsWith('func:')) {
    // ACL tags name the arguments (`f(a integer)`), FUNCTION tags only their types: by name.
    return [key, `funcname:${e.namespace ?? ''}.${e.tag.slice(0, e.tag.indexOf('('))}`];
  }
  return [key];
}

/** The object a COMMENT / ACL / SECURITY LABEL entry is about, by the keys of `followKeys`. */
function followedKey(e: TocEntry): string | undefined {
  const ns = e.namespace ?? '';
  const tag = e.tag;
  const kinds = [
    'MATERIALIZED VIEW',
    'FOREIGN DATA WRAPPER',
    'FOREIGN TABLE',
    'EVENT TRIGGER',
    'LARGE OBJECT',
    'PUBLICATION',
    'EXTENSION',
    'SCHEMA',
    'TRIGGER',
    'POLICY',
    'RULE',
    'CONSTRAINT',
    'SERVER',
    'LANGUAGE',
    'TABLE',
    'VIEW',
    'SEQUENCE',
    'INDEX',
    'COLUMN',
    'FUNCTION',
    'PROCEDURE',
    'AGGREGATE',
    'TYPE',
    'DOMAIN',
    'DATABASE',
  ];
  const kind = kinds.find((k) => tag.startsWith(`${k} `));
  if (!kind) return undefined;
  const [name, rest] = readIdent(tag.slice(kind.length + 1));
  const onTable = (): string => readIdent(rest.replace(/^ ON /, ''))[0];
  switch (kind) {
    case 'SCHEMA':
      return `schema:${name}`;
    case 'EXTENSION':
      return `ext:${name}`;
    case 'EVENT TRIGGER':
      return `evt:${name}`;
    case 'PUBLICATION':
      return `pub:${name}`;
    case 'FOREIGN DATA WRAPPER':
      return `fdw:${name}`;
    case 'SERVER':
      return `srv:${name}`;
    case 'LANGUAGE':
      return `lang:${name}`;
    case 'TRIGGER':
      return `trg:${ns}.${onTable()} ${name}`;
    case 'POLICY':
      return `pol:${ns}.${onTable()} ${name}`;
    case 'RULE':
      return `rule:${ns}.${onTable()} ${name}`;
    case 'CONSTRAINT':
      return `con:${ns}.${onTable()} ${name}`;
    case 'TABLE':
    case 'VIEW':
    case 'MATERIALIZED VIEW':
    case 'SEQUENCE':
    case 'INDEX':
    case 'FOREIGN TABLE':
    case 'COLUMN':
      return `rel:${ns}.${name}`;
    case 'FUNCTION':
    case 'PROCEDURE':
    case 'AGGREGATE':
      return `funcname:${ns}.${name}`;
    case 'TYPE':
    case 'DOMAIN':
      return `type:${ns}.${name}`;
    default:
      return undefined;
  }
}

const FOLLOWERS = new Set(['COMMENT', 'ACL', 'SECURITY LABEL']);
/** Entries pg_restore follows with ALTER ... OWNER TO (without --no-owner). */
const OWNED_DESCS = new Set([
  'AGGREGATE',
  'COLLATION',
  'CONVERSION',
  'DOMAIN',
  'EVENT TRIGGER',
  'FOREIGN DATA WRAPPER',
  'FOREIGN TABLE',
  'FUNCTION',
  'MATERIALIZED VIEW',
  'OPERATOR',
  'OPERATOR CLASS',
  'OPERATOR FAMILY',
  'PROCEDURAL LANGUAGE',
  'PROCEDURE',
  'PUBLICATION',
  'SCHEMA',
  'SEQUENCE',
  'SERVER',
  'STATISTICS',
  'TABLE',
  'TEXT SEARCH CONFIGURATION',
  'TEXT SEARCH DICTIONARY',
  'TYPE',
  'VIEW',
]);
const DATA_DESCS = new Set(['TABLE DATA', 'SEQUENCE SET', 'MATERIALIZED VIEW DATA']);
const LARGE_OBJECT_DESCS = new Set(['BLOB', 'BLOBS', 'BLOB METADATA', 'LARGE OBJECT']);
const DATABASE_DESCS = new Set([
  'DATABASE',
  'DATABASE PROPERTIES',
  'ENCODING',
  'STDSTRINGS',
  'SEARCHPATH',
]);

// ---------------------------------------------------------------------------------------------
// The target

interface TargetCatalog {
  role: string;
  superuser: boolean;
  /** Keys of the objects the target holds (see objectKey). */
  keys: Set<string>;
  roles: Set<string>;
  /** Roles the restoring role is a member of (for ALTER DEFAULT PRIVILEGES FOR ROLE). */
  memberOf: Set<string>;
  extensions: Map<string, { version: string; schema: string }>;
  /** Extension by the schema it is installed in (to say which one made an object). */
  extensionBySchema: Map<string, string>;
  /** Extensions the server can install, and whether they are trusted. */
  available: Map<string, { trusted: boolean }>;
  canCreateInDatabase: boolean;
  schemaOwners: Map<string, string>;
  /** `schema.table` → the tables whose foreign keys refer to it. */
  referencedBy: Map<string, Set<string>>;
}

type Query = <T extends pg.QueryResultRow>(sql: string) => Promise<T[]>;

/** Queries each returning the keys (`k`, see objectKey) of one kind of object the target holds. */
const OBJECT_KEY_QUERIES = [
  `SELECT 'rel:' || n.nspname || '.' || c.relname AS k
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`,
  `SELECT 'type:' || n.nspname || '.' || t.typname AS k
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype <> 'c'
       OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c'`,
  `SELECT 'con:' || n.nspname || '.' || coalesce(c.relname, t.typname) || ' ' || k.conname AS k
     FROM pg_catalog.pg_constraint k
     JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
     LEFT JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
     LEFT JOIN pg_catalog.pg_type t ON t.oid = k.contypid`,
  `SELECT 'trg:' || n.nspname || '.' || c.relname || ' ' || g.tgname AS k
     FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT g.tgisinternal`,
  `SELECT 'pol:' || n.nspname || '.' || c.relname || ' ' || p.polname AS k
     FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`,
  `SELECT 'rule:' || n.nspname || '.' || c.relname || ' ' || r.rulename AS k
     FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE r.rulename <> '_RETURN'`,
  `SELECT 'default:' || n.nspname || '.' || c.relname || ' ' || a.attname AS k
     FROM pg_catalog.pg_attrdef d
     JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     JOIN pg_catalog.pg_class c ON c.oid = d.adrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`,
  `SELECT kind || n.nspname || '.' || c.relname AS k
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
     LATERAL (VALUES ('rls:', c.relrowsecurity OR c.relforcerowsecurity),
                     ('attach:', c.relispartition),
                     ('owned:', c.relkind = 'S' AND EXISTS (
                        SELECT 1 FROM pg_catalog.pg_depend d
                         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                           AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')))) v(kind, yes)
    WHERE yes`,
  `SELECT 'evt:' || evtname AS k FROM pg_catalog.pg_event_trigger`,
  `SELECT 'pub:' || pubname AS k FROM pg_catalog.pg_publication`,
  `SELECT 'pubtab:' || p.pubname || ' ' || n.nspname || '.' || c.relname AS k
     FROM pg_catalog.pg_publication_rel r
     JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = r.prrelid
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`,
  `SELECT 'lang:' || lanname AS k FROM pg_catalog.pg_language`,
  `SELECT 'fdw:' || fdwname AS k FROM pg_catalog.pg_foreign_data_wrapper`,
  `SELECT 'srv:' || srvname AS k FROM pg_catalog.pg_foreign_server`,
  `SELECT 'coll:' || n.nspname || '.' || c.collname AS k FROM pg_catalog.pg_collation c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
   UNION ALL
   SELECT 'tscfg:' || n.nspname || '.' || c.cfgname FROM pg_catalog.pg_ts_config c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
   UNION ALL
   SELECT 'tsdict:' || n.nspname || '.' || d.dictname FROM pg_catalog.pg_ts_dict d
     JOIN pg_catalog.pg_namespace n ON n.oid = d.dictnamespace
   UNION ALL
   SELECT 'stat:' || n.nspname || '.' || s.stxname FROM pg_catalog.pg_statistic_ext s
     JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
   UNION ALL
   SELECT 'conv:' || n.nspname || '.' || c.conname FROM pg_catalog.pg_conversion c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace`,
];
/** The schemas of publications (`FOR TABLES IN SCHEMA`, PostgreSQL 15+). */
const PUBLICATION_SCHEMA_KEYS = `SELECT 'pubns:' || p.pubname || ' ' || n.nspname AS k
   FROM pg_catalog.pg_publication_namespace r
   JOIN pg_catalog.pg_publication p ON p.oid = r.pnpubid
   JOIN pg_catalog.pg_namespace n ON n.oid = r.pnnspid`;
/** Functions by signature and by name (overloads share the name key). */
const FUNCTION_KEYS = `SELECT 'func:' || n.nspname || '.' || p.proname || '(' ||
        coalesce((SELECT string_agg(pg_catalog.format_type(a.t, NULL), ', ' ORDER BY a.i)
                    FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, i)), '') || ')' AS k,
        'funcname:' || n.nspname || '.' || p.proname AS name
   FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace`;

async function loadTargetCatalog(client: pg.Client): Promise<TargetCatalog> {
  // pg_dump names argument types with an empty search_path: qualified unless in pg_catalog.
  return withEmptySearchPath(client, async () => {
    const q: Query = async (sql) => (await client.query(sql)).rows;
    const me = (
      await q<{ role: string; superuser: boolean; create: boolean; pubns: boolean }>(
        `SELECT current_user::text AS role,
                (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser,
                has_database_privilege(current_database(), 'CREATE') AS create,
                to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL AS pubns`,
      )
    )[0];
    const schemas = await q<{ name: string; owner: string }>(
      `SELECT nspname::text AS name, pg_get_userbyid(nspowner)::text AS owner
         FROM pg_catalog.pg_namespace`,
    );
    const exts = await q<{ name: string; version: string; schema: string }>(
      `SELECT e.extname::text AS name, e.extversion AS version, n.nspname::text AS schema
         FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace`,
    );
    const keys = await readObjectKeys(q, me.pubns);
    schemas.forEach((s) => keys.add(`schema:${s.name}`));
    exts.forEach((e) => keys.add(`ext:${e.name}`));
    const roles = await q<{ name: string; member: boolean }>(
      `SELECT rolname::text AS name, pg_has_role(current_user, oid, 'MEMBER') AS member
         FROM pg_catalog.pg_roles`,
    );
    const available = await q<{ name: string; trusted: boolean }>(
      `SELECT name::text AS name, bool_or(trusted) AS trusted
         FROM pg_catalog.pg_available_extension_versions GROUP BY name`,
    );
    return {
      role: me.role,
      superuser: me.superuser,
      keys,
      roles: new Set(roles.map((r) => r.name)),
      memberOf: new Set(roles.filter((r) => r.member).map((r) => r.name)),
      extensions: new Map(exts.map((e) => [e.name, { version: e.version, schema: e.schema }])),
      extensionBySchema: extensionSchemas(exts),
      available: new Map(available.map((a) => [a.name, { trusted: a.trusted }])),
      canCreateInDatabase: me.create,
      schemaOwners: new Map(schemas.map((s) => [s.name, s.owner])),
      referencedBy: await readReferencedBy(q),
    };
  });
}

/** Runs `read` with the session's search_path empty, then puts the saved one back. */
async function withEmptySearchPath<T>(client: pg.Client, read: () => Promise<T>): Promise<T> {
  const saved = (await client.query<{ p: string }>(`SELECT current_setting('search_path') AS p`))
    .rows[0].p;
  await client.query(`SELECT pg_catalog.set_config('search_path', '', false)`);
  try {
    return await read();
  } finally {
    await client.query(`SELECT pg_catalog.set_config('search_path', $1, false)`, [saved]);
  }
}

/** The keys of the target's objects but its schemas and extensions (see objectKey). */
async function readObjectKeys(q: Query, publicationSchemas: boolean): Promise<Set<string>> {
  const keys = new Set<string>();
  const queries = publicationSchemas
    ? [...OBJECT_KEY_QUERIES, PUBLICATION_SCHEMA_KEYS]
    : OBJECT_KEY_QUERIES;
  for (const sql of queries) {
    for (const row of await q<{ k: string }>(sql)) keys.add(row.k);
  }
  for (const f of await q<{ k: string; name: string }>(FUNCTION_KEYS)) {
    keys.add(f.k);
    keys.add(f.name);
  }
  return keys;
}

/** `schema.table` → the tables whose foreign keys refer to it. */
async function readReferencedBy(q: Query): Promise<Map<string, Set<string>>> {
  const fks = await q<{ referencing: string; referenced: string }>(
    `SELECT cn.nspname || '.' || c.relname AS referencing, fn.nspname || '.' || f.relname AS referenced
       FROM pg_catalog.pg_constraint k
       JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
       JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_catalog.pg_class f ON f.oid = k.confrelid
       JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
      WHERE k.contype = 'f'`,
  );
  const referencedBy = new Map<string, Set<string>>();
  for (const fk of fks) {
    const set = referencedBy.get(fk.referenced) ?? new Set<string>();
    set.add(fk.referencing);
    referencedBy.set(fk.referenced, set);
  }
  return referencedBy;
}

/**
 * Schemas that hold exactly one extension and nothing shared (vault, pgsodium, graphql), by
 * extension: what else is in them on a database the restore did not touch, CREATE EXTENSION
 * (or what it ran) made. `extensions`, `public` and `pg_catalog` hold many.
 */
function extensionSchemas(exts: { name: string; schema: string }[]): Map<string, string> {
  const count = new Map<string, number>();
  for (const e of exts) count.set(e.schema, (count.get(e.schema) ?? 0) + 1);
  return new Map(
    exts
      .filter((e) => count.get(e.schema) === 1)
      .filter((e) => !['pg_catalog', 'public', 'extensions'].includes(e.schema))
      .map((e) => [e.schema, e.name]),
  );
}

/** Of `tables` (`schema.table`), those holding at least one row (or that cannot be read). */
async function tablesWithRows(client: pg.Client, tables: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (let i = 0; i < tables.length; i += 50) {
    const chunk = tables.slice(i, i + 50);
    const sql = chunk
      .map((t, j) => {
        const q = qualify(t);
        return `SELECT ${j} AS i, CASE WHEN has_table_privilege(${literal(q)}, 'SELECT')
                       THEN EXISTS (SELECT 1 FROM ONLY ${q}) ELSE true END AS rows`;
      })
      .join(' UNION ALL ');
    const r = await client.query<{ i: number; rows: boolean }>(sql);
    for (const row of r.rows) if (row.rows) found.add(chunk[row.i]);
  }
  return found;
}

function qualify(table: string): string {
  const dot = table.indexOf('.');
  return `${quoteIdent(table.slice(0, dot))}.${quoteIdent(table.slice(dot + 1))}`;
}

function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

// ---------------------------------------------------------------------------------------------
// Definitions read from the archive (optional)

/** Where the archive is, to read the definitions of a few entries (`pg_restore -f - -L`). */
export interface ArchiveAccess {
  pgRestore: string;
  path: string;
}

interface Definitions {
  /** `schema.table trigger` → the schema of the function the trigger runs. */
  triggerFunctionSchema: Map<string, string>;
  /** `schema.table constraint` → the table the foreign key refers to (`schema.table`). */
  foreignKeyTarget: Map<string, string>;
  /** `schema.table constraint` → the foreign key's statement (`ALTER TABLE … ADD CONSTRAINT …`). */
  foreignKeySql: Map<string, string>;
}

async function readDefinitions(archive: ArchiveAccess, entries: TocEntry[]): Promise<Definitions> {
  const out: Definitions = {
    triggerFunctionSchema: new Map(),
    foreignKeyTarget: new Map(),
    foreignKeySql: new Map(),
  };
  if (entries.length === 0) return out;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'platform-toc-'));
  try {
    const list = path.join(dir, 'list');
    await writeFile(list, `${entries.map((e) => e.line).join('\n')}\n`);
    const r = await runProcess(archive.pgRestore, ['-f', '-', '-L', list, archive.path]);
    if (r.code !== 0) {
      throw new Error(
        describeExit('pg_restore -f - (reading definitions)', {
          code: r.code,
          signal: r.signal,
          stderr: r.stderr,
        }),
      );
    }
    // Each entry's SQL follows its header: `-- Name: TAG; Type: DESC; Schema: NS; Owner: ...`.
    const parts = r.stdout.split(/^-- Name: /m).slice(1);
    for (const part of parts) {
      const head = /^(.*); Type: ([^;]+); Schema: ([^;]+);/.exec(part);
      if (!head) continue;
      const [, tag, desc, ns] = head;
      const [table, name] = splitFirst(tag);
      const key = `${ns}.${table} ${name}`;
      if (desc === 'TRIGGER') {
        const m = /EXECUTE (?:FUNCTION|PROCEDURE) ((?:"(?:[^"]|"")*"|[^\s."(]+)\.)?/.exec(part);
        const schema = m?.[1] ? readIdent(m[1])[0] : undefined;
        if (schema) out.triggerFunctionSchema.set(key, schema);
      } else if (desc === 'FK CONSTRAINT') {
        const m = /REFERENCES ((?:"(?:[^"]|"")*"|[^\s."(]+)\.(?:"(?:[^"]|"")*"|[^\s."(]+))/.exec(
          part,
        );
        if (m) {
          const [schema, rel] = splitQualified(m[1]);
          if (schema) out.foreignKeyTarget.set(key, `${schema}.${rel}`);
        }
        const statement = /^ALTER TABLE[\s\S]*?;$/m.exec(part);
        if (statement) out.foreignKeySql.set(key, statement[0]);
      }
    }
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The plan

export interface PlatformRestorePlan {
  /** The listing with the left-out entries commented out (`;`), for `pg_restore -L`. */
  listFile: string;
  /** Every entry commented out, as pg_restore listed it, and why. */
  leftOut: { entry: string; why: string }[];
  /** Platform tables (`schema.table`) whose rows the restore brings. */
  dataOnly: string[];
  /** Of those, the ones holding rows on the target now: empty them first (`truncateStatement`). */
  truncate: string[];
  /**
   * What the archive relies on that the target lacks (`schema x`, `extension x`, `table x`,
   * `role x`, rows a foreign key needs): while not empty, the target is not a Supabase project
   * (or image) this archive restores into.
   */
  missingOnTarget: string[];
  /**
   * Objects of the application's schemas the archive creates that the target already holds: the
   * restore stops on them. Empty the application's schemas first.
   */
  conflicts: string[];
  /**
   * With `unvalidated`: the foreign keys to platform rows the archive lacks, left out of the
   * list (`schema.table.constraint`), and their statements, NOT VALID, to run after the restore.
   */
  unvalidated: { constraints: string[]; statements: string[] };
}

export type PlatformRestoreMode = 'project' | 'scratch';

export interface PlatformRestoreInput {
  /** The text of `pg_restore --list`. */
  listing: string;
  /** The platform, as `detectPlatform` found it on the target. */
  platform: PlatformInfo;
  /** Connected to the target database as the role the restore runs as. */
  target: pg.Client;
  /**
   * `project` (default): the target is a Supabase project (or a supabase/postgres database whose
   * platform schemas are its own); the platform's objects are the target's and only their rows
   * are restored. `scratch`: a new database on a supabase/postgres server, restored by its
   * superuser after `planScratchPreparation`; the archive brings the platform's schemas too, and
   * only what the target already holds (what CREATE EXTENSION made) is left out.
   */
  mode?: PlatformRestoreMode;
  /**
   * The archive, to read a few definitions: the function each trigger on a platform table runs
   * (the application's or the platform's) and the table each foreign key of the application
   * refers to (platform rows the archive lacks).
   */
  archive?: ArchiveAccess;
  /**
   * A new database a verification made: a foreign key to platform rows the archive lacks (an
   * app-only backup's users) is added NOT VALID after the restore instead of refusing it.
   */
  unvalidated?: boolean;
}

interface Decision {
  keep: boolean;
  why?: string;
  /** Whether the entry's COMMENT / ACL / SECURITY LABEL entries are restored. */
  followers: boolean;
}

const keep = (followers = true): Decision => ({ keep: true, followers });
const out = (why: string, followers = false): Decision => ({ keep: false, why, followers });

function entryName(e: TocEntry): string {
  return e.namespace ? `${e.namespace}.${e.tag}` : e.tag;
}

/** What deciding an archive's entries reads (the target) and gathers (what it lacks). */
interface PlanContext {
  mode: PlatformRestoreMode;
  target: TargetCatalog;
  /** Definitions read from the archive (project mode, when the archive was given). */
  defs: Definitions | undefined;
  /** Whether the target holds the object of this key (see objectKey). */
  has: (key: string | undefined) => boolean;
  /** Whether a schema is the platform's (its objects are the target's). */
  platformSchema: (ns: string | undefined) => boolean;
  /** What the archive relies on that the target lacks (see `missingOnTarget`). */
  missing: Set<string>;
  /** Objects of the application's schemas the target already holds. */
  conflicts: string[];
}

/** Decisions by dumpId. */
type Decisions = Map<number, Decision>;

/**
 * Plans the restore of an archive of a Supabase database: which entries of its table of
 * contents pg_restore restores (`listFile`), which platform tables get their rows and which of
 * those to empty first. Restore with `pg_restore --exit-on-error -L listFile` in the environment
 * of `replicaRoleEnv`, after `truncateStatement(plan)`.
 */
export async function planPlatformRestore(
  input: PlatformRestoreInput,
): Promise<PlatformRestorePlan> {
  const mode = input.mode ?? 'project';
  const entries = parseToc(input.listing);
  const target = await loadTargetCatalog(input.target);
  const platformSchema = platformSchemaOf(input.platform, target);
  const definitionEntries = entries.filter(
    (e) =>
      (e.desc === 'TRIGGER' && platformSchema(e.namespace)) ||
      (e.desc === 'FK CONSTRAINT' && !platformSchema(e.namespace)),
  );
  const ctx: PlanContext = {
    mode,
    target,
    defs:
      input.archive && mode === 'project'
        ? await readDefinitions(input.archive, definitionEntries)
        : undefined,
    has: (key) => key !== undefined && target.keys.has(key),
    platformSchema,
    missing: new Set(),
    conflicts: [],
  };

  const decisions = decideEntries(ctx, entries);
  const { dataOnly, truncate } = await planPlatformRows(ctx, input.target, entries, decisions);
  checkOwners(ctx, entries, decisions);
  const unvalidated = await planForeignKeysToPlatformRows(
    ctx,
    input,
    { entries, definitionEntries },
    decisions,
  );
  const leftOut = leftOutEntries(entries, decisions);
  const leftOutIds = new Set(leftOut.map((l) => l.dumpId));

  return {
    listFile: commentOut(input.listing, (dumpId) => leftOutIds.has(dumpId)),
    leftOut: leftOut.map(({ entry, why }) => ({ entry, why })),
    dataOnly,
    truncate: [...truncate].sort(),
    missingOnTarget: [...ctx.missing].sort(),
    conflicts: ctx.conflicts,
    unvalidated,
  };
}

/** Whether a schema is the platform's: the target's managed schemas and the known ones. */
function platformSchemaOf(
  platform: PlatformInfo,
  target: TargetCatalog,
): (ns: string | undefined) => boolean {
  const managed = new Set(platform.managedSchemas);
  // supabase_migrations is the CLI's, made as postgres: where absent, the archive brings it.
  return (ns) =>
    ns !== undefined &&
    (managed.has(ns) || isPlatformSchema(ns)) &&
    !(ns === CLI_SCHEMA && !target.keys.has(`schema:${ns}`));
}

/** Every entry's decision: first the entries that make objects, then those that follow them. */
function decideEntries(ctx: PlanContext, entries: TocEntry[]): Decisions {
  const decisions: Decisions = new Map();
  const byKey = new Map<string, Decision>();
  for (const e of entries) {
    if (FOLLOWERS.has(e.desc)) continue;
    const d = decide(ctx, e);
    decisions.set(e.dumpId, d);
    for (const k of followKeys(e)) {
      const prev = byKey.get(k);
      // Overloaded functions share their name key: followed when any of them is kept.
      if (!prev || (!prev.followers && d.followers)) byKey.set(k, d);
    }
  }
  // COMMENT / ACL / SECURITY LABEL follow the objects they are about.
  for (const e of entries) {
    if (!FOLLOWERS.has(e.desc)) continue;
    decisions.set(e.dumpId, ctx.mode === 'scratch' ? keep() : decideFollower(ctx, e, byKey));
  }
  return decisions;
}

/** A creating entry's decision. */
function decide(ctx: PlanContext, e: TocEntry): Decision {
  if (DATABASE_DESCS.has(e.desc) || LARGE_OBJECT_DESCS.has(e.desc)) return keep();
  const key = objectKey(e);
  if (ctx.mode === 'scratch') {
    if (e.desc === 'EXTENSION') {
      return ctx.has(key) ? out(madeBy(ctx, e), true) : decideExtension(ctx, e);
    }
    if (DATA_DESCS.has(e.desc) || e.desc === 'DEFAULT ACL') return keep();
    return ctx.has(key) ? out(madeBy(ctx, e), true) : keep();
  }

  // A Supabase project: the platform's objects are the target's.
  if (e.desc === 'DEFAULT ACL') return decideDefaultAcl(ctx, e);
  if (e.desc === 'PUBLICATION TABLE' || e.desc === 'PUBLICATION TABLES IN SCHEMA') {
    return ctx.has(key) ? out('already in the publication on the target') : keep();
  }
  if (e.namespace === undefined) return decideDatabaseObject(ctx, e, key);
  if (ctx.platformSchema(e.namespace)) return decideInPlatformSchema(ctx, e, e.namespace, key);
  // The application's schemas.
  if (!DATA_DESCS.has(e.desc) && ctx.has(key)) {
    ctx.conflicts.push(`${e.desc} ${entryName(e)}`);
  }
  return keep();
}

function madeBy(ctx: PlanContext, e: TocEntry): string {
  const ext = e.namespace ? ctx.target.extensionBySchema.get(e.namespace) : undefined;
  return ext
    ? `already on the target, where CREATE EXTENSION ${ext} made it (pg_dump writes it again as an entry of its own)`
    : 'already on the target';
}

function decideExtension(ctx: PlanContext, e: TocEntry): Decision {
  const { target } = ctx;
  const found = target.extensions.get(e.tag);
  if (found) {
    return out(
      `extension ${e.tag} ${found.version} is already on the target (schema ${found.schema}): the target's`,
    );
  }
  const avail = target.available.get(e.tag);
  if (!avail) {
    ctx.missing.add(`extension ${e.tag} (not available on the target server)`);
    return out(`extension ${e.tag} is not available on the target server`);
  }
  if (!target.superuser && !(avail.trusted && target.canCreateInDatabase)) {
    ctx.missing.add(
      `extension ${e.tag} (enable it on the target first: ${target.role} cannot create it)`,
    );
    return out(`extension ${e.tag} is not on the target and ${target.role} cannot create it`);
  }
  return keep();
}

function decideDefaultAcl(ctx: PlanContext, e: TocEntry): Decision {
  const { target } = ctx;
  if (ctx.platformSchema(e.namespace)) {
    return out(`default privileges in the platform's schema ${e.namespace}: the target's`);
  }
  if (target.superuser || target.memberOf.has(e.owner)) return keep();
  return out(
    `default privileges of ${e.owner}: ${target.role} is not a member of ${e.owner}, ` +
      `so the target's stay`,
  );
}

/** An entry with no schema (a schema, an extension, an event trigger, a publication...). */
function decideDatabaseObject(ctx: PlanContext, e: TocEntry, key: string | undefined): Decision {
  switch (e.desc) {
    case 'SCHEMA': {
      if (ctx.platformSchema(e.tag)) {
        if (ctx.has(key)) return out(`the platform's schema ${e.tag}: the target's`);
        ctx.missing.add(`schema ${e.tag}`);
        return out(`the platform's schema ${e.tag} is not on the target`);
      }
      if (!ctx.has(key)) return keep();
      const owner = ctx.target.schemaOwners.get(e.tag);
      return out(
        `schema ${e.tag} is already on the target (owner ${owner}` +
          (owner === e.owner ? '' : `, not ${e.owner} as in the archive: left as it is`) +
          `): its comment and privileges are restored`,
        true,
      );
    }
    case 'EXTENSION':
      return decideExtension(ctx, e);
    case 'EVENT TRIGGER':
      return out(
        ctx.has(key)
          ? `event trigger ${e.tag} is already on the target: the platform's`
          : `event trigger ${e.tag}: the platform's (they need a superuser); not on the target, not created`,
      );
    case 'PUBLICATION':
      return ctx.has(key) ? out(`publication ${e.tag} is already on the target`) : keep();
    default:
      return ctx.has(key) ? out('already on the target') : keep();
  }
}

/** An entry in one of the platform's schemas: only rows, and the application's hooks, come back. */
function decideInPlatformSchema(
  ctx: PlanContext,
  e: TocEntry,
  ns: string,
  key: string | undefined,
): Decision {
  if (e.desc === 'TABLE DATA' || e.desc === 'SEQUENCE SET') return decidePlatformRows(ctx, e, ns);
  if (e.desc === 'MATERIALIZED VIEW DATA') {
    return out(`the platform's materialized view ${entryName(e)}: the target's`);
  }
  if (e.desc === 'TRIGGER' || e.desc === 'POLICY' || e.desc === 'RULE') {
    return decidePlatformTableHook(ctx, e, ns, key);
  }
  return ctx.has(key)
    ? out(`${madeBy(ctx, e)}: the platform's schema ${ns} is the target's`)
    : out(
        `not on the target: the platform's schema ${ns} is the target's, and the restore ` +
          `creates nothing in it (the source's platform version differs, or something was added there)`,
      );
}

/** The rows of a platform table or sequence. */
function decidePlatformRows(ctx: PlanContext, e: TocEntry, ns: string): Decision {
  const name = `${ns}.${e.tag}`;
  if (SUPABASE_BOOKKEEPING_TABLES.includes(name)) {
    return out(
      `the migration history of the target's own service: the target's rows stay ` +
        `(supabase db dump --data-only leaves it out too)`,
    );
  }
  if (matchesAny(ns, SUPABASE_DATA_LEFT_OUT_SCHEMAS)) {
    return out(
      `rows of the platform's schema ${ns}, which the target's services keep ` +
        `(supabase db dump --data-only leaves this schema out)`,
    );
  }
  if (!ctx.has(`rel:${name}`)) {
    ctx.missing.add(`${e.desc === 'TABLE DATA' ? 'table' : 'sequence'} ${name}`);
    return out(`${name} is not on the target: its rows cannot be restored`);
  }
  return keep();
}

/** A trigger, policy or rule on a platform table. */
function decidePlatformTableHook(
  ctx: PlanContext,
  e: TocEntry,
  ns: string,
  key: string | undefined,
): Decision {
  const what = e.desc.toLowerCase();
  if (ctx.has(key)) return out(`${what} already on the target`);
  const [table] = splitFirst(e.tag);
  if (!ctx.has(`rel:${ns}.${table}`)) {
    return out(`${what} on ${ns}.${table}, which is not on the target`);
  }
  if (e.desc === 'TRIGGER' && ctx.defs) {
    const fnSchema = ctx.defs.triggerFunctionSchema.get(`${ns}.${e.tag}`);
    if (fnSchema !== undefined && ctx.platformSchema(fnSchema)) {
      return out(
        `a platform trigger (it runs a function of ${fnSchema}) the target lacks: ` +
          `the platform versions differ; not created`,
      );
    }
  }
  // The application's: its trigger on auth.users, its policies on storage.objects.
  return keep();
}

/** A COMMENT / ACL / SECURITY LABEL entry, in project mode. */
function decideFollower(ctx: PlanContext, e: TocEntry, byKey: Map<string, Decision>): Decision {
  const fk = followedKey(e);
  const followed = fk === undefined ? undefined : byKey.get(fk);
  if (followed) {
    return followed.followers ? keep() : out(`on an object the restore leaves out (${fk})`);
  }
  // About an object with no entry of its own (an extension's member, schema public...).
  if (ctx.platformSchema(e.namespace)) {
    return out(`on an object of the platform's schema ${e.namespace}`);
  }
  if (e.namespace === undefined && fk?.startsWith('schema:')) {
    const schema = fk.slice('schema:'.length);
    return ctx.platformSchema(schema)
      ? out(`on the platform's schema ${schema}: the target's`)
      : keep();
  }
  if (e.namespace === undefined && fk?.startsWith('ext:')) {
    return ctx.has(fk) ? out(`on extension ${fk.slice(4)}, which is the target's`) : keep();
  }
  if (e.namespace === undefined && fk?.startsWith('evt:')) {
    return out(`on event trigger ${fk.slice(4)}: the platform's`);
  }
  return keep();
}

/** Platform tables whose rows come back, and which of them to empty first. */
async function planPlatformRows(
  ctx: PlanContext,
  client: pg.Client,
  entries: TocEntry[],
  decisions: Decisions,
): Promise<{ dataOnly: string[]; truncate: Set<string> }> {
  const dataOnly: string[] = [];
  for (const e of entries) {
    if (e.desc !== 'TABLE DATA' || !decisions.get(e.dumpId)?.keep) continue;
    if (e.namespace !== undefined && isPlatformSchema(e.namespace)) {
      dataOnly.push(`${e.namespace}.${e.tag}`);
    }
  }
  const present = dataOnly.filter((t) => ctx.has(`rel:${t}`));
  const withRows = await tablesWithRows(client, present);
  const truncate = new Set(present.filter((t) => withRows.has(t)));
  // TRUNCATE refuses a table other tables refer to unless they go too: add the referring
  // platform tables whose rows the restore brings anyway (anything else makes TRUNCATE fail).
  const restoredHere = new Set(present);
  for (let grew = true; grew;) {
    grew = false;
    for (const t of [...truncate]) {
      for (const r of ctx.target.referencedBy.get(t) ?? []) {
        if (restoredHere.has(r) && !truncate.has(r)) {
          truncate.add(r);
          grew = true;
        }
      }
    }
  }
  return { dataOnly, truncate };
}

/** Roles that own what the restore keeps, and owners the restoring role cannot give away. */
function checkOwners(ctx: PlanContext, entries: TocEntry[], decisions: Decisions): void {
  const { target } = ctx;
  const cannotOwn = new Map<string, string[]>();
  for (const e of entries) {
    if (!decisions.get(e.dumpId)?.keep || e.owner === '') continue;
    if (!target.roles.has(e.owner)) ctx.missing.add(`role ${e.owner}`);
    else if (OWNED_DESCS.has(e.desc) && !target.superuser && !target.memberOf.has(e.owner)) {
      cannotOwn.set(e.owner, [...(cannotOwn.get(e.owner) ?? []), `${e.desc} ${entryName(e)}`]);
    }
  }
  for (const [owner, what] of cannotOwn) {
    ctx.missing.add(
      `membership in role ${owner}: ${target.role} cannot make it the owner of ` +
        `${what.slice(0, 3).join(', ')}${what.length > 3 ? ` and ${what.length - 3} more` : ''}`,
    );
  }
}

/**
 * Foreign keys of the application to platform rows the archive does not bring, where the
 * target's table is empty: added NOT VALID afterwards (`input.unvalidated`), or missing.
 */
async function planForeignKeysToPlatformRows(
  ctx: PlanContext,
  input: PlatformRestoreInput,
  toc: { entries: TocEntry[]; definitionEntries: TocEntry[] },
  decisions: Decisions,
): Promise<PlatformRestorePlan['unvalidated']> {
  const unvalidated: PlatformRestorePlan['unvalidated'] = { constraints: [], statements: [] };
  const { defs } = ctx;
  if (!defs) return unvalidated;
  const needed = foreignKeysByPlatformTable(ctx, defs, toc, decisions);
  const populated = await tablesWithRows(
    input.target,
    [...needed.keys()].filter((t) => ctx.has(`rel:${t}`)),
  );
  for (const [table, fks] of needed) {
    if (populated.has(table)) continue;
    if (input.unvalidated) {
      for (const e of fks) {
        const [on, constraint] = splitFirst(e.tag);
        const statement = defs.foreignKeySql.get(`${e.namespace}.${e.tag}`);
        if (!statement) continue;
        decisions.set(
          e.dumpId,
          out(`refers to rows of ${table} the backup does not hold: added NOT VALID afterwards`),
        );
        unvalidated.constraints.push(`${e.namespace}.${on}.${constraint}`);
        unvalidated.statements.push(`${statement.replace(/;$/, '')} NOT VALID`);
      }
      continue;
    }
    const named = fks.map((e) => {
      const [on, constraint] = splitFirst(e.tag);
      return `${constraint} of ${e.namespace}.${on}`;
    });
    ctx.missing.add(
      `rows of ${table}: ${named.join(', ')} refer to them and the archive does not ` +
        `hold them (restore them first, or restore a whole-database backup)`,
    );
  }
  return unvalidated;
}

/** Kept foreign keys to platform tables whose rows the archive does not bring, by table. */
function foreignKeysByPlatformTable(
  ctx: PlanContext,
  defs: Definitions,
  toc: { entries: TocEntry[]; definitionEntries: TocEntry[] },
  decisions: Decisions,
): Map<string, TocEntry[]> {
  const dataKept = new Set(
    toc.entries
      .filter((e) => e.desc === 'TABLE DATA' && decisions.get(e.dumpId)?.keep)
      .map((e) => `${e.namespace}.${e.tag}`),
  );
  const needed = new Map<string, TocEntry[]>();
  for (const e of toc.definitionEntries) {
    if (e.desc !== 'FK CONSTRAINT' || !decisions.get(e.dumpId)?.keep) continue;
    const refTable = defs.foreignKeyTarget.get(`${e.namespace}.${e.tag}`);
    if (!refTable || dataKept.has(refTable)) continue;
    const [schema] = splitQualified(refTable);
    if (schema === undefined || !ctx.platformSchema(schema)) continue;
    needed.set(refTable, [...(needed.get(refTable) ?? []), e]);
  }
  return needed;
}

/** The entries decided out, in the listing's order, and why. */
function leftOutEntries(
  entries: TocEntry[],
  decisions: Decisions,
): { dumpId: number; entry: string; why: string }[] {
  const leftOut: { dumpId: number; entry: string; why: string }[] = [];
  for (const e of entries) {
    const d = decisions.get(e.dumpId);
    if (d && !d.keep) leftOut.push({ dumpId: e.dumpId, entry: e.line, why: d.why ?? 'left out' });
  }
  return leftOut;
}

/** The listing with the entries `commented(dumpId)` says commented out (`;`), for `-L`. */
function commentOut(listing: string, commented: (dumpId: number) => boolean): string {
  return listing
    .split('\n')
    .map((line) => {
      const m = ENTRY_LINE.exec(line.replace(/\r$/, ''));
      return m && commented(Number(m[1])) ? `;${line}` : line;
    })
    .join('\n');
}

/**
 * For a new database on a supabase/postgres server (a service container), restored by its
 * superuser: the list of the archive's schemas and extensions to create first (those the
 * database lacks). Creating the extensions makes what they make (Vault's view and trigger
 * function), so that `planPlatformRestore({ mode: 'scratch' })` then sees those and leaves out
 * the archive's second copy. `missingOnTarget` names what the server lacks for the whole
 * archive: extensions it cannot install and roles owning the archive's objects (the image
 * lacks the realtime and webhooks services' roles); `conflicts`, what the database already
 * holds (it must be new).
 *
 * Why a new database and not the image's own `postgres` one: the image's auth and storage
 * schemas are its bootstrap versions (auth.users without the columns GoTrue adds, no
 * auth.identities, no supabase_functions) and no service in a CI container migrates them, so
 * a project's rows do not fit there. Supabase restores a downloaded backup into its image the
 * same way: without the image's migrations, which the backup holds (supabase/postgres#1254).
 */
export async function planScratchPreparation(input: {
  listing: string;
  target: pg.Client;
}): Promise<{
  listFile: string;
  kept: string[];
  missingOnTarget: string[];
  /** What the database already holds (it must be new: everything in it is taken as made here). */
  conflicts: string[];
}> {
  const entries = parseToc(input.listing);
  const target = await loadTargetCatalog(input.target);
  const held = await input.target.query<{ what: string }>(
    `SELECT 'schema ' || nspname AS what FROM pg_catalog.pg_namespace
      WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
     UNION ALL
     SELECT 'relation public.' || relname FROM pg_catalog.pg_class
      WHERE relnamespace = 'public'::regnamespace
     UNION ALL
     SELECT 'function public.' || proname FROM pg_catalog.pg_proc
      WHERE pronamespace = 'public'::regnamespace
     UNION ALL
     SELECT 'extension ' || extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'
     ORDER BY 1`,
  );
  const missing = new Set<string>();
  const keepIds = new Set<number>();
  for (const e of entries) {
    if (e.owner !== '' && !target.roles.has(e.owner)) missing.add(`role ${e.owner}`);
    if (e.desc === 'SCHEMA' && !target.keys.has(`schema:${e.tag}`)) keepIds.add(e.dumpId);
    if (e.desc === 'EXTENSION' && !target.extensions.has(e.tag)) {
      if (target.available.has(e.tag)) keepIds.add(e.dumpId);
      else missing.add(`extension ${e.tag} (not available on the target server)`);
    }
  }
  return {
    listFile: commentOut(input.listing, (dumpId) => !keepIds.has(dumpId)),
    kept: entries.filter((e) => keepIds.has(e.dumpId)).map((e) => e.line),
    missingOnTarget: [...missing].sort(),
    conflicts: held.rows.map((r) => r.what),
  };
}

/** The statement that empties `plan.truncate` (one TRUNCATE, as foreign keys demand), if any. */
export function truncateStatement(plan: Pick<PlatformRestorePlan, 'truncate'>): string | undefined {
  if (plan.truncate.length === 0) return undefined;
  return `TRUNCATE TABLE ${plan.truncate.map((t) => `ONLY ${qualify(t)}`).join(', ')}`;
}

/** The libpq option that makes a session load rows with no trigger (and no FK check) firing. */
export const REPLICA_ROLE_OPTION = '-c session_replication_role=replica';

/**
 * The environment for pg_restore that loads with `session_replication_role = replica`, as
 * Supabase's restore guide does (`SET session_replication_role = replica` before data.sql):
 * Vault's encrypting trigger and the application's triggers do not process restored rows again.
 * libpq passes it as a startup option (PGOPTIONS), which needs the role to be allowed to set it:
 * a superuser, or (PostgreSQL 15+) `GRANT SET ON PARAMETER session_replication_role`.
 */
export function replicaRoleEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const current = env.PGOPTIONS?.trim();
  return {
    ...env,
    PGOPTIONS: current ? `${current} ${REPLICA_ROLE_OPTION}` : REPLICA_ROLE_OPTION,
  };
}
