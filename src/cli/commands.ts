import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { runBackup } from '../backup/backup.js';
import { listCatalog, listNames, listVerifications } from '../catalog/catalog.js';
import { compactTime } from '../catalog/keys.js';
import { totalBytes } from '../catalog/manifest.js';
import { ConfigurationError, OptionError } from '../core/errors.js';
import { systemClock, type Logger } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { formatBytes } from '../core/streams.js';
import { runExport } from '../extract/export.js';
import { runExtract } from '../extract/extract.js';
import { readExportOptions, readExtractOptions } from '../extract/options.js';
import { exportText, extractText } from '../extract/summary.js';
import { runDrill, runRestore, type DrillDeps, type DrillResult } from '../drill/drill.js';
import { drillText } from '../drill/summary.js';
import { backupOptions } from '../options/backup.js';
import { pruneOptions } from '../options/prune.js';
import type { FrontDoor } from '../options/reader.js';
import {
  decryptionOption,
  drillOptions,
  restoreOptions,
  verifyOptions,
  workDirOption,
} from '../options/restore.js';
import { gitContext, postgresVersionOption, storageOption } from '../options/shared.js';
import {
  connectionUrl,
  databaseName,
  describeConnection,
  parseConnectionString,
  resolveConnection,
} from '../postgres/connection.js';
import { extensionInstaller } from '../postgres/extensions.js';
import { clientToolResolver } from '../postgres/install.js';
import { pruneFailure, runPrune } from '../prune/prune.js';
import { openDestinations, readDestinations } from '../storage/destinations.js';
import { LocalStorage } from '../storage/local.js';
import type { Storage } from '../storage/storage.js';
import { runVerify } from '../verify/verify.js';
import { runFilesJob } from '../files/job.js';
import { parseFilesJob } from '../files/options.js';
import { flagWording, optionReader, type ParsedOptions } from './args.js';

/** Where a command writes: results on stdout, the log on stderr. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  logger: Logger;
}

/** 0: done; 1: the backup, verification, drill or restore failed. */
export type ExitCode = 0 | 1;

/** Where a command runs: the terminal's environment and folder. */
function cliFrontDoor(io: CliIo): FrontDoor {
  return {
    env: io.env,
    workspace: io.cwd,
    git: gitContext(io.env),
    now: systemClock.now(),
    wording: flagWording,
  };
}

function openStore(o: ParsedOptions, io: CliIo): Promise<Storage> {
  return storageOption(optionReader(o), io.logger);
}

