import type pg from 'pg';
import type { TableInventoryEntry } from '../catalog/manifest.js';
import { quoteIdent } from './connection.js';

/** Which schemas and table data a dump includes, as given to pg_dump. */
export interface DumpSelection {
  schemas: string[];
  excludeSchemas: string[];
  excludeTableData: string[];
}

/** pg_dump-style pattern (`*`, `?`) to a RegExp over a whole name. */
function patternToRegExp(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

function matchesAny(patterns: string[], schema: string, table?: string): boolean {
  return patterns.some((p) => {
    if (table === undefined) return patternToRegExp(p).test(schema);
    const dot = p.indexOf('.');
    return dot >= 0
      ? patternToRegExp(p.slice(0, dot)).test(schema) &&
          patternToRegExp(p.slice(dot + 1)).test(table)
      : patternToRegExp(p).test(table);
  });
}

/** Whether a table of `schema` is part of the dump. */
export function schemaIncluded(selection: DumpSelection, schema: string): boolean {
  if (selection.schemas.length > 0 && !matchesAny(selection.schemas, schema)) return false;
  return !matchesAny(selection.excludeSchemas, schema);
}

export function tableDataExcluded(
  selection: DumpSelection,
  schema: string,
  table: string,
): boolean {
  return matchesAny(selection.excludeTableData, schema, table);
}

interface TableRow {
  schema: string;
  name: string;
  bytes: string;
  estimate: string;
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
           GREATEST(c.reltuples, 0)::bigint::text AS estimate
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
      const dataExcluded = tableDataExcluded(selection, r.schema, r.name);
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
