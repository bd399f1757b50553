import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { startProcess } from '../../src/core/process.js';
import { benignBrokenPipe } from '../../src/restore/fetch.js';

// A decoding tool that stops reading once it has what it needs (tar at its end-of-archive
// blocks) breaks the pipe into it; with its exit 0 that is not a failure. Real processes.

async function feed(command: string, args: string[]): Promise<{ error: unknown; ok: boolean }> {
  const proc = startProcess(command, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  const data = Readable.from(
    (function* () {
      for (let i = 0; i < 512; i++) yield Buffer.alloc(64 * 1024, i % 256);
    })(),
  );
  const error = await pipeline(data, proc.child.stdin as Writable).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, ok: await benignBrokenPipe(error, [{ proc }]) };
}

describe('a broken pipe into a decoding tool', () => {
  it('is benign when the tool read what it needed and exited 0', async () => {
    const { error, ok } = await feed('head', ['-c', '10']);
    expect((error as NodeJS.ErrnoException).code).toMatch(/^(EPIPE|ERR_STREAM_PREMATURE_CLOSE)$/);
    expect(ok).toBe(true);
  });

  it('is a failure when the tool failed', async () => {
    const { error, ok } = await feed('sh', ['-c', 'head -c 10 >/dev/null; exit 3']);
    expect((error as NodeJS.ErrnoException).code).toMatch(/^(EPIPE|ERR_STREAM_PREMATURE_CLOSE)$/);
    expect(ok).toBe(false);
  });

  it('is a failure for any other error, and without a tool', async () => {
    expect(await benignBrokenPipe(new Error('boom'), [])).toBe(false);
    const proc = startProcess('true', [], { stdio: ['ignore', 'ignore', 'pipe'] });
    expect(await benignBrokenPipe(new Error('boom'), [{ proc }])).toBe(false);
    const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    expect(await benignBrokenPipe(epipe, [])).toBe(false);
  });
});
