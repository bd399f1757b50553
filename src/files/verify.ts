/**
 * Verifies a file backup: every archive it refers to is read whole and its size and SHA-256
 * compared with the manifest; with `restore`, the point in time is restored into a scratch
 * folder and the files found there (list and hashes) compared with the manifest.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { HashCounter } from '../core/streams.js';
import { LocalStorage } from '../storage/local.js';
import type { Storage } from '../storage/storage.js';
import { pipeline } from 'node:stream/promises';
import { selectFileBackup } from './catalog.js';
import type { ArchiveEntry, FileManifest } from './manifest.js';
import { runFileRestore } from './restore.js';

export interface FileVerifyOptions {
  name: string;
  backupId: string;
  restore: boolean;
  identities: string[];
  passphrase?: string;
}

export interface FileVerifyDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
  zstdPath: string;
  /** Where the scratch folder of a restore goes; default: the OS temp folder. */
  workDir?: string;
}

export interface FileCheck {
  name: 'archives' | 'restore';
  status: 'passed' | 'failed';
  detail: string;
}

export interface FileVerifyReport {
  manifest: FileManifest;
  status: 'passed' | 'failed';
  checks: FileCheck[];
  /** Seconds the restore took, when one ran. */
  restoreSeconds?: number;
}

export async function runFileVerify(
  options: FileVerifyOptions,
  deps: FileVerifyDeps,
): Promise<FileVerifyReport> {
  const manifest = await selectFileBackup(deps.storage, options.name, options.backupId);
  const checks: FileCheck[] = [];
  let restoreSeconds: number | undefined;
  if (options.restore) {
    const restored = await restoreCheck(manifest, options, deps);
    checks.push(restored.check);
    restoreSeconds = restored.seconds;
  } else {
    checks.push(await archivesCheck(manifest, deps));
  }
  const status = checks.every((c) => c.status === 'passed') ? 'passed' : 'failed';
  return { manifest, status, checks, restoreSeconds };
}

async function archiveMismatch(
  archive: ArchiveEntry,
  storage: Storage,
): Promise<string | undefined> {
  const hash = new HashCounter();
  await pipeline(await storage.getStream(archive.key), hash, async (source) => {
    for await (const chunk of source) void chunk;
  });
  if (hash.bytes === archive.bytes && hash.digest() === archive.sha256) return undefined;
  return `${archive.key}: ${hash.bytes} bytes, SHA-256 ${hash.digest()}; the manifest says ${archive.bytes} bytes, SHA-256 ${archive.sha256}`;
}

async function archivesCheck(manifest: FileManifest, deps: FileVerifyDeps): Promise<FileCheck> {
  const problems: string[] = [];
  for (const archive of manifest.archives) {
    try {
      const mismatch = await archiveMismatch(archive, deps.storage);
      if (mismatch) problems.push(mismatch);
    } catch (error) {
      problems.push(`${archive.key}: ${errorMessage(error)}`);
    }
  }
  return problems.length === 0
    ? {
        name: 'archives',
        status: 'passed',
        detail: `${manifest.archives.length} archive(s) match their size and SHA-256`,
      }
    : { name: 'archives', status: 'failed', detail: problems.join('; ') };
}

async function restoreCheck(
  manifest: FileManifest,
  options: FileVerifyOptions,
  deps: FileVerifyDeps,
): Promise<{ check: FileCheck; seconds?: number }> {
  const scratch = await mkdtemp(path.join(deps.workDir ?? os.tmpdir(), 'files-verify-'));
  try {
    const target = new LocalStorage(scratch, deps.logger);
    const result = await runFileRestore(
      {
        name: options.name,
        backupId: manifest.id,
        identities: options.identities,
        passphrase: options.passphrase,
      },
      {
        storage: deps.storage,
        target,
        logger: deps.logger,
        clock: deps.clock,
        zstdPath: deps.zstdPath,
      },
    );
    const differences = await compareTree(manifest, target);
    const check: FileCheck =
      differences.length === 0
        ? {
            name: 'restore',
            status: 'passed',
            detail: `${result.files} files restored, list and SHA-256 equal to the manifest`,
          }
        : { name: 'restore', status: 'failed', detail: differences.join('; ') };
    return { check, seconds: result.seconds };
  } catch (error) {
    return { check: { name: 'restore', status: 'failed', detail: errorMessage(error) } };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The files of the scratch folder against the manifest, re-read from disk; at most 10 named. */
async function compareTree(manifest: FileManifest, target: LocalStorage): Promise<string[]> {
  const expected = new Map(manifest.files.map((f) => [f.key, f.sha256]));
  const differences: string[] = [];
  for await (const object of target.list('')) {
    const want = expected.get(object.key);
    expected.delete(object.key);
    if (want === undefined) {
      differences.push(`${object.key} is not in the manifest`);
      continue;
    }
    const hash = new HashCounter();
    await pipeline(await target.getStream(object.key), hash, async (source) => {
      for await (const chunk of source) void chunk;
    });
    if (hash.digest() !== want) differences.push(`${object.key} has another SHA-256`);
  }
  for (const key of expected.keys()) differences.push(`${key} is missing`);
  return differences.length > 10
    ? [...differences.slice(0, 10), `${differences.length - 10} more`]
    : differences;
}
