/** ArchiveCoalescer on archives written by real pg_dump binaries. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArchiveCoalescer } from '../../src/postgres/archive.js';
import { repoRoot } from '../support/bundle.js';
import { MACHINE_BIN_DIR } from '../support/embedded.js';
import { runToBuffer as run } from '../support/run.js';
import { loadSample, newDatabase, rowCounts, withClient } from '../support/sample.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'archive-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** pg_dump's archive as written to a pipe, as the backup reads it. */
function dumpToPipe(url: string, compress = '0'): Promise<Buffer> {
  return run(path.join(MACHINE_BIN_DIR, 'pg_dump'), [
    '--no-password',
    '--format=custom',
    `--compress=${compress}`,
    `--dbname=${url}`,
  ]);
}

/** The SQL pg_restore makes of an archive, without the per-run \restrict key lines. */
async function restoredSql(archive: Buffer): Promise<string> {
  const file = path.join(dir, `restore-${process.hrtime.bigint()}.pgc`);
  writeFileSync(file, archive);
  const sql = await run(path.join(MACHINE_BIN_DIR, 'pg_restore'), ['--file=-', file]);
  return sql
    .toString('utf8')
    .split('\n')
    .filter((line) => !/^\\(un)?restrict /.test(line))
    .join('\n');
}

/** A small deterministic generator, so that a failing split can be replayed. */
function pieceSizes(seed: number, max: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return 1 + (state % max);
  };
}

/**
 * Feeds `archive` in pieces of up to `maxPiece` bytes (each overwritten after use, to show no
 * reference to the input is kept), copying and releasing what comes out.
 */
function coalesce(
  archive: Buffer,
  options: { maxPiece?: number; chunkSize?: number; release?: boolean } = {},
): { output: Buffer; coalescer: ArchiveCoalescer } {
  const coalescer = new ArchiveCoalescer(options.chunkSize);
  const next = pieceSizes(archive.length, options.maxPiece ?? 64 * 1024);
  const parts: Buffer[] = [];
  const take = (buffers: Buffer[]): void => {
    for (const b of buffers) {
      parts.push(Buffer.from(b));
      if (options.release !== false) coalescer.release(b);
    }
  };
  for (let at = 0; at < archive.length;) {
    const piece = Buffer.from(archive.subarray(at, at + next()));
    take(coalescer.update(piece));
    piece.fill(0xa5);
    at += piece.length;
  }
  take(coalescer.final());
  return { output: Buffer.concat(parts), coalescer };
}

/**
 * Each data block's bytes by dump id (and large-object OID), with its chunk count, read from
 * `start` independently of the coalescer.
 */
function dataBlocks(archive: Buffer, start: number): Map<string, { data: Buffer; chunks: number }> {
  let p = start;
  const int = (): number => {
    let value = 0;
    for (let i = 0; i < 4; i++) value += archive[p + 1 + i] * 256 ** i;
    const negative = archive[p] !== 0;
    p += 5;
    return negative ? -value : value;
  };
  const chunks = (): { data: Buffer; chunks: number } => {
    const parts: Buffer[] = [];
    for (let length = int(); length !== 0; length = int()) {
      parts.push(archive.subarray(p, p + length));
      p += length;
    }
    return { data: Buffer.concat(parts), chunks: parts.length };
  };
  const blocks = new Map<string, { data: Buffer; chunks: number }>();
  while (p < archive.length) {
    const type = archive[p++];
    const id = int();
    if (type === 1) blocks.set(String(id), chunks());
    else if (type === 3)
      for (let oid = int(); oid !== 0; oid = int()) blocks.set(`${id}/${oid}`, chunks());
    else throw new Error(`block type ${type} at ${p - 6}`);
  }
  if (p !== archive.length) throw new Error('the last block runs past the end');
  return blocks;
}

function expectSameData(original: Buffer, coalesced: Buffer, headBytes: number): void {
  const before = dataBlocks(original, headBytes);
  const after = dataBlocks(coalesced, headBytes);
  expect([...after.keys()]).toEqual([...before.keys()]);
  for (const [key, block] of before) expect(after.get(key)?.data.equals(block.data)).toBe(true);
}

