import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { runBackup, wholeDatabaseBackup } from '../backup/backup.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { connect } from '../postgres/connection.js';
import type { ClientTools } from '../postgres/tools.js';
import { fetchArchive } from '../restore/fetch.js';
import { listArchive } from '../restore/pg-restore.js';
import { performRestore, prepareRestore, type RestoreJob } from '../restore/pipeline.js';
import type { RestoreTarget } from '../restore/target.js';
import { LocalStorage } from '../storage/local.js';

/**
 * Proves, before a real restore touches the target, that its safety backup would restore over
 * it as the same role: a backup of the target taken by the same machinery with every table's
 * data left out (its definitions, sequences, large objects and platform), then restored over the
 * target along the same pipeline, in one transaction that is rolled back. Returns one line for
 * the report; throws a ConfigurationError saying why the undo would fail, with nothing changed.
 */
export async function rehearseUndo(o: {
  target: RestoreTarget;
  tools: ClientTools;
  name: string;
  workDir: string;
  zstdPath?: string;
  env: NodeJS.ProcessEnv;
  clock: Clock;
  logger: Logger;
}): Promise<string> {
  const dir = await mkdtemp(path.join(o.workDir, 'undo-'));
  const quiet = quietLogger(o.logger);
  try {
    const storage = new LocalStorage(path.join(dir, 'store'), quiet);
    const backup = await runBackup(
      {
        ...wholeDatabaseBackup(o.target.connection, o.name),
        compression: { method: 'none' },
        selection: { schemas: [], excludeSchemas: [], excludeTableData: ['*.*'] },
        kind: 'pre-restore',
        rowCounts: 'off',
        sizeChangeThreshold: Number.POSITIVE_INFINITY,
      },
      {
        storage,
        logger: quiet,
        clock: o.clock,
        env: o.env,
        zstdPath: o.zstdPath,
        resolveTools: () => Promise.resolve(o.tools),
        tmpDir: dir,
      },
    );
    const fetched = await fetchArchive({
      storage,
      manifest: backup.manifest,
      tools: { zstdPath: o.zstdPath },
      dir,
      logger: quiet,
    });
    const job: RestoreJob = {
      target: o.target,
      manifest: backup.manifest,
      tools: o.tools,
      archivePath: fetched.archivePath,
      listing: await listArchive(o.tools.pgRestore, fetched.archivePath),
      workDir: dir,
      jobs: 1,
      into: 'replace',
      rehearsal: true,
      createdRoles: [],
      env: o.env,
      logger: quiet,
    };
    const client = await connect(o.target.connection, o.target.database);
    try {
      const prepared = await prepareRestore(job, client);
      await performRestore(job, client, prepared);
    } finally {
      await client.end().catch(() => undefined);
    }
    return `the safety backup's restore over ${o.target.describe} as ${o.target.user} was rehearsed (its definitions, in one transaction, rolled back)`;
  } catch (error) {
    throw new ConfigurationError(
      `Refusing to restore: the undo could not be proved. Restoring the safety backup over ${o.target.describe} as ${o.target.user} would fail: ${errorMessage(error)}\n` +
        'Nothing was changed. Restore as a role that owns what the target holds, or set safety-backup: false to restore without a way back.',
    );
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The rehearsal's own steps go to the debug log: the safety backup says the same things. */
function quietLogger(logger: Logger): Logger {
  return {
    debug: (m) => logger.debug(m),
    info: (m) => logger.debug(m),
    warning: (m) => logger.debug(m),
    error: (m) => logger.error(m),
    group: (_name, fn) => fn(),
  };
}
