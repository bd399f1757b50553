import { readFile, writeFile } from 'node:fs/promises';
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { describeExit, runProcess, startProcess } from '../core/process.js';
import { childEnv, type ConnectionInfo } from '../postgres/connection.js';
import type { ArchiveFeed } from './fetch.js';
import { parallelRunArgs } from './parallel-runs.js';

export interface PgRestoreOptions {
  pgRestore: string;
  archivePath: string;
  /**
   * The streamed plan: pg_restore reads the archive from its stdin, fed from storage, in one
   * session; `archivePath` and `jobs` are then not used.
   */
  feed?: ArchiveFeed;
  connection: ConnectionInfo;
  database: string;
  /** Parallel jobs (`-j`); archives on disk only. */
  jobs: number;
  /** `--clean --if-exists`: drop objects before re-creating them (the real restore). */
  clean?: boolean;
  /** Restore from a roles-aware source: keep owners and grants. Default: --no-owner --no-acl. */
  keepOwnership?: boolean;
  /**
   * Tables whose data loads in one session, in the archive's order, before the other tables'
   * data: extensions' configuration tables, which the extension's own foreign keys tie together
   * before any data is loaded (pg_dump orders them, but their entries do not depend on each
   * other, so parallel jobs load them at once).
   */
  serialData?: { schema: string; name: string }[];
  /** Restore only the entries of this list (`--use-list`, as `pg_restore --list` writes it). */
  listFile?: string;
  /** libpq's PGOPTIONS for the restoring sessions, e.g. `-c session_replication_role=replica`. */
  sessionOptions?: string;
  /**
   * One session restores in one transaction (`--single-transaction`): on a server with
   * `wal_level=minimal`, tables created in it load and index without writing the log. For a
   * feed or one job: pg_restore refuses it with more.
   */
  singleTransaction?: boolean;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

/** A constraint the archive creates as its own entry (primary key, unique, foreign key, check). */
export interface ArchiveConstraint {
  kind: 'CONSTRAINT' | 'FK CONSTRAINT' | 'CHECK CONSTRAINT';
  schema: string;
  table: string;
  name: string;
}

/** What `pg_restore --list` found in an archive. */
export interface ArchiveListing {
  /** Entries in the table of contents. */
  entries: number;
  /** Entries that carry a table's rows. */
  tableData: number;
  /**
   * Constraints created as entries of their own. Names containing spaces cannot be told apart
   * in the listing and are left out.
   */
  constraints: ArchiveConstraint[];
  /** Extensions the archive creates (`CREATE EXTENSION`). */
  extensions: string[];
  /** Whether the archive carries large objects. */
  largeObjects: boolean;
}

const CONSTRAINT_LINE = /^\d+;\s+\d+\s+\d+\s+(FK CONSTRAINT|CHECK CONSTRAINT|CONSTRAINT)\s+(.+)$/;

/** Reads the text `pg_restore --list` prints. */
export function parseArchiveListing(text: string): ArchiveListing {
  const lines = text.split('\n').filter((l) => /^\d+;/.test(l));
  const constraints: ArchiveConstraint[] = [];
  for (const line of lines) {
    const m = CONSTRAINT_LINE.exec(line.trimEnd());
    if (!m) continue;
    const parts = m[2].split(' ');
    if (parts.length !== 3 && parts.length !== 4) continue;
    constraints.push({
      kind: m[1] as ArchiveConstraint['kind'],
      schema: parts[0],
      table: parts[1],
      name: parts[2],
    });
  }
  const extensions = lines.flatMap((l) => {
    const m = /^\d+;\s+\d+\s+\d+\s+EXTENSION\s+-\s+(\S+)/.exec(l);
    return m ? [m[1]] : [];
  });
  return {
    entries: lines.length,
    tableData: lines.filter((l) => /^\d+;\s+\d+\s+\d+\s+TABLE DATA\s/.test(l)).length,
    constraints,
    extensions,
    largeObjects: lines.some((l) => /^\d+;\s+\d+\s+\d+\s+(BLOB|BLOBS|LARGE OBJECT)\s/.test(l)),
  };
}

/** The text of the archive's table of contents, as `pg_restore --list` prints it. */
export async function listArchiveText(
  pgRestore: string,
  archivePath: string,
  extra: string[] = [],
): Promise<string> {
  const r = await runProcess(pgRestore, ['--list', ...extra, archivePath]);
  if (r.code !== 0) {
    throw new PgRestoreError(
      describeExit('pg_restore --list', { code: r.code, signal: r.signal, stderr: r.stderr }),
    );
  }
  return r.stdout;
}

/** Lists the archive's table of contents (`pg_restore --list`): proves the archive is readable. */
export async function listArchive(pgRestore: string, archivePath: string): Promise<ArchiveListing> {
  return parseArchiveListing(await listArchiveText(pgRestore, archivePath));
}

/** pg_restore failed (not a check after it): its own error text is the message. */
export class PgRestoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PgRestoreError';
  }
}

/**
 * Runs pg_restore with --exit-on-error; its own error text is the error when it fails. With
 * more than one job, it runs in the steps parallel-runs.ts explains: the schema and the data
 * with the post-data entries that wait for it, then the other post-data entries.
 */
