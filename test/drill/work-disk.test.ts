import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { dumpObject, type Manifest } from '../../src/catalog/manifest.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { findOnPath, runCommand } from '../../src/core/process.js';
import { runDrill, type DrillOptions } from '../../src/drill/drill.js';
import { planNeeds, workDiskNeed } from '../../src/restore/disk.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { verifyMarkdown } from '../../src/verify/report.js';
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

// Everything a drill or a verification writes goes in its work folder; the restore plan is chosen
// from its free space (the archive on disk, or streamed into pg_restore), and a folder too small
// for either fails before anything is downloaded. The folders are size-limited tmpfs mounts.

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
  let manifest: Manifest;
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
    const backup = await runBackup(
      testBackupOptions(url, 'disk'),
      testBackupDeps(store.storage, tools, { zstdPath: findOnPath('zstd') }),
    );
    manifest = backup.manifest;
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
    const size = '[\\d.]+ (KiB|MiB)';
    expect(error?.message).toMatch(
      new RegExp(
        `^Not enough disk in the work folder ${small}: ` +
          `the archive on disk needs ${size} \\(the object ${size}; the decoded archive ${size}; ` +
          `the restored database with its write-ahead log about ${size}\\), ` +
          `and streamed it needs ${size} \\(the restored database with its write-ahead log about ${size}\\); ` +
          `${size} is free\\. Nothing was downloaded\\.`,
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
        new RegExp(
          `^Restore plan: disk: it fits: about [\\d.]+ MiB \\(.*\\), [\\d.]+ MiB free in ${large}$`,
        ),
      ),
    );
    expect(result.restorePlan?.name).toBe('disk');
    // The scratch server's data directory and the download folder were both in it.
    expect(folders.length).toBeGreaterThanOrEqual(2);
    for (const dir of folders) expect(dir.startsWith(`${large}/`)).toBe(true);
  }, 600_000);

  it('too small for the archive on disk, large enough streamed: the drill streams and says so', async () => {
    const needs = planNeeds(workDiskNeed(manifest, { downloads: true, scratch: true }));
    expect(needs.stream).toBeLessThan(needs.disk);
    const medium = path.join(base, 'medium');
    const mib = Math.floor((needs.stream + needs.disk) / 2 / 1024 / 1024);
    await mountTmpfs(medium, `${mib}m`);
    mounts.push(medium);
    const logger = new MemoryLogger();
    const result = await runDrill(
      drillOptions,
      testDrillDeps(store.storage, tools, medium, { logger }),
    );
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('passed');
    expect(result.restorePlan?.name).toBe('stream');
    expect(result.restorePlan?.why).toMatch(
      new RegExp(
        `^the archive on disk does not fit \\(about [\\d.]+ MiB .*\\), [\\d.]+ MiB free in ${medium}\\); streamed, it needs about [\\d.]+ MiB`,
      ),
    );
    // What the run wrote at its peak stayed within the folder, and was measured.
    expect(result.restorePlan?.peakDiskBytes).toBeGreaterThan(0);
    expect(result.restorePlan?.peakDiskBytes).toBeLessThanOrEqual(mib * 1024 * 1024);
    const restore = result.phases.find((p) => p.name === 'restore');
    expect(restore?.detail).toMatch(/reading the archive as it streamed/);
    expect(restore?.detail).toMatch(/^plan stream \(the archive on disk does not fit/);
    expect(restore?.detail).toMatch(
      /peak disk used in the work folder [\d.]+ MiB, the restored database [\d.]+ MiB/,
    );
    expect(result.checks.find((c) => c.name === 'Tables and row counts')?.status).toBe('passed');
    expect(readdirSync(medium)).toEqual([]);
  }, 600_000);

  /** A backup of `name` whose object had one letter changed after the backup. */
  async function flippedBackup(name: string): Promise<void> {
    const url = await newDatabase(`disk_${name}`);
    await withClient(url, (c) =>
      c.query(`CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
               INSERT INTO notes SELECT g, 'note ' || g || ' ' || repeat('x', 40) FROM generate_series(1, 5000) g`),
    );
    // Not compressed: one changed letter still restores, and only the SHA-256 tells.
    const backup = await runBackup(
      testBackupOptions(url, name, { compression: { method: 'none' } }),
      testBackupDeps(store.storage, tools),
    );
    const entry = dumpObject(backup.manifest);
    const bytes = (await store.storage.getBytes(entry.key)) as Buffer;
    const at = bytes.indexOf('note 2500 ');
    expect(at).toBeGreaterThan(0);
    bytes[at] = 'N'.charCodeAt(0);
    await store.storage.putBytes(entry.key, bytes);
  }

  it('streamed, an object changed after the backup fails: the restored data must not be trusted', async () => {
    await flippedBackup('flip');
    const work = mkdtempSync(path.join(base, 'flip-'));
    const result = await runDrill(
      { ...drillOptions, name: 'flip', restorePlan: 'stream' },
      testDrillDeps(store.storage, tools, work),
    );
    expect(result.status).toBe('failed');
    const restore = result.phases.find((p) => p.name === 'restore');
    expect(restore?.status).toBe('failed');
    expect(restore?.detail).toMatch(
      /has SHA-256 [0-9a-f]{64} but the manifest says [0-9a-f]{64}: the object was changed, corrupted or replaced after the backup\. The restore read the object as it streamed, so the restored data must not be trusted; the database it went into is discarded\.$/,
    );
    expect(result.error).toMatch(/^Restore failed: .*must not be trusted/);
    expect(result.restorePlan).toBeUndefined();
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);

  it('too small for the archive on disk, large enough streamed: verify streams and says so', async () => {
    const needs = planNeeds(workDiskNeed(manifest, { downloads: false, scratch: true }));
    expect(needs.stream).toBeLessThan(needs.disk);
    const medium = path.join(base, 'verify-medium');
    const mib = Math.floor((needs.stream + needs.disk) / 2 / 1024 / 1024);
    await mountTmpfs(medium, `${mib}m`);
    mounts.push(medium);
    const logger = new MemoryLogger();
    const report = await runVerify(
      { name: 'disk', restore: true, checks: [] },
      testVerifyDeps(store.storage, tools, { tmpDir: medium, logger }),
    );
    expect(report.failures).toEqual([]);
    expect(report.status).toBe('passed');
    expect(report.restorePlan?.name).toBe('stream');
    expect(report.restorePlan?.why).toMatch(
      new RegExp(
        `^the archive on disk does not fit \\(about [\\d.]+ MiB .*\\), [\\d.]+ MiB free in ${medium}/pg-verify-\\w+\\); streamed, it needs about [\\d.]+ MiB`,
      ),
    );
    expect(report.restorePlan?.peakDiskBytes).toBeGreaterThan(0);
    expect(report.restorePlan?.peakDiskBytes).toBeLessThanOrEqual(mib * 1024 * 1024);
    expect(report.restorePlan?.restoredBytes).toBeGreaterThan(0);
    // Every check of the chain, in its order, though the checksum is known only after the restore.
    expect(report.checks.slice(0, 6).map((c) => [c.name, c.status])).toEqual([
      ['Manifest and checksum', 'passed'],
      ['Decryption and decompression', 'passed'],
      ['Archive readable (pg_restore --list)', 'passed'],
      ['Preflight (target, extensions, roles)', 'passed'],
      ['Restore', 'passed'],
      ['Tables and row counts', 'passed'],
    ]);
    const detail = (name: string): string =>
      report.checks.find((c) => c.name === name)?.detail ?? '';
    expect(detail('Manifest and checksum')).toMatch(
      /as the manifest records; checked as the object streamed into pg_restore$/,
    );
    expect(detail('Decryption and decompression')).toBe(
      'not encrypted; decompressed zstd; the custom archive streamed into pg_restore, which restored it, not written to disk',
    );
    expect(detail('Archive readable (pg_restore --list)')).toMatch(
      /from the table of contents read ahead of the stream; pg_restore then reads the whole archive as it streams$/,
    );
    expect(detail('Restore')).toMatch(
      /: plan stream \(the archive on disk does not fit .*\); peak disk used in the work folder [\d.]+ MiB, the restored database [\d.]+ MiB; pg_restore .* reading the archive as it streamed/,
    );
    expect(verifyMarkdown(report)).toMatch(
      /\| \*\*Restore plan\*\* \| plan stream \(the archive on disk/,
    );
    expect(report.recordKey).toBeDefined();
    expect(readdirSync(medium)).toEqual([]);
  }, 600_000);

  it('verify streamed without restoring: pg_restore reads the whole archive from the stream', async () => {
    const work = mkdtempSync(path.join(base, 'verify-read-'));
    const report = await runVerify(
      { name: 'disk', restore: false, checks: [], restorePlan: 'stream' },
      testVerifyDeps(store.storage, tools, { tmpDir: work }),
    );
    expect(report.failures).toEqual([]);
    expect(report.restorePlan).toMatchObject({ name: 'stream', restoredBytes: undefined });
    expect(report.restorePlan?.why).toMatch(/^restore-plan stream; it needs about 0 B/);
    expect(report.checks.find((c) => c.name === 'Decryption and decompression')?.detail).toMatch(
      /streamed into pg_restore, which read every entry \(--file=\/dev\/null\), not written to disk$/,
    );
    expect(report.checks.find((c) => c.name === 'Restore')?.status).toBe('skipped');
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);

  it('verify streamed, an object changed after the backup fails: the restored data must not be trusted', async () => {
    await flippedBackup('vflip');
    const work = mkdtempSync(path.join(base, 'vflip-'));
    const report = await runVerify(
      { name: 'vflip', restore: true, checks: [], restorePlan: 'stream' },
      testVerifyDeps(store.storage, tools, { tmpDir: work }),
    );
    expect(report.status).toBe('failed');
    const check = (name: string) => report.checks.find((c) => c.name === name);
    expect(check('Manifest and checksum')?.status).toBe('failed');
    expect(check('Manifest and checksum')?.detail).toMatch(
      /has SHA-256 [0-9a-f]{64} but the manifest says [0-9a-f]{64}: the object was changed, corrupted or replaced after the backup\. The restore read the object as it streamed, so the restored data must not be trusted; the database it went into is discarded\.$/,
    );
    expect(check('Restore')?.status).toBe('failed');
    expect(check('Restore')?.detail).toMatch(/the restored data must not be trusted/);
    expect(check('Tables and row counts')?.status).toBe('skipped');
    expect(check('Tables and row counts')?.detail).toBe(
      'the stored object does not match its manifest',
    );
    // A verdict on the backup: recorded.
    expect(report.recordKey).toBeDefined();
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);

  it('verify streamed without restoring, an object changed after the backup fails check 1 alone', async () => {
    await flippedBackup('rflip');
    const work = mkdtempSync(path.join(base, 'rflip-'));
    const report = await runVerify(
      { name: 'rflip', restore: false, checks: [], restorePlan: 'stream' },
      testVerifyDeps(store.storage, tools, { tmpDir: work }),
    );
    expect(report.status).toBe('failed');
    const check = (name: string) => report.checks.find((c) => c.name === name);
    expect(check('Manifest and checksum')?.status).toBe('failed');
    // Nothing was restored: the message says what differs, and nothing about restored data.
    expect(check('Manifest and checksum')?.detail).toMatch(
      /has SHA-256 [0-9a-f]{64} but the manifest says [0-9a-f]{64}: the object was changed, corrupted or replaced after the backup\.$/,
    );
    expect(check('Decryption and decompression')).toMatchObject({
      status: 'skipped',
      detail: 'the stored object does not match its manifest',
    });
    expect(check('Archive readable (pg_restore --list)')?.status).toBe('passed');
    expect(readdirSync(work)).toEqual([]);
  }, 600_000);
});
