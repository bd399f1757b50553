import { readFile } from 'node:fs/promises';
import { type Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  describeExit,
  runProcess,
  startProcess,
  type ProcessExit,
  type RunningProcess,
} from '../core/process.js';
import {
  childEnv,
  connect,
  quoteIdent,
  quoteLiteral,
  type ConnectionInfo,
} from '../postgres/connection.js';
import { selectionMatcher, type SelectionMatcher } from '../postgres/inventory.js';

/** One line of `pg_restore --list`: `dumpId; tableoid oid DESC NAMESPACE TAG OWNER`. */
export interface ArchiveEntry {
  dumpId: number;
  /** The catalog the object was in (pg_class's oid for tables, 0 for comments and data). */
  catalog: number;
  oid: number;
  /** What follows the two oids: `DESC NAMESPACE TAG OWNER`, NAMESPACE `-` when there is none. */
  text: string;
}

/** What the replacement needs to know of the archive (see `readArchiveContents`). */
export interface ArchiveContents {
  /** The entries pg_restore restores: the archive's table of contents, or the list file's. */
  entries: ArchiveEntry[];
  /** Whether the restore's SQL creates schema public (pg_dump -n public does; a whole-database dump does not). */
  createsPublic: boolean;
  /** Statements in the restore's SQL that must not run inside the restore's transaction. */
  nonTransactional: string[];
}

/** The SQL that empties what a backup covers in the target, and what it would reach beyond. */
export interface ReplacementPlan {
  /** Run in order, in the restore's transaction, before pg_restore's SQL. */
  statements: string[];
  summary: {
    /** Schemas dropped (public re-created empty when the archive does not create it). */
    schemas: string[];
    /** Extensions dropped, to be created again by the archive. */
    extensions: string[];
    /** Other database-level objects dropped, described by pg_describe_object. */
    other: string[];
    largeObjects: number;
  };
  /**
   * Objects outside what the backup covers that the drops would remove with CASCADE (a trigger
   * on another schema's table that runs a dropped function, a view over a dropped table, a
   * foreign key to it...): the restore does not bring them back.
   */
  outside: string[];
  /**
   * Of `outside`, what the restore re-creates from the target's own definition once the backup
   * is restored, in the same transaction: triggers on tables outside the backup that run one of
   * its functions (a trigger on auth.users running a function in public), and the backup's
   * tables' places in publications it does not carry (supabase_realtime).
   */
  recreate: { what: string; sql: string }[];
}

export interface ReplacementInput {
  selection: { schemas: string[]; excludeSchemas: string[] };
  archive: ArchiveContents;
}

/** The application_name of the restoring session, unless the connection names its own. */
export const RESTORE_APPLICATION_NAME = 'pg-backup-actions restore';

const LOCK_TIMEOUT = '60s';
/** Oids below this are the server's own (FirstNormalObjectId). */
const FIRST_NORMAL_OID = 16384;

// ---------------------------------------------------------------------------------------------
// The archive

const ENTRY_LINE = /^(\d+);\s+(\d+)\s+(\d+)\s+(.*)$/;

/** Reads the text of `pg_restore --list` (or a list file: lines starting with ';' are left out). */
export function parseArchiveEntries(text: string): ArchiveEntry[] {
  const entries: ArchiveEntry[] = [];
  for (const line of text.split('\n')) {
    const m = ENTRY_LINE.exec(line.replace(/\r$/, ''));
    if (!m) continue;
    entries.push({ dumpId: Number(m[1]), catalog: Number(m[2]), oid: Number(m[3]), text: m[4] });
  }
  return entries;
}

/** `TAG OWNER` of the entries of a database-level kind (`EXTENSION`, `SERVER`...). */
function entriesOf(entries: ArchiveEntry[], desc: string): string[] {
  const prefix = `${desc} - `;
  return entries.filter((e) => e.text.startsWith(prefix)).map((e) => e.text.slice(prefix.length));
}

/** Whether `TAG OWNER` (the owner may be empty) is the entry of an object tagged `tag`. */
function hasTag(rests: string[], tag: string): boolean {
  return rests.some((rest) => {
    if (!rest.startsWith(`${tag} `) && rest !== tag) return false;
    return !rest.slice(tag.length + 1).includes(' ');
  });
}

/** The large objects the archive carries, as oid ranges: `BLOB - 16400` (to 16), `BLOB METADATA - 16400..16500` (17+). */
function largeObjectRanges(entries: ArchiveEntry[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const e of entries) {
    const m = /^BLOB(?: METADATA)? - (\d+)(?:\.\.(\d+))?(?: |$)/.exec(e.text);
    if (m) ranges.push([Number(m[1]), Number(m[2] ?? m[1])]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

/**
 * Statement by statement, the heads (first words) of the SQL psql would run and the psql
 * meta-commands it would obey, skipping comments, quoted text, dollar-quoted bodies and COPY data.
 */
export function sqlStatementHeads(sql: string): { sql: string[]; meta: string[] } {
  const heads: string[] = [];
  const meta: string[] = [];
  let head = '';
  const isIdent = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9_$]/.test(c);
  const endStatement = (): void => {
    const h = head.replace(/\s+/g, ' ').trim();
    if (h) heads.push(h);
    head = '';
  };
  const append = (text: string): void => {
    if (head.length < 200) head += text;
  };
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      append(' ');
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
      append(' ');
    } else if (c === "'") {
      const escapes = (sql[i - 1] === 'E' || sql[i - 1] === 'e') && !isIdent(sql[i - 2]);
      let j = i + 1;
      while (j < n) {
        if (escapes && sql[j] === '\\') j += 2;
        else if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j++;
      }
      append("''");
      i = j + 1;
    } else if (c === '"') {
      let j = i + 1;
      while (j < n) {
        if (sql[j] === '"' && sql[j + 1] === '"') j += 2;
        else if (sql[j] === '"') break;
        else j++;
      }
      append(sql.slice(i, Math.min(j + 1, i + 100)));
      i = j + 1;
    } else if (c === '$' && !isIdent(sql[i - 1])) {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 80));
      if (!tag) {
        append(c);
        i++;
        continue;
      }
      const close = sql.indexOf(tag[0], i + tag[0].length);
      append('$$');
      i = close < 0 ? n : close + tag[0].length;
    } else if (c === ';') {
      const copyFromStdin = /^COPY\b[\s\S]*\bFROM\s+stdin\b/i.test(head.trim());
      endStatement();
      i++;
      if (copyFromStdin) {
        // The rows follow, from the next line up to a line \.; psql reads them as data.
        let at = sql.indexOf('\n', i);
        at = at < 0 ? n : at + 1;
        while (at < n) {
          const next = sql.indexOf('\n', at);
          const line = sql.slice(at, next < 0 ? n : next).replace(/\r$/, '');
          at = next < 0 ? n : next + 1;
          if (line === '\\.') break;
        }
        i = at;
      }
    } else if (c === '\\') {
      const nl = sql.indexOf('\n', i);
      const line = sql.slice(i, nl < 0 ? n : nl).trim();
      meta.push(line.split(/\s+/)[0]);
      i = nl < 0 ? n : nl;
    } else {
      append(c);
      i++;
    }
  }
  endStatement();
  return { sql: heads, meta };
}

