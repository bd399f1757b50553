import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver, constants, type NodeGCPerformanceDetail } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import vm from 'node:vm';
import { MemoryLogger } from '../../src/core/logger.js';
import { reclaimer, youngCollection } from '../../src/core/reclaim.js';
import { resumingRead } from '../../src/files/archive.js';
import { readFileChunks } from '../../src/core/streams.js';
import { LocalStorage } from '../../src/storage/local.js';
import { PartWriter } from '../../src/storage/parts.js';
import { readObject, type PartUpload, type Storage } from '../../src/storage/storage.js';

const MiB = 1024 * 1024;

/** Allocates `count` buffers of 1 MiB outside V8's heap and keeps none of them. */
function allocateGarbage(count: number): number {
  let bytes = 0;
  for (let i = 0; i < count; i++) bytes += Buffer.allocUnsafeSlow(MiB).length;
  return bytes;
}

/**
 * The buffers V8 counts after a full collection, once its sweeper (which runs beside the
 * program) has caught up. Without the full collection, in a worker that had run other test files,
 * the young collection below freed nothing.
 */
async function settledArrayBuffers(): Promise<number> {
  (vm.runInNewContext('gc') as () => void)();
  let last = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 20; i++) {
    await sleep(10);
    const now = process.memoryUsage().arrayBuffers;
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** The buffers V8 counts once they fell below `bytes`, or after two seconds of waiting. */
async function arrayBuffersBelow(bytes: number): Promise<number> {
  for (let i = 0; i < 200 && process.memoryUsage().arrayBuffers >= bytes; i++) await sleep(10);
  return process.memoryUsage().arrayBuffers;
}

describe('reclaimer', () => {
  it('collects once per interval of bytes, carrying nothing over', () => {
    let collections = 0;
    const reclaim = reclaimer(100, () => collections++);
    const after = (bytes: number): number => (reclaim(bytes), collections);
    expect([after(60), after(60), after(99), after(1), after(350)]).toEqual([0, 1, 1, 2, 3]);
  });

  it('counts nothing where no collection can be had', () => {
    expect(() => reclaimer(1, null)(10)).not.toThrow();
  });

  it('frees buffers nothing holds any more, which V8 alone would keep until 64 MiB more came', async () => {
    const collect = youngCollection();
    expect(collect).not.toBeNull();
    const before = await settledArrayBuffers();
    allocateGarbage(32);
    expect(process.memoryUsage().arrayBuffers - before).toBeGreaterThanOrEqual(31 * MiB);
    reclaimer(MiB, collect)(MiB);
    expect((await arrayBuffersBelow(before + 8 * MiB)) - before).toBeLessThan(8 * MiB);
  });
});

/** What each reader and writer below moves: six times the interval of `reclaimer`. */
const STREAMED = 48 * MiB;

/**
 * How many collections were forced (by `reclaimer`) while `run` ran. V8 may run a young-generation
 * collection it was asked for as a full one (in this suite's workers it did, 3 times in 18), so
 * every kind counts.
 */
async function forcedCollections(run: () => Promise<void>): Promise<number> {
  let forced = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const { flags = 0 } = (entry as { detail?: NodeGCPerformanceDetail }).detail ?? {};
      if (flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) forced++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    await run();
    // Entries are delivered after the collections, later on a busy machine: wait until none
    // came for 200 ms.
    for (let seen = -1, waited = 0; seen !== forced && waited < 3000; waited += 200) {
      seen = forced;
      await sleep(200);
    }
  } finally {
    observer.disconnect();
  }
  return forced;
}

describe('the readers and the part writer', () => {
  let dir: string;
  let store: LocalStorage;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'reclaim-'));
    store = new LocalStorage(dir, new MemoryLogger());
    await store.putBytes('object', Buffer.alloc(STREAMED, 7));
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** A consumer that allocates a new buffer per chunk and keeps none, as age decryption does. */
  const decryptLike = async (chunk: Buffer): Promise<void> => {
    Buffer.from(chunk);
  };

  it('readFileChunks collects the young generation once per 8 MiB read', async () => {
    const file = await open(path.join(dir, 'object'));
    try {
      expect(await forcedCollections(() => readFileChunks(file, decryptLike))).toBe(6);
    } finally {
      await file.close();
    }
  });

  it("readObject collects once per 8 MiB of a store's stream", async () => {
    // The folder store without its reused-buffer reader: its file stream, like S3's response,
    // hands over a new buffer per read.
    const streamOnly = Object.assign(Object.create(store) as Storage, { readChunks: undefined });
    const read = (): Promise<void> => readObject(streamOnly, 'object', decryptLike);
    expect(await forcedCollections(read)).toBe(6);
  });

  it("resumingRead (a file archive's restore) collects once per 8 MiB of the stream", async () => {
    const read = async (): Promise<void> => {
      for await (const chunk of resumingRead(store, 'object', new MemoryLogger())) {
        await decryptLike(chunk);
      }
    };
    expect(await forcedCollections(read)).toBe(6);
  });

  it('PartWriter collects once per 8 MiB it copied into its parts', async () => {
    const discard: PartUpload = {
      partSize: MiB,
      inFlight: 2,
      sendPart: () => sleep(1),
      complete: async () => undefined,
      abort: async () => undefined,
    };
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let sent = 0; sent < STREAMED; sent += MiB) yield Buffer.alloc(MiB, 1);
    }
    const write = (): Promise<void> =>
      pipeline(Readable.from(chunks()), new PartWriter([Promise.resolve(discard)]));
    expect(await forcedCollections(write)).toBe(6);
  });
});
