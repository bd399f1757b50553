import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { DestinationsError, runBackup, type BackupResult } from '../../src/backup/backup.js';
import { backupSummary } from '../../src/backup/summary.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import {
  openDestinations,
  readDestinations,
  type DestinationPlan,
} from '../../src/storage/destinations.js';
import { PartWriter } from '../../src/storage/parts.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/storage.js';
import type { CheckResult } from '../../src/restore/checks.js';
import { COPIES_CHECK } from '../../src/verify/copies.js';
import { runVerify } from '../../src/verify/verify.js';
import { machineClientTools } from '../support/embedded.js';
import { runBundle } from '../support/bundle.js';
import {
  s3Env,
  s3Settings,
  testBackupDeps,
  testBackupOptions,
  testVerifyDeps,
  uniqueName,
} from '../support/env.js';
import { startRelay, type Relay } from '../support/relay.js';
import { loadSample, newDatabase, withClient } from '../support/sample.js';
import { SECOND_ACCOUNT } from '../support/swift.js';

const shared = s3Settings();
/** Credentials as a workflow gives them: environment variables named by each line's prefix. */
const env: NodeJS.ProcessEnv = {
  ...process.env,
  FIRST_ACCESS_KEY_ID: shared.credentials.accessKeyId,
  FIRST_SECRET_ACCESS_KEY: shared.credentials.secretAccessKey,
  SECOND_ACCESS_KEY_ID: SECOND_ACCOUNT.accessKeyId,
  SECOND_SECRET_ACCESS_KEY: SECOND_ACCOUNT.secretAccessKey,
};

let tools: ClientTools;
let sampleUrl: string;

beforeAll(async () => {
  tools = await machineClientTools();
  sampleUrl = await newDatabase('dests');
  await loadSample(sampleUrl);
});

/** A bucket of the first account (the shared server's own keys). */
async function firstBucket(): Promise<string> {
  return createBucketAs(shared.endpoint, shared.credentials, uniqueName('first'));
}

/** A bucket of the second account, created through `endpoint`. */
async function secondBucket(endpoint: string): Promise<string> {
  return createBucketAs(endpoint, SECOND_ACCOUNT, uniqueName('second'));
}

