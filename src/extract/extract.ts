import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Manifest } from '../catalog/manifest.js';
import { ConfigurationError } from '../core/errors.js';
import {
  connect,
  databaseName,
  describeConnection,
  parseConnectionString,
  type ConnectionInfo,
} from '../postgres/connection.js';
import { compareWithLive, type LiveDiff } from './compare.js';
import { checkSchemaName, defaultExtractSchema, type ExtractOptions } from './options.js';
import {
  restoreChosenTables,
  topLevel,
  type ChosenTable,
  type ExtractDeps,
  type ScratchCopy,
} from './scratch.js';
import {
  buildSideSchema,
  checkExistingSchema,
  dumpSideSchema,
  loadSideSchema,
} from './side-schema.js';

export interface ExtractResult {
  name: string;
  manifest: Manifest;
  /** The target, without credentials. */
  target: string;
  schema: string;
  /** Whether an earlier extract's schema of that name was replaced. */
  replaced: boolean;
  /** Every table extracted, partitions included, with the backup's row counts. */
  tables: ChosenTable[];
  /** The comparison of each top-level table with its live counterpart (empty without compare). */
  diffs: LiveDiff[];
  warnings: string[];
  startedAt: Date;
  finishedAt: Date;
}

/** What an extract writes besides the target: the comparison's CSV files go into `reportDir`. */
export interface ExtractRun extends ExtractDeps {
  reportDir: string;
}

interface Target {
  info: ConnectionInfo;
  database: string;
  describe: string;
}

/** Checks `confirm` before anything is read or touched: an extract writes into the target. */
function confirmedTarget(options: ExtractOptions): Target {
  const info = parseConnectionString(options.targetUrl, 'target-url');
  const database = databaseName(info);
  const describe = describeConnection(info, database);
  if (options.confirm !== database) {
    throw new ConfigurationError(
      `Refusing to extract into ${describe}: confirm must be the target database's name, '${database}'` +
        (options.confirm ? `, got '${options.confirm}'` : ', and it is empty') +
        '. Nothing was changed.',
    );
  }
  return { info, database, describe };
}

async function withTarget<T>(target: Target, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(target.info, target.database);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Brings tables of a backup back beside the live ones: restores them into a scratch server,
 * moves them into the extract schema there, and loads that schema into the target in one
 * transaction; then compares each with its live counterpart.
 */
export async function runExtract(
  options: ExtractOptions,
  deps: ExtractRun,
): Promise<ExtractResult> {
  const { logger } = deps;
  const startedAt = deps.clock.now();
  const target = confirmedTarget(options);
  // Both are known once the backup is: the default schema is named after it.
  const side = { schema: options.extractSchema ?? '', mode: 'new' as 'new' | 'replace' };
  const copy = await restoreChosenTables(options, deps, async (manifest) => {
    side.schema ||= defaultExtractSchema(manifest.id);
    checkSchemaName(side.schema);
    side.mode = await withTarget(target, (c) =>
      checkExistingSchema(c, side.schema, options.replaceExtractSchema),
    );
    logger.info(
      `Extracting from backup ${manifest.id} into schema ${side.schema} of ${target.describe}`,
    );
  });
  const { schema, mode } = side;
  try {
    await moveIntoTarget(copy, target, schema, mode === 'replace', deps);
  } finally {
    await copy.cleanup();
  }
  const diffs = options.compare
    ? await logger.group('Compare with the live tables', () =>
        compareTables(copy, target, schema, options.compareLimit, deps),
      )
    : [];
  return {
    name: copy.name,
    manifest: copy.manifest,
    target: target.describe,
    schema,
    replaced: mode === 'replace',
    tables: copy.tables,
    diffs,
    warnings: copy.warnings,
    startedAt,
    finishedAt: deps.clock.now(),
  };
}

/** Builds the side schema in the scratch server, dumps it, and loads it into the target. */
async function moveIntoTarget(
  copy: ScratchCopy,
  target: Target,
  schema: string,
  replace: boolean,
  deps: ExtractRun,
): Promise<void> {
  const { scratch, tools } = copy;
  const work = copy.workDir;
  const scratchClient = await connect(scratch.connection, scratch.database);
  try {
    await buildSideSchema(scratchClient, copy.tables, schema, copy.manifest.id);
  } finally {
    await scratchClient.end().catch(() => undefined);
  }
  const script = path.join(work, 'extract.sql');
  await dumpSideSchema({
    tools,
    connection: scratch.connection,
    database: scratch.database,
    schema,
    file: script,
    env: deps.env,
  });
  const serverMajor = await withTarget(target, async (c) => {
    const r = await c.query<{ n: string }>(`SELECT current_setting('server_version_num') AS n`);
    return Math.floor(Number(r.rows[0].n) / 10000);
  });
  await deps.logger.group(`Load schema ${schema} into ${target.describe}`, () =>
    loadSideSchema({
      tools,
      connection: target.info,
      database: target.database,
      serverMajor,
      schema,
      replace,
      script,
      prelude: path.join(work, 'prelude.sql'),
      epilogue: path.join(work, 'epilogue.sql'),
      env: deps.env,
      logger: deps.logger,
    }),
  );
}

async function compareTables(
  copy: ScratchCopy,
  target: Target,
  schema: string,
  limit: number,
  deps: ExtractRun,
): Promise<LiveDiff[]> {
  await mkdir(deps.reportDir, { recursive: true });
  return withTarget(target, async (client) => {
    // Type names come out schema-qualified, as the copy-back statements need them.
    await client.query(`SET search_path = ''`);
    const diffs: LiveDiff[] = [];
    for (const t of topLevel(copy.tables)) {
      diffs.push(
        await compareWithLive({
          client,
          side: { schema, name: t.name },
          live: { schema: t.schema, name: t.name },
          rows: t.rows,
          limit,
          csvFile: path.join(deps.reportDir, `compare-${t.schema}.${t.name}.csv`),
          psql: copy.tools.psql,
          connection: target.info,
          database: target.database,
          env: deps.env,
          logger: deps.logger,
        }),
      );
    }
    return diffs;
  });
}
