import { open, type FileHandle } from 'node:fs/promises';
import {
  BLK_BLOBS,
  BLK_DATA,
  FORMAT_CUSTOM,
  HeadReader,
  K_OFFSET_NO_DATA,
  K_OFFSET_POS_NOT_SET,
  K_OFFSET_POS_SET,
  K_VERS_1_12,
  K_VERS_1_14,
  K_VERS_1_15,
  K_VERS_1_16,
  NEED_MORE,
  readInt,
  version,
} from './archive.js';

/*
 * pg_dump writes a custom-format archive's table of contents before its data. Written to a file,
 * it seeks back at the end and writes the table again with each data block's file offset
 * (pg_backup_custom.c, _CloseArchive); written to a pipe it cannot, and every entry with data
 * keeps the state "position not set". pg_restore then finds a block by reading block headers
 * from the last one it read, and a parallel restore has no sizes to order its jobs by
 * (_PrepParallelRestore takes them from the offsets). fillDataOffsets writes those offsets
 * after the fact, as pg_dump would have: each entry's offset field is 1 state byte and
 * `offSize` bytes, least significant first, so the table of contents keeps its size.
 */

/** What fillDataOffsets found and changed. */
export interface FilledOffsets {
  /** Entries in the table of contents. */
  entries: number;
  /** Entries whose data position was unset and now points at their data block. */
  filled: number;
}

/** An entry's data position field, as far as this reads it. */
interface OffsetField {
  dumpId: number;
  /** Whether the entry had a data dumper, so that a data block may belong to it. */
  hasData: boolean;
  /** K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET or K_OFFSET_NO_DATA. */
  state: number;
  offset: number;
  /** Where the state byte is in the file (the offset's bytes follow it). */
  at: number;
}

interface Head {
  intSize: number;
  offSize: number;
  /** Bytes of the header and table of contents: where the data blocks start. */
  length: number;
  fields: OffsetField[];
}

/** First read of the head; it grows fourfold while the table of contents goes on. */
const FIRST_HEAD_READ = 64 * 1024;
/** Reads of the data area: block headers are read, chunk payloads are skipped. */
const MIN_READ = 16 * 1024;
const MAX_READ = 1024 * 1024;

/**
 * Sets the data position of each table-of-contents entry of the custom-format archive at
 * `file` whose position is unset (as pg_dump leaves it when writing to a pipe) to where its data
 * block starts, in place. It reads the header, the table of contents, then only each block's
 * header and the lengths of its chunks, seeking over their bytes. Positions already set are
 * checked; entries without data, and unset ones whose block is missing, are left as they are.
 * Nothing is written unless the whole archive reads as the format says; an archive that does
 * not (cut short, not a custom-format archive, a version other than 1.12 to 1.16) is refused
 * with an error.
 */
export async function fillDataOffsets(file: string): Promise<FilledOffsets> {
  const handle = await open(file, 'r+');
  try {
    const size = (await handle.stat()).size;
    const { head, bytes } = await readHead(handle, size, file);
    const blocks = await findBlocks(handle, size, head, file);
    let filled = 0;
    let from = Infinity;
    let to = 0;
    for (const field of head.fields) {
      const block = blocks.get(field.dumpId);
      if (field.state === K_OFFSET_POS_SET) {
        if (block !== field.offset) {
          throw new Error(
            `${file}: entry ${field.dumpId} says its data is at byte ${field.offset}, ` +
              (block === undefined ? 'where no data block is' : `but its block is at ${block}`),
          );
        }
        continue;
      }
      if (field.state !== K_OFFSET_POS_NOT_SET || block === undefined) continue;
      writeOffset(bytes, field.at, block, head.offSize, file);
      from = Math.min(from, field.at);
      to = Math.max(to, field.at + 1 + head.offSize);
      filled++;
    }
    if (filled > 0) {
      const { bytesWritten } = await handle.write(bytes, from, to - from, from);
      if (bytesWritten !== to - from) {
        throw new Error(`${file}: wrote ${bytesWritten} of ${to - from} bytes of data positions`);
      }
    }
    return { entries: head.fields.length, filled };
  } finally {
    await handle.close();
  }
}

