/** fillDataOffsets on archives written by real pg_dump binaries, to a pipe and to a file. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryLogger } from '../../src/core/logger.js';
import { ArchiveCoalescer } from '../../src/postgres/archive.js';
import { startScratchCluster, type ScratchCluster } from '../../src/postgres/cluster.js';
import { fillDataOffsets } from '../../src/postgres/offsets.js';
import { repoRoot } from '../support/bundle.js';
import { embeddedServer, MACHINE_BIN_DIR } from '../support/embedded.js';
import { runToBuffer as run } from '../support/run.js';
import {
  createDatabase,
  loadSample,
  newDatabase,
  rowCounts,
  withClient,
} from '../support/sample.js';

const NOT_SET = 1;
const POS_SET = 2;
const NO_DATA = 3;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'offsets-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** Writes `bytes` to a new file in the test folder; its path. */
function fileOf(bytes: Buffer, name = 'archive'): string {
  const file = path.join(dir, `${name}-${files++}.pgc`);
  writeFileSync(file, bytes);
  return file;
}

/** Tables and large objects beyond the sample: an empty table, many rows, a foreign key. */
const EXTRA_SQL = `
CREATE TABLE public.empty_table (id int);
CREATE TABLE public.many (id int PRIMARY KEY, v text);
INSERT INTO public.many SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 60000) g;
CREATE TABLE public.many_notes (id serial PRIMARY KEY, many_id int NOT NULL REFERENCES public.many(id), note text);
INSERT INTO public.many_notes (many_id, note) SELECT 1 + g % 60000, 'note ' || g FROM generate_series(1, 5000) g;
SELECT lo_from_bytea(0, convert_to(repeat('large object ', g), 'UTF8')) FROM generate_series(1, 5) g;
`;

async function loadDatabase(url: string): Promise<void> {
  await loadSample(url);
  await withClient(url, (c) => c.query(EXTRA_SQL));
}

/** The pg_dump 15 archive of `url`, as read from its standard output through a pipe. */
function dumpToPipe(url: string, compress: string): Promise<Buffer> {
  return run(path.join(MACHINE_BIN_DIR, 'pg_dump'), [
    '--no-password',
    '--format=custom',
    `--compress=${compress}`,
    `--dbname=${url}`,
  ]);
}

/** The pg_dump 15 archive of `url`, written to a file (seekable: the positions are set). */
async function dumpToFile(url: string, compress: string): Promise<Buffer> {
  const file = path.join(dir, `dumped-${files++}.pgc`);
  await run(path.join(MACHINE_BIN_DIR, 'pg_dump'), [
    '--no-password',
    '--format=custom',
    `--compress=${compress}`,
    `--file=${file}`,
    `--dbname=${url}`,
  ]);
  return readFileSync(file);
}

function pgRestore(args: string[]): Promise<Buffer> {
  return run(path.join(MACHINE_BIN_DIR, 'pg_restore'), args);
}

async function largeObjects(url: string): Promise<number> {
  return withClient(url, async (c) => {
    const r = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_largeobject_metadata');
    return Number(r.rows[0].n);
  });
}

// ---- an independent reading of the format, for the checks ----

interface TocView {
  intSize: number;
  /** Bytes of the header and table of contents. */
  headBytes: number;
  /** Where the header's creation time (seven ints) is. */
  created: { from: number; to: number };
  entries: { dumpId: number; hasData: boolean; state: number; offset: number }[];
}

