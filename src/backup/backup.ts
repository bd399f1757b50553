import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, Writable, pipeline } from 'node:stream';
import type pg from 'pg';
import { ManifestError, lastStoredBackup } from '../catalog/catalog.js';
import { backupPrefix, isCatalogName, manifestKey, newBackupId } from '../catalog/keys.js';
import {
  MANIFEST_SCHEMA_VERSION,
  describeCompression,
  type BackupKind,
  type CompressionInfo,
  type DumpFormat,
  type GitContext,
  type Manifest,
  type ObjectEntry,
  type TableInventoryEntry,
} from '../catalog/manifest.js';
import { AgeEncryptor, createEncryptStream, encryptingStream } from '../crypto/age.js';
import { ConfigurationError, asError, errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import { Fifo } from '../core/fifo.js';
import { describeExit, startProcess, type RunningProcess } from '../core/process.js';
import {
  HashCounter,
  Progress,
  formatBytes,
  formatCount,
  processingStream,
  rate,
} from '../core/streams.js';
import {
  childEnv,
  connect,
  describeConnection,
  serverInfo,
  transactionPoolerHint,
  type ConnectionInfo,
} from '../postgres/connection.js';
import {
  countRows,
  exportSnapshot,
  listTables,
  selectionMatcher,
  type DumpSelection,
} from '../postgres/inventory.js';
import {
  SUPABASE_CONTENT_TABLES,
  detectPlatform,
  type PlatformInfo,
} from '../postgres/platform.js';
import {
  dependenciesOutside,
  extensionConfigTables,
  readContents,
  readSourceState,
} from '../postgres/source-state.js';
import { ArchiveCoalescer } from '../postgres/archive.js';
import type { ClientTools, ToolResolver } from '../postgres/tools.js';
import type { Storage } from '../storage/storage.js';

/** The compression asked for: `auto` picks the fastest that keeps the object small. */
export type CompressionChoice =
  | { method: 'auto' }
  | { method: 'zstd'; level?: number }
  | { method: 'gzip'; level?: number }
  | { method: 'none' };

export interface EncryptionChoice {
  recipients: string[];
  passphrase?: string;
}

export interface BackupOptions {
  connection: ConnectionInfo;
  /** Catalog name; default: the database name. */
  name?: string;
  format: DumpFormat;
  /** Parallel dump jobs (directory format). */
  jobs: number;
  compression: CompressionChoice;
  selection: DumpSelection;
  globals: boolean;
  encryption?: EncryptionChoice;
  kind: BackupKind;
  labels: Record<string, string>;
  keepUntil?: Date;
  rowCounts: 'exact' | 'estimate' | 'off';
  /** Percent; a larger change against the previous backup raises a warning. */
  sizeChangeThreshold: number;
  git: GitContext;
}

/**
 * A whole database as a custom-format dump with the action's defaults (compression auto, exact
 * row counts, no roles, no encryption, kind scheduled); callers spread their own choices over it.
 */
export function wholeDatabaseBackup(connection: ConnectionInfo, name: string): BackupOptions {
  return {
    connection,
    name,
    format: 'custom',
    jobs: 1,
    compression: { method: 'auto' },
    selection: { schemas: [], excludeSchemas: [], excludeTableData: [] },
    globals: false,
    kind: 'scheduled',
    labels: {},
    rowCounts: 'exact',
    sizeChangeThreshold: 20,
    git: {},
  };
}

export interface BackupDeps {
  storage: Storage;
  logger: Logger;
  clock: Clock;
  /** Picks pg_dump & co. for the server (installing them when allowed). */
  resolveTools: ToolResolver;
  /** Absolute path of `zstd`, or undefined when it is not installed. */
  zstdPath?: string;
  /** Environment the tools inherit (PG* variables are replaced by the connection's). */
  env: NodeJS.ProcessEnv;
  progressIntervalMs?: number;
  randomSuffix?: () => string;
  /** Folder for the directory format's dump and the named pipe; default: the OS temp folder. */
  tmpDir?: string;
  /** Read the last tool's output through a named pipe where possible (default true). */
  namedPipe?: boolean;
}

export interface BackupResult {
  manifest: Manifest;
  manifestKey: string;
  objectKey: string;
  bytes: number;
  sha256: string;
  durationSeconds: number;
  /** Seconds the dump stream took, from pg_dump's start to the stored object: the throughput's clock. */
  dumpSeconds: number;
  sizeChangePercent?: number;
  /** Why the size was not compared with the previous backup's (another format or compression). */
  sizeChangeSkipped?: string;
  /** Warnings worth an annotation (unencrypted, size change, globals skipped). */
  warnings: string[];
  /** The size change over size-change-threshold, worded; also among `warnings`. */
  sizeWarning?: string;
  serverVersion: string;
  pgDumpVersion: string;
}

/** What restore must undo, decided before the dump starts. */
export interface CompressionPlan {
  info: CompressionInfo;
  /** pg_dump's own `--compress` argument. */
  pgDumpCompress: string;
  /** An external compressor reading pg_dump's output, when compression happens outside it. */
  external?: { command: string; args: string[]; suffix: string };
}

/** `auto`, `none`, `zstd[:level]`, `gzip[:level]`. */
export function parseCompression(value: string | undefined): CompressionChoice {
  const text = (value ?? 'auto').trim();
  const m = /^(auto|none|zstd|gzip)(?::(\d+))?$/.exec(text);
  if (!m || ((m[1] === 'auto' || m[1] === 'none') && m[2] !== undefined)) {
    throw new ConfigurationError(
      `Input 'compression' must be auto, none, zstd[:level] or gzip[:level], got '${text}'.`,
    );
  }
  const level = m[2] === undefined ? undefined : Number(m[2]);
  if (m[1] === 'zstd') {
    if (level !== undefined && (level < 1 || level > 19)) {
      throw new ConfigurationError(
        `Input 'compression': zstd levels go from 1 to 19, got ${level}.`,
      );
    }
    return { method: 'zstd', level };
  }
  if (m[1] === 'gzip') {
    if (level !== undefined && (level < 0 || level > 9)) {
      throw new ConfigurationError(
        `Input 'compression': gzip levels go from 0 to 9, got ${level}.`,
      );
    }
    return { method: 'gzip', level };
  }
  return { method: m[1] as 'auto' | 'none' };
}

/** The zstd level of compression 'auto' (see planCompression). */
export const AUTO_ZSTD_LEVEL = 1;
/**
 * zstd's match-finder table for 'auto', as a power of two: level 1 picks 2^14 entries for large
 * input, and 2^16 find enough more matches in table data to write about 1.5 % less for about
 * 12 % more of zstd's CPU time. Restore needs nothing for it.
 */
export const AUTO_ZSTD_HASH_LOG = 16;

export function planCompression(
  choice: CompressionChoice,
  pgDumpMajor: number,
  zstdPath: string | undefined,
): CompressionPlan {
  switch (choice.method) {
    case 'none':
      return { info: { method: 'none' }, pgDumpCompress: '0' };
    case 'gzip': {
      const level = choice.level ?? 6;
      return { info: { method: 'pg_dump-gzip', level }, pgDumpCompress: String(level) };
    }
    case 'zstd': {
      const level = choice.level ?? 3;
      if (zstdPath) return externalZstd(zstdPath, level);
      if (pgDumpMajor >= 16) {
        return { info: { method: 'pg_dump-zstd', level }, pgDumpCompress: `zstd:${level}` };
      }
      throw new ConfigurationError(
        `Input 'compression' is 'zstd' but the zstd command is not installed and pg_dump ${pgDumpMajor} has no zstd support. ` +
          `Install it (sudo apt-get install -y zstd) or use compression 'auto' or 'gzip'.`,
      );
    }
    case 'auto':
      // zstd outside pg_dump, at level 1: pg_dump's single-threaded zlib takes about three
      // times as long as the dump itself, zstd -1 a third of a core, and levels 2 and 3 cost
      // up to twice the CPU for sizes within 1 % on the benchmark's data. With the archive's
      // chunks coalesced (see ArchiveCoalescer) and a larger match table, the object is smaller
      // than pg_dump's own zlib writes. Without zstd, pg_dump's own default compression.
      return zstdPath
        ? externalZstd(zstdPath, AUTO_ZSTD_LEVEL, [`--zstd=hlog=${AUTO_ZSTD_HASH_LOG}`])
        : { info: { method: 'pg_dump-gzip', level: 6 }, pgDumpCompress: '6' };
  }
}

function externalZstd(zstdPath: string, level: number, tuning: string[] = []): CompressionPlan {
  return {
    info: { method: 'zstd', level },
    pgDumpCompress: '0',
    external: {
      command: zstdPath,
      args: [`-${level}`, ...tuning, '-T0', '-q', '-c'],
      suffix: '.zst',
    },
  };
}

/** Object file name of the dump: dump.pgc[.zst][.age] or dump.tar[.zst][.age]. */
export function dumpObjectName(
  format: DumpFormat,
  plan: CompressionPlan,
  encrypted: boolean,
): string {
  return `dump.${format === 'custom' ? 'pgc' : 'tar'}${plan.external?.suffix ?? ''}${encrypted ? '.age' : ''}`;
}

/** pg_dump's arguments for the selection (connection parameters travel in the environment). */
export function pgDumpArgs(options: {
  format: DumpFormat;
  compress: string;
  snapshot?: string;
  selection: DumpSelection;
  jobs: number;
  outputDir?: string;
}): string[] {
  const args = ['--no-password', `--compress=${options.compress}`];
  if (options.format === 'custom') {
    args.push('--format=custom');
  } else {
    args.push('--format=directory', `--jobs=${options.jobs}`, `--file=${options.outputDir}`);
  }
  if (options.snapshot) args.push(`--snapshot=${options.snapshot}`);
  for (const s of options.selection.schemas) args.push(`--schema=${s}`);
  for (const s of options.selection.excludeSchemas) args.push(`--exclude-schema=${s}`);
  for (const t of options.selection.excludeTableData) args.push(`--exclude-table-data=${t}`);
  return args;
}

function defaultSuffix(): string {
  return randomBytes(3).toString('hex');
}

/**
 * The backup stored last under `name`, for the size comparison. A manifest that cannot be read
 * is that backup's problem (verify reports it), not a reason to skip tonight's backup: it becomes
 * a warning and the comparison is left out.
 */
async function previousBackup(
  storage: Storage,
  name: string,
  warnings: string[],
): Promise<Manifest | undefined> {
  try {
    return await lastStoredBackup(storage, name);
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    warnings.push(
      `The size change against the previous backup of '${name}' is left out: ${error.message}`,
    );
    return undefined;
  }
}

/**
 * Backs up one database: pg_dump → (zstd) → (age) → SHA-256 → storage, streamed, then the
 * manifest, written last. On any failure the upload is aborted, what was stored is removed, no
 * manifest is written, and the error says what failed (pg_dump's own text when it was pg_dump).
 */
export async function runBackup(options: BackupOptions, deps: BackupDeps): Promise<BackupResult> {
  const { storage, logger, clock } = deps;
  const started = clock.now();
  const t0 = Date.now();
  const warnings: string[] = [];

  const pooler = transactionPoolerHint(options.connection);
  if (pooler) throw new ConfigurationError(pooler);

  logger.info(`Connecting to ${describeConnection(options.connection)}`);
  const client = await connect(options.connection);
  const stored: string[] = [];
  let snapshotOpen = false;
  try {
    const server = await serverInfo(client);
    logger.info(`Server: PostgreSQL ${server.version}, database ${server.database}`);
    const name = options.name ?? server.database;
    if (!isCatalogName(name)) {
      throw new ConfigurationError(
        `Input 'name' must be one path segment of letters, digits, '.', '_' or '-', got '${name}'.`,
      );
    }
    // The previous backup (for the size change) is looked up while the tools are found and the
    // snapshot is taken: on a bucket with a long history the listing takes a while.
    const previousWarnings: string[] = [];
    const lookup = previousBackup(storage, name, previousWarnings);
    lookup.catch(() => undefined);
    const tools = await deps.resolveTools({ major: server.major, version: server.version });
    const plan = planCompression(options.compression, tools.major, deps.zstdPath);
    const encrypted = Boolean(options.encryption);
    if (!encrypted) {
      warnings.push(
        `Backup of '${name}' is not encrypted: set encryption-recipients (an age public key) so the stored copy is unreadable without the identity.`,
      );
    }

    const id = newBackupId(started, deps.randomSuffix ?? defaultSuffix);
    const prefix = backupPrefix(name, id);
    const objectKey = `${prefix}${dumpObjectName(options.format, plan, encrypted)}`;

    const snapshot = await exportSnapshot(client);
    snapshotOpen = true;
    const tables = await listTables(client, options.selection);
    // Before pg_dump starts: a sequence's value is read outside the snapshot, so pg_dump's own
    // read, later, is never behind this one.
    const platform = await detectPlatform(client);
    const sourceState = await readSourceState(client, options.selection);
    warnings.push(...(await platformWarnings(client, options, platform)));
    const sizeEstimate = await databaseSize(client);
    const previous = await lookup;
    warnings.push(...previousWarnings);

    const objects: ObjectEntry[] = [];
    // An uncompressed custom archive on its way to a compressor passes through this process,
    // which merges its per-row chunks (see ArchiveCoalescer) and so counts each table's rows on
    // the way: exact counts in the dump's snapshot without scanning every table a second time.
    // Otherwise the tables are counted beside the dump, in the same snapshot.
    const coalescer =
      options.format === 'custom' && plan.external ? new ArchiveCoalescer() : undefined;
    const rowsFromDump = coalescer !== undefined && options.rowCounts === 'exact';
    const counting = rowsFromDump ? undefined : countTables(client, tables, options.rowCounts);
    counting?.catch(() => undefined);
    // The platform's users, files and secrets are fingerprinted beside the dump, in its snapshot.
    const matcher = selectionMatcher(options.selection);
    const contents = platform
      ? readContents(
          client,
          SUPABASE_CONTENT_TABLES.filter((t) => matcher.schemaIncluded(t.split('.')[0])),
        )
      : undefined;
    contents?.catch(() => undefined);
    const dump = await logger.group(`Dump ${name} to ${storage.location(objectKey)}`, async () => {
      const result = await streamDump({
        options,
        deps,
        tools,
        plan,
        snapshot,
        objectKey,
        sizeEstimate,
        coalescer,
      });
      stored.push(objectKey);
      return result;
    });
    objects.push({ key: objectKey, role: 'dump', bytes: dump.bytes, sha256: dump.sha256 });
    const inventory = [
      ...((await counting) ?? (await countDumpedRows(client, tables, coalescer, logger))),
      ...(await extensionTableInventory(client, options)),
    ];
    if (contents) sourceState.contents = await contents;
    await client.query('COMMIT');
    snapshotOpen = false;

    let globals = false;
    if (options.globals) {
      const globalsKey = `${prefix}globals.sql${encrypted ? '.age' : ''}`;
      const g = await dumpGlobals(options, deps, tools, globalsKey);
      if (g) {
        stored.push(globalsKey);
        objects.push({ key: globalsKey, role: 'globals', bytes: g.bytes, sha256: g.sha256 });
        globals = true;
      } else {
        warnings.push(
          `Roles were not dumped: pg_dumpall --roles-only failed on this server (managed services may forbid it). The database backup itself is complete.`,
        );
      }
    }

    let sizeChangePercent: number | undefined;
    let sizeWarning: string | undefined;
    let previousInfo: Manifest['previous'];
    const notComparable = previous
      ? whySizeNotComparable(previous, options.format, plan.info)
      : undefined;
    if (previous && notComparable) {
      logger.info(`Size change against ${previous.id} not compared: ${notComparable}`);
    } else if (previous) {
      const prevBytes = previous.objects.find((o) => o.role === 'dump')?.bytes ?? 0;
      if (prevBytes > 0) {
        sizeChangePercent = Math.round(((dump.bytes - prevBytes) / prevBytes) * 1000) / 10;
        previousInfo = { id: previous.id, bytes: prevBytes, changePercent: sizeChangePercent };
        if (Math.abs(sizeChangePercent) > options.sizeChangeThreshold) {
          sizeWarning =
            `Backup size changed by ${sizeChangePercent > 0 ? '+' : ''}${sizeChangePercent}% against the previous backup ${previous.id} ` +
            `(${formatBytes(prevBytes)} → ${formatBytes(dump.bytes)}), more than size-change-threshold ${options.sizeChangeThreshold}%.`;
          warnings.push(sizeWarning);
        }
      }
    }

    const finished = clock.now();
    const manifest: Manifest = {
      schemaVersion: MANIFEST_SCHEMA_VERSION,
      id,
      name,
      kind: options.kind,
      labels: options.labels,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      source: {
        database: server.database,
        serverVersion: server.version,
        serverVersionNum: server.versionNum,
      },
      tools: { pgDumpVersion: tools.version, pgDumpPath: tools.pgDump },
      format: options.format,
      compression: plan.info,
      encryption: options.encryption
        ? {
            scheme: 'age',
            recipients: options.encryption.recipients,
            passphrase: Boolean(options.encryption.passphrase),
          }
        : null,
      objects,
      rowCounts: options.rowCounts,
      tables: inventory,
      sourceState,
      platform,
      globals,
      git: options.git,
      keepUntil: options.keepUntil?.toISOString(),
      previous: previousInfo,
      options: {
        schemas: options.selection.schemas,
        excludeSchemas: options.selection.excludeSchemas,
        excludeTableData: options.selection.excludeTableData,
      },
    };
    const mKey = manifestKey(name, id);
    await storage.putBytes(mKey, `${JSON.stringify(manifest, null, 2)}\n`, { ifNoneMatch: true });
    stored.length = 0;
    const durationSeconds = (Date.now() - t0) / 1000;
    logger.info(
      `Backup ${id} complete: ${formatBytes(dump.bytes)} in ${durationSeconds.toFixed(1)}s (the dump streamed at ${rate(dump.bytes, dump.seconds)})`,
    );
    return {
      manifest,
      manifestKey: mKey,
      objectKey,
      bytes: dump.bytes,
      sha256: dump.sha256,
      durationSeconds,
      dumpSeconds: dump.seconds,
      sizeChangePercent,
      sizeChangeSkipped: notComparable,
      warnings,
      sizeWarning,
      serverVersion: server.version,
      pgDumpVersion: tools.version,
    };
  } finally {
    if (snapshotOpen) await client.query('ROLLBACK').catch(() => undefined);
    await client.end().catch(() => undefined);
    if (stored.length > 0) {
      // Objects of a backup that failed after they were stored: remove them, so nothing
      // half-written is left (prune would otherwise collect them after its grace period).
      await storage
        .delete(stored)
        .catch((error: unknown) =>
          logger.warning(
            `Could not remove the partial backup objects ${stored.join(', ')}: ${errorMessage(error)}`,
          ),
        );
    }
  }
}

/**
 * Why the previous backup's size says nothing about this one's, when it does not: another format
 * or compression changes the object's size with the data unchanged.
 */
function whySizeNotComparable(
  previous: Manifest,
  format: Manifest['format'],
  compression: Manifest['compression'],
): string | undefined {
  if (previous.format !== format) {
    return `it is a ${previous.format}-format archive and this one ${format}-format`;
  }
  if (
    previous.compression.method !== compression.method ||
    previous.compression.level !== compression.level
  ) {
    return `it was compressed with ${describeCompression(previous.compression)} and this one with ${describeCompression(compression)}`;
  }
  return undefined;
}

async function databaseSize(client: pg.Client): Promise<number> {
  const r = await client.query<{ n: string }>(
    'SELECT pg_database_size(current_database())::text AS n',
  );
  return Number(r.rows[0].n);
}

/**
 * The manifest's tables with their rows: for `exact`, the rows `counted` knows (those the dump
 * carried), else `count(*)` in the client's snapshot.
 */
async function countTables(
  client: pg.Client,
  tables: Awaited<ReturnType<typeof listTables>>,
  mode: 'exact' | 'estimate' | 'off',
  counted?: (table: { schema: string; name: string }) => number | undefined,
): Promise<TableInventoryEntry[]> {
  const out: TableInventoryEntry[] = [];
  for (const t of tables) {
    let rows: number | null = null;
    if (t.dataExcluded) rows = 0;
    else if (mode === 'exact') rows = counted?.(t) ?? (await countRows(client, t.schema, t.name));
    else if (mode === 'estimate') rows = t.estimate;
    const entry: TableInventoryEntry = { schema: t.schema, name: t.name, rows, bytes: t.bytes };
    if (t.dataExcluded) entry.dataExcluded = true;
    out.push(entry);
  }
  return out;
}

/**
 * What a user should know before relying on this backup: a Supabase project's catalog name left
 * to default (every project's database is called postgres), and what a backup of selected
 * schemas relies on outside them.
 */
async function platformWarnings(
  client: pg.Client,
  options: BackupOptions,
  platform: PlatformInfo | undefined,
): Promise<string[]> {
  const warnings: string[] = [];
  if (platform && options.name === undefined) {
    warnings.push(
      `This is a Supabase project, whose database is always called postgres: set name (for example the project's name) so that the backups of several projects do not share the catalog name 'postgres'.`,
    );
  }
  const outside = await dependenciesOutside(client, options.selection);
  if (outside.length > 0) {
    warnings.push(
      `The backup covers selected schemas, and relies on what is outside them; a restore needs a target that has it: ${outside.join('; ')}.`,
    );
  }
  return warnings;
}

/**
 * Extension configuration tables whose rows pg_dump carries (a whole-database dump carries the
 * extensions), counted whole in the dump's snapshot: after a restore with the same extension
 * version the table holds the extension's own rows and the dumped ones, as the source did.
 */
async function extensionTableInventory(
  client: pg.Client,
  options: BackupOptions,
): Promise<TableInventoryEntry[]> {
  if (options.selection.schemas.length > 0) return [];
  const matcher = selectionMatcher(options.selection);
  const out: TableInventoryEntry[] = [];
  for (const t of await extensionConfigTables(client)) {
    if (!matcher.schemaIncluded(t.schema)) continue;
    const rows = options.rowCounts === 'exact' ? await countRows(client, t.schema, t.name) : null;
    out.push({ schema: t.schema, name: t.name, rows, bytes: t.bytes, extension: t.extension });
  }
  return out;
}

/**
 * Exact row counts from what the coalescer counted in pg_dump's output, and `count(*)` in the
 * dump's snapshot for any table it did not see as COPY rows.
 */
async function countDumpedRows(
  client: pg.Client,
  tables: Awaited<ReturnType<typeof listTables>>,
  coalescer: ArchiveCoalescer | undefined,
  logger: Logger,
): Promise<TableInventoryEntry[]> {
  let seen = 0;
  const inventory = await countTables(client, tables, 'exact', (t) => {
    const rows = coalescer?.rowsOf(t.schema, t.name);
    if (rows !== undefined) seen++;
    return rows;
  });
  const byCountStar = tables.filter((t) => !t.dataExcluded).length - seen;
  logger.info(
    `Row counts: ${seen} ${seen === 1 ? 'table' : 'tables'} counted in pg_dump's output as it passed` +
      (byCountStar > 0 ? `, ${byCountStar} by count(*) in the dump's snapshot.` : '.'),
  );
  return inventory;
}

interface StreamDumpArgs {
  options: BackupOptions;
  deps: BackupDeps;
  tools: ClientTools;
  plan: CompressionPlan;
  snapshot: string;
  objectKey: string;
  sizeEstimate: number;
  coalescer: ArchiveCoalescer | undefined;
}

/** The dump object: its size, SHA-256, and the seconds the stream took (the progress lines' clock). */
async function streamDump(
  a: StreamDumpArgs,
): Promise<{ bytes: number; sha256: string; seconds: number }> {
  const { options, deps, tools, plan, coalescer } = a;
  const env = childEnv(deps.env, options.connection);
  const processes: { tool: string; proc: RunningProcess }[] = [];
  const tmpRoot = deps.tmpDir ?? os.tmpdir();
  let tmp: string | undefined;
  // The coalescer reads pg_dump's archive through a named pipe of its own. The last tool in
  // the pipe writes into a named pipe where there is one (see Fifo), else into an ordinary pipe
  // read as a stream.
  const namedPipe = deps.namedPipe !== false;
  const [fifo, dumpFifo] = await Promise.all([
    namedPipe ? Fifo.create(tmpRoot, deps.env) : undefined,
    namedPipe && coalescer ? Fifo.create(tmpRoot, deps.env) : undefined,
  ]);
  const lastStdout = fifo ? fifo.writeFd : 'pipe';
  let feeding: Promise<void> | undefined;
  try {
    let source: Readable | undefined;
    if (options.format === 'custom') {
      const dump = startProcess(
        tools.pgDump,
        pgDumpArgs({
          format: 'custom',
          compress: plan.pgDumpCompress,
          snapshot: a.snapshot,
          selection: options.selection,
          jobs: 1,
        }),
        {
          env,
          stdio: ['ignore', dumpFifo?.writeFd ?? (plan.external ? 'pipe' : lastStdout), 'pipe'],
        },
      );
      processes.push({ tool: 'pg_dump', proc: dump });
      dumpFifo?.closeWriteEnd();
      source = dumpFifo?.reader(coalescer) ?? dump.child.stdout ?? undefined;
      if (coalescer && !dumpFifo) source = source?.pipe(processingStream(coalescer));
    } else {
      // A directory dump is written by parallel workers to a folder, then streamed as a tar.
      tmp = await mkdtemp(path.join(tmpRoot, 'pg-backup-dir-'));
      const outputDir = path.join(tmp, 'dump');
      const dump = startProcess(
        tools.pgDump,
        pgDumpArgs({
          format: 'directory',
          compress: plan.pgDumpCompress,
          snapshot: a.snapshot,
          selection: options.selection,
          jobs: options.jobs,
          outputDir,
        }),
        { env },
      );
      await deps.logger.group('pg_dump (directory format)', async () => {
        const exit = await dump.exited;
        if (exit.code !== 0) throw new Error(describeExit('pg_dump', exit));
      });
      const tar = startProcess('tar', ['-C', outputDir, '-cf', '-', '.'], {
        env: deps.env,
        stdio: ['ignore', plan.external ? 'pipe' : lastStdout, 'pipe'],
      });
      processes.push({ tool: 'tar', proc: tar });
      source = tar.child.stdout ?? undefined;
    }
    if (plan.external) {
      const compressor = startProcess(plan.external.command, plan.external.args, {
        stdio: [coalescer ? 'pipe' : (source as Readable), lastStdout, 'pipe'],
        env: deps.env,
      });
      processes.push({ tool: path.basename(plan.external.command), proc: compressor });
      if (coalescer) {
        const input = releasingWriter(compressor.child.stdin as Writable, coalescer);
        feeding = new Promise<void>((resolve, reject) =>
          pipeline(source as Readable, input, (error) => (error ? reject(error) : resolve())),
        );
        // Its failure is judged with the tools' exits (checkTools), never left unhandled.
        feeding.catch(() => undefined);
      } else {
        // The compressor reads the pipe directly; this process lets go of its end so the
        // producer's 'close' can fire and a dying compressor breaks the producer's pipe.
        source?.destroy();
      }
      source = compressor.child.stdout ?? undefined;
    }
    fifo?.closeWriteEnd();

    const encryptor = options.encryption
      ? await AgeEncryptor.create(options.encryption)
      : undefined;
    const stages: NodeJS.ReadWriteStream[] = [];
    if (fifo) {
      source = fifo.reader(encryptor);
    } else if (encryptor) {
      stages.push(encryptingStream(encryptor));
    }

    // The body ends only when every tool exited 0. The first failure in pipe order that is not
    // a broken pipe is the cause: pg_dump's own message wins over a compressor that lost its
    // input, and a compressor that died wins over the SIGPIPE it caused upstream.
    let toolFailure: Error | undefined;
    const checkTools = async (): Promise<void> => {
      const exits = await Promise.all(processes.map((p) => p.proc.exited));
      const failed = exits
        .map((exit, i) => ({ exit, tool: processes[i].tool }))
        .filter(({ exit }) => exit.code !== 0 || exit.signal);
      if (failed.length > 0) {
        const cause = failed.find(({ exit }) => exit.signal !== 'SIGPIPE') ?? failed[0];
        toolFailure = new Error(describeExit(cause.tool, cause.exit));
        throw toolFailure;
      }
      // The tools exited 0; the archive must also have read as a whole on its way through.
      await feeding?.catch((error: unknown) => {
        toolFailure = asError(error);
        throw toolFailure;
      });
    };
    // The hash stage is the body the store reads: every stage is one more hop per chunk.
    const hash = new HashCounter({ beforeEnd: checkTools, highWaterMark: 1 << 20 });
    stages.push(hash);
    const progress = new Progress(
      deps.logger,
      'Uploaded',
      () => hash.bytes,
      deps.progressIntervalMs ?? 5000,
    );
    const piped = new Promise<void>((resolve, reject) => {
      pipeline([source as Readable, ...stages] as unknown as NodeJS.ReadWriteStream[], (error) =>
        error ? reject(error) : resolve(),
      );
    });
    try {
      const [storing, streaming] = await Promise.allSettled([
        deps.storage.putStream(a.objectKey, hash, { sizeHint: a.sizeEstimate }),
        piped,
      ]);
      if (storing.status === 'rejected' || streaming.status === 'rejected') {
        // A tool that failed on its own is the cause; otherwise the store's own report (which
        // names the endpoint), rather than the pipe's echo of it.
        for (const p of processes) p.proc.kill();
        await Promise.all(processes.map((p) => p.proc.exited));
        throw (
          toolFailure ??
          (storing.status === 'rejected'
            ? storing.reason
            : (streaming as PromiseRejectedResult).reason)
        );
      }
      progress.report();
      if (coalescer) deps.logger.info(describeCoalescing(coalescer));
      if (storing.value.bytes !== hash.bytes) {
        throw new Error(
          `Stored ${storing.value.bytes} bytes but the dump produced ${hash.bytes}; the upload is incomplete.`,
        );
      }
      return { bytes: hash.bytes, sha256: hash.digest(), seconds: progress.elapsedSeconds() };
    } finally {
      progress.stop();
    }
  } finally {
    for (const p of processes) p.proc.kill();
    await dumpFifo?.dispose();
    await fifo?.dispose();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

function describeCoalescing(coalescer: ArchiveCoalescer): string {
  if (coalescer.unchangedBecause) {
    return `Archive passed to the compressor unchanged: ${coalescer.unchangedBecause}.`;
  }
  return `Archive data: ${formatCount(coalescer.chunksIn)} chunks from pg_dump written as ${formatCount(coalescer.chunksOut)}.`;
}

/**
 * Writes into a child's stdin, one buffer at a time, handing each back to the coalescer once
 * the pipe took it. A child that dies fails the write; its exit says why (checkTools).
 */
function releasingWriter(stdin: Writable, coalescer: ArchiveCoalescer): Writable {
  stdin.on('error', () => undefined);
  return new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, callback) {
      stdin.write(chunk, (error) => {
        coalescer.release(chunk);
        callback(error);
      });
    },
    final(callback) {
      stdin.end(callback);
    },
    destroy(error, callback) {
      stdin.destroy();
      callback(error);
    },
  });
}

