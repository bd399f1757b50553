/**
 * One behaviour, two stores: the same suite runs against a real S3 server (OpenStack Swift
 * with s3api on loopback) and against a local folder.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, open, readdir, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { jest } from '@jest/globals';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { MemoryLogger } from '../../src/core/logger.js';
import { KeyExistsError, LocalStorage } from '../../src/storage/local.js';
import { S3Storage } from '../../src/storage/s3.js';
import {
  NotFoundError,
  readObject,
  type Storage,
  type StoredObject,
} from '../../src/storage/storage.js';
import { useSwift, type SwiftServer } from '../support/swift.js';

const MB = 1_000_000;

interface Harness {
  storage: Storage;
  /** Fails when a partial upload or temporary file is left behind. */
  expectNoLeftovers(): Promise<void>;
  close(): Promise<void>;
}

async function collect(iterable: AsyncIterable<StoredObject>): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function sha256(stream: Readable): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { hash: hash.digest('hex'), bytes };
}

/** A body of `total` random bytes in 64 KiB chunks, and its SHA-256. */
function randomBody(total: number): { body: Readable; hash: string } {
  const chunks: Buffer[] = [];
  const hash = createHash('sha256');
  for (let left = total; left > 0; left -= 65_536) {
    const chunk = randomBytes(Math.min(65_536, left));
    hash.update(chunk);
    chunks.push(chunk);
  }
  return { body: Readable.from(chunks, { objectMode: false }), hash: hash.digest('hex') };
}

async function inParallel<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function partialFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.filter((name) => name.includes('.partial-'));
}

const kinds: [string, () => Promise<Harness>][] = [
  [
    's3 (Swift s3api)',
    async () => {
      const server: SwiftServer = await useSwift();
      const bucket = `conformance-${randomBytes(4).toString('hex')}`;
      try {
        await server.createBucket(bucket);
        const storage = new S3Storage(
          bucket,
          'suite/a',
          {
            endpoint: server.endpoint,
            region: server.region,
            credentials: {
              accessKeyId: server.accessKeyId,
              secretAccessKey: server.secretAccessKey,
            },
          },
          new MemoryLogger(),
        );
        return {
          storage,
          async expectNoLeftovers() {
            const uploads = await storage.client.send(
              new ListMultipartUploadsCommand({ Bucket: bucket }),
            );
            expect(uploads.Uploads ?? []).toEqual([]);
          },
          async close() {
            storage.destroy();
            await server.stop();
          },
        };
      } catch (error) {
        await server.stop();
        throw error;
      }
    },
  ],
  [
    'local folder',
    async () => {
      const root = await mkdtemp(join(tmpdir(), 'storage-local-'));
      const storage = new LocalStorage(join(root, 'store'), new MemoryLogger());
      return {
        storage,
        async expectNoLeftovers() {
          expect(await partialFiles(root)).toEqual([]);
        },
        async close() {
          await rm(root, { recursive: true, force: true });
        },
      };
    },
  ],
];

