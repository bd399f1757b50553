/** Fifo: a child's output read through a named pipe, with real processes. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { buffer } from 'node:stream/consumers';
import { Fifo, type ChunkProcessor } from '../../src/core/fifo.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fifo-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Copies what it is given and counts calls; reverses nothing, so the output equals the input. */
function copyingProcessor(): ChunkProcessor & { finals: number } {
  return {
    finals: 0,
    update: (data) => [Buffer.from(data)],
    final() {
      this.finals++;
      return [Buffer.from('END')];
    },
  };
}

async function outputOf(
  command: string,
  args: string[],
  processor?: ChunkProcessor,
): Promise<{ data: Buffer; code: number | null; signal: NodeJS.Signals | null }> {
  const fifo = await Fifo.create(dir);
  if (!fifo) throw new Error('mkfifo is missing');
  try {
    const child = spawn(command, args, { stdio: ['ignore', fifo.writeFd, 'inherit'] });
    fifo.closeWriteEnd();
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('close', (code, signal) => resolve([code, signal])),
    );
    const data = await buffer(fifo.reader(processor));
    const [code, signal] = await exited;
    return { data, code, signal };
  } finally {
    await fifo.dispose();
  }
}

describe('Fifo', () => {
  const file = (): string => path.join(dir, 'input.bin');
  const content = randomBytes(3 * 1024 * 1024 + 17);
  beforeAll(() => writeFileSync(file(), content));

  it('reads the whole output of a child, in fresh buffers', async () => {
    const { data, code } = await outputOf('cat', [file()]);
    expect(code).toBe(0);
    expect(data.equals(content)).toBe(true);
  });

  it('reads through a processor from one reused buffer, ending with its final output', async () => {
    const processor = copyingProcessor();
    const { data } = await outputOf('cat', [file()], processor);
    expect(processor.finals).toBe(1);
    expect(data.subarray(0, content.length).equals(content)).toBe(true);
    expect(data.subarray(content.length).toString()).toBe('END');
  });

  it('stops reading while the consumer is slow and goes on when it catches up', async () => {
    const fifo = (await Fifo.create(dir)) as Fifo;
    try {
      const child = spawn('bash', ['-c', 'head -c 12000000 /dev/zero'], {
        stdio: ['ignore', fifo.writeFd, 'inherit'],
      });
      const exited = new Promise((resolve) => child.once('close', resolve));
      fifo.closeWriteEnd();
      const reader = fifo.reader(copyingProcessor());
      let bytes = 0;
      const slow = new Writable({
        highWaterMark: 1024,
        write(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          setTimeout(callback, 1);
        },
      });
      await pipeline(reader, slow);
      expect(bytes).toBe(12_000_000 + 'END'.length);
      await exited;
    } finally {
      await fifo.dispose();
    }
  });

  it('ends when the child dies mid-output, leaving the verdict to its exit status', async () => {
    const { data, signal } = await outputOf('bash', [
      '-c',
      'head -c 200000 /dev/zero; kill -9 $$; head -c 200000 /dev/zero',
    ]);
    expect(signal).toBe('SIGKILL');
    expect(data.length).toBe(200000);
  });

  it('removes its folder when disposed', async () => {
    const before = readdirSync(dir).filter((n) => n.startsWith('pg-backup-pipe-'));
    await outputOf('true', []);
    const after = readdirSync(dir).filter((n) => n.startsWith('pg-backup-pipe-'));
    expect(after).toEqual(before);
  });

  it('is not available where mkfifo is not on the PATH', async () => {
    expect(await Fifo.create(dir, { PATH: path.join(dir, 'no-such-bin') })).toBeUndefined();
    expect(readdirSync(dir).filter((n) => n.startsWith('pg-backup-pipe-'))).toEqual([]);
    expect(existsSync(dir)).toBe(true);
  });
});
