/**
 * ANALYZE over several sessions covers what a bare ANALYZE covers, each table once: ordinary
 * tables, materialized views, partition trees at every level, inheritance parents. On the
 * shared test server, against a twin database analyzed with a bare ANALYZE.
 */
import pg from 'pg';
import { analyzeDatabase } from '../../src/postgres/analyze.js';
import { newDatabase, withClient } from '../support/sample.js';

const SCHEMA = `
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Orders" (id int PRIMARY KEY, note text);
INSERT INTO "Shop"."Orders" SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
CREATE TABLE small (id int);
INSERT INTO small VALUES (1), (2), (3);
CREATE TABLE empty_table (id int);
CREATE MATERIALIZED VIEW order_notes AS SELECT id, left(note, 4) AS head FROM "Shop"."Orders";
CREATE TABLE events (at date NOT NULL, kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
  PARTITION BY LIST (kind);
CREATE TABLE events_2025_a PARTITION OF events_2025 FOR VALUES IN ('a');
CREATE TABLE events_2025_b PARTITION OF events_2025 FOR VALUES IN ('b');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events SELECT date '2025-01-01' + (g % 700), CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END
  FROM generate_series(1, 5000) g;
CREATE TABLE animals (name text);
CREATE TABLE dogs (breed text) INHERITS (animals);
INSERT INTO animals SELECT 'cat ' || g FROM generate_series(1, 300) g;
INSERT INTO dogs SELECT 'dog ' || g, 'breed ' || (g % 7) FROM generate_series(1, 300) g;
`;

/** Per user table: how often it was analyzed; and which tables have statistics, inherited or not. */
async function analyzed(url: string): Promise<{ counts: string[]; stats: string[] }> {
  return withClient(url, async (c) => {
    await c.query('SELECT pg_stat_clear_snapshot()');
    const counts = await c.query<{ t: string }>(
      `SELECT relname || ' ' || analyze_count AS t FROM pg_stat_user_tables
        ORDER BY 1`,
    );
    const stats = await c.query<{ t: string }>(
      `SELECT DISTINCT schemaname || '.' || tablename || CASE WHEN inherited THEN ' (tree)' ELSE '' END AS t
         FROM pg_stats WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    );
    return { counts: counts.rows.map((r) => r.t), stats: stats.rows.map((r) => r.t) };
  });
}

/** Runs `analyzeDatabase` with `jobs` on `url`, counting the sessions it opens beside its client. */
async function analyzeWithJobs(url: string, jobs: number): Promise<number> {
  let opened = 0;
  await withClient(url, async (c) => {
    await c.query(SCHEMA);
    await analyzeDatabase(
      c,
      async () => {
        opened++;
        const session = new pg.Client({ connectionString: url });
        await session.connect();
        return session;
      },
      jobs,
    );
    // Statistics counters reach other sessions when this one flushes them.
    await c.query('SELECT pg_stat_force_next_flush()');
    await c.query('SELECT 1');
  });
  return opened;
}

describe('analyzeDatabase', () => {
  it('with three jobs covers what a bare ANALYZE covers, each table once', async () => {
    const parallelUrl = await newDatabase('analyze-jobs');
    const bareUrl = await newDatabase('analyze-bare');
    expect(await analyzeWithJobs(parallelUrl, 3)).toBe(2);
    await withClient(bareUrl, async (c) => {
      await c.query(SCHEMA);
      await c.query('ANALYZE');
      await c.query('SELECT pg_stat_force_next_flush()');
      await c.query('SELECT 1');
    });
    const parallel = await analyzed(parallelUrl);
    const bare = await analyzed(bareUrl);
    expect(parallel).toEqual(bare);
    expect(parallel.stats).toEqual(
      expect.arrayContaining([
        'Shop.Orders',
        'public.order_notes',
        'public.events (tree)',
        'public.events_2025 (tree)',
        'public.events_2025_a',
        'public.events_2026',
        'public.animals',
        'public.animals (tree)',
        'public.dogs',
      ]),
    );
    expect(parallel.counts).toEqual(
      expect.arrayContaining(['Orders 1', 'small 1', 'empty_table 1', 'events_2025_b 1']),
    );
  });

  it('with one job runs a bare ANALYZE in its own session', async () => {
    const url = await newDatabase('analyze-one');
    expect(await analyzeWithJobs(url, 1)).toBe(0);
    expect((await analyzed(url)).counts).toEqual(
      expect.arrayContaining(['Orders 1', 'dogs 1', 'events_2026 1']),
    );
  });

  it('fails, and closes the sessions it opened, when one cannot be opened', async () => {
    const url = await newDatabase('analyze-refused');
    const opened: pg.Client[] = [];
    await withClient(url, async (c) => {
      await c.query(SCHEMA);
      let calls = 0;
      const openSession = async (): Promise<pg.Client> => {
        if (calls++ === 1) throw new Error('too many connections for role "restorer"');
        const session = new pg.Client({ connectionString: url });
        await session.connect();
        opened.push(session);
        return session;
      };
      await expect(analyzeDatabase(c, openSession, 3)).rejects.toThrow('too many connections');
      await expect(opened[0].query('SELECT 1')).rejects.toThrow('not queryable');
    });
    expect(opened).toHaveLength(1);
  });
});
