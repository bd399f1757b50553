import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { Manifest } from '../catalog/manifest.js';
import { errorMessage, OptionError } from '../core/errors.js';
import { quoteIdent } from '../postgres/connection.js';
import { countRows, listTables } from '../postgres/inventory.js';
import type { ArchiveConstraint } from './pg-restore.js';

/** One line of a verification report. */
export interface CheckResult {
  name: string;
  status: 'passed' | 'failed' | 'skipped';
  detail: string;
  /** Failing rows of a user check, at most 20. */
  rows?: Record<string, unknown>[];
  seconds?: number;
}

/** A table's row count in the manifest against the restored database. */
export interface TableComparison {
  table: string;
  expected: number | null;
  actual: number | null;
  /** `platform`: the target platform's rows, which the restore left as they were (not compared). */
  status: 'same' | 'differs' | 'missing' | 'extra' | 'not counted' | 'platform';
}

/**
 * Every table the manifest lists exists in the restored database with the same row count;
 * tables missing or extra are named, counts that differ are shown side by side.
 */
export async function compareTables(
  client: pg.Client,
  manifest: Manifest,
  notRestored: ReadonlySet<string> = new Set(),
): Promise<{ result: CheckResult; comparison: TableComparison[] }> {
  const started = Date.now();
  const restored = await listTables(client, {
    schemas: manifest.options?.schemas ?? [],
    excludeSchemas: manifest.options?.excludeSchemas ?? [],
    excludeTableData: [],
  });
  const actualByName = new Map<string, number>();
  for (const t of restored) {
    actualByName.set(`${t.schema}.${t.name}`, await countRows(client, t.schema, t.name));
  }
  // Extension configuration tables are the extension's, so listTables leaves them out: the
  // manifest names those whose rows the dump carried.
  for (const t of manifest.tables.filter((x) => x.extension !== undefined)) {
    const exists = await client.query<{ found: boolean }>(
      'SELECT to_regclass($1) IS NOT NULL AS found',
      [`${quoteIdent(t.schema)}.${quoteIdent(t.name)}`],
    );
    if (exists.rows[0].found) {
      actualByName.set(`${t.schema}.${t.name}`, await countRows(client, t.schema, t.name));
    }
  }
  const comparison: TableComparison[] = [];
  const expectedNames = new Set<string>();
  for (const t of manifest.tables) {
    const table = `${t.schema}.${t.name}`;
    expectedNames.add(table);
    const actual = actualByName.get(table);
    if (notRestored.has(table)) {
      comparison.push({ table, expected: t.rows, actual: actual ?? null, status: 'platform' });
    } else if (actual === undefined) {
      comparison.push({ table, expected: t.rows, actual: null, status: 'missing' });
    } else if (t.rows === null) {
      comparison.push({ table, expected: null, actual, status: 'not counted' });
    } else {
      comparison.push({
        table,
        expected: t.rows,
        actual,
        status: actual === t.rows ? 'same' : 'differs',
      });
    }
  }
  for (const [table, actual] of actualByName) {
    if (!expectedNames.has(table))
      comparison.push({ table, expected: null, actual, status: 'extra' });
  }
  const missing = comparison.filter((c) => c.status === 'missing').map((c) => c.table);
  const extra = comparison.filter((c) => c.status === 'extra').map((c) => c.table);
  const differs = comparison.filter((c) => c.status === 'differs');
  const problems: string[] = [];
  if (missing.length) problems.push(`missing: ${missing.join(', ')}`);
  if (extra.length) problems.push(`not in the manifest: ${extra.join(', ')}`);
  if (differs.length) {
    problems.push(
      `row counts differ: ${differs.map((d) => `${d.table} ${d.expected} in the manifest, ${d.actual} restored`).join('; ')}`,
    );
  }
  const estimate = manifest.rowCounts === 'estimate';
  const platform = comparison.filter((c) => c.status === 'platform').length;
  const kept = platform
    ? `; ${platform} platform table(s) keep the target's rows (the platform's bookkeeping and short-lived data, which the backup does not replace)`
    : '';
  const result: CheckResult = {
    name: 'Tables and row counts',
    status:
      problems.length === 0 || (estimate && missing.length === 0 && extra.length === 0)
        ? 'passed'
        : 'failed',
    detail:
      problems.length === 0
        ? `${manifest.tables.length - platform} tables, every row count matches the manifest${manifest.rowCounts === 'off' ? ' (row counts were not taken: existence only)' : ''}${kept}`
        : estimate && missing.length === 0 && extra.length === 0
          ? `${manifest.tables.length} tables present; row counts are planner estimates in the manifest, so differences are not failures`
          : problems.join('. '),
    seconds: (Date.now() - started) / 1000,
  };
  return { result, comparison };
}

