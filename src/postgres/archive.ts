import type { ChunkProcessor } from '../core/fifo.js';

/*
 * pg_dump's custom format (pg_backup_archiver.c, pg_backup_custom.c): a header, a table of
 * contents, then one block per TOC entry that has data. An int is a sign byte and `intSize`
 * little-endian bytes; a string is an int length (-1 for none) and its bytes. A data block is a
 * type byte, the entry's dump id, then chunks (an int length and that many bytes) ended by a
 * zero length; a large-object block holds, per object, its OID and such chunks, ended by OID 0.
 */
export const FORMAT_CUSTOM = 1;
export const BLK_DATA = 1;
export const BLK_BLOBS = 3;
export const K_OFFSET_POS_NOT_SET = 1;
export const K_OFFSET_POS_SET = 2;
export const K_OFFSET_NO_DATA = 3;

export const version = (major: number, minor: number): number => (major << 16) | (minor << 8);
/** 1.12 is pg_dump 9.0's format; 1.14 adds the table access method (pg_dump 12). */
export const K_VERS_1_12 = version(1, 12);
export const K_VERS_1_14 = version(1, 14);
/** pg_dump 16: the header names the compression algorithm in a byte instead of a level. */
export const K_VERS_1_15 = version(1, 15);
/** pg_dump 17 and 18: each entry also records the relation kind. */
export const K_VERS_1_16 = version(1, 16);

/** The line pg_dump ends a table's COPY data with (pg_dump.c, dumpTableData_copy). */
const COPY_END = Buffer.from('\\.\n\n\n', 'latin1');

/** Chunks at the start of each table's data checked to hold one row each (see rowsOf). */
const ROW_CHECKS = 16;

/** Largest chunk written: pg_restore reads a chunk into one buffer of its size. */
export const COALESCED_CHUNK_SIZE = 1 << 20;
/** Released slabs kept for reuse. */
const SPARE_SLABS = 4;

/** One entry of the table of contents, as far as the coalescer reads it. */
export interface ArchiveTocEntry {
  dumpId: number;
  /** Whether a data block belongs to the entry (table data, large objects). */
  hasData: boolean;
  /** The object's type, such as `TABLE DATA` or `BLOBS`. */
  desc: string;
  /** The object's name (for table data, the table's). */
  tag: string;
  /** The object's schema, empty for objects outside one. */
  namespace: string;
  /** Whether the data is COPY rows (a COPY statement comes with it), not INSERT statements. */
  copy: boolean;
}

enum State {
  Head,
  Unchanged,
  BlockStart,
  ChunkLength,
  ChunkData,
  BlobOid,
}

/** Thrown inside the table-of-contents reader when the bytes so far end mid-item. */
export const NEED_MORE = Symbol('need more');

/**
 * Rewrites an uncompressed custom-format archive as it streams, with the same header, table of
 * contents and data, but each table's data in chunks of up to 1 MiB instead of one per row.
 *
 * `pg_dump --compress=0` writes every row it receives from COPY as a chunk of its own, behind a
 * 5-byte length. Those lengths vary from row to row and cost a compressor about 5 % of its output
 * on the benchmark's rows; without them zstd -1 (with a larger match table, see planCompression)
 * writes a smaller archive than pg_dump's own zlib.
 * pg_restore reads chunks of any length, so the result restores with the standard tools alone,
 * and it is what pg_dump writes to a pipe: data positions in the table of contents stay unset
 * (an archive written to a file has them set; they are unset here, since the data moves).
 * On the way it counts each table's rows (see rowsOf).
 *
 * Versions 1.12 to 1.16 of the format are read (pg_dump 9.0 to 18). Any other version, a
 * compressed archive or anything that is not a custom-format archive passes unchanged. A known
 * version that does not read as the format says fails the stream, so that a misread archive is
 * never stored.
 */
export class ArchiveCoalescer implements ChunkProcessor {
  /** The table of contents once read. */
  readonly entries: ArchiveTocEntry[] = [];
  /** Chunks read and written, once the data blocks started. */
  chunksIn = 0;
  chunksOut = 0;
  /** Why the archive passes unchanged, when it does. */
  unchangedBecause: string | undefined;
  /** Bytes of the header and table of contents, once read (the data blocks start there). */
  headBytes: number | undefined;

