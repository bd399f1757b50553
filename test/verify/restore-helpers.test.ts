import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { runBackup, type BackupOptions } from '../../src/backup/backup.js';
import { manifestKey } from '../../src/catalog/keys.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { readManifest } from '../../src/catalog/catalog.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import { AgeError, generateIdentity } from '../../src/crypto/age.js';
import { connect } from '../../src/postgres/connection.js';
import { type ClientTools } from '../../src/postgres/tools.js';
import {
  compareTables,
  legacyConstraintsAndSequences,
  parseChecks,
  runUserChecks,
  splitSql,
} from '../../src/restore/checks.js';
import {
  IntegrityError,
  checkObject,
  decodeSteps,
  fetchArchive,
  fetchGlobals,
} from '../../src/restore/fetch.js';
import {
  applyGlobals,
  listArchive,
  parseArchiveListing,
  runPgRestore,
} from '../../src/restore/pg-restore.js';
import { givenTarget, scratchTarget } from '../../src/restore/target.js';
import { compareWithSource } from '../../src/restore/source-checks.js';
import type { Storage } from '../../src/storage/storage.js';
import { machineClientTools, machineServer } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  sharedPostgresUrl,
  uniqueName,
  type TestStore,
} from '../support/env.js';
import {
  loadSample,
  newDatabase,
  rowCounts,
  urlOfDatabase,
  withClient,
} from '../support/sample.js';

const PASSWORD = 'source-secret-pw';
const zstdPath = findOnPath('zstd');

let tools: ClientTools;
let sourceUrl: string;

beforeAll(async () => {
  tools = await machineClientTools();
  sourceUrl = await newDatabase('helpers');
  await loadSample(sourceUrl);
});

function backupOptions(name: string, overrides: Partial<BackupOptions> = {}): BackupOptions {
  return testBackupOptions(sourceUrl, name, { kind: 'manual', ...overrides });
}

async function backup(
  storage: Storage,
  name: string,
  overrides: Partial<BackupOptions> = {},
): Promise<Manifest> {
  const result = await runBackup(
    backupOptions(name, overrides),
    testBackupDeps(storage, tools, { zstdPath }),
  );
  return result.manifest;
}

function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'helpers-'));
}

/** A store whose downloads fail after `bytes` bytes, as a dropped connection does. */
function failingAfter(storage: Storage, bytes: number): Storage {
  return Object.assign(Object.create(storage) as Storage, {
    // Every read goes through the failing stream, not the folder's own reader.
    readChunks: undefined,
    async getStream(key: string): Promise<Readable> {
      const data = await storage.getBytes(key);
      if (!data) throw new Error(`no ${key}`);
      return new Readable({
        read() {
          this.push(data.subarray(0, bytes));
          this.destroy(new Error('connection reset by peer'));
        },
      });
    },
  });
}

