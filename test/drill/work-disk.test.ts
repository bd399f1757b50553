import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath, runCommand } from '../../src/core/process.js';
import { runDrill, type DrillOptions } from '../../src/drill/drill.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { runVerify } from '../../src/verify/verify.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  testDrillDeps,
  testVerifyDeps,
  type TestStore,
} from '../support/env.js';
import { newDatabase, withClient } from '../support/sample.js';

// Everything a drill or a verification writes goes in its work folder, and a folder too small
// for the run fails before anything is downloaded. The folders are size-limited tmpfs mounts.

const drillOptions: DrillOptions = {
  jobs: 2,
  checks: [],
  postgresVersion: 'auto',
  git: {},
  name: 'disk',
};

async function mountTmpfs(dir: string, size: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const r = await runCommand(['mount', '-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  if (r.code !== 0) throw new Error(`mount: ${r.stderr}`);
}

async function unmount(dir: string): Promise<void> {
  await runCommand(['umount', dir]);
}

// Mounting a tmpfs needs root: CI runs as root.
(process.getuid?.() === 0 ? describe : describe.skip)('the work folder', () => {
  let tools: ClientTools;
  let store: TestStore;
  let base: string;
  const mounts: string[] = [];

  beforeAll(async () => {
    tools = await machineClientTools();
    store = await makeStore('local');
    base = mkdtempSync(path.join(os.tmpdir(), 'work-disk-'));
    const url = await newDatabase('disk');
    // About 30 MB of table and index: more than the small folder holds.
    await withClient(url, (c) =>
      c.query(`CREATE TABLE events (id bigint PRIMARY KEY, body text NOT NULL);
               INSERT INTO events SELECT g, md5(g::text) || repeat('x', 100) FROM generate_series(1, 200000) g`),
    );
    await runBackup(
      testBackupOptions(url, 'disk'),
      testBackupDeps(store.storage, tools, { zstdPath: findOnPath('zstd') }),
    );
  }, 600_000);

  afterAll(async () => {
    for (const m of mounts) await unmount(m);
    rmSync(base, { recursive: true, force: true });
  });

  it('too small for the restored database: the drill and verify fail before downloading', async () => {
    const small = path.join(base, 'small');
    await mountTmpfs(small, '8m');
    mounts.push(small);
    const error = await runDrill(drillOptions, testDrillDeps(store.storage, tools, small)).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(
      new RegExp(
        `^Not enough disk in the work folder ${small}: the run needs at least [\\d.]+ MiB ` +
          '\\(the object [\\d.]+ (KiB|MiB) and the restored database about [\\d.]+ MiB, plus the decoded archive\\), ' +
          'and [\\d.]+ MiB is free\\. Nothing was downloaded\\.',
      ),
    );
    expect(readdirSync(small)).toEqual([]);

    const report = await runVerify(
      { name: 'disk', restore: true, checks: [] },
      testVerifyDeps(store.storage, tools, { tmpDir: small }),
    );
    const decryption = report.checks.find((c) => c.name === 'Decryption and decompression');
    expect(decryption?.status).toBe('failed');
    expect(decryption?.detail).toMatch(/^Not enough disk in the work folder /);
    // The setup's failure, not the backup's: no verdict recorded.
    expect(report.recordKey).toBeUndefined();
    expect(readdirSync(small)).toEqual([]);
  }, 600_000);

  it('large enough: the drill passes with the scratch server inside it', async () => {
    const large = path.join(base, 'large');
    await mountTmpfs(large, '400m');
    mounts.push(large);
    const folders: string[] = [];
    const logger = new MemoryLogger();
    const result = await runDrill(
      drillOptions,
      testDrillDeps(store.storage, tools, large, {
        logger,
        onTemporaryFolder: (dir) => folders.push(dir),
      }),
    );
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('passed');
    expect(logger.lines).toContainEqual(
      expect.stringMatching(
        new RegExp(`^Work folder: [\\d.]+ MiB free in ${large}; needs at least`),
      ),
    );
    // The scratch server's data directory and the download folder were both in it.
    expect(folders.length).toBeGreaterThanOrEqual(2);
    for (const dir of folders) expect(dir.startsWith(`${large}/`)).toBe(true);
  }, 600_000);
});