describe('ArchiveCoalescer on pg_dump 15 archives (format 1.14)', () => {
  let url: string;
  let archive: Buffer;
  let rows: number;

  beforeAll(async () => {
    url = await newDatabase('archive');
    await loadSample(url);
    await withClient(url, (c) => c.query('CREATE TABLE public.empty_table (id int)'));
    archive = await dumpToPipe(url);
    rows = await withClient(url, async (c) => {
      const r = await c.query<{ n: string }>(
        `SELECT (SELECT count(*) FROM app.customers) + (SELECT count(*) FROM app.orders)
              + (SELECT count(*) FROM public.documents) + (SELECT count(*) FROM audit.events) AS n`,
      );
      return Number(r.rows[0].n);
    });
  });

  it('writes the same archive with one chunk per table instead of one per row', async () => {
    const { output, coalescer } = coalesce(archive);
    expect(coalescer.unchangedBecause).toBeUndefined();
    expect(coalescer.chunksIn).toBeGreaterThanOrEqual(rows);
    const dataEntries = coalescer.entries.filter((e) => e.hasData);
    expect(dataEntries.map((e) => e.desc)).toEqual(expect.arrayContaining(['TABLE DATA', 'BLOBS']));
    expect(dataEntries.map((e) => e.tag)).toEqual(
      expect.arrayContaining(['customers', 'orders_2025', 'documents', 'empty_table']),
    );
    // Every table here holds less than 1 MiB: one chunk each, and none for the empty one.
    expect(coalescer.chunksOut).toBeLessThanOrEqual(dataEntries.length + 1);
    expect(output.length).toBe(archive.length - 5 * (coalescer.chunksIn - coalescer.chunksOut));
    expect(
      archive.subarray(0, coalescer.headBytes).equals(output.subarray(0, coalescer.headBytes)),
    ).toBe(true);
    expectSameData(archive, output, coalescer.headBytes as number);
    expect(await restoredSql(output)).toBe(await restoredSql(archive));
  });

  it("counts each table's rows in the dump as they pass", async () => {
    // Names in this database hold no dot.
    const tables = Object.entries(await rowCounts(url)).map(([qualified, rows]) => {
      const [schema, name] = qualified.split('.');
      return { schema, name, rows };
    });
    expect(tables.map((t) => t.name)).toEqual(
      expect.arrayContaining(['customers', 'orders_2025', 'orders_2026', 'events', 'empty_table']),
    );
    for (const maxPiece of [64 * 1024, 1]) {
      const { coalescer } = coalesce(archive, { maxPiece });
      for (const t of tables) expect(coalescer.rowsOf(t.schema, t.name)).toBe(t.rows);
      // A partitioned table's rows are its partitions'; it has no data of its own.
      expect(coalescer.rowsOf('app', 'orders')).toBeUndefined();
      expect(coalescer.rowsOf('app', 'missing')).toBeUndefined();
    }
    // Chunks of several rows, or of parts of rows, are not taken for rows: an archive already
    // merged, whole or in 100-byte chunks, gives no count but for an empty table.
    for (const chunkSize of [undefined, 100]) {
      const merged = coalesce(coalesce(archive, { chunkSize }).output).coalescer;
      for (const t of tables) {
        expect(merged.rowsOf(t.schema, t.name)).toBe(t.rows === 0 ? 0 : undefined);
      }
    }
  });

  it('counts rows whatever they hold, in tables whose names need quoting', async () => {
    const odd = await newDatabase('archive_rows');
    // Values that look like COPY's own end line or hold the line breaks COPY escapes; names
    // with a dot, quotes and a space, and one table name in two schemas.
    await withClient(odd, (c) =>
      c.query(String.raw`
        CREATE SCHEMA "odd.schema";
        CREATE TABLE "odd.schema"."t ""q""" (v text, w text);
        CREATE TABLE public."t ""q""" (v text);
        INSERT INTO "odd.schema"."t ""q""" VALUES
          ('\.', NULL), (E'\\.\n\n\n', ''), (E'a\nb', E'\\'), ('.', '\.'), (NULL, NULL);
        INSERT INTO public."t ""q""" SELECT repeat('x', g) FROM generate_series(1, 999) g;
        INSERT INTO public."t ""q""" VALUES (E'\\.\n\n');
        CREATE TABLE public.lines (v text);
        INSERT INTO public.lines VALUES (E'\\.\n\n\n');
        CREATE TABLE public.five (v text);
        INSERT INTO public.five VALUES ('abcd'), ('wxyz');`),
    );
    const dumped = await dumpToPipe(odd);
    // The same archive without the end lines, as a pg_dump that writes none would give it: the
    // last row of public.five is as long as that line, and is counted.
    const endLine = Buffer.concat([Buffer.from([0, 5, 0, 0, 0]), Buffer.from('\\.\n\n\n')]);
    const parts: Buffer[] = [];
    let from = 0;
    for (let at = dumped.indexOf(endLine); at >= 0; at = dumped.indexOf(endLine, from)) {
      parts.push(dumped.subarray(from, at));
      from = at + endLine.length;
    }
    parts.push(dumped.subarray(from));
    const unended = Buffer.concat(parts);
    expect(unended.length).toBe(dumped.length - 4 * endLine.length);
    for (const archive of [dumped, unended]) {
      for (const maxPiece of [64 * 1024, 3, 1]) {
        const { coalescer } = coalesce(archive, { maxPiece, chunkSize: 4 });
        expect(coalescer.rowsOf('odd.schema', 't "q"')).toBe(5);
        expect(coalescer.rowsOf('public', 't "q"')).toBe(1000);
        expect(coalescer.rowsOf('public', 'lines')).toBe(1);
        expect(coalescer.rowsOf('public', 'five')).toBe(2);
      }
    }
    expect(await restoredSql(unended)).toContain('wxyz');
  });

  it('gives the same result whatever the reads, down to single bytes, and with small chunks', async () => {
    const whole = coalesce(archive, { maxPiece: archive.length }).output;
    expect(coalesce(archive, { maxPiece: 1 }).output.equals(whole)).toBe(true);
    expect(coalesce(archive, { maxPiece: 7, release: false }).output.equals(whole)).toBe(true);
    // Chunks of 100 bytes split rows and fill many slabs, released and reused on the way.
    const small = coalesce(archive, { maxPiece: 333, chunkSize: 100 });
    expect(small.coalescer.chunksOut).toBeGreaterThan(small.coalescer.chunksIn / 4);
    expectSameData(archive, small.output, small.coalescer.headBytes as number);
    expect(await restoredSql(small.output)).toBe(await restoredSql(archive));
  });

  it('unsets the data positions of an archive written to a file, which then restores the same', async () => {
    const file = path.join(dir, 'to-file.pgc');
    await run(path.join(MACHINE_BIN_DIR, 'pg_dump'), [
      '--no-password',
      '--format=custom',
      '--compress=0',
      `--file=${file}`,
      `--dbname=${url}`,
    ]);
    const written = readFileSync(file);
    const { output, coalescer } = coalesce(written, { chunkSize: 64 });
    expect(coalescer.chunksOut).toBeGreaterThan(coalescer.entries.filter((e) => e.hasData).length);
    expect(await restoredSql(output)).toBe(await restoredSql(written));
  });

  it('reads the 1.15 header (pg_dump 16), where a byte names the compression', () => {
    // 1.15 differs from 1.14 only there: bytes 11 to 15 held the level as an int.
    const v115 = Buffer.concat([archive.subarray(0, 11), Buffer.from([0]), archive.subarray(16)]);
    v115[6] = 15;
    const { output, coalescer } = coalesce(v115);
    expect(coalescer.unchangedBecause).toBeUndefined();
    expect(coalescer.chunksOut).toBeLessThan(coalescer.chunksIn);
    expectSameData(v115, output, coalescer.headBytes as number);
  });

  it('passes compressed archives, other versions and other bytes unchanged', async () => {
    const compressed = await dumpToPipe(url, '6');
    const newer = Buffer.from(archive);
    newer[6] = 17;
    const cases: [Buffer, RegExp][] = [
      [compressed, /compressed/],
      [newer, /version 1\.17\.0/],
      [Buffer.from('-- PostgreSQL database dump\nSELECT 1;\n'), /not a custom-format archive/],
    ];
    for (const [input, reason] of cases) {
      const { output, coalescer } = coalesce(input, { maxPiece: 1000 });
      expect(output.equals(input)).toBe(true);
      expect(coalescer.unchangedBecause).toMatch(reason);
    }
  });

  it('fails on an archive cut short or with a block it cannot read', () => {
    const { coalescer } = coalesce(archive);
    const head = coalescer.headBytes as number;
    expect(() => coalesce(archive.subarray(0, head - 10))).toThrow(
      /could not be read near byte \d+: the archive ends inside its header or table of contents/,
    );
    expect(() => coalesce(archive.subarray(0, archive.length - 3))).toThrow(
      /the archive ends inside a data block/,
    );
    const wrongType = Buffer.from(archive);
    wrongType[head] = 9;
    expect(() => coalesce(wrongType)).toThrow(
      `near byte ${head + 6}: a data block of unknown type 9`,
    );
    const wrongId = Buffer.from(archive);
    wrongId[head + 2] = 250;
    expect(() => coalesce(wrongId)).toThrow(/a data block for unknown entry/);
  });
});