describe('pure helpers', () => {
  it('names the steps from a stored object to the archive, none when it is the archive', () => {
    const of = (m: Pick<Manifest, 'format' | 'compression' | 'encryption'>) =>
      decodeSteps(m as Manifest);
    const age = { scheme: 'age' as const, recipients: ['age1x'], passphrase: false };
    expect(
      of({ format: 'custom', compression: { method: 'zstd', level: 1 }, encryption: age }),
    ).toEqual(['age', 'zstd']);
    expect(
      of({ format: 'directory', compression: { method: 'gzip', level: 6 }, encryption: null }),
    ).toEqual(['gzip', 'tar']);
    expect(
      of({ format: 'custom', compression: { method: 'pg_dump-gzip', level: 6 }, encryption: null }),
    ).toEqual([]);
    expect(of({ format: 'custom', compression: { method: 'none' }, encryption: null })).toEqual([]);
  });

  it('reads constraints and table data from a pg_restore --list text', () => {
    const listing = parseArchiveListing(
      [
        ';',
        '; Archive created at 2026-01-01 00:00:00 UTC',
        '215; 1259 16390 TABLE app customers postgres',
        '3380; 0 16390 TABLE DATA app customers postgres',
        '3227; 2606 16401 CONSTRAINT app customers customers_pkey postgres',
        '3229; 2606 16403 FK CONSTRAINT app orders orders_customer_id_fkey postgres',
        '3230; 2606 16404 CHECK CONSTRAINT public t t_check postgres',
        '3231; 2606 16405 CONSTRAINT public my table odd name postgres',
        '; 3232; 2606 16406 CONSTRAINT public t commented_out postgres',
      ].join('\n'),
    );
    expect(listing.entries).toBe(6);
    expect(listing.tableData).toBe(1);
    expect(listing.constraints).toEqual([
      { kind: 'CONSTRAINT', schema: 'app', table: 'customers', name: 'customers_pkey' },
      {
        kind: 'FK CONSTRAINT',
        schema: 'app',
        table: 'orders',
        name: 'orders_customer_id_fkey',
      },
      { kind: 'CHECK CONSTRAINT', schema: 'public', table: 't', name: 't_check' },
    ]);
  });

  it('splits SQL at top-level semicolons only', () => {
    expect(
      splitSql(`
        -- a comment; with a semicolon
        SELECT 'a;b' AS x;
        /* block; comment */ SELECT "odd;name" FROM t;
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
        SELECT $$;$$ ;;
      `),
    ).toEqual([
      "-- a comment; with a semicolon\n        SELECT 'a;b' AS x",
      '/* block; comment */ SELECT "odd;name" FROM t',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$',
      'SELECT $$;$$',
    ]);
  });

  it('reads checks inline or from .sql files relative to the workspace', () => {
    const workspace = tempDir();
    try {
      writeFileSync(
        path.join(workspace, 'checks.sql'),
        'SELECT 1 WHERE false;\n-- orphans\nSELECT id FROM t WHERE x IS NULL;\n',
      );
      writeFileSync(path.join(workspace, 'one.sql'), 'SELECT 2 WHERE false');
      expect(parseChecks('checks.sql\none.sql', workspace)).toEqual([
        { name: 'checks.sql #1', sql: 'SELECT 1 WHERE false' },
        { name: 'checks.sql #2', sql: '-- orphans\nSELECT id FROM t WHERE x IS NULL' },
        { name: 'one.sql', sql: 'SELECT 2 WHERE false' },
      ]);
      expect(parseChecks('SELECT 1 WHERE false; SELECT 2 WHERE false', workspace)).toEqual([
        { name: 'SELECT 1 WHERE false', sql: 'SELECT 1 WHERE false' },
        { name: 'SELECT 2 WHERE false', sql: 'SELECT 2 WHERE false' },
      ]);
      expect(parseChecks('  ', workspace)).toEqual([]);
      expect(() => parseChecks('db/missing.sql', workspace)).toThrow(ConfigurationError);
      expect(() => parseChecks('db/missing.sql', workspace)).toThrow(
        /Input 'checks' names db\/missing\.sql, which does not exist/,
      );
    } finally {
      rmSync(workspace, { recursive: true, force: true });
    }
  });
});

