import { startScratchCluster, type ScratchCluster } from '../../src/postgres/cluster.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { machineServer } from './embedded.js';
import { startSwift, type SwiftServer } from './swift.js';

/**
 * One S3 server (Swift with s3api) and one PostgreSQL 15 server for the whole run; tests
 * make their own buckets and databases in them. Tests that need to break a server start
 * their own.
 */
export default async function globalSetup(): Promise<void> {
  const [swift, cluster] = await Promise.all([
    startSwift(),
    startScratchCluster({
      server: machineServer(),
      logger: new MemoryLogger(),
      password: 'source-secret-pw',
    }),
  ]);
  const shared = globalThis as { __swift?: SwiftServer; __cluster?: ScratchCluster };
  shared.__swift = swift;
  shared.__cluster = cluster;
  process.env.TEST_S3_ENDPOINT = swift.endpoint;
  process.env.TEST_S3_REGION = swift.region;
  process.env.TEST_S3_ACCESS_KEY_ID = swift.accessKeyId;
  process.env.TEST_S3_SECRET_ACCESS_KEY = swift.secretAccessKey;
  process.env.TEST_PG_URL = cluster.url('postgres');
}
