import { mkdtemp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as core from '@actions/core';
import { errorMessage } from '../core/errors.js';
import { isCatalogName } from '../catalog/keys.js';
import type { JobOutcome } from '../report/alerts.js';
import type { Storage } from '../storage/storage.js';
import { systemClock } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { verifyOptions, workDirOption } from '../options/restore.js';
import { postgresVersionOption, storageOption } from '../options/shared.js';
import { extensionInstaller } from '../postgres/extensions.js';
import { mayInstallTools } from '../postgres/install.js';
import { uploadReportArtifact } from '../report/artifact.js';
import {
  failureIssueBody,
  failureMessage,
  recoveryIssueBody,
  verifyJson,
  verifyMarkdown,
} from '../verify/report.js';
import { verifyToolResolvers } from '../verify/tools.js';
import { CheckNames, runVerify, type VerifyReport } from '../verify/verify.js';
import { actionFrontDoor, inputs, optionalInput } from './inputs.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import { Inputs, Outputs } from './names.js';
import { actionLogger, maskSecretInputs } from './runtime.js';
import { openDestinations, readCopies } from '../storage/destinations.js';

/** File names of the report inside its folder (the folder is what the artifact holds). */
export const REPORT_JSON = 'verify-report.json';
export const REPORT_MARKDOWN = 'verify-report.md';

export async function runVerifyAction(): Promise<void> {
  const env = process.env;
  const logger = actionLogger;
  maskSecretInputs(env);
  const alerts = readAlertSettings('backup-verification');

  let name = optionalInput(Inputs.Name)?.trim() ?? 'database';
  let storage: Storage | undefined;
  const alert = (outcome: Omit<JobOutcome, 'action' | 'name'>) =>
    sendAlerts(
      { action: 'verify', name, ...outcome },
      {
        settings: alerts,
        env,
        logger,
        storage,
        names: isCatalogName(name) ? [name] : [],
        title: `Backup verification failed: ${name}`,
        warningTitle: `Backup verification warning: ${name}`,
      },
    );
  let report: VerifyReport;
  try {
    report = await verifyFromInputs(env, (opened) => {
      storage = opened;
    });
  } catch (error) {
    await alert({
      status: 'failed',
      message: errorMessage(error),
      warnings: [],
      nextStep: VERIFY_NEXT_STEP,
    });
    throw error;
  }
  name = report.name;
  await finishVerify(report, env, alert);
}

const VERIFY_NEXT_STEP =
  "Open the run's report: fix what a check names, or take a new backup if this one cannot be " +
  'restored; until a verification passes, restore from the last backup that did.';

/** Reads the inputs and runs the verification; throws when it cannot run at all. */
async function verifyFromInputs(
  env: NodeJS.ProcessEnv,
  onStorage: (storage: Storage) => void,
): Promise<VerifyReport> {
  const logger = actionLogger;
  const door = actionFrontDoor(env);
  const options = verifyOptions(inputs, door, logger);
  const postgresVersion = postgresVersionOption(inputs);
  const storage = await storageOption(inputs, logger);
  onStorage(storage);
  const copies = readCopies(
    (key) => inputs.string(key),
    env,
    (secret) => core.setSecret(secret),
  );
  return runVerify(options, {
    storage,
    copies: await openDestinations(copies, logger),
    logger,
    clock: systemClock,
    env,
    zstdPath: findOnPath('zstd', env.PATH),
    tmpDir: workDirOption(inputs, door),
    ...verifyToolResolvers({ postgresVersion, install: mayInstallTools(env), logger }),
    installExtensions: extensionInstaller(env, logger),
  });
}

/** Writes the report, outputs and summary, alerts, and fails the step when the report failed. */
async function finishVerify(
  report: VerifyReport,
  env: NodeJS.ProcessEnv,
  alert: (
    outcome: Omit<JobOutcome, 'action' | 'name'>,
  ) => Promise<{ issueNumber?: number } | undefined>,
): Promise<void> {
  const logger = actionLogger;
  const tmpDir = env.RUNNER_TEMP || undefined;
  const workspace = env.GITHUB_WORKSPACE ?? process.cwd();
  const artifactName = optionalInput(Inputs.ReportArtifact)?.trim();

  const markdown = verifyMarkdown(report);
  const reportDir = await mkdtemp(path.join(tmpDir ?? workspace, 'pg-backup-verify-'));
  const jsonPath = path.join(reportDir, REPORT_JSON);
  const markdownPath = path.join(reportDir, REPORT_MARKDOWN);
  await writeFile(jsonPath, verifyJson(report));
  await writeFile(markdownPath, markdown);
  logger.info(`Wrote the report to ${jsonPath} and ${markdownPath}`);

  core.setOutput(Outputs.Status, report.status);
  core.setOutput(Outputs.BackupId, report.backup?.id ?? '');
  core.setOutput(Outputs.ReportPath, jsonPath);
  core.setOutput(Outputs.Failures, String(report.failures.length));
  await core.summary.addRaw(markdown).write();

  if (artifactName) {
    await uploadReportArtifact({
      name: artifactName,
      files: [jsonPath, markdownPath],
      rootDir: reportDir,
      env,
      logger,
    });
  }

  const failed = report.status === 'failed';
  const failedChecks = report.checks.filter((c) => c.status === 'failed');
  // A stale backup alone is a warning to the watchers; the step still fails, as max-age says.
  const staleOnly = failed && failedChecks.every((c) => c.name === CheckNames.Freshness);
  const alerted = await alert({
    status: failed && !staleOnly ? 'failed' : 'passed',
    message: failed && !staleOnly ? report.failures.join('; ') : passedLine(report),
    details: failed && !staleOnly ? failureIssueBody(report) : recoveryIssueBody(report),
    backupId: report.backup?.id,
    warnings: staleOnly ? failedChecks.map((c) => `${c.name}: ${c.detail}`) : [],
    nextStep: VERIFY_NEXT_STEP,
  });
  const issueNumber = alerted?.issueNumber;
  core.setOutput(Outputs.IssueNumber, issueNumber === undefined ? '' : String(issueNumber));

  if (failed) core.setFailed(failureMessage(report));
}

function passedLine(report: VerifyReport): string {
  const which = report.backup ? `Backup ${report.backup.id}` : 'The backup';
  return `${which} verified: ${report.checks.filter((c) => c.status === 'passed').length} checks passed.`;
}
