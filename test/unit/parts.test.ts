/**
 * PartWriter cuts a stream into parts once, with a fixed set of reused buffers, and sends the
 * same bytes to every store. The stores here are fakes: the writer's rules are pure logic.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PartWriter } from '../../src/storage/parts.js';
import type { Part, PartUpload } from '../../src/storage/storage.js';

const PART = 1024;

/** A store that records what it was sent; parts "upload" after `delayMs`. */
class RecordingUpload implements PartUpload {
  readonly partSize = PART;
  parts: { number: number; offset: number; length: number; content: Buffer; data: Buffer }[] = [];
  whole: Buffer | undefined;
  completed = 0;
  aborted = 0;
  maxSending = 0;
  private sending = 0;

  constructor(
    readonly inFlight: number,
    private readonly delayMs = 1,
    private readonly fail?: (n: number) => Error | undefined,
  ) {}

  async sendPart({ number, offset, data }: Part): Promise<void> {
    this.sending++;
    this.maxSending = Math.max(this.maxSending, this.sending);
    // The content is read when the part is handed over and again when it completes:
    // a buffer reused too early would change in between.
    const digest = createHash('sha256').update(data).digest('hex');
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.sending--;
    const error = this.fail?.(number);
    if (error) throw error;
    expect(createHash('sha256').update(data).digest('hex')).toBe(digest);
    this.parts.push({ number, offset, length: data.length, content: Buffer.from(data), data });
  }

  async complete(whole?: Buffer): Promise<void> {
    this.whole = whole === undefined ? undefined : Buffer.from(whole);
    this.completed++;
  }

  async abort(): Promise<void> {
    this.aborted++;
  }

  /** The body as this store holds it, parts in order. */
  body(): Buffer {
    if (this.whole) return this.whole;
    const sorted = [...this.parts].sort((a, b) => a.number - b.number);
    return Buffer.concat(sorted.map((p) => p.content));
  }
}

function writerFor(...uploads: RecordingUpload[]): PartWriter {
  return new PartWriter(uploads.map((u) => Promise.resolve(u)));
}

function chunks(total: number, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let sent = 0; sent < total; sent += size) {
    const n = Math.min(size, total - sent);
    out.push(Buffer.from(Array.from({ length: n }, (_, i) => (sent + i) % 251)));
  }
  return out;
}

