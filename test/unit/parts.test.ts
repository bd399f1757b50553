/** PartWriter cuts a stream into multipart-upload parts with a fixed set of reused buffers. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PartWriter } from '../../src/storage/parts.js';

const PART = 1024;

interface Recorded {
  writer: PartWriter;
  parts: { number: number; length: number; content: Buffer }[];
  begun: number;
  maxSending: number;
}

/** A writer whose parts "upload" after `delayMs`, recording what was sent. */
function recordingWriter(inFlight: number, delayMs = 1, fail?: (n: number) => Error | undefined) {
  const recorded: Omit<Recorded, 'writer'> = { parts: [], begun: 0, maxSending: 0 };
  let sending = 0;
  const writer = new PartWriter({
    partSize: PART,
    inFlight,
    begin: () => {
      recorded.begun++;
      return Promise.resolve();
    },
    sendPart: async (number, data) => {
      sending++;
      recorded.maxSending = Math.max(recorded.maxSending, sending);
      // The content is read when the part is handed over and again when it completes:
      // a buffer reused too early would change in between.
      const digest = createHash('sha256').update(data).digest('hex');
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      sending--;
      const error = fail?.(number);
      if (error) throw error;
      expect(createHash('sha256').update(data).digest('hex')).toBe(digest);
      recorded.parts.push({ number, length: data.length, content: Buffer.from(data) });
    },
  });
  return Object.assign(recorded, { writer }) as Recorded;
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
  it('keeps a body of at most one part for a single request, without beginning an upload', async () => {
    for (const total of [0, 1, PART - 1, PART]) {
      const r = recordingWriter(2);
      await pipeline(Readable.from(chunks(total, 100)), r.writer);
      expect(r.begun).toBe(0);
      expect(r.writer.partCount).toBe(0);
      expect(r.writer.single?.length).toBe(total);
      expect(Buffer.compare(r.writer.single as Buffer, Buffer.concat(chunks(total, 100)))).toBe(0);
    }
  });

  it('sends whole parts and a non-empty last part, also when the body ends on a boundary', async () => {
    for (const [total, expected] of [
      [PART + 1, [PART, 1]],
      [2 * PART, [PART, PART]],
      [3 * PART - 7, [PART, PART, PART - 7]],
    ] as const) {
      const r = recordingWriter(2);
      await pipeline(Readable.from(chunks(total, 300)), r.writer);
      expect(r.begun).toBe(1);
      expect(r.writer.single).toBeUndefined();
      const sorted = [...r.parts].sort((a, b) => a.number - b.number);
      expect(sorted.map((p) => p.number)).toEqual(expected.map((_, i) => i + 1));
      expect(sorted.map((p) => p.length)).toEqual(expected);
      expect(r.writer.bytes).toBe(total);
    }
  });

  it('never has more than inFlight parts sending and inFlight + 1 buffers, however long the body', async () => {
    const r = recordingWriter(3, 2);
    const total = 50 * PART + 5;
    await pipeline(Readable.from(chunks(total, 700)), r.writer);
    expect(r.parts).toHaveLength(51);
    expect(r.maxSending).toBeLessThanOrEqual(3);
    expect(r.maxSending).toBeGreaterThan(1);
    expect(r.writer.bufferCount).toBeLessThanOrEqual(4);
    const parts = [...r.parts].sort((a, b) => a.number - b.number);
    const stored = Buffer.concat(parts.map((p) => p.content));
    expect(Buffer.compare(stored, Buffer.concat(chunks(total, 700)))).toBe(0);
  });

  it('fails with the store error at once, even while the body is stalled, and keeps it as storeError', async () => {
    const failure = new Error('SlowDown');
    const r = recordingWriter(2, 1, (n) => (n === 1 ? failure : undefined));
    // Two parts and a bit, then the producer stalls without ending.
    const body = new Readable({ read() {} });
    for (const c of chunks(2 * PART + 10, 512)) body.push(c);
    const outcome = pipeline(body, r.writer).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(await outcome).toBe(failure);
    expect(r.writer.storeError).toBe(failure);
    expect(body.destroyed).toBe(true);
  });

  it('reports the bytes stored after each part', async () => {
    const progress: number[] = [];
    const writer = new PartWriter({
      partSize: PART,
      inFlight: 1,
      begin: () => Promise.resolve(),
      sendPart: () => Promise.resolve(),
      onProgress: (bytes) => progress.push(bytes),
    });
    await pipeline(Readable.from(chunks(3 * PART + 1, 256)), writer);
    expect(progress).toEqual([PART, 2 * PART, 3 * PART, 3 * PART + 1]);
  });
});