function print(io: CliIo, text: string): void {
  io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function column(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `list`: every backup of each name, newest last, with its last verification or drill. */
export async function listCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const storage = await openStore(o, io);
  const given = o.string('name');
  const names = given ? [given] : await listNames(storage);
  if (names.length === 0) {
    throw new ConfigurationError(`No backups in ${storage.description}.`);
  }
  const all: Record<string, unknown>[] = [];
  const rows: string[][] = [
    ['NAME', 'ID', 'KIND', 'FINISHED (UTC)', 'SIZE', 'ENCRYPTED', 'LAST CHECK'],
  ];
  for (const name of names) {
    const [entries, records] = await Promise.all([
      listCatalog(storage, name),
      listVerifications(storage, name),
    ]);
    const last = new Map<string, (typeof records)[number]>();
    for (const r of records) last.set(r.backupId, r);
    // Oldest first by finish time: ids are unique but only to the second.
    const finished = (e: (typeof entries)[number]): string =>
      e.manifest?.finishedAt ?? e.lastModified.toISOString();
    entries.sort((a, b) => finished(a).localeCompare(finished(b)) || a.id.localeCompare(b.id));
    for (const e of entries) {
      const m = e.manifest;
      const check = last.get(e.id);
      const bytes = m ? totalBytes(m) : e.objects.reduce((n, x) => n + x.size, 0);
      const checkText = check
        ? `${check.status} (${check.type} ${check.finishedAt.slice(0, 16).replace('T', ' ')})`
        : '-';
      rows.push([
        name,
        e.id,
        m ? m.kind : e.damaged !== undefined ? 'damaged' : 'incomplete',
        m ? m.finishedAt.slice(0, 19).replace('T', ' ') : '-',
        formatBytes(bytes),
        m ? (m.encryption ? 'age' : 'no') : '-',
        checkText,
      ]);
      all.push({
        name,
        id: e.id,
        complete: Boolean(m),
        damaged: e.damaged,
        kind: m?.kind,
        finishedAt: m?.finishedAt,
        bytes,
        encrypted: m ? Boolean(m.encryption) : undefined,
        sourceVersion: m?.source.serverVersion,
        lastCheck: check
          ? { type: check.type, status: check.status, finishedAt: check.finishedAt }
          : undefined,
      });
    }
  }
  if (o.boolean('json')) print(io, JSON.stringify(all, null, 2));
  else print(io, rows.length > 1 ? column(rows) : 'No backups.');
  return 0;
}

/** `backup`: runBackup with the backup action's options. */
export async function backupCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const env = io.env;
  const read = optionReader(o);
  // The CLI logs no secrets, so there is nothing to mask: the terminal is the user's own.
  const plan = readDestinations(
    (key) => read.string(key),
    env,
    () => undefined,
  );
  const options = {
    ...backupOptions(read, cliFrontDoor(io), 'manual'),
    destinationsRequired: plan.required,
  };
  const postgresVersion = postgresVersionOption(read);
  const [storage, ...copies] = await openDestinations(plan.destinations, io.logger);
  const result = await runBackup(options, {
    storage,
    copies,
    logger: io.logger,
    clock: systemClock,
    env,
    zstdPath: findOnPath('zstd', env.PATH),
    resolveTools: clientToolResolver(postgresVersion, env, io.logger),
  });
  for (const w of result.warnings) io.logger.warning(w);
  if (o.boolean('json')) {
    print(
      io,
      JSON.stringify(
        {
          id: result.manifest.id,
          name: result.manifest.name,
          location: storage.location(result.objectKey),
          copies: result.copies,
          bytes: result.bytes,
          sha256: result.sha256,
          durationSeconds: result.durationSeconds,
        },
        null,
        2,
      ),
    );
  } else {
    print(io, result.manifest.id);
  }
  return 0;
}

function restoreDeps(o: ParsedOptions, io: CliIo, storage: Storage, workDir: string): DrillDeps {
  const postgresVersion = postgresVersionOption(optionReader(o));
  return {
    storage,
    logger: io.logger,
    clock: systemClock,
    env: io.env,
    zstdPath: findOnPath('zstd', io.env.PATH),
    resolveTools: clientToolResolver(postgresVersion, io.env, io.logger),
    installExtensions: extensionInstaller(io.env, io.logger),
    workDir,
    workspace: io.cwd,
  };
}

