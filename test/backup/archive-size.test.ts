import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { dumpObject, type Manifest } from '../../src/catalog/manifest.js';
import { findOnPath, runCommand } from '../../src/core/process.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { machineClientTools } from '../support/embedded.js';
import { makeStore, testBackupDeps, testBackupOptions, type TestStore } from '../support/env.js';
import { loadSample, newDatabase } from '../support/sample.js';

// The manifest records the decoded archive's size (archiveBytes), counted as the backup streams:
// it must equal what decoding the stored object with the plain tools gives back.

/** The size of the files under `dir`. */
function filesSize(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .reduce((sum, e) => sum + statSync(path.join(e.parentPath, e.name)).size, 0);
}

describe('the archive size in the manifest', () => {
  let tools: ClientTools;
  let store: TestStore;
  let url: string;
  let work: string;
  const zstd = findOnPath('zstd') as string;

  beforeAll(async () => {
    tools = await machineClientTools();
    store = await makeStore('local');
    url = await newDatabase('archive_size');
    await loadSample(url);
    work = mkdtempSync(path.join(os.tmpdir(), 'archive-size-'));
  }, 600_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** The stored object, decompressed with zstd into `out`; returns `out`. */
  async function decompressed(manifest: Manifest, out: string): Promise<string> {
    const object = path.join(work, `${manifest.id}.zst`);
    writeFileSync(object, (await store.storage.getBytes(dumpObject(manifest).key)) as Buffer);
    const r = await runCommand([zstd, '-d', '-q', '-f', '-o', out, object]);
    expect(r.code).toBe(0);
    return out;
  }

  it('custom format through zstd: the bytes zstd -d gives back', async () => {
    const { manifest } = await runBackup(
      testBackupOptions(url, 'size-custom'),
      testBackupDeps(store.storage, tools, { zstdPath: zstd }),
    );
    expect(manifest.compression.method).toBe('zstd');
    const archive = await decompressed(manifest, path.join(work, 'custom.pgc'));
    expect(manifest.archiveBytes).toBe(statSync(archive).size);
    expect(manifest.archiveBytes).toBeGreaterThan(dumpObject(manifest).bytes);
  }, 600_000);

  it('directory format: the total of the files tar gives back', async () => {
    const { manifest } = await runBackup(
      testBackupOptions(url, 'size-dir', { format: 'directory', jobs: 2 }),
      testBackupDeps(store.storage, tools, { zstdPath: zstd }),
    );
    const tar = await decompressed(manifest, path.join(work, 'dump.tar'));
    const folder = path.join(work, 'dir');
    await runCommand(['mkdir', '-p', folder]);
    const r = await runCommand(['tar', '-x', '-f', tar, '-C', folder]);
    expect(r.code).toBe(0);
    expect(manifest.archiveBytes).toBe(filesSize(folder));
    expect(manifest.archiveBytes).toBeGreaterThan(0);
  }, 600_000);

  it('not recorded when the object is the archive itself', async () => {
    const { manifest } = await runBackup(
      testBackupOptions(url, 'size-none', { compression: { method: 'none' } }),
      testBackupDeps(store.storage, tools, { zstdPath: zstd }),
    );
    expect(manifest.archiveBytes).toBeUndefined();
  }, 600_000);
});