async function createBucketAs(
  endpoint: string,
  credentials: { accessKeyId: string; secretAccessKey: string },
  bucket: string,
): Promise<string> {
  const client = new S3Client({
    endpoint,
    region: shared.region,
    forcePathStyle: true,
    credentials,
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** The settings of the backup action, as `read(name)` gives them. */
function settings(storage: string[], more: Record<string, string> = {}): DestinationPlan {
  const values: Record<string, string> = {
    storage: storage.join('\n'),
    's3-endpoint': shared.endpoint,
    's3-region': shared.region,
    ...more,
  };
  return readDestinations(
    (name) => values[name],
    env,
    () => undefined,
  );
}

async function keysOf(storage: Storage): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of storage.list('')) keys.push(o.key);
  return keys;
}

async function manifestOf(storage: Storage, result: BackupResult): Promise<Manifest> {
  const bytes = await storage.getBytes(result.manifestKey);
  if (bytes === undefined) throw new Error(`no manifest in ${storage.description}`);
  return JSON.parse(bytes.toString('utf8')) as Manifest;
}

async function backupTo(url: string, name: string, plan: DestinationPlan): Promise<BackupResult> {
  const [first, ...copies] = await openDestinations(plan.destinations, new MemoryLogger());
  return runBackup(
    testBackupOptions(url, name, {
      compression: { method: 'none' },
      rowCounts: 'off',
      destinationsRequired: plan.required,
    }),
    testBackupDeps(first, tools, { copies }),
  );
}

/** Verify of the store's newest backup with the copies check only (no restore); its result. */
async function copiesCheck(storage: Storage, copies: Storage[]): Promise<CheckResult | undefined> {
  const report = await runVerify(
    { restore: false, checks: [], record: false },
    testVerifyDeps(storage, tools, { copies }),
  );
  return report.checks.find((c) => c.name === COPIES_CHECK);
}

describe('a backup to several destinations', () => {
  it('writes three complete copies with equal SHA-256, each verifiable on its own', async () => {
    const relay = await startRelay(shared.endpoint);
    try {
      const one = await firstBucket();
      const two = await secondBucket(relay.endpoint);
      const folder = mkdtempSync(path.join(os.tmpdir(), 'dests-'));
      const plan = settings([
        `s3://${one}/db credentials=FIRST`,
        `s3://${two}/copy endpoint=${relay.endpoint} credentials=SECOND`,
        folder,
      ]);
      const result = await backupTo(sampleUrl, 'three', plan);
      expect(result.copies.map((c) => c.status)).toEqual(['stored', 'stored', 'stored']);
      expect(result.copies.map((c) => c.location)).toEqual([
        `s3://${one}/db/${result.objectKey}`,
        `s3://${two}/copy/${result.objectKey}`,
        path.join(folder, result.objectKey),
      ]);

      const stores = await openDestinations(plan.destinations, new MemoryLogger());
      for (const storage of stores) {
        const manifest = await manifestOf(storage, result);
        const dump = manifest.objects.find((o) => o.role === 'dump');
        expect(dump).toEqual(
          expect.objectContaining({ sha256: result.sha256, bytes: result.bytes }),
        );
        expect((await storage.head(result.objectKey))?.size).toBe(result.bytes);
      }
      // Each copy on its own: the stored object's hash against its manifest, and one restored.
      for (const [i, storage] of stores.entries()) {
        const report = await runVerify(
          { name: 'three', restore: i === 1, checks: [], record: false },
          testVerifyDeps(storage, tools),
        );
        expect({ copy: i, failures: report.failures, status: report.status }).toEqual({
          copy: i,
          failures: [],
          status: 'passed',
        });
      }
      // The copies check: from the first, the other two hold the same objects; then one is not.
      const copies = await copiesCheck(stores[0], stores.slice(1));
      expect(copies).toEqual(
        expect.objectContaining({
          status: 'passed',
          detail: expect.stringMatching(/^2 copies hold backup \S+ with the same objects/),
        }),
      );
      await stores[2].delete([result.objectKey]);
      expect((await copiesCheck(stores[0], stores.slice(1)))?.detail).toBe(
        `${path.join(folder, result.objectKey)} is missing`,
      );
      const summary = backupSummary(result);
      expect(summary).toContain('### Destinations');
      for (const copy of result.copies) expect(summary).toContain(copy.location);
    } finally {
      await relay.stop();
    }
  });

  describe('when the second server stops mid-run', () => {
    let bigUrl: string;

    beforeAll(async () => {
      bigUrl = await newDatabase('destsbig');
      await withClient(bigUrl, (c) =>
        c.query(`CREATE TABLE big AS
          SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS a
            FROM generate_series(1, 400000) g`),
      );
    });

    /** Backs up to the first account directly and the second through a relay stopped at 12 MiB. */
    async function backupWithStop(required?: string): Promise<{
      outcome: BackupResult | DestinationsError;
      first: Storage;
      second: Storage;
      relay: Relay;
    }> {
      const relay = await startRelay(shared.endpoint);
      const one = await firstBucket();
      const two = await secondBucket(relay.endpoint);
      const plan = settings(
        [
          `s3://${one}/db credentials=FIRST`,
          `s3://${two}/db endpoint=${relay.endpoint} credentials=SECOND`,
        ],
        required === undefined ? {} : { 'destinations-required': required },
      );
      relay.once(12 * 1024 * 1024, () => void relay.stop());
      const outcome = await backupTo(bigUrl, 'stopped', plan).catch((error: unknown) => {
        if (error instanceof DestinationsError) return error;
        throw error;
      });
      const logger = new MemoryLogger();
      // The second account's bucket, read past the stopped relay.
      const second = new S3Storage(two, 'db', { ...shared, credentials: SECOND_ACCOUNT }, logger);
      const first = new S3Storage(one, 'db', shared, logger);
      return { outcome, first, second, relay };
    }

    it('fails the step, with the first copy complete and reported, nothing on the second', async () => {
      const { outcome, first, second, relay } = await backupWithStop();
      expect(relay.bytesIn).toBeGreaterThan(12 * 1024 * 1024);
      expect(outcome).toBeInstanceOf(DestinationsError);
      const error = outcome as DestinationsError;
      expect(error.message).toMatch(/^1 of 2 destinations hold backup \S+, 2 required\. Failed: /);
      const result = error.result;
      expect(result.copies.map((c) => c.status)).toEqual(['stored', 'failed']);
      expect(result.copies[1].error).toMatch(/127\.0\.0\.1/);
      expect((await manifestOf(first, result)).objects[0].sha256).toBe(result.sha256);
      expect((await first.head(result.objectKey))?.size).toBe(result.bytes);
      expect(await keysOf(second)).toEqual([]);
      expect(backupSummary(result)).toMatch(/❌ failed/);
    });

    it('passes with a warning when destinations-required is 1', async () => {
      const { outcome, first, second } = await backupWithStop('1');
      expect(outcome).not.toBeInstanceOf(DestinationsError);
      const result = outcome as BackupResult;
      expect(result.copies.map((c) => c.status)).toEqual(['stored', 'failed']);
      expect(result.warnings).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^1 of 2 destinations hold backup \S+ \(destinations-required 1\)/),
        ]),
      );
      expect(await first.head(result.manifestKey)).toBeDefined();
      expect(await keysOf(second)).toEqual([]);
    });
  });
});

