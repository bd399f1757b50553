/**
 * A parallel restore (`jobs: 2`) with real pg_dump and pg_restore, of a database whose post-data
 * entries would reject or change its rows if they ran before the data was in.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryLogger } from '../../src/core/logger.js';
import { parseConnectionString } from '../../src/postgres/connection.js';
import { runPgRestore } from '../../src/restore/pg-restore.js';
import { MACHINE_BIN_DIR } from '../support/embedded.js';
import { runToBuffer as run } from '../support/run.js';
import { newDatabase, withClient } from '../support/sample.js';

/**
 * Every kind of post-data entry the restore must hold back until the rows are in (NOT VALID
 * constraints the rows break, a trigger that changes rows, a partitioned table's index), and
 * the kinds it builds beside the data (keys, indexes, a foreign key).
 */
const SOURCE_SQL = `
CREATE DOMAIN posint AS int;
CREATE TABLE accounts (id int PRIMARY KEY, balance posint, note text);
INSERT INTO accounts SELECT g, CASE WHEN g % 50 = 0 THEN -g ELSE g END, md5(g::text)
  FROM generate_series(1, 20000) g;
ALTER DOMAIN posint ADD CONSTRAINT posint_positive CHECK (VALUE > 0) NOT VALID;
ALTER TABLE accounts ADD CONSTRAINT note_short CHECK (length(note) < 10) NOT VALID;
CREATE TABLE transfers (id int PRIMARY KEY, account_id int, amount int);
INSERT INTO transfers SELECT g, 1 + g % 25000, g FROM generate_series(1, 30000) g;
ALTER TABLE transfers ADD CONSTRAINT transfers_account FOREIGN KEY (account_id)
  REFERENCES accounts NOT VALID;
CREATE TABLE audit (id int PRIMARY KEY, account_id int NOT NULL REFERENCES accounts, amount int);
INSERT INTO audit SELECT g, 1 + g % 20000, g FROM generate_series(1, 10000) g;
CREATE INDEX audit_account ON audit (account_id);
COMMENT ON INDEX audit_account IS 'by account';
CREATE FUNCTION tenfold() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.amount := NEW.amount * 10; RETURN NEW; END$$;
CREATE TRIGGER audit_tenfold BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION tenfold();
CREATE TABLE readings (at date NOT NULL, value int) PARTITION BY RANGE (at);
CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO readings SELECT date '2025-01-01' + g % 365, g FROM generate_series(1, 10000) g;
CREATE INDEX readings_at ON readings (at);
CREATE MATERIALIZED VIEW account_totals AS SELECT account_id, sum(amount) AS total
  FROM audit GROUP BY account_id;
CREATE UNIQUE INDEX account_totals_id ON account_totals (account_id);
`;

/** A fingerprint of everything the restore must reproduce: rows, constraints, indexes, triggers. */
const FINGERPRINT_SQL = `
SELECT
  (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM accounts a) AS accounts,
  (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM transfers t) AS transfers,
  (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM audit a) AS audit,
  (SELECT md5(string_agg(r::text, ',' ORDER BY at, value)) FROM readings r) AS readings,
  (SELECT md5(string_agg(v::text, ',' ORDER BY account_id)) FROM account_totals v) AS totals,
  (SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname)
     FROM pg_constraint WHERE connamespace = 'public'::regnamespace) AS constraints,
  (SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text)
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE c.relnamespace = 'public'::regnamespace) AS indexes,
  (SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
  obj_description('audit_account'::regclass, 'pg_class') AS comment
`;

async function fingerprint(url: string): Promise<Record<string, string>> {
  return withClient(url, async (c) => (await c.query(FINGERPRINT_SQL)).rows[0]);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'parallel-runs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('restores with two jobs what the source holds, rows its NOT VALID constraints reject included', async () => {
  const source = await newDatabase('parallel_source');
  await withClient(source, (c) => c.query(SOURCE_SQL));
  const archivePath = path.join(dir, 'archive.pgc');
  await run(path.join(MACHINE_BIN_DIR, 'pg_dump'), [
    '--no-password',
    '--format=custom',
    `--file=${archivePath}`,
    `--dbname=${source}`,
  ]);
  const target = await newDatabase('parallel_target');
  const connection = parseConnectionString(target);

  await runPgRestore({
    pgRestore: path.join(MACHINE_BIN_DIR, 'pg_restore'),
    archivePath,
    connection,
    database: connection.database!,
    jobs: 2,
    env: process.env,
    logger: new MemoryLogger(),
  });

  const restored = await fingerprint(target);
  expect(restored).toEqual(await fingerprint(source));
  expect(restored.constraints).toMatch(/note_short:false/);
  expect(restored.constraints).toMatch(/posint_positive:false/);
  expect(restored.constraints).toMatch(/transfers_account:false/);
  expect(restored.triggers).toBe('audit_tenfold');
  // The schema, the data, keys and indexes in one run; the rest once the data was in.
  expect(readdirSync(dir).sort()).toEqual([
    'archive.pgc',
    'restore-after.list',
    'restore-main.list',
  ]);
});
