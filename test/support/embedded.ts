import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { MemoryLogger } from '../../src/core/logger.js';
import {
  findClientTools,
  parseToolVersion,
  type ClientTools,
  type ServerBinaries,
} from '../../src/postgres/tools.js';

/** The repository root (jest runs with it as the working directory). */
const repoRoot = path.resolve(process.cwd());

export type EmbeddedMajor = 13 | 14 | 16 | 17 | 18;
export const EMBEDDED_MAJORS: EmbeddedMajor[] = [13, 14, 16, 17, 18];

/** The machine's PostgreSQL 15 (Debian packages). */
export const MACHINE_BIN_DIR = '/usr/lib/postgresql/15/bin';

function serverIn(binDir: string): ServerBinaries {
  const postgres = path.join(binDir, 'postgres');
  if (!existsSync(postgres)) throw new Error(`no PostgreSQL server at ${binDir}`);
  const r = spawnSync(postgres, ['--version'], { encoding: 'utf8' });
  const parsed = parseToolVersion(r.stdout ?? '');
  if (r.status !== 0 || !parsed) {
    throw new Error(
      `${postgres} --version failed (${r.status}): ${r.stderr}; run 'node scripts/setup.mjs' first`,
    );
  }
  return {
    binDir,
    ...parsed,
    initdb: path.join(binDir, 'initdb'),
    pgCtl: path.join(binDir, 'pg_ctl'),
    postgres,
  };
}

/** The server binaries of the npm package aliased pg<major> (initdb, pg_ctl, postgres only). */
export function embeddedServer(major: EmbeddedMajor): ServerBinaries {
  const server = serverIn(path.join(repoRoot, 'node_modules', `pg${major}`, 'native', 'bin'));
  if (server.major !== major) {
    throw new Error(`node_modules/pg${major} holds PostgreSQL ${server.version}`);
  }
  return server;
}

/** The machine's PostgreSQL 15 server. */
export function machineServer(): ServerBinaries {
  return serverIn(MACHINE_BIN_DIR);
}

/** The machine's PostgreSQL 15 client tools (pg_dump, pg_restore, psql). */
export async function machineClientTools(): Promise<ClientTools> {
  const tools = await findClientTools(15, { logger: new MemoryLogger() });
  if (!tools) throw new Error('PostgreSQL 15 client tools are missing');
  return tools;
}
