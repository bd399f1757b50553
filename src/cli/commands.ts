import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseCompression, runBackup } from '../backup/backup.js';
import { listCatalog, listNames, listVerifications } from '../catalog/catalog.js';
import { BACKUP_KINDS, totalBytes, type BackupKind } from '../catalog/manifest.js';
import { parseMaxDelete, parseRetentionPolicy } from '../catalog/retention.js';
import { parseDuration, parseKeepUntil } from '../core/duration.js';
import { ConfigurationError } from '../core/errors.js';
import { systemClock, type Logger } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { formatBytes } from '../core/streams.js';
import { parseIdentities, parseRecipients } from '../crypto/age.js';
import {
  runDrill,
  runRestore,
  type DrillDeps,
  type DrillOptions,
  type DrillResult,
} from '../drill/drill.js';
import { drillText } from '../drill/summary.js';
import { splitList } from '../core/lists.js';
import {
  connectionUrl,
  databaseName,
  describeConnection,
  parseConnectionString,
  resolveConnection,
} from '../postgres/connection.js';
import { extensionInstaller } from '../postgres/extensions.js';
import { clientToolResolver } from '../postgres/install.js';
import { resolvePostgresVersionInput } from '../postgres/tools.js';
import { parseDeleteIncompleteAfter, parsePruneNames } from '../prune/options.js';
import { pruneFailure, runPrune } from '../prune/prune.js';
import { parseChecks, type UserCheck } from '../restore/checks.js';
import type { Decryption } from '../restore/fetch.js';
import { openStorage } from '../storage/open.js';
import type { Storage } from '../storage/storage.js';
import { runVerify } from '../verify/verify.js';
import { runFilesJob } from '../files/job.js';
import { parseFilesJob } from '../files/options.js';
import { COMMANDS, type ParsedOptions } from './args.js';

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

function openStore(o: ParsedOptions, io: CliIo): Promise<Storage> {
  return openStorage(
    o.required('storage'),
    {
      endpoint: o.string('s3-endpoint'),
      region: o.string('s3-region'),
      forcePathStyle: o.boolean('s3-force-path-style') ? true : undefined,
    },
    io.logger,
  );
}

function decryptionOf(o: ParsedOptions): Decryption | undefined {
  const identities = parseIdentities(o.secret('encryption-identity') ?? '');
  const passphrase = o.secret('encryption-passphrase');
  return identities.length > 0 || passphrase ? { identities, passphrase } : undefined;
}

function durationOption(o: ParsedOptions, name: string): number | undefined {
  const text = o.string(name);
  return text === undefined ? undefined : parseDuration(text, `--${name}`);
}

