import type { Logger } from '../core/logger.js';
import { describeExit, runProcess, startProcess } from '../core/process.js';
import { childEnv, type ConnectionInfo } from '../postgres/connection.js';

export interface PgRestoreOptions {
  pgRestore: string;
  archivePath: string;
  connection: ConnectionInfo;
  database: string;
  /** Parallel jobs (`-j`); archives on disk only. */
  jobs: number;
  /** `--clean --if-exists`: drop objects before re-creating them (the real restore). */
  clean?: boolean;
  /** Restore from a roles-aware source: keep owners and grants. Default: --no-owner --no-acl. */
  keepOwnership?: boolean;
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
  return {
    entries: lines.length,
    tableData: lines.filter((l) => /^\d+;\s+\d+\s+\d+\s+TABLE DATA\s/.test(l)).length,
    constraints,
  };
}

/** Lists the archive's table of contents (`pg_restore --list`): proves the archive is readable. */
export async function listArchive(pgRestore: string, archivePath: string): Promise<ArchiveListing> {
  const r = await runProcess(pgRestore, ['--list', archivePath]);
  if (r.code !== 0) {
    throw new Error(
      describeExit('pg_restore --list', { code: r.code, signal: r.signal, stderr: r.stderr }),
    );
  }
  return parseArchiveListing(r.stdout);
}

/** Runs pg_restore with --exit-on-error; its own error text is the error when it fails. */
export async function runPgRestore(o: PgRestoreOptions): Promise<void> {
  const args = ['--no-password', '--exit-on-error', `--dbname=${o.database}`];
  if (!o.keepOwnership) args.push('--no-owner', '--no-acl');
  if (o.clean) args.push('--clean', '--if-exists');
  if (o.jobs > 1) args.push(`--jobs=${o.jobs}`);
  args.push(o.archivePath);
  const proc = startProcess(o.pgRestore, args, {
    env: childEnv(o.env, o.connection, o.database),
    stdio: ['ignore', 'ignore', 'pipe'],
    onStderrLine: (line) => o.logger.debug(line),
  });
  const exit = await proc.exited;
  if (exit.code !== 0) throw new Error(describeExit('pg_restore', exit));
}

/** Applies a roles script (globals.sql) with psql, tolerating roles that already exist. */
export async function applyGlobals(o: {
  psql: string;
  file: string;
  connection: ConnectionInfo;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}): Promise<void> {
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
}