describe.each(['s3', 'local'] as const)('fetching backups from %s storage', (kind) => {
  let store: TestStore;
  const key = generateIdentity();
  let encrypted: Manifest;

  beforeAll(async () => {
    store = await makeStore(kind);
    encrypted = await backup(store.storage, 'enc', {
      encryption: { recipients: [key.recipient] },
      globals: true,
    });
  });

  it('streams the object to a restorable archive, checked against the manifest', async () => {
    const dir = tempDir();
    try {
      const checked: { bytes: number; sha256: string }[] = [];
      const result = await fetchArchive({
        storage: store.storage,
        manifest: encrypted,
        decryption: { identities: [key.identity] },
        tools: { zstdPath },
        dir,
        logger: new MemoryLogger(),
        onIntegrityChecked: (o) => checked.push(o),
      });
      expect(result.sha256).toBe(encrypted.objects[0].sha256);
      // The decoded archive holds the data in the clear: its owner alone reads it.
      expect(statSync(result.archivePath).mode & 0o777).toBe(0o600);
      expect(checked).toEqual([{ bytes: encrypted.objects[0].bytes, sha256: result.sha256 }]);
      const listing = await listArchive(tools.pgRestore, result.archivePath);
      expect(listing.tableData).toBeGreaterThanOrEqual(5);
      expect(listing.constraints.map((c) => `${c.schema}.${c.name}`)).toEqual(
        expect.arrayContaining([
          'app.customers_pkey',
          'app.customers_email_key',
          'app.orders_customer_id_fkey',
        ]),
      );
      expect(await checkObject(store.storage, encrypted.objects[0])).toEqual({
        bytes: encrypted.objects[0].bytes,
        sha256: encrypted.objects[0].sha256,
      });

      const globals = await fetchGlobals({
        storage: store.storage,
        manifest: encrypted,
        decryption: { identities: [key.identity] },
        dir,
      });
      expect(globals).toBeDefined();
      expect(readFileSync(globals!, 'utf8')).toMatch(/CREATE ROLE/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a wrong key as an age error once the object itself is intact', async () => {
    const dir = tempDir();
    try {
      const checked: unknown[] = [];
      await expect(
        fetchArchive({
          storage: store.storage,
          manifest: encrypted,
          decryption: { identities: [generateIdentity().identity] },
          tools: { zstdPath },
          dir,
          logger: new MemoryLogger(),
          onIntegrityChecked: (o) => checked.push(o),
        }),
      ).rejects.toThrow(AgeError);
      expect(checked).toHaveLength(1);
      await expect(
        fetchArchive({
          storage: store.storage,
          manifest: encrypted,
          tools: { zstdPath },
          dir,
          logger: new MemoryLogger(),
        }),
      ).rejects.toThrow(/set input 'encryption-identity'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports damage as an integrity error even when it breaks decryption first', async () => {
    const manifest = await backup(store.storage, 'damaged', {
      encryption: { recipients: [key.recipient] },
    });
    const entry = manifest.objects[0];
    const original = (await store.storage.getBytes(entry.key))!;
    const dir = tempDir();
    try {
      // One flipped byte in the middle of the age payload: decryption fails on that chunk.
      const flipped = Buffer.from(original);
      flipped[Math.floor(flipped.length / 2)] ^= 0xff;
      await store.storage.putBytes(entry.key, flipped);
      const checked: unknown[] = [];
      const flippedRun = fetchArchive({
        storage: store.storage,
        manifest,
        decryption: { identities: [key.identity] },
        tools: { zstdPath },
        dir,
        logger: new MemoryLogger(),
        onIntegrityChecked: (o) => checked.push(o),
      });
      await expect(flippedRun).rejects.toThrow(IntegrityError);
      await expect(flippedRun).rejects.toThrow(/changed, corrupted or replaced/);
      expect(checked).toEqual([]);
      await expect(checkObject(store.storage, entry)).rejects.toThrow(IntegrityError);

      await store.storage.putBytes(entry.key, original.subarray(0, original.length - 1000));
      await expect(
        fetchArchive({
          storage: store.storage,
          manifest,
          decryption: { identities: [key.identity] },
          tools: { zstdPath },
          dir,
          logger: new MemoryLogger(),
        }),
      ).rejects.toThrow(/bytes but the manifest says \d+: the object is truncated/);
    } finally {
      await store.storage.putBytes(entry.key, original);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails, rather than hangs, when the download breaks off', async () => {
    const dir = tempDir();
    try {
      await expect(
        fetchArchive({
          storage: failingAfter(store.storage, 4096),
          manifest: encrypted,
          decryption: { identities: [key.identity] },
          tools: { zstdPath },
          dir,
          logger: new MemoryLogger(),
        }),
      ).rejects.toThrow(/connection reset by peer/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('restoring and checking what the restored database holds', () => {
  let store: TestStore;
  let manifest: Manifest;
  let archivePath: string;
  let dir: string;

  beforeAll(async () => {
    store = await makeStore('local');
    manifest = await backup(store.storage, 'plain', { compression: { method: 'gzip' } });
    dir = tempDir();
    archivePath = (
      await fetchArchive({
        storage: store.storage,
        manifest,
        tools: {},
        dir,
        logger: new MemoryLogger(),
      })
    ).archivePath;
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('restores into a throwaway cluster and finds every table, constraint and sequence', async () => {
    const logger = new MemoryLogger();
    const target = await scratchTarget({ server: machineServer(), logger });
    try {
      expect(target.scratch).toBeDefined();
      expect(target.serverMajor).toBe(15);
      await runPgRestore({
        pgRestore: tools.pgRestore,
        archivePath,
        connection: target.connection,
        database: target.database,
        jobs: 2,
        env: process.env,
        logger,
      });
      const client = await connect(target.connection, target.database);
      try {
        const { result, comparison } = await compareTables(client, manifest);
        expect(result.status).toBe('passed');
        expect(comparison.every((c) => c.status === 'same')).toBe(true);
        expect(comparison.map((c) => c.table)).toEqual(
          expect.arrayContaining(['app.orders_2025', 'app.orders_2026', 'public.documents']),
        );
        const [constraints, sequences, ...others] = await compareWithSource(
          client,
          manifest,
          manifest.sourceState!,
        );
        expect(constraints.status).toBe('passed');
        expect(constraints.detail).toMatch(
          /^all \d+ constraints of the source restored as they were/,
        );
        expect(constraints.detail).toMatch(/foreign keys/);
        expect(sequences.status).toBe('passed');
        expect(sequences.detail).toMatch(/^all \d+ sequences at the source's values/);
        expect(others.map((c) => [c.name, c.status])).toEqual([
          ['Row security and policies', 'passed'],
          ['Extensions', 'passed'],
          ['Large objects', 'passed'],
          ['Database settings', 'passed'],
        ]);
      } finally {
        await client.end();
      }
    } finally {
      await target.cleanup();
    }
    expect(target.scratch?.dataDir).toBeDefined();
  });

  it('names missing, extra and differing tables, missing constraints and lagging sequences', async () => {
    const logger = new MemoryLogger();
    const url = await newDatabase('broken');
    const target = await givenTarget({ url, logger });
    try {
      await runPgRestore({
        pgRestore: tools.pgRestore,
        archivePath,
        connection: target.connection,
        database: target.database,
        jobs: 1,
        env: process.env,
        logger,
      });
      await withClient(url, async (c) => {
        await c.query('DELETE FROM audit.events');
        await c.query('DELETE FROM public.documents WHERE id = 200');
        await c.query('DROP TABLE app.orders_2025');
        await c.query('CREATE TABLE public.stray (id int)');
        await c.query('ALTER TABLE app.customers DROP CONSTRAINT customers_email_key');
        await c.query(
          'ALTER TABLE public.documents ADD CONSTRAINT title_short CHECK (length(title) < 3) NOT VALID',
        );
        await c.query("SELECT setval('public.documents_id_seq', 5)");
        // A sequence that feeds a column only through its default, as Pagila's do.
        await c.query('CREATE SEQUENCE public.ticket_seq');
        await c.query(
          "CREATE TABLE public.tickets (id int DEFAULT nextval('public.ticket_seq') PRIMARY KEY)",
        );
        await c.query('INSERT INTO public.tickets VALUES (1), (2), (3)');
      });
      const client = await connect(target.connection, target.database);
      try {
        const { result, comparison } = await compareTables(client, manifest);
        expect(result.status).toBe('failed');
        expect(result.detail).toMatch(/missing: app\.orders_2025/);
        expect(result.detail).toMatch(/not in the manifest: public\.stray/);
        expect(result.detail).toMatch(/public\.documents 200 in the manifest, 199 restored/);
        expect(comparison).toContainEqual({
          table: 'public.documents',
          expected: 200,
          actual: 199,
          status: 'differs',
        });
        const [constraints, sequences] = await compareWithSource(
          client,
          manifest,
          manifest.sourceState!,
        );
        expect(constraints.status).toBe('failed');
        expect(constraints.detail).toMatch(
          /missing after the restore: app\.customers\.customers_email_key/,
        );
        expect(sequences.status).toBe('failed');
        expect(sequences.detail).toMatch(
          /behind the source: public\.documents_id_seq restored at 5, the source was at 200/,
        );

        // A manifest of schema version 1 gets the checks of its time, labelled so: a sequence
        // behind its column is a note (the source may hold it so), a NOT VALID constraint the
        // source's state.
        const listing = await listArchive(tools.pgRestore, archivePath);
        const [legacy, legacySequences] = await legacyConstraintsAndSequences(
          client,
          listing.constraints,
        );
        expect(legacy.status).toBe('failed');
        expect(legacy.detail).toMatch(/app\.customers\.customers_email_key/);
        expect(legacy.detail).toMatch(/manifest of schema version 1/);
        expect(legacySequences.status).toBe('passed');
        expect(legacySequences.detail).toMatch(
          /note: .*public\.ticket_seq would hand out 1, but public\.tickets\.id already holds 3/,
        );
        const [notValid] = await legacyConstraintsAndSequences(client);
        expect(notValid.status).toBe('passed');
        expect(notValid.detail).toMatch(/NOT VALID .*public\.documents\.title_short/);

        const checks = await runUserChecks(client, [
          { name: 'nothing', sql: 'SELECT 1 WHERE false' },
          { name: 'rows', sql: 'SELECT id, title FROM public.documents WHERE id <= 2 ORDER BY id' },
          { name: 'broken', sql: 'SELECT * FROM no_such_table' },
          { name: 'writes', sql: 'DELETE FROM public.documents' },
        ]);
        expect(checks.map((c) => [c.name, c.status])).toEqual([
          ['Check: nothing', 'passed'],
          ['Check: rows', 'failed'],
          ['Check: broken', 'failed'],
          ['Check: writes', 'failed'],
        ]);
        expect(checks[1].rows).toEqual([
          { id: 1, title: 'doc 1' },
          { id: 2, title: 'doc 2' },
        ]);
        expect(checks[1].detail).toMatch(/^2 failing row\(s\)/);
        expect(checks[2].detail).toMatch(/relation "no_such_table" does not exist/);
        expect(checks[3].detail).toMatch(/read-only transaction/);
      } finally {
        await client.end();
      }
      expect((await rowCounts(url))['public.documents']).toBe(199);
    } finally {
      await target.cleanup();
    }
  });

  it('creates a missing target database and drops it afterwards; refuses a non-empty one', async () => {
    const logger = new MemoryLogger();
    const name = uniqueName('fresh').replace(/-/g, '_');
    const target = await givenTarget({ url: urlOfDatabase(sharedPostgresUrl(), name), logger });
    expect(logger.lines).toContain(`Created database ${name} to restore into`);
    expect(target.serverMajor).toBe(15);
    expect(target.describe).not.toContain(PASSWORD);
    const exists = (): Promise<number> =>
      withClient(sharedPostgresUrl(), async (c) => {
        const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        return r.rowCount ?? 0;
      });
    expect(await exists()).toBe(1);
    await target.cleanup();
    expect(await exists()).toBe(0);

    await expect(givenTarget({ url: sourceUrl, logger })).rejects.toThrow(
      /is not empty \(\d+ tables, views or sequences\)/,
    );
    const wrong = new URL(sourceUrl);
    wrong.password = 'not-the-password';
    const error = await givenTarget({ url: wrong.toString(), logger }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toMatch(/target-url/);
    expect((error as Error).message).not.toMatch(/database-url/);
    expect((error as Error).message).not.toContain('not-the-password');
  });

  it('applies the roles of a globals backup before the restore', async () => {
    const globalsStore = await makeStore('local');
    await withClient(sharedPostgresUrl(), (c) =>
      c.query(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'verify_reader') THEN CREATE ROLE verify_reader NOLOGIN; END IF; END $$",
      ),
    );
    const withGlobals = await backup(globalsStore.storage, 'roles', { globals: true });
    expect(withGlobals.globals).toBe(true);
    const gdir = tempDir();
    const logger = new MemoryLogger();
    const target = await scratchTarget({ server: machineServer(), logger });
    try {
      const file = await fetchGlobals({
        storage: globalsStore.storage,
        manifest: withGlobals,
        dir: gdir,
      });
      await applyGlobals({
        psql: tools.psql,
        file: file!,
        connection: target.connection,
        user: target.user,
        env: process.env,
        logger,
      });
      const client = await connect(target.connection, 'postgres');
      try {
        const r = await client.query("SELECT 1 FROM pg_roles WHERE rolname = 'verify_reader'");
        expect(r.rowCount).toBe(1);
      } finally {
        await client.end();
      }
      expect(logger.lines.filter((l) => l.startsWith('warning:'))).toEqual([]);
      const m = await readManifest(globalsStore.storage, 'roles', withGlobals.id);
      expect(m?.objects.map((o) => o.role)).toEqual(['dump', 'globals']);
      expect(await globalsStore.storage.head(manifestKey('roles', withGlobals.id))).toBeDefined();
    } finally {
      await target.cleanup();
      rmSync(gdir, { recursive: true, force: true });
    }
  });
});