describe('the part buffers of several destinations', () => {
  const MIB = 1024 * 1024;

  /**
   * 64 MiB of varied bytes in 1 MiB chunks taken in turn from a pool of 16, allocated once, so
   * that the body allocates nothing as it goes (the stages hold at most a few chunks at once).
   */
  const pool = Array.from({ length: 16 }, () => randomBytes(MIB));
  function body(): Readable {
    let sent = 0;
    return new Readable({
      read() {
        this.push(sent === 64 ? null : pool[sent++ % pool.length]);
      },
    });
  }

  // Garbage collection on demand, so that each measurement starts from the buffers still in use:
  // an earlier writer's parts, collected or not, would otherwise move the baseline by a set.
  setFlagsFromString('--expose-gc');
  const collectGarbage = runInNewContext('gc') as () => void;

  /**
   * Streams the body to every store at once: the peak growth of Buffer memory meanwhile, the part
   * buffers the writer allocated, and what one set of them may take, `inFlight + 1` parts.
   */
  async function peakGrowth(
    stores: Storage[],
    key: string,
  ): Promise<{ growth: number; buffers: number; oneSet: number; inFlight: number }> {
    collectGarbage();
    const before = process.memoryUsage().arrayBuffers;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    }, 5);
    const uploads = stores.map((s) => s.upload(key, { sizeHint: 64 * MIB }));
    const writer = new PartWriter(uploads);
    try {
      await pipeline(body(), writer);
      expect((await writer.results).map((r) => r.ok)).toEqual(stores.map(() => true));
    } finally {
      clearInterval(sampler);
    }
    for (const store of stores) expect((await store.head(key))?.size).toBe(64 * MIB);
    const handles = await Promise.all(uploads);
    const inFlight = Math.max(...handles.map((h) => h.inFlight));
    const partSize = Math.max(...handles.map((h) => h.partSize));
    return {
      growth: peak - before,
      buffers: writer.bufferCount,
      oneSet: (inFlight + 1) * partSize,
      inFlight,
    };
  }

  it('holds the parts once, whatever the number of S3 destinations', async () => {
    const logger = new MemoryLogger();
    const stores = await Promise.all(
      [1, 2, 3].map(async () => new S3Storage(await firstBucket(), 'm', shared, logger)),
    );
    // How many parts are in flight at the peak depends on how fast the server takes them; what
    // does not is the bound: one set of part buffers, for one destination as for three (a set
    // per destination would take three times as much). That the stores are handed the very same
    // buffers is asserted in test/unit/parts.test.ts.
    await peakGrowth(stores, 'warm.bin');
    for (const count of [1, 3]) {
      const run = await peakGrowth(stores.slice(0, count), `${count}.bin`);
      expect(run.buffers).toBeLessThanOrEqual(run.inFlight + 1);
      expect(run.growth).toBeLessThan(run.oneSet + 4 * MIB);
    }
  });
});

