import type { GitContext } from '../catalog/manifest.js';
import type { Logger } from '../core/logger.js';
import { resolvePostgresVersionInput } from '../postgres/tools.js';
import { openStorage, type S3Settings } from '../storage/open.js';
import type { Storage } from '../storage/storage.js';
import type { OptionReader } from './reader.js';

/** The S3 settings shared by every command: endpoint, region, path-style addressing. */
export function s3Settings(read: OptionReader): S3Settings {
  return {
    endpoint: read.string('s3-endpoint'),
    region: read.string('s3-region'),
    forcePathStyle:
      read.string('s3-force-path-style') === undefined
        ? undefined
        : read.boolean('s3-force-path-style', false),
  };
}

/** Opens the store named by `storage`. */
export function storageOption(read: OptionReader, logger: Logger): Promise<Storage> {
  return openStorage(read.required('storage'), s3Settings(read), logger);
}

/** `auto`, or the PostgreSQL major the client tools must have. */
export function postgresVersionOption(read: OptionReader): 'auto' | number {
  return resolvePostgresVersionInput(read.string('postgres-version') ?? 'auto');
}

/** Git and run context of the workflow run (none outside GitHub Actions), for manifests and reports. */
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
