import os from 'node:os';
import { isBackupId } from '../catalog/keys.js';
import { OptionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseIdentities } from '../crypto/age.js';
import type { DrillOptions, RestoreOptions } from '../drill/drill.js';
import { parseChecks } from '../restore/checks.js';
import { RESTORE_PLAN_CHOICES } from '../restore/disk.js';
import type { Decryption } from '../restore/fetch.js';
import type { VerifyOptions } from '../verify/verify.js';
import type { FrontDoor, OptionReader } from './reader.js';
import { postgresVersionOption } from './shared.js';

/** The age identities or passphrase that open an encrypted backup; undefined when none. */
export function decryptionOption(read: OptionReader): Decryption | undefined {
  const identities = parseIdentities(read.secret('encryption-identity') ?? '');
  const passphrase = read.secret('encryption-passphrase');
  return identities.length > 0 || passphrase ? { identities, passphrase } : undefined;
}

/** The folder under which a run's download, archive and scratch server go. */
export function workDirOption(read: OptionReader, door: FrontDoor): string {
  return read.string('work-dir') ?? (door.env.RUNNER_TEMP || os.tmpdir());
}

/** A backup id, or undefined for the newest backup. */
function backupIdOption(read: OptionReader): string | undefined {
  const id = read.trimmed('backup-id');
  if (id !== undefined && !isBackupId(id)) {
    throw new OptionError(
      'backup-id',
      (w) =>
        `${w.option('backup-id')} must look like 20261121T051500Z-3f9a1c (or be empty for the newest backup), got '${id}'.`,
    );
  }
  return id;
}

/** The verification's options; what `restore: false` leaves unused is said once, as a warning. */
export function verifyOptions(read: OptionReader, door: FrontDoor, logger: Logger): VerifyOptions {
  const restore = read.boolean('restore', true);
  const targetUrl = read.secret('target-url');
  const checks = parseChecks(read.string('checks'), door.workspace);
  const { option } = door.wording;
  if (!restore && targetUrl) {
    logger.warning(`Ignoring ${option('target-url')}: this verification restores nothing.`);
  }
  if (!restore && checks.length > 0) {
    logger.warning(
      `The ${checks.length} SQL check(s) of ${option('checks')} do not run: this verification restores nothing, so there is no database to run them on.`,
    );
  }
  return {
    name: read.trimmed('name'),
    backupId: backupIdOption(read),
    decryption: decryptionOption(read),
    restore,
    targetUrl: restore ? targetUrl : undefined,
    checks,
    maxAgeSeconds: read.duration('max-age'),
    jobs: read.integer('jobs', 2, 1, 64),
    git: door.git,
    restorePlan: read.choice('restore-plan', RESTORE_PLAN_CHOICES, 'auto'),
  };
}

/** The drill's options. */
export function drillOptions(read: OptionReader, door: FrontDoor): DrillOptions {
  return {
    name: read.trimmed('name'),
    backupId: backupIdOption(read),
    decryption: decryptionOption(read),
    jobs: read.integer('jobs', 2, 1, 64),
    rtoTargetSeconds: read.duration('rto-target'),
    rpoTargetSeconds: read.duration('rpo-target'),
    smokeCommand: read.string('smoke-command'),
    checks: parseChecks(read.string('checks'), door.workspace),
    targetUrl: read.secret('target-url'),
    postgresVersion: postgresVersionOption(read),
    git: door.git,
    restorePlan: read.choice('restore-plan', RESTORE_PLAN_CHOICES, 'auto'),
  };
}

/** The real restore's options: the drill's, with the target to replace and its safeguards. */
export function restoreOptions(read: OptionReader, door: FrontDoor): RestoreOptions {
  return {
    ...drillOptions(read, door),
    targetUrl: read.secret('target-url') ?? '',
    confirm: read.string('confirm'),
    terminateConnections: read.boolean('terminate-connections', false),
    safetyBackup: read.boolean('safety-backup', true),
  };
}