/** Statements that cannot run, or must not run, inside the one transaction of the restore. */
const NON_TRANSACTIONAL: RegExp[] = [
  /^(BEGIN|START TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE TRANSACTION)\b/i,
  /^(CREATE|DROP) DATABASE\b/i,
  /^ALTER DATABASE\b.*\bSET TABLESPACE\b/i,
  /^(CREATE|DROP) TABLESPACE\b/i,
  /^CREATE (UNIQUE )?INDEX CONCURRENTLY\b/i,
  /^DROP INDEX CONCURRENTLY\b/i,
  /^REINDEX\b.*\bCONCURRENTLY\b/i,
  /^REFRESH MATERIALIZED VIEW CONCURRENTLY\b/i,
  /^ALTER SYSTEM\b/i,
  /^(VACUUM|CLUSTER|CHECKPOINT|DISCARD)\b/i,
  /^DROP SUBSCRIPTION\b/i,
];

/** The meta-commands pg_dump's SQL carries (since 17.6, 16.10, 15.14, 14.19, 13.22); psql runs them in place. */
const HARMLESS_META = new Set(['\\restrict', '\\unrestrict']);

/** The statements of `sql` that would break the restore's single transaction. */
export function nonTransactionalStatements(sql: string): string[] {
  return nonTransactionalIn(sqlStatementHeads(sql));
}

function nonTransactionalIn({ sql: heads, meta }: { sql: string[]; meta: string[] }): string[] {
  const found = heads.filter((h) => NON_TRANSACTIONAL.some((re) => re.test(h)));
  found.push(
    ...heads.filter((h) => /^CREATE SUBSCRIPTION\b/i.test(h) && !/connect\s*=\s*false/i.test(h)),
  );
  found.push(...meta.filter((m) => !HARMLESS_META.has(m)).map((m) => `psql meta-command ${m}`));
  return [...new Set(found.map((h) => (h.length > 120 ? `${h.slice(0, 117)}...` : h)))];
}

/** The SQL of the archive's definitions, no data (`pg_restore --schema-only --file=-`). */
async function definitionsSql(o: {
  pgRestore: string;
  archivePath: string;
  listFile?: string;
  env?: NodeJS.ProcessEnv;
}): Promise<{ sql: string[]; meta: string[] }> {
  const args = ['--schema-only', '--file=-'];
  if (o.listFile) args.push(`--use-list=${o.listFile}`);
  args.push(o.archivePath);
  const r = await runProcess(o.pgRestore, args, {
    env: childEnv(o.env ?? process.env, { params: {} }),
  });
  if (r.code !== 0) {
    throw new Error(
      describeExit('pg_restore --schema-only', {
        code: r.code,
        signal: r.signal,
        stderr: r.stderr,
      }),
    );
  }
  return sqlStatementHeads(r.stdout);
}

/**
 * Reads what the replacement needs from the archive: its table of contents (or the list
 * file's entries), and from the SQL of its definitions (no data), whether it creates schema
 * public and whether anything in it cannot run in a transaction.
 */
export async function readArchiveContents(o: {
  pgRestore: string;
  archivePath: string;
  listFile?: string;
  env?: NodeJS.ProcessEnv;
}): Promise<ArchiveContents> {
  let listing: string;
  if (o.listFile) {
    listing = await readFile(o.listFile, 'utf8');
  } else {
    const r = await runProcess(o.pgRestore, ['--list', o.archivePath], {
      env: childEnv(o.env ?? process.env, { params: {} }),
    });
    if (r.code !== 0) {
      throw new Error(
        describeExit('pg_restore --list', { code: r.code, signal: r.signal, stderr: r.stderr }),
      );
    }
    listing = r.stdout;
  }
  const heads = await definitionsSql(o);
  return {
    entries: parseArchiveEntries(listing),
    // Not the listing's `SCHEMA - public` entry: pg_dump also lists public to set its owner or
    // with --clean, and writes "-- *not* creating schema, since initdb creates it" for it.
    createsPublic: heads.sql.some((h) => /^CREATE SCHEMA "?public"?$/.test(h)),
    nonTransactional: nonTransactionalIn(heads),
  };
}

// ---------------------------------------------------------------------------------------------
// The plan

interface DbObject {
  kind: string;
  classid: number;
  oid: number;
  tag: string;
  alt: string | null;
  statement: string;
  description: string;
}

/**
 * The database-level objects of the target a whole-database archive may create again, each
 * with the tag pg_dump gives its archive entry (formatted as pg_dump formats it: search_path
 * empty) and the statement that drops it. Built-in objects and extension members are left out.
 */