describe.each(kinds)('Storage conformance: %s', (_name, open) => {
  let harness: Harness;
  let storage: Storage;

  beforeAll(async () => {
    harness = await open();
    storage = harness.storage;
  }, 90_000);

  afterAll(async () => {
    await harness?.close();
  });

  it('streams a 20 MB body and reads it back byte-identical', async () => {
    const { body, hash } = randomBody(20 * MB);
    const progress: number[] = [];
    const result = await storage.putStream('big/dump.bin', body, {
      sizeHint: 20 * MB,
      onProgress: (bytes) => progress.push(bytes),
    });
    expect(result.bytes).toBe(20 * MB);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[progress.length - 1]).toBe(20 * MB);
    const read = await sha256(await storage.getStream('big/dump.bin'));
    expect(read).toEqual({ hash, bytes: 20 * MB });
    const chunked = createHash('sha256');
    let chunkedBytes = 0;
    await readObject(storage, 'big/dump.bin', async (chunk) => {
      chunked.update(chunk);
      chunkedBytes += chunk.length;
      // The next read waits for this promise: a reader reusing its buffer overwrites it then.
      await new Promise((resolve) => setImmediate(resolve));
    });
    expect({ hash: chunked.digest('hex'), bytes: chunkedBytes }).toEqual({ hash, bytes: 20 * MB });
    const head = await storage.head('big/dump.bin');
    expect(head).toMatchObject({ key: 'big/dump.bin', size: 20 * MB });
    expect(Math.abs((head?.lastModified.getTime() ?? 0) - Date.now())).toBeLessThan(10 * 60_000);
    await harness.expectNoLeftovers();
  });

  it('stores an empty stream as an empty object', async () => {
    const result = await storage.putStream('empty.bin', Readable.from([]));
    expect(result.bytes).toBe(0);
    expect(await storage.getBytes('empty.bin')).toEqual(Buffer.alloc(0));
  });

  it('writes and reads small objects', async () => {
    await storage.putBytes('small/a.json', '{"a":1}');
    await storage.putBytes('small/b.bin', Buffer.from([0, 1, 2, 255]));
    expect((await storage.getBytes('small/a.json'))?.toString()).toBe('{"a":1}');
    expect(await storage.getBytes('small/b.bin')).toEqual(Buffer.from([0, 1, 2, 255]));
    await storage.putBytes('small/a.json', '{"a":2}');
    expect((await storage.getBytes('small/a.json'))?.toString()).toBe('{"a":2}');
    expect(await storage.head('small/b.bin')).toMatchObject({ key: 'small/b.bin', size: 4 });
    const listed = await collect(storage.list('small/'));
    expect(listed.map((o) => [o.key, o.size])).toEqual([
      ['small/a.json', 7],
      ['small/b.bin', 4],
    ]);
  });

  it('reads an object from an offset, to resume a read that broke off', async () => {
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
    await storage.putBytes('offset/data.bin', data, { contentType: 'application/x-test' });
    const rest: Buffer[] = [];
    for await (const chunk of await storage.getStream('offset/data.bin', { start: 990 })) {
      rest.push(chunk as Buffer);
    }
    expect(Buffer.concat(rest)).toEqual(data.subarray(990));
  });

  it('reports a missing key as NotFoundError or undefined', async () => {
    await expect(storage.getStream('missing/nothing.bin')).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      readObject(storage, 'missing/nothing.bin', () => Promise.resolve()),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect(await storage.getBytes('missing/nothing.bin')).toBeUndefined();
    expect(await storage.head('missing/nothing.bin')).toBeUndefined();
    expect(await collect(storage.list('missing/'))).toEqual([]);
  });

  it('refuses to overwrite with ifNoneMatch', async () => {
    await storage.putBytes('once/manifest.json', 'first', { ifNoneMatch: true });
    await expect(
      storage.putBytes('once/manifest.json', 'second', { ifNoneMatch: true }),
    ).rejects.toBeInstanceOf(KeyExistsError);
    expect((await storage.getBytes('once/manifest.json'))?.toString()).toBe('first');
    await harness.expectNoLeftovers();
  });

  it('lists more than 1,000 keys across pages in byte order, each once, then deletes them in batches', async () => {
    const names = ['a', 'B', 'z', 'Z', '0', '9', 'é', 'ｚ', '😀', 'A-b', 'a_b'];
    const keys: string[] = [];
    for (let i = 0; i < 1_030; i++) {
      keys.push(`many/${names[i % names.length]}${String(i).padStart(4, '0')}.bin`);
    }
    keys.push('many/nested/deeper/x.bin');
    await inParallel(keys, 16, (key) => storage.putBytes(key, key));
    await storage.putBytes('many-not-in-prefix.bin', 'x');

    const listed = await collect(storage.list('many/'));
    const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(listed.map((o) => o.key)).toEqual(expected);
    // UTF-8 byte order differs from JavaScript's UTF-16 order for these two.
    expect(expected.indexOf('many/ｚ0007.bin')).toBeLessThan(expected.indexOf('many/😀0008.bin'));
    expect(listed.find((o) => o.key === 'many/é0006.bin')?.size).toBe(
      Buffer.byteLength('many/é0006.bin'),
    );

    const result = await storage.delete([...keys, 'many/never-existed.bin']);
    expect(result.locked).toEqual([]);
    expect([...result.deleted].sort()).toEqual([...keys, 'many/never-existed.bin'].sort());
    expect(await collect(storage.list('many/'))).toEqual([]);
    expect(await storage.getBytes('many-not-in-prefix.bin')).toEqual(Buffer.from('x'));
  });

  it('rejects with the body error when the body fails mid-stream, leaving nothing behind', async () => {
    const failure = new Error('pg_dump exited with code 1');
    let firstProgress: () => void = () => undefined;
    const progressed = new Promise<void>((resolve) => (firstProgress = resolve));
    async function* failingBody(): AsyncGenerator<Buffer> {
      for (let sent = 0; sent < 9 * 1024 * 1024; sent += 65_536) yield randomBytes(65_536);
      // Fail only once the store has taken some of it (a multipart upload is under way).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        progressed,
        new Promise((resolve) => (timer = setTimeout(resolve, 10_000))),
      ]);
      clearTimeout(timer);
      yield randomBytes(65_536);
      throw failure;
    }
    const body = Readable.from(failingBody(), { objectMode: false });
    const put = storage.putStream('failed/dump.bin', body, { onProgress: () => firstProgress() });
    await expect(put).rejects.toBe(failure);
    expect(await storage.head('failed/dump.bin')).toBeUndefined();
    expect(await collect(storage.list('failed/'))).toEqual([]);
    await harness.expectNoLeftovers();
  });

  it('rejects with the body error when the body fails before sending anything', async () => {
    const failure = new Error('could not start pg_dump');
    const body = new Readable({ read() {} });
    setImmediate(() => body.destroy(failure));
    await expect(storage.putStream('failed/early.bin', body)).rejects.toBe(failure);
    expect(await storage.head('failed/early.bin')).toBeUndefined();
    await harness.expectNoLeftovers();
  });

  it('keeps keys relative to the store', async () => {
    await storage.putBytes('rel/x.txt', 'x');
    const [object] = await collect(storage.list('rel/'));
    expect(object.key).toBe('rel/x.txt');
    expect(storage.location('rel/x.txt')).toMatch(/rel\/x\.txt$/);
    expect(storage.description).not.toContain('testing');
  });

  it('lists by a partial name prefix', async () => {
    await storage.putBytes('part/backup-2024.bin', '1');
    await storage.putBytes('part/backup-2025.bin', '2');
    await storage.putBytes('part/other.bin', '3');
    const listed = await collect(storage.list('part/backup-'));
    expect(listed.map((o) => o.key)).toEqual(['part/backup-2024.bin', 'part/backup-2025.bin']);
  });
});

