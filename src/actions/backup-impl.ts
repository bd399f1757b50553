import * as core from '@actions/core';
import { parseCompression, runBackup, type BackupOptions } from '../backup/backup.js';
import { backupSummary } from '../backup/summary.js';
import { BACKUP_KINDS, type BackupKind } from '../catalog/manifest.js';
import { parseKeepUntil } from '../core/duration.js';
import { systemClock } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { invalidRecipientValues, parseRecipients } from '../crypto/age.js';
import { resolveConnection } from '../postgres/connection.js';
import { clientToolResolver, ToolVersionError } from '../postgres/install.js';
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
import { reportToIssue } from './issue-report.js';
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

  const recipientsText = optionalInput(Inputs.EncryptionRecipients) ?? '';
  // What is not a recipient may be a secret key typed here by mistake: masked before any log.
  for (const value of invalidRecipientValues(recipientsText)) core.setSecret(value);
  const recipients = parseRecipients(recipientsText);
  const kind = choiceInput<BackupKind>(Inputs.Kind, BACKUP_KINDS, 'scheduled');
  const keepUntilText = optionalInput(Inputs.KeepUntil);
  const options: BackupOptions = {
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
  const postgresVersion = resolvePostgresVersionInput(
    optionalInput(Inputs.PostgresVersion) ?? 'auto',
  );
  const storage = await storageFromInputs(logger);
  const tools = clientToolResolver(postgresVersion, env, logger);

  try {
    const result = await runBackup(options, {
      storage,
      logger,
      clock: systemClock,
      env,
      zstdPath: findOnPath('zstd', env.PATH),
      resolveTools: (server) => tools(server.major, server.version),
    });
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
  } catch (error) {
    if (error instanceof ToolVersionError) {
      // A backup that stopped is as urgent as one that does not restore.
      await reportToIssue({
        env,
        logger,
        marker: `backup:${options.name ?? 'database'}`,
        title: `Backup failed: ${options.name ?? 'database'} (PostgreSQL client version)`,
        defaultLabel: 'backup-failure',
        failed: true,
        body: `The nightly backup stopped because no suitable pg_dump is available.\n\n${error.message}`,
      });
    }
    throw error;
  }
}
