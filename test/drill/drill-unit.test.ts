import { Readable } from 'node:stream';
import { manifestKey, verificationKey } from '../../src/catalog/keys.js';
import type { Manifest, VerificationRecord } from '../../src/catalog/manifest.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { runDrill, unrestorableReason, type DrillDeps } from '../../src/drill/drill.js';
import { recentDrills } from '../../src/drill/history.js';
import { drillSummary } from '../../src/drill/summary.js';
import { parseRoleList, rolesInLine } from '../../src/restore/roles.js';
import type { PartUpload, Storage, StoredObject } from '../../src/storage/storage.js';

/** A store in memory whose objects carry a storage class, as S3 reports it. */
class FakeStorage implements Storage {
  readonly description = 'fake store';
  readonly objects = new Map<
    string,
    { data: Buffer; storageClass: string; at: Date; restored?: boolean }
  >();
  reads: string[] = [];
  location(key: string): string {
    return `s3://fake/${key}`;
  }
  put(key: string, data: string | Buffer, storageClass = 'STANDARD', restored?: boolean): void {
    this.objects.set(key, { data: Buffer.from(data), storageClass, at: new Date(), restored });
  }
  async putStream(): Promise<{ bytes: number }> {
    throw new Error('not used');
  }
  async upload(): Promise<PartUpload> {
    throw new Error('not used');
  }
  async putBytes(
    key: string,
    data: Buffer | string,
    options?: { ifNoneMatch?: boolean },
  ): Promise<void> {
    if (options?.ifNoneMatch && this.objects.has(key)) throw new Error(`${key} exists`);
    this.put(key, data);
  }
  async getStream(key: string): Promise<Readable> {
    this.reads.push(key);
    const o = this.objects.get(key);
    if (!o) throw new Error(`missing ${key}`);
    return Readable.from([o.data]);
  }
  async getBytes(key: string): Promise<Buffer | undefined> {
    return this.objects.get(key)?.data;
  }
  async head(key: string): Promise<StoredObject | undefined> {
    const o = this.objects.get(key);
    return (
      o && {
        key,
        size: o.data.length,
        lastModified: o.at,
        storageClass: o.storageClass,
        restored: o.restored,
      }
    );
  }
  async *list(prefix: string): AsyncIterable<StoredObject> {
    for (const key of [...this.objects.keys()].sort()) {
      if (key.startsWith(prefix)) yield (await this.head(key))!;
    }
  }
  async delete(): Promise<{ deleted: string[]; locked: { key: string; reason: string }[] }> {
    throw new Error('not used');
  }
}

const ID = '20261120T051500Z-3f9a1c';

function manifest(): Manifest {
  return {
    schemaVersion: 1,
    id: ID,
    name: 'shop',
    kind: 'scheduled',
    labels: {},
    startedAt: '2026-11-20T05:15:00.000Z',
    finishedAt: '2026-11-20T05:16:00.000Z',
    source: { database: 'shop', serverVersion: '16.4', serverVersionNum: 160004 },
    tools: { pgDumpVersion: '16.4' },
    format: 'custom',
    compression: { method: 'zstd', level: 3 },
    encryption: null,
    objects: [
      { key: `shop/backups/${ID}/dump.pgc.zst`, role: 'dump', bytes: 5, sha256: 'ab'.repeat(32) },
    ],
    rowCounts: 'exact',
    tables: [],
    globals: false,
    git: {},
    options: { schemas: [], excludeSchemas: [], excludeTableData: [] },
  };
}

function deps(storage: Storage, logger: MemoryLogger): DrillDeps {
  return {
    storage,
    logger,
    clock: { now: () => new Date('2026-11-21T05:00:00.000Z') },
    env: {},
    zstdPath: '/usr/bin/zstd',
    resolveTools: () => {
      throw new Error('a backup that cannot be read must not get as far as the tools');
    },
    findServer: () => {
      throw new Error('nor start a server');
    },
    workDir: '/nonexistent',
    workspace: '/nonexistent',
  };
}

