import { ConfigurationError } from '../../src/core/errors.js';
import {
  defaultExtractSchema,
  readExportOptions,
  readExtractOptions,
} from '../../src/extract/options.js';
import { parseTablePattern } from '../../src/extract/patterns.js';
import { dataList, schemaList, type ChosenTable } from '../../src/extract/scratch.js';
import { scriptForServer } from '../../src/extract/side-schema.js';

const reader =
  (values: Record<string, string>) =>
  (key: string): string | undefined =>
    values[key];

describe('table patterns as pg_dump -t reads them', () => {
  it.each([
    ['rental', { name: '^(rental)$' }],
    ['public.payment', { schema: '^(public)$', name: '^(payment)$' }],
    ['App.Order_*', { schema: '^(app)$', name: '^(order_.*)$' }],
    ['public.pay?ent', { schema: '^(public)$', name: '^(pay.ent)$' }],
    ['"My.Schema"."Big Table"', { schema: '^(My\\.Schema)$', name: '^(Big Table)$' }],
    ['"a""b"', { name: '^(a"b)$' }],
    ['price$', { name: '^(price\\$)$' }],
  ])('%s', (text, expected) => {
    expect(parseTablePattern(text)).toEqual({ text, ...expected });
  });

  it.each(['a.b.c', '"open', '.rental', 'public.'])('refuses %s', (text) => {
    expect(() => parseTablePattern(text)).toThrow(/is not a table pattern/);
  });
});

describe('extract and export options', () => {
  const base = { tables: 'public.orders,\npayment', 'target-url': 'postgresql://h/shop' };

  it('reads the defaults', () => {
    expect(readExtractOptions(reader(base))).toEqual({
      name: undefined,
      backupId: undefined,
      decryption: undefined,
      tables: ['public.orders', 'payment'],
      jobs: 2,
      postgresVersion: 'auto',
      targetUrl: 'postgresql://h/shop',
      confirm: undefined,
      extractSchema: undefined,
      replaceExtractSchema: false,
      compare: true,
      compareLimit: 1000,
    });
    expect(readExportOptions(reader({ tables: 'orders' }))).toMatchObject({
      format: 'csv',
      recipients: [],
    });
  });

  it.each([
    [{ ...base, tables: '' }, /Input 'tables' is empty/],
    [{ tables: 'x' }, /target-url is empty/],
    [{ ...base, compare: 'yes' }, /Input 'compare' must be true or false, got 'yes'/],
    [{ ...base, 'compare-limit': '-1' }, /Input 'compare-limit' must be a whole number/],
    [{ ...base, 'extract-schema': 'Recovered' }, /new schema's name in lower case/],
    [{ ...base, 'extract-schema': 'pg_temp' }, /new schema's name in lower case/],
    [{ ...base, 'extract-schema': 'public' }, /cannot be 'public'/],
  ])('refuses %j', (values, message) => {
    expect(() => readExtractOptions(reader(values))).toThrow(message);
    expect(() => readExtractOptions(reader(values))).toThrow(ConfigurationError);
  });

  it('refuses an unknown export format and a recipient that is not one', () => {
    expect(() => readExportOptions(reader({ tables: 'x', 'export-format': 'xml' }))).toThrow(
      /must be one of csv, jsonl, got 'xml'/,
    );
    expect(() =>
      readExportOptions(reader({ tables: 'x', 'encryption-recipients': 'AGE-SECRET-KEY-1ABC' })),
    ).toThrow(ConfigurationError);
  });

  it('names the default schema after the backup', () => {
    expect(defaultExtractSchema('20261121T051500Z-3f9a1c')).toBe(
      'recovered_20261121t051500z_3f9a1c',
    );
  });
});

describe('pg_restore lists of a scratch copy', () => {
  const lines = [
    ';',
    '; Archive created at 2026-11-21',
    '215; 1259 16390 TABLE public rental postgres',
    '216; 1259 16400 TABLE public payment_p2022_01 postgres',
    '3300; 0 16390 TABLE DATA public rental postgres',
    '3301; 0 16400 TABLE DATA public payment_p2022_01 postgres',
    '3302; 0 16410 TABLE DATA public rental_old postgres',
    '3400; 0 0 SEQUENCE SET public rental_rental_id_seq postgres',
    '3500; 2606 16500 POLICY public rental own_rows postgres',
    '3501; 2606 16501 FK CONSTRAINT public rental rental_customer_id_fkey postgres',
  ];
  const chosen: ChosenTable[] = [
    { schema: 'public', name: 'rental', kind: 'table', rows: 0 },
    {
      schema: 'public',
      name: 'payment_p2022_01',
      kind: 'table',
      parent: { schema: 'public', name: 'payment' },
      rows: 0,
    },
  ];

  it('restores the schema without data or policies', () => {
    const kept = schemaList(lines)
      .split('\n')
      .filter((l) => /^\d/.test(l));
    expect(kept).toEqual([lines[2], lines[3], lines[9]]);
  });

  it('loads the chosen tables and the sequences only', () => {
    const kept = dataList(lines, chosen)
      .split('\n')
      .filter((l) => /^\d/.test(l));
    expect(kept).toEqual([lines[4], lines[5], lines[7]]);
  });
});

describe('the side schema script for the target server', () => {
  const script = 'SET lock_timeout = 0;\nSET transaction_timeout = 0;\nSET x = 1;\n';
  it('drops transaction_timeout for servers before 17 only', () => {
    expect(scriptForServer(script, 16)).toBe('SET lock_timeout = 0;\nSET x = 1;\n');
    expect(scriptForServer(script, 17)).toBe(script);
  });
});