describe('the backup action with two destinations', () => {
  it('writes both copies, reports each in the summary, and masks the second keys', async () => {
    const one = await firstBucket();
    const two = await secondBucket(shared.endpoint);
    const run = await runBundle(
      'backup',
      {
        'database-url': sampleUrl,
        storage: `s3://${one}/prod\ns3://${two}/prod credentials=SECOND`,
        name: 'bundled',
        compression: 'none',
        's3-endpoint': shared.endpoint,
        's3-region': shared.region,
      },
      {
        ...s3Env(),
        SECOND_ACCESS_KEY_ID: SECOND_ACCOUNT.accessKeyId,
        SECOND_SECRET_ACCESS_KEY: SECOND_ACCOUNT.secretAccessKey,
      },
    );
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const objectKey = run.outputs['object-key'].replace(`s3://${one}/prod/`, '');
    expect(run.summary).toContain('### Destinations');
    for (const bucket of [one, two]) {
      expect(run.summary).toContain(`| \`s3://${bucket}/prod/${objectKey}\` | ✅ stored |`);
    }
    expect(run.summary).toContain(run.outputs.sha256);
    expect(run.stdout).toContain(`::add-mask::${SECOND_ACCOUNT.secretAccessKey}`);
    expect(run.everything).not.toContain(SECOND_ACCOUNT.secretAccessKey);
    const second = new S3Storage(
      two,
      'prod',
      { ...shared, credentials: SECOND_ACCOUNT },
      new MemoryLogger(),
    );
    expect((await second.head(objectKey))?.size).toBe(Number(run.outputs.bytes));
  });
});

describe('storage lines', () => {
  const values =
    (storage: string, more: Record<string, string> = {}) =>
    (name: string) =>
      ({ storage, ...more })[name];

  it('reads a location, its own endpoint and region, and credentials from the environment', () => {
    const masked: string[] = [];
    const plan = readDestinations(
      values(
        's3://one/x\ns3://two/y endpoint=https://r2.example.com region=auto credentials=SECOND\n/tmp/my backups',
        {
          's3-region': 'eu-west-1',
        },
      ),
      env,
      (secret) => masked.push(secret),
    );
    expect(plan.required).toBe(3);
    expect(plan.destinations).toEqual([
      { location: 's3://one/x', s3: { region: 'eu-west-1' } },
      {
        location: 's3://two/y',
        s3: {
          endpoint: 'https://r2.example.com',
          region: 'auto',
          credentials: {
            accessKeyId: SECOND_ACCOUNT.accessKeyId,
            secretAccessKey: SECOND_ACCOUNT.secretAccessKey,
          },
        },
      },
      { location: '/tmp/my backups', s3: { region: 'eu-west-1' } },
    ]);
    expect(masked).toEqual([SECOND_ACCOUNT.accessKeyId, SECOND_ACCOUNT.secretAccessKey]);
  });

  it('refuses a key in a line without quoting it, and a wrong destinations-required', () => {
    const read =
      (storage: string, more = {}) =>
      () =>
        readDestinations(values(storage, more), env, () => undefined);
    expect(read('s3://one secret=hunter2-value')).toThrow(ConfigurationError);
    expect(read('s3://one secret=hunter2-value')).toThrow(
      /Unknown option 'secret'.*credentials=R2/,
    );
    expect(read('s3://one secret=hunter2-value')).not.toThrow(/hunter2/);
    expect(read('s3://one credentials=AKIA/abc+def')).toThrow(/environment variable prefix/);
    expect(read('s3://one credentials=AKIA/abc+def')).not.toThrow(/abc\+def/);
    expect(read('s3://one credentials=MISSING')).toThrow(
      /credentials=MISSING needs the environment variables MISSING_ACCESS_KEY_ID/,
    );
    expect(read('s3://one\ns3://two', { 'destinations-required': '3' })).toThrow(
      /'destinations-required' must be a whole number from 1 to 2 \(the storage lines\), got '3'/,
    );
    expect(read('\n')).toThrow('Input required and not supplied: storage');
    expect(read('s3://one/x\ns3://one/x region=auto')).toThrow(
      /Input 'storage' names s3:\/\/one\/x twice/,
    );
  });
});