describe('a backup in an archive storage class', () => {
  it.each(['GLACIER', 'DEEP_ARCHIVE'])(
    'is reported as not restorable without a restore request (%s), before anything is downloaded',
    async (storageClass) => {
      const storage = new FakeStorage();
      const m = manifest();
      storage.put(manifestKey('shop', ID), JSON.stringify(m));
      storage.put(m.objects[0].key, 'bytes', storageClass);
      const logger = new MemoryLogger();
      const result = await runDrill(
        { jobs: 1, checks: [], postgresVersion: 'auto', git: {}, rtoTargetSeconds: 1800 },
        deps(storage, logger),
      );
      expect(result.status).toBe('failed');
      expect(result.error).toContain(`is in the ${storageClass} storage class`);
      expect(result.error).toContain('not restorable without a restore request');
      expect(result.error).toContain(`s3://fake/shop/backups/${ID}/dump.pgc.zst`);
      expect(storage.reads).toEqual([]);
      expect(result.phases.every((p) => p.status === 'skipped')).toBe(true);
      expect(result.rtoSeconds).toBeUndefined();
      expect(result.rpoSeconds).toBe(24 * 3600 - 15 * 60);
      // The failed drill is on record, so the trend shows it.
      const key = result.recordKey!;
      expect(key).toMatch(/^shop\/verifications\/.+\/20261121T050000\.000Z-[0-9a-f]{6}\.json$/);
      const record = JSON.parse(storage.objects.get(key)!.data.toString()) as VerificationRecord;
      expect(record.type).toBe('drill');
      expect(record.status).toBe('failed');
      expect(record.checks.map((c) => c.status)).toContain('failed');
      expect(drillSummary(result)).toContain(storageClass);
    },
  );

  it('is recorded twice when drilled twice within a second', async () => {
    const storage = new FakeStorage();
    const m = manifest();
    storage.put(manifestKey('shop', ID), JSON.stringify(m));
    storage.put(m.objects[0].key, 'bytes', 'GLACIER');
    const options = { jobs: 1, checks: [], postgresVersion: 'auto' as const, git: {} };
    const first = await runDrill(options, deps(storage, new MemoryLogger()));
    const logger = new MemoryLogger();
    const second = await runDrill(options, deps(storage, logger));
    expect(logger.lines.filter((l) => l.startsWith('warning:'))).toEqual([]);
    expect(first.recordKey).toMatch(/\/20261121T050000\.000Z-[0-9a-f]{6}\.json$/);
    expect(second.recordKey).toMatch(/\/20261121T050000\.000Z-[0-9a-f]{6}\.json$/);
    expect(second.recordKey).not.toBe(first.recordKey);
    expect(second.history.map((r) => r.finishedAt)).toEqual(['2026-11-21T05:00:00.000Z']);
  });

  it('is restorable in instant-access classes, and a missing object is named', async () => {
    const storage = new FakeStorage();
    const m = manifest();
    for (const storageClass of ['STANDARD', 'STANDARD_IA', 'GLACIER_IR', 'INTELLIGENT_TIERING']) {
      storage.put(m.objects[0].key, 'bytes', storageClass);
      expect(await unrestorableReason(storage, m)).toBeUndefined();
    }
    storage.objects.delete(m.objects[0].key);
    expect(await unrestorableReason(storage, m)).toContain('that object is missing');
  });

  it('is restorable once a restore request has completed, and says so while one runs', async () => {
    const storage = new FakeStorage();
    const m = manifest();
    storage.put(m.objects[0].key, 'bytes', 'DEEP_ARCHIVE', false);
    const running = await unrestorableReason(storage, m);
    expect(running).toContain('its restore request is still in progress');
    expect(running).toContain('DEEP_ARCHIVE');
    storage.put(m.objects[0].key, 'bytes', 'DEEP_ARCHIVE', true);
    expect(await unrestorableReason(storage, m)).toBeUndefined();
    storage.put(m.objects[0].key, 'bytes', 'GLACIER', true);
    expect(await unrestorableReason(storage, m)).toBeUndefined();
  });
});

describe('roles an archive names', () => {
  it('parses role lists with quoting, leaving out PUBLIC', () => {
    expect(parseRoleList('app, "Odd ""Role""", PUBLIC')).toEqual(['app', 'Odd "Role"']);
  });

  it('finds owners and grantees in pg_restore SQL', () => {
    expect(rolesInLine('ALTER TABLE app.customers OWNER TO app_owner;').owners).toEqual([
      'app_owner',
    ]);
    expect(rolesInLine('GRANT SELECT ON TABLE app.customers TO reader, "Report Team";')).toEqual({
      owners: [],
      grantees: ['reader', 'Report Team'],
    });
    expect(rolesInLine('REVOKE ALL ON SCHEMA public FROM PUBLIC;').grantees).toEqual([]);
    expect(
      rolesInLine(
        'ALTER DEFAULT PRIVILEGES FOR ROLE deployer IN SCHEMA app GRANT SELECT ON TABLES TO reader;',
      ),
    ).toEqual({ owners: ['deployer'], grantees: ['reader'] });
    expect(rolesInLine('SELECT 1;')).toEqual({ owners: [], grantees: [] });
  });
});

describe('the trend of past drills', () => {
  it('reads the newest drill records, skipping verifications, oldest first', async () => {
    const storage = new FakeStorage();
    const at = (day: number): Date => new Date(Date.UTC(2026, 10, day, 4, 0, 0));
    for (let day = 1; day <= 20; day++) {
      const type = day % 7 === 0 ? 'drill' : 'verify';
      const record: Partial<VerificationRecord> = {
        backupId: `202611${String(day).padStart(2, '0')}T020000Z-aaaaaa`,
        name: 'shop',
        type,
        status: 'passed',
        finishedAt: at(day).toISOString(),
      };
      storage.put(verificationKey('shop', record.backupId!, at(day)), JSON.stringify(record));
    }
    const drills = await recentDrills(storage, 'shop', 2);
    expect(drills.map((d) => d.finishedAt)).toEqual([at(7).toISOString(), at(14).toISOString()]);
  });
});