const DB_OBJECTS_SQL = `
SELECT * FROM (
  SELECT 'EXTENSION' AS kind, 'pg_extension'::regclass::oid AS classid, e.oid, e.extname::text AS tag,
         NULL::text AS alt, 'DROP EXTENSION IF EXISTS ' || quote_ident(e.extname) || ' CASCADE' AS statement
    FROM pg_extension e
  UNION ALL
  SELECT 'TRANSFORM', 'pg_transform'::regclass::oid, t.oid,
         'TRANSFORM FOR ' || format_type(t.trftype, NULL) || ' LANGUAGE ' || quote_ident(l.lanname),
         'TRANSFORM FOR ' || format_type(t.trftype, NULL) || ' LANGUAGE ' || l.lanname,
         'DROP TRANSFORM IF EXISTS FOR ' || format_type(t.trftype, NULL) || ' LANGUAGE ' || quote_ident(l.lanname) || ' CASCADE'
    FROM pg_transform t JOIN pg_language l ON l.oid = t.trflang
  UNION ALL
  SELECT 'CAST', 'pg_cast'::regclass::oid, c.oid,
         'CAST (' || format_type(c.castsource, NULL) || ' AS ' || format_type(c.casttarget, NULL) || ')', NULL,
         'DROP CAST IF EXISTS (' || format_type(c.castsource, NULL) || ' AS ' || format_type(c.casttarget, NULL) || ') CASCADE'
    FROM pg_cast c
  UNION ALL
  SELECT 'ACCESS METHOD', 'pg_am'::regclass::oid, a.oid, a.amname::text, NULL,
         'DROP ACCESS METHOD IF EXISTS ' || quote_ident(a.amname) || ' CASCADE'
    FROM pg_am a
  UNION ALL
  SELECT 'FOREIGN DATA WRAPPER', 'pg_foreign_data_wrapper'::regclass::oid, w.oid, w.fdwname::text, NULL,
         'DROP FOREIGN DATA WRAPPER IF EXISTS ' || quote_ident(w.fdwname) || ' CASCADE'
    FROM pg_foreign_data_wrapper w
  UNION ALL
  SELECT 'SERVER', 'pg_foreign_server'::regclass::oid, s.oid, s.srvname::text, NULL,
         'DROP SERVER IF EXISTS ' || quote_ident(s.srvname) || ' CASCADE'
    FROM pg_foreign_server s
  UNION ALL
  SELECT 'USER MAPPING', 'pg_user_mapping'::regclass::oid, m.umid,
         'USER MAPPING ' || m.usename || ' SERVER ' || m.srvname, NULL,
         'DROP USER MAPPING IF EXISTS FOR ' || CASE WHEN m.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(m.usename) END
           || ' SERVER ' || quote_ident(m.srvname)
    FROM pg_user_mappings m
  UNION ALL
  SELECT 'EVENT TRIGGER', 'pg_event_trigger'::regclass::oid, t.oid, t.evtname::text, NULL,
         'DROP EVENT TRIGGER IF EXISTS ' || quote_ident(t.evtname)
    FROM pg_event_trigger t
  UNION ALL
  SELECT 'PUBLICATION', 'pg_publication'::regclass::oid, p.oid, p.pubname::text, NULL,
         'DROP PUBLICATION IF EXISTS ' || quote_ident(p.pubname)
    FROM pg_publication p
  UNION ALL
  SELECT 'PROCEDURAL LANGUAGE', 'pg_language'::regclass::oid, l.oid, l.lanname::text, NULL,
         'DROP LANGUAGE IF EXISTS ' || quote_ident(l.lanname) || ' CASCADE'
    FROM pg_language l WHERE l.lanispl
  UNION ALL
  SELECT 'SUBSCRIPTION', 'pg_subscription'::regclass::oid, s.oid, s.subname::text, NULL, ''
    FROM pg_subscription s WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
) o
WHERE o.oid >= ${FIRST_NORMAL_OID}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                   WHERE d.classid = o.classid AND d.objid = o.oid AND d.deptype = 'e')
`;

/** Order of the drops (event triggers first: they would fire on every other statement). */
const DROP_ORDER = [
  'EVENT TRIGGER',
  'SCHEMA',
  'PUBLICATION',
  'EXTENSION',
  'TRANSFORM',
  'CAST',
  'USER MAPPING',
  'SERVER',
  'FOREIGN DATA WRAPPER',
  'ACCESS METHOD',
  'PROCEDURAL LANGUAGE',
];

/**
 * For each reached object `r`: the schema it belongs to (through its table, operator family or
 * the like for the objects that hang on one) as `nsp`, NULL for database-level objects.
 */
const OBJECT_SCHEMA_SQL = `
    CASE r.classid
      WHEN 'pg_namespace'::regclass THEN r.objid
      WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = r.objid)
      WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = r.objid)
      WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = r.objid)
      WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = r.objid)
      WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = r.objid)
      WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class WHERE w.oid = r.objid)
      WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = r.objid)
      WHEN 'pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.oid = r.objid)
      WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxnamespace FROM pg_statistic_ext WHERE oid = r.objid)
      WHEN 'pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_operator WHERE oid = r.objid)
      WHEN 'pg_opclass'::regclass THEN (SELECT opcnamespace FROM pg_opclass WHERE oid = r.objid)
      WHEN 'pg_opfamily'::regclass THEN (SELECT opfnamespace FROM pg_opfamily WHERE oid = r.objid)
      WHEN 'pg_amop'::regclass THEN (SELECT f.opfnamespace FROM pg_amop a JOIN pg_opfamily f ON f.oid = a.amopfamily WHERE a.oid = r.objid)
      WHEN 'pg_amproc'::regclass THEN (SELECT f.opfnamespace FROM pg_amproc a JOIN pg_opfamily f ON f.oid = a.amprocfamily WHERE a.oid = r.objid)
      WHEN 'pg_collation'::regclass THEN (SELECT collnamespace FROM pg_collation WHERE oid = r.objid)
      WHEN 'pg_conversion'::regclass THEN (SELECT connamespace FROM pg_conversion WHERE oid = r.objid)
      WHEN 'pg_ts_config'::regclass THEN (SELECT cfgnamespace FROM pg_ts_config WHERE oid = r.objid)
      WHEN 'pg_ts_dict'::regclass THEN (SELECT dictnamespace FROM pg_ts_dict WHERE oid = r.objid)
      WHEN 'pg_ts_parser'::regclass THEN (SELECT prsnamespace FROM pg_ts_parser WHERE oid = r.objid)
      WHEN 'pg_ts_template'::regclass THEN (SELECT tmplnamespace FROM pg_ts_template WHERE oid = r.objid)
      WHEN 'pg_default_acl'::regclass THEN (SELECT NULLIF(defaclnamespace, 0) FROM pg_default_acl WHERE oid = r.objid)
    END`;

/**
 * For each reached object `r`: the object it hangs on, if any (an index's, trigger's, rule's,
 * default's, policy's or constraint's table, a domain constraint's type, a publication's
 * membership's publication, a user mapping's server).
 */
