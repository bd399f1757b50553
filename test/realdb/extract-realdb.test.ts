import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { findOnPath } from '../../src/core/process.js';
import type { DrillDeps } from '../../src/drill/drill.js';
import { runExtract, type ExtractResult } from '../../src/extract/extract.js';
import { defaultExtractSchema, type ExtractOptions } from '../../src/extract/options.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  type TestStore,
} from '../support/env.js';
import {
  startRegressionSource,
  tableFingerprints,
  type RegressionSource,
  type TableFingerprint,
} from '../support/regress.js';
import { withClient } from '../support/sample.js';

// Table-level extract on databases nobody here designed: PostgreSQL's own regression database
// (partitions with dropped and reordered columns, domains, a stored generated column over a
// domain, an inheritance parent whose child shares its sequence, tables with triggers), backed
// up, changed, then extracted into the live database, with the live side checked untouched.
// A Supabase project's: supabase-extract.test.ts.

const zstdPath = findOnPath('zstd');
let tools: ClientTools;
let work: string;

beforeAll(async () => {
  tools = await machineClientTools();
  work = mkdtempSync(path.join(os.tmpdir(), 'extract-realdb-'));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

function extractOptions(
  manifest: Manifest,
  targetUrl: string,
  tables: string[],
  overrides: Partial<ExtractOptions> = {},
): ExtractOptions {
  return {
    name: manifest.name,
    backupId: manifest.id,
    tables,
    jobs: 2,
    postgresVersion: 'auto',
    targetUrl,
    confirm: new URL(targetUrl).pathname.slice(1),
    replaceExtractSchema: false,
    compare: true,
    compareLimit: 10,
    ...overrides,
  };
}

function extract(
  store: TestStore,
  options: ExtractOptions,
  overrides: Partial<DrillDeps> = {},
): Promise<ExtractResult> {
  return runExtract(options, {
    ...testDrillDeps(store.storage, tools, work, overrides),
    reportDir: path.join(work, 'report'),
  });
}

/** Fingerprints outside the extract schema. */
function outside(
  map: Map<string, TableFingerprint>,
  schema: string,
): Map<string, TableFingerprint> {
  return new Map([...map].filter(([table]) => !table.startsWith(`${schema}.`)));
}

function diffCounts(result: ExtractResult): Record<string, unknown> {
  return Object.fromEntries(
    result.diffs.map((d) => [
      d.table,
      d.skipped ? d.skipped : { missing: d.missing, changed: d.changed, extra: d.extra },
    ]),
  );
}

describe("extract from PostgreSQL's regression database", () => {
  const TABLES = [
    // Partitioned, two levels, a primary key and a foreign key to itself.
    'public.parted_self_fk',
    // Partitioned, two levels, partitions with dropped and reordered columns; no key.
    'public.mlparted',
    // Columns of domains (one with a CHECK), a range type, and a domain over a stored
    // generated column with a primary key.
    'public.thethings',
    'public.domcontest',
    'public.textrange_test',
    'public.gtest24',
    // A serial key (its sequence owned), a foreign key to a table not extracted, and an
    // inheritance child (clstr_tst_inh, one row) drawing from the same sequence.
    'public.clstr_tst',
    // A serial key and two statement triggers with transition tables.
    'public.transition_table_level2',
  ];
  let source: RegressionSource;
  let store: TestStore;
  let manifest: Manifest;
  let schema: string;
  let atBackup: Map<string, TableFingerprint>;
  let beforeExtract: Map<string, TableFingerprint>;
  let afterExtract: Map<string, TableFingerprint>;
  let result: ExtractResult;

  beforeAll(async () => {
    source = await startRegressionSource();
    store = await makeStore('local');
    ({ manifest } = await runBackup(
      testBackupOptions(source.url, 'regression'),
      testBackupDeps(store.storage, tools, { zstdPath }),
    ));
    schema = defaultExtractSchema(manifest.id);
    atBackup = await tableFingerprints(source.url);
    // What went wrong after the backup.
    await withClient(source.url, async (c) => {
      await c.query('DELETE FROM public.parted_self_fk WHERE id = 12');
      await c.query('DELETE FROM public.gtest24 WHERE a = 4');
      await c.query('DELETE FROM public.clstr_tst WHERE a IN (30, 31, 32)');
      await c.query(
        `DELETE FROM public.transition_table_level2 WHERE level2_no IN
           (SELECT level2_no FROM public.transition_table_level2 ORDER BY level2_no LIMIT 7)`,
      );
      await c.query(
        `UPDATE public.transition_table_level2 SET level1_node_name = 'changed' WHERE level2_no IN
           (SELECT level2_no FROM public.transition_table_level2 ORDER BY level2_no DESC LIMIT 2)`,
      );
    });
    beforeExtract = await tableFingerprints(source.url);
    result = await extract(store, extractOptions(manifest, source.url, TABLES));
    afterExtract = await tableFingerprints(source.url);
  }, 1_200_000);

  afterAll(async () => {
    await source?.stop();
  });

  it('brings every chosen table and partition with the backup rows', () => {
    expect(result.schema).toBe(schema);
    const leaves = result.tables.filter((t) => t.kind === 'table');
    expect(leaves.map((t) => t.name).sort()).toEqual(
      [
        'clstr_tst',
        'domcontest',
        'gtest24',
        'mlparted11',
        'mlparted12',
        'mlparted2',
        'mlparted3',
        'mlparted4',
        'mlparted_def1',
        'mlparted_def2',
        'mlparted_defd',
        'part1_self_fk',
        'part2_self_fk',
        'part32_self_fk',
        'part33_self_fk',
        'textrange_test',
        'thethings',
        'transition_table_level2',
      ].sort(),
    );
    for (const t of leaves) {
      const backup = atBackup.get(`${t.schema}.${t.name}`);
      expect([t.name, afterExtract.get(`${schema}.${t.name}`)]).toEqual([t.name, backup]);
    }
    // Counts from the backup side: a partitioned table's are its partitions'.
    const rowsOf = (name: string): number | undefined =>
      result.tables.find((t) => t.name === name)?.rows;
    expect(rowsOf('parted_self_fk')).toBe(6);
    expect(rowsOf('mlparted')).toBe(1);
    expect(rowsOf('clstr_tst')).toBe(atBackup.get('public.clstr_tst')?.rows);
    expect(rowsOf('transition_table_level2')).toBe(
      atBackup.get('public.transition_table_level2')?.rows,
    );
  });

  it('leaves every live table as it was', () => {
    expect(outside(afterExtract, schema)).toEqual(beforeExtract);
  });

  it('counts exactly what changed since the backup', () => {
    expect(diffCounts(result)).toEqual({
      'public.parted_self_fk': { missing: 1, changed: 0, extra: 0 },
      'public.gtest24': { missing: 1, changed: 0, extra: 0 },
      // The child's row (a = 0) is not the parent's: not "not in the backup".
      'public.clstr_tst': { missing: 3, changed: 0, extra: 0 },
      'public.transition_table_level2': { missing: 7, changed: 2, extra: 0 },
      'public.mlparted': 'no primary key',
      'public.thethings': 'no primary key',
      'public.domcontest': 'no primary key',
      'public.textrange_test': 'no primary key',
    });
  });

  it('moves the types and sequences along, and cuts what reaches out', async () => {
    await withClient(source.url, async (c) => {
      const types = await c.query<{ col: string; type: string }>(
        `SELECT format('%s.%s', attrelid::regclass::text, attname) AS col,
                format_type(atttypid, atttypmod) AS type
           FROM pg_attribute WHERE attrelid = ANY($1::regclass[]) AND attname IN ('stuff', 'col1', 'tr', 'b')
          ORDER BY 1`,
        [
          [
            `${schema}.thethings`,
            `${schema}.domcontest`,
            `${schema}.textrange_test`,
            `${schema}.gtest24`,
          ],
        ],
      );
      for (const row of types.rows) expect(row.type.startsWith(`${schema}.`)).toBe(true);
      const fks = await c.query<{ conname: string }>(
        `SELECT conname FROM pg_constraint WHERE contype = 'f' AND connamespace = $1::regnamespace
            AND conparentid = 0 ORDER BY 1`,
        [schema],
      );
      expect(fks.rows.map((r) => r.conname)).toEqual(['parted_self_fk_id_abc_fkey']);
      const triggers = await c.query(
        `SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal`,
        [schema],
      );
      expect(triggers.rows).toEqual([]);
      const defaults = await c.query<{ d: string }>(
        `SELECT pg_get_expr(adbin, adrelid) AS d FROM pg_attrdef
          WHERE adrelid IN ($1::regclass, $2::regclass) ORDER BY 1`,
        [`${schema}.clstr_tst`, `${schema}.transition_table_level2`],
      );
      expect(defaults.rows.map((r) => r.d)).toEqual([
        `nextval('${schema}.clstr_tst_a_seq'::regclass)`,
        `nextval('${schema}.transition_table_level2_level2_no_seq'::regclass)`,
      ]);
    });
  });

  it('puts the deleted rows back with the statements it gives', async () => {
    const statements = result.diffs.filter((d) => d.copyBack).map((d) => d.copyBack as string);
    expect(statements).toHaveLength(4);
    await withClient(source.url, async (c) => {
      await c.query('BEGIN');
      for (const statement of statements) await c.query(statement);
      await c.query('COMMIT');
    });
    const now = await tableFingerprints(source.url);
    for (const table of ['gtest24', 'clstr_tst', 'part1_self_fk', 'part2_self_fk']) {
      expect([table, now.get(`public.${table}`)]).toEqual([table, atBackup.get(`public.${table}`)]);
    }
    // Changed rows are left to the user: the rows are back, two still differ.
    expect(now.get('public.transition_table_level2')?.rows).toBe(
      atBackup.get('public.transition_table_level2')?.rows,
    );
  });
});
