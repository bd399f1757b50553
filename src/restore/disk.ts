import { statfs } from 'node:fs/promises';
import type { Manifest } from '../catalog/manifest.js';
import { dumpObject, restoredTableBytes } from '../catalog/manifest.js';
import { ConfigurationError } from '../core/errors.js';
import { formatBytes } from '../core/streams.js';

/** What a verification or a drill writes in its work folder, at its peak. */
export interface WorkDiskNeed {
  /** The stored object, downloaded before it is decoded (the drill); 0 when it streams. */
  object: number;
  /** The restored database, when the scratch server's data directory is in the work folder. */
  database: number;
}

/**
 * The disk a run needs in its work folder, from the manifest: the downloaded object (the drill
 * keeps it until it is decoded) and a scratch server's restored database (the source's tables
 * with their indexes). The decoded archive comes on top; its size is not recorded, so it is
 * left out and the figure is a floor.
 */
export function workDiskNeed(
  manifest: Manifest,
  o: { downloads: boolean; scratch: boolean },
): WorkDiskNeed {
  return {
    object: o.downloads ? dumpObject(manifest).bytes : 0,
    database: o.scratch ? restoredTableBytes(manifest) : 0,
  };
}

/**
 * Fails before anything is downloaded when the work folder cannot hold what the run writes
 * there, with how much it needs, how much is free, and where it looked; otherwise one line.
 */
export async function requireWorkDisk(
  need: WorkDiskNeed,
  dir: string,
  freeBytes: (dir: string) => Promise<number> = diskFree,
): Promise<string> {
  const total = need.object + need.database;
  const free = await freeBytes(dir);
  const parts = [
    ...(need.object ? [`the object ${formatBytes(need.object)}`] : []),
    ...(need.database ? [`the restored database about ${formatBytes(need.database)}`] : []),
  ];
  const what = `${parts.join(' and ') || 'nothing measurable'}, plus the decoded archive`;
  if (total > free) {
    throw new ConfigurationError(
      `Not enough disk in the work folder ${dir}: the run needs at least ${formatBytes(total)} ` +
        `(${what}), and ${formatBytes(free)} is free. Nothing was downloaded. Give a work-dir ` +
        'on a larger disk (on GitHub-hosted runners, `df -h` shows whether /mnt is one), or ' +
        'target-url for a server with its own disk.',
    );
  }
  return `${formatBytes(free)} free in ${dir}; needs at least ${formatBytes(total)} (${what})`;
}

/** Free bytes for an unprivileged user on the filesystem holding `dir`. */
export async function diskFree(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}
