/**
 * The fast loop, `npm run test:unit`: the tests of pure logic, which need no setup script and
 * no servers (the age tests call the `age` command, as a user's decryption would). `npm test`
 * runs these and all the others.
 *
 * A test file belongs here when it runs without the global setup (no TEST_PG_URL, no TEST_S3_*)
 * and starts no server of its own: no PostgreSQL, no S3, no GitHub API fake (that one reads
 * GitHub's 70 MB OpenAPI description per file, which alone would take the loop past 30 s).
 */
import base from './jest.config.js';

export const unitTests = [
  'test/unit/**/*.test.ts',
  'test/crypto/**/*.test.ts',
  'test/catalog/retention.test.ts',
  'test/cli/cli-unit.test.ts',
  'test/drill/drill-unit.test.ts',
  'test/prune/options.test.ts',
  'test/storage/location.test.ts',
  'test/storage/s3-archive.test.ts',
];

export default {
  ...base,
  testMatch: unitTests.map((glob) => `<rootDir>/${glob}`),
  globalSetup: undefined,
  globalTeardown: undefined,
};