  private state = State.Head;
  private intSize = 4;
  private offSize = 8;
  /** The entries that have a data block, by dump id. */
  private readonly dataEntries = new Map<number, ArchiveTocEntry>();
  /** Bytes read so far (for messages). */
  private position = 0;

  // Header and table of contents: what arrived and is not yet passed on.
  private head = Buffer.alloc(0);
  private headLength = 0;
  private headerRead = false;
  private entriesLeft = 0;
  private archiveVersion = 0;

  // Data blocks: the int or block header being collected across reads, and the chunk being copied.
  private readonly field = Buffer.alloc(16);
  private fieldLength = 0;
  private chunkLeft = 0;
  private inBlobs = false;
  /** The table whose COPY rows the open block holds (see tableKey); undefined for other data. */
  private copyTable: string | undefined;
  private chunksInBlock = 0;
  /** How much of the open chunk matched COPY_END so far; -1 once it cannot. */
  private endMatched = -1;
  private lastChunkEndsCopy = false;
  private chunkLength = 0;
  /** Whether the block's chunks checked so far each held one row. */
  private oneRowPerChunk = true;
  /** Rows of each table whose data block was read to its end, one row per chunk (see rowsOf). */
  private readonly tableRows = new Map<string, number>();

  // Output: a slab filled from `emitted` to `end`; an open chunk's header sits at `chunkAt`.
  // Parts of slabs handed out and not yet released are counted per slab; free slabs wait in
  // `spare`.
  private slab: Buffer;
  private readonly outstanding = new Map<ArrayBufferLike, number>();
  private readonly spare: Buffer[] = [];
  private emitted = 0;
  private end = 0;
  private chunkAt = -1;
  private out: Buffer[] = [];

  constructor(private readonly chunkSize = COALESCED_CHUNK_SIZE) {
    this.slab = this.newSlab();
  }

  /**
   * Takes back a buffer this returned, once its bytes are written, so that its memory serves
   * again: reused memory is already mapped and costs the collector nothing. Without it, every
   * MiB written is a new slab.
   */
  release(buffer: Buffer): void {
    const key = buffer.buffer;
    const count = this.outstanding.get(key);
    if (count === undefined) return;
    if (count > 1) {
      this.outstanding.set(key, count - 1);
      return;
    }
    this.outstanding.delete(key);
    if (key !== this.slab.buffer && this.spare.length < SPARE_SLABS) {
      this.spare.push(Buffer.from(key, 0, this.slab.length));
    }
  }

  private newSlab(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(this.chunkSize + 32);
  }

  update(data: Buffer): Buffer[] {
    this.out = [];
    if (this.state === State.Unchanged) {
      this.position += data.length;
      return [Buffer.from(data)];
    }
    if (this.state === State.Head) {
      this.appendHead(data);
      this.readHead();
    } else {
      this.readBlocks(data, 0);
    }
    // Everything but an open chunk (its length is not known yet) is passed on.
    this.emit(this.chunkAt >= 0 ? this.chunkAt : this.end);
    return this.out;
  }

  final(): Buffer[] {
    this.out = [];
    if (this.state === State.Unchanged) return this.out;
    if (this.state === State.Head) {
      throw this.error('the archive ends inside its header or table of contents');
    }
    if (this.state !== State.BlockStart || this.fieldLength > 0) {
      throw this.error('the archive ends inside a data block');
    }
    this.closeChunk();
    this.emit(this.end);
    return this.out;
  }

  private error(what: string): Error {
    return new Error(`pg_dump's archive could not be read near byte ${this.position}: ${what}.`);
  }

  // ---- header and table of contents ----

  private appendHead(data: Buffer): void {
    if (this.headLength + data.length > this.head.length) {
      const grown = Buffer.allocUnsafe(Math.max(64 * 1024, 2 * (this.headLength + data.length)));
      this.head.copy(grown, 0, 0, this.headLength);
      this.head = grown;
    }
    data.copy(this.head, this.headLength);
    this.headLength += data.length;
  }