describe('LocalStorage specifics', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'storage-local-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('rejects keys that would leave the folder', async () => {
    const storage = new LocalStorage(root, new MemoryLogger());
    for (const key of ['../x', 'a/../../x', 'a//b', '/etc/passwd', '', 'a/./b']) {
      await expect(storage.putBytes(key, 'x')).rejects.toThrow(/Invalid storage key/);
      expect(() => storage.location(key)).toThrow(/Invalid storage key/);
    }
  });

  it('never lists a temporary file and removes emptied folders on delete', async () => {
    const storage = new LocalStorage(join(root, 'store'), new MemoryLogger());
    await storage.putBytes('db/backups/1/manifest.json', '{}');
    await mkdir(join(root, 'store/db/backups/2'), { recursive: true });
    await writeFile(join(root, 'store/db/backups/2/.dump.pgc.partial-0123456789abcdef'), 'partial');
    const listed = await collect(storage.list(''));
    expect(listed.map((o) => o.key)).toEqual(['db/backups/1/manifest.json']);
    expect(storage.location('db/backups/1/manifest.json')).toBe(
      join(root, 'store/db/backups/1/manifest.json'),
    );
    await storage.delete(['db/backups/1/manifest.json']);
    expect(await readdir(join(root, 'store/db/backups'))).toEqual(['2']);
    expect(await readdir(join(root, 'store'))).toEqual(['db']);
  });

  it('flushes a long stream to disk as it writes, and fails when a flush does', async () => {
    const storage = new LocalStorage(join(root, 'flush'), new MemoryLogger());
    // FileHandle's class is not exported; its prototype is reached through an open handle.
    const probe = await open(join(root, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as FileHandle;
    await probe.close();
    const original = proto.datasync;
    const datasync = jest.spyOn(proto, 'datasync');
    try {
      const { body, hash } = randomBody(40 * MB);
      await storage.putStream('db/long', body);
      expect((await sha256(await storage.getStream('db/long'))).hash).toBe(hash);
      // 40 MB in batches of about 1 MiB: a flush after each 16 MiB, each awaited before the next.
      expect(datasync.mock.calls.length).toBeGreaterThanOrEqual(2);

      // A disk error is a fault that cannot be made on demand here: the second flush reports one.
      datasync.mockClear();
      datasync
        .mockImplementationOnce(original)
        .mockImplementationOnce(() =>
          Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })),
        );
      await expect(storage.putStream('db/failed', randomBody(40 * MB).body)).rejects.toThrow(
        'EIO: i/o error, fdatasync',
      );
      expect(await storage.head('db/failed')).toBeUndefined();
      expect(await readdir(join(root, 'flush/db'))).toEqual(['long']);
    } finally {
      datasync.mockRestore();
    }
  });
});
