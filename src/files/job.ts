/** One file backup job, whatever its mode: opens the places it names and runs the core. */
import { ConfigurationError } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { openStorage } from '../storage/open.js';
import { runFileBackup } from './backup.js';
import type { FilesJob, FilesMode } from './options.js';
import { runFilePrune } from './prune.js';
import { runFileRestore } from './restore.js';
import { openFileSource } from './source.js';
import {
  fileBackupSummary,
  filePruneSummary,
  fileRestoreSummary,
  fileVerifySummary,
} from './summary.js';
import { runFileVerify } from './verify.js';

export interface FilesJobDeps {
  logger: Logger;
  clock: Clock;
  /** Absolute path of `zstd`; found on PATH when absent. */
  zstdPath?: string;
  /** Scratch space of verify's restore. */
  workDir?: string;
}

export interface FilesJobOutcome {
  mode: FilesMode;
  status: 'passed' | 'failed';
  /** Markdown for the job summary. */
  summary: string;
  /** Step outputs (kebab-case names). */
  outputs: Record<string, string>;
  /** The core's own result, for `--json`. */
  result: unknown;
}

function zstdOf(deps: FilesJobDeps): string {
  const found = deps.zstdPath ?? findOnPath('zstd');
  if (!found) {
    throw new ConfigurationError(
      'File backups need the zstd command. Install it (sudo apt-get install -y zstd); GitHub-hosted runners have it.',
    );
  }
  return found;
}

export async function runFilesJob(job: FilesJob, deps: FilesJobDeps): Promise<FilesJobOutcome> {
  const { logger, clock } = deps;
  const zstdPath = zstdOf(deps);
  const storage = await openStorage(job.storage.location, job.storage.s3, logger);
  switch (job.mode) {
    case 'backup': {
      const source = await openFileSource(job.source.location, job.source.s3, logger);
      const result = await runFileBackup(job.backup, { source, storage, logger, clock, zstdPath });
      const c = result.manifest.changes;
      return {
        mode: job.mode,
        status: 'passed',
        summary: fileBackupSummary(result, storage.description),
        outputs: {
          'backup-id': result.manifest.id,
          'manifest-key': result.manifestKey,
          files: String(result.manifest.files.length),
          'files-new': String(c.new),
          'files-changed': String(c.changed),
          'files-unchanged': String(c.unchanged),
          'files-deleted': String(c.deleted),
          'bytes-uploaded': String(c.bytesUploaded),
        },
        result,
      };
    }
    case 'restore': {
      const target = await openStorage(job.target.location, job.target.s3, logger);
      const result = await runFileRestore(job.restore, {
        storage,
        target,
        logger,
        clock,
        zstdPath,
      });
      return {
        mode: job.mode,
        status: 'passed',
        summary: fileRestoreSummary(result, target.description),
        outputs: {
          'backup-id': result.manifest.id,
          files: String(result.files),
          'restore-seconds': result.seconds.toFixed(1),
        },
        result,
      };
    }
    case 'verify': {
      const report = await runFileVerify(job.verify, {
        storage,
        logger,
        clock,
        zstdPath,
        workDir: deps.workDir,
      });
      return {
        mode: job.mode,
        status: report.status,
        summary: fileVerifySummary(report),
        outputs: { 'backup-id': report.manifest.id, status: report.status },
        result: report,
      };
    }
    case 'prune': {
      const report = await runFilePrune(job.prune, { storage, logger, clock });
      return {
        mode: job.mode,
        status: report.locked.length > 0 ? 'failed' : 'passed',
        summary: filePruneSummary(report),
        outputs: {
          kept: String(report.plan.keep),
          deleted: String(report.plan.delete),
        },
        result: report,
      };
    }
  }
}
