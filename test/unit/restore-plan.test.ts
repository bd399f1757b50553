import type { Manifest } from '../../src/catalog/manifest.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  PeakDisk,
  choosePlan,
  folderBytes,
  planNeeds,
  workDiskNeed,
} from '../../src/restore/disk.js';

// The restore plan chosen from the work folder's free space, from what the manifest says.

const MiB = 1024 * 1024;

function manifest(o: {
  object: number;
  tables: number;
  method?: Manifest['compression']['method'];
  format?: Manifest['format'];
}): Manifest {
  return {
    format: o.format ?? 'custom',
    compression: { method: o.method ?? 'zstd' },
    objects: [{ key: 'db/backups/1/dump.pgc.zst', role: 'dump', bytes: o.object, sha256: 'x' }],
    tables: [{ schema: 'public', name: 't', rows: 1, bytes: o.tables }],
  } as Manifest;
}

const zstd = manifest({ object: 100 * MiB, tables: 1000 * MiB });
const drill = workDiskNeed(zstd, { downloads: true, scratch: true });

describe('what each plan needs', () => {
  it('counts the archive (the tables stand for it when compressed whole), the WAL and a cluster', () => {
    expect(drill).toEqual({
      object: 100 * MiB,
      archive: 1000 * MiB,
      archiveEstimated: true,
      database: 1304 * MiB,
      format: 'custom',
    });
    expect(planNeeds(drill)).toEqual({ disk: 2304 * MiB, stream: 1304 * MiB });
  });

  it('takes the archive size the backup recorded, no estimate', () => {
    const recorded = workDiskNeed(
      { ...manifest({ object: 100 * MiB, tables: 1000 * MiB }), archiveBytes: 700 * MiB },
      { downloads: true, scratch: false },
    );
    expect(recorded).toMatchObject({ archive: 700 * MiB, archiveEstimated: false });
  });

  it('takes the object as the archive when pg_dump compressed inside it', () => {
    const inside = workDiskNeed(
      manifest({ object: 300 * MiB, tables: 1000 * MiB, method: 'pg_dump-zstd' }),
      {
        downloads: false,
        scratch: false,
      },
    );
    expect(inside).toMatchObject({
      object: 0,
      archive: 300 * MiB,
      archiveEstimated: false,
      database: 0,
    });
  });

  it('keeps a directory-format archive beside the database when it streams', () => {
    const dir = workDiskNeed(
      manifest({ object: 300 * MiB, tables: 1000 * MiB, method: 'none', format: 'directory' }),
      {
        downloads: true,
        scratch: true,
      },
    );
    expect(planNeeds(dir).stream).toBe(300 * MiB + 1304 * MiB);
  });

  it('allows 256 MiB of WAL at most', () => {
    const big = workDiskNeed(manifest({ object: MiB, tables: 10_000 * MiB }), {
      downloads: false,
      scratch: true,
    });
    expect(big.database).toBe(10_000 * MiB + 256 * MiB + 48 * MiB);
  });
});

describe('choosePlan', () => {
  const choose = (free: number, extra: Partial<Parameters<typeof choosePlan>[0]> = {}) =>
    choosePlan({ need: drill, choice: 'auto', free, dir: '/work', ...extra });

  it('disk when it fits', () => {
    const plan = choose(4000 * MiB);
    expect(plan).toMatchObject({ name: 'disk', need: 2304 * MiB, free: 4000 * MiB, dir: '/work' });
    expect(plan.why).toBe(
      'it fits: about 2.3 GiB (the object 100 MiB; the decoded archive about 1000 MiB, estimated from the tables; ' +
        'the restored database with its write-ahead log about 1.3 GiB), 3.9 GiB free in /work',
    );
  });

  it('stream when only the restored database fits, saying why', () => {
    const plan = choose(2000 * MiB);
    expect(plan.name).toBe('stream');
    expect(plan.why).toMatch(
      /^the archive on disk does not fit \(about .* GiB .*\), .* GiB free in \/work\); streamed, it needs about 1.3 GiB \(the restored database with its write-ahead log about 1.3 GiB\)$/,
    );
  });

  it('neither: a ConfigurationError with both needs, the free space and the folder', () => {
    expect(() => choose(1000 * MiB)).toThrow(ConfigurationError);
    expect(() => choose(1000 * MiB)).toThrow(
      /^Not enough disk in the work folder \/work: the archive on disk needs 2\.3 GiB \(.*\), and streamed it needs 1\.3 GiB \(.*\); 1000 MiB is free\. Nothing was downloaded\./,
    );
  });

  it('a plan asked for is checked alone', () => {
    expect(choose(4000 * MiB, { choice: 'stream' }).name).toBe('stream');
    expect(() => choose(2000 * MiB, { choice: 'disk' })).toThrow(
      /^Not enough disk in the work folder \/work: the archive on disk needs 2\.3 GiB/,
    );
  });

  it('a real restore reads from disk, and says so when stream was asked for', () => {
    const plan = choose(4000 * MiB, { replace: true, choice: 'stream' });
    expect(plan.name).toBe('disk');
    expect(plan.why).toMatch(
      /^a real restore reads the archive from disk: .*all or nothing \(restore-plan stream applies to verify and the drill\)$/,
    );
  });

  it('a run that cannot stream needs the disk plan', () => {
    expect(() => choose(2000 * MiB, { streams: false })).toThrow(
      /^Not enough disk in the work folder \/work: the archive on disk needs 2\.3 GiB \(.*\); 2\.0 GiB is free\./,
    );
  });
});

describe('PeakDisk', () => {
  it('records the most a run added to its folder, not what was there before or is left', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'peak-'));
    try {
      await writeFile(path.join(dir, 'before'), Buffer.alloc(2 << 20, 1));
      const peak = await PeakDisk.start(dir, 20);
      const nested = path.join(dir, 'run', 'data');
      await mkdir(nested, { recursive: true });
      await writeFile(path.join(nested, 'table'), Buffer.alloc(3 << 20, 1));
      await new Promise((resolve) => setTimeout(resolve, 100));
      await rm(path.join(dir, 'run'), { recursive: true });
      const most = await peak.peak();
      peak.stop();
      expect(most).toBeGreaterThanOrEqual(3 << 20);
      expect(most).toBeLessThan(4 << 20);
      expect(await folderBytes(dir)).toBeLessThan(3 << 20);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