/** A temp folder removed on every way out, a signal included (the scratch server has its own hook). */
async function withWorkDir<T>(parent: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(parent, 'pg-backup-'));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping, removing the scratch server and files\n`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', remove);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await fn(dir);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', remove);
    remove();
  }
}

function reportDrill(o: ParsedOptions, io: CliIo, result: DrillResult): ExitCode {
  if (o.boolean('json')) {
    const { manifest, history, ...rest } = result;
    print(
      io,
      JSON.stringify({ ...rest, backupId: manifest.id, previousDrills: history.length }, null, 2),
    );
  } else {
    print(io, drillText(result));
  }
  return result.status === 'passed' ? 0 : 1;
}

/** `drill`: the timed restore drill into a scratch server (or an empty target). */
export async function drillCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const read = optionReader(o);
  const door = cliFrontDoor(io);
  const options = drillOptions(read, door);
  const storage = await openStore(o, io);
  return withWorkDir(workDirOption(read, door), async (dir) =>
    reportDrill(o, io, await runDrill(options, restoreDeps(o, io, storage, dir))),
  );
}

/** Asks for the database name on a terminal, after saying what will happen; refuses without one. */
async function confirmInteractively(
  io: CliIo,
  ask: { database: string; where: string; action: string },
): Promise<string> {
  if (!io.stdin.isTTY) {
    throw new ConfigurationError(
      `Refusing to write into ${ask.where} without confirmation: pass --confirm ${ask.database} (no terminal to ask on). Nothing was changed.`,
    );
  }
  const rl = createInterface({ input: io.stdin, output: io.stderr });
  try {
    io.stderr.write(`\n${ask.action}\n`);
    return (await rl.question(`Type the database name to continue: `)).trim();
  } finally {
    rl.close();
  }
}

/** `restore`: the real restore into --target-url (else DATABASE_URL, else PG* variables). */
export async function restoreCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const read = optionReader(o);
  const door = cliFrontDoor(io);
  const options = restoreOptions(read, door);
  const given = options.targetUrl || undefined;
  const info = given
    ? parseConnectionString(given, 'target-url')
    : resolveConnection(undefined, io.env);
  if (!given && !info.host && !info.database) {
    throw new ConfigurationError(
      'restore needs the database to replace: --target-url URL (or DATABASE_URL, or PGHOST/PGDATABASE...).',
    );
  }
  const targetUrl = given ?? connectionUrl(info);
  const database = databaseName(info);
  const confirm =
    options.confirm ??
    (await confirmInteractively(io, {
      database,
      where: describeConnection(info),
      action:
        `This replaces everything in database '${database}' (${describeConnection(info)}) with ${options.backupId ? `backup ${options.backupId}` : 'the newest backup'}.\n` +
        `A safety backup of it is taken first unless --no-safety-backup.`,
    }));
  const storage = await openStore(o, io);
  return withWorkDir(workDirOption(read, door), async (dir) =>
    reportDrill(
      o,
      io,
      await runRestore({ ...options, targetUrl, confirm }, restoreDeps(o, io, storage, dir)),
    ),
  );
}

/** `extract`: tables of a backup into a new schema of --target-url (else DATABASE_URL, PG*). */
export async function extractCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const given = o.string('target-url');
  const info = given
    ? parseConnectionString(given, 'target-url')
    : resolveConnection(undefined, io.env);
  if (!given && !info.host && !info.database) {
    throw new ConfigurationError(
      'extract needs the database to extract into: --target-url URL (or DATABASE_URL, or PGHOST/PGDATABASE...).',
    );
  }
  const reader = optionReader(o);
  const targetUrl = given ?? connectionUrl(info);
  const read = (key: string): string | undefined =>
    key === 'target-url' ? targetUrl : reader.string(key);
  const options = readExtractOptions(read, decryptionOption(reader));
  options.confirm ??= await confirmInteractively(io, {
    database: databaseName(info),
    where: describeConnection(info),
    action: `This creates a new schema in database '${databaseName(info)}' (${describeConnection(info)}) holding tables of ${options.backupId ? `backup ${options.backupId}` : 'the newest backup'}; nothing else in it changes.`,
  });
  const reportDir = path.resolve(
    io.cwd,
    o.string('output') ?? `extract-${compactTime(systemClock.now())}`,
  );
  const storage = await openStore(o, io);
  const result = await withWorkDir(workDirOption(reader, cliFrontDoor(io)), (dir) =>
    runExtract(options, { ...restoreDeps(o, io, storage, dir), reportDir }),
  );
  if (o.boolean('json')) {
    const { manifest, ...rest } = result;
    print(io, JSON.stringify({ ...rest, backupId: manifest.id, reportDir }, null, 2));
  } else {
    print(io, extractText(result));
  }
  return 0;
}

/** `export`: tables of a backup as files, into --output or the catalog's exports folder. */
export async function exportCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const reader = optionReader(o);
  const options = readExportOptions((key) => reader.string(key), decryptionOption(reader));
  const storage = await openStore(o, io);
  const folder = o.string('output');
  const destination = folder
    ? { storage: new LocalStorage(path.resolve(io.cwd, folder), io.logger), prefix: '' }
    : { storage };
  const result = await withWorkDir(workDirOption(reader, cliFrontDoor(io)), (dir) =>
    runExport(options, { ...restoreDeps(o, io, storage, dir), destination }),
  );
  if (o.boolean('json')) {
    print(io, JSON.stringify(result.exportManifest, null, 2));
  } else {
    print(io, exportText(result));
  }
  return 0;
}

/** `verify`: runVerify, as the verify action does. */
export async function verifyCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const read = optionReader(o);
  const door = cliFrontDoor(io);
  const options = verifyOptions(read, door, io.logger);
  const postgresVersion = postgresVersionOption(read);
  const storage = await openStore(o, io);
  const report = await withWorkDir(workDirOption(read, door), (dir) =>
    runVerify(options, {
      storage,
      logger: io.logger,
      clock: systemClock,
      env: io.env,
      zstdPath: findOnPath('zstd', io.env.PATH),
      tmpDir: dir,
      resolveTools: (request) =>
        clientToolResolver(
          postgresVersion,
          io.env,
          io.logger,
        )({
          ...request,
          needServer: options.restore && !options.targetUrl,
        }),
      installExtensions: extensionInstaller(io.env, io.logger),
    }),
  );
  if (o.boolean('json')) {
    print(io, JSON.stringify(report, null, 2));
  } else {
    const lines = [`verify ${report.status}: ${report.name} ${report.backup?.id ?? ''}`.trimEnd()];
    for (const c of report.checks) {
      const mark = c.status === 'passed' ? 'ok  ' : c.status === 'failed' ? 'FAIL' : 'skip';
      lines.push(`  ${mark} ${c.name}: ${c.detail.split('\n')[0]}`);
    }
    for (const w of report.warnings) lines.push(`  warning: ${w}`);
    print(io, lines.join('\n'));
  }
  return report.status === 'passed' ? 0 : 1;
}

/** `prune`: runPrune, as the prune action does. */
export async function pruneCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const { names, ...options } = pruneOptions(optionReader(o));
  if (names === undefined) {
    throw new OptionError('name', (w) => `${w.option('name')} is required: a name, a list, or *.`);
  }
  const storage = await openStore(o, io);
  const report = await runPrune(
    { ...options, names },
    { storage, logger: io.logger, clock: systemClock },
  );
  if (o.boolean('json')) {
    print(io, JSON.stringify(report, null, 2));
  } else {
    const lines: string[] = [];
    for (const n of report.names) {
      for (const b of n.backups) {
        lines.push(`${n.name}  ${b.id}  ${b.outcome.padEnd(12)} ${b.explanation}`);
      }
      if (n.refused) lines.push(`${n.name}: refused: ${n.refused}`);
    }
    lines.push(
      `${report.dryRun ? 'would keep' : 'kept'} ${report.kept}, ${report.dryRun ? 'would delete' : 'deleted'} ${report.deleted}, ${formatBytes(report.freedBytes)}`,
    );
    print(io, lines.join('\n'));
  }
  const failure = pruneFailure(report);
  if (failure) throw failure;
  return 0;
}

/** `files`: a file backup job, as the backup-files action runs it. */
export async function filesCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const reader = optionReader(o);
  const read = (key: string): string | undefined => reader.string(key) ?? reader.secret(key);
  const outcome = await runFilesJob(parseFilesJob(read, gitContext(io.env)), {
    logger: io.logger,
    clock: systemClock,
    workDir: o.string('work-dir'),
  });
  print(
    io,
    o.boolean('json')
      ? JSON.stringify(outcome.result, null, 2)
      : Object.entries(outcome.outputs)
          .map(([name, value]) => `${name}: ${value}`)
          .join('\n'),
  );
  return outcome.status === 'passed' ? 0 : 1;
}
