/** S3-only behaviour of S3Storage, against OpenStack Swift with s3api on loopback. */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { S3Storage, partSizeFor, type S3Settings } from '../../src/storage/s3.js';
import { startSwift, useSwift, type SwiftServer } from '../support/swift.js';

const MIB = 1024 * 1024;
const TIB = 1024 * 1024 * MIB;

describe('partSizeFor', () => {
  it('keeps a 5 TiB upload under 10,000 parts, with room for 20 % more data', () => {
    const size = partSizeFor(5 * TIB);
    expect(size % MIB).toBe(0);
    expect(Math.ceil((5 * TIB) / size)).toBeLessThanOrEqual(9_000);
    expect(Math.ceil((5 * TIB * 1.2) / size)).toBeLessThanOrEqual(10_000);
    expect(size).toBeLessThanOrEqual(5 * 1024 * MIB);
  });

  it('uses 8 MiB by default and the configured size when it is larger', () => {
    expect(partSizeFor()).toBe(8 * MIB);
    expect(partSizeFor(100 * MIB)).toBe(8 * MIB);
    expect(partSizeFor(undefined, 16 * MIB)).toBe(16 * MIB);
    expect(partSizeFor(undefined, MIB)).toBe(5 * MIB);
  });

  it('grows in whole MiB as the size hint grows', () => {
    const hint = 100 * 1024 * MIB;
    const size = partSizeFor(hint);
    expect(size).toBeGreaterThan(8 * MIB);
    expect(size % MIB).toBe(0);
    expect(Math.ceil((hint * 1.2) / size)).toBeLessThanOrEqual(9_000);
  });
});

