import type pg from 'pg';
import type { TableInventoryEntry } from '../catalog/manifest.js';
import { ConfigurationError } from '../core/errors.js';
import { quoteIdent } from './connection.js';

/** Which schemas and table data a dump includes, as given to pg_dump. */
export interface DumpSelection {
  schemas: string[];
  excludeSchemas: string[];
  excludeTableData: string[];
}

/** Characters a regular expression gives a meaning to, escaped inside double quotes. */
const REGEX_SPECIAL = '|*+?()[]{}.^\\';

/**
 * A pg_dump pattern as a test per dot-separated part, by psql's rules (processSQLNamePattern in
 * PostgreSQL's fe_utils), so that the manifest and a restore select what pg_dump did: outside
 * double quotes letters fold to lower case, `*` is any run of characters, `?` any one, `.`
 * separates the parts, and other regular-expression characters keep their meaning; inside double
 * quotes every character stands for itself (`""` for a quote). `$` always stands for itself.
 * Each part matches a whole name; an empty part matches any.
 */
export function namePatternParts(pattern: string): ((name: string) => boolean)[] {
  const parts: string[] = [];
  let part = '';
  let quoted = false;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '"') {
      if (quoted && pattern[i + 1] === '"') {
        part += '"';
        i++;
      } else {
        quoted = !quoted;
      }
    } else if (!quoted && ch >= 'A' && ch <= 'Z') part += ch.toLowerCase();
    else if (!quoted && ch === '*') part += '.*';
    else if (!quoted && ch === '?') part += '.';
    else if (!quoted && ch === '.') {
      parts.push(part);
      part = '';
    } else if (ch === '$') part += '\\$';
    else if (quoted && REGEX_SPECIAL.includes(ch)) part += `\\${ch}`;
    else part += ch;
  }
  parts.push(part);
  return parts.map((source) => {
    if (source === '') return () => true;
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${source})$`);
    } catch (error) {
      throw new ConfigurationError(
        `'${pattern}' is not a valid pg_dump pattern: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return (name) => re.test(name);
  });
}

/** Patterns compiled once: every table of a listing is tested against each. */
const compiledPatterns = new Map<string, ((name: string) => boolean)[]>();

function compiled(pattern: string): ((name: string) => boolean)[] {
  let parts = compiledPatterns.get(pattern);
  if (!parts) {
    parts = namePatternParts(pattern);
    compiledPatterns.set(pattern, parts);
  }
  return parts;
}

/** Whether a schema pattern (`schema` or `database.schema`) matches `schema`. */
function schemaMatches(pattern: string, schema: string): boolean {
  const parts = compiled(pattern);
  return parts[parts.length - 1](schema);
}

/**
 * Whether a table pattern matches: `table` (a table visible in the default search path, as
 * pg_dump looks it up), `schema.table` or `database.schema.table`.
 */
function tableMatches(pattern: string, schema: string, table: string, visible: boolean): boolean {
  const parts = compiled(pattern);
  if (parts.length === 1) return visible && parts[0](table);
  return parts[parts.length - 2](schema) && parts[parts.length - 1](table);
}

/** Whether a table of `schema` is part of the dump. */
export function schemaIncluded(selection: DumpSelection, schema: string): boolean {
  if (selection.schemas.length > 0 && !selection.schemas.some((p) => schemaMatches(p, schema))) {
    return false;
  }
  return !selection.excludeSchemas.some((p) => schemaMatches(p, schema));
}

/** Whether pg_dump leaves a table's rows out (`--exclude-table-data`). */
export function tableDataExcluded(
  selection: DumpSelection,
  table: { schema: string; name: string; visible: boolean },
): boolean {
  return selection.excludeTableData.some((p) =>
    tableMatches(p, table.schema, table.name, table.visible),
  );
}

interface TableRow {
  schema: string;
  name: string;
  bytes: string;
  estimate: string;
  visible: boolean;
}

/**
 * The user tables the dump carries (ordinary tables and partitions; not partitioned parents,
 * which hold no rows themselves, nor tables that belong to extensions), with their sizes and the
 * planner's row estimates.
 */
export async function listTables(
  client: pg.Client,
  selection: DumpSelection,
): Promise<(TableInventoryEntry & { estimate: number; dataExcluded: boolean })[]> {
  const result = await client.query<TableRow>(`
    SELECT n.nspname AS schema, c.relname AS name,
           pg_total_relation_size(c.oid)::text AS bytes,
           GREATEST(c.reltuples, 0)::bigint::text AS estimate,
           pg_catalog.pg_table_is_visible(c.oid) AS visible
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%'
       AND n.nspname NOT LIKE 'pg\\_temp%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     ORDER BY n.nspname, c.relname`);
  return result.rows
    .filter((r) => schemaIncluded(selection, r.schema))
    .map((r) => {
      const dataExcluded = tableDataExcluded(selection, r);
      return {
        schema: r.schema,
        name: r.name,
        bytes: Number(r.bytes),
        rows: null,
        estimate: Number(r.estimate),
        dataExcluded,
      };
    });
}

/** Exact row count of one table (not its inheritance children), in the client's transaction. */
export async function countRows(client: pg.Client, schema: string, table: string): Promise<number> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM ONLY ${quoteIdent(schema)}.${quoteIdent(table)}`,
  );
  return Number(r.rows[0].n);
}

/**
 * A transaction that exports its snapshot, so pg_dump (`--snapshot`) and the row counts see
 * exactly the same data. Stays open until `close`.
 */
export async function exportSnapshot(client: pg.Client): Promise<string> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  // The row counts run beside the dump: one process each, so parallel scan workers do not take
  // the cores pg_dump's own server process needs.
  await client.query('SET LOCAL max_parallel_workers_per_gather = 0');
  const r = await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
  return r.rows[0].id;
}