/** Reads the header and table of contents as pg_backup_archiver.c's ReadHead and ReadToc. */
function tocOf(a: Buffer): TocView {
  expect(a.subarray(0, 5).toString('latin1')).toBe('PGDMP');
  const minor = a[6];
  const intSize = a[8];
  const offSize = a[9];
  let p = 11;
  const int = (): number => {
    let value = 0;
    for (let i = 0; i < intSize; i++) value += a[p + 1 + i] * 256 ** i;
    const negative = a[p] !== 0;
    p += 1 + intSize;
    return negative ? -value : value;
  };
  const str = (): boolean => {
    const length = int();
    if (length >= 0) p += length;
    return length >= 0;
  };
  if (minor >= 15) p += 1;
  else int();
  const from = p;
  for (let i = 0; i < 7; i++) int();
  const created = { from, to: p };
  str();
  str();
  str();
  const count = int();
  const entries: TocView['entries'] = [];
  for (let i = 0; i < count; i++) {
    const dumpId = int();
    const hasData = int() !== 0;
    for (let s = 0; s < 4; s++) str();
    int();
    for (let s = 0; s < 5; s++) str();
    if (minor >= 14) str();
    if (minor >= 16) int();
    str();
    str();
    while (str());
    const state = a[p];
    let offset = 0;
    for (let b = 0; b < offSize; b++) offset += a[p + 1 + b] * 256 ** b;
    p += 1 + offSize;
    entries.push({ dumpId, hasData, state, offset });
  }
  return { intSize, headBytes: p, created, entries };
}

/** Where each data block starts and its type, by dump id, reading every block from `from`. */
function blocksOf(
  a: Buffer,
  from: number,
  intSize: number,
): Map<number, { at: number; type: number }> {
  let p = from;
  const int = (): number => {
    let value = 0;
    for (let i = 0; i < intSize; i++) value += a[p + 1 + i] * 256 ** i;
    p += 1 + intSize;
    return value;
  };
  const chunks = (): void => {
    for (let length = int(); length !== 0; length = int()) p += length;
  };
  const blocks = new Map<number, { at: number; type: number }>();
  while (p < a.length) {
    const at = p;
    const type = a[p++];
    blocks.set(int(), { at, type });
    if (type === 1) chunks();
    else if (type === 3) for (let oid = int(); oid !== 0; oid = int()) chunks();
    else throw new Error(`block type ${type} at ${at}`);
  }
  expect(p).toBe(a.length);
  return blocks;
}

/** The data positions pg_restore reads from the archive's table of contents, by dump id. */
async function positionsPgRestoreReads(file: string): Promise<Map<number, number>> {
  const sql = (await pgRestore(['--verbose', '--file=-', file])).toString('utf8');
  const positions = new Map<number, number>();
  let id = -1;
  for (const line of sql.split('\n')) {
    const entry = /^-- TOC entry (\d+) /.exec(line);
    if (entry) id = Number(entry[1]);
    const position = /^-- Data Pos: (\d+)$/.exec(line);
    if (position) positions.set(id, Number(position[1]));
  }
  return positions;
}

/** Checks that every entry with data is set to where its own block starts in `a`. */
function expectPositionsAtOwnBlocks(a: Buffer): TocView {
  const toc = tocOf(a);
  const blocks = blocksOf(a, toc.headBytes, toc.intSize);
  expect(blocks.size).toBe(toc.entries.filter((e) => e.hasData).length);
  for (const e of toc.entries) {
    if (!e.hasData) {
      expect({ id: e.dumpId, state: e.state }).toEqual({ id: e.dumpId, state: NO_DATA });
      continue;
    }
    expect({ id: e.dumpId, state: e.state, at: e.offset }).toEqual({
      id: e.dumpId,
      state: POS_SET,
      at: blocks.get(e.dumpId)?.at,
    });
    // What pg_restore reads at that position: the block type, then the entry's dump id.
    expect([1, 3]).toContain(a[e.offset]);
    expect(a.readUInt32LE(e.offset + 2) * (a[e.offset + 1] === 0 ? 1 : -1)).toBe(e.dumpId);
  }
  return toc;
}

/** The positions of differing bytes. */
function differences(a: Buffer, b: Buffer): number[] {
  expect(a.length).toBe(b.length);
  const at: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) at.push(i);
  return at;
}

/**
 * Fills the positions of `piped` and checks it against `seekable`, the same dump written to a
 * file: the same bytes, but for the header's creation time when the two dumps did not start in
 * the same second.
 */