describe('PartWriter', () => {
  it('hands a body of at most one part to complete, sending no part', async () => {
    for (const total of [0, 1, PART - 1, PART]) {
      const store = new RecordingUpload(2);
      const writer = writerFor(store);
      await pipeline(Readable.from(chunks(total, 100)), writer);
      expect(writer.partCount).toBe(0);
      expect(store.parts).toEqual([]);
      expect(store.whole?.length).toBe(total);
      expect(Buffer.compare(store.body(), Buffer.concat(chunks(total, 100)))).toBe(0);
      expect(await writer.results).toEqual([{ ok: true, bytes: total }]);
    }
  });

  it('sends whole parts at their offsets and a non-empty last part, also on a boundary', async () => {
    for (const [total, expected] of [
      [PART + 1, [PART, 1]],
      [2 * PART, [PART, PART]],
      [3 * PART - 7, [PART, PART, PART - 7]],
    ] as const) {
      const store = new RecordingUpload(2);
      const writer = writerFor(store);
      await pipeline(Readable.from(chunks(total, 300)), writer);
      expect(store.whole).toBeUndefined();
      expect(store.completed).toBe(1);
      const sorted = [...store.parts].sort((a, b) => a.number - b.number);
      expect(sorted.map((p) => p.number)).toEqual(expected.map((_, i) => i + 1));
      expect(sorted.map((p) => p.offset)).toEqual(expected.map((_, i) => i * PART));
      expect(sorted.map((p) => p.length)).toEqual(expected);
      expect(writer.bytes).toBe(total);
    }
  });

  it('never has more than inFlight parts sending and inFlight + 1 buffers, however long the body', async () => {
    const store = new RecordingUpload(3, 2);
    const writer = writerFor(store);
    const total = 50 * PART + 5;
    await pipeline(Readable.from(chunks(total, 700)), writer);
    expect(store.parts).toHaveLength(51);
    expect(store.maxSending).toBeLessThanOrEqual(3);
    expect(store.maxSending).toBeGreaterThan(1);
    expect(writer.bufferCount).toBeLessThanOrEqual(4);
    expect(Buffer.compare(store.body(), Buffer.concat(chunks(total, 700)))).toBe(0);
  });

  it('sends the same buffers to every store, paced by the slowest', async () => {
    const fast = new RecordingUpload(2, 0);
    const slow = new RecordingUpload(2, 5);
    const third = new RecordingUpload(2, 1);
    const writer = writerFor(fast, slow, third);
    const total = 30 * PART + 3;
    await pipeline(Readable.from(chunks(total, 500)), writer);
    expect(writer.bufferCount).toBeLessThanOrEqual(3);
    for (const store of [fast, slow, third]) {
      expect(Buffer.compare(store.body(), Buffer.concat(chunks(total, 500)))).toBe(0);
      expect(store.maxSending).toBeLessThanOrEqual(2);
    }
    // Each part's bytes are one buffer, handed to all three stores: never a copy per store.
    for (const part of fast.parts) {
      const same = [slow, third].map((s) => s.parts.find((p) => p.number === part.number)?.data);
      for (const data of same) expect(data?.buffer).toBe(part.data.buffer);
    }
    expect(await writer.results).toEqual([
      { ok: true, bytes: total },
      { ok: true, bytes: total },
      { ok: true, bytes: total },
    ]);
  });

  it('drops a store that fails, aborts its upload, and completes the others', async () => {
    const failure = new Error('the second store is gone');
    const first = new RecordingUpload(2);
    const second = new RecordingUpload(2, 1, (n) => (n === 3 ? failure : undefined));
    const writer = writerFor(first, second);
    const total = 10 * PART;
    await pipeline(Readable.from(chunks(total, 400)), writer);
    expect(await writer.results).toEqual([
      { ok: true, bytes: total },
      { ok: false, error: failure },
    ]);
    expect([first.completed, first.aborted]).toEqual([1, 0]);
    expect([second.completed, second.aborted]).toEqual([0, 1]);
    expect(Buffer.compare(first.body(), Buffer.concat(chunks(total, 400)))).toBe(0);
  });

  it('completes no store when the commit rejects, and aborts every one', async () => {
    const broken = new Error('pg_dump exited with code 1');
    const stores = [new RecordingUpload(2), new RecordingUpload(2)];
    const writer = new PartWriter(
      stores.map((u) => Promise.resolve(u)),
      { commit: Promise.reject(broken) },
    );
    await expect(pipeline(Readable.from(chunks(3 * PART, 400)), writer)).rejects.toBe(broken);
    expect(writer.commitError).toBe(broken);
    expect(await writer.results).toEqual([
      { ok: false, error: broken },
      { ok: false, error: broken },
    ]);
    expect(stores.map((s) => [s.completed, s.aborted])).toEqual([
      [0, 1],
      [0, 1],
    ]);
  });

  it('fails with the store error at once, even while the body is stalled, and keeps it as storeError', async () => {
    const failure = new Error('SlowDown');
    const store = new RecordingUpload(2, 1, (n) => (n === 1 ? failure : undefined));
    const writer = writerFor(store);
    // Two parts and a bit, then the producer stalls without ending.
    const body = new Readable({ read() {} });
    for (const c of chunks(2 * PART + 10, 512)) body.push(c);
    const outcome = pipeline(body, writer).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(await outcome).toBe(failure);
    expect(writer.storeError).toBe(failure);
    expect(body.destroyed).toBe(true);
    expect(store.aborted).toBe(1);
  });

  it('reports the bytes every store holds after each part', async () => {
    const progress: number[] = [];
    const writer = new PartWriter([Promise.resolve(new RecordingUpload(1, 0))], {
      onProgress: (bytes) => progress.push(bytes),
    });
    await pipeline(Readable.from(chunks(3 * PART + 1, 256)), writer);
    expect(progress).toEqual([PART, 2 * PART, 3 * PART, 3 * PART + 1]);
  });
});
