import { ConfigurationError, OptionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { openStorage, parseStorageLocation, type S3Settings } from './open.js';
import type { Storage } from './storage.js';

/** One place a backup is written to: a storage location and how to reach it. */
export interface Destination {
  location: string;
  s3: S3Settings;
}

/** The destinations of a backup run and how many of them must hold a complete copy. */
export interface DestinationPlan {
  destinations: Destination[];
  required: number;
}

/** Reads one input (action) or option (CLI) by its name; undefined when it is not set. */
export type ReadSetting = (name: string) => string | undefined;

/** The per-line options: `endpoint=`, `region=`, `path-style=` and `credentials=`. */
const LINE_OPTIONS = ['endpoint', 'region', 'path-style', 'credentials'] as const;
type LineOption = (typeof LINE_OPTIONS)[number];

const CREDENTIALS_HINT =
  'name an environment prefix instead (credentials=R2 reads R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY)';

/**
 * The destinations of `storage`, one per non-empty line: a location followed by optional
 * `key=value` options (see docs/storage.md). A line's options override the shared `s3-endpoint`,
 * `s3-region` and `s3-force-path-style` settings; `credentials=PREFIX` reads the keys from the
 * environment, so no secret is ever part of the (logged) input. Every secret read is passed to
 * `mask` before anything else happens.
 */
export function readDestinations(
  read: ReadSetting,
  env: NodeJS.ProcessEnv,
  mask: (secret: string) => void,
): DestinationPlan {
  const shared: S3Settings = {
    endpoint: read('s3-endpoint'),
    region: read('s3-region'),
    forcePathStyle: booleanSetting(read('s3-force-path-style'), 's3-force-path-style'),
  };
  const lines = (read('storage') ?? '').split(/\r?\n/).filter((line) => line.trim() !== '');
  if (lines.length === 0) {
    throw new OptionError('storage', (w) => w.missing('storage'));
  }
  const destinations = lines.map((line) => parseDestinationLine(line, shared, env, mask));
  const locations = destinations.map((d) => d.location);
  const twice = locations.find((location, i) => locations.indexOf(location) !== i);
  if (twice !== undefined) {
    throw new OptionError(
      'storage',
      (w) => `${w.option('storage')} names ${twice} twice; each line must be another destination.`,
    );
  }
  return {
    destinations,
    required: requiredCount(read('destinations-required'), destinations.length),
  };
}

/**
 * The destinations of verify's `copies` setting, in the syntax of `storage` lines; none when it
 * is not set.
 */
export function readCopies(
  read: ReadSetting,
  env: NodeJS.ProcessEnv,
  mask: (secret: string) => void,
): Destination[] {
  const text = read('copies');
  if (text === undefined || text.trim() === '') return [];
  return readDestinations((name) => (name === 'storage' ? text : read(name)), env, mask)
    .destinations;
}

/** One line of `storage`: the location, then `key=value` options separated by spaces. */
export function parseDestinationLine(
  line: string,
  shared: S3Settings,
  env: NodeJS.ProcessEnv,
  mask: (secret: string) => void,
): Destination {
  const words = line.trim().split(/\s+/);
  const options = new Map<LineOption, string>();
  // Options are the trailing key=value words, so a folder with spaces in its name still works.
  while (words.length > 1 && /^[a-z-]+=/.test(words[words.length - 1])) {
    const word = words.pop() as string;
    const key = word.slice(0, word.indexOf('='));
    if (!(LINE_OPTIONS as readonly string[]).includes(key)) {
      const hint = /secret|key|token|password/.test(key) ? `; ${CREDENTIALS_HINT}` : '';
      throw new ConfigurationError(
        `Unknown option '${key}' in a storage line; the options are ${LINE_OPTIONS.join(', ')}${hint}.`,
      );
    }
    options.set(key as LineOption, word.slice(key.length + 1));
  }
  const location = words.join(' ');
  parseStorageLocation(location);
  const s3: S3Settings = {
    endpoint: options.get('endpoint') ?? shared.endpoint,
    region: options.get('region') ?? shared.region,
    forcePathStyle: options.has('path-style')
      ? booleanSetting(options.get('path-style'), 'path-style')
      : shared.forcePathStyle,
  };
  const prefix = options.get('credentials');
  if (prefix !== undefined) s3.credentials = credentialsFrom(prefix, env, mask);
  return { location, s3 };
}

/** `PREFIX_ACCESS_KEY_ID`, `PREFIX_SECRET_ACCESS_KEY` and `PREFIX_SESSION_TOKEN`, masked. */
function credentialsFrom(
  prefix: string,
  env: NodeJS.ProcessEnv,
  mask: (secret: string) => void,
): NonNullable<S3Settings['credentials']> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(prefix)) {
    throw new ConfigurationError(
      `The credentials option of a storage line takes an environment variable prefix (letters, digits, '_'), not a key: ${CREDENTIALS_HINT}.`,
    );
  }
  const accessKeyId = env[`${prefix}_ACCESS_KEY_ID`];
  const secretAccessKey = env[`${prefix}_SECRET_ACCESS_KEY`];
  const sessionToken = env[`${prefix}_SESSION_TOKEN`] || undefined;
  for (const secret of [accessKeyId, secretAccessKey, sessionToken]) if (secret) mask(secret);
  if (!accessKeyId || !secretAccessKey) {
    throw new ConfigurationError(
      `credentials=${prefix} needs the environment variables ${prefix}_ACCESS_KEY_ID and ${prefix}_SECRET_ACCESS_KEY (set them from secrets in the step's env).`,
    );
  }
  return { accessKeyId, secretAccessKey, sessionToken };
}

function booleanSetting(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const text = value.trim().toLowerCase();
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new OptionError(name, (w) => `${w.option(name)} must be true or false, got '${value}'.`);
}

/** `destinations-required`: how many destinations must hold a complete copy (default: all). */
function requiredCount(value: string | undefined, total: number): number {
  if (value === undefined || value.trim() === '') return total;
  const n = Number(value.trim());
  if (!Number.isInteger(n) || n < 1 || n > total) {
    throw new OptionError(
      'destinations-required',
      (w) =>
        `${w.option('destinations-required')} must be a whole number from 1 to ${total} (the storage lines), got '${value}'.`,
    );
  }
  return n;
}

/** Opens every destination's store, in order. */
export function openDestinations(
  destinations: readonly Destination[],
  logger: Logger,
): Promise<Storage[]> {
  return Promise.all(destinations.map((d) => openStorage(d.location, d.s3, logger)));
}
