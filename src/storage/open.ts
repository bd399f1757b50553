import { fileURLToPath } from 'node:url';
import { ConfigurationError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { LocalStorage } from './local.js';
import type { S3Settings } from './s3.js';
import type { Storage } from './storage.js';

export { KeyExistsError, LocalStorage } from './local.js';
export type { S3Settings } from './s3.js';

export type StorageLocation =
  { type: 's3'; bucket: string; prefix: string } | { type: 'local'; path: string };

const EXAMPLES =
  'Use s3://bucket or s3://bucket/prefix for S3, or a folder: /absolute/path, ./relative/path or file:///absolute/path.';

/** The input as it may be quoted in a message: any user:password part is masked. */
function quotable(location: string): string {
  return location.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1***@');
}

function invalid(location: string, why: string): ConfigurationError {
  return new ConfigurationError(
    `Invalid storage location '${quotable(location)}': ${why}. ${EXAMPLES}`,
  );
}

/**
 * Reads a storage location: `s3://bucket[/prefix]`, `file:///abs/path`, `/abs/path`,
 * `./rel/path` or `../rel/path`. Relative paths stay relative (resolved when opened).
 */
export function parseStorageLocation(location: string): StorageLocation {
  const text = location.trim();
  if (text === '') throw invalid(location, 'it is empty');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme === 's3') {
    const rest = text.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const authority = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? '' : rest.slice(slash + 1);
    if (authority.includes('@')) {
      throw invalid(
        location,
        'credentials do not belong in the location; pass them as access key inputs or through the AWS environment',
      );
    }
    if (authority === '') throw invalid(location, 'the bucket name is missing');
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$/.test(authority)) {
      throw invalid(
        location,
        `'${authority}' is not a valid bucket name (letters, digits, '.', '-' and '_', 3 to 255 characters)`,
      );
    }
    if (/[?#]/.test(path)) throw invalid(location, "the prefix must not contain '?' or '#'");
    const prefix = path.replace(/^\/+|\/+$/g, '');
    if (prefix.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw invalid(location, "the prefix must not contain '.' or '..' segments");
    }
    if (prefix.includes('//')) throw invalid(location, 'the prefix contains an empty segment (//)');
    return { type: 's3', bucket: authority, prefix };
  }
  if (scheme === 'file') {
    let path: string;
    try {
      path = fileURLToPath(text);
    } catch (error) {
      throw invalid(
        location,
        `it is not a local file URL (${error instanceof Error ? error.message : String(error)})`,
      );
    }
    return { type: 'local', path };
  }
  if (scheme !== undefined) {
    throw invalid(location, `the scheme '${scheme}://' is not supported`);
  }
  if (text.startsWith('/') || text === '.' || text === '..' || /^\.\.?\//.test(text)) {
    return { type: 'local', path: text };
  }
  if (text.startsWith('~')) {
    throw invalid(location, "'~' is not expanded; give the folder's absolute path");
  }
  throw invalid(
    location,
    `it has no scheme; for a bucket write s3://${text}, for a folder write ./${text}`,
  );
}

/**
 * Opens the store a location names. The S3 module (and the AWS SDK with it) is loaded only for
 * an S3 location: a backup to a folder starts without compiling it.
 */
export async function openStorage(
  location: string,
  s3: S3Settings,
  logger: Logger,
): Promise<Storage> {
  const parsed = parseStorageLocation(location);
  if (parsed.type === 's3') {
    const { S3Storage } = await import('./s3.js');
    return new S3Storage(parsed.bucket, parsed.prefix, s3, logger);
  }
  return new LocalStorage(parsed.path, logger);
}
