import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { resolveName } from '../catalog/catalog.js';
import type { Manifest } from '../catalog/manifest.js';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import { connect, quoteIdent } from '../postgres/connection.js';
import type { ClientTools } from '../postgres/tools.js';
import { pickBackup, type DrillDeps } from '../drill/drill.js';
import { majorOf } from '../postgres/tools.js';
import { chooseRestorePlan, workDiskNeed } from '../restore/disk.js';
import { fetchArchive, missingKeyError, missingZstdError } from '../restore/fetch.js';
import {
  listArchiveText,
  parseArchiveListing,
  runPgRestore,
  type ArchiveListing,
} from '../restore/pg-restore.js';
import { dropRoles, prepareRestore, type PlatformRoute } from '../restore/pipeline.js';
import { openTarget, type RestoreTarget } from '../restore/target.js';
import { EXTRACT_OPTION_KEYS, type TableSelection } from './options.js';
import { parseTablePattern } from './patterns.js';

/** What extract and export need of the run: the drill's dependencies, less the smoke command's. */
export type ExtractDeps = Pick<
  DrillDeps,
  | 'storage'
  | 'logger'
  | 'clock'
  | 'env'
  | 'zstdPath'
  | 'resolveTools'
  | 'findServer'
  | 'workDir'
  | 'progressIntervalMs'
  | 'onTemporaryFolder'
  | 'installExtensions'
>;

/** A table of the backup chosen by the patterns (or as a partition of one chosen). */
export interface ChosenTable {
  schema: string;
  name: string;
  kind: 'table' | 'partitioned';
  /** The chosen partitioned table this one is a partition of. */
  parent?: { schema: string; name: string };
  /** Rows in the backup (a partitioned table's: those of all its partitions). */
  rows: number;
}

/** The chosen tables of a backup, restored with their data into a scratch server. */
export interface ScratchCopy {
  name: string;
  manifest: Manifest;
  /** The scratch server and its database holding the tables. */
  scratch: RestoreTarget;
  tools: ClientTools;
  tables: ChosenTable[];
  warnings: string[];
  /** The run's own folder (the archive, lists, scripts): removed by cleanup. */
  workDir: string;
  /** Stops the scratch server and removes every file of the run. */
  cleanup(): Promise<void>;
}

/** `schema.name`, quoted where needed. */
export function qualified(t: { schema: string; name: string }): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** The top-level chosen tables: those that are not partitions of another chosen table. */
export function topLevel(tables: ChosenTable[]): ChosenTable[] {
  return tables.filter((t) => !t.parent);
}

/**
 * Entries left out of the schema a scratch copy restores: data (loaded for the chosen tables
 * only), and what needs roles or servers the scratch server does not have and a side copy does
 * not need (policies, row security, publications, subscriptions, event triggers).
 */
const LEFT_OUT =
  / (TABLE DATA|SEQUENCE SET|BLOB|BLOBS|BLOB METADATA|LARGE OBJECT|MATERIALIZED VIEW DATA|POLICY|ROW SECURITY|PUBLICATION|PUBLICATION TABLE|PUBLICATION TABLES IN SCHEMA|SUBSCRIPTION|SUBSCRIPTION TABLE|EVENT TRIGGER|DEFAULT ACL|ACL) /;

/** `pg_restore -L` lists: the schema without data, and the chosen tables' data. */
export function schemaList(lines: string[]): string {
  return lines.map((l) => (/^\d+;/.test(l) && LEFT_OUT.test(l) ? `;${l}` : l)).join('\n');
}

export function dataList(lines: string[], tables: ChosenTable[]): string {
  const wanted = tables.map((t) => ` TABLE DATA ${t.schema} ${t.name} `);
  const keep = (l: string): boolean =>
    / SEQUENCE SET /.test(l) || wanted.some((w) => `${l} `.includes(w));
  return lines.map((l) => (/^\d+;/.test(l) && !keep(l) ? `;${l}` : l)).join('\n');
}

/**
 * Restores the tables `selection` chooses from a backup into a scratch server: the whole
 * schema without data (so every type, sequence and function they need is there), then the data
 * of the chosen tables and their partitions only, with triggers off as pg_restore loads data.
 */
