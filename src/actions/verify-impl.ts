import { mkdtemp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as core from '@actions/core';
import { isBackupId } from '../catalog/keys.js';
import { parseDuration } from '../core/duration.js';
import { ConfigurationError } from '../core/errors.js';
import { systemClock } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { parseIdentities } from '../crypto/age.js';
import { extensionInstaller } from '../postgres/extensions.js';
import { mayInstallTools } from '../postgres/install.js';
import { resolvePostgresVersionInput } from '../postgres/tools.js';
import { uploadReportArtifact } from '../report/artifact.js';
import { parseChecks } from '../restore/checks.js';
import {
  failureIssueBody,
  failureMessage,
  recoveryIssueBody,
  verifyJson,
  verifyMarkdown,
} from '../verify/report.js';
import { verifyToolResolvers } from '../verify/tools.js';
import { runVerify, type VerifyOptions } from '../verify/verify.js';
import { booleanInput, integerInput, optionalInput } from './inputs.js';
import { reportToIssue } from './issue-report.js';
import { Inputs, Outputs } from './names.js';
import {
  actionLogger,
  gitContext,
  maskConnectionString,
  maskSecret,
  storageFromInputs,
} from './runtime.js';

/** File names of the report inside its folder (the folder is what the artifact holds). */
export const REPORT_JSON = 'verify-report.json';
export const REPORT_MARKDOWN = 'verify-report.md';

export async function runVerifyAction(): Promise<void> {
  const env = process.env;
  const logger = actionLogger;
  const identityText = optionalInput(Inputs.EncryptionIdentity);
  maskSecret(identityText);
  const passphrase = optionalInput(Inputs.EncryptionPassphrase);
  maskSecret(passphrase);
  const targetUrl = optionalInput(Inputs.TargetUrl);
  maskConnectionString(targetUrl);
  if (env.PGPASSWORD) core.setSecret(env.PGPASSWORD);

  const identities = parseIdentities(identityText ?? '');
  const backupId = optionalInput(Inputs.BackupId)?.trim();
  if (backupId !== undefined && !isBackupId(backupId)) {
    throw new ConfigurationError(
      `Input '${Inputs.BackupId}' must look like 20261121T051500Z-3f9a1c (or be empty for the newest backup), got '${backupId}'.`,
    );
  }
  const restore = booleanInput(Inputs.Restore, true);
  const maxAgeText = optionalInput(Inputs.MaxAge);
  const workspace = env.GITHUB_WORKSPACE ?? process.cwd();
  const checks = parseChecks(optionalInput(Inputs.Checks), workspace);
  const postgresVersion = resolvePostgresVersionInput(
    optionalInput(Inputs.PostgresVersion) ?? 'auto',
  );
  const artifactName = optionalInput(Inputs.ReportArtifact)?.trim();
  if (!restore && targetUrl) {
    logger.warning(`target-url is ignored: restore is false, so nothing is restored.`);
  }
  if (!restore && checks.length > 0) {
    logger.warning(
      `The ${checks.length} SQL check(s) of the checks input do not run: restore is false, so there is no database to run them on.`,
    );
  }
  const options: VerifyOptions = {
    name: optionalInput(Inputs.Name)?.trim(),
    backupId,
    decryption: identities.length > 0 || passphrase ? { identities, passphrase } : undefined,
    restore,
    targetUrl: restore ? targetUrl : undefined,
    checks,
    maxAgeSeconds: maxAgeText === undefined ? undefined : parseDuration(maxAgeText, Inputs.MaxAge),
    jobs: integerInput(Inputs.Jobs, 2, 1, 64),
    git: gitContext(env),
  };
  const storage = await storageFromInputs(logger);
  const tmpDir = optionalInput(Inputs.WorkDir) ?? (env.RUNNER_TEMP || undefined);

  const report = await runVerify(options, {
    storage,
    logger,
    clock: systemClock,
    env,
    zstdPath: findOnPath('zstd', env.PATH),
    tmpDir,
    ...verifyToolResolvers({ postgresVersion, install: mayInstallTools(env), logger }),
    installExtensions: extensionInstaller(env, logger),
  });

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
  const issueNumber = await reportToIssue({
    env,
    logger,
    marker: `verify:${report.name}`,
    title: `Backup verification failed: ${report.name}`,
    defaultLabel: 'backup-verification',
    failed,
    body: failed ? failureIssueBody(report) : recoveryIssueBody(report),
  });
  core.setOutput(Outputs.IssueNumber, issueNumber === undefined ? '' : String(issueNumber));

  if (failed) core.setFailed(failureMessage(report));
}