/** Reads the header and table of contents, with more of the file while they go on. */
async function readHead(
  handle: FileHandle,
  size: number,
  file: string,
): Promise<{ head: Head; bytes: Buffer }> {
  for (let want = FIRST_HEAD_READ; ; want *= 4) {
    const length = Math.min(want, size);
    const bytes = Buffer.alloc(length);
    await readFully(handle, bytes, 0, length, 0, file);
    const head = parseHeadSoFar(bytes, length, file);
    if (head) return { head, bytes };
    if (length === size) {
      throw new Error(`${file}: the archive ends inside its header or table of contents`);
    }
  }
}

/**
 * Bytes of a custom-format archive's header and table of contents, when `bytes[0..length]`
 * holds them whole; undefined while they go on. Throws when the bytes are not such an archive.
 */
export function archiveHeadLength(bytes: Buffer, length: number, what: string): number | undefined {
  return parseHeadSoFar(bytes, length, what)?.length;
}

/** The header and table of contents if `bytes[0..length]` holds them whole. */
function parseHeadSoFar(bytes: Buffer, length: number, file: string): Head | undefined {
  try {
    return parseHead(bytes, length, file);
  } catch (error) {
    if (error === NEED_MORE) return undefined;
    throw error;
  }
}

/** The header and table of contents in `bytes[0..length]`; throws NEED_MORE if they go on. */
function parseHead(bytes: Buffer, length: number, file: string): Head {
  const start = bytes.subarray(0, Math.min(5, length)).toString('latin1');
  if (length === 0 || !'PGDMP'.startsWith(start)) {
    throw new Error(`${file} is not a pg_dump archive (it does not start with PGDMP)`);
  }
  const r = new HeadReader(bytes, length, 0);
  r.bytes(5);
  const major = r.byte();
  const minor = r.byte();
  const revision = r.byte();
  const archiveVersion = version(major, minor) | revision;
  const intSize = r.byte();
  const offSize = r.byte();
  const format = r.byte();
  if (format !== FORMAT_CUSTOM) {
    throw new Error(`${file} is not a custom-format archive (its format is ${format})`);
  }
  if (
    revision !== 0 ||
    archiveVersion < K_VERS_1_12 ||
    archiveVersion > K_VERS_1_16 ||
    intSize < 1 ||
    intSize > 6 ||
    offSize < 1 ||
    offSize > 8
  ) {
    throw new Error(
      `${file}: archive version ${major}.${minor}.${revision} (int size ${intSize}, offset ` +
        `size ${offSize}) is not one this reads`,
    );
  }
  r.intSize = intSize;
  if (archiveVersion >= K_VERS_1_15)
    r.byte(); // compression algorithm
  else r.int(); // compression level
  for (let i = 0; i < 7; i++) r.int(); // creation time
  r.skipString(); // database name
  r.skipString(); // server version
  r.skipString(); // pg_dump version
  const count = r.int();
  if (count < 0) throw new Error(`${file}: a negative number of entries (${count})`);
  const fields: OffsetField[] = [];
  for (let i = 0; i < count; i++) {
    const dumpId = r.int();
    const hasData = r.int() !== 0;
    r.skipString(); // catalog table OID
    r.skipString(); // OID
    r.skipString(); // tag
    r.skipString(); // desc
    r.int(); // section
    r.skipString(); // definition
    r.skipString(); // drop statement
    r.skipString(); // COPY statement
    r.skipString(); // namespace
    r.skipString(); // tablespace
    if (archiveVersion >= K_VERS_1_14) r.skipString(); // table access method
    if (archiveVersion >= K_VERS_1_16) r.int(); // relation kind
    r.skipString(); // owner
    r.skipString(); // "false": the former WITH OIDS
    while (r.skipString()); // dependencies, ended by a missing string
    const at = r.at;
    const state = r.byte();
    const offsetBytes = r.bytes(offSize);
    if (
      state !== K_OFFSET_POS_NOT_SET &&
      state !== K_OFFSET_POS_SET &&
      state !== K_OFFSET_NO_DATA
    ) {
      throw new Error(`${file}: entry ${dumpId} has a data position marked ${state}`);
    }
    let offset = 0;
    for (let b = offSize - 1; b >= 0; b--) offset = offset * 256 + offsetBytes[b];
    fields.push({ dumpId, hasData, state, offset, at });
  }
  return { intSize, offSize, length: r.at, fields };
}