const LEGACY = 'manifest of schema version 1, checked against the archive alone';

/**
 * The checks of a manifest written before the source's state was recorded (schema version 1):
 * every constraint the archive lists (`expected`, from `pg_restore --list`) must exist after the
 * restore (table and domain constraints alike); sequences behind the maximum of the column they
 * feed are noted, not failed, since the source may hold them so (rows inserted with explicit
 * values).
 */
export async function legacyConstraintsAndSequences(
  client: pg.Client,
  expected?: ArchiveConstraint[],
): Promise<CheckResult[]> {
  return [await legacyConstraints(client, expected), await legacySequences(client)];
}

/** Every constraint the archive lists exists after the restore. */
async function legacyConstraints(
  client: pg.Client,
  expected: ArchiveConstraint[] | undefined,
): Promise<CheckResult> {
  const started = Date.now();
  const constraints = await client.query<{
    kind: string;
    schema: string;
    table: string;
    name: string;
    validated: boolean;
  }>(`
    SELECT c.contype AS kind, n.nspname AS schema, COALESCE(t.relname, ty.typname) AS table,
           c.conname AS name, c.convalidated AS validated
      FROM pg_constraint c
      JOIN pg_namespace n ON n.oid = c.connamespace
      LEFT JOIN pg_class t ON t.oid = c.conrelid AND c.conrelid <> 0
      LEFT JOIN pg_type ty ON ty.oid = c.contypid AND c.contypid <> 0
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       AND c.contype IN ('f', 'u', 'c', 'p', 'x')
       AND (t.oid IS NOT NULL OR ty.oid IS NOT NULL)`);
  const counts: Record<string, number> = {};
  const present = new Set<string>();
  const notValid: string[] = [];
  for (const r of constraints.rows) {
    counts[r.kind] = (counts[r.kind] ?? 0) + 1;
    present.add(`${r.schema}.${r.table}.${r.name}`);
    if (!r.validated) notValid.push(`${r.schema}.${r.table}.${r.name}`);
  }
  const missing = (expected ?? [])
    .map((c) => `${c.schema}.${c.table}.${c.name}`)
    .filter((c) => !present.has(c));
  const summary =
    `${counts.p ?? 0} primary keys, ${counts.u ?? 0} unique, ${counts.f ?? 0} foreign keys, ` +
    `${counts.c ?? 0} check constraints${counts.x ? `, ${counts.x} exclusion constraints` : ''}`;
  const notes: string[] = [];
  if (expected) {
    notes.push(`all ${expected.length} constraints the archive lists exist`);
  }
  if (notValid.length > 0) {
    notes.push(
      `NOT VALID as in the source database (pg_dump keeps that state; their existing rows were not checked): ${notValid.join(', ')}`,
    );
  }
  return {
    name: 'Constraints',
    status: missing.length === 0 ? 'passed' : 'failed',
    detail:
      missing.length === 0
        ? `${summary} re-created; the restore validated each one against the restored rows${notes.length ? `; ${notes.join('; ')}` : ''} (${LEGACY})`
        : `missing after the restore although the archive lists them: ${missing.join(', ')} (${LEGACY})`,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Sequences behind the maximum of the column they feed (noted, not failed). */
async function legacySequences(client: pg.Client): Promise<CheckResult> {
  const started = Date.now();
  // A sequence feeds a column when the column owns it (serial, identity) or when the column's
  // default calls nextval() on it (sequences created on their own, as many schemas do).
  const sequences = await client.query<{ seq: string; tbl: string; col: string }>(`
    SELECT DISTINCT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) AS seq,
           quote_ident(tn.nspname) || '.' || quote_ident(t.relname) AS tbl,
           quote_ident(a.attname) AS col
      FROM pg_class s
      JOIN pg_namespace sn ON sn.oid = s.relnamespace
      JOIN (
        SELECT d.objid AS seqid, d.refobjid AS relid, d.refobjsubid AS attnum
          FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i')
        UNION
        SELECT d.refobjid, ad.adrelid, ad.adnum
          FROM pg_attrdef ad
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
      ) feeds ON feeds.seqid = s.oid
      JOIN pg_class t ON t.oid = feeds.relid
      JOIN pg_namespace tn ON tn.oid = t.relnamespace
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = feeds.attnum
     WHERE s.relkind = 'S' AND t.relkind IN ('r', 'p')`);
  const behind: string[] = [];
  for (const s of sequences.rows) {
    const r = await client.query<{ last: string | null; called: boolean; max: string | null }>(
      `SELECT (SELECT last_value::text FROM ${s.seq}) AS last, (SELECT is_called FROM ${s.seq}) AS called,
              (SELECT max(${s.col})::text FROM ${s.tbl}) AS max`,
    );
    const { last, called, max } = r.rows[0];
    if (max === null || last === null || !/^-?\d+$/.test(max)) continue;
    const next = BigInt(last) + (called ? 1n : 0n);
    if (next <= BigInt(max))
      behind.push(`${s.seq} would hand out ${next}, but ${s.tbl}.${s.col} already holds ${max}`);
  }
  return {
    name: 'Sequences',
    status: 'passed',
    detail:
      (behind.length === 0
        ? `${sequences.rows.length} sequences ahead of the maximum of the columns they feed`
        : `note: behind their column's maximum, which the source may hold too (rows inserted with explicit values): ${behind.join('; ')}`) +
      ` (${LEGACY}; its sequence values were not recorded)`,
    seconds: (Date.now() - started) / 1000,
  };
}

/** One SQL assertion: passes when the query returns no rows. */
export interface UserCheck {
  name: string;
  sql: string;
}

/**
 * Splits SQL text into statements at top-level `;`, respecting quotes, dollar quotes and
 * comments.
 */
export function splitSql(text: string): string[] {
  const out: string[] = [];
  let current = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    const rest = text.slice(i);
    if (ch === "'" || ch === '"') {
      const end = text.indexOf(ch, i + 1);
      const stop = end < 0 ? text.length : end + 1;
      current += text.slice(i, stop);
      i = stop;
      continue;
    }
    if (rest.startsWith('--')) {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? text.length : end;
      current += text.slice(i, stop);
      i = stop;
      continue;
    }
    if (rest.startsWith('/*')) {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      current += text.slice(i, stop);
      i = stop;
      continue;
    }
    const dollar = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest);
    if (dollar) {
      const tag = dollar[0];
      const end = text.indexOf(tag, i + tag.length);
      const stop = end < 0 ? text.length : end + tag.length;
      current += text.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === ';') {
      if (stripComments(current).trim()) out.push(current.trim());
      current = '';
      i++;
      continue;
    }
    current += ch;
    i++;
  }
  if (stripComments(current).trim()) out.push(current.trim());
  return out;
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
}

