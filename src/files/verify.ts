/**
 * Verifies a file backup: every archive it refers to is read whole and its size and SHA-256
 * compared with the manifest; with `restore`, the point in time is restored into a scratch
 * folder (removed afterwards) and the files found there (list and hashes) compared with the
 * manifest. The result is recorded beside the backup, for prune's "newest verified" rule.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { GitContext } from '../catalog/manifest.js';
import { errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import type { CheckResult } from '../restore/checks.js';
import { LocalStorage } from '../storage/local.js';
import { hashObject, type Storage } from '../storage/storage.js';
import { selectFileBackup } from './catalog.js';
import type { ArchiveEntry, FileManifest } from './manifest.js';
import { appendFileVerification, fileRunRecord } from './records.js';
import { runFileRestore, type FileRestoreOptions, type FileRestoreResult } from './restore.js';

export interface FileVerifyOptions {
  name: string;
  backupId: string;
  restore: boolean;
  identities: string[];
  passphrase?: string;
  git?: GitContext;
}

export interface FileVerifyDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
  zstdPath: string;
  /** Where the scratch folder of a restore goes; default: the OS temp folder. */
  workDir?: string;
}

export interface FileVerifyReport {
  manifest: FileManifest;
  status: 'passed' | 'failed';
  checks: CheckResult[];
  startedAt: Date;
  /** Seconds the whole verification took. */
  seconds: number;
  /** Seconds the restore took, when one ran. */
  restoreSeconds?: number;
  /** Key of the verification record stored, when it could be. */
  recordKey?: string;
}

export async function runFileVerify(
  options: FileVerifyOptions,
  deps: FileVerifyDeps,
): Promise<FileVerifyReport> {
  const startedAt = deps.clock.now();
  const manifest = await selectFileBackup(deps.storage, options.name, options.backupId);
  const restored = options.restore
    ? await inScratchFolder(deps, (target) => restoreAndCompare(manifest, options, deps, target))
    : undefined;
  const checks = [restored?.check ?? (await archivesCheck(manifest, deps))];
  const status = checks.every((c) => c.status !== 'failed') ? 'passed' : 'failed';
  const finishedAt = deps.clock.now();
  const record = fileRunRecord('verify', manifest, { status, checks, startedAt, finishedAt });
  return {
    manifest,
    status,
    checks,
    startedAt,
    seconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    restoreSeconds: restored?.result?.seconds,
    recordKey: await appendFileVerification(
      deps.storage,
      { ...record, git: options.git },
      deps.logger,
    ),
  };
}

async function archiveMismatch(
  archive: ArchiveEntry,
  storage: Storage,
): Promise<string | undefined> {
  const hash = await hashObject(storage, archive.key);
  if (hash.bytes === archive.bytes && hash.digest() === archive.sha256) return undefined;
  return `${archive.key}: ${hash.bytes} bytes, SHA-256 ${hash.digest()}; the manifest says ${archive.bytes} bytes, SHA-256 ${archive.sha256}`;
}

async function archivesCheck(manifest: FileManifest, deps: FileVerifyDeps): Promise<CheckResult> {
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

/** Runs `fn` on a scratch folder under the work folder, removed afterwards whatever happens. */
export async function inScratchFolder<T>(
  deps: { workDir?: string; logger: Logger },
  fn: (target: Storage) => Promise<T>,
): Promise<T> {
  const scratch = await mkdtemp(path.join(deps.workDir ?? os.tmpdir(), 'files-restore-'));
  try {
    return await fn(new LocalStorage(scratch, deps.logger));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** A restore and its check: what was restored, re-read from the target, against the manifest. */
export interface ComparedRestore {
  check: CheckResult;
  /** Absent when the restore itself failed. */
  result?: FileRestoreResult;
}

/**
 * Restores a point in time into an empty `target` and compares what the target then holds
 * (every key, every file's SHA-256 re-read) with the manifest. A failed restore is a failed
 * check, never an exception.
 */
export async function restoreAndCompare(
  manifest: FileManifest,
  options: Omit<FileRestoreOptions, 'backupId'>,
  deps: { storage: Storage; logger: Logger; clock: Clock; zstdPath: string },
  target: Storage,
): Promise<ComparedRestore> {
  try {
    const result = await runFileRestore(
      {
        name: options.name,
        backupId: manifest.id,
        identities: options.identities,
        passphrase: options.passphrase,
      },
      { ...deps, target },
    );
    const differences = await compareTree(manifest, target);
    const check: CheckResult =
      differences.length === 0
        ? {
            name: 'restore',
            status: 'passed',
            detail: `${result.files} files restored into ${target.description}; list and SHA-256 equal to the manifest`,
          }
        : { name: 'restore', status: 'failed', detail: differences.join('; ') };
    return { check, result };
  } catch (error) {
    return { check: { name: 'restore', status: 'failed', detail: errorMessage(error) } };
  }
}

/** The files of a restore target against the manifest, each re-read; at most 10 named. */
async function compareTree(manifest: FileManifest, target: Storage): Promise<string[]> {
  const expected = new Map(manifest.files.map((f) => [f.key, f.sha256]));
  const differences: string[] = [];
  for await (const object of target.list('')) {
    const want = expected.get(object.key);
    expected.delete(object.key);
    if (want === undefined) {
      differences.push(`${object.key} is not in the manifest`);
      continue;
    }
    const hash = await hashObject(target, object.key);
    if (hash.digest() !== want) differences.push(`${object.key} has another SHA-256`);
  }
  for (const key of expected.keys()) differences.push(`${key} is missing`);
  return differences.length > 10
    ? [...differences.slice(0, 10), `${differences.length - 10} more`]
    : differences;
}