function objectOwnerSql(serverVersion: number): string {
  const cases: [string, string, string][] = [
    ['pg_class', 'pg_class', 'SELECT indrelid FROM pg_index WHERE indexrelid = r.objid'],
    [
      'pg_constraint',
      'pg_class',
      'SELECT NULLIF(conrelid, 0) FROM pg_constraint WHERE oid = r.objid',
    ],
    [
      'pg_constraint',
      'pg_type',
      'SELECT NULLIF(contypid, 0) FROM pg_constraint WHERE oid = r.objid',
    ],
    ['pg_trigger', 'pg_class', 'SELECT tgrelid FROM pg_trigger WHERE oid = r.objid'],
    ['pg_rewrite', 'pg_class', 'SELECT ev_class FROM pg_rewrite WHERE oid = r.objid'],
    ['pg_attrdef', 'pg_class', 'SELECT adrelid FROM pg_attrdef WHERE oid = r.objid'],
    ['pg_policy', 'pg_class', 'SELECT polrelid FROM pg_policy WHERE oid = r.objid'],
    ['pg_statistic_ext', 'pg_class', 'SELECT stxrelid FROM pg_statistic_ext WHERE oid = r.objid'],
    [
      'pg_publication_rel',
      'pg_publication',
      'SELECT prpubid FROM pg_publication_rel WHERE oid = r.objid',
    ],
    [
      'pg_user_mapping',
      'pg_foreign_server',
      'SELECT srvid FROM pg_user_mappings WHERE umid = r.objid',
    ],
  ];
  if (serverVersion >= 150000) {
    cases.push([
      'pg_publication_namespace',
      'pg_publication',
      'SELECT pnpubid FROM pg_publication_namespace WHERE oid = r.objid',
    ]);
  }
  return cases
    .map(
      ([catalog, ownerCatalog, query]) =>
        `SELECT '${ownerCatalog}'::regclass::oid AS classid, (${query}) AS objid
          WHERE r.classid = '${catalog}'::regclass`,
    )
    .join('\n      UNION ALL ');
}

/**
 * Everything dropping the roots with CASCADE removes, as PostgreSQL's dependency walk does: the
 * objects that depend on a removed one (a column's dependents only when that column goes), and
 * the object a removed one is an internal part or an extension member of (removing a view's
 * rule removes the view; removing an extension's member removes the extension). Of those, the
 * ones outside the dropped schemas and roots, described; parts of a listed object are left out
 * (a view's columns and rule, a table's triggers, an extension's members).
 * $1, $2: the roots' catalogs and oids; $3: the dropped schemas; $4: the dropped extensions.
 */
/**
 * `ALTER PUBLICATION … ADD TABLE …` for the publication membership `p.objid`, with its column
 * list and row filter (PostgreSQL 15+), as pg_dump writes one.
 */
function publicationTableSql(serverVersion: number): string {
  const extras =
    serverVersion >= 150000
      ? `|| COALESCE(' (' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                FROM pg_attribute a
                               WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)) || ')', '')
         || COALESCE(' WHERE (' || pg_get_expr(pr.prqual, pr.prrelid) || ')', '')`
      : '';
  return `SELECT format('ALTER PUBLICATION %I ADD TABLE ONLY %I.%I', pb.pubname, n.nspname, c.relname) ${extras}
            FROM pg_publication_rel pr
            JOIN pg_publication pb ON pb.oid = pr.prpubid
            JOIN pg_class c ON c.oid = pr.prrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE pr.oid = p.objid`;
}

function outsideSql(serverVersion: number): string {
  return `
WITH RECURSIVE
roots(classid, objid) AS (SELECT * FROM unnest($1::oid[], $2::oid[])),
reached(classid, objid, objsubid) AS (
  SELECT classid, objid, 0 FROM roots
  UNION
  SELECT x.classid, x.objid, x.objsubid FROM reached r CROSS JOIN LATERAL (
    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d
     WHERE d.refclassid = r.classid AND d.refobjid = r.objid
       AND (r.objsubid = 0 OR d.refobjsubid = r.objsubid) AND d.deptype <> 'p'
    UNION ALL
    SELECT d.refclassid, d.refobjid, d.refobjsubid FROM pg_depend d
     WHERE d.classid = r.classid AND d.objid = r.objid
       AND (r.objsubid = 0 OR d.objsubid = r.objsubid) AND d.deptype IN ('i', 'e')
  ) x
),
placed AS (
  SELECT r.classid, r.objid, r.objsubid, ${OBJECT_SCHEMA_SQL} AS nsp,
         ow.classid AS owner_classid, ow.objid AS owner_objid
    FROM reached r
    LEFT JOIN LATERAL (
      ${objectOwnerSql(serverVersion)}
    ) ow ON ow.objid IS NOT NULL
)
SELECT DISTINCT pg_describe_object(p.classid, p.objid, p.objsubid) AS what,
       CASE WHEN p.classid = 'pg_trigger'::regclass AND p.objsubid = 0
            THEN pg_get_triggerdef(p.objid)
            WHEN p.classid = 'pg_publication_rel'::regclass
            THEN (${publicationTableSql(serverVersion)})
       END AS definition
  FROM placed p
 WHERE NOT EXISTS (SELECT 1 FROM roots o WHERE o.classid = p.classid AND o.objid = p.objid)
   AND (p.nsp IS NULL OR NOT (p.nsp = ANY ($3::oid[]) OR p.nsp = 'pg_toast'::regnamespace))
   -- members of a dropped extension come back with it
   AND NOT EXISTS (SELECT 1 FROM pg_depend m
                    WHERE m.classid = p.classid AND m.objid = p.objid AND m.deptype = 'e'
                      AND m.refclassid = 'pg_extension'::regclass AND m.refobjid = ANY ($4::oid[]))
   -- a column of a listed table or view
   AND NOT (p.objsubid <> 0 AND EXISTS (SELECT 1 FROM reached q
                                         WHERE q.classid = p.classid AND q.objid = p.objid AND q.objsubid = 0))
   -- a part of a listed object: a view's rule, a row type, an extension's member
   AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN reached q
                      ON q.classid = d.refclassid AND q.objid = d.refobjid
                     AND (q.objsubid = 0 OR q.objsubid = d.refobjsubid)
                    WHERE d.classid = p.classid AND d.objid = p.objid AND d.deptype IN ('i', 'e')
                      AND (p.objsubid = 0 OR d.objsubid = p.objsubid)
                      AND NOT (d.refclassid = p.classid AND d.refobjid = p.objid))
   -- hangs on a listed or dropped object: a table's trigger, index or constraint, a publication's table
   AND NOT EXISTS (SELECT 1 FROM reached q
                    WHERE q.classid = p.owner_classid AND q.objid = p.owner_objid AND q.objsubid = 0)
 ORDER BY 1`;
}

interface PublicSchema {
  owner: string;
  comment: string | null;
  grants: { grantee: string | null; privilege: string; grantable: boolean }[];
}

