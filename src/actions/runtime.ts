import * as core from '@actions/core';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { GitContext } from '../catalog/manifest.js';
import { openStorage, type S3Settings } from '../storage/open.js';
import type { Storage } from '../storage/storage.js';
import { parseConnectionString } from '../postgres/connection.js';
import { booleanInput, optionalInput, requiredInput } from './inputs.js';
import { Inputs } from './names.js';

/** A Logger backed by @actions/core: annotations for warnings, folded groups. */
export const actionLogger: Logger = {
  debug: (m) => core.debug(m),
  info: (m) => core.info(m),
  warning: (m) => core.warning(m),
  error: (m) => core.error(m),
  group: (name, fn) => core.group(name, fn),
};

/** Git and run context of the workflow run, for manifests and reports. */
export function gitContext(env: NodeJS.ProcessEnv): GitContext {
  let prNumber: number | undefined;
  const ref = env.GITHUB_REF ?? '';
  const m = /^refs\/pull\/(\d+)\//.exec(ref);
  if (m) prNumber = Number(m[1]);
  const context: GitContext = {
    repository: env.GITHUB_REPOSITORY,
    sha: env.GITHUB_SHA,
    ref: env.GITHUB_REF,
    runId: env.GITHUB_RUN_ID,
    runAttempt: env.GITHUB_RUN_ATTEMPT,
    workflow: env.GITHUB_WORKFLOW,
    prNumber,
    actor: env.GITHUB_ACTOR,
    serverUrl: env.GITHUB_SERVER_URL,
  };
  return Object.fromEntries(
    Object.entries(context).filter(([, v]) => v !== undefined && v !== ''),
  ) as GitContext;
}

/** Masks a connection string and its password (raw and percent-encoded) in every later log line. */
export function maskConnectionString(value: string | undefined): void {
  if (!value) return;
  core.setSecret(value);
  try {
    const info = parseConnectionString(value);
    if (info.password) {
      core.setSecret(info.password);
      core.setSecret(encodeURIComponent(info.password));
    }
  } catch {
    // An unparsable string is masked whole above; parsing reports the error later.
  }
}

/** Masks a secret input value and each of its lines. */
export function maskSecret(value: string | undefined): void {
  if (!value) return;
  core.setSecret(value);
  for (const line of value.split(/\r?\n/)) if (line.trim()) core.setSecret(line.trim());
}

/** The S3 settings from the storage inputs shared by every action. */
export function s3SettingsFromInputs(): S3Settings {
  const endpoint = optionalInput(Inputs.S3Endpoint);
  const forcePathStyle = optionalInput(Inputs.S3ForcePathStyle)
    ? booleanInput(Inputs.S3ForcePathStyle, false)
    : undefined;
  return { endpoint, region: optionalInput(Inputs.S3Region), forcePathStyle };
}

export function storageFromInputs(logger: Logger): Promise<Storage> {
  return openStorage(requiredInput(Inputs.Storage), s3SettingsFromInputs(), logger);
}

/**
 * Runs an action's body: a ConfigurationError fails the step with its message as it is; any
 * other error is reported as a failure with its message, and the stack at debug level. The
 * process exits explicitly so retrying HTTP sockets cannot keep it alive.
 */
export async function runAction(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (!(error instanceof ConfigurationError) && error instanceof Error && error.stack) {
      core.debug(error.stack);
    }
    core.setFailed(errorMessage(error));
  }
  process.exit(process.exitCode ?? 0);
}