/**
 * The `checks` input: paths to .sql files (one per line, relative to the workspace), or SQL
 * written inline. Each statement is one check.
 */
export function parseChecks(input: string | undefined, workspace: string): UserCheck[] {
  if (!input || !input.trim()) return [];
  const lines = input
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const looksLikeFiles = lines.every((l) => /\.sql$/i.test(l) && !/\s/.test(l));
  if (looksLikeFiles) {
    return lines.flatMap((file) => {
      const full = path.resolve(workspace, file);
      if (!existsSync(full)) {
        throw new OptionError(
          'checks',
          (w) =>
            `${w.option('checks')} names ${file}, which does not exist (looked at ${full}). Check out the repository first (actions/checkout) or write the SQL inline.`,
        );
      }
      const statements = splitSql(readFileSync(full, 'utf8'));
      return statements.map((sql, i) => ({
        name: statements.length > 1 ? `${file} #${i + 1}` : file,
        sql,
      }));
    });
  }
  return splitSql(input).map((sql) => ({ name: shorten(stripComments(sql)), sql }));
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function shorten(sql: string): string {
  const oneLine = sql.replace(/\s+/g, ' ').trim();
  return oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
}

/** Runs each check in a read-only transaction; failing rows (at most 20) are reported. */
export async function runUserChecks(
  client: pg.Client,
  checks: UserCheck[],
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    const started = Date.now();
    try {
      await client.query('BEGIN READ ONLY');
      const r = await client.query<Record<string, unknown>>(check.sql);
      const rows = r.rows ?? [];
      results.push({
        name: `Check: ${check.name}`,
        status: rows.length === 0 ? 'passed' : 'failed',
        detail:
          rows.length === 0
            ? 'no rows'
            : `${rows.length} failing row(s): ${clip(JSON.stringify(rows.slice(0, 3)), 500)}`,
        rows: rows.length ? rows.slice(0, 20) : undefined,
        seconds: (Date.now() - started) / 1000,
      });
    } catch (error) {
      results.push({
        name: `Check: ${check.name}`,
        status: 'failed',
        detail: `the query failed: ${errorMessage(error)}`,
        seconds: (Date.now() - started) / 1000,
      });
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  }
  return results;
}
