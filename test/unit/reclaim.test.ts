import { setTimeout as sleep } from 'node:timers/promises';
import vm from 'node:vm';
import { reclaimer, youngCollection } from '../../src/core/reclaim.js';

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