  /** Reads what it can of the header and entries, passing on each complete part. */
  private readHead(): void {
    let done = 0;
    try {
      if (!this.headerRead) {
        const end = this.readHeader();
        if (this.state === State.Unchanged) {
          this.passHeadOn(this.headLength);
          return;
        }
        this.headerRead = true;
        done = end;
      }
      while (this.entriesLeft > 0) {
        done = this.readEntry(done);
        this.entriesLeft--;
      }
    } catch (error) {
      if (error !== NEED_MORE) throw error;
    }
    this.passHeadOn(done);
    if (this.headerRead && this.entriesLeft === 0) {
      this.headBytes = this.position;
      const rest = this.head.subarray(0, this.headLength);
      this.head = Buffer.alloc(0);
      this.headLength = 0;
      this.state = State.BlockStart;
      this.readBlocks(rest, 0);
    }
  }

  private passUnchanged(reason: string): void {
    this.unchangedBecause = reason;
    this.state = State.Unchanged;
  }

  /** Passes on the first `length` bytes of the head and keeps the rest. */
  private passHeadOn(length: number): void {
    if (length === 0) return;
    this.out.push(Buffer.from(this.head.subarray(0, length)));
    this.head.copy(this.head, 0, length, this.headLength);
    this.headLength -= length;
    this.position += length;
  }

  /** Reads the header and the entry count; returns where the first entry starts. */
  private readHeader(): number {
    const r = new HeadReader(this.head, this.headLength, 0);
    const magic = r.bytes(5);
    if (magic.toString('latin1') !== 'PGDMP') {
      this.passUnchanged('it is not a custom-format archive');
      return 0;
    }
    const major = r.byte();
    const minor = r.byte();
    const revision = r.byte();
    this.archiveVersion = version(major, minor) | revision;
    const intSize = r.byte();
    const offSize = r.byte();
    const format = r.byte();
    if (format !== FORMAT_CUSTOM) {
      this.passUnchanged('it is not a custom-format archive');
      return 0;
    }
    if (
      revision !== 0 ||
      this.archiveVersion < K_VERS_1_12 ||
      this.archiveVersion > K_VERS_1_16 ||
      intSize < 1 ||
      intSize > 6 ||
      offSize < 1 ||
      offSize > 8
    ) {
      this.passUnchanged(`archive version ${major}.${minor}.${revision} is not one this reads`);
      return 0;
    }
    this.intSize = intSize;
    this.offSize = offSize;
    r.intSize = intSize;
    const compression = this.archiveVersion >= K_VERS_1_15 ? r.byte() : r.int();
    if (compression !== 0) {
      this.passUnchanged('pg_dump compressed it');
      return 0;
    }
    for (let i = 0; i < 7; i++) r.int(); // creation time
    r.skipString(); // database name
    r.skipString(); // server version
    r.skipString(); // pg_dump version
    const count = r.int();
    if (count < 0) throw this.error('a negative number of entries');
    this.entriesLeft = count;
    return r.at;
  }

  /** Reads one entry starting at `at`; returns where the next starts. */
  private readEntry(at: number): number {
    const r = new HeadReader(this.head, this.headLength, at);
    r.intSize = this.intSize;
    const dumpId = r.int();
    const hasData = r.int() !== 0;
    r.skipString(); // catalog table OID
    r.skipString(); // OID
    const tag = r.string() ?? '';
    const desc = r.string() ?? '';
    r.int(); // section
    r.skipString(); // definition
    r.skipString(); // drop statement
    const copy = (r.string() ?? '') !== '';
    const namespace = r.string() ?? '';
    r.skipString(); // tablespace
    if (this.archiveVersion >= K_VERS_1_14) r.skipString(); // table access method
    if (this.archiveVersion >= K_VERS_1_16) r.int(); // relation kind
    r.skipString(); // owner
    r.skipString(); // "false": the former WITH OIDS
    while (r.skipString()); // dependencies, ended by a missing string
    const flagAt = r.at;
    const flag = r.byte();
    r.bytes(this.offSize);
    if (flag !== K_OFFSET_POS_NOT_SET && flag !== K_OFFSET_POS_SET && flag !== K_OFFSET_NO_DATA) {
      throw this.error(`entry ${dumpId} has a data position marked ${flag}`);
    }
    if (flag === K_OFFSET_POS_SET) {
      this.head[flagAt] = K_OFFSET_POS_NOT_SET;
      this.head.fill(0, flagAt + 1, flagAt + 1 + this.offSize);
    }
    const entry = { dumpId, hasData, desc, tag, namespace, copy };
    this.entries.push(entry);
    if (hasData) this.dataEntries.set(dumpId, entry);
    return r.at;
  }