describe('ArchiveCoalescer on a pg_dump 18 archive (format 1.16)', () => {
  // Written by PostgreSQL 18.3's pg_dump (PGlite's WebAssembly build, @electric-sql/pglite-tools
  // 0.4.8) to a file, uncompressed, with table data as INSERT statements; see the README there.
  const archive = readFileSync(path.join(repoRoot, 'test/fixtures/archives/pg18-uncompressed.pgc'));

  it('reads its table of contents and coalesces its table and large-object data', () => {
    expect(archive.subarray(0, 8).toString('latin1')).toBe('PGDMP\x01\x10\x00');
    const { output, coalescer } = coalesce(archive, { maxPiece: 500 });
    expect(coalescer.unchangedBecause).toBeUndefined();
    const data = coalescer.entries.filter((e) => e.hasData);
    expect(data.map((e) => `${e.desc} ${e.tag}`)).toEqual(
      expect.arrayContaining(['TABLE DATA items', 'TABLE DATA wide', 'TABLE DATA empty_table']),
    );
    expect(data.filter((e) => e.desc === 'BLOBS')).toHaveLength(1);
    // Its table data is INSERT statements, which are not one chunk per row: no count is given.
    expect(data.find((e) => e.tag === 'items')?.copy).toBe(false);
    expect(coalescer.rowsOf('public', 'items')).toBeUndefined();
    expect(coalescer.chunksIn).toBeGreaterThan(240);
    expect(coalescer.chunksOut).toBeLessThan(10);
    const before = dataBlocks(archive, coalescer.headBytes as number);
    expect([...before.keys()].filter((k) => k.includes('/'))).toHaveLength(2);
    expectSameData(archive, output, coalescer.headBytes as number);
  });
});
