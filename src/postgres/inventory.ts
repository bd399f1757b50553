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

/** A test of one dot-separated part of a pattern against a name. */
type NameTest = (name: string) => boolean;

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
export function namePatternParts(pattern: string): NameTest[] {
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

/** Whether a schema pattern's parts (`schema` or `database.schema`) match `schema`. */
function schemaMatches(parts: NameTest[], schema: string): boolean {
  return parts[parts.length - 1](schema);
}

/**
 * Whether a table pattern's parts match: `table` (a table visible in the default search path,
 * as pg_dump looks it up), `schema.table` or `database.schema.table`.
 */
function tableMatches(
  parts: NameTest[],
  table: { schema: string; name: string; visible: boolean },
): boolean {
  if (parts.length === 1) return table.visible && parts[0](table.name);
  return parts[parts.length - 2](table.schema) && parts[parts.length - 1](table.name);
}

/** A dump selection's patterns, compiled once to test every schema and table of a listing. */
export interface SelectionMatcher {
  /** Whether a table of `schema` is part of the dump. */
  schemaIncluded(schema: string): boolean;
  /** Whether pg_dump leaves a table's rows out (`--exclude-table-data`). */
  tableDataExcluded(table: { schema: string; name: string; visible: boolean }): boolean;
}

export function selectionMatcher(selection: DumpSelection): SelectionMatcher {
  const schemas = selection.schemas.map(namePatternParts);
  const excludeSchemas = selection.excludeSchemas.map(namePatternParts);
  const excludeTableData = selection.excludeTableData.map(namePatternParts);
  return {
    schemaIncluded: (schema) =>
      (schemas.length === 0 || schemas.some((parts) => schemaMatches(parts, schema))) &&
      !excludeSchemas.some((parts) => schemaMatches(parts, schema)),
    tableDataExcluded: (table) => excludeTableData.some((parts) => tableMatches(parts, table)),
  };
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
  const matcher = selectionMatcher(selection);
  return result.rows
    .filter((r) => matcher.schemaIncluded(r.schema))
    .map((r) => {
      const dataExcluded = matcher.tableDataExcluded(r);
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
