import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable, pipeline } from 'node:stream';
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
import { ConfigurationError, OptionError } from '../core/errors.js';
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
  type ServerInfo,
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
  type SourceState,
} from '../postgres/source-state.js';
import { ArchiveCoalescer } from '../postgres/archive.js';
import type { ClientTools, ToolResolver } from '../postgres/tools.js';
import { PartWriter, type UploadResult } from '../storage/parts.js';
import type { Storage } from '../storage/storage.js';
import { BackupCopies, type CopyReport } from './copies.js';

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
  /** How many destinations must hold a complete copy for the run to pass; default: all. */
  destinationsRequired?: number;
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
  /** The first destination: the previous backup (for the size change) is read from it. */
  storage: Storage;
  /** More destinations, written at the same time as `storage`, each with its own manifest. */
  copies?: Storage[];
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
  /** Per destination: where the dump is and whether the copy is complete. */
  copies: CopyReport[];
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
    throw new OptionError(
      'compression',
      (w) =>
        `${w.option('compression')} must be auto, none, zstd[:level] or gzip[:level], got '${text}'.`,
    );
  }
  const level = m[2] === undefined ? undefined : Number(m[2]);
  if (m[1] === 'zstd') {
    if (level !== undefined && (level < 1 || level > 19)) {
      throw new OptionError(
        'compression',
        (w) => `${w.option('compression')}: zstd levels go from 1 to 19, got ${level}.`,
      );
    }
    return { method: 'zstd', level };
  }
  if (m[1] === 'gzip') {
    if (level !== undefined && (level < 0 || level > 9)) {
      throw new OptionError(
        'compression',
        (w) => `${w.option('compression')}: gzip levels go from 0 to 9, got ${level}.`,
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

/** Raised when fewer destinations than required hold a complete copy; the others are reported. */
export class DestinationsError extends Error {
  constructor(
    message: string,
    /** The run as it ended: the complete copies hold the backup and its manifest. */
    readonly result: BackupResult,
  ) {
    super(message);
    this.name = 'DestinationsError';
  }
}

/** The database session of a backup: its snapshot stays open until the dump is done. */
interface Session {
  client: pg.Client;
  snapshotOpen: boolean;
}

/** What is known of the source and the backup before the dump starts, in the dump's snapshot. */
interface DumpSource {
  server: ServerInfo;
  name: string;
  id: string;
  objectKey: string;
  tools: ClientTools;
  plan: CompressionPlan;
  snapshot: string;
  tables: Awaited<ReturnType<typeof listTables>>;
  platform: PlatformInfo | undefined;
  sourceState: SourceState;
  sizeEstimate: number;
  previous: Manifest | undefined;
}

/** The dump as every destination received it, with the tables' inventory. */
interface StoredDump {
  bytes: number;
  sha256: string;
  archiveBytes?: number;
  seconds: number;
  inventory: TableInventoryEntry[];
}

/**
 * Backs up one database: pg_dump → (zstd) → (age) → SHA-256 → every destination at once,
 * streamed, then each destination's manifest, written last. A destination that fails loses what
 * it stored and the others go on; the run fails with DestinationsError when fewer than
 * `destinationsRequired` copies are complete. On any other failure every upload is aborted,
 * what was stored is removed, no manifest is written, and the error says what failed
 * (pg_dump's own text when it was pg_dump).
 */
export async function runBackup(options: BackupOptions, deps: BackupDeps): Promise<BackupResult> {
  const t0 = Date.now();
  const started = deps.clock.now();
  const pooler = transactionPoolerHint(options.connection);
  if (pooler) throw new ConfigurationError(pooler);
  deps.logger.info(`Connecting to ${describeConnection(options.connection)}`);
  const session: Session = { client: await connect(options.connection), snapshotOpen: false };
  const copies = new BackupCopies([deps.storage, ...(deps.copies ?? [])], deps.logger);
  const warnings: string[] = [];
  try {
    const source = await prepareSource(session, options, deps, started, warnings);
    const dump = await dumpInSnapshot(session, source, options, deps, copies);
    const objects: ObjectEntry[] = [
      { key: source.objectKey, role: 'dump', bytes: dump.bytes, sha256: dump.sha256 },
    ];
    const globals = options.globals
      ? await storeGlobals(source, options, deps, copies, warnings)
      : undefined;
    if (globals) objects.push(globals);
    const size = compareSize(source.previous, dump.bytes, options, source.plan, deps.logger);
    if (size.warning) warnings.push(size.warning);
    const manifest = buildManifest(options, source, {
      started,
      finished: deps.clock.now(),
      objects,
      archiveBytes: dump.archiveBytes,
      inventory: dump.inventory,
      previous: size.previous,
    });
    const mKey = manifestKey(source.name, source.id);
    await copies.writeEach(
      mKey,
      (s) => s.putBytes(mKey, `${JSON.stringify(manifest, null, 2)}\n`, { ifNoneMatch: true }),
      true,
    );
    const result: BackupResult = {
      manifest,
      manifestKey: mKey,
      objectKey: source.objectKey,
      bytes: dump.bytes,
      sha256: dump.sha256,
      durationSeconds: (Date.now() - t0) / 1000,
      dumpSeconds: dump.seconds,
      sizeChangePercent: size.changePercent,
      sizeChangeSkipped: size.notComparable,
      warnings,
      sizeWarning: size.warning,
      serverVersion: source.server.version,
      pgDumpVersion: source.tools.version,
      copies: copies.report(source.objectKey),
    };
    checkCopies(copies, result, options.destinationsRequired);
    deps.logger.info(
      `Backup ${source.id} complete: ${formatBytes(dump.bytes)} in ${result.durationSeconds.toFixed(1)}s (the dump streamed at ${rate(dump.bytes, dump.seconds)})`,
    );
    return result;
  } finally {
    if (session.snapshotOpen) await session.client.query('ROLLBACK').catch(() => undefined);
    await session.client.end().catch(() => undefined);
    await copies.removeIncomplete();
  }
}

/**
 * Connects the backup to its source: the server, the catalog name, the tools and compression,
 * the backup's id, and the snapshot the dump reads, with what the manifest records of it.
 */
async function prepareSource(
  session: Session,
  options: BackupOptions,
  deps: BackupDeps,
  started: Date,
  warnings: string[],
): Promise<DumpSource> {
  const { client } = session;
  const server = await serverInfo(client);
  deps.logger.info(`Server: PostgreSQL ${server.version}, database ${server.database}`);
  const name = options.name ?? server.database;
  if (!isCatalogName(name)) {
    throw new ConfigurationError(
      `Input 'name' must be one path segment of letters, digits, '.', '_' or '-', got '${name}'.`,
    );
  }
  // The previous backup (for the size change) is looked up while the tools are found and the
  // snapshot is taken: on a bucket with a long history the listing takes a while.
  const previousWarnings: string[] = [];
  const lookup = previousBackup(deps.storage, name, previousWarnings);
  lookup.catch(() => undefined);
  const tools = await deps.resolveTools({ major: server.major, version: server.version });
  const plan = planCompression(options.compression, tools.major, deps.zstdPath);
  if (!options.encryption) {
    warnings.push(
      `Backup of '${name}' is not encrypted: set encryption-recipients (an age public key) so the stored copy is unreadable without the identity.`,
    );
  }
  const id = newBackupId(started, deps.randomSuffix ?? defaultSuffix);
  const objectKey = `${backupPrefix(name, id)}${dumpObjectName(options.format, plan, Boolean(options.encryption))}`;

  const snapshot = await exportSnapshot(client);
  session.snapshotOpen = true;
  const tables = await listTables(client, options.selection);
  // Before pg_dump starts: a sequence's value is read outside the snapshot, so pg_dump's own
  // read, later, is never behind this one.
  const platform = await detectPlatform(client);
  const sourceState = await readSourceState(client, options.selection);
  warnings.push(...(await platformWarnings(client, options, platform)));
  const sizeEstimate = await databaseSize(client);
  const previous = await lookup;
  warnings.push(...previousWarnings);
  return {
    server,
    name,
    id,
    objectKey,
    tools,
    plan,
    snapshot,
    tables,
    platform,
    sourceState,
    sizeEstimate,
    previous,
  };
}

/**
 * Streams the dump to every destination and takes the tables' inventory and the platform's
 * fingerprints in the same snapshot, which is closed afterwards.
 */
async function dumpInSnapshot(
  session: Session,
  source: DumpSource,
  options: BackupOptions,
  deps: BackupDeps,
  copies: BackupCopies,
): Promise<StoredDump> {
  const { client } = session;
  // An uncompressed custom archive on its way to a compressor passes through this process,
  // which merges its per-row chunks (see ArchiveCoalescer) and so counts each table's rows on
  // the way: exact counts in the dump's snapshot without scanning every table a second time.
  // Otherwise the tables are counted beside the dump, in the same snapshot.
  const coalescer =
    options.format === 'custom' && source.plan.external ? new ArchiveCoalescer() : undefined;
  const rowsFromDump = coalescer !== undefined && options.rowCounts === 'exact';
  const counting = rowsFromDump ? undefined : countTables(client, source.tables, options.rowCounts);
  counting?.catch(() => undefined);
  // The platform's users, files and secrets are fingerprinted beside the dump, in its snapshot.
  const matcher = selectionMatcher(options.selection);
  const contents = source.platform
    ? readContents(
        client,
        SUPABASE_CONTENT_TABLES.filter((t) => matcher.schemaIncluded(t.split('.')[0])),
      )
    : undefined;
  contents?.catch(() => undefined);
  const where = copies.stores.map((s) => s.location(source.objectKey)).join(', ');
  const dump = await deps.logger.group(`Dump ${source.name} to ${where}`, async () => {
    const stores = copies.live;
    const streamed = await streamDump({ options, deps, source, stores, coalescer });
    await copies.recordUploads(stores, source.objectKey, streamed.results, streamed.bytes);
    copies.assertAnyLive();
    return streamed;
  });
  const inventory = [
    ...((await counting) ?? (await countDumpedRows(client, source.tables, coalescer, deps.logger))),
    ...(await extensionTableInventory(client, options)),
  ];
  if (contents) source.sourceState.contents = await contents;
  await client.query('COMMIT');
  session.snapshotOpen = false;
  return {
    bytes: dump.bytes,
    sha256: dump.sha256,
    archiveBytes: dump.archiveBytes,
    seconds: dump.seconds,
    inventory,
  };
}

/**
 * The roles (pg_dumpall --roles-only) on every destination still writing; the manifest's entry,
 * or undefined with a warning when the server forbids the dump.
 */
async function storeGlobals(
  source: DumpSource,
  options: BackupOptions,
  deps: BackupDeps,
  copies: BackupCopies,
  warnings: string[],
): Promise<ObjectEntry | undefined> {
  const key = `${backupPrefix(source.name, source.id)}globals.sql${options.encryption ? '.age' : ''}`;
  const globals = await dumpGlobals(options, deps, source.tools);
  if (!globals) {
    warnings.push(
      `Roles were not dumped: pg_dumpall --roles-only failed on this server (managed services may forbid it). The database backup itself is complete.`,
    );
    return undefined;
  }
  await copies.writeEach(key, (s) => s.putBytes(key, globals.data));
  copies.assertAnyLive();
  return { key, role: 'globals', bytes: globals.data.length, sha256: globals.sha256 };
}

/** The size change against the previous backup, when the two are comparable. */
function compareSize(
  previous: Manifest | undefined,
  bytes: number,
  options: BackupOptions,
  plan: CompressionPlan,
  logger: Logger,
): {
  changePercent?: number;
  warning?: string;
  previous?: Manifest['previous'];
  notComparable?: string;
} {
  if (!previous) return {};
  const notComparable = whySizeNotComparable(previous, options.format, plan.info);
  if (notComparable) {
    logger.info(`Size change against ${previous.id} not compared: ${notComparable}`);
    return { notComparable };
  }
  const prevBytes = previous.objects.find((o) => o.role === 'dump')?.bytes ?? 0;
  if (prevBytes <= 0) return {};
  const changePercent = Math.round(((bytes - prevBytes) / prevBytes) * 1000) / 10;
  const info = { id: previous.id, bytes: prevBytes, changePercent };
  if (Math.abs(changePercent) <= options.sizeChangeThreshold) {
    return { changePercent, previous: info };
  }
  const warning =
    `Backup size changed by ${changePercent > 0 ? '+' : ''}${changePercent}% against the previous backup ${previous.id} ` +
    `(${formatBytes(prevBytes)} → ${formatBytes(bytes)}), more than size-change-threshold ${options.sizeChangeThreshold}%.`;
  return { changePercent, warning, previous: info };
}

/** The manifest every destination receives, written last. */
function buildManifest(
  options: BackupOptions,
  source: DumpSource,
  run: {
    started: Date;
    finished: Date;
    objects: ObjectEntry[];
    archiveBytes?: number;
    inventory: TableInventoryEntry[];
    previous: Manifest['previous'];
  },
): Manifest {
  return {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    id: source.id,
    name: source.name,
    kind: options.kind,
    labels: options.labels,
    startedAt: run.started.toISOString(),
    finishedAt: run.finished.toISOString(),
    source: {
      database: source.server.database,
      serverVersion: source.server.version,
      serverVersionNum: source.server.versionNum,
    },
    tools: { pgDumpVersion: source.tools.version, pgDumpPath: source.tools.pgDump },
    format: options.format,
    compression: source.plan.info,
    encryption: options.encryption
      ? {
          scheme: 'age',
          recipients: options.encryption.recipients,
          passphrase: Boolean(options.encryption.passphrase),
        }
      : null,
    objects: run.objects,
    archiveBytes: run.archiveBytes,
    rowCounts: options.rowCounts,
    tables: run.inventory,
    sourceState: source.sourceState,
    platform: source.platform,
    globals: run.objects.some((o) => o.role === 'globals'),
    git: options.git,
    keepUntil: options.keepUntil?.toISOString(),
    previous: run.previous,
    options: {
      schemas: options.selection.schemas,
      excludeSchemas: options.selection.excludeSchemas,
      excludeTableData: options.selection.excludeTableData,
    },
  };
}

/**
 * Fails the run when fewer copies than required are complete: with one destination, with that
 * destination's own error; else with DestinationsError. A failed copy the run can do without
 * becomes a warning.
 */
function checkCopies(
  copies: BackupCopies,
  result: BackupResult,
  required: number | undefined,
): void {
  const total = result.copies.length;
  const failed = result.copies.filter((c) => c.status === 'failed');
  if (failed.length === 0) return;
  if (total === 1) throw copies.firstError ?? new Error('The backup did not finish.');
  const needed = required ?? total;
  const stored = total - failed.length;
  const list = failed.map((c) => `${c.storage}: ${c.error}`).join('; ');
  if (stored < needed) {
    throw new DestinationsError(
      `${stored} of ${total} destinations hold backup ${result.manifest.id}, ${needed} required. Failed: ${list}`,
      result,
    );
  }
  result.warnings.push(
    `${stored} of ${total} destinations hold backup ${result.manifest.id} (destinations-required ${needed}). Failed: ${list}`,
  );
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
  source: DumpSource;
  /** The destinations to write to, all at once. */
  stores: Storage[];
  coalescer: ArchiveCoalescer | undefined;
}

/** The dump's size, SHA-256 and the seconds the stream took; what each store did with it. */
interface StreamedDump {
  bytes: number;
  sha256: string;
  /** The archive's size before compression outside pg_dump (see ToolChain.archive). */
  archiveBytes?: number;
  seconds: number;
  /** One per store, in the order given. */
  results: UploadResult[];
}

/** The named pipes the tools write into (see Fifo); none when named pipes are off. */
interface Pipes {
  /** The last tool's output. */
  fifo?: Fifo;
  /** pg_dump's archive on its way to the coalescer. */
  dumpFifo?: Fifo;
}

/** The tools producing the dump, in pipe order, and what they need cleaned up. */
interface ToolChain {
  processes: { tool: string; proc: RunningProcess }[];
  /** The coalescer feeding the compressor, when it does. */
  feeding?: Promise<void>;
  /** The directory format's dump folder. */
  tmp?: string;
  /**
   * Bytes of the archive as restore decodes it: what went into the external compressor (the
   * custom format, its chunks merged), or the directory format's files. Undefined when the
   * object is the archive itself (compression inside pg_dump, or none), less age's overhead.
   */
  archive?: { bytes: number };
}

/**
 * Runs the tools (pg_dump, tar, zstd) and streams their output, encrypted, to every store at
 * once. Throws when the tools failed (their own message) or when no store took the dump.
 */
async function streamDump(a: StreamDumpArgs): Promise<StreamedDump> {
  const pipes = await openPipes(a.deps, a.coalescer);
  const chain: ToolChain = { processes: [] };
  try {
    let source =
      a.options.format === 'custom'
        ? startCustomDump(a, pipes, chain)
        : await startDirectoryDump(a, pipes, chain);
    if (a.source.plan.external) source = startCompressor(a, pipes, chain, source);
    pipes.fifo?.closeWriteEnd();
    const encryptor = a.options.encryption
      ? await AgeEncryptor.create(a.options.encryption)
      : undefined;
    const stages: NodeJS.ReadWriteStream[] = [];
    if (pipes.fifo) source = pipes.fifo.reader(encryptor);
    else if (encryptor) stages.push(encryptingStream(encryptor));
    return await uploadToAll(a, chain, source as Readable, stages);
  } finally {
    for (const p of chain.processes) p.proc.kill();
    await pipes.dumpFifo?.dispose();
    await pipes.fifo?.dispose();
    if (chain.tmp) await rm(chain.tmp, { recursive: true, force: true });
  }
}

/**
 * The coalescer reads pg_dump's archive through a named pipe of its own. The last tool in the
 * pipe writes into a named pipe where there is one (see Fifo), else into an ordinary pipe read
 * as a stream.
 */
async function openPipes(
  deps: BackupDeps,
  coalescer: ArchiveCoalescer | undefined,
): Promise<Pipes> {
  if (deps.namedPipe === false) return {};
  const tmpRoot = deps.tmpDir ?? os.tmpdir();
  const [fifo, dumpFifo] = await Promise.all([
    Fifo.create(tmpRoot, deps.env),
    coalescer ? Fifo.create(tmpRoot, deps.env) : undefined,
  ]);
  return { fifo, dumpFifo };
}

/** Where the last tool writes: its named pipe, else a pipe read as a stream. */
function lastStdout(pipes: Pipes): number | 'pipe' {
  return pipes.fifo ? pipes.fifo.writeFd : 'pipe';
}

/** Where pg_dump or tar writes: the coalescer's pipe, the compressor's, or the last tool's. */
function producerStdout(pipes: Pipes, plan: CompressionPlan): number | 'pipe' {
  if (pipes.dumpFifo) return pipes.dumpFifo.writeFd;
  if (plan.external) return 'pipe';
  return lastStdout(pipes);
}

/** pg_dump writing a custom archive; its output as a stream (through the coalescer, if any). */
function startCustomDump(a: StreamDumpArgs, pipes: Pipes, chain: ToolChain): Readable | undefined {
  const { options, source, coalescer } = a;
  const dump = startProcess(
    source.tools.pgDump,
    pgDumpArgs({
      format: 'custom',
      compress: source.plan.pgDumpCompress,
      snapshot: source.snapshot,
      selection: options.selection,
      jobs: 1,
    }),
    {
      env: childEnv(a.deps.env, options.connection),
      stdio: ['ignore', producerStdout(pipes, source.plan), 'pipe'],
    },
  );
  chain.processes.push({ tool: 'pg_dump', proc: dump });
  if (pipes.dumpFifo) {
    pipes.dumpFifo.closeWriteEnd();
    return pipes.dumpFifo.reader(coalescer);
  }
  const stdout = dump.child.stdout ?? undefined;
  return coalescer ? stdout?.pipe(processingStream(coalescer)) : stdout;
}

/** A directory dump, written by parallel workers to a folder, then streamed as a tar. */
async function startDirectoryDump(
  a: StreamDumpArgs,
  pipes: Pipes,
  chain: ToolChain,
): Promise<Readable | undefined> {
  const { options, deps, source } = a;
  chain.tmp = await mkdtemp(path.join(deps.tmpDir ?? os.tmpdir(), 'pg-backup-dir-'));
  const outputDir = path.join(chain.tmp, 'dump');
  const dump = startProcess(
    source.tools.pgDump,
    pgDumpArgs({
      format: 'directory',
      compress: source.plan.pgDumpCompress,
      snapshot: source.snapshot,
      selection: options.selection,
      jobs: options.jobs,
      outputDir,
    }),
    { env: childEnv(deps.env, options.connection) },
  );
  await deps.logger.group('pg_dump (directory format)', async () => {
    const exit = await dump.exited;
    if (exit.code !== 0) throw new Error(describeExit('pg_dump', exit));
  });
  chain.archive = { bytes: await folderBytes(outputDir) };
  const tar = startProcess('tar', ['-C', outputDir, '-cf', '-', '.'], {
    env: deps.env,
    stdio: ['ignore', producerStdout(pipes, source.plan), 'pipe'],
  });
  chain.processes.push({ tool: 'tar', proc: tar });
  return tar.child.stdout ?? undefined;
}

/** The external compressor reading the producer's output; its own output as a stream. */
function startCompressor(
  a: StreamDumpArgs,
  pipes: Pipes,
  chain: ToolChain,
  input: Readable | undefined,
): Readable | undefined {
  const external = a.source.plan.external as NonNullable<CompressionPlan['external']>;
  const { coalescer } = a;
  const compressor = startProcess(external.command, external.args, {
    stdio: [coalescer ? 'pipe' : (input as Readable), lastStdout(pipes), 'pipe'],
    env: a.deps.env,
  });
  chain.processes.push({ tool: path.basename(external.command), proc: compressor });
  if (coalescer) {
    chain.archive = { bytes: 0 };
    const stdin = releasingWriter(compressor.child.stdin as Writable, coalescer, chain.archive);
    chain.feeding = new Promise<void>((resolve, reject) =>
      pipeline(input as Readable, stdin, (error) => (error ? reject(error) : resolve())),
    );
    // Its failure is judged with the tools' exits (toolsSucceeded), never left unhandled.
    chain.feeding.catch(() => undefined);
  } else {
    // The compressor reads the pipe directly; this process lets go of its end so the
    // producer's 'close' can fire and a dying compressor breaks the producer's pipe.
    input?.destroy();
  }
  return compressor.child.stdout ?? undefined;
}

/**
 * Resolves once every tool exited 0 and the archive read whole on its way through; else rejects
 * with the cause. The first failure in pipe order that is not a broken pipe is the cause:
 * pg_dump's own message wins over a compressor that lost its input, and a compressor that died
 * wins over the SIGPIPE it caused upstream.
 */
async function toolsSucceeded(chain: ToolChain): Promise<void> {
  const exits = await Promise.all(chain.processes.map((p) => p.proc.exited));
  const failed = exits
    .map((exit, i) => ({ exit, tool: chain.processes[i].tool }))
    .filter(({ exit }) => exit.code !== 0 || exit.signal);
  if (failed.length > 0) {
    const cause = failed.find(({ exit }) => exit.signal !== 'SIGPIPE') ?? failed[0];
    throw new Error(describeExit(cause.tool, cause.exit));
  }
  await chain.feeding;
}

/**
 * Streams the tools' output through the hash to every store at once. The stores complete their
 * uploads only once the tools succeeded (the writer's commit), so a dump cut short is never
 * stored as complete.
 */
async function uploadToAll(
  a: StreamDumpArgs,
  chain: ToolChain,
  source: Readable,
  stages: NodeJS.ReadWriteStream[],
): Promise<StreamedDump> {
  const tools = toolsSucceeded(chain);
  tools.catch(() => undefined);
  // The hash stage is what the stores read: every stage is one more hop per chunk.
  const hash = new HashCounter({ highWaterMark: 1 << 20 });
  // The dump is cut into parts once; every store is sent the same part buffers.
  const writer = new PartWriter(
    a.stores.map((s) => s.upload(a.source.objectKey, { sizeHint: a.source.sizeEstimate })),
    { commit: tools },
  );
  const progress = new Progress(
    a.deps.logger,
    'Uploaded',
    () => hash.bytes,
    a.deps.progressIntervalMs ?? 5000,
  );
  try {
    const streaming = await new Promise<Error | undefined>((resolve) => {
      pipeline([source, ...stages, hash, writer] as unknown as NodeJS.ReadWriteStream[], (error) =>
        resolve(error ?? undefined),
      );
    });
    const results = await writer.results;
    if (streaming !== undefined || results.every((r) => !r.ok)) {
      for (const p of chain.processes) p.proc.kill();
      await Promise.all(chain.processes.map((p) => p.proc.exited));
      // A tool that failed on its own is the cause; otherwise the stores' own reports (which
      // name the endpoints), rather than the pipe's echo of them.
      throw writer.commitError ?? storesFailure(a.stores, results) ?? streaming;
    }
    progress.report();
    if (a.coalescer) a.deps.logger.info(describeCoalescing(a.coalescer));
    return {
      bytes: hash.bytes,
      sha256: hash.digest(),
      archiveBytes: chain.archive?.bytes,
      seconds: progress.elapsedSeconds(),
      results,
    };
  } finally {
    progress.stop();
  }
}

/** The stores' errors when every store failed: the one store's own, or each named. */
function storesFailure(stores: Storage[], results: UploadResult[]): Error | undefined {
  const errors = results.flatMap((r) => (r.ok ? [] : [r.error]));
  if (errors.length < results.length || errors.length === 0) return undefined;
  if (errors.length === 1) return errors[0];
  return new Error(
    `Every destination failed: ${errors.map((e, i) => `${stores[i].description}: ${e.message}`).join('; ')}`,
  );
}

function describeCoalescing(coalescer: ArchiveCoalescer): string {
  if (coalescer.unchangedBecause) {
    return `Archive passed to the compressor unchanged: ${coalescer.unchangedBecause}.`;
  }
  return `Archive data: ${formatCount(coalescer.chunksIn)} chunks from pg_dump written as ${formatCount(coalescer.chunksOut)}.`;
}

/**
 * Writes into a child's stdin, one buffer at a time, handing each back to the coalescer once
 * the pipe took it, and counts the bytes. A child that dies fails the write; its exit says why
 * (checkTools).
 */
function releasingWriter(
  stdin: Writable,
  coalescer: ArchiveCoalescer,
  counted: { bytes: number },
): Writable {
  stdin.on('error', () => undefined);
  return new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, callback) {
      counted.bytes += chunk.length;
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

/** The roles as the object stores hold them (encrypted when the backup is); undefined when pg_dumpall failed. */
async function dumpGlobals(
  options: BackupOptions,
  deps: BackupDeps,
  tools: ClientTools,
): Promise<{ data: Buffer; sha256: string } | undefined> {
  const env = childEnv(deps.env, options.connection);
  const proc = startProcess(
    tools.pgDumpall,
    ['--no-password', '--roles-only', '--no-role-passwords'],
    { env },
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
  const out: Buffer[] = [];
  const collect = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk);
      callback();
    },
  });
  await new Promise<void>((resolve, reject) =>
    pipeline(
      [
        Readable.from([Buffer.concat(chunks)]),
        ...stages,
        hash,
        collect,
      ] as unknown as NodeJS.ReadWriteStream[],
      (e) => (e ? reject(e) : resolve()),
    ),
  );
  return { data: Buffer.concat(out), sha256: hash.digest() };
}

/** The total size of the files under `dir` (a directory-format dump's). */
async function folderBytes(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  const sizes = await Promise.all(files.map((f) => stat(f)));
  return sizes.reduce((sum, st) => sum + st.size, 0);
}
