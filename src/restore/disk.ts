import { lstat, readdir, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Manifest } from '../catalog/manifest.js';
import { dumpObject, restoredTableBytes } from '../catalog/manifest.js';
import { ConfigurationError } from '../core/errors.js';
import { formatBytes } from '../core/streams.js';

/**
 * How a restore gets the archive to pg_restore:
 * - `disk`: the decoded archive is written to the work folder, and `pg_restore -j` reads it;
 * - `stream`: the object streams from storage through the integrity check, age and
 *   decompression into `pg_restore` reading its input, in one session, with no archive on disk
 *   (a directory-format archive: its per-table files, kept as pg_dump compressed them, with no
 *   downloaded object beside them).
 */
export type RestorePlanName = 'disk' | 'stream';

/** The `restore-plan` input: a plan, or `auto` to choose from the work folder's free space. */
export type RestorePlanChoice = 'auto' | RestorePlanName;
export const RESTORE_PLAN_CHOICES: readonly RestorePlanChoice[] = ['auto', 'disk', 'stream'];

/** What a run writes in its work folder at its peak, in parts, from the manifest. */
export interface WorkDiskNeed {
  /** The stored object, downloaded before it is decoded (the drill); 0 when it streams. */
  object: number;
  /** The decoded archive (for a directory-format archive: its files as pg_dump wrote them). */
  archive: number;
  /** Whether `archive` is an estimate (a manifest without `archiveBytes`). */
  archiveEstimated: boolean;
  /**
   * A scratch server in the work folder: the restored tables with their indexes, the write-ahead
   * log it keeps while restoring (at most WAL_ALLOWANCE) and an empty cluster's files.
   */
  database: number;
  format: Manifest['format'];
}

/** The plan a run follows, and why. */
export interface RestorePlan {
  name: RestorePlanName;
  /** Why this plan, one sentence for the report. */
  why: string;
  /** Bytes the plan needs in the work folder at its peak, as estimated. */
  need: number;
  /** Free bytes in the work folder before anything was written. */
  free: number;
  dir: string;
}

/** What a run reports of its plan: which, why, and the disk it used at its peak. */
export interface RestorePlanReport {
  name: RestorePlanName;
  why: string;
  /** The most disk the run used in the work folder, sampled while it ran. */
  peakDiskBytes: number;
  /** The restored database's size (pg_database_size); undefined when nothing was restored. */
  restoredBytes?: number;
}

/** `plan stream (why); peak disk used in the work folder 1.2 GiB, the restored database 1.1 GiB`. */
export function describePlanReport(p: RestorePlanReport): string {
  return (
    `plan ${p.name} (${p.why}); peak disk used in the work folder ${formatBytes(p.peakDiskBytes)}` +
    (p.restoredBytes === undefined ? '' : `, the restored database ${formatBytes(p.restoredBytes)}`)
  );
}

/** An empty cluster's files (catalog, first WAL segment), as initdb writes them. */
const EMPTY_CLUSTER = 48 * 1024 * 1024;
/**
 * The write-ahead log a scratch server keeps at most while restoring: a checkpoint every 64 MB
 * (RESTORE_SERVER_SETTINGS), as much again while one completes, with room to spare.
 */
const WAL_ALLOWANCE = 256 * 1024 * 1024;

/**
 * The disk a run needs in its work folder, from the manifest. The archive's size is the one the
 * backup recorded (`archiveBytes`); else the object's when pg_dump compressed inside it, and for
 * an object compressed whole (zstd, gzip) by a backup that did not record it, the tables' size.
 */
export function workDiskNeed(
  manifest: Manifest,
  o: { downloads: boolean; scratch: boolean },
): WorkDiskNeed {
  const object = dumpObject(manifest).bytes;
  const tables = restoredTableBytes(manifest);
  const recorded = manifest.archiveBytes;
  const wrapped = ['zstd', 'gzip'].includes(manifest.compression.method);
  return {
    object: o.downloads ? object : 0,
    archive: recorded ?? (wrapped ? Math.max(object, tables) : object),
    archiveEstimated: recorded === undefined && wrapped,
    database: o.scratch ? tables + Math.min(tables, WAL_ALLOWANCE) + EMPTY_CLUSTER : 0,
    format: manifest.format,
  };
}

/**
 * Each plan's peak. Disk: the archive beside the downloaded object while it is decoded, then
 * beside the restored database. Stream: the restored database alone (a custom-format archive's
 * table of contents is read first, a few KiB to MiB), or the directory-format files beside it.
 */
export function planNeeds(need: WorkDiskNeed): Record<RestorePlanName, number> {
  return {
    disk: need.archive + Math.max(need.object, need.database),
    stream: need.database + (need.format === 'directory' ? need.archive : 0),
  };
}

/**
 * Chooses the plan from the work folder's free space, before anything is downloaded: `disk`
 * when it fits (`pg_restore -j`), else `stream` when the restored database fits, else a
 * ConfigurationError naming what each plan needs, what is free and where. A plan asked for is
 * checked the same way. A real restore (`replace`) reads the archive from disk: its
 * all-or-nothing replacement restores a file in one transaction.
 */
