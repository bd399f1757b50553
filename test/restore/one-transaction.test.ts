/**
 * One session restores in one transaction on a scratch server: its tables then load without
 * writing the log, as long as the server's lock table holds a lock on every object it creates.
 * Real pg_dump, pg_restore and servers with the scratch server's settings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryLogger } from '../../src/core/logger.js';
import {
  RESTORE_SERVER_SETTINGS,
  startScratchCluster,
  type ScratchCluster,
} from '../../src/postgres/cluster.js';
import { parseConnectionString } from '../../src/postgres/connection.js';
import { listArchive, lockTableHolds, runPgRestore } from '../../src/restore/pg-restore.js';
import { machineServer, MACHINE_BIN_DIR } from '../support/embedded.js';
import { runToBuffer as run } from '../support/run.js';
import { withClient } from '../support/sample.js';

const pgRestore = path.join(MACHINE_BIN_DIR, 'pg_restore');
let dir: string;
let scratch: ScratchCluster;
let small: ScratchCluster;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'one-transaction-'));
  const logger = new MemoryLogger();
  scratch = await startScratchCluster({
    server: machineServer(),
    logger,
    settings: { ...RESTORE_SERVER_SETTINGS },
  });
  // A lock table of 5 × 20 slots, and the backends PostgreSQL adds to it.
  small = await startScratchCluster({
    server: machineServer(),
    logger,
    settings: {
      ...RESTORE_SERVER_SETTINGS,
      max_locks_per_transaction: '10',
      max_connections: '20',
    },
  });
}, 60_000);
afterAll(async () => {
  await scratch?.stop();
  await small?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function createDatabase(cluster: ScratchCluster, name: string): Promise<string> {
  await withClient(cluster.url('postgres'), (c) => c.query(`CREATE DATABASE ${name}`));
  return cluster.url(name);
}

async function dump(url: string, name: string): Promise<string> {
  const file = path.join(dir, `${name}.pgc`);
  await run(path.join(MACHINE_BIN_DIR, 'pg_dump'), [
    '--no-password',
    '--format=custom',
    `--file=${file}`,
    `--dbname=${url}`,
  ]);
  return file;
}

/** Restores `archivePath` into a new database of `cluster`; the log it wrote, in bytes. */
async function restore(
  cluster: ScratchCluster,
  archivePath: string,
  database: string,
  singleTransaction: boolean,
): Promise<number> {
  const url = await createDatabase(cluster, database);
  const lsn = () =>
    withClient(cluster.url('postgres'), (c) =>
      c
        .query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')
        .then((r) => r.rows[0].lsn),
    );
  const before = await lsn();
  await runPgRestore({
    pgRestore,
    archivePath,
    connection: parseConnectionString(url),
    database,
    jobs: 1,
    singleTransaction,
    env: process.env,
    logger: new MemoryLogger(),
  });
  return withClient(cluster.url('postgres'), (c) =>
    c
      .query<{ bytes: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes', [
        before,
      ])
      .then((r) => Number(r.rows[0].bytes)),
  );
}

it('loads the rows without writing them to the log, and restores the same rows', async () => {
  const source = await createDatabase(scratch, 'rows_source');
  const fingerprint = (url: string) =>
    withClient(url, (c) =>
      c
        .query<{ rows: number; sum: string }>(
          "SELECT count(*)::int AS rows, md5(string_agg(note, ',' ORDER BY id)) AS sum FROM notes",
        )
        .then((r) => r.rows[0]),
    );
  await withClient(source, (c) =>
    c.query(`CREATE TABLE notes (id int PRIMARY KEY, note text NOT NULL);
      INSERT INTO notes SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;`),
  );
  const tableBytes = await withClient(source, (c) =>
    c
      .query<{ bytes: string }>("SELECT pg_table_size('notes')::text AS bytes")
      .then((r) => Number(r.rows[0].bytes)),
  );
  const archive = await dump(source, 'rows');

  const logged = await restore(scratch, archive, 'rows_logged', false);
  const inOne = await restore(scratch, archive, 'rows_in_one', true);

  expect(logged).toBeGreaterThan(tableBytes / 2);
  expect(inOne).toBeLessThan(tableBytes / 20);
  expect(await fingerprint(scratch.url('rows_in_one'))).toEqual(await fingerprint(source));
  expect(await fingerprint(scratch.url('rows_logged'))).toEqual(await fingerprint(source));
}, 120_000);

it('is taken only when the lock table holds a lock on every object the archive creates', async () => {
  const source = await createDatabase(scratch, 'many_source');
  await withClient(source, (c) =>
    c.query(`DO $$ BEGIN FOR i IN 1..100 LOOP
      EXECUTE format('CREATE TABLE t%s (id serial PRIMARY KEY, v text); CREATE INDEX ON t%s (v)', i, i);
    END LOOP; END $$`),
  );
  const archive = await dump(source, 'many');
  const { entries } = await listArchive(pgRestore, archive);
  expect(entries).toBeGreaterThan(500);

  const holds = (cluster: ScratchCluster) =>
    withClient(cluster.url('postgres'), (c) => lockTableHolds(c, entries));
  expect(await holds(scratch)).toBe(true);
  expect(await holds(small)).toBe(false);

  // What the check keeps a restore from: the small server runs out of locks in one transaction.
  await expect(restore(small, archive, 'many_in_one', true)).rejects.toThrow(
    /max_locks_per_transaction/,
  );
  await restore(small, archive, 'many_logged', false);
  await restore(scratch, archive, 'many_in_one', true);
  for (const [cluster, database] of [
    [small, 'many_logged'],
    [scratch, 'many_in_one'],
  ] as const) {
    const tables = await withClient(cluster.url(database), (c) =>
      c
        .query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'",
        )
        .then((r) => r.rows[0].n),
    );
    expect(tables).toBe(100);
  }
}, 120_000);