/** Writes state POS_SET and `offset` into the field at `at`, as pg_dump's WriteOffset does. */
function writeOffset(
  bytes: Buffer,
  at: number,
  offset: number,
  offSize: number,
  file: string,
): void {
  if (offset >= 256 ** offSize) {
    throw new Error(`${file}: offset ${offset} does not fit the archive's ${offSize} bytes`);
  }
  bytes[at] = K_OFFSET_POS_SET;
  let rest = offset;
  for (let b = 0; b < offSize; b++) {
    bytes[at + 1 + b] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

/**
 * Where each data block starts, by dump id: reads block headers, large-object OIDs and chunk
 * lengths through a window of the file, seeking over chunk bytes (as pg_restore's _skipData).
 */
async function findBlocks(
  handle: FileHandle,
  size: number,
  head: Head,
  file: string,
): Promise<Map<number, number>> {
  const withData = new Set(head.fields.filter((f) => f.hasData).map((f) => f.dumpId));
  const window = new Window(handle, size, file);
  const intBytes = 1 + head.intSize;
  const intSize = head.intSize;
  const blocks = new Map<number, number>();
  let p = head.length;

  /** Passes over one object's chunks starting at p, up to and past the zero length. */
  const skipChunks = async (): Promise<void> => {
    for (;;) {
      // Awaits only when the window runs out: pg_dump writes a chunk per row, millions of them.
      if (p + intBytes > window.end) await window.load(p, intBytes);
      const length = readInt(window.bytes, p - window.start, intSize);
      p += intBytes;
      if (length === 0) return;
      if (length < 0) throw window.error(p - intBytes, `a chunk of negative length ${length}`);
      p += length;
      if (p > size) throw window.error(p - length, 'the archive ends inside a chunk');
    }
  };

  while (p < size) {
    const blockAt = p;
    if (p + 1 + intBytes > window.end) await window.load(p, 1 + intBytes);
    const type = window.bytes[p - window.start];
    const id = readInt(window.bytes, p - window.start + 1, intSize);
    p += 1 + intBytes;
    if (type !== BLK_DATA && type !== BLK_BLOBS) {
      throw window.error(blockAt, `a data block of unknown type ${type}`);
    }
    if (!withData.has(id)) throw window.error(blockAt, `a data block for unknown entry ${id}`);
    if (blocks.has(id)) throw window.error(blockAt, `a second data block for entry ${id}`);
    blocks.set(id, blockAt);
    if (type === BLK_DATA) {
      await skipChunks();
      continue;
    }
    for (;;) {
      if (p + intBytes > window.end) await window.load(p, intBytes);
      const oid = readInt(window.bytes, p - window.start, intSize);
      p += intBytes;
      if (oid === 0) break;
      await skipChunks();
    }
  }
  return blocks;
}

/**
 * A window of the file for reading small fields at increasing positions. After a jump over
 * chunk bytes it reads little (the next header is all that is wanted); while reads follow on
 * from each other (many small chunks), each reads twice as much as the one before.
 */
class Window {
  readonly bytes = Buffer.allocUnsafe(MAX_READ);
  start = 0;
  end = 0;
  private readSize = MIN_READ;

  constructor(
    private readonly handle: FileHandle,
    private readonly size: number,
    private readonly file: string,
  ) {}

  /** Makes bytes [at, at + count) readable at bytes[at - start]. */
  async load(at: number, count: number): Promise<void> {
    if (at + count > this.size) throw this.error(at, 'the archive ends inside a data block');
    const followsOn = at - this.end < this.readSize;
    this.readSize = followsOn ? Math.min(2 * this.readSize, MAX_READ) : MIN_READ;
    const length = Math.min(this.readSize, this.size - at);
    await readFully(this.handle, this.bytes, 0, length, at, this.file);
    this.start = at;
    this.end = at + length;
  }

  error(at: number, what: string): Error {
    return new Error(`${this.file}: the archive could not be read at byte ${at}: ${what}`);
  }
}

/** Reads exactly `length` bytes (FileHandle.read may return fewer). */
async function readFully(
  handle: FileHandle,
  into: Buffer,
  offset: number,
  length: number,
  position: number,
  file: string,
): Promise<void> {
  for (let done = 0; done < length;) {
    const { bytesRead } = await handle.read(into, offset + done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`${file}: the file ended while being read`);
    done += bytesRead;
  }
}