async function expectFilledAsSeekable(piped: Buffer, seekable: Buffer): Promise<string> {
  const before = tocOf(piped);
  const withData = before.entries.filter((e) => e.hasData);
  expect(withData.length).toBeGreaterThan(3);
  expect(withData.map((e) => e.state)).toEqual(withData.map(() => NOT_SET));
  expect(withData.map((e) => e.offset)).toEqual(withData.map(() => 0));
  expect(
    tocOf(seekable)
      .entries.filter((e) => e.hasData)
      .map((e) => e.state),
  ).toEqual(withData.map(() => POS_SET));

  const file = fileOf(piped, 'piped');
  expect(await fillDataOffsets(file)).toEqual({
    entries: before.entries.length,
    filled: withData.length,
  });
  const filled = readFileSync(file);
  const { from, to } = before.created;
  expect(differences(filled, seekable).filter((i) => i < from || i >= to)).toEqual([]);
  seekable.copy(filled, from, from, to);
  expect(filled.equals(seekable)).toBe(true);

  // Positions already set are checked and kept: nothing changes the second time, nor in the
  // archive pg_dump wrote to a file.
  expect(await fillDataOffsets(file)).toEqual({ entries: before.entries.length, filled: 0 });
  const seekableFile = fileOf(seekable, 'seekable');
  expect(await fillDataOffsets(seekableFile)).toEqual({
    entries: before.entries.length,
    filled: 0,
  });
  expect(readFileSync(seekableFile).equals(seekable)).toBe(true);
  return file;
}