export function choosePlan(o: {
  need: WorkDiskNeed;
  choice: RestorePlanChoice;
  free: number;
  dir: string;
  replace?: boolean;
  /** The run can stream (false: verify, which restores from disk only). Default true. */
  streams?: boolean;
}): RestorePlan {
  const needs = planNeeds(o.need);
  const plan = (name: RestorePlanName, why: string): RestorePlan => {
    if (needs[name] > o.free) throw notEnoughDisk(o);
    return { name, why, need: needs[name], free: o.free, dir: o.dir };
  };
  const room = `${formatBytes(o.free)} free in ${o.dir}`;
  if (o.replace) {
    return plan(
      'disk',
      'a real restore reads the archive from disk: the replacement restores it in one transaction, all or nothing' +
        (o.choice === 'stream' ? ' (restore-plan stream applies to verify and the drill)' : ''),
    );
  }
  if (o.choice !== 'auto') {
    return plan(
      o.choice,
      `restore-plan ${o.choice}; it needs about ${describe(o.need, o.choice)}, ${room}`,
    );
  }
  if (needs.disk <= o.free || o.streams === false) {
    return plan('disk', `it fits: about ${describe(o.need, 'disk')}, ${room}`);
  }
  return plan(
    'stream',
    `the archive on disk does not fit (about ${describe(o.need, 'disk')}, ${room}); streamed, it needs about ${describe(o.need, 'stream')}`,
  );
}

/** Measures the work folder's free space and chooses the plan (see choosePlan). */
export async function chooseRestorePlan(
  o: Omit<Parameters<typeof choosePlan>[0], 'free'>,
  freeBytes: (dir: string) => Promise<number> = diskFree,
): Promise<RestorePlan> {
  return choosePlan({ ...o, free: await freeBytes(o.dir) });
}

/** `1.2 GiB (the object …, the decoded archive …, the restored database …)`. */
function describe(need: WorkDiskNeed, name: RestorePlanName): string {
  const parts = [
    ...(name === 'disk' && need.object ? [`the object ${formatBytes(need.object)}`] : []),
    ...(name === 'disk' || need.format === 'directory'
      ? [
          `the decoded archive ${need.archiveEstimated ? 'about ' : ''}${formatBytes(need.archive)}` +
            (need.archiveEstimated ? ', estimated from the tables' : ''),
        ]
      : []),
    ...(need.database
      ? [`the restored database with its write-ahead log about ${formatBytes(need.database)}`]
      : []),
  ];
  return `${formatBytes(planNeeds(need)[name])} (${parts.join('; ') || 'nothing measurable'})`;
}

function notEnoughDisk(o: {
  need: WorkDiskNeed;
  free: number;
  dir: string;
  replace?: boolean;
  choice: RestorePlanChoice;
  streams?: boolean;
}): ConfigurationError {
  const asked = o.replace || o.choice === 'auto' ? 'disk' : o.choice;
  const needs =
    o.choice === 'auto' && !o.replace && o.streams !== false
      ? `the archive on disk needs ${describe(o.need, 'disk')}, and streamed it needs ${describe(o.need, 'stream')}`
      : `the ${asked === 'disk' ? 'archive on disk' : 'streamed restore'} needs ${describe(o.need, asked)}`;
  return new ConfigurationError(
    `Not enough disk in the work folder ${o.dir}: ${needs}; ${formatBytes(o.free)} is free. ` +
      'Nothing was downloaded. Give a work-dir on a larger disk (on GitHub-hosted runners, ' +
      '`df -h` shows whether /mnt is one), or target-url for a server with its own disk.',
  );
}

/** Free bytes for an unprivileged user on the filesystem holding `dir`. */
export async function diskFree(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Bytes allocated on disk to `dir` and everything under it; what vanishes while it is read
 * (a scratch server's files come and go) is skipped. Hand-written: a walk of lstat blocks is all
 * it takes, and `du` is not on every runner image the same way.
 */
export async function folderBytes(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let total = await lstat(dir).then(
    (s) => s.blocks * 512,
    () => 0,
  );
  for (const entry of entries) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await folderBytes(child);
    else {
      total += await lstat(child).then(
        (s) => s.blocks * 512,
        () => 0,
      );
    }
  }
  return total;
}

/**
 * The most disk a run used in its work folder: the folder's allocated size, sampled while the
 * run writes, against its size before. Only what is written under the folder counts, not other
 * writers on the same filesystem.
 */
export class PeakDisk {
  private highest: number;
  private readonly timer: NodeJS.Timeout;
  private sampling: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    private readonly before: number,
    intervalMs: number,
    private readonly usedBytes: (dir: string) => Promise<number>,
  ) {
    this.highest = before;
    this.timer = setInterval(() => void this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Measures the folder now and samples it every `intervalMs` until `stop`. */
  static async start(
    dir: string,
    intervalMs = 1000,
    usedBytes: (dir: string) => Promise<number> = folderBytes,
  ): Promise<PeakDisk> {
    return new PeakDisk(dir, await usedBytes(dir), intervalMs, usedBytes);
  }

  private sample(): Promise<void> {
    this.sampling = this.sampling
      .then(() => this.usedBytes(this.dir))
      .then(
        (used) => {
          this.highest = Math.max(this.highest, used);
        },
        () => undefined,
      );
    return this.sampling;
  }

  /** Bytes used at the peak so far; sampled once more first. */
  async peak(): Promise<number> {
    await this.sample();
    return Math.max(0, this.highest - this.before);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
