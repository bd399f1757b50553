import { MemoryLogger } from '../../src/core/logger.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { startScratchCluster, type ScratchCluster } from '../../src/postgres/cluster.js';
import { runBundle } from '../support/bundle.js';
import { embeddedServer } from '../support/embedded.js';
import { backupWithBundle, makeStore, sharedPostgresUrl, uniqueName } from '../support/env.js';
import {
  createDatabase,
  loadSample,
  newDatabase,
  rowCounts,
  withClient,
} from '../support/sample.js';

const OLD_PASSWORD = 'old-server-secret';

describe('upgrade rehearsal: a PostgreSQL 14 backup restores into 15', () => {
  let cluster: ScratchCluster;
  let sourceUrl: string;
  const key = generateIdentity();

  beforeAll(async () => {
    cluster = await startScratchCluster({
      server: embeddedServer(14),
      logger: new MemoryLogger(),
      password: OLD_PASSWORD,
    });
    sourceUrl = await createDatabase(cluster.url('postgres'), 'legacy');
    await loadSample(sourceUrl);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it.each(['s3', 'local'] as const)(
    'backs up with pg_dump 15 and drills into a newer server (%s)',
    async (kind) => {
      const store = await makeStore(kind);
      const backup = await backupWithBundle(store, sourceUrl, 'legacy', key.recipient);
      expect(backup.code).toBe(0);

      // Into a scratch server: the newest installed one of at least 14, here 15.
      const drill = await runBundle(
        'restore-drill',
        {
          storage: store.location,
          'encryption-identity': key.identity,
          'rto-target': '10m',
          ...store.inputs,
        },
        store.env,
      );
      expect(drill.code).toBe(0);
      expect(drill.stdout).toMatch(/Upgrade rehearsal: PostgreSQL 14\.\d+ → 15\.\d+/);
      expect(drill.summary).toMatch(/PostgreSQL 14\.\d+ → 15\.\d+/);

      // The real restore into a database of the machine's PostgreSQL 15.
      const db = uniqueName('upgraded').replace(/-/g, '_');
      const target = await createDatabase(sharedPostgresUrl(), db);
      const restore = await runBundle(
        'restore-drill',
        {
          storage: store.location,
          'encryption-identity': key.identity,
          mode: 'restore',
          'target-url': target,
          confirm: db,
          'safety-backup': 'false',
          ...store.inputs,
        },
        store.env,
      );
      expect(restore.code).toBe(0);
      expect(await rowCounts(target)).toEqual(await rowCounts(sourceUrl));
      for (const run of [backup, drill, restore]) {
        expect(run.everything).not.toContain(OLD_PASSWORD);
        expect(run.everything).not.toContain('source-secret-pw');
        expect(run.everything).not.toContain(key.identity);
      }
    },
  );

  it.each(['s3', 'local'] as const)(
    'warns when the target server is older than the backup source (%s)',
    async (kind) => {
      const store = await makeStore(kind);
      const source = await newDatabase('new');
      await withClient(source, (c) =>
        c.query('CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g'),
      );
      const backup = await runBundle(
        'backup',
        { 'database-url': source, storage: store.location, name: 'newer', ...store.inputs },
        store.env,
      );
      expect(backup.code).toBe(0);
      const drill = await runBundle(
        'restore-drill',
        {
          storage: store.location,
          'target-url': cluster.url(uniqueName('older').replace(/-/g, '_')),
          ...store.inputs,
        },
        store.env,
      );
      expect(drill.stdout).toMatch(
        /::warning::The target runs PostgreSQL 14\.\d+, older than the backup's source \(15\.\d+\)/,
      );
      expect(drill.summary).toContain('⚠️ The target runs PostgreSQL 14');
      expect(drill.everything).not.toContain(OLD_PASSWORD);
    },
  );
});
