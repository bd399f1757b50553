import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { listCatalog } from '../../src/catalog/catalog.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import { runRestore, type RestoreOptions } from '../../src/drill/drill.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  uniqueName,
  type TestStore,
} from '../support/env.js';
import { newDatabase, withClient } from '../support/sample.js';

// The undo of a real restore is proved before the restore starts: the safety backup's restore
// over the target, as the same role, rehearsed and rolled back.

const PASSWORD = 'undo-app-secret-pw';
const zstdPath = findOnPath('zstd');
let tools: ClientTools;
let dir: string;
let store: TestStore;
let adminUrl: string;
let appUrl: string;
let role: string;

beforeAll(async () => {
  tools = await machineClientTools();
  dir = mkdtempSync(path.join(os.tmpdir(), 'undo-'));
  store = await makeStore('local');
  adminUrl = await newDatabase('undo');
  role = uniqueName('undo_app').replace(/-/g, '_');
  // The application's role owns public; another schema belongs to the superuser, readable by
  // the application (so its backups hold it), but not the application's to drop.
  await withClient(adminUrl, (c) =>
    c.query(`
      CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}';
      ALTER SCHEMA public OWNER TO ${role};
      SET ROLE ${role};
      CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL);
      INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
      RESET ROLE;
      CREATE SCHEMA locked;
      CREATE TABLE locked.notes (id int PRIMARY KEY, body text);
      INSERT INTO locked.notes VALUES (1, 'kept by the administrator');
      GRANT USAGE ON SCHEMA locked TO ${role};
      GRANT SELECT ON locked.notes TO ${role};`),
  );
  const url = new URL(adminUrl);
  url.username = role;
  url.password = PASSWORD;
  appUrl = url.toString();
  await runBackup(
    testBackupOptions(appUrl, 'undo', {
      selection: { schemas: ['public'], excludeSchemas: [], excludeTableData: [] },
    }),
    testBackupDeps(store.storage, tools, { zstdPath }),
  );
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
});

function restoreOptions(overrides: Partial<RestoreOptions> = {}): RestoreOptions {
  return {
    targetUrl: appUrl,
    confirm: new URL(appUrl).pathname.slice(1),
    terminateConnections: true,
    safetyBackup: true,
    jobs: 2,
    checks: [],
    postgresVersion: 'auto',
    git: {},
    ...overrides,
  };
}

const itemCount = (): Promise<number> =>
  withClient(adminUrl, async (c) =>
    Number((await c.query('SELECT count(*) AS n FROM public.items')).rows[0].n),
  );

describe('the undo of a real restore', () => {
  it('is refused before anything changes when the safety backup could not be restored back', async () => {
    await withClient(adminUrl, (c) => c.query('DELETE FROM public.items WHERE id > 40'));
    const logger = new MemoryLogger();
    const error = await runRestore(
      restoreOptions(),
      testDrillDeps(store.storage, tools, dir, { logger }),
    ).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^Refusing to restore: the undo could not be proved/);
    // The role may restore public, but the undo (the whole database) would drop locked.
    expect(error?.message).toMatch(/must be owner of schema locked/);
    expect(error?.message).toContain('Nothing was changed');
    expect(error?.message).not.toContain(PASSWORD);
    expect(logger.lines.join('\n')).not.toContain(PASSWORD);
    expect(await itemCount()).toBe(40);
    // Refused before the safety backup was taken.
    const kinds = (await listCatalog(store.storage, 'undo')).map((e) => e.manifest?.kind);
    expect(kinds).toEqual(['scheduled']);
  });

  it('is rehearsed, then the restore runs and prints the undo', async () => {
    // The undo empties the whole database and creates public again: the role needs CREATE on
    // the database (the rehearsal refuses without it, as it refuses for locked above).
    await withClient(adminUrl, (c) =>
      c.query(`REVOKE USAGE ON SCHEMA locked FROM ${role}; REVOKE SELECT ON locked.notes FROM ${role};
               DROP SCHEMA locked CASCADE;
               GRANT CREATE ON DATABASE ${new URL(adminUrl).pathname.slice(1)} TO ${role}`),
    );
    const logger = new MemoryLogger();
    const result = await runRestore(
      restoreOptions(),
      testDrillDeps(store.storage, tools, dir, { logger }),
    );
    // The role may not read data_directory: the space needed is said, the free space is not.
    expect(logger.lines).toContainEqual(
      expect.stringMatching(
        /^Preflight: .*; the restore needs about .*; the server's free space cannot be seen from here/,
      ),
    );
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('passed');
    expect(result.undoRehearsal).toMatch(
      new RegExp(`^the safety backup's restore over .* as ${role} was rehearsed`),
    );
    expect(result.targetStateText).toMatch(/confirm \(rehearsed before the restore\)\.$/);
    expect(await itemCount()).toBe(100);
  });
});
