/**
 * The options of a file backup job, read once through an accessor (`read(name)` returns the
 * action input or command-line option of that name, undefined when unset), so the action and
 * the CLI share one reading of them.
 */
import { BACKUP_KINDS, type BackupKind, type GitContext } from '../catalog/manifest.js';
import { isCatalogName } from '../catalog/keys.js';
import { parseMaxDelete, parseRetentionPolicy } from '../catalog/retention.js';
import { ConfigurationError } from '../core/errors.js';
import { OptionReader } from '../options/reader.js';
import { parseIdentities, parseRecipients } from '../crypto/age.js';
import { parseDeleteIncompleteAfter } from '../prune/options.js';
import type { S3Settings } from '../storage/open.js';
import type { FileBackupOptions } from './backup.js';
import type { FileDrillOptions } from './drill.js';
import type { FilePruneOptions } from './prune.js';
import type { FileRestoreOptions } from './restore.js';
import type { FileVerifyOptions } from './verify.js';

export type Read = (name: string) => string | undefined;

export const FILES_MODES = ['backup', 'restore', 'verify', 'drill', 'prune'] as const;
export type FilesMode = (typeof FILES_MODES)[number];

/** Inputs whose values are secrets: masked before anything is logged. */
export const FILES_SECRET_INPUTS = [
  'files-s3-secret-access-key',
  'encryption-identity',
  'encryption-passphrase',
] as const;

/** A location with the S3 settings that reach it. */
export interface Place {
  location: string;
  s3: S3Settings;
}

export type FilesJob = { storage: Place } & (
  | { mode: 'backup'; source: Place; backup: FileBackupOptions }
  | { mode: 'restore'; target: Place; restore: FileRestoreOptions }
  | { mode: 'verify'; verify: FileVerifyOptions }
  | { mode: 'drill'; target?: Place; drill: FileDrillOptions }
  | { mode: 'prune'; prune: FilePruneOptions }
);

/** The shared option parsers over an accessor (the readers of both front doors). */
function reader(read: Read): OptionReader {
  return new OptionReader({ value: read, secret: read });
}

const required = (read: Read, name: string): string => reader(read).required(name);
const duration = (read: Read, name: string): number | undefined => reader(read).duration(name);
const flag = (read: Read, name: string): boolean => reader(read).boolean(name, false);

/** The backup store: `storage` with `s3-endpoint`, `s3-region`, `s3-force-path-style`. */
function storagePlace(read: Read): Place {
  return {
    location: required(read, 'storage'),
    s3: {
      endpoint: read('s3-endpoint'),
      region: read('s3-region'),
      forcePathStyle: read('s3-force-path-style') ? flag(read, 's3-force-path-style') : undefined,
    },
  };
}

/** The files' side (the source of a backup, the target of a restore): `files-s3-*`. */
function filesPlace(read: Read, name: 'source' | 'target'): Place {
  const accessKeyId = read('files-s3-access-key-id');
  const secretAccessKey = read('files-s3-secret-access-key');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigurationError(
      "Inputs 'files-s3-access-key-id' and 'files-s3-secret-access-key' go together: set both, or neither to use the AWS environment.",
    );
  }
  return {
    location: required(read, name),
    s3: {
      endpoint: read('files-s3-endpoint'),
      region: read('files-s3-region'),
      forcePathStyle: read('files-s3-force-path-style')
        ? flag(read, 'files-s3-force-path-style')
        : undefined,
      credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
    },
  };
}

function catalogName(read: Read): string {
  const name = read('name') ?? 'files';
  if (!isCatalogName(name)) {
    throw new ConfigurationError(
      `Input 'name' must be one path segment of letters, digits, '.', '_' and '-', got '${name}'.`,
    );
  }
  return name;
}

function decryption(read: Read): { identities: string[]; passphrase?: string } {
  return {
    identities: parseIdentities(read('encryption-identity') ?? ''),
    passphrase: read('encryption-passphrase'),
  };
}

function backupOptions(read: Read, name: string, git: GitContext): FileBackupOptions {
  const recipients = parseRecipients(read('encryption-recipients') ?? '');
  const passphrase = read('encryption-passphrase');
  return {
    name,
    kind: reader(read).choice<BackupKind>('kind', BACKUP_KINDS, 'scheduled'),
    labels: {},
    encryption: recipients.length > 0 || passphrase ? { recipients, passphrase } : undefined,
    git,
  };
}

function pruneOptions(read: Read, name: string): FilePruneOptions {
  return {
    name,
    policy: parseRetentionPolicy({
      keepLast: read('keep-last'),
      keepDaily: read('keep-daily'),
      keepWeekly: read('keep-weekly'),
      keepMonthly: read('keep-monthly'),
      keepYearly: read('keep-yearly'),
      keepWithin: read('keep-within'),
      timezone: read('timezone'),
    }),
    maxDelete: parseMaxDelete(read('max-delete') ?? '50%'),
    deleteIncompleteAfterSeconds: parseDeleteIncompleteAfter(
      read('delete-incomplete-after') ?? '24h',
    ),
    dryRun: flag(read, 'dry-run'),
  };
}

/** Reads and checks every option of the job before any work starts. */
export function parseFilesJob(read: Read, git: GitContext = {}): FilesJob {
  const mode = reader(read).choice('mode', FILES_MODES, 'backup');
  const storage = storagePlace(read);
  const name = catalogName(read);
  const backupId = read('backup-id') ?? 'latest';
  switch (mode) {
    case 'backup':
      return {
        mode,
        storage,
        source: filesPlace(read, 'source'),
        backup: backupOptions(read, name, git),
      };
    case 'restore':
      return {
        mode,
        storage,
        target: filesPlace(read, 'target'),
        restore: { name, backupId, ...decryption(read) },
      };
    case 'verify':
      return {
        mode,
        storage,
        verify: { name, backupId, restore: flag(read, 'restore'), ...decryption(read), git },
      };
    case 'drill':
      return {
        mode,
        storage,
        ...(read('target') === undefined ? {} : { target: filesPlace(read, 'target') }),
        drill: {
          name,
          backupId,
          ...decryption(read),
          rtoTargetSeconds: duration(read, 'rto-target'),
          rpoTargetSeconds: duration(read, 'rpo-target'),
          git,
        },
      };
    case 'prune':
      return { mode, storage, prune: pruneOptions(read, name) };
  }
}
