import * as core from '@actions/core';
import { systemClock } from '../core/logger.js';
import { runFilesJob, type FilesAlerter } from '../files/job.js';
import { FILES_SECRET_INPUTS, parseFilesJob } from '../files/options.js';
import { optionalInput } from './inputs.js';
import { Inputs } from './names.js';
import { gitContext } from '../options/shared.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import { actionLogger, maskSecret } from './runtime.js';

/** backup-files: back up, restore, verify, drill or prune file backups, as `mode` says. */
export async function runBackupFilesAction(): Promise<void> {
  const env = process.env;
  for (const name of FILES_SECRET_INPUTS) maskSecret(optionalInput(name));
  const settings = readAlertSettings('file-backup-verification');
  const job = parseFilesJob(optionalInput, gitContext(env));
  const alert: FilesAlerter = async (outcome, storage) => {
    const what =
      outcome.action === 'files-drill' ? 'File restore drill' : 'File backup verification';
    const alerted = await sendAlerts(outcome, {
      settings,
      env,
      logger: actionLogger,
      storage,
      names: [outcome.name],
      title: `${what} failed: ${outcome.name}`,
      warningTitle: `${what} warning: ${outcome.name}`,
    });
    return alerted?.issueNumber;
  };
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