describe('fillDataOffsets on pg_dump 15 archives (format 1.14)', () => {
  let url: string;
  const piped = new Map<string, Buffer>();
  const seekable = new Map<string, Buffer>();

  beforeAll(async () => {
    url = await newDatabase('offsets');
    await loadDatabase(url);
    // Nothing changes the database between the dumps. 0: uncompressed, as the backup dumps;
    // 6: pg_dump's own gzip, whose chunks are its compressor's output.
    for (const compress of ['0', '6']) {
      piped.set(compress, await dumpToPipe(url, compress));
      seekable.set(compress, await dumpToFile(url, compress));
    }
  });

  it('gives an archive written to a pipe the bytes pg_dump writes to a file', async () => {
    for (const compress of ['0', '6']) {
      await expectFilledAsSeekable(piped.get(compress) as Buffer, seekable.get(compress) as Buffer);
    }
  });

  it('changes nothing that pg_restore lists, and pg_restore reads the positions and restores in parallel', async () => {
    const archive = piped.get('0') as Buffer;
    const file = fileOf(archive);
    const listBefore = await pgRestore(['--list', file]);
    await fillDataOffsets(file);
    expect((await pgRestore(['--list', file])).equals(listBefore)).toBe(true);

    const toc = expectPositionsAtOwnBlocks(readFileSync(file));
    const read = await positionsPgRestoreReads(file);
    for (const e of toc.entries.filter((t) => t.hasData)) expect(read.get(e.dumpId)).toBe(e.offset);

    const target = await newDatabase('offsets_restored');
    await pgRestore(['--no-owner', '--exit-on-error', '--jobs=2', `--dbname=${target}`, file]);
    expect(await rowCounts(target)).toEqual(await rowCounts(url));
    expect(await largeObjects(target)).toBe(await largeObjects(url));
  });

  it("points the positions of an archive the backup re-chunked at that archive's own blocks", async () => {
    for (const chunkSize of [undefined, 100]) {
      const coalescer = new ArchiveCoalescer(chunkSize);
      const rechunked = Buffer.concat([
        ...coalescer.update(piped.get('0') as Buffer).map((b) => Buffer.from(b)),
        ...coalescer.final().map((b) => Buffer.from(b)),
      ]);
      expect(coalescer.unchangedBecause).toBeUndefined();
      expect(rechunked.length).not.toBe((piped.get('0') as Buffer).length);
      const file = fileOf(rechunked, 'rechunked');
      const result = await fillDataOffsets(file);
      const filled = readFileSync(file);
      const toc = expectPositionsAtOwnBlocks(filled);
      expect(result).toEqual({
        entries: toc.entries.length,
        filled: toc.entries.filter((e) => e.hasData).length,
      });
      // Only the positions changed.
      for (const i of differences(filled, rechunked)) expect(i).toBeLessThan(toc.headBytes);
      const read = await positionsPgRestoreReads(file);
      for (const e of toc.entries.filter((t) => t.hasData)) {
        expect(read.get(e.dumpId)).toBe(e.offset);
      }
      if (chunkSize === undefined) {
        const target = await newDatabase('offsets_rechunked');
        await pgRestore(['--no-owner', '--exit-on-error', '--jobs=2', `--dbname=${target}`, file]);
        expect(await rowCounts(target)).toEqual(await rowCounts(url));
      }
    }
  });

  it('reads the 1.15 header (pg_dump 16), where a byte names the compression', async () => {
    // 1.15 differs from 1.14 only there: bytes 11 to 15 held the level as an int.
    const archive = piped.get('0') as Buffer;
    const v115 = Buffer.concat([archive.subarray(0, 11), Buffer.from([0]), archive.subarray(16)]);
    v115[6] = 15;
    const file = fileOf(v115);
    const { filled } = await fillDataOffsets(file);
    expect(filled).toBeGreaterThan(3);
    expectPositionsAtOwnBlocks(readFileSync(file));
  });

  it('leaves entries whose block is missing unset, and writes nothing into an archive it cannot read', async () => {
    const archive = piped.get('0') as Buffer;
    const { headBytes, entries } = tocOf(archive);
    const headOnly = fileOf(archive.subarray(0, headBytes));
    expect(await fillDataOffsets(headOnly)).toEqual({ entries: entries.length, filled: 0 });
    expect(readFileSync(headOnly).equals(archive.subarray(0, headBytes))).toBe(true);

    const refused: [Buffer, RegExp][] = [
      [archive.subarray(0, headBytes - 10), /ends inside its header or table of contents/],
      [archive.subarray(0, 20), /ends inside its header or table of contents/],
      [archive.subarray(0, 3), /ends inside its header or table of contents/],
      [archive.subarray(0, archive.length - 3), /the archive ends inside/],
      [archive.subarray(0, headBytes + 3), /the archive ends inside a data block/],
      [Buffer.from('-- PostgreSQL database dump\nSELECT 1;\n'), /is not a pg_dump archive/],
      [Buffer.alloc(0), /is not a pg_dump archive/],
    ];
    const tar = Buffer.from(archive);
    tar[10] = 3;
    refused.push([tar, /is not a custom-format archive \(its format is 3\)/]);
    const newer = Buffer.from(archive);
    newer[6] = 17;
    refused.push([newer, /archive version 1\.17\.0 .* is not one this reads/]);
    const wrongType = Buffer.from(archive);
    wrongType[headBytes] = 9;
    refused.push([wrongType, new RegExp(`at byte ${headBytes}: a data block of unknown type 9`)]);
    const wrongId = Buffer.from(archive);
    wrongId[headBytes + 4] = 250;
    refused.push([wrongId, /a data block for unknown entry/]);
    // A position already set that is not where its block is.
    const seek = seekable.get('0') as Buffer;
    const set = tocOf(seek).entries.find((e) => e.state === POS_SET);
    expect(set).toBeDefined();
    const offset = set?.offset ?? 0;
    const misplaced = Buffer.from(seek);
    misplaced.writeUInt32LE(offset + 1, positionField(seek, offset) + 1);
    refused.push([
      misplaced,
      new RegExp(`says its data is at byte ${offset + 1}, but its block is at ${offset}`),
    ]);

    for (const [bytes, message] of refused) {
      const file = fileOf(bytes, 'refused');
      await expect(fillDataOffsets(file)).rejects.toThrow(message);
      expect(readFileSync(file).equals(bytes)).toBe(true);
    }
    await expect(fillDataOffsets(path.join(dir, 'missing.pgc'))).rejects.toThrow(/ENOENT/);
  });
});