  // ---- data blocks ----

  /** Reads blocks from `data[from..]`, writing the coalesced archive into the slab. */
  private readBlocks(data: Buffer, from: number): void {
    const intBytes = 1 + this.intSize;
    let p = from;
    const n = data.length;
    while (p < n) {
      if (this.state === State.ChunkData) {
        if (this.chunkAt < 0) {
          this.reserve(intBytes + 1);
          this.chunkAt = this.end;
          this.end += intBytes;
        }
        const room = Math.min(
          this.slab.length - this.end,
          this.chunkSize - (this.end - this.chunkAt - intBytes),
        );
        const take = Math.min(this.chunkLeft, n - p, room);
        if (this.endMatched >= 0) this.matchCopyEnd(data, p, take);
        else if (this.copyTable && this.chunksInBlock <= ROW_CHECKS && this.oneRowPerChunk) {
          this.checkRow(data, p, take);
        }
        data.copy(this.slab, this.end, p, p + take);
        this.end += take;
        p += take;
        this.chunkLeft -= take;
        if (take === room) this.closeChunk();
        if (this.chunkLeft === 0) {
          this.lastChunkEndsCopy = this.endMatched === COPY_END.length;
          this.state = State.ChunkLength;
        }
        continue;
      }
      // A fixed-size field: a block header (type byte and dump id) or an int.
      const want = this.state === State.BlockStart ? 1 + intBytes : intBytes;
      let field: Buffer;
      let at: number;
      if (this.fieldLength === 0 && n - p >= want) {
        field = data;
        at = p;
        p += want;
      } else {
        const take = Math.min(want - this.fieldLength, n - p);
        data.copy(this.field, this.fieldLength, p, p + take);
        this.fieldLength += take;
        p += take;
        if (this.fieldLength < want) continue;
        field = this.field;
        at = 0;
        this.fieldLength = 0;
      }
      this.position += want;
      if (this.state === State.BlockStart) {
        const type = field[at];
        const id = readInt(field, at + 1, this.intSize);
        if (type !== BLK_DATA && type !== BLK_BLOBS) {
          throw this.error(`a data block of unknown type ${type}`);
        }
        const entry = this.dataEntries.get(id);
        if (!entry) throw this.error(`a data block for unknown entry ${id}`);
        this.copyField(field, at, want);
        this.copyTable =
          type === BLK_DATA && entry.desc === 'TABLE DATA' && entry.copy
            ? tableKey(entry.namespace, entry.tag)
            : undefined;
        this.chunksInBlock = 0;
        this.lastChunkEndsCopy = false;
        this.oneRowPerChunk = true;
        this.inBlobs = type === BLK_BLOBS;
        this.state = this.inBlobs ? State.BlobOid : State.ChunkLength;
        continue;
      }
      const value = readInt(field, at, this.intSize);
      if (this.state === State.BlobOid) {
        this.copyField(field, at, want);
        this.state = value === 0 ? State.BlockStart : State.ChunkLength;
        continue;
      }
      if (value < 0) throw this.error(`a chunk of negative length ${value}`);
      if (value > 0) {
        this.chunksIn++;
        this.chunksInBlock++;
        this.endMatched = this.copyTable && value === COPY_END.length ? 0 : -1;
        this.chunkLength = value;
        this.chunkLeft = value;
        this.position += value;
        this.state = State.ChunkData;
        continue;
      }
      // The end of a table's data or of one large object.
      this.closeChunk();
      this.copyField(field, at, want);
      if (this.copyTable && this.oneRowPerChunk) {
        this.tableRows.set(this.copyTable, this.chunksInBlock - (this.lastChunkEndsCopy ? 1 : 0));
      }
      this.state = this.inBlobs ? State.BlobOid : State.BlockStart;
    }
  }

  /**
   * Checks the next `length` bytes of the open chunk for what a COPY row holds: one newline,
   * its last byte.
   */
  private checkRow(data: Buffer, at: number, length: number): void {
    const offset = this.chunkLength - this.chunkLeft;
    const newline = data.subarray(at, at + length).indexOf(10);
    const ends = offset + length === this.chunkLength;
    if (
      (newline >= 0 && offset + newline !== this.chunkLength - 1) ||
      (ends && data[at + length - 1] !== 10)
    ) {
      this.oneRowPerChunk = false;
    }
  }

