import * as core from '@actions/core';
import { DestinationsError, runBackup } from '../backup/backup.js';
import { backupSummary } from '../backup/summary.js';
import { isCatalogName } from '../catalog/keys.js';
import type { JobOutcome } from '../report/alerts.js';
import { systemClock } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { errorMessage } from '../core/errors.js';
import { formatBytes } from '../core/streams.js';
import { backupOptions } from '../options/backup.js';
import { postgresVersionOption } from '../options/shared.js';
import { openDestinations, readDestinations } from '../storage/destinations.js';
import type { Storage } from '../storage/storage.js';
import { databaseName } from '../postgres/connection.js';
import { clientToolResolver } from '../postgres/install.js';
import { actionFrontDoor, inputs, optionalInput } from './inputs.js';
import { Inputs, Outputs } from './names.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import { actionLogger, maskSecretInputs } from './runtime.js';

export async function runBackupAction(): Promise<void> {
  const env = process.env;
  const logger = actionLogger;
  maskSecretInputs(env);
  const alerts = readAlertSettings('backup-failure');

  let name = optionalInput(Inputs.Name) ?? 'database';
  let storage: Storage | undefined;
  const alert = (outcome: Omit<JobOutcome, 'action' | 'name'>): Promise<unknown> =>
    sendAlerts(
      { action: 'backup', name, ...outcome },
      {
        settings: alerts,
        env,
        logger,
        storage,
        names: isCatalogName(name) ? [name] : [],
        title: `Backup failed: ${name}`,
        warningTitle: `Backup warning: ${name}`,
      },
    );
  try {
    // Per-destination credentials come from the environment, masked before anything is logged.
    const plan = readDestinations(
      (key) => inputs.string(key),
      env,
      (secret) => core.setSecret(secret),
    );
    const options = {
      ...backupOptions(inputs, actionFrontDoor(env), 'scheduled'),
      destinationsRequired: plan.required,
    };
    name = options.name ?? databaseName(options.connection);
    const postgresVersion = postgresVersionOption(inputs);
    const stores = await openDestinations(plan.destinations, logger);
    const [first, ...copies] = stores;
    storage = first;
    const result = await runBackup(options, {
      storage,
      copies,
      logger,
      clock: systemClock,
      env,
      zstdPath: findOnPath('zstd', env.PATH),
      resolveTools: clientToolResolver(postgresVersion, env, logger),
    });
    name = result.manifest.name;
    for (const w of result.warnings) logger.warning(w);
    // The outputs name the first destination that holds the backup.
    storage = stores[result.copies.findIndex((c) => c.status === 'stored')] ?? first;
    core.setOutput(Outputs.BackupId, result.manifest.id);
    core.setOutput(Outputs.ManifestKey, storage.location(result.manifestKey));
    core.setOutput(Outputs.ObjectKey, storage.location(result.objectKey));
    core.setOutput(Outputs.Bytes, String(result.bytes));
    core.setOutput(Outputs.Sha256, result.sha256);
    core.setOutput(Outputs.DurationSeconds, result.durationSeconds.toFixed(1));
    core.setOutput(
      Outputs.SizeChangePercent,
      result.sizeChangePercent === undefined ? '' : String(result.sizeChangePercent),
    );
    await core.summary.addRaw(backupSummary(result)).write();
    await alert({
      status: 'passed',
      message: `Backup ${result.manifest.id} stored (${formatBytes(result.bytes)}).`,
      backupId: result.manifest.id,
      warnings: result.sizeWarning ? [result.sizeWarning] : [],
    });
  } catch (error) {
    if (error instanceof DestinationsError) {
      await core.summary.addRaw(backupSummary(error.result)).write();
    }
    await alert({
      status: 'failed',
      message: errorMessage(error),
      warnings: [],
      nextStep:
        'Fix the cause above (a changed password or host: update the database-url secret; ' +
        'a refused upload: the storage credentials and bucket policy) and re-run the workflow. ' +
        'Until a backup succeeds, the newest backup in the catalog is the last good one.',
    });
    throw error;
  }
}
