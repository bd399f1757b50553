import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { runProcess } from '../../src/core/process.js';
import { repoRoot } from './bundle.js';
import { MACHINE_BIN_DIR } from './embedded.js';
import { sharedPostgresUrl, uniqueName } from './env.js';

export const PAGILA_DIR = path.join(repoRoot, 'test/fixtures/pagila');

/**
 * A database with most of what real schemas hold: several schemas, an enum, a domain, jsonb,
 * a partitioned table, a view and a materialized view, a function and a trigger, a row-level
 * security policy, foreign keys, unique and check constraints, a sequence, a large object.
 */
export const SAMPLE_SQL = `
CREATE SCHEMA app;
CREATE SCHEMA audit;
CREATE TYPE app.status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN app.email AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE app.customers (
  id bigserial PRIMARY KEY,
  email app.email NOT NULL UNIQUE,
  name text NOT NULL,
  profile jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE app.orders (
  id bigserial,
  customer_id bigint NOT NULL REFERENCES app.customers(id),
  status app.status NOT NULL DEFAULT 'new',
  amount numeric(12,2) NOT NULL CHECK (amount >= 0),
  ordered_on date NOT NULL,
  PRIMARY KEY (id, ordered_on)
) PARTITION BY RANGE (ordered_on);
CREATE TABLE app.orders_2025 PARTITION OF app.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.orders_2026 PARTITION OF app.orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON app.orders (customer_id);
CREATE TABLE audit.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text NOT NULL);
CREATE FUNCTION audit.log_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit.events (what) VALUES ('order ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER order_audit AFTER INSERT ON app.orders_2026 FOR EACH ROW EXECUTE FUNCTION audit.log_order();
CREATE VIEW app.customer_totals AS
  SELECT c.id, c.name, sum(o.amount) AS total FROM app.customers c JOIN app.orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
CREATE MATERIALIZED VIEW app.status_counts AS SELECT status, count(*) AS n FROM app.orders GROUP BY status;
ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON app.customers USING (true);
CREATE TABLE public.documents (id serial PRIMARY KEY, title text NOT NULL, body text, blob oid);
INSERT INTO app.customers (email, name, profile)
  SELECT 'user' || g || '@example.com', 'Customer ' || g, jsonb_build_object('tier', g % 3, 'tags', jsonb_build_array('a', g))
  FROM generate_series(1, 500) g;
INSERT INTO app.orders (customer_id, status, amount, ordered_on)
  SELECT 1 + (g % 500), (ARRAY['new','paid','shipped'])[1 + g % 3]::app.status, (g % 1000) / 10.0,
         DATE '2025-06-01' + (g % 400)
  FROM generate_series(1, 3000) g;
INSERT INTO public.documents (title, body, blob)
  SELECT 'doc ' || g, repeat(md5(g::text), 20), CASE WHEN g = 1 THEN lo_from_bytea(0, 'large object payload') END
  FROM generate_series(1, 200) g;
REFRESH MATERIALIZED VIEW app.status_counts;
`;

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates a database (dropping one of the same name) and returns its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  await withClient(serverUrl, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.query(`CREATE DATABASE "${name}"`);
  });
  return urlOfDatabase(serverUrl, name);
}

/** The URL of database `name` on the server of `serverUrl` (same user, password and host). */
export function urlOfDatabase(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A new, empty database with a unique name in the shared test server; its URL. */
export function newDatabase(prefix: string): Promise<string> {
  return createDatabase(sharedPostgresUrl(), uniqueName(prefix).replace(/-/g, '_'));
}

export async function loadSample(databaseUrl: string): Promise<void> {
  await withClient(databaseUrl, (c) => c.query(SAMPLE_SQL));
}

/** Loads the Pagila sample database (schema and data) with psql. */
export async function loadPagila(databaseUrl: string): Promise<void> {
  for (const file of ['pagila-schema.sql', 'pagila-data.sql']) {
    const r = await runProcess(
      path.join(MACHINE_BIN_DIR, 'psql'),
      ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', databaseUrl, '-f', path.join(PAGILA_DIR, file)],
      {},
    );
    if (r.code !== 0) throw new Error(`Loading ${file} failed: ${r.stderr}`);
  }
}

/** Exact row counts of every user table (partitions, not their parents), by schema.table. */
export async function rowCounts(databaseUrl: string): Promise<Record<string, number>> {
  return withClient(databaseUrl, async (c) => {
    const tables = await c.query<{ s: string; t: string }>(`
      SELECT n.nspname AS s, c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       ORDER BY 1, 2`);
    const counts: Record<string, number> = {};
    for (const { s, t } of tables.rows) {
      const r = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ONLY "${s}"."${t}"`);
      counts[`${s}.${t}`] = Number(r.rows[0].n);
    }
    return counts;
  });
}

export function readPagilaTableNames(): string[] {
  const schema = readFileSync(path.join(PAGILA_DIR, 'pagila-schema.sql'), 'utf8');
  return [...schema.matchAll(/CREATE TABLE public\.(\w+)/g)].map((m) => m[1]);
}