async function dumpGlobals(
  options: BackupOptions,
  deps: BackupDeps,
  tools: ClientTools,
  key: string,
): Promise<{ bytes: number; sha256: string } | undefined> {
  const env = childEnv(deps.env, options.connection);
  const proc = startProcess(
    tools.pgDumpall,
    ['--no-password', '--roles-only', '--no-role-passwords'],
    {
      env,
    },
  );
  const chunks: Buffer[] = [];
  for await (const chunk of proc.child.stdout as Readable) chunks.push(chunk as Buffer);
  const exit = await proc.exited;
  if (exit.code !== 0) {
    deps.logger.warning(describeExit('pg_dumpall --roles-only', exit));
    return undefined;
  }
  const hash = new HashCounter();
  const stages: NodeJS.ReadWriteStream[] = [];
  if (options.encryption) stages.push(createEncryptStream(options.encryption));
  const body = new PassThrough();
  const piped = new Promise<void>((resolve, reject) =>
    pipeline(
      [
        Readable.from([Buffer.concat(chunks)]),
        ...stages,
        hash,
        body,
      ] as unknown as NodeJS.ReadWriteStream[],
      (e) => (e ? reject(e) : resolve()),
    ),
  );
  await Promise.all([deps.storage.putStream(key, body), piped]);
  return { bytes: hash.bytes, sha256: hash.digest() };
}
