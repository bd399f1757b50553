import * as core from '@actions/core';
import { parseCompression, runBackup, type BackupOptions } from '../backup/backup.js';
import { backupSummary } from '../backup/summary.js';
import { BACKUP_KINDS, type BackupKind } from '../catalog/manifest.js';
import { isCatalogName } from '../catalog/keys.js';
import type { JobOutcome } from '../report/alerts.js';
import { parseKeepUntil } from '../core/duration.js';
import { systemClock } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { invalidRecipientValues, parseRecipients } from '../crypto/age.js';
import { errorMessage } from '../core/errors.js';
import { formatBytes } from '../core/streams.js';
import type { Storage } from '../storage/storage.js';
import { databaseName, resolveConnection } from '../postgres/connection.js';
import { clientToolResolver } from '../postgres/install.js';
import { resolvePostgresVersionInput } from '../postgres/tools.js';
import {
  booleanInput,
  choiceInput,
  integerInput,
  labelsInput,
  listInput,
  numberInput,
  optionalInput,
} from './inputs.js';
import { Inputs, Outputs } from './names.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import {
  actionLogger,
  gitContext,
  maskConnectionString,
  maskSecret,
  storageFromInputs,
} from './runtime.js';

export async function runBackupAction(): Promise<void> {
  const env = process.env;
  const logger = actionLogger;
  const databaseUrl = optionalInput(Inputs.DatabaseUrl);
  maskConnectionString(databaseUrl);
  if (env.PGPASSWORD) core.setSecret(env.PGPASSWORD);
  const passphrase = optionalInput(Inputs.EncryptionPassphrase);
  maskSecret(passphrase);
  // What is not a recipient may be a secret key typed here by mistake: masked before any log.
  const recipientsText = optionalInput(Inputs.EncryptionRecipients) ?? '';
  for (const value of invalidRecipientValues(recipientsText)) core.setSecret(value);
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
    const options = backupOptions(env, databaseUrl, passphrase);
    name = options.name ?? databaseName(options.connection);
    const postgresVersion = resolvePostgresVersionInput(
      optionalInput(Inputs.PostgresVersion) ?? 'auto',
    );
    storage = await storageFromInputs(logger);
    const result = await runBackup(options, {
      storage,
      logger,
      clock: systemClock,
      env,
      zstdPath: findOnPath('zstd', env.PATH),
      resolveTools: clientToolResolver(postgresVersion, env, logger),
    });
    name = result.manifest.name;
    for (const w of result.warnings) logger.warning(w);
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
    await core.summary.addRaw(backupSummary(result, storage.location(result.objectKey))).write();
    await alert({
      status: 'passed',
      message: `Backup ${result.manifest.id} stored (${formatBytes(result.bytes)}).`,
      backupId: result.manifest.id,
      warnings: result.sizeWarning ? [result.sizeWarning] : [],
    });
  } catch (error) {
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

/** The backup's options from the inputs; a bad input is a ConfigurationError. */
function backupOptions(
  env: NodeJS.ProcessEnv,
  databaseUrl: string | undefined,
  passphrase: string | undefined,
): BackupOptions {
  const recipients = parseRecipients(optionalInput(Inputs.EncryptionRecipients) ?? '');
  const kind = choiceInput<BackupKind>(Inputs.Kind, BACKUP_KINDS, 'scheduled');
  const keepUntilText = optionalInput(Inputs.KeepUntil);
  return {
    connection: resolveConnection(databaseUrl, env),
    name: optionalInput(Inputs.Name),
    format: choiceInput(Inputs.Format, ['custom', 'directory'] as const, 'custom'),
    jobs: integerInput(Inputs.Jobs, 2, 1, 64),
    compression: parseCompression(optionalInput(Inputs.Compression)),
    selection: {
      schemas: listInput(Inputs.Schemas),
      excludeSchemas: listInput(Inputs.ExcludeSchemas),
      excludeTableData: listInput(Inputs.ExcludeTableData),
    },
    globals: booleanInput(Inputs.Globals, false),
    encryption: recipients.length > 0 || passphrase ? { recipients, passphrase } : undefined,
    kind,
    labels: labelsInput(Inputs.Labels),
    keepUntil: keepUntilText
      ? parseKeepUntil(keepUntilText, systemClock.now(), Inputs.KeepUntil)
      : undefined,
    rowCounts: choiceInput(Inputs.RowCounts, ['exact', 'estimate', 'off'] as const, 'exact'),
    sizeChangeThreshold: numberInput(Inputs.SizeChangeThreshold, 20),
    git: gitContext(env),
  };
}