describe('S3Storage against Swift s3api', () => {
  let server: SwiftServer;
  let settings: S3Settings;
  const suffix = randomBytes(4).toString('hex');
  const plain = `plain-${suffix}`;
  const versionedBucket = `versioned-${suffix}`;
  const open = (bucket: string, prefix = '', extra: S3Settings = {}): S3Storage =>
    new S3Storage(bucket, prefix, { ...settings, ...extra }, new MemoryLogger());

  beforeAll(async () => {
    server = await useSwift();
    settings = {
      endpoint: server.endpoint,
      region: server.region,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    };
    await server.createBucket(plain);
    await server.createBucket(versionedBucket, { versioning: true });
  }, 90_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('places keys under the prefix and describes itself without credentials', async () => {
    const storage = open(plain, '/team/db/');
    const root = open(plain);
    try {
      expect(storage.location('backups/1/manifest.json')).toBe(
        `s3://${plain}/team/db/backups/1/manifest.json`,
      );
      expect(storage.description).toBe(`s3://${plain}/team/db (endpoint ${server.endpoint})`);
      expect(storage.description).not.toContain(server.secretAccessKey);
      await storage.putBytes('backups/1/manifest.json', '{}');
      const raw = await storage.client.send(new ListObjectsV2Command({ Bucket: plain }));
      expect(raw.Contents?.map((o) => o.Key)).toEqual(['team/db/backups/1/manifest.json']);
      const seen: string[] = [];
      for await (const object of root.list('team/')) seen.push(object.key);
      expect(seen).toEqual(['team/db/backups/1/manifest.json']);
      expect(await storage.head('backups/1/manifest.json')).toMatchObject({
        size: 2,
        storageClass: 'STANDARD',
      });
      await storage.delete(['backups/1/manifest.json']);
    } finally {
      storage.destroy();
      root.destroy();
    }
  });

  it('tells whether the bucket keeps versions', async () => {
    const unversioned = open(plain);
    const versioned = open(versionedBucket);
    try {
      expect(await unversioned.versioning()).toBe('Off');
      expect(await versioned.versioning()).toBe('Enabled');
    } finally {
      unversioned.destroy();
      versioned.destroy();
    }
  });

  it('stores bodies that end on a part boundary, one part or several, byte-identical', async () => {
    const storage = open(plain, 'parts', { partSize: 5 * MIB });
    try {
      for (const size of [5 * MIB, 10 * MIB, 10 * MIB + 1]) {
        const data = randomBytes(size);
        const chunks: Buffer[] = [];
        for (let at = 0; at < size; at += 300_000) chunks.push(data.subarray(at, at + 300_000));
        const progress: number[] = [];
        const result = await storage.putStream(`b${size}.bin`, Readable.from(chunks), {
          onProgress: (bytes) => progress.push(bytes),
        });
        expect(result.bytes).toBe(size);
        expect(progress[progress.length - 1]).toBe(size);
        expect(Buffer.compare((await storage.getBytes(`b${size}.bin`)) as Buffer, data)).toBe(0);
      }
      const uploads = await storage.client.send(
        new ListMultipartUploadsCommand({ Bucket: plain, Prefix: 'parts/' }),
      );
      expect(uploads.Uploads ?? []).toEqual([]);
    } finally {
      storage.destroy();
    }
  });

  it('names a missing bucket in a ConfigurationError', async () => {
    const storage = open('no-such-bucket-4711');
    try {
      const put = storage.putBytes('x.json', '{}');
      await expect(put).rejects.toBeInstanceOf(ConfigurationError);
      await expect(put).rejects.toThrow(/Bucket 'no-such-bucket-4711' does not exist/);
      await expect(put).rejects.toThrow(server.endpoint);
      const listing = (async () => {
        for await (const object of storage.list('')) void object;
      })();
      await expect(listing).rejects.toThrow(/Bucket 'no-such-bucket-4711' does not exist/);
      await expect(
        storage.putStream('dump.bin', Readable.from([Buffer.alloc(1000)])),
      ).rejects.toBeInstanceOf(ConfigurationError);
    } finally {
      storage.destroy();
    }
  });

  it('reports a wrong secret as a ConfigurationError that does not echo it', async () => {
    const secret = 'wrong-secret-Zq81xYv';
    const storage = open(plain, '', {
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: secret },
    });
    try {
      const attempts: (() => Promise<unknown>)[] = [
        () => storage.putBytes('x.json', '{}'),
        () => storage.getBytes('x.json'),
        async () => {
          for await (const object of storage.list('')) void object;
        },
      ];
      for (const attempt of attempts) {
        const error: unknown = await attempt().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(ConfigurationError);
        const message = (error as Error).message;
        expect(message).toContain(plain);
        expect(message).toMatch(/credentials/);
        expect(message).not.toContain(secret);
      }
    } finally {
      storage.destroy();
    }
  });

  it('fails a stream upload promptly on a store error, even while the body is stalled', async () => {
    const logger = new MemoryLogger();
    const storage = new S3Storage(
      plain,
      '',
      {
        ...settings,
        credentials: { accessKeyId: server.accessKeyId, secretAccessKey: 'nope-Zq81' },
      },
      logger,
    );
    try {
      // 9 MiB (more than one 8 MiB part), then nothing more and no end: a stalled producer.
      let pushed = 0;
      const body = new Readable({
        read() {
          if (pushed < 9 * MIB) {
            pushed += MIB;
            this.push(Buffer.alloc(MIB, 7));
          }
        },
      });
      const error: unknown = await storage.putStream('stalled.bin', body).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(/SignatureDoesNotMatch/);
      expect((error as Error).message).not.toContain('nope-Zq81');
      expect(body.destroyed).toBe(true);
      expect(logger.lines.join('\n')).not.toContain('nope-Zq81');
    } finally {
      storage.destroy();
    }
  });

  it('rejects in bounded time, naming the endpoint, when the server goes away mid-upload', async () => {
    const doomed = await startSwift();
    try {
      await doomed.createBucket('doomed');
      const storage = new S3Storage(
        'doomed',
        'p',
        {
          endpoint: doomed.endpoint,
          region: doomed.region,
          credentials: { accessKeyId: doomed.accessKeyId, secretAccessKey: doomed.secretAccessKey },
          partSize: 5 * MIB,
        },
        new MemoryLogger(),
      );
      let timer: NodeJS.Timeout | undefined;
      let sent = 0;
      // A producer that never finishes: 256 KiB every 20 ms until destroyed.
      const body = new Readable({
        read() {
          if (timer !== undefined) return;
          timer = setTimeout(() => {
            timer = undefined;
            sent += 256 * 1024;
            this.push(Buffer.alloc(256 * 1024, sent % 251));
          }, 20);
        },
        destroy(error, callback) {
          clearTimeout(timer);
          callback(error);
        },
      });
      let uploaded = 0;
      let firstPart: () => void = () => undefined;
      const partDone = new Promise<void>((resolve) => (firstPart = resolve));
      const put = storage.putStream('slow.bin', body, {
        onProgress: (bytes) => {
          uploaded = bytes;
          firstPart();
        },
      });
      const outcome = put.then(
        () => undefined,
        (error: unknown) => error,
      );
      await partDone;
      expect(uploaded).toBeGreaterThan(0);
      const stoppedAt = Date.now();
      await doomed.stop();
      const error = await outcome;
      const elapsed = Date.now() - stoppedAt;
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain(doomed.endpoint);
      expect((error as Error).message).toMatch(/Cannot reach the S3 endpoint/);
      expect(elapsed).toBeLessThan(30_000);
      expect(body.destroyed).toBe(true);
      storage.destroy();
    } finally {
      await doomed.stop();
    }
  });
});
