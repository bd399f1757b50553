import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, PutBucketVersioningCommand, S3Client } from '@aws-sdk/client-s3';
import {
  wholeDatabaseBackup,
  type BackupDeps,
  type BackupOptions,
} from '../../src/backup/backup.js';
import { MemoryLogger, systemClock } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import type { DrillDeps, RestoreOptions } from '../../src/drill/drill.js';
import type { VerifyDeps } from '../../src/verify/verify.js';
import { machineServer } from './embedded.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { parseConnectionString } from '../../src/postgres/connection.js';
import { runBundle, type BundleRun } from './bundle.js';
import { LocalStorage } from '../../src/storage/local.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { S3Settings } from '../../src/storage/open.js';
import type { Storage } from '../../src/storage/storage.js';

/** The shared servers the global setup started. */
export function sharedPostgresUrl(): string {
  const url = process.env.TEST_PG_URL;
  if (!url) throw new Error('TEST_PG_URL is not set: run the tests through jest (global setup)');
  return url;
}

export function s3Settings(): Required<Pick<S3Settings, 'endpoint' | 'region' | 'credentials'>> &
  S3Settings {
  const endpoint = process.env.TEST_S3_ENDPOINT;
  if (!endpoint)
    throw new Error('TEST_S3_ENDPOINT is not set: run the tests through jest (global setup)');
  return {
    endpoint,
    region: process.env.TEST_S3_REGION ?? 'us-east-1',
    forcePathStyle: true,
    credentials: {
      accessKeyId: process.env.TEST_S3_ACCESS_KEY_ID ?? '',
      secretAccessKey: process.env.TEST_S3_SECRET_ACCESS_KEY ?? '',
    },
  };
}

/** Environment for a bundle that talks to the shared S3 server through the SDK's default chain. */
export function s3Env(): Record<string, string> {
  const s = s3Settings();
  return {
    AWS_ACCESS_KEY_ID: s.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.credentials.secretAccessKey,
    AWS_REGION: s.region,
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function createBucket(name: string, versioning = false): Promise<void> {
  const s = s3Settings();
  const client = new S3Client({
    endpoint: s.endpoint,
    region: s.region,
    forcePathStyle: true,
    credentials: s.credentials,
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: name }));
    if (versioning) {
      await client.send(
        new PutBucketVersioningCommand({
          Bucket: name,
          VersioningConfiguration: { Status: 'Enabled' },
        }),
      );
    }
  } finally {
    client.destroy();
  }
}

/** A store of each kind the suites run against, with the `storage` input that reaches it. */
export interface TestStore {
  kind: 's3' | 'local';
  storage: Storage;
  /** Value of the `storage` input. */
  location: string;
  /** Inputs besides `storage` the actions need to reach it. */
  inputs: Record<string, string>;
  /** Environment the bundle needs (credentials). */
  env: Record<string, string>;
}

export async function makeStore(kind: 's3' | 'local', prefix = 'backups'): Promise<TestStore> {
  const logger = new MemoryLogger();
  if (kind === 'local') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'store-'));
    return { kind, storage: new LocalStorage(dir, logger), location: dir, inputs: {}, env: {} };
  }
  const bucket = uniqueName('bucket');
  await createBucket(bucket);
  const s = s3Settings();
  return {
    kind,
    storage: new S3Storage(bucket, prefix, s, logger),
    location: `s3://${bucket}/${prefix}`,
    inputs: { 's3-endpoint': s.endpoint, 's3-region': s.region, 's3-force-path-style': 'true' },
    env: s3Env(),
  };
}

/** Backs up `databaseUrl` into the store through the real backup bundle, encrypted to `recipient`. */
export function backupWithBundle(
  store: TestStore,
  databaseUrl: string,
  name: string,
  recipient: string,
): Promise<BundleRun> {
  return runBundle(
    'backup',
    {
      'database-url': databaseUrl,
      storage: store.location,
      name,
      'encryption-recipients': recipient,
      ...store.inputs,
    },
    store.env,
  );
}

/** Options for runBackup in tests: a custom-format dump of `url` under `name`, then overrides. */
export function testBackupOptions(
  url: string,
  name: string,
  overrides: Partial<BackupOptions> = {},
): BackupOptions {
  return {
    ...wholeDatabaseBackup(parseConnectionString(url), name),
    sizeChangeThreshold: 1000,
    ...overrides,
  };
}

/** Deps for runBackup in tests: these client tools, a quiet logger, no progress lines; then overrides. */
export function testBackupDeps(
  storage: Storage,
  tools: ClientTools,
  overrides: Partial<BackupDeps> = {},
): BackupDeps {
  return {
    storage,
    logger: new MemoryLogger(),
    clock: systemClock,
    env: process.env,
    resolveTools: async () => tools,
    progressIntervalMs: 0,
    ...overrides,
  };
}

/** Deps for runVerify in tests: these client tools, the machine's server, no progress lines. */
export function testVerifyDeps(
  storage: Storage,
  tools: ClientTools,
  overrides: Partial<VerifyDeps> = {},
): VerifyDeps {
  return {
    storage,
    logger: new MemoryLogger(),
    clock: systemClock,
    env: process.env,
    zstdPath: findOnPath('zstd'),
    progressIntervalMs: 0,
    resolveTools: async () => tools,
    findServer: async () => machineServer(),
    ...overrides,
  };
}

/** Deps for runDrill and runRestore in tests, working in `dir`. */
export function testDrillDeps(
  storage: Storage,
  tools: ClientTools,
  dir: string,
  overrides: Partial<DrillDeps> = {},
): DrillDeps {
  return {
    storage,
    logger: new MemoryLogger(),
    clock: systemClock,
    env: process.env,
    zstdPath: findOnPath('zstd'),
    resolveTools: async () => tools,
    findServer: async () => machineServer(),
    workDir: dir,
    workspace: dir,
    progressIntervalMs: 0,
    ...overrides,
  };
}

/**
 * Options of a real restore into `url` (confirm: its database), as a test gives them: other
 * sessions ended, no safety backup, two jobs; then overrides.
 */
export function testRestoreOptions(
  url: string,
  overrides: Partial<RestoreOptions> = {},
): RestoreOptions {
  return {
    targetUrl: url,
    confirm: new URL(url).pathname.slice(1),
    terminateConnections: true,
    safetyBackup: false,
    jobs: 2,
    checks: [],
    postgresVersion: 'auto',
    git: {},
    ...overrides,
  };
}