/** A schema of the target (`member`: an extension created it). */
interface TargetSchema {
  classid: number;
  oid: number;
  name: string;
  member: boolean;
}

/** A DROP statement and the kind of object it drops (statements run in DROP_ORDER). */
interface DropStatement {
  kind: string;
  sql: string;
}

/**
 * Computes, without changing anything, the SQL that empties exactly what a backup covers in the
 * target: the schemas its selection includes (pg_dump's pattern rules; a whole-database backup
 * has no `schemas`) and, for a whole-database backup, the database-level objects the archive
 * creates that the target already has: extensions, transforms, casts, access methods,
 * foreign-data wrappers, servers and user mappings, event triggers, publications, procedural
 * languages and large objects. Built-in objects and extension members (dropped with their
 * extension) are left alone. The statements use IF EXISTS and CASCADE, so an object a previous
 * statement removed is skipped; `outside` lists what the CASCADEs would reach beyond that.
 */
export async function planReplacement(
  client: pg.Client,
  input: ReplacementInput,
): Promise<ReplacementPlan> {
  const { selection, archive } = input;
  if (archive.nonTransactional.length > 0) throw nonTransactionalError(archive.nonTransactional);
  const wholeDatabase = selection.schemas.length === 0;
  const matcher = selectionMatcher({ ...selection, excludeTableData: [] });
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    // Names come out as pg_dump writes them: qualified unless in pg_catalog.
    await client.query(`SET LOCAL search_path = ''`);
    const version = await client.query<{ v: string }>(
      `SELECT current_setting('server_version_num') AS v`,
    );
    const serverVersion = Number(version.rows[0].v);

    const schemas = await selectedSchemas(client, matcher);
    const statements = await schemaStatements(client, schemas, archive);
    const dropped = wholeDatabase ? await databaseObjectsToDrop(client, archive) : [];
    statements.push(...dropped.map((d) => ({ kind: d.kind, sql: d.object.statement })));
    const largeObjects = await largeObjectsToUnlink(client, archive);
    const outside = await cascadeReach(client, serverVersion, schemas, dropped);
    await client.query('COMMIT');

    const ordered = DROP_ORDER.flatMap((kind) =>
      statements.filter((s) => s.kind === kind).map((s) => s.sql),
    );
    if (largeObjects.statement) ordered.push(largeObjects.statement);
    return {
      statements: ordered,
      summary: {
        schemas: schemas.map((s) => s.name),
        extensions: dropped.filter((d) => d.kind === 'EXTENSION').map((d) => d.object.tag),
        other: DROP_ORDER.flatMap((kind) =>
          dropped
            .filter((d) => d.kind === kind && kind !== 'EXTENSION')
            .map((d) => d.object.description),
        ),
        largeObjects: largeObjects.count,
      },
      outside: outside.map((r) => r.what),
      recreate: outside.flatMap((r) => (r.definition ? [{ what: r.what, sql: r.definition }] : [])),
    };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** The target's schemas the selection includes (those an extension made go with it). */
async function selectedSchemas(
  client: pg.Client,
  matcher: SelectionMatcher,
): Promise<TargetSchema[]> {
  const found = await client.query<TargetSchema>(
    `SELECT 'pg_namespace'::regclass::oid AS classid, n.oid, n.nspname AS name,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                       AND d.objid = n.oid AND d.deptype = 'e') AS member
       FROM pg_namespace n
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY n.nspname`,
  );
  // A schema an extension created goes with its extension, not on its own.
  return found.rows.filter((s) => !s.member && matcher.schemaIncluded(s.name));
}

/** DROP SCHEMA for each, and public re-created as it was when the archive does not create it. */
async function schemaStatements(
  client: pg.Client,
  schemas: TargetSchema[],
  archive: ReplacementInput['archive'],
): Promise<DropStatement[]> {
  const statements: DropStatement[] = schemas.map((s) => ({
    kind: 'SCHEMA',
    sql: `DROP SCHEMA IF EXISTS ${quoteIdent(s.name)} CASCADE`,
  }));
  if (schemas.some((s) => s.name === 'public') && !archive.createsPublic) {
    // pg_dump creates public only when it is selected by name; otherwise it is re-created
    // empty as it was (owner, grants, comment), and the archive's COMMENT and GRANTs apply.
    const p = await publicSchemaOf(client);
    statements.push(...recreatePublic(p).map((sql) => ({ kind: 'SCHEMA', sql })));
  }
  return statements;
}

/** The database-level objects the archive creates that the target already has. */
async function databaseObjectsToDrop(
  client: pg.Client,
  archive: ReplacementInput['archive'],
): Promise<{ kind: string; object: DbObject }[]> {
  const dropped: { kind: string; object: DbObject }[] = [];
  const objects = await client.query<DbObject>(
    `SELECT o.kind, o.classid, o.oid, o.tag, o.alt, o.statement,
            pg_describe_object(o.classid, o.oid, 0) AS description
       FROM (${DB_OBJECTS_SQL}) o ORDER BY o.kind, o.tag`,
  );
  for (const o of objects.rows) {
    const rests = entriesOf(archive.entries, o.kind);
    if (!hasTag(rests, o.tag) && !(o.alt !== null && hasTag(rests, o.alt))) continue;
    if (o.kind === 'SUBSCRIPTION') {
      throw new ConfigurationError(
        `The target already has subscription ${quoteIdent(o.tag)}, which the backup creates. ` +
          `A subscription cannot be dropped inside the restore's transaction (DROP SUBSCRIPTION also drops its replication slot on the publisher): ` +
          `drop it first, or restore with a list file that leaves the subscription out. The database was not changed.`,
      );
    }
    dropped.push({ kind: o.kind, object: o });
  }
  return dropped;
}

/**
 * Large objects the archive carries, whatever its selection (pg_dump -b adds them to a dump of
 * some schemas), that the target holds: lo_create would find them there.
 */
async function largeObjectsToUnlink(
  client: pg.Client,
  archive: ReplacementInput['archive'],
): Promise<{ count: number; statement?: string }> {
  const ranges = largeObjectRanges(archive.entries);
  if (ranges.length === 0) return { count: 0 };
  const lo = ranges.map((r) => r[0]);
  const hi = ranges.map((r) => r[1]);
  const count = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_largeobject_metadata m
       JOIN unnest($1::oid[], $2::oid[]) r(lo, hi) ON m.oid BETWEEN r.lo AND r.hi`,
    [lo, hi],
  );
  const n = Number(count.rows[0].n);
  if (n === 0) return { count: 0 };
  return {
    count: n,
    statement:
      `SELECT count(pg_catalog.lo_unlink(m.oid)) FROM pg_catalog.pg_largeobject_metadata m ` +
      `JOIN ROWS FROM (pg_catalog.unnest('{${lo.join(',')}}'::pg_catalog.oid[]), pg_catalog.unnest('{${hi.join(',')}}'::pg_catalog.oid[])) r(lo, hi) ` +
      `ON m.oid BETWEEN r.lo AND r.hi`,
  };
}

/** What the CASCADEs would reach beyond the dropped schemas and objects (see outsideSql). */
async function cascadeReach(
  client: pg.Client,
  serverVersion: number,
  schemas: TargetSchema[],
  dropped: { kind: string; object: DbObject }[],
): Promise<{ what: string; definition: string | null }[]> {
  const roots = [
    ...schemas.map((s) => ({ classid: s.classid, oid: s.oid })),
    ...dropped.map((d) => ({ classid: d.object.classid, oid: d.object.oid })),
  ];
  const outside = await client.query<{ what: string; definition: string | null }>(
    outsideSql(serverVersion),
    [
      roots.map((r) => r.classid),
      roots.map((r) => r.oid),
      schemas.map((s) => s.oid),
      dropped.filter((d) => d.kind === 'EXTENSION').map((d) => d.object.oid),
    ],
  );
  return outside.rows;
}

async function publicSchemaOf(client: pg.Client): Promise<PublicSchema> {
  const r = await client.query<{ owner: string; comment: string | null }>(
    `SELECT pg_get_userbyid(nspowner) AS owner, obj_description(oid, 'pg_namespace') AS comment
       FROM pg_namespace WHERE nspname = 'public'`,
  );
  const grants = await client.query<PublicSchema['grants'][number]>(
    `SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
            a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_namespace n, aclexplode(n.nspacl) a
      WHERE n.nspname = 'public' AND a.grantee <> n.nspowner`,
  );
  return { owner: r.rows[0].owner, comment: r.rows[0].comment, grants: grants.rows };
}

/** Creates public again as it was, after its DROP: owner, grants, comment. */
function recreatePublic(p: PublicSchema): string[] {
  const out = [`CREATE SCHEMA public AUTHORIZATION ${quoteIdent(p.owner)}`];
  // A fresh schema grants nothing to others; the old grants come back one by one.
  for (const g of p.grants) {
    out.push(
      `GRANT ${g.privilege} ON SCHEMA public TO ${g.grantee === null ? 'PUBLIC' : quoteIdent(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`,
    );
  }
  if (p.comment !== null) out.push(`COMMENT ON SCHEMA public IS ${quoteLiteral(p.comment)}`);
  return out;
}

function nonTransactionalError(statements: string[]): ConfigurationError {
  return new ConfigurationError(
    `The archive's SQL holds statements that cannot run inside the restore's single transaction: ` +
      `${statements.join('; ')}. The database was not changed.`,
  );
}

// ---------------------------------------------------------------------------------------------
// The restore

const FINAL_COMMIT = Buffer.from('\nCOMMIT;\n');
/** pg_restore writes at most a short footer after its COMMIT; more than this is not the end. */
const MAX_WITHHELD = 1 << 20;

/** Whether every line from `start` is blank, a comment or a psql meta-command (`\unrestrict`). */
function onlyFooter(buf: Buffer, start: number): boolean {
  let at = start;
  while (at < buf.length) {
    const c = buf[at];
    if (c !== 0x0a && c !== 0x0d && c !== 0x2d /* - */ && c !== 0x5c /* \ */) return false;
    const nl = buf.indexOf(0x0a, at);
    if (nl < 0) return true;
    at = nl + 1;
  }
  return true;
}

/**
 * Passes pg_restore's SQL through, but withholds its final `COMMIT;` (and the footer after it)
 * until pg_restore is known to have exited with 0: the caller sends it then, or never.
 */
export class CommitWithholder extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  /** After the input ended: what was withheld, beginning with the final COMMIT when there was one. */
  withheld: Buffer = Buffer.alloc(0);

  constructor() {
    // Fewer, larger hops through the event loop: gigabytes go through here.
    super({ highWaterMark: 1 << 20 });
  }

  /** Whether the input ended with pg_restore's COMMIT (and only its footer after it). */
  get endsWithCommit(): boolean {
    return (
      this.withheld.subarray(0, FINAL_COMMIT.length).equals(FINAL_COMMIT) &&
      onlyFooter(this.withheld, FINAL_COMMIT.length)
    );
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const cut = this.cutPoint(buf);
    if (cut > 0) this.push(buf.subarray(0, cut));
    this.pending = Buffer.from(buf.subarray(cut));
    done();
  }

  override _flush(done: TransformCallback): void {
    this.withheld = this.pending;
    this.pending = Buffer.alloc(0);
    done();
  }

  private cutPoint(buf: Buffer): number {
    const commit = buf.lastIndexOf(FINAL_COMMIT);
    if (
      commit >= 0 &&
      buf.length - commit <= MAX_WITHHELD &&
      onlyFooter(buf, commit + FINAL_COMMIT.length)
    ) {
      return commit;
    }
    // A COMMIT line may be split between this chunk and the next.
    for (let k = Math.min(FINAL_COMMIT.length - 1, buf.length); k > 0; k--) {
      if (buf.subarray(buf.length - k).equals(FINAL_COMMIT.subarray(0, k))) return buf.length - k;
    }
    return buf.length;
  }
}

interface Preamble {
  text: string;
  lines: number;
  /** The plan's statement that starts at or spans a line of the preamble. */
  statementAt(line: number): string | undefined;
}

function buildPreamble(plan: ReplacementPlan): Preamble {
  const parts: string[] = [
    'BEGIN;',
    // Which session and transaction this is: a failed restore makes sure the session is gone,
    // and a connection lost during the COMMIT is settled by asking the server how it ended.
    `SELECT pg_catalog.pg_backend_pid() || ' ' || pg_catalog.date_part('epoch', backend_start) || ' ' || pg_catalog.txid_current() FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid();`,
    // Waiting for locks is bounded while the target is emptied; pg_restore's own SETs then
    // lift the timeouts for the restore proper (SET lock_timeout = 0, statement_timeout = 0).
    `SET LOCAL lock_timeout = '${LOCK_TIMEOUT}';`,
    'SET LOCAL statement_timeout = 0;',
    'SET LOCAL idle_in_transaction_session_timeout = 0;',
    `SELECT pg_catalog.set_config(name, '0', true) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout';`,
    'SET LOCAL client_min_messages = warning;',
  ];
  const ranges: { from: number; to: number; sql: string }[] = [];
  let line = parts.length + 1;
  for (const sql of plan.statements) {
    const n = sql.split('\n').length;
    ranges.push({ from: line, to: line + n - 1, sql });
    parts.push(`${sql};`);
    line += n;
  }
  return {
    text: `${parts.join('\n')}\n`,
    lines: line - 1,
    statementAt: (l) => ranges.find((r) => l >= r.from && l <= r.to)?.sql,
  };
}

/** psql's error as it printed it, with where it stopped in terms of the plan or pg_restore's SQL. */
function psqlFailure(exit: ProcessExit, preamble: Preamble): string {
  const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '' && !isBeginWarning(l));
  const first = lines.findIndex((l) => /\b(ERROR|FATAL|PANIC):|psql: error:|^psql:.*error/.test(l));
  const text = (first >= 0 ? lines.slice(first, first + 12) : lines.slice(-12)).join('\n');
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const at = /^psql:<stdin>:(\d+):/m.exec(text);
  let where = '';
  if (at) {
    const line = Number(at[1]);
    const statement = preamble.statementAt(line);
    where =
      line <= preamble.lines
        ? statement
          ? ` while emptying the target, at: ${statement}`
          : ' while starting the transaction'
        : ` at line ${line - preamble.lines} of pg_restore's SQL`;
  }
  return `psql ${how}${where}: ${text || '(no error text)'}`;
}

function isBeginWarning(line: string): boolean {
  return /WARNING:\s+there is already a transaction in progress/.test(line);
}

function scrub(text: string, password: string | undefined): string {
  return password ? text.split(password).join('***') : text;
}

export interface AtomicRestoreOptions {
  pgRestore: string;
  psql: string;
  archivePath: string;
  connection: ConnectionInfo;
  database: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  plan: ReplacementPlan;
  keepOwnership: boolean;
  listFile?: string;
  /** Run everything, then roll back instead of committing: proves the restore would succeed. */
  rehearsal?: boolean;
}

/** psql reading the restore's SQL on its standard input, and the session it reported. */
interface RestoringPsql {
  proc: RunningProcess;
  stdin: Writable;
  /** Known once psql has run the preamble's first statement. */
  session(): Session | undefined;
}

/** pg_restore writing its SQL into psql, its final COMMIT held back. */
interface StreamingRestore {
  proc: RunningProcess;
  out: Readable;
  withholder: CommitWithholder;
}

type RestoreOutcome =
  | { kind: 'restore-ended'; exit: ProcessExit; streamError?: unknown }
  | { kind: 'psql-ended'; exit: ProcessExit };

const NOTHING_COMMITTED = 'Nothing was committed: the target is as it was.';

/**
 * Replaces the target's contents with the archive in ONE transaction of ONE session: psql reads
 * `BEGIN`, the plan's statements, then pg_restore's SQL as pg_restore writes it (`--file=-`,
 * streamed, never on disk). Whatever fails — pg_restore's error or death, psql's, the server
 * ending the session, a full disk — nothing is committed and the target stays exactly as it was.
 *
 * Why not `psql --single-transaction`: psql commits when its input ends without an error, and
 * the input also ends when pg_restore dies midway, so a partial restore would be committed.
 * Instead pg_restore runs with `--single-transaction` itself (without it, its SQL wraps the large
 * objects' data in a BEGIN/COMMIT of its own, which would commit everything before them), and its
 * final `COMMIT;` is withheld from psql until pg_restore has exited with 0; on any failure psql
 * is killed before it sees it, and the session is terminated so that the rollback is complete
 * when this returns.
 */
export async function restoreAtomically(o: AtomicRestoreOptions): Promise<void> {
  const password = o.connection.password;
  // Refused before anything runs; the SQL checked is the archive's definitions (its data is
  // COPY rows and large objects' lo_open/lowrite/lo_close, which pg_restore writes itself).
  const refused = nonTransactionalIn(await definitionsSql(o));
  if (refused.length > 0) throw nonTransactionalError(refused);

  const preamble = buildPreamble(o.plan);
  const psql = startRestoringPsql(o);
  psql.stdin.write(preamble.text);
  const restore = startStreamingRestore(o, psql.stdin);
  const outcome = await firstEnd(restore, psql);

  if (outcome.kind === 'psql-ended') {
    // psql stops before the COMMIT only on an error (ON_ERROR_STOP) or a lost connection.
    await abandon(o, restore, psql);
    throw new Error(
      scrub(`${psqlFailure(outcome.exit, preamble)}\n${NOTHING_COMMITTED}`, password),
    );
  }
  const { exit, streamError } = outcome;
  if (exit.code !== 0 || streamError || !restore.withholder.endsWithCommit) {
    await abandon(o, restore, psql);
    const why =
      exit.code !== 0
        ? describeExit('pg_restore', exit)
        : streamError
          ? `reading pg_restore's output failed: ${errorMessage(streamError)}`
          : `pg_restore's SQL did not end with its COMMIT`;
    throw new Error(scrub(`${why}\n${NOTHING_COMMITTED}`, password));
  }
  await commitRestore(o, restore, psql, preamble);
  logReplaced(o);
}

function startRestoringPsql(o: AtomicRestoreOptions): RestoringPsql {
  const password = o.connection.password;
  const psqlEnv = childEnv(o.env, o.connection, o.database);
  if (!o.connection.params.application_name) psqlEnv.PGAPPNAME = RESTORE_APPLICATION_NAME;
  const proc = startProcess(
    o.psql,
    ['-X', '-q', '-A', '-t', '--no-password', '-v', 'ON_ERROR_STOP=1', '-f', '-'],
    {
      env: psqlEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
      onStderrLine: (line) => {
        if (!isBeginWarning(line)) o.logger.debug(scrub(line, password));
      },
    },
  );
  // The preamble's first statement prints the session's pid, start and transaction id.
  let session: Session | undefined;
  let stdoutHead = '';
  proc.child.stdout?.setEncoding('utf8');
  proc.child.stdout?.on('data', (chunk: string) => {
    if (session || stdoutHead.length > 200) return;
    stdoutHead += chunk;
    const m = /^(\d+) ([\d.]+) (\d+)\n/.exec(stdoutHead);
    if (m) session = { pid: Number(m[1]), start: Number(m[2]), xid: m[3] };
  });
  const stdin = proc.child.stdin;
  if (!stdin) throw new Error('psql has no standard input');
  stdin.on('error', () => undefined); // EPIPE when psql stops early; its exit tells why.
  return { proc, stdin, session: () => session };
}

function startStreamingRestore(o: AtomicRestoreOptions, into: Writable): StreamingRestore {
  const restoreArgs = ['--single-transaction', '--file=-'];
  if (!o.keepOwnership) restoreArgs.push('--no-owner', '--no-acl');
  if (o.listFile) restoreArgs.push(`--use-list=${o.listFile}`);
  restoreArgs.push(o.archivePath);
  const proc = startProcess(o.pgRestore, restoreArgs, {
    env: childEnv(o.env, { params: {} }),
    stdio: ['ignore', 'pipe', 'pipe'],
    onStderrLine: (line) => o.logger.debug(`pg_restore: ${line}`),
  });
  const withholder = new CommitWithholder();
  const out = proc.child.stdout;
  if (!out) throw new Error('pg_restore has no standard output');
  out.pipe(withholder).pipe(into, { end: false });
  return { proc, out, withholder };
}

/** Whichever ends first: pg_restore (with its output read through), or psql. */
function firstEnd(restore: StreamingRestore, psql: RestoringPsql): Promise<RestoreOutcome> {
  return Promise.race<RestoreOutcome>([
    Promise.all([
      restore.proc.exited,
      finished(restore.withholder).then(
        () => undefined,
        (error: unknown) => error ?? new Error('stream failed'),
      ),
    ]).then(([exit, streamError]) => ({ kind: 'restore-ended', exit, streamError })),
    psql.proc.exited.then((exit) => ({ kind: 'psql-ended', exit })),
  ]);
}

/** Kills both programs before psql sees a COMMIT, and makes sure the session is gone. */
async function abandon(
  o: AtomicRestoreOptions,
  restore: StreamingRestore,
  psql: RestoringPsql,
): Promise<void> {
  restore.out.unpipe(restore.withholder);
  restore.withholder.unpipe(psql.stdin);
  restore.out.destroy();
  restore.proc.child.kill('SIGKILL');
  psql.proc.child.kill('SIGKILL');
  await Promise.all([restore.proc.exited, psql.proc.exited]);
  // The COMMIT was never sent: the transaction can only have been rolled back.
  await endSession(o.connection, o.database, psql.session(), o.logger);
}

/**
 * pg_restore finished: what the emptying removed outside the backup is re-created, then psql
 * may see the COMMIT (a ROLLBACK in a rehearsal).
 */
async function commitRestore(
  o: AtomicRestoreOptions,
  restore: StreamingRestore,
  psql: RestoringPsql,
  preamble: Preamble,
): Promise<void> {
  const password = o.connection.password;
  const epilogue = o.plan.recreate.map((r) => `${r.sql};\n`).join('');
  const ending = o.rehearsal ? Buffer.from('ROLLBACK;\n') : restore.withholder.withheld;
  psql.stdin.end(Buffer.concat([Buffer.from(epilogue), ending]));
  const psqlExit = await psql.proc.exited;
  if (psqlExit.code === 0) return;
  // An SQL error stops psql before the COMMIT or is the COMMIT's own; a connection lost
  // while the COMMIT was under way leaves the outcome to the server, so it is asked.
  const status = await endSession(o.connection, o.database, psql.session(), o.logger);
  const failure = psqlFailure(psqlExit, preamble);
  if (status === 'committed' && !o.rehearsal) {
    o.logger.warning(
      scrub(`${failure}\nBut the transaction was committed: the restore is complete.`, password),
    );
    return;
  }
  const outcome =
    status === 'aborted'
      ? NOTHING_COMMITTED
      : `The COMMIT was sent and the server ${status ? `reports the transaction ${status}` : 'could not be asked whether it went through'}: check the target.`;
  throw new Error(scrub(`${failure}\n${outcome}`, password));
}

function logReplaced(o: AtomicRestoreOptions): void {
  const { summary } = o.plan;
  o.logger.info(
    `${o.rehearsal ? 'Rehearsed, then rolled back: ' : ''}Replaced the target in one transaction: dropped schema(s) ${summary.schemas.join(', ') || '(none)'}` +
      (summary.extensions.length ? `, extension(s) ${summary.extensions.join(', ')}` : '') +
      (summary.other.length ? `, ${summary.other.join(', ')}` : '') +
      (summary.largeObjects ? `, ${summary.largeObjects} large object(s)` : '') +
      `; then restored the archive and ${o.rehearsal ? 'rolled back' : 'committed'}`,
  );
}

/** The restoring session, as its first statement reported it. */
interface Session {
  pid: number;
  /** backend_start, in seconds since the epoch. */
  start: number;
  /** Its transaction's id (txid_current). */
  xid: string;
}

/**
 * Makes sure the abandoned restoring session is gone (a backend busy with a long statement
 * only notices its client's death when it next talks to it), then asks how its transaction
 * ended: `committed`, `aborted`, or undefined when the server cannot be asked (nor the session
 * known: then psql never got to run a statement).
 */
async function endSession(
  connection: ConnectionInfo,
  database: string,
  session: Session | undefined,
  logger: Logger,
): Promise<string | undefined> {
  if (!session) return 'aborted';
  let client: pg.Client;
  try {
    client = await connect(connection, database);
  } catch (error) {
    logger.debug(`Could not connect to end the restoring session: ${errorMessage(error)}`);
    return undefined;
  }
  try {
    let gone = false;
    for (let i = 0; i < 600 && !gone; i++) {
      const r = await client.query(
        `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE pid = $1 AND abs(date_part('epoch', backend_start) - $2::float8) < 0.001`,
        [session.pid, session.start],
      );
      gone = r.rows.length === 0;
      if (!gone) await sleep(100);
    }
    if (!gone)
      logger.warning(`The restoring session (pid ${session.pid}) is still there after 60 s`);
    const status = await client.query<{ status: string | null }>(
      'SELECT txid_status($1::bigint) AS status',
      [session.xid],
    );
    return status.rows[0].status ?? undefined;
  } catch (error) {
    logger.debug(`Could not end the restoring session: ${errorMessage(error)}`);
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}
