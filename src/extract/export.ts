import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Manifest } from '../catalog/manifest.js';
import { exportObjectName, exportsPrefix } from '../catalog/keys.js';
import { ConfigurationError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { describeExit, startProcess, type RunningProcess } from '../core/process.js';
import { HashCounter, Progress } from '../core/streams.js';
import { createEncryptStream } from '../crypto/age.js';
import { childEnv, type ConnectionInfo } from '../postgres/connection.js';
import type { Storage } from '../storage/storage.js';
import type { ExportFormat, ExportOptions } from './options.js';
import { qualified, restoreChosenTables, topLevel, type ExtractDeps } from './scratch.js';

/** One exported table. */
export interface ExportedTable {
  table: string;
  /** Its key in the destination. */
  key: string;
  rows: number;
  bytes: number;
  sha256: string;
}

/** `manifest.json` beside the exports: what they hold and how to read them. */
export interface ExportManifest {
  schemaVersion: 1;
  name: string;
  backupId: string;
  createdAt: string;
  format: ExportFormat;
  compression: 'zstd';
  /** The age recipients the files are encrypted to; absent when the backup was not encrypted. */
  encryption?: { recipients: string[] };
  tables: ExportedTable[];
}

/** Where exports go: the catalog (`<name>/exports/<backup-id>/`), or a folder's root. */
export interface ExportDestination {
  storage: Storage;
  /** Key prefix of the files and their manifest; undefined: the catalog's exports folder. */
  prefix?: string;
}

export interface ExportResult {
  manifest: Manifest;
  exportManifest: ExportManifest;
  /** Where the export manifest is, as the store names it. */
  location: string;
  warnings: string[];
}

/** The recipients of the exports: those given, else the backup's own. */
function exportRecipients(options: ExportOptions, manifest: Manifest): string[] | undefined {
  if (options.recipients.length > 0) return options.recipients;
  if (!manifest.encryption) return undefined;
  if (manifest.encryption.recipients.length > 0) return manifest.encryption.recipients;
  throw new ConfigurationError(
    `Backup ${manifest.id} is encrypted with a passphrase, and exports are encrypted to recipients: set encryption-recipients (age public keys).`,
  );
}

/**
 * Writes chosen tables of a backup as CSV or JSON Lines, compressed with zstd and encrypted
 * with age to the backup's recipients, with a manifest written last (row counts, SHA-256).
 */
export async function runExport(
  options: ExportOptions,
  deps: ExtractDeps & { destination: ExportDestination },
): Promise<ExportResult> {
  const { logger } = deps;
  const zstd = deps.zstdPath;
  if (!zstd) {
    throw new ConfigurationError(
      'Exports are compressed with zstd, and the zstd command is not installed: sudo apt-get install -y zstd',
    );
  }
  const { storage } = deps.destination;
  let prefix = '';
  let recipients: string[] | undefined;
  const copy = await restoreChosenTables(options, deps, async (manifest, name) => {
    recipients = exportRecipients(options, manifest);
    prefix = deps.destination.prefix ?? exportsPrefix(name, manifest.id);
    if (await storage.head(`${prefix}manifest.json`)) {
      throw new ConfigurationError(
        `Exports of backup ${manifest.id} exist already at ${storage.location(`${prefix}manifest.json`)}: delete them first, or export into another folder. Nothing was written.`,
      );
    }
  });
  try {
    const tables: ExportedTable[] = [];
    for (const t of topLevel(copy.tables)) {
      const key = `${prefix}${exportObjectName(t.schema, t.name, options.format, Boolean(recipients))}`;
      const stored = await logger.group(`Export ${t.schema}.${t.name} (${t.rows} rows)`, () =>
        exportTable({
          query: exportQuery(qualified(t), options.format),
          psql: copy.tools.psql,
          connection: copy.scratch.connection,
          database: copy.scratch.database,
          env: deps.env,
          zstd,
          recipients,
          storage,
          key,
          logger,
          progressIntervalMs: deps.progressIntervalMs,
        }),
      );
      tables.push({ table: `${t.schema}.${t.name}`, key, rows: t.rows, ...stored });
    }
    const exportManifest: ExportManifest = {
      schemaVersion: 1,
      name: copy.name,
      backupId: copy.manifest.id,
      createdAt: deps.clock.now().toISOString(),
      format: options.format,
      compression: 'zstd',
      ...(recipients ? { encryption: { recipients } } : {}),
      tables,
    };
    const manifestKey = `${prefix}manifest.json`;
    await storage.putBytes(manifestKey, `${JSON.stringify(exportManifest, null, 2)}\n`, {
      ifNoneMatch: true,
    });
    return {
      manifest: copy.manifest,
      exportManifest,
      location: storage.location(manifestKey),
      warnings: copy.warnings,
    };
  } finally {
    await copy.cleanup();
  }
}

/**
 * The COPY that writes a table. JSON Lines go through CSV mode with a delimiter and a quote
 * character JSON never holds unescaped (control characters), so each row's JSON passes as it
 * is, where text mode would double its backslashes.
 */
export function exportQuery(table: string, format: ExportFormat): string {
  return format === 'csv'
    ? `COPY (SELECT * FROM ${table}) TO STDOUT WITH (FORMAT csv, HEADER)`
    : `COPY (SELECT row_to_json(t)::text FROM ${table} t) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')`;
}

/** psql's COPY output → zstd → age → SHA-256 and byte count → the store, all streamed. */
async function exportTable(o: {
  query: string;
  psql: string;
  connection: ConnectionInfo;
  database: string;
  env: NodeJS.ProcessEnv;
  zstd: string;
  recipients?: string[];
  storage: Storage;
  key: string;
  logger: Logger;
  progressIntervalMs?: number;
}): Promise<{ bytes: number; sha256: string }> {
  const psql = startProcess(
    o.psql,
    ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '-c', o.query],
    { env: childEnv(o.env, o.connection, o.database), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const zstd = startProcess(o.zstd, ['-q', '-c', '-3', '-T0'], {
    stdio: [psql.child.stdout as Readable, 'pipe', 'pipe'],
  });
  // zstd reads psql's output itself; this process lets go of its end of that pipe.
  psql.child.stdout?.destroy();
  const tools: { tool: string; proc: RunningProcess }[] = [
    { tool: 'psql (COPY)', proc: psql },
    { tool: 'zstd', proc: zstd },
  ];
  const hash = new HashCounter({ beforeEnd: () => toolsSucceeded(tools) });
  const progress = new Progress(
    o.logger,
    `Exported ${o.key}`,
    () => hash.bytes,
    o.progressIntervalMs,
  );
  const chain = [
    zstd.child.stdout as Readable,
    ...(o.recipients ? [createEncryptStream({ recipients: o.recipients })] : []),
    hash,
  ];
  try {
    await Promise.all([
      pipeline(chain as unknown as NodeJS.ReadWriteStream[]),
      o.storage.putStream(o.key, hash, { contentType: 'application/octet-stream' }),
    ]);
    progress.report();
    return { bytes: hash.bytes, sha256: hash.digest() };
  } finally {
    progress.stop();
    for (const t of tools) t.proc.kill();
  }
}

/** Resolves once every tool exited 0; rejects with the first failure's own words. */
async function toolsSucceeded(tools: { tool: string; proc: RunningProcess }[]): Promise<void> {
  for (const t of tools) {
    const exit = await t.proc.exited;
    if (exit.code !== 0) throw new Error(describeExit(t.tool, exit));
  }
}
