import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup, type BackupOptions } from '../../src/backup/backup.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath, runProcess } from '../../src/core/process.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/storage.js';
import { runBundle } from '../support/bundle.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  uniqueName,
  type TestStore,
} from '../support/env.js';
import { restoreByHand } from '../support/restore-by-hand.js';
import {
  loadSample,
  newDatabase,
  rowCounts,
  urlOfDatabase,
  withClient,
} from '../support/sample.js';
import { startSwift } from '../support/swift.js';

async function keysOf(storage: Storage): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of storage.list('')) keys.push(o.key);
  return keys;
}

function baseOptions(url: string, name: string): BackupOptions {
  return testBackupOptions(url, name, {
    compression: { method: 'none' },
    rowCounts: 'off',
    sizeChangeThreshold: 20,
  });
}

/** A database big enough that a dump runs for a few seconds (incompressible-ish text). */
async function bigDatabase(): Promise<string> {
  const url = await newDatabase('big');
  await withClient(url, (c) =>
    c.query(`CREATE TABLE big AS
      SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS a,
             md5((g * 17)::text) || md5((g * 19)::text) AS b
        FROM generate_series(1, 1200000) g`),
  );
  return url;
}

describe.each(['s3', 'local'] as const)('backup faults against %s storage', (kind) => {
  let store: TestStore;
  let sourceUrl: string;

  beforeAll(async () => {
    store = await makeStore(kind);
    sourceUrl = await newDatabase('fault');
    await loadSample(sourceUrl);
  });

  it('fails on a wrong password with a clear message, no secret, and nothing stored', async () => {
    const url = new URL(sourceUrl);
    url.password = 'not-the-password';
    const run = await runBundle(
      'backup',
      { 'database-url': url.toString(), storage: store.location, name: 'wrongpw', ...store.inputs },
      store.env,
    );
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/::error::Cannot connect to .*password authentication failed/);
    expect(run.stdout).toContain("Check the user and password in input 'database-url'");
    expect(run.everything).not.toContain('not-the-password');
    expect(run.everything).not.toContain('source-secret-pw');
    expect(await keysOf(store.storage)).toEqual(
      expect.not.arrayContaining([expect.stringContaining('wrongpw/')]),
    );
  });

  it('fails on an unknown database and stores nothing', async () => {
    const run = await runBundle(
      'backup',
      {
        'database-url': urlOfDatabase(sourceUrl, 'no_such_database'),
        storage: store.location,
        name: 'nodb',
        ...store.inputs,
      },
      store.env,
    );
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /::error::Cannot connect to .*database "no_such_database" does not exist/,
    );
    expect((await keysOf(store.storage)).filter((k) => k.startsWith('nodb/'))).toEqual([]);
  });

  it('refuses a transaction-mode pooler with the session-mode alternative', async () => {
    const run = await runBundle(
      'backup',
      {
        'database-url':
          'postgresql://postgres.abc:pooler-secret@aws-0-eu-west-1.pooler.supabase.com:6543/postgres',
        storage: store.location,
        ...store.inputs,
      },
      store.env,
    );
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('transaction-mode pooler');
    expect(run.stdout).toContain('session-mode pooler on port 5432');
    expect(run.everything).not.toContain('pooler-secret');
  });

  it.each([
    ['a named pipe', true],
    ['a stream', false],
  ])(
    'aborts the upload and writes no manifest when pg_dump is killed mid-stream (read through %s)',
    async (_how, namedPipe) => {
      const url = await bigDatabase();
      const tools = await machineClientTools();
      const logger = new MemoryLogger();
      const name = `killed-${namedPipe ? 'fifo' : 'stream'}`;
      const pending = runBackup(
        { ...baseOptions(url, name), encryption: { recipients: [generateIdentity().recipient] } },
        testBackupDeps(store.storage, tools, { namedPipe, logger }),
      );
      // Find our pg_dump (a child of this test process) once it streams, and kill it.
      let killed = false;
      for (let i = 0; i < 400 && !killed; i++) {
        const r = await runProcess('pgrep', ['-P', String(process.pid), '-x', 'pg_dump']);
        const pid = r.stdout.trim().split('\n')[0];
        if (pid) {
          await new Promise((resolve) => setTimeout(resolve, 300));
          process.kill(Number(pid), 'SIGKILL');
          killed = true;
        } else {
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
      }
      expect(killed).toBe(true);
      await expect(pending).rejects.toThrow(/pg_dump was killed by SIGKILL/);
      const left = (await keysOf(store.storage)).filter((k) => k.startsWith(`${name}/`));
      expect(left).toEqual([]);
    },
  );
  it.each([
    ['a named pipe', true],
    ['a stream', false],
  ])(
    'stores an encrypted, compressed archive that restores by hand in full (read through %s)',
    async (_how, namedPipe) => {
      const key = generateIdentity();
      const tools = await machineClientTools();
      const name = `paths-${namedPipe ? 'fifo' : 'stream'}`;
      const logger = new MemoryLogger();
      const result = await runBackup(
        {
          ...baseOptions(sourceUrl, name),
          compression: { method: 'zstd', level: 3 },
          encryption: { recipients: [key.recipient] },
        },
        testBackupDeps(store.storage, tools, {
          namedPipe,
          logger,
          zstdPath: (await findOnPath('zstd')) ?? undefined,
        }),
      );
      expect(logger.lines).toContainEqual(
        expect.stringMatching(/^Archive data: [\d,]+ chunks from pg_dump written as \d+\.$/),
      );
      expect((await store.storage.head(result.objectKey))?.size).toBe(result.bytes);
      // age -d, zstd -d and pg_restore into a fresh database: every row, data included.
      const target = await newDatabase(name);
      const { sha256, dataChunks } = await restoreByHand({
        storage: store.storage,
        objectKey: result.objectKey,
        identity: key.identity,
        targetUrl: target,
      });
      expect(sha256).toBe(result.sha256);
      expect(await rowCounts(target)).toEqual(await rowCounts(sourceUrl));
      // Coalesced: a chunk per table of this size, where pg_dump wrote one per row.
      expect(dataChunks).toBeLessThan(20);
    },
  );

  it('stores nothing when pg_dump exits 0 but its archive is cut short', async () => {
    // A pg_dump whose archive ends early although it reports success: the fault a naive pipe
    // stores as a complete backup.
    const tools = await machineClientTools();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cut-dump-'));
    const wrapper = path.join(dir, 'pg_dump');
    writeFileSync(wrapper, `#!/bin/sh\n"${tools.pgDump}" "$@" | head -c 30000\n`, { mode: 0o755 });
    const name = 'cut-short';
    try {
      await expect(
        runBackup(
          {
            ...baseOptions(sourceUrl, name),
            compression: { method: 'zstd', level: 1 },
          },
          testBackupDeps(
            store.storage,
            { ...tools, pgDump: wrapper },
            {
              zstdPath: (await findOnPath('zstd')) ?? undefined,
            },
          ),
        ),
      ).rejects.toThrow(
        /pg_dump's archive could not be read near byte \d+: the archive ends inside/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await keysOf(store.storage)).filter((k) => k.startsWith(`${name}/`))).toEqual([]);
  });
});

describe('backup faults of the S3 store', () => {
  it('fails with the bucket named when the bucket does not exist', async () => {
    const sourceUrl = await newDatabase('nobucket');
    const store = await makeStore('s3');
    const missing = uniqueName('missing-bucket');
    const run = await runBundle(
      'backup',
      { 'database-url': sourceUrl, storage: `s3://${missing}/x`, ...store.inputs },
      store.env,
    );
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`::error::.*Bucket '${missing}' does not exist`));
  });

  it('fails in bounded time, naming the endpoint, when the S3 server stops mid-upload', async () => {
    const url = await bigDatabase();
    const tools = await machineClientTools();
    const swift = await startSwift();
    try {
      await swift.createBucket('victim');
      const storage = new S3Storage(
        'victim',
        'p',
        {
          endpoint: swift.endpoint,
          region: swift.region,
          forcePathStyle: true,
          credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
        },
        new MemoryLogger(),
      );
      let stopping: Promise<void> | undefined;
      const watched: Storage = Object.create(storage) as Storage;
      // The server stops once it holds the dump's first part.
      watched.upload = async (key, options) => {
        const upload = await storage.upload(key, options);
        return {
          ...upload,
          sendPart: async (part) => {
            await upload.sendPart(part);
            stopping ??= swift.stop();
          },
        };
      };
      const started = Date.now();
      await expect(
        runBackup(baseOptions(url, 'stopped'), testBackupDeps(watched, tools)),
      ).rejects.toThrow(new RegExp(swift.endpoint.replace(/[.:/]/g, '\\$&')));
      expect(Date.now() - started).toBeLessThan(90_000);
      await stopping;
      const r = await runProcess('pgrep', ['-P', String(process.pid), '-x', 'pg_dump']);
      expect(r.stdout.trim()).toBe('');
    } finally {
      await swift.stop();
    }
  });
});

describe('zstd is what auto compression uses when it is installed', () => {
  it('finds zstd on this machine', () => {
    expect(findOnPath('zstd')).toBeDefined();
  });
});
