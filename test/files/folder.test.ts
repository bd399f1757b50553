/**
 * File backups of a local folder into a local store: the content decides when only the date
 * changed, a damaged archive is refused (by verify's checksums too), and the archive opens by hand
 * with age, zstd and tar.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  mkdtempSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryLogger, systemClock } from '../../src/core/logger.js';
import { findOnPath } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runFileBackup, type FileBackupDeps } from '../../src/files/backup.js';
import { runFileRestore } from '../../src/files/restore.js';
import { FolderSource } from '../../src/files/source.js';
import { runFileVerify } from '../../src/files/verify.js';
import { LocalStorage } from '../../src/storage/local.js';

const zstdPath = findOnPath('zstd') as string;

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Every file under `root` as key → SHA-256. */
function tree(root: string, under = ''): Map<string, string> {
  const result = new Map<string, string>();
  for (const entry of readdirSync(path.join(root, under), { withFileTypes: true })) {
    const key = under ? `${under}/${entry.name}` : entry.name;
    if (entry.isDirectory()) for (const [k, v] of tree(root, key)) result.set(k, v);
    else
      result.set(
        key,
        createHash('sha256')
          .update(readFileSync(path.join(root, key)))
          .digest('hex'),
      );
  }
  return result;
}

function write(root: string, key: string, content: string | Buffer): void {
  mkdirSync(path.dirname(path.join(root, key)), { recursive: true });
  writeFileSync(path.join(root, key), content);
}

describe('file backups of a folder', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  function setup(): {
    source: string;
    deps: FileBackupDeps;
    logger: MemoryLogger;
    store: LocalStorage;
  } {
    const source = tempDir('files-src-');
    const storeDir = tempDir('files-store-');
    dirs.push(source, storeDir);
    const logger = new MemoryLogger();
    const store = new LocalStorage(storeDir, logger);
    const deps: FileBackupDeps = {
      source: new FolderSource(new LocalStorage(source, logger)),
      storage: store,
      logger,
      clock: systemClock,
      zstdPath,
    };
    return { source, deps, logger, store };
  }

  test('a file whose date changed but not its content is carried, not archived again', async () => {
    const { source, deps, store } = setup();
    const { identity, recipient } = generateIdentity();
    write(source, 'docs/a.txt', 'alpha');
    write(source, 'docs/ünï/日本.txt', 'beta');
    write(source, 'empty', '');
    const options = {
      name: 'site',
      kind: 'scheduled' as const,
      labels: {},
      git: {},
      encryption: { recipients: [recipient] },
    };
    const first = await runFileBackup(options, deps);
    expect(first.manifest.changes).toMatchObject({ new: 3, changed: 0, unchanged: 0, deleted: 0 });

    utimesSync(path.join(source, 'docs/a.txt'), new Date('2030-01-01'), new Date('2030-01-01'));
    write(source, 'docs/ünï/日本.txt', 'BETA');
    const second = await runFileBackup(options, deps);
    expect(second.manifest.changes).toMatchObject({ new: 0, changed: 1, unchanged: 2, deleted: 0 });
    const a = second.manifest.files.find((f) => f.key === 'docs/a.txt');
    expect(a?.archive).toBe(first.manifest.id);
    expect(a?.lastModified).toBe('2030-01-01T00:00:00.000Z');

    const target = tempDir('files-restore-');
    dirs.push(target);
    await runFileRestore(
      { name: 'site', backupId: first.manifest.id, identities: [identity] },
      {
        storage: store,
        target: new LocalStorage(target, deps.logger),
        logger: deps.logger,
        clock: systemClock,
        zstdPath,
      },
    );
    expect(tree(target)).toEqual(
      new Map([
        ['docs/a.txt', createHash('sha256').update('alpha').digest('hex')],
        ['docs/ünï/日本.txt', createHash('sha256').update('beta').digest('hex')],
        ['empty', createHash('sha256').update('').digest('hex')],
      ]),
    );

    // The archive opens by hand with the standard tools.
    const byHand = tempDir('files-hand-');
    dirs.push(byHand);
    const keyFile = path.join(byHand, 'key.txt');
    writeFileSync(keyFile, `${identity}\n`);
    const archive = store.location(
      second.manifest.archives.find((x) => x.backupId === second.manifest.id)!.key,
    );
    execFileSync('sh', [
      '-c',
      `age -d -i "${keyFile}" "${archive}" | zstd -d | tar -x -C "${byHand}"`,
    ]);
    expect(readFileSync(path.join(byHand, 'docs/ünï/日本.txt'), 'utf8')).toBe('BETA');
  });

  test('verify names an archive whose bytes changed after the backup, with both checksums', async () => {
    const { source, deps, store } = setup();
    const { identity, recipient } = generateIdentity();
    write(source, 'docs/a.txt', 'alpha');
    const backup = await runFileBackup(
      {
        name: 'site',
        kind: 'scheduled',
        labels: {},
        git: {},
        encryption: { recipients: [recipient] },
      },
      deps,
    );
    const verify = () =>
      runFileVerify(
        { name: 'site', backupId: backup.manifest.id, restore: false, identities: [identity] },
        { storage: store, logger: deps.logger, clock: systemClock, zstdPath },
      );
    const intact = await verify();
    expect([intact.status, intact.checks[0].detail]).toEqual([
      'passed',
      '1 archive(s) match their size and SHA-256',
    ]);

    const [archive] = backup.manifest.archives;
    const file = store.location(archive.key);
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(file, bytes);
    const damaged = await verify();
    expect(damaged.status).toBe('failed');
    expect(damaged.checks[0].detail).toBe(
      `${archive.key}: ${archive.bytes} bytes, SHA-256 ${createHash('sha256').update(bytes).digest('hex')}; ` +
        `the manifest says ${archive.bytes} bytes, SHA-256 ${archive.sha256}`,
    );
  });
});