function checksOf(o: ParsedOptions, cwd: string): UserCheck[] {
  return parseChecks(o.string('checks'), cwd);
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
  const recipients = parseRecipients(o.string('encryption-recipients') ?? '');
  const passphrase = o.secret('encryption-passphrase');
  const kind = (o.string('kind') ?? 'manual') as BackupKind;
  if (!BACKUP_KINDS.includes(kind)) {
    throw new ConfigurationError(
      `--kind must be one of ${BACKUP_KINDS.join(', ')}, got '${kind}'.`,
    );
  }
  const format = o.string('format') ?? 'custom';
  if (format !== 'custom' && format !== 'directory') {
    throw new ConfigurationError(`--format must be custom or directory, got '${format}'.`);
  }
  const rowCounts = o.string('row-counts') ?? 'exact';
  if (rowCounts !== 'exact' && rowCounts !== 'estimate' && rowCounts !== 'off') {
    throw new ConfigurationError(
      `--row-counts must be exact, estimate or off, got '${rowCounts}'.`,
    );
  }
  const labels: Record<string, string> = {};
  for (const item of splitList(o.string('labels') ?? '')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigurationError(`--labels takes key=value pairs, got '${item}'.`);
    labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  const keepUntil = o.string('keep-until');
  const postgresVersion = resolvePostgresVersionInput(o.string('postgres-version') ?? 'auto');
  const storage = await openStore(o, io);
  const result = await runBackup(
    {
      connection: resolveConnection(o.string('database-url'), env),
      name: o.string('name'),
      format,
      jobs: o.integer('jobs', 2, 1, 64),
      compression: parseCompression(o.string('compression')),
      selection: {
        schemas: splitList(o.string('schemas') ?? ''),
        excludeSchemas: splitList(o.string('exclude-schemas') ?? ''),
        excludeTableData: splitList(o.string('exclude-table-data') ?? ''),
      },
      globals: o.boolean('globals'),
      encryption: recipients.length > 0 || passphrase ? { recipients, passphrase } : undefined,
      kind,
      labels,
      keepUntil: keepUntil
        ? parseKeepUntil(keepUntil, systemClock.now(), '--keep-until')
        : undefined,
      rowCounts,
      sizeChangeThreshold: 20,
      git: {},
    },
    {
      storage,
      logger: io.logger,
      clock: systemClock,
      env,
      zstdPath: findOnPath('zstd', env.PATH),
      resolveTools: (server) =>
        clientToolResolver(postgresVersion, env, io.logger)(server.major, server.version),
    },
  );
  for (const w of result.warnings) io.logger.warning(w);
  if (o.boolean('json')) {
    print(
      io,
      JSON.stringify(
        {
          id: result.manifest.id,
          name: result.manifest.name,
          location: storage.location(result.objectKey),
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
  const postgresVersion = resolvePostgresVersionInput(o.string('postgres-version') ?? 'auto');
  return {
    storage,
    logger: io.logger,
    clock: systemClock,
    env: io.env,
    zstdPath: findOnPath('zstd', io.env.PATH),
    resolveTools: (request) =>
      clientToolResolver(postgresVersion, io.env, io.logger)(
        request.major,
        request.version,
        request.needServer,
      ),
    installExtensions: extensionInstaller(io.env, io.logger),
    workDir,
    workspace: io.cwd,
  };
}

function drillOptions(o: ParsedOptions, io: CliIo): DrillOptions {
  return {
    name: o.string('name'),
    backupId: o.string('backup-id'),
    decryption: decryptionOf(o),
    jobs: o.integer('jobs', 2, 1, 64),
    rtoTargetSeconds: durationOption(o, 'rto-target'),
    rpoTargetSeconds: durationOption(o, 'rpo-target'),
    smokeCommand: o.string('smoke-command'),
    checks: checksOf(o, io.cwd),
    targetUrl: o.string('target-url'),
    postgresVersion: resolvePostgresVersionInput(o.string('postgres-version') ?? 'auto'),
    git: {},
  };
}

/** A temp folder removed on every way out, a signal included (the scratch server has its own hook). */
async function withWorkDir<T>(
  parent: string | undefined,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(path.join(parent ?? os.tmpdir(), 'pg-backup-'));
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
  const options = drillOptions(o, io);
  const storage = await openStore(o, io);
  return withWorkDir(o.string('work-dir'), async (dir) =>
    reportDrill(o, io, await runDrill(options, restoreDeps(o, io, storage, dir))),
  );
}

/** Asks for the database name on a terminal; refuses without one. */
async function confirmInteractively(
  io: CliIo,
  database: string,
  where: string,
  backupId: string | undefined,
): Promise<string> {
  if (!io.stdin.isTTY) {
    throw new ConfigurationError(
      `Refusing to restore into ${where} without confirmation: pass --confirm ${database} (no terminal to ask on). Nothing was changed.`,
    );
  }
  const rl = createInterface({ input: io.stdin, output: io.stderr });
  try {
    io.stderr.write(
      `\nThis replaces everything in database '${database}' (${where}) with ${backupId ? `backup ${backupId}` : 'the newest backup'}.\n` +
        `A safety backup of it is taken first unless --no-safety-backup.\n`,
    );
    return (await rl.question(`Type the database name to continue: `)).trim();
  } finally {
    rl.close();
  }
}

/** `restore`: the real restore into --target-url (else DATABASE_URL, else PG* variables). */
export async function restoreCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const options = drillOptions(o, io);
  const given = o.string('target-url');
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
    o.string('confirm') ??
    (await confirmInteractively(io, database, describeConnection(info), options.backupId));
  const storage = await openStore(o, io);
  return withWorkDir(o.string('work-dir'), async (dir) =>
    reportDrill(
      o,
      io,
      await runRestore(
        {
          ...options,
          targetUrl,
          confirm,
          terminateConnections: o.boolean('terminate-connections'),
          safetyBackup: !o.boolean('no-safety-backup'),
        },
        restoreDeps(o, io, storage, dir),
      ),
    ),
  );
}

/** `verify`: runVerify, as the verify action does. */
export async function verifyCommand(o: ParsedOptions, io: CliIo): Promise<ExitCode> {
  const postgresVersion = resolvePostgresVersionInput(o.string('postgres-version') ?? 'auto');
  const storage = await openStore(o, io);
  const maxAge = durationOption(o, 'max-age');
  const report = await withWorkDir(o.string('work-dir'), (dir) =>
    runVerify(
      {
        name: o.string('name'),
        backupId: o.string('backup-id'),
        decryption: decryptionOf(o),
        restore: !o.boolean('no-restore'),
        targetUrl: o.string('target-url'),
        checks: checksOf(o, io.cwd),
        maxAgeSeconds: maxAge,
        jobs: o.string('jobs') === undefined ? undefined : o.integer('jobs', 2, 1, 64),
        git: {},
      },
      {
        storage,
        logger: io.logger,
        clock: systemClock,
        env: io.env,
        zstdPath: findOnPath('zstd', io.env.PATH),
        tmpDir: dir,
        resolveTools: (minMajor, pgDumpVersion) =>
          clientToolResolver(postgresVersion, io.env, io.logger)(
            minMajor,
            pgDumpVersion,
            !o.boolean('no-restore') && !o.string('target-url'),
          ),
        installExtensions: extensionInstaller(io.env, io.logger),
      },
    ),
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
  const names = parsePruneNames(o.required('name'), '--name');
  const policy = parseRetentionPolicy({
    keepLast: o.string('keep-last'),
    keepHourly: o.string('keep-hourly'),
    keepDaily: o.string('keep-daily'),
    keepWeekly: o.string('keep-weekly'),
    keepMonthly: o.string('keep-monthly'),
    keepYearly: o.string('keep-yearly'),
    keepWithin: o.string('keep-within'),
    keepKind: o.string('keep-kind'),
    timezone: o.string('timezone'),
  });
  const storage = await openStore(o, io);
  const report = await runPrune(
    {
      names,
      policy,
      maxDelete: parseMaxDelete(o.string('max-delete') ?? '50%'),
      deleteIncompleteAfterSeconds: parseDeleteIncompleteAfter(
        o.string('delete-incomplete-after') ?? '24h',
        '--delete-incomplete-after',
      ),
      dryRun: o.boolean('dry-run'),
      bypassGovernanceRetention: o.boolean('bypass-governance-retention'),
    },
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
  const read = (name: string): string | undefined =>
    COMMANDS.files.options[name].type === 'boolean'
      ? o.boolean(name)
        ? 'true'
        : undefined
      : o.secret(name);
  const outcome = await runFilesJob(parseFilesJob(read), {
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
