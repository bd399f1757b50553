import { ConfigurationError, OptionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  RESTORE_SERVER_SETTINGS,
  startScratchCluster,
  type ScratchCluster,
} from '../postgres/cluster.js';
import {
  connect,
  databaseName,
  describeConnection,
  parseConnectionString,
  quoteIdent,
  type ConnectionInfo,
} from '../postgres/connection.js';
import { findServerBinaries, type ServerBinaries } from '../postgres/tools.js';

/** Where a backup is restored, and how to clean up afterwards. */
export interface RestoreTarget {
  connection: ConnectionInfo;
  database: string;
  /** PostgreSQL version of the target server. */
  serverVersion: string;
  serverMajor: number;
  /** A throwaway cluster this run started, when there is one. */
  scratch?: ScratchCluster;
  /**
   * The run made this server or database and removes it afterwards (a scratch cluster, or a
   * database created on target-url): it may create roles there, and drop them again.
   */
  owned: boolean;
  /** The role the run connects as. */
  user: string;
  /** Drops what this run created (the scratch cluster, or a database it created). */
  cleanup(): Promise<void>;
  describe: string;
}

/** The newest installed server of at least `minMajor`; a ConfigurationError that says what to install otherwise. */
export async function scratchServer(
  minMajor: number,
  logger: Logger,
  extraBinDirs?: string[],
): Promise<ServerBinaries> {
  const server = await findServerBinaries(minMajor, { logger, extraBinDirs });
  if (!server) {
    throw new ConfigurationError(
      `No PostgreSQL server ${minMajor} or newer is installed to restore into (the backup comes from PostgreSQL ${minMajor}). ` +
        `Install one (sudo apt-get install -y postgresql-${minMajor}; GitHub's Ubuntu runners have one preinstalled) ` +
        `or give target-url, e.g. a services: postgres container.`,
    );
  }
  return server;
}

/** Starts a throwaway cluster and a database in it to restore into. */
export async function scratchTarget(options: {
  server: ServerBinaries;
  logger: Logger;
  database?: string;
  /** Where the cluster's data directory goes; default: the OS temp folder. */
  parentDir?: string;
}): Promise<RestoreTarget> {
  const cluster = await startScratchCluster({
    server: options.server,
    logger: options.logger,
    parentDir: options.parentDir,
    settings: { ...RESTORE_SERVER_SETTINGS },
  });
  const database = options.database ?? 'restore_check';
  try {
    const info = parseConnectionString(cluster.url('postgres'));
    const client = await connect(info);
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(database)}`);
    } finally {
      await client.end();
    }
    options.logger.info(`Started a scratch PostgreSQL ${cluster.version} on port ${cluster.port}`);
    return {
      connection: { ...info, database },
      database,
      serverVersion: cluster.version,
      serverMajor: cluster.major,
      scratch: cluster,
      owned: true,
      user: cluster.user,
      cleanup: () => cluster.stop(),
      describe: `scratch PostgreSQL ${cluster.version} (127.0.0.1:${cluster.port}/${database})`,
    };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

/**
 * A database given by `target-url`. When it does not exist, it is created (and dropped again
 * by `cleanup`); when it exists it must be empty, unless `allowNonEmpty` (the real restore).
 */
export async function givenTarget(options: {
  url: string;
  /** The option the URL was given in, which errors name (default target-url). */
  option?: string;
  logger: Logger;
  allowNonEmpty?: boolean;
  dropCreatedOnCleanup?: boolean;
}): Promise<RestoreTarget> {
  const key = options.option ?? 'target-url';
  const info = parseConnectionString(options.url, key);
  const database = databaseName(info);
  let created = false;
  const admin = await connect(info, 'postgres').catch(() => undefined);
  try {
    if (admin) {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (exists.rowCount === 0) {
        await admin.query(`CREATE DATABASE ${quoteIdent(database)}`);
        created = true;
        options.logger.info(`Created database ${database} to restore into`);
      }
    }
  } finally {
    await admin?.end().catch(() => undefined);
  }
  const client = await connect(info, database);
  let version: { v: string; n: string; user: string };
  try {
    version = (
      await client.query<{ v: string; n: string; user: string }>(
        "SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n, current_user AS user",
      )
    ).rows[0];
    if (!created && !options.allowNonEmpty) {
      const objects = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
            AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')`,
      );
      if (Number(objects.rows[0].n) > 0) {
        const tables = objects.rows[0].n;
        throw new OptionError(
          key,
          (w) =>
            `the target database ${describeConnection(info, database)} is not empty (${tables} tables, views or sequences). ` +
            `A verification restores only into an empty database or one it creates: point ${w.option(key)} at a new database name, or leave it empty for a throwaway server.`,
        );
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  return {
    connection: { ...info, database },
    database,
    serverVersion: version.v.split(' ')[0],
    serverMajor: Math.floor(Number(version.n) / 10000),
    owned: created && options.dropCreatedOnCleanup !== false,
    user: version.user,
    cleanup: async () => {
      if (!created || options.dropCreatedOnCleanup === false) return;
      const c = await connect(info, 'postgres');
      try {
        await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
      } finally {
        await c.end().catch(() => undefined);
      }
    },
    describe: describeConnection(info, database),
  };
}

/**
 * The target of verify, the drill and the real restore: target-url when given (a real restore
 * may find it holding data and never drops it), else a scratch server of at least `minMajor`
 * with a new database.
 */
export async function openTarget(o: {
  targetUrl?: string;
  /** The option targetUrl was given in, which errors name (default target-url). */
  targetOption?: string;
  minMajor: number;
  /** Server binaries for the scratch server; default: the newest installed. */
  findServer?: (minMajor: number) => Promise<ServerBinaries>;
  /** The scratch server's database. */
  database?: string;
  /** A real restore into target-url. */
  replace?: boolean;
  /** The work folder: a scratch server's data directory goes there. */
  workDir?: string;
  logger: Logger;
}): Promise<RestoreTarget> {
  if (o.targetUrl) {
    return givenTarget({
      url: o.targetUrl,
      option: o.targetOption,
      logger: o.logger,
      allowNonEmpty: Boolean(o.replace),
      dropCreatedOnCleanup: !o.replace,
    });
  }
  const server = await findScratchServer(o.minMajor, o.findServer, o.logger);
  return scratchTarget({ server, logger: o.logger, database: o.database, parentDir: o.workDir });
}

/** A scratch server's binaries: by `findServer` when given (it may install them), else scratchServer. */
export function findScratchServer(
  minMajor: number,
  findServer: ((minMajor: number) => Promise<ServerBinaries>) | undefined,
  logger: Logger,
): Promise<ServerBinaries> {
  return findServer ? findServer(minMajor) : scratchServer(minMajor, logger);
}