/** Where the state byte of the data position that holds `offset` is (the first such field). */
function positionField(a: Buffer, offset: number): number {
  const field = Buffer.alloc(9);
  field[0] = POS_SET;
  field.writeUInt32LE(offset, 1);
  const at = a.indexOf(field);
  expect(at).toBeGreaterThan(0);
  return at;
}

describe('fillDataOffsets on the dump of a PostgreSQL 13 server', () => {
  let cluster: ScratchCluster;
  beforeAll(async () => {
    cluster = await startScratchCluster({
      server: embeddedServer(13),
      logger: new MemoryLogger(),
    });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('gives the piped archive the bytes pg_dump writes to a file', async () => {
    // The client's version decides the format (1.14 from pg_dump 15); the server's, what is in it.
    const url = await createDatabase(cluster.url('postgres'), 'shop');
    await loadDatabase(url);
    const piped = await dumpToPipe(url, '0');
    const seekable = await dumpToFile(url, '0');
    expect(piped.subarray(0, 200).toString('latin1')).toContain(cluster.version);
    const file = await expectFilledAsSeekable(piped, seekable);
    expectPositionsAtOwnBlocks(readFileSync(file));
  });
});

describe('fillDataOffsets on a pg_dump 18 archive (format 1.16)', () => {
  // Written by pg_dump 18.3 to a file, so its positions are pg_dump's own; see the README there.
  const fixture = path.join(repoRoot, 'test/fixtures/archives/pg18-uncompressed.pgc');
  const archive = readFileSync(fixture);

  /** The same archive as pg_dump writes it to a pipe: every data position unset. */
  function unset(): Buffer {
    const coalescer = new ArchiveCoalescer();
    coalescer.update(archive);
    coalescer.final();
    const headBytes = coalescer.headBytes as number;
    // The coalescer passes the head on with the positions unset, and its length unchanged.
    const head = Buffer.concat(
      new ArchiveCoalescer().update(archive.subarray(0, headBytes)).map((b) => Buffer.from(b)),
    );
    expect(head.length).toBe(headBytes);
    return Buffer.concat([head, archive.subarray(headBytes)]);
  }

  it('sets the positions back to the bytes pg_dump wrote', async () => {
    expect(archive.subarray(0, 8).toString('latin1')).toBe('PGDMP\x01\x10\x00');
    const piped = unset();
    const toc = tocOf(piped);
    const withData = toc.entries.filter((e) => e.hasData);
    expect(withData.map((e) => e.state)).toEqual(withData.map(() => NOT_SET));
    expect(differences(piped, archive).length).toBeGreaterThan(0);
    const file = fileOf(piped);
    expect(await fillDataOffsets(file)).toEqual({
      entries: toc.entries.length,
      filled: withData.length,
    });
    expect(readFileSync(file).equals(archive)).toBe(true);
    expectPositionsAtOwnBlocks(archive);
    const kept = fileOf(archive);
    expect(await fillDataOffsets(kept)).toEqual({ entries: toc.entries.length, filled: 0 });
  });

  it("points the positions of the re-chunked archive at that archive's own blocks", async () => {
    const coalescer = new ArchiveCoalescer(64);
    const rechunked = Buffer.concat([
      ...coalescer.update(archive).map((b) => Buffer.from(b)),
      ...coalescer.final().map((b) => Buffer.from(b)),
    ]);
    const file = fileOf(rechunked);
    const { filled } = await fillDataOffsets(file);
    const toc = expectPositionsAtOwnBlocks(readFileSync(file));
    expect(filled).toBe(toc.entries.filter((e) => e.hasData).length);
    expect(filled).toBeGreaterThanOrEqual(4);
  });
});
