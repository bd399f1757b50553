import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { exportsPrefix } from '../../src/catalog/keys.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { runProcess } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runExport } from '../../src/extract/export.js';
import { runExtract, type ExtractResult } from '../../src/extract/extract.js';
import type { ExtractOptions } from '../../src/extract/options.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { runPrune } from '../../src/prune/prune.js';
import { LocalStorage } from '../../src/storage/local.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  type TestStore,
} from '../support/env.js';
import { loadPagila, newDatabase, withClient } from '../support/sample.js';

const key = generateIdentity();
let store: TestStore;
let tools: ClientTools;
let liveUrl: string;
let database: string;
let manifest: Manifest;
let work: string;
/** The backup's rows of each table, as sorted CSV lines (header first). */
const backupRows: Record<string, string[]> = {};

/** Every row of a table (or of a query) as CSV lines, sorted, with its header first. */
async function csvLines(url: string, relation: string): Promise<string[]> {
  const r = await runProcess(tools.psql, [
    '-X',
    '-q',
    '-d',
    url,
    '-c',
    `COPY (SELECT * FROM ${relation}) TO STDOUT WITH (FORMAT csv, HEADER)`,
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const [header, ...rows] = r.stdout.trimEnd().split('\n');
  return [header, ...rows.sort()];
}

/** A fingerprint of every live table's rows and of the schemas' objects, outside extracts. */
async function fingerprint(url: string): Promise<string> {
  return withClient(url, async (c) => {
    const tables = await c.query<{ t: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1`,
    );
    const hash = createHash('sha256');
    for (const { t } of tables.rows) {
      const r = await c.query<{ h: string | null }>(
        `SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) AS h FROM ${t} x`,
      );
      hash.update(`${t}=${r.rows[0].h}\n`);
    }
    const objects = await c.query<{ o: string }>(
      `SELECT string_agg(format('%s.%s:%s', n.nspname, c.relname, c.relkind), ',' ORDER BY 1) AS o
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT LIKE 'recovered%' AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'`,
    );
    hash.update(objects.rows[0].o);
    return hash.digest('hex');
  });
}

function extractOptions(overrides: Partial<ExtractOptions> = {}): ExtractOptions {
  return {
    name: 'pagila',
    backupId: manifest.id,
    decryption: { identities: [key.identity] },
    tables: ['rental', 'public.payment'],
    jobs: 2,
    postgresVersion: 'auto',
    targetUrl: liveUrl,
    confirm: database,
    replaceExtractSchema: false,
    compare: true,
    compareLimit: 5,
    ...overrides,
  };
}

function extract(options: ExtractOptions, logger = new MemoryLogger()): Promise<ExtractResult> {
  return runExtract(options, {
    ...testDrillDeps(store.storage, tools, work, { logger }),
    reportDir: path.join(work, 'report'),
  });
}

beforeAll(async () => {
  tools = await machineClientTools();
  work = mkdtempSync(path.join(os.tmpdir(), 'extract-'));
  store = await makeStore('s3');
  liveUrl = await newDatabase('xpagila');
  database = new URL(liveUrl).pathname.slice(1);
  await loadPagila(liveUrl);
  ({ manifest } = await runBackup(
    testBackupOptions(liveUrl, 'pagila', { encryption: { recipients: [key.recipient] } }),
    testBackupDeps(store.storage, tools),
  ));
  for (const t of ['public.rental', 'public.payment']) {
    backupRows[t] = await csvLines(liveUrl, t);
  }
  // What went wrong after the backup: 12 payments deleted, 5 rentals changed.
  await withClient(liveUrl, async (c) => {
    await c.query(
      `DELETE FROM public.payment WHERE payment_id IN (SELECT payment_id FROM public.payment ORDER BY payment_id LIMIT 12)`,
    );
    await c.query(
      `UPDATE public.rental SET return_date = NULL WHERE rental_id IN (SELECT rental_id FROM public.rental WHERE return_date IS NOT NULL ORDER BY rental_id LIMIT 5)`,
    );
  });
}, 240_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('extract of Pagila tables from a backup beside the live ones', () => {
  let result: ExtractResult;
  let before: string;
  const logger = new MemoryLogger();

  beforeAll(async () => {
    before = await fingerprint(liveUrl);
    result = await extract(extractOptions(), logger);
  }, 240_000);

  it('holds the backup rows in the side schema, partitions included', async () => {
    const schema = `recovered_${manifest.id.toLowerCase().replace(/[^a-z0-9]/g, '_')}`;
    expect(result.schema).toBe(schema);
    expect(await csvLines(liveUrl, `${schema}.rental`)).toEqual(backupRows['public.rental']);
    expect(await csvLines(liveUrl, `${schema}.payment`)).toEqual(backupRows['public.payment']);
    const partitions = result.tables.filter((t) => t.parent?.name === 'payment');
    expect(partitions.length).toBeGreaterThanOrEqual(6);
    await withClient(liveUrl, async (c) => {
      const inSchema = await c.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
        [schema],
      );
      expect(Number(inSchema.rows[0].n)).toBe(2 + partitions.length);
      // Foreign keys only between extracted tables; no triggers that would reach out.
      const outward = await c.query(
        `SELECT k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class f ON f.oid = k.confrelid
          WHERE k.contype = 'f' AND c.relnamespace = $1::regnamespace AND f.relnamespace <> $1::regnamespace`,
        [schema],
      );
      expect(outward.rows).toEqual([]);
      const kept = await c.query(
        `SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid IN
           (SELECT oid FROM pg_class WHERE relnamespace = $1::regnamespace)`,
        [schema],
      );
      expect(kept.rows.length).toBeGreaterThan(0);
      // The sequence the defaults draw from came along, with the backup's state.
      const defaults = await c.query<{ d: string }>(
        `SELECT pg_get_expr(adbin, adrelid) AS d FROM pg_attrdef WHERE adrelid = $1::regclass`,
        [`${schema}.rental`],
      );
      expect(defaults.rows.map((r) => r.d).join(' ')).toContain(`${schema}.rental_rental_id_seq`);
    });
  });

  it('counts exactly the 12 deleted and the 5 changed rows, with a CSV of them', () => {
    const byTable = Object.fromEntries(result.diffs.map((d) => [d.table, d]));
    expect(byTable['public.payment']).toMatchObject({ missing: 12, changed: 0, extra: 0 });
    expect(byTable['public.rental']).toMatchObject({ missing: 0, changed: 5, extra: 0 });
    const csv = readFileSync(byTable['public.payment'].csv as string, 'utf8')
      .trimEnd()
      .split('\n');
    expect(csv[0]).toBe('change,payment_date,payment_id,backup_row,live_row');
    expect(csv).toHaveLength(1 + 5);
    expect(csv[1]).toMatch(/^missing from live,/);
    expect(byTable['public.rental'].copyBack).toMatch(
      /^INSERT INTO public\.rental \(rental_id, rental_date, .*\)\nSELECT b\.rental_id, /,
    );
  });

  it('leaves the live tables as they were, and logs no secret', async () => {
    expect(await fingerprint(liveUrl)).toBe(before);
    const log = logger.lines.join('\n');
    expect(log).not.toContain(key.identity);
    const password = new URL(liveUrl).password;
    if (password) expect(log).not.toContain(password);
  });

  it('copies the missing rows back with the INSERT … SELECT it gives', async () => {
    const payment = result.diffs.find((d) => d.table === 'public.payment');
    await withClient(liveUrl, (c) => c.query(payment?.copyBack as string));
    expect(await csvLines(liveUrl, 'public.payment')).toEqual(backupRows['public.payment']);
  });

  it('refuses a second extract into the same schema, and replaces it when asked', async () => {
    await expect(extract(extractOptions({ tables: ['rental'] }))).rejects.toThrow(
      ConfigurationError,
    );
    await expect(extract(extractOptions({ tables: ['rental'] }))).rejects.toThrow(
      /exists.*replace-extract-schema: true/,
    );
    const again = await extract(
      extractOptions({ tables: ['rental'], replaceExtractSchema: true, compare: false }),
    );
    expect(again.replaced).toBe(true);
    expect(again.tables.map((t) => t.name)).toEqual(['rental']);
    await withClient(liveUrl, async (c) => {
      const left = await c.query(`SELECT to_regclass($1) AS r`, [`${again.schema}.payment`]);
      expect(left.rows[0].r).toBeNull();
    });
  }, 240_000);

  it('refuses without confirm, and a schema it did not make', async () => {
    await expect(extract(extractOptions({ confirm: undefined }))).rejects.toThrow(
      /confirm must be the target database's name/,
    );
    await expect(
      extract(extractOptions({ extractSchema: 'public', replaceExtractSchema: true })),
    ).rejects.toThrow(/cannot be 'public'/);
  });
});

/** A file decrypted with the age CLI and decompressed with the zstd CLI. */
async function decrypted(file: string): Promise<{ stdout: string }> {
  const identityFile = path.join(work, 'identity');
  writeFileSync(identityFile, `${key.identity}\n`, { mode: 0o600 });
  const r = await runProcess('bash', [
    '-c',
    `age -d -i "${identityFile}" "${file}" | zstd -d -q -c`,
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r;
}

describe('export of Pagila tables', () => {
  it('writes JSON Lines that parse to the rows', async () => {
    const output = mkdtempSync(path.join(work, 'jsonl-'));
    const folder = new LocalStorage(output, new MemoryLogger());
    const result = await runExport(
      {
        name: 'pagila',
        backupId: manifest.id,
        decryption: { identities: [key.identity] },
        tables: ['public.staff'],
        jobs: 1,
        postgresVersion: 'auto',
        format: 'jsonl',
        recipients: [],
      },
      {
        ...testDrillDeps(store.storage, tools, work),
        destination: { storage: folder, prefix: '' },
      },
    );
    const [table] = result.exportManifest.tables;
    expect(table.key).toBe('public.staff.jsonl.zst.age');
    const plain = await decrypted(path.join(output, table.key));
    const rows = plain.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.stringify(JSON.parse(l)));
    expect(rows).toHaveLength(table.rows);
    const live = await withClient(liveUrl, (c) =>
      c.query<{ r: unknown }>('SELECT row_to_json(t) AS r FROM public.staff t'),
    );
    expect(rows.sort()).toEqual(live.rows.map((row) => JSON.stringify(row.r)).sort());
  }, 240_000);

  it('writes age-encrypted zstd CSV files with a manifest that prune leaves alone', async () => {
    const result = await runExport(
      {
        name: 'pagila',
        backupId: manifest.id,
        decryption: { identities: [key.identity] },
        tables: ['rental', 'payment'],
        jobs: 2,
        postgresVersion: 'auto',
        format: 'csv',
        recipients: [],
      },
      { ...testDrillDeps(store.storage, tools, work), destination: { storage: store.storage } },
    );
    const prefix = exportsPrefix('pagila', manifest.id);
    expect(result.exportManifest.tables.map((t) => t.key)).toEqual([
      `${prefix}public.rental.csv.zst.age`,
      `${prefix}public.payment.csv.zst.age`,
    ]);
    for (const t of result.exportManifest.tables) {
      const stored = (await store.storage.getBytes(t.key)) as Buffer;
      expect(createHash('sha256').update(stored).digest('hex')).toBe(t.sha256);
      const file = path.join(work, 'export.age');
      writeFileSync(file, stored);
      const plain = await decrypted(file);
      const [header, ...rows] = plain.stdout.trimEnd().split('\n');
      expect([header, ...rows.sort()]).toEqual(backupRows[t.table]);
      expect(t.rows).toBe(rows.length);
    }
    const stored = JSON.parse(
      ((await store.storage.getBytes(`${prefix}manifest.json`)) as Buffer).toString(),
    ) as { encryption: { recipients: string[] } };
    expect(stored.encryption.recipients).toEqual([key.recipient]);

    // A newer backup, then prune to one: the exported backup goes, its exports stay.
    await runBackup(testBackupOptions(liveUrl, 'pagila'), testBackupDeps(store.storage, tools));
    const report = await runPrune(
      {
        names: ['pagila'],
        policy: { timezone: 'UTC', keepLast: 1 },
        dryRun: false,
        bypassGovernanceRetention: false,
      },
      { storage: store.storage, logger: new MemoryLogger(), clock: { now: () => new Date() } },
    );
    expect(JSON.stringify(report)).toContain(manifest.id);
    expect(await store.storage.head(`${prefix}manifest.json`)).toBeDefined();
    expect(await store.storage.head(`pagila/backups/${manifest.id}/manifest.json`)).toBeUndefined();
  }, 240_000);
});
