import pg from 'pg';
import {
  schemaSnapshot,
  startRegressionSource,
  tableFingerprints,
  type RegressionSource,
} from '../support/regress.js';

// The first run on a machine builds pg_regress and regress.so and runs the schedule.
const FIRST_RUN_MS = 30 * 60_000;

describe("PostgreSQL's regression database as a fixture", () => {
  let source: RegressionSource;
  let client: pg.Client;

  beforeAll(async () => {
    source = await startRegressionSource();
    client = new pg.Client({ connectionString: source.url });
    await client.connect();
  }, FIRST_RUN_MS);

  afterAll(async () => {
    await client?.end();
    await source?.stop();
  });

  async function count(sql: string): Promise<number> {
    const r = await client.query<{ n: string }>(sql);
    return Number(r.rows[0]?.n ?? 0);
  }

  const userRelations = `FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'`;

  it('holds what the parallel schedule creates', async () => {
    expect(source.database).toBe('regression');
    expect(
      await count(`SELECT count(*) AS n ${userRelations} AND c.relkind = 'r'`),
    ).toBeGreaterThan(500);
    expect(
      await count(`SELECT count(*) AS n ${userRelations} AND c.relkind = 'p'`),
    ).toBeGreaterThan(10);
    expect(
      await count(
        `SELECT count(*) AS n FROM pg_constraint WHERE contypid <> 0 AND NOT convalidated`,
      ),
    ).toBeGreaterThan(0);
    expect(await count('SELECT count(*) AS n FROM pg_transform')).toBeGreaterThan(0);
    expect(await count('SELECT count(*) AS n FROM pg_foreign_data_wrapper')).toBeGreaterThan(0);
    expect(await count('SELECT count(*) AS n FROM pg_largeobject_metadata')).toBeGreaterThan(0);
  });

  it('fingerprints every table with data', async () => {
    const fingerprints = await tableFingerprints(source.url);
    expect(fingerprints.size).toBeGreaterThan(500);
    const tenk1 = fingerprints.get('public.tenk1');
    expect(tenk1).toMatchObject({ rows: 10000, via: 'jsonb', relkind: 'r' });
    expect(tenk1?.md5).toMatch(/^[0-9a-f]{32}$/);
    // A second pass over the unchanged database gives the same fingerprints.
    expect(await tableFingerprints(source.url)).toEqual(fingerprints);
  });

  it('falls back to t::text for rows that do not cast to jsonb', async () => {
    await client.query('CREATE DATABASE fingerprint_fallback');
    const url = source.cluster.url('fingerprint_fallback');
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      // to_jsonb uses a type's cast to json; this one fails.
      await other.query(`
        CREATE TYPE mood AS ENUM ('calm', 'cross');
        CREATE FUNCTION mood_json(mood) RETURNS json LANGUAGE sql AS 'SELECT (1/0)::text::json';
        CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood);
        CREATE TABLE moods (id int, m mood);
        INSERT INTO moods VALUES (1, 'calm'), (2, 'cross');
        CREATE TABLE plain (id int);
        INSERT INTO plain VALUES (1);`);
    } finally {
      await other.end();
    }
    const fingerprints = await tableFingerprints(url);
    expect(fingerprints.get('public.moods')).toMatchObject({ rows: 2, via: 'text' });
    expect(fingerprints.get('public.plain')).toMatchObject({ rows: 1, via: 'jsonb' });
    await client.query('DROP DATABASE fingerprint_fallback');
  });

  it('gives equal schema snapshots of an unchanged database', async () => {
    const first = await schemaSnapshot(source.url);
    expect(first).toContain('CREATE TABLE public.tenk1');
    expect(first).not.toMatch(/^-- Dumped by pg_dump version/m);
    expect(await schemaSnapshot(source.url)).toBe(first);
  });
});