export async function runPgRestore(o: PgRestoreOptions): Promise<void> {
  const base = ['--no-password', '--exit-on-error', `--dbname=${o.database}`];
  if (!o.keepOwnership) base.push('--no-owner', '--no-acl');
  if (o.clean) base.push('--clean', '--if-exists');
  if (o.listFile) base.push(`--use-list=${o.listFile}`);
  if (o.singleTransaction) base.push('--single-transaction');
  const env = childEnv(o.env, o.connection, o.database);
  if (o.sessionOptions) env.PGOPTIONS = o.sessionOptions;
  if (o.feed) {
    const exit = await o.feed((stdin) =>
      startProcess(o.pgRestore, base, {
        env,
        stdio: [stdin, 'ignore', 'pipe'],
        onStderrLine: (line) => o.logger.debug(line),
      }),
    );
    if (exit.code !== 0) throw new PgRestoreError(describeExit('pg_restore', exit));
    return;
  }
  const runs = o.jobs > 1 ? await parallelRuns(o) : [[]];
  for (const extra of runs) {
    const proc = startProcess(o.pgRestore, [...base, ...extra, o.archivePath], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
      onStderrLine: (line) => o.logger.debug(line),
    });
    const exit = await proc.exited;
    if (exit.code !== 0) throw new PgRestoreError(describeExit('pg_restore', exit));
  }
}

/**
 * Whether the server's lock table holds a restore of `entries` archive entries in one
 * transaction, which keeps a lock on every object it creates until it commits (about one per
 * entry, more for a table's TOAST table): twice the entries must fit. Its size is
 * max_locks_per_transaction × (max_connections + max_prepared_transactions) slots.
 */
export async function lockTableHolds(client: pg.Client, entries: number): Promise<boolean> {
  const r = await client.query<{ slots: string }>(
    `SELECT current_setting('max_locks_per_transaction')::bigint *
       (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint) AS slots`,
  );
  return 2 * entries <= Number(r.rows[0].slots);
}

/** The pg_restore runs of a parallel restore (see parallel-runs.ts). */
async function parallelRuns(o: PgRestoreOptions): Promise<string[][]> {
  const jobs = `--jobs=${o.jobs}`;
  // A given list (a platform's route) is the restore's own: its sections run one after another.
  if (o.listFile) {
    return [['--section=pre-data'], ['--section=data', jobs], ['--section=post-data', jobs]];
  }
  const serial = (o.serialData ?? []).map((t) => ` TABLE DATA ${t.schema} ${t.name} `);
  return parallelRunArgs({
    archivePath: o.archivePath,
    jobs: o.jobs,
    list: (extra) => listArchiveText(o.pgRestore, o.archivePath, extra),
    isSerial: (entry) => serial.some((s) => `${entry.line} `.includes(s)),
  });
}

/**
 * Leaves out of a roles script (pg_dumpall --roles-only) every statement about `role`, the
 * role the restore connects as: the source's `ALTER ROLE postgres WITH NOSUPERUSER` must not
 * take the superuser away from a server whose superuser has the same name.
 */
export function withoutRole(script: string, role: string): { script: string; skipped: string[] } {
  const names = [role, `"${role.replace(/"/g, '""')}"`];
  const skipped: string[] = [];
  const lines = script.split('\n').filter((line) => {
    const about = /^(?:CREATE|ALTER|COMMENT ON|DROP) ROLE ("(?:[^"]|"")*"|[^\s;]+)/.exec(line);
    const name = about?.[1];
    if (name !== undefined && names.includes(name)) {
      skipped.push(line);
      return false;
    }
    return true;
  });
  return { script: lines.join('\n'), skipped };
}

/**
 * Applies a roles script (globals.sql) with psql, tolerating roles that already exist. Nothing
 * about the connecting role is applied (see withoutRole); the roles the script created are
 * returned, so a run that owns the server can remove them.
 */
export async function applyGlobals(o: {
  psql: string;
  file: string;
  connection: ConnectionInfo;
  /** The role the restore connects as. */
  user: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}): Promise<{ skipped: string[] }> {
  const { script, skipped } = withoutRole(await readFile(o.file, 'utf8'), o.user);
  for (const line of skipped)
    o.logger.info(`Roles: left out, it is about the connecting role ${o.user}: ${line}`);
  await writeFile(o.file, script, { mode: 0o600 });
  const r = await runProcess(
    o.psql,
    ['-X', '-q', '--no-password', '-d', 'postgres', '-f', o.file],
    {
      env: childEnv(o.env, o.connection, 'postgres'),
    },
  );
  if (r.code !== 0)
    throw new Error(
      describeExit('psql (roles)', { code: r.code, signal: r.signal, stderr: r.stderr }),
    );
  const errors = r.stderr.split('\n').filter((l) => /ERROR/.test(l) && !/already exists/.test(l));
  for (const e of errors) o.logger.warning(`Roles: ${e}`);
  return { skipped };
}

/**
 * Reads a whole archive from a feed with pg_restore, restoring nothing (`--file=/dev/null`):
 * every entry, its data included, must read as the archive's format.
 */
export async function readArchiveFeed(
  pgRestore: string,
  feed: ArchiveFeed,
  logger: Logger,
): Promise<void> {
  const exit = await feed((stdin) =>
    startProcess(pgRestore, ['--file=/dev/null'], {
      stdio: [stdin, 'ignore', 'pipe'],
      onStderrLine: (line) => logger.debug(line),
    }),
  );
  if (exit.code !== 0) throw new PgRestoreError(describeExit('pg_restore', exit));
}
