import type pg from 'pg';
import { restoredTableBytes, type Manifest } from '../catalog/manifest.js';
import { ConfigurationError } from '../core/errors.js';
import { formatBytes } from '../core/streams.js';
import type { ConnectionInfo } from '../postgres/connection.js';
import { diskFree } from './disk.js';

/** The disk a real restore needs on the server, and what is free where it can be seen. */
export interface ServerSpace {
  /** The restored tables with their indexes, as the source held them. */
  needed: number;
  /** Free bytes on the server's data directory, when this machine can see it. */
  free?: number;
  /** The data directory measured. */
  where?: string;
}

/** Room kept above the estimate: indexes are rebuilt, and the server writes WAL meanwhile. */
const MARGIN = 1.1;

/**
 * What a real restore needs on the target server: its new copy is written beside the old one,
 * which is freed only at the commit. The free space is measured when the server runs on this
 * machine and the role may read `data_directory`; a managed server's disk is not visible.
 */
export async function measureServerSpace(
  client: pg.Client,
  connection: ConnectionInfo,
  manifest: Manifest,
  freeBytes: (dir: string) => Promise<number> = diskFree,
): Promise<ServerSpace> {
  const needed = restoredTableBytes(manifest);
  if (!isLocal(connection)) return { needed };
  const dir = await client
    .query<{ dir: string }>("SELECT current_setting('data_directory') AS dir")
    .then((r) => r.rows[0].dir)
    .catch(() => undefined);
  if (!dir) return { needed };
  const free = await freeBytes(dir).catch(() => undefined);
  return free === undefined ? { needed } : { needed, free, where: dir };
}

/** One report line for the space; a ConfigurationError, before anything changes, when it is short. */
export function requireServerSpace(space: ServerSpace, describe: string): string {
  const need = `about ${formatBytes(space.needed * MARGIN)} free on the server until the commit (the old copy is freed only then)`;
  if (space.free === undefined) {
    return `the restore needs ${need}; the server's free space cannot be seen from here: check it (RDS: FreeStorageSpace; Supabase: the disk size in the project's settings)`;
  }
  if (space.free < space.needed * MARGIN) {
    throw new ConfigurationError(
      `Refusing to restore into ${describe}: it needs ${need}, and ${formatBytes(space.free)} is free at ${space.where}. ` +
        'Free or add disk space first. Nothing was changed.',
    );
  }
  return `the restore needs ${need}; ${formatBytes(space.free)} is free at ${space.where}`;
}

function isLocal(connection: ConnectionInfo): boolean {
  const host = connection.host ?? connection.params.host ?? '';
  return host.startsWith('/') || host === 'localhost' || host === '127.0.0.1' || host === '::1';
}