  /** Compares the next `length` bytes of the open chunk with COPY_END. */
  private matchCopyEnd(data: Buffer, at: number, length: number): void {
    const from = this.endMatched;
    const same = data.compare(COPY_END, from, from + length, at, at + length) === 0;
    this.endMatched = same ? from + length : -1;
  }

  /**
   * The rows of a table's data in the archive, once its data block was read to the end;
   * undefined when the archive has no such block, or holds the data as INSERT statements.
   * pg_dump writes every row that COPY sends as a chunk of its own (the protocol sends one
   * message per row, and a row's text holds no newline but its last byte), then a `\.` line
   * that is no row; so a block's chunks, less that line, are the table's rows in the dump's
   * snapshot, counted as they pass. The first chunks of each block are checked to be one row
   * each: a block whose chunks hold several rows (a pg_dump that buffered them, or an archive
   * already merged) gives no count rather than a wrong one.
   */
  rowsOf(schema: string, table: string): number | undefined {
    return this.tableRows.get(tableKey(schema, table));
  }

  private copyField(field: Buffer, at: number, length: number): void {
    this.reserve(length);
    field.copy(this.slab, this.end, at, at + length);
    this.end += length;
  }

  /** Writes the open chunk's length into its header. */
  private closeChunk(): void {
    if (this.chunkAt < 0) return;
    const length = this.end - this.chunkAt - 1 - this.intSize;
    const s = this.slab;
    s[this.chunkAt] = 0;
    let rest = length;
    for (let i = 0; i < this.intSize; i++) {
      s[this.chunkAt + 1 + i] = rest % 256;
      rest = Math.floor(rest / 256);
    }
    this.chunkAt = -1;
    this.chunksOut++;
  }

  /** Makes room for `length` bytes, closing the open chunk and starting a new slab if needed. */
  private reserve(length: number): void {
    if (this.end + length <= this.slab.length) return;
    this.closeChunk();
    this.emit(this.end);
    const retired = this.slab;
    this.slab = this.newSlab();
    if (!this.outstanding.has(retired.buffer) && this.spare.length < SPARE_SLABS) {
      this.spare.push(retired);
    }
    this.emitted = 0;
    this.end = 0;
  }

  private emit(upTo: number): void {
    if (upTo > this.emitted) {
      this.out.push(this.slab.subarray(this.emitted, upTo));
      const key = this.slab.buffer;
      this.outstanding.set(key, (this.outstanding.get(key) ?? 0) + 1);
    }
    this.emitted = upTo;
  }
}

/** A table's key in the row counts (names hold no NUL). */
function tableKey(schema: string, table: string): string {
  return `${schema}\0${table}`;
}

/** An int as pg_dump writes it: a sign byte, then `intSize` bytes, least significant first. */
export function readInt(buffer: Buffer, at: number, intSize: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < intSize; i++) {
    value += buffer[at + 1 + i] * scale;
    scale *= 256;
  }
  return buffer[at] === 0 ? value : -value;
}

/** A cursor over the head bytes that throws NEED_MORE where they end mid-item. */
export class HeadReader {
  intSize = 4;

  constructor(
    private readonly buffer: Buffer,
    private readonly length: number,
    public at: number,
  ) {}

  private need(count: number): void {
    if (this.at + count > this.length) throw NEED_MORE;
  }

  byte(): number {
    this.need(1);
    return this.buffer[this.at++];
  }

  bytes(count: number): Buffer {
    this.need(count);
    const b = this.buffer.subarray(this.at, this.at + count);
    this.at += count;
    return b;
  }

  int(): number {
    this.need(1 + this.intSize);
    const value = readInt(this.buffer, this.at, this.intSize);
    this.at += 1 + this.intSize;
    return value;
  }

  /** A string, or undefined for the missing string (length -1). */
  string(): string | undefined {
    const length = this.int();
    if (length < 0) return undefined;
    return this.bytes(length).toString('utf8');
  }

  /** Passes over a string without decoding it; false for the missing string. */
  skipString(): boolean {
    const length = this.int();
    if (length < 0) return false;
    this.bytes(length);
    return true;
  }
}