export async function restoreChosenTables(
  selection: TableSelection,
  deps: ExtractDeps,
  beforeDownload?: (manifest: Manifest, name: string) => Promise<void>,
): Promise<ScratchCopy> {
  const { logger } = deps;
  const name = await resolveName(deps.storage, selection.name);
  const { manifest, warnings } = await pickBackup(deps.storage, name, selection.backupId);
  for (const w of warnings) logger.warning(w);
  refusePartialPlatformBackup(manifest);
  const undecodable =
    missingKeyError(manifest, selection.decryption) ?? missingZstdError(manifest, deps.zstdPath);
  if (undecodable) throw undecodable;
  await beforeDownload?.(manifest, name);
  const room = await chooseRestorePlan({
    need: workDiskNeed(manifest, { downloads: false, scratch: true }),
    choice: 'disk',
    dir: deps.workDir,
    streams: false,
  });
  logger.info(`Work folder: ${room.why}`);

  const workDir = await mkdtemp(path.join(deps.workDir, 'extract-'));
  deps.onTemporaryFolder?.(workDir);
  let scratch: RestoreTarget | undefined;
  // Roles the platform's route creates on the scratch server: dropped with a given one's database.
  const createdRoles: string[] = [];
  const cleanup = async (): Promise<void> => {
    await scratch?.cleanup().catch((error: unknown) => {
      logger.warning(`Could not remove the scratch copy: ${errorMessage(error)}`);
    });
    if (scratch && !scratch.scratch) await dropScratchRoles(scratch, createdRoles, logger);
    await rm(workDir, { recursive: true, force: true });
  };
  try {
    const opened = { ...(await openScratch(selection, deps, manifest)), createdRoles };
    scratch = opened.scratch;
    const tables = await loadTables(selection, deps, manifest, opened, workDir);
    return { name, manifest, scratch, tools: opened.tools, tables, warnings, workDir, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * A Supabase backup of selected schemas is refused before anything is downloaded or the target
 * is reached: the platform's route gives a new database of such a backup the platform's
 * definitions from the server's own project database, which a scratch server the step starts
 * does not have.
 */
function refusePartialPlatformBackup(manifest: Manifest): void {
  if (!manifest.platform || (manifest.options?.schemas ?? []).length === 0) return;
  throw new ConfigurationError(
    `Backup ${manifest.id} holds only schema(s) ${manifest.options?.schemas?.join(', ')} of a Supabase project, and extract and export take the tables of a backup of the whole project: ` +
      "its tables rely on the platform's (auth.users, extensions.*), which a scratch server gets only from such a backup. Extract from a backup of the whole project. Nothing was changed.",
  );
}

/** Drops the roles the run created on a scratch server it was given, naming any left. */
async function dropScratchRoles(
  scratch: RestoreTarget,
  roles: string[],
  logger: ExtractDeps['logger'],
): Promise<void> {
  const left = await dropRoles(scratch, roles).catch(() => roles);
  if (left.length > 0) {
    logger.warning(
      `Could not drop the role(s) this run created on the scratch server: ${left.join(', ')}`,
    );
  }
}

/**
 * The scratch copy's server and database: a new database on the server of scratch-url, or a
 * server the step starts, at least as new as the backup's source; and client tools for it.
 */
async function openScratch(
  selection: TableSelection,
  deps: ExtractDeps,
  manifest: Manifest,
): Promise<{ scratch: RestoreTarget; tools: ClientTools }> {
  const sourceMajor = majorOf(manifest.source.serverVersion);
  const dumpMajor = Math.max(majorOf(manifest.tools.pgDumpVersion), sourceMajor);
  const request = {
    major: dumpMajor,
    version: manifest.tools.pgDumpVersion,
    needServer: !selection.scratchUrl,
  };
  let tools = await deps.resolveTools(request);
  const scratch = await openTarget({
    targetUrl: selection.scratchUrl,
    targetOption: EXTRACT_OPTION_KEYS.scratchUrl,
    minMajor:
      selection.postgresVersion === 'auto'
        ? sourceMajor
        : Math.max(selection.postgresVersion, sourceMajor),
    findServer: deps.findServer,
    database: 'extract',
    workDir: deps.workDir,
    logger: deps.logger,
  });
  if (scratch.scratch) deps.onTemporaryFolder?.(path.dirname(scratch.scratch.dataDir));
  // pg_dump refuses a server newer than itself: the side schema is dumped from this one.
  if (scratch.serverMajor > tools.major) {
    tools = await deps.resolveTools({ ...request, major: scratch.serverMajor, needServer: false });
  }
  return { scratch, tools };
}

async function loadTables(
  selection: TableSelection,
  deps: ExtractDeps,
  manifest: Manifest,
  opened: { scratch: RestoreTarget; tools: ClientTools; createdRoles: string[] },
  workDir: string,
): Promise<ChosenTable[]> {
  const { logger } = deps;
  const { scratch, tools } = opened;
  const fetched = await logger.group(`Download and decode backup ${manifest.id}`, () =>
    fetchArchive({
      storage: deps.storage,
      manifest,
      decryption: selection.decryption,
      tools: { zstdPath: deps.zstdPath },
      dir: path.join(workDir, 'fetch'),
      logger,
      progressIntervalMs: deps.progressIntervalMs,
    }),
  );
  const text = await listArchiveText(tools.pgRestore, fetched.archivePath);
  const listing = parseArchiveListing(text);
  await requireExtensions(scratch, listing.extensions, deps, manifest);
  const route = manifest.platform
    ? await preparePlatformScratch({ ...opened, manifest, listing, workDir, deps }, fetched)
    : undefined;
  const lines = (route ? await readFile(route.listFile, 'utf8') : text).split('\n');
  const restore = async (list: string, file: string, jobs: number): Promise<void> => {
    const listFile = path.join(workDir, file);
    await writeFile(listFile, list);
    await runPgRestore({
      pgRestore: tools.pgRestore,
      archivePath: fetched.archivePath,
      connection: scratch.connection,
      database: scratch.database,
      jobs,
      listFile,
      sessionOptions: '-c session_replication_role=replica',
      env: deps.env,
      logger,
    });
  };
  await logger.group('Restore the schema into the scratch server', () =>
    restore(schemaList(lines), 'schema.list', 1),
  );
  const client = await connect(scratch.connection, scratch.database);
  try {
    const tables = await chooseTables(client, selection.tables);
    logger.info(`Tables chosen: ${tables.map((t) => `${t.schema}.${t.name}`).join(', ')}`);
    await logger.group(`Restore the data of ${tables.length} table(s)`, () =>
      restore(dataList(lines, tables), 'data.list', selection.jobs),
    );
    for (const statement of route?.after ?? []) await client.query(statement);
    for (const t of tables) {
      const r = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${qualified(t)}`,
      );
      t.rows = Number(r.rows[0].n);
    }
    return tables;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A backup of a platform's database (Supabase) is restored the way verify and the drill restore
 * one into a new database of the platform's server: the roles the archive names are created,
 * then the platform's schemas and extensions as the platform makes them, and the archive's list
 * is the platform route's (what CREATE EXTENSION made is left out, as are the platform's own
 * bookkeeping rows). Returns that route; its list is filtered further like any archive's.
 */
async function preparePlatformScratch(
  o: {
    scratch: RestoreTarget;
    tools: ClientTools;
    manifest: Manifest;
    listing: ArchiveListing;
    workDir: string;
    deps: ExtractDeps;
    createdRoles: string[];
  },
  fetched: { archivePath: string },
): Promise<PlatformRoute> {
  const client = await connect(o.scratch.connection, o.scratch.database);
  try {
    const prepared = await prepareRestore(
      {
        target: o.scratch,
        manifest: o.manifest,
        tools: o.tools,
        archivePath: fetched.archivePath,
        listing: o.listing,
        workDir: o.workDir,
        jobs: 1,
        into: 'new',
        createdRoles: o.createdRoles,
        installExtensions: o.deps.installExtensions,
        env: o.deps.env,
        logger: o.deps.logger,
      },
      client,
    );
    o.deps.logger.info(`Scratch server prepared: ${prepared.detail}`);
    if (!prepared.route) throw new Error(`Backup ${o.manifest.id}: no route for its platform.`);
    for (const statement of prepared.route.before) await client.query(statement);
    return prepared.route;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The archive's extensions on the scratch server: installed where the run may, else an error naming them. */
async function requireExtensions(
  scratch: RestoreTarget,
  needed: string[],
  deps: ExtractDeps,
  manifest: Manifest,
): Promise<void> {
  const missing = async (): Promise<string[]> => {
    const client = await connect(scratch.connection, scratch.database);
    try {
      const r = await client.query<{ name: string }>('SELECT name FROM pg_available_extensions');
      const available = new Set(r.rows.map((row) => row.name));
      return needed.filter((name) => !available.has(name));
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  let lacking = await missing();
  if (lacking.length > 0 && scratch.scratch && deps.installExtensions) {
    deps.logger.info(await deps.installExtensions(lacking, scratch.serverMajor));
    lacking = await missing();
  }
  if (lacking.length === 0) return;
  const K = EXTRACT_OPTION_KEYS;
  const remedy = !scratch.scratch
    ? `give ${K.scratchUrl} a server that has them`
    : manifest.platform?.name === 'supabase'
      ? `these are the Supabase platform's: give ${K.scratchUrl}, a new database on a supabase/postgres service container at the project's version (see docs/extract.md)`
      : `install them for PostgreSQL ${scratch.serverMajor} on this machine, or give ${K.scratchUrl}, a new database on a server that has them`;
  throw new ConfigurationError(
    `The backup's schema needs extension(s) ${lacking.join(', ')}, which the scratch server ${scratch.describe} lacks: ${remedy}. Nothing was changed.`,
  );
}

/**
 * The tables the patterns match (ordinary and partitioned ones; an unqualified pattern matches
 * the tables on the search path, as pg_dump's -t does), then every partition of those, at any
 * depth. A pattern that matches nothing is an error naming it.
 */
export async function chooseTables(client: pg.Client, patterns: string[]): Promise<ChosenTable[]> {
  const chosen = new Map<string, ChosenTable>();
  const key = (t: { schema: string; name: string }): string => `${t.schema}.${t.name}`;
  for (const text of patterns) {
    const p = parseTablePattern(text);
    const found = await client.query<{ schema: string; name: string; kind: string }>(
      `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
          AND c.relname ~ $1 AND ($2::text IS NULL AND pg_table_is_visible(c.oid) OR n.nspname ~ $2)
        ORDER BY 1, 2`,
      [p.name, p.schema ?? null],
    );
    if (found.rows.length === 0) {
      throw new ConfigurationError(`Input 'tables': '${text}' matches no table of the backup.`);
    }
    for (const row of found.rows) {
      const table: ChosenTable = {
        schema: row.schema,
        name: row.name,
        kind: row.kind === 'p' ? 'partitioned' : 'table',
        rows: 0,
      };
      if (!chosen.has(key(table))) chosen.set(key(table), table);
    }
  }
  const partitions = await client.query<{
    schema: string;
    name: string;
    kind: string;
    parent_schema: string;
    parent_name: string;
  }>(
    `WITH RECURSIVE tree(child, parent) AS (
       SELECT i.inhrelid, i.inhparent FROM pg_inherits i WHERE i.inhparent = ANY($1::text[]::regclass[])
       UNION
       SELECT i.inhrelid, i.inhparent FROM pg_inherits i JOIN tree t ON i.inhparent = t.child)
     SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
            pn.nspname AS parent_schema, p.relname AS parent_name
       FROM tree JOIN pg_class c ON c.oid = tree.child JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_class p ON p.oid = tree.parent JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE c.relispartition ORDER BY 1, 2`,
    [[...chosen.values()].filter((t) => t.kind === 'partitioned').map(qualified)],
  );
  for (const row of partitions.rows) {
    chosen.set(key(row), {
      schema: row.schema,
      name: row.name,
      kind: row.kind === 'p' ? 'partitioned' : 'table',
      parent: { schema: row.parent_schema, name: row.parent_name },
      rows: 0,
    });
  }
  return [...chosen.values()];
}
