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
    await flushStatistics(c);
  });
  return opened;
}

/** The twin database: the same schema, analyzed with a bare ANALYZE. */
async function bareTwin(prefix: string): Promise<string> {
  const url = await newDatabase(prefix);
  await withClient(url, async (c) => {
    await c.query(SCHEMA);
    await c.query('ANALYZE');
    await flushStatistics(c);
  });
  return url;
}

/** Statistics counters reach other sessions once this one flushes them. */
async function flushStatistics(c: pg.Client): Promise<void> {
  await c.query('SELECT pg_stat_force_next_flush()');
  await c.query('SELECT 1');
}

describe('analyzeDatabase', () => {
  it('with three jobs covers what a bare ANALYZE covers, each table once', async () => {
    const parallelUrl = await newDatabase('analyze-jobs');
    const bareUrl = await bareTwin('analyze-bare');
    expect(await analyzeWithJobs(parallelUrl, 3)).toBe(2);
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

  it('analyzes over the sessions it could open when another is refused', async () => {
    const url = await newDatabase('analyze-refused');
    const bareUrl = await bareTwin('analyze-refused-bare');
    const opened: pg.Client[] = [];
    let calls = 0;
    await withClient(url, async (c) => {
      await c.query(SCHEMA);
      const openSession = async (): Promise<pg.Client> => {
        if (calls++ === 1) throw new Error('too many connections for role "restorer"');
        const session = new pg.Client({ connectionString: url });
        await session.connect();
        opened.push(session);
        return session;
      };
      await analyzeDatabase(c, openSession, 3);
      await flushStatistics(c);
    });
    expect(calls).toBe(2);
    expect(opened).toHaveLength(1);
    await expect(opened[0].query('SELECT 1')).rejects.toThrow('not queryable');
    expect(await analyzed(url)).toEqual(await analyzed(bareUrl));
  });
});
