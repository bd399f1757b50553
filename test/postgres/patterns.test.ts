/**
 * The selection inputs are pg_dump patterns. The manifest's tables, the restore's checks and
 * the schemas a real restore replaces must select exactly what pg_dump did: these tests run
 * the machine's pg_dump with each selection and compare its table of contents with ours.
 */
import path from 'node:path';
import pg from 'pg';
import { pgDumpArgs } from '../../src/backup/backup.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { ArchiveCoalescer } from '../../src/postgres/archive.js';
import {
  listTables,
  namePatternParts,
  selectionMatcher,
  type DumpSelection,
} from '../../src/postgres/inventory.js';
import { MACHINE_BIN_DIR } from '../support/embedded.js';
import { runToBuffer } from '../support/run.js';
import { newDatabase, withClient } from '../support/sample.js';

const none: DumpSelection = { schemas: [], excludeSchemas: [], excludeTableData: [] };

describe('pg_dump patterns', () => {
  it('fold unquoted letters, keep quoted ones, and read *, ?, dots and regular expressions as psql does', () => {
    const test = (pattern: string, ...names: string[]): boolean[] => {
      const parts = namePatternParts(pattern);
      return names.map((name, i) => parts[i](name));
    };
    expect(test('App', 'app')).toEqual([true]);
    expect(test('App', 'App')).toEqual([false]);
    expect(test('"App"', 'App')).toEqual([true]);
    expect(test('"App"', 'app')).toEqual([false]);
    expect(test('a*', 'app')).toEqual([true]);
    expect(test('a?p', 'app')).toEqual([true]);
    expect(test('a?p', 'ap')).toEqual([false]);
    expect(test('(app|audit)', 'audit')).toEqual([true]);
    expect(test('[0-9]x', '7x')).toEqual([true]);
    expect(test('"a*"', 'a*')).toEqual([true]);
    expect(test('"a*"', 'ab')).toEqual([false]);
    expect(test('"say ""hi"""', 'say "hi"')).toEqual([true]);
    expect(test('cost$', 'cost$')).toEqual([true]);
    expect(test('App.Orders', 'app', 'orders')).toEqual([true, true]);
    expect(test('"odd.schema".t', 'odd.schema', 't')).toEqual([true, true]);
    expect(namePatternParts('db.App.orders')).toHaveLength(3);
    // An empty part matches any name, as in psql's `\dt app.`.
    expect(test('app.', 'app', 'anything')).toEqual([true, true]);
    expect(() => namePatternParts('a[')).toThrow(ConfigurationError);
  });

  it('select schemas and table data as pg_dump does', () => {
    const t = (schema: string, name: string, visible = schema === 'public') => ({
      schema,
      name,
      visible,
    });
    const sel = (s: Partial<DumpSelection>) => selectionMatcher({ ...none, ...s });
    expect(sel({ schemas: ['APP'] }).schemaIncluded('app')).toBe(true);
    expect(sel({ schemas: ['APP'] }).schemaIncluded('audit')).toBe(false);
    expect(sel({ excludeSchemas: ['Audit'] }).schemaIncluded('audit')).toBe(false);
    expect(sel({ excludeSchemas: ['mixed'] }).schemaIncluded('Mixed')).toBe(true);
    expect(sel({ schemas: ['shop.app'] }).schemaIncluded('app')).toBe(true);
    const data = sel({ excludeTableData: ['App.Customers', 'T1'] });
    expect(data.tableDataExcluded(t('app', 'customers'))).toBe(true);
    expect(data.tableDataExcluded(t('public', 't1'))).toBe(true);
    // An unqualified table pattern names tables on the search path only.
    expect(data.tableDataExcluded(t('app', 't1'))).toBe(false);
  });
});

interface Toc {
  tables: string[];
  data: string[];
}

function tocOf(archive: Buffer): Toc {
  const coalescer = new ArchiveCoalescer();
  coalescer.update(archive);
  coalescer.final();
  const names = (desc: string): string[] =>
    coalescer.entries
      .filter((e) => e.desc === desc)
      .map((e) => `${e.namespace}.${e.tag}`)
      .sort();
  return { tables: names('TABLE'), data: names('TABLE DATA') };
}

function pgDump(url: string, selection: DumpSelection): Promise<Buffer> {
  const args = pgDumpArgs({ format: 'custom', compress: '0', selection, jobs: 1 }).concat(
    `--dbname=${url}`,
  );
  return runToBuffer(path.join(MACHINE_BIN_DIR, 'pg_dump'), args);
}

describe('selections against the machine pg_dump', () => {
  let url: string;
  let ordinaryTables: Set<string>;

  beforeAll(async () => {
    url = await newDatabase('patterns');
    await withClient(url, (c) =>
      c.query(`
        CREATE SCHEMA app;
        CREATE SCHEMA audit;
        CREATE SCHEMA "Mixed";
        CREATE SCHEMA "odd.schema";
        CREATE TABLE app.customers (id int);
        CREATE TABLE app.t1 (id int);
        CREATE TABLE app.orders (id int, on_date date) PARTITION BY RANGE (on_date);
        CREATE TABLE app.orders_2026 PARTITION OF app.orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE audit.events (id int);
        CREATE TABLE "Mixed"."Big" (id int);
        CREATE TABLE "Mixed".small (id int);
        CREATE TABLE "odd.schema"."a*" (id int);
        CREATE TABLE public.t1 (id int);
        CREATE TABLE public."T1" (id int);
        CREATE TABLE public.cost$ (id int);`),
    );
    ordinaryTables = await withClient(url, async (c) => {
      const r = await c.query<{ n: string }>(
        `SELECT n.nspname || '.' || c.relname AS n FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'`,
      );
      return new Set(r.rows.map((row) => row.n));
    });
  });

  const cases: [string, Partial<DumpSelection>][] = [
    ['everything', {}],
    ['a schema named in capitals', { schemas: ['APP'] }],
    ['schemas by wildcard and regular expression', { schemas: ['a?p', '(audit|"Mixed")'] }],
    ['a quoted schema, and one left out in capitals', { schemas: ['"Mixed"', 'app'] }],
    ['schemas left out, folded and quoted', { excludeSchemas: ['Audit', '"Mixed"', 'mixed'] }],
    ['a dotted schema name, quoted', { excludeSchemas: ['"odd.schema"'] }],
    [
      'table data left out by qualified, unqualified and quoted patterns',
      { excludeTableData: ['App.Customers', 't1', '"Mixed".*', '"odd.schema"."a*"', 'cost$'] },
    ],
    ['table data by a quoted capital name', { excludeTableData: ['"T1"', 'app.ORDERS_*'] }],
  ];

  it.each(cases)('%s', async (_label, given) => {
    const selection: DumpSelection = { ...none, ...given };
    const toc = tocOf(await pgDump(url, selection));
    const listed = await withClient(url, (c: pg.Client) => listTables(c, selection));
    const names = (list: typeof listed): string[] =>
      list.map((t) => `${t.schema}.${t.name}`).sort();
    expect(names(listed)).toEqual(toc.tables.filter((n) => ordinaryTables.has(n)));
    expect(names(listed.filter((t) => !t.dataExcluded))).toEqual(toc.data);
    expect(toc.tables.length).toBeGreaterThan(0);
  });
});
