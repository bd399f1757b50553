import * as core from '@actions/core';
import { isCatalogName } from '../catalog/keys.js';
import { errorMessage } from '../core/errors.js';
import { systemClock } from '../core/logger.js';
import { invalidRecipientValues } from '../crypto/age.js';
import { FILES_ALERTS, filesActionOf, filesOutcome } from '../files/alerts.js';
import { runFilesJob, type FilesAlerter } from '../files/job.js';
import { FILES_SECRET_INPUTS, parseFilesJob, type FilesJob } from '../files/options.js';
import { optionalInput } from './inputs.js';
import { Inputs } from './names.js';
import { gitContext } from '../options/shared.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import { actionLogger, maskSecret } from './runtime.js';

/** backup-files: back up, restore, verify, drill or prune file backups, as `mode` says. */
export async function runBackupFilesAction(): Promise<void> {
  const env = process.env;
  for (const name of FILES_SECRET_INPUTS) maskSecret(optionalInput(name));
  for (const value of invalidRecipientValues(optionalInput(Inputs.EncryptionRecipients) ?? '')) {
    core.setSecret(value);
  }
  // Restore alerts nobody, and a mode that is none fails below: their label is never used.
  const action = filesActionOf(optionalInput(Inputs.Mode));
  const settings = readAlertSettings(FILES_ALERTS[action ?? 'files-backup'].label);
  const alert: FilesAlerter = async (outcome, storage) => {
    const { what } = FILES_ALERTS[outcome.action];
    const alerted = await sendAlerts(outcome, {
      settings,
      env,
      logger: actionLogger,
      storage,
      names: isCatalogName(outcome.name) ? [outcome.name] : [],
      title: `${what} failed: ${outcome.name}`,
      warningTitle: `${what} warning: ${outcome.name}`,
    });
    return alerted?.issueNumber;
  };
  let job: FilesJob;
  try {
    job = parseFilesJob(optionalInput, gitContext(env));
  } catch (error) {
    // Bad input: the mode's watchers hear of it under the name given, without run records.
    if (action) {
      const name = optionalInput(Inputs.Name) ?? 'files';
      await alert(filesOutcome(action, name, { status: 'failed', message: errorMessage(error) }));
    }
    throw error;
  }
  const outcome = await runFilesJob(job, {
    logger: actionLogger,
    clock: systemClock,
    workDir: optionalInput(Inputs.WorkDir) ?? env.RUNNER_TEMP,
    alert,
  });
  for (const [name, value] of Object.entries(outcome.outputs)) core.setOutput(name, value);
  await core.summary.addRaw(outcome.summary).write();
  if (outcome.status === 'failed')
    core.setFailed(`File ${outcome.mode} failed; see the job summary.`);
}
