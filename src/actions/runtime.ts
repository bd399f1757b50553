import * as core from '@actions/core';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { invalidRecipientValues } from '../crypto/age.js';
import { parseConnectionString } from '../postgres/connection.js';
import { optionalInput } from './inputs.js';
import { Inputs } from './names.js';

/** A Logger backed by @actions/core: annotations for warnings, folded groups. */
export const actionLogger: Logger = {
  debug: (m) => core.debug(m),
  info: (m) => core.info(m),
  warning: (m) => core.warning(m),
  error: (m) => core.error(m),
  group: (name, fn) => core.group(name, fn),
};

/** Masks a connection string and its password (raw and percent-encoded) in every later log line. */
function maskConnectionString(value: string | undefined): void {
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

/**
 * Masks every secret an action may be given, before anything is logged: the connection strings
 * and their passwords, the age identities and passphrase, PGPASSWORD, and any value of
 * encryption-recipients that is not a recipient (a secret key typed there by mistake).
 */
export function maskSecretInputs(env: NodeJS.ProcessEnv): void {
  maskConnectionString(optionalInput(Inputs.DatabaseUrl));
  maskConnectionString(optionalInput(Inputs.TargetUrl));
  maskConnectionString(optionalInput(Inputs.ScratchUrl));
  maskSecret(optionalInput(Inputs.EncryptionIdentity));
  maskSecret(optionalInput(Inputs.EncryptionPassphrase));
  for (const value of invalidRecipientValues(optionalInput(Inputs.EncryptionRecipients) ?? '')) {
    core.setSecret(value);
  }
  if (env.PGPASSWORD) core.setSecret(env.PGPASSWORD);
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
