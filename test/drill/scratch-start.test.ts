import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { dumpObject } from '../../src/catalog/manifest.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { runCommand } from '../../src/core/process.js';
import { runDrill, type DrillOptions } from '../../src/drill/drill.js';
import { runVerify } from '../../src/verify/verify.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import type { Storage } from '../../src/storage/storage.js';
import { machineClientTools, machineServer } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  testVerifyDeps,
  type TestStore,
} from '../support/env.js';
import { newDatabase, withClient } from '../support/sample.js';

// The scratch server of a drill or a verification starts while the backup downloads. Whichever
// of the two fails, the other is waited for, and the run leaves no server and no files behind.

const drillOptions: DrillOptions = {
  jobs: 2,
  checks: [],
  postgresVersion: 'auto',
  git: {},
  name: 'overlap',
};

const STARTED = /^Started a scratch PostgreSQL /;

/** `inner`, whose reads of `key` go through `onRead` first (and never through readChunks). */
function watchedReads(inner: Storage, key: string, onRead: () => Promise<void>): Storage {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'readChunks') return undefined;
      if (prop === 'getStream') {
        return async (k: string, o?: { start?: number }) => {
          if (k === key) await onRead();
          return target.getStream(k, o);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
}

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/** Server processes whose command line names `dir`. */
async function serversIn(dir: string): Promise<string> {
  const r = await runCommand(['pgrep', '-af', dir]);
  return r.stdout.trim();
}

describe('a drill or a verification into a scratch server', () => {
  let tools: ClientTools;
  let store: TestStore;
  let base: string;
  let dumpKey: string;

  beforeAll(async () => {
    tools = await machineClientTools();
    store = await makeStore('local');
    base = mkdtempSync(path.join(os.tmpdir(), 'scratch-start-'));
    const url = await newDatabase('overlap');
    await withClient(url, (c) =>
      c.query(`CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
               INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 20000) g`),
    );
    const backup = await runBackup(
      testBackupOptions(url, 'overlap'),
      testBackupDeps(store.storage, tools),
    );
    dumpKey = dumpObject(backup.manifest).key;
  }, 600_000);

  afterAll(() => rmSync(base, { recursive: true, force: true }));

  /**
   * The store, whose read of the object waits for the scratch server to start (30 s at most): a
   * server that starts only after the download never does, and the read fails.
   */
  function readAwaitingServer(logger: MemoryLogger): {
    storage: Storage;
    startedBeforeRead: () => boolean | undefined;
  } {
    let startedBeforeRead: boolean | undefined;
    const started = (): boolean => logger.lines.some((l) => STARTED.test(l));
    const storage = watchedReads(store.storage, dumpKey, async () => {
      startedBeforeRead ??= started();
      if (!(await until(started, 30_000))) {
        throw new Error('no scratch server started while the object was being read');
      }
    });
    return { storage, startedBeforeRead: () => startedBeforeRead };
  }

  /** The store, whose read of the object fails as a dropped connection does. */
  function brokenRead(): Storage {
    return watchedReads(store.storage, dumpKey, () =>
      Promise.reject(new Error('connection reset by the store')),
    );
  }

  /** An initdb that fails as one that cannot write its data directory does. */
  function failingInitdb(): string {
    const bin = mkdtempSync(path.join(base, 'bin-'));
    chmodSync(bin, 0o755);
    const initdb = path.join(bin, 'initdb');
    writeFileSync(initdb, '#!/bin/sh\necho "initdb: could not create directory" >&2\nexit 1\n');
    chmodSync(initdb, 0o755);
    return initdb;
  }

  it.each(['disk', 'stream'] as const)(
    'starts the server while the object downloads (plan %s), and passes',
    async (plan) => {
      const work = mkdtempSync(path.join(base, `${plan}-`));
      const logger = new MemoryLogger();
      const { storage, startedBeforeRead } = readAwaitingServer(logger);
      const result = await runDrill(
        { ...drillOptions, restorePlan: plan },
        testDrillDeps(storage, tools, work, { logger }),
      );
      expect(result.error).toBeUndefined();
      expect(result.status).toBe('passed');
      expect(startedBeforeRead()).toBe(false);
      expect(result.checks.find((c) => c.name === 'Tables and row counts')?.status).toBe('passed');
      expect(readdirSync(work)).toEqual([]);
    },
    600_000,
  );

  it('fails with the download when it breaks, and stops the server that was starting', async () => {
    const work = mkdtempSync(path.join(base, 'broken-'));
    const logger = new MemoryLogger();
    const storage = brokenRead();
    const result = await runDrill(
      { ...drillOptions, restorePlan: 'disk' },
      testDrillDeps(storage, tools, work, { logger }),
    );
    expect(result.status).toBe('failed');
    const download = result.phases.find((p) => p.name === 'download');
    expect(download?.status).toBe('failed');
    expect(download?.detail).toMatch(/connection reset by the store/);
    expect(result.phases.find((p) => p.name === 'restore')?.status).toBe('skipped');
    // The server did start, beside the download, and is gone with its files.
    expect(logger.lines.some((l) => STARTED.test(l))).toBe(true);
    expect(await serversIn(work)).toBe('');
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);

  it('fails with the server when it cannot start, after the download, leaving nothing behind', async () => {
    const work = mkdtempSync(path.join(base, 'no-server-'));
    let downloaded = false;
    const storage = watchedReads(store.storage, dumpKey, () => {
      downloaded = true;
      return Promise.resolve();
    });
    const drill = runDrill(
      { ...drillOptions, restorePlan: 'disk' },
      testDrillDeps(storage, tools, work, {
        findServer: async () => ({ ...machineServer(), initdb: failingInitdb() }),
      }),
    );
    await expect(drill).rejects.toThrow(/^initdb \(PostgreSQL [\d.]+\) failed with exit 1:/);
    expect(downloaded).toBe(true);
    expect(await serversIn(work)).toBe('');
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);

  it.each(['disk', 'stream'] as const)(
    'verify starts the server while the object downloads (plan %s), and passes',
    async (plan) => {
      const work = mkdtempSync(path.join(base, `verify-${plan}-`));
      const logger = new MemoryLogger();
      const { storage, startedBeforeRead } = readAwaitingServer(logger);
      const report = await runVerify(
        { name: 'overlap', restore: true, checks: [], restorePlan: plan },
        testVerifyDeps(storage, tools, { tmpDir: work, logger }),
      );
      expect(report.failures).toEqual([]);
      expect(report.status).toBe('passed');
      expect(startedBeforeRead()).toBe(false);
      expect(report.checks.find((c) => c.name === 'Tables and row counts')?.status).toBe('passed');
      expect(await serversIn(work)).toBe('');
      expect(readdirSync(work)).toEqual([]);
    },
    600_000,
  );

  it('verify fails the object check when the download breaks, and stops the server', async () => {
    const work = mkdtempSync(path.join(base, 'verify-broken-'));
    const logger = new MemoryLogger();
    const storage = brokenRead();
    const report = await runVerify(
      { name: 'overlap', restore: true, checks: [], restorePlan: 'disk' },
      testVerifyDeps(storage, tools, { tmpDir: work, logger }),
    );
    expect(report.status).toBe('failed');
    const first = report.checks.find((c) => c.name === 'Manifest and checksum');
    expect(first?.status).toBe('failed');
    expect(first?.detail).toMatch(/connection reset by the store/);
    expect(report.checks.find((c) => c.name === 'Restore')?.status).toBe('skipped');
    expect(logger.lines.some((l) => STARTED.test(l))).toBe(true);
    expect(await serversIn(work)).toBe('');
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);

  it.each([
    [
      'cannot start',
      async () => ({ ...machineServer(), initdb: failingInitdb() }),
      /initdb \(PostgreSQL [\d.]+\) failed with exit 1:/,
    ],
    [
      'cannot find',
      () => Promise.reject(new Error('No PostgreSQL server 15 or newer is installed')),
      /No PostgreSQL server 15 or newer is installed/,
    ],
  ] as const)(
    'verify reports a server it %s at the preflight, after the object checks',
    async (_how, findServer, detail) => {
      const work = mkdtempSync(path.join(base, 'verify-no-server-'));
      const report = await runVerify(
        { name: 'overlap', restore: true, checks: [], restorePlan: 'disk' },
        testVerifyDeps(store.storage, tools, { tmpDir: work, findServer }),
      );
      expect(report.checks.slice(0, 4).map((c) => [c.name, c.status])).toEqual([
        ['Manifest and checksum', 'passed'],
        ['Decryption and decompression', 'passed'],
        ['Archive readable (pg_restore --list)', 'passed'],
        ['Preflight (target, extensions, roles)', 'failed'],
      ]);
      expect(report.checks[3].detail).toMatch(detail);
      expect(await serversIn(work)).toBe('');
      expect(readdirSync(work)).toEqual([]);
    },
    600_000,
  );
});
