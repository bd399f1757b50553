/**
 * The prune core against real stores (Swift's S3 API and a local folder), with a fixed clock
 * where ages matter, and Storage wrappers for the faults a real store cannot be made to show:
 * a delete that fails part way, and Object Lock (Swift has none).
 */
import { manifestKey, verificationsPrefix } from '../../src/catalog/keys.js';
import type { RetentionPolicy } from '../../src/catalog/retention.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger, type Clock } from '../../src/core/logger.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { DeleteOptions, DeleteResult, Storage } from '../../src/storage/storage.js';
import {
  pruneFailure,
  runPrune,
  type PruneOptions,
  type PruneReport,
} from '../../src/prune/prune.js';
import { planDocument } from '../../src/prune/plan.js';
import { pruneSummary } from '../../src/prune/summary.js';
import { createBucket, makeStore, s3Settings, uniqueName } from '../support/env.js';
import {
  DAY,
  HOUR,
  allKeys,
  manifestsPointingAtNothing,
  writeIncomplete,
  writeSynthetic,
  writeSynthetics,
  writeVerification,
  type SyntheticBackup,
} from './synthetic.js';

const CLASSIC: RetentionPolicy = {
  timezone: 'UTC',
  keepDaily: 30,
  keepWeekly: 12,
  keepMonthly: 12,
  keepYearly: 7,
  keepKind: { 'pre-migration': 90 * 86400 },
};

function fixedClock(at: Date): Clock {
  return { now: () => at };
}

function options(overrides: Partial<PruneOptions>): PruneOptions {
  return {
    names: ['shop'],
    policy: { timezone: 'UTC', keepLast: 1 },
    deleteIncompleteAfterSeconds: 24 * 3600,
    dryRun: false,
    bypassGovernanceRetention: false,
    ...overrides,
  };
}

/** A store that does what `inner` does, except for deletes, which `onDelete` handles. */
function withDelete(
  inner: Storage,
  onDelete: (keys: string[], options: DeleteOptions) => Promise<DeleteResult>,
): Storage {
  const storage: Storage = {
    description: inner.description,
    location: (key) => inner.location(key),
    putStream: (key, body, opts) => inner.putStream(key, body, opts),
    upload: (key, opts) => inner.upload(key, opts),
    putBytes: (key, data, opts) => inner.putBytes(key, data, opts),
    getStream: (key) => inner.getStream(key),
    getBytes: (key) => inner.getBytes(key),
    head: (key) => inner.head(key),
    list: (prefix) => inner.list(prefix),
    delete: (keys, opts) => onDelete(keys, opts ?? {}),
  };
  const versioning = inner.versioning?.bind(inner);
  if (versioning) storage.versioning = () => versioning();
  return storage;
}

function byId(report: PruneReport, name: string, id: string) {
  const entry = report.names.find((n) => n.name === name)?.backups.find((b) => b.id === id);
  if (!entry) throw new Error(`${name}/${id} is not in the report`);
  return entry;
}

describe.each(['s3', 'local'] as const)('prune core against %s storage', (kind) => {
  let storage: Storage;
  let logger: MemoryLogger;
  let now: Date;

  beforeEach(async () => {
    storage = (await makeStore(kind)).storage;
    logger = new MemoryLogger();
    now = new Date();
  });

  const deps = (store: Storage = storage, at: Date = now) => ({
    storage: store,
    logger,
    clock: fixedClock(at),
  });

  it("orders by the manifests' finishedAt, never by ids or object dates", async () => {
    // The id says 2019, the manifest says an hour ago: it is the newest backup.
    const newest = await writeSynthetic(storage, {
      name: 'shop',
      finishedAt: new Date(now.getTime() - HOUR),
      idTime: new Date('2019-03-01T00:00:00Z'),
    });
    // The id says now, the manifest says ten days ago; written last, so its objects are newest.
    const older = await writeSynthetic(storage, {
      name: 'shop',
      finishedAt: new Date(now.getTime() - 10 * DAY),
      idTime: now,
    });
    const report = await runPrune(options({}), deps());
    expect(pruneFailure(report)).toBeUndefined();
    expect(byId(report, 'shop', newest.id).reasons).toEqual(['newest complete backup', 'last 1']);
    expect(byId(report, 'shop', older.id).outcome).toBe('deleted');
    expect(report.names[0].backups.map((b) => b.id)).toEqual([newest.id, older.id]);
    expect(await allKeys(storage)).toEqual([...newest.keys].sort());
  });

  it('never deletes pinned backups, the newest one, or the newest whose last verification passed', async () => {
    const at = (days: number) => new Date(now.getTime() - days * DAY);
    const [verified, flaky, pinned, unpinned, plain, latest] = await writeSynthetics(storage, [
      { name: 'shop', finishedAt: at(300) },
      { name: 'shop', finishedAt: at(200) },
      { name: 'shop', finishedAt: at(100), keepUntil: new Date(now.getTime() + 30 * DAY) },
      { name: 'shop', finishedAt: at(150), keepUntil: at(1) },
      { name: 'shop', finishedAt: at(50) },
      { name: 'shop', finishedAt: at(0.1) },
    ]);
    await writeVerification(storage, 'shop', verified.id, 'passed', at(299));
    // Passed once, failed since: the last record decides, so it is not "verified".
    await writeVerification(storage, 'shop', flaky.id, 'passed', at(199));
    const flakyFailed = await writeVerification(storage, 'shop', flaky.id, 'failed', at(10));
    // A failed newest backup is still the newest backup.
    await writeVerification(storage, 'shop', latest.id, 'failed', at(0.05));

    const report = await runPrune(options({}), deps());
    expect(pruneFailure(report)).toBeUndefined();
    expect(byId(report, 'shop', latest.id).reasons).toEqual(['newest complete backup', 'last 1']);
    expect(byId(report, 'shop', verified.id).reasons).toEqual(['newest verified backup']);
    expect(byId(report, 'shop', verified.id).lastVerification).toBe('passed');
    expect(byId(report, 'shop', pinned.id).reasons[0]).toMatch(/^pinned until \d{4}-\d\d-\d\d/);
    for (const gone of [flaky, unpinned, plain]) {
      expect(byId(report, 'shop', gone.id).outcome).toBe('deleted');
    }
    expect(report.kept).toBe(3);
    expect(report.deleted).toBe(3);

    const keys = await allKeys(storage);
    for (const b of [verified, pinned, latest]) for (const k of b.keys) expect(keys).toContain(k);
    for (const b of [flaky, unpinned, plain]) {
      for (const k of b.keys) expect(keys).not.toContain(k);
    }
    // The deleted backup's verification records went with it; the kept ones' stayed.
    expect(keys).not.toContain(flakyFailed);
    expect(await allKeys(storage, verificationsPrefix('shop', flaky.id))).toEqual([]);
    expect(await allKeys(storage, verificationsPrefix('shop', verified.id))).toHaveLength(1);
    expect(await allKeys(storage, verificationsPrefix('shop', latest.id))).toHaveLength(1);
    expect(report.freedBytes).toBeGreaterThan(0);
  });

  it('deletes nothing in any name when one name would lose more than max-delete', async () => {
    const specs = (name: string, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        name,
        finishedAt: new Date(now.getTime() - (i + 1) * DAY),
      }));
    await writeSynthetics(storage, [...specs('ok', 3), ...specs('bad', 10)]);
    await writeIncomplete(storage, 'ok', new Date(now.getTime() - 5 * DAY));
    const before = await allKeys(storage);
    const later = new Date(now.getTime() + 2 * DAY);

    const report = await runPrune(
      options({
        names: ['ok', 'bad'],
        policy: { timezone: 'UTC', keepLast: 2 },
        maxDelete: { fraction: 0.5 },
      }),
      deps(storage, later),
    );
    expect(report.refused).toEqual([
      'bad: would delete 8 of 10 backups (80%), more than max-delete 50%; raise max-delete to proceed',
    ]);
    const failure = pruneFailure(report);
    expect(failure).toBeInstanceOf(ConfigurationError);
    expect(failure?.message).toContain('nothing was deleted in any name');
    expect(failure?.message).toContain('bad: would delete 8 of 10');
    // "ok" alone would be fine (1 of 3), and its incomplete upload is old: still nothing goes.
    const ok = report.names.find((n) => n.name === 'ok');
    expect(ok?.refused).toBeUndefined();
    expect(ok?.backups.filter((b) => b.outcome === 'not-deleted')).toHaveLength(1);
    expect(ok?.incomplete[0]).toMatchObject({ decision: 'delete', outcome: 'not-deleted' });
    expect(report.deleted).toBe(0);
    expect(report.kept).toBe(13);
    expect(report.freedBytes).toBe(0);
    expect(await allKeys(storage)).toEqual(before);
    expect(pruneSummary(report)).toContain('## Prune refused: nothing was deleted');
  });

  it('refuses by a number of backups as well as by a share', async () => {
    await writeSynthetics(storage, [
      { name: 'shop', finishedAt: new Date(now.getTime() - 2 * DAY) },
      { name: 'shop', finishedAt: new Date(now.getTime() - DAY) },
    ]);
    const before = await allKeys(storage);
    const report = await runPrune(options({ maxDelete: { count: 0 } }), deps());
    expect(report.refused).toEqual([
      'shop: would delete 1 of 2 backups, more than max-delete 0; raise max-delete to proceed',
    ]);
    expect(report.names[0].backups.map((b) => b.outcome)).toEqual(['kept', 'not-deleted']);
    expect(await allKeys(storage)).toEqual(before);
  });

  it('dry run deletes nothing and reports what a real run would', async () => {
    const made = await writeSynthetics(
      storage,
      Array.from({ length: 6 }, (_, i) => ({
        name: 'shop',
        finishedAt: new Date(now.getTime() - i * 3 * DAY - HOUR),
      })),
    );
    await writeIncomplete(storage, 'shop', new Date(now.getTime() - 9 * DAY));
    const before = await allKeys(storage);
    const later = new Date(now.getTime() + 2 * DAY);
    const report = await runPrune(options({ dryRun: true }), deps(storage, later));
    expect(pruneFailure(report)).toBeUndefined();
    expect(report.deleted).toBe(5);
    expect(report.kept).toBe(1);
    expect(report.freedBytes).toBeGreaterThan(0);
    expect(byId(report, 'shop', made[1].id).outcome).toBe('would-delete');
    expect(report.names[0].incomplete[0].outcome).toBe('would-delete');
    expect(await allKeys(storage)).toEqual(before);
    const summary = pruneSummary(report);
    expect(summary.split('\n')[0]).toMatch(/^## Prune dry run: nothing was deleted/);
    expect(summary).toContain('#### Would delete');
  });

  it('removes old incomplete uploads and never touches young ones, judged by the objects dates', async () => {
    const complete = await writeSynthetic(storage, {
      name: 'shop',
      finishedAt: new Date(now.getTime() - DAY),
    });
    // The ids claim the opposite ages: only the objects' dates count.
    const old = await writeIncomplete(storage, 'shop', new Date(now.getTime() + HOUR));
    await new Promise((r) => setTimeout(r, 1500));
    const young = await writeIncomplete(storage, 'shop', new Date(now.getTime() - 30 * DAY));
    // The times the store lists, which are what prune sees.
    const listed = new Map<string, Date>();
    for await (const o of storage.list('shop/')) listed.set(o.key, o.lastModified);
    const oldAt = listed.get(old.key);
    const youngAt = listed.get(young.key);
    if (!oldAt || !youngAt) throw new Error('incomplete uploads missing');
    expect(youngAt.getTime()).toBeGreaterThan(oldAt.getTime());
    // Now is 9.5 s after the young upload: the old one is at least 10.5 s old.
    const at = new Date(youngAt.getTime() + 9500);

    const report = await runPrune(options({ deleteIncompleteAfterSeconds: 10 }), deps(storage, at));
    expect(pruneFailure(report)).toBeUndefined();
    const incomplete = report.names[0].incomplete;
    expect(incomplete.find((u) => u.id === old.id)).toMatchObject({
      decision: 'delete',
      outcome: 'deleted',
    });
    expect(incomplete.find((u) => u.id === young.id)).toMatchObject({
      decision: 'leave',
      outcome: 'left',
    });
    expect(incomplete.find((u) => u.id === young.id)?.why).toContain(
      'an upload may be in progress',
    );
    expect(await allKeys(storage)).toEqual([...complete.keys, young.key].sort());
    expect(report.freedBytes).toBe(2048);
    const summary = pruneSummary(report);
    expect(summary).toContain('Incomplete uploads');
    expect(summary).toMatch(/1 incomplete upload\(s\) younger than 10s were left alone/);

    // With "never", not even the old one would go.
    const never = await runPrune(
      options({ deleteIncompleteAfterSeconds: undefined }),
      deps(storage, new Date(at.getTime() + 365 * DAY)),
    );
    expect(never.names[0].incomplete[0]).toMatchObject({ decision: 'leave', outcome: 'left' });
    expect(await allKeys(storage)).toContain(young.key);
  });

  describe('an interrupted prune', () => {
    let kept: SyntheticBackup;
    let doomed: SyntheticBackup[];

    beforeEach(async () => {
      const made = await writeSynthetics(
        storage,
        Array.from({ length: 4 }, (_, i) => ({
          name: 'shop',
          finishedAt: new Date(now.getTime() - (i * 2 + 1) * DAY),
        })),
      );
      kept = made[0];
      doomed = made.slice(1);
      for (const b of doomed) await writeVerification(storage, 'shop', b.id, 'failed', now);
    });

    it('keeps every backup whole when the manifest delete fails', async () => {
      const before = await allKeys(storage);
      const calls: string[][] = [];
      const failing = withDelete(storage, async (keys) => {
        calls.push(keys);
        if (keys.some((k) => k.endsWith('/manifest.json'))) throw new Error('connection reset');
        return storage.delete(keys);
      });
      const report = await runPrune(options({}), deps(failing));
      expect(report.errors).toHaveLength(1);
      expect(report.errors[0]).toContain('connection reset');
      expect(report.errors[0]).toContain('Their data was not touched');
      expect(pruneFailure(report)?.message).toContain('connection reset');
      expect(report.deleted).toBe(0);
      // The manifests were the first thing asked for; the data was never asked for.
      expect(calls).toEqual([doomed.map((b) => manifestKey('shop', b.id))]);
      expect(await allKeys(storage)).toEqual(before);
      expect(await manifestsPointingAtNothing(storage)).toEqual([]);
      expect(pruneSummary(report)).toContain('Deletes failed');
    });

    it('leaves data without a manifest when it stops after the manifests, and a later run cleans it', async () => {
      let call = 0;
      const failing = withDelete(storage, async (keys, opts) => {
        call += 1;
        if (call === 2) throw new Error('socket hang up');
        return storage.delete(keys, opts);
      });
      const report = await runPrune(options({}), deps(failing));
      expect(report.errors[0]).toContain('socket hang up');
      expect(report.errors[0]).toContain('incomplete uploads');

      // What is left: every manifest still there points at all its objects; the doomed
      // backups' data is now data without a manifest, and their records are orphaned.
      const keys = await allKeys(storage);
      expect(await manifestsPointingAtNothing(storage)).toEqual([]);
      for (const b of doomed) {
        expect(keys).not.toContain(manifestKey('shop', b.id));
        expect(keys).toContain(b.keys[0]);
      }
      for (const k of kept.keys) expect(keys).toContain(k);

      // Young leftovers are left alone (they could be uploads in progress)...
      const soon = await runPrune(options({}), deps());
      expect(soon.names[0].incomplete.map((u) => u.outcome)).toEqual(['left', 'left', 'left']);
      expect(soon.names[0].incomplete.map((u) => u.records)).toEqual([1, 1, 1]);
      // ...and removed once older than delete-incomplete-after.
      const later = await runPrune(options({}), deps(storage, new Date(now.getTime() + 2 * DAY)));
      expect(pruneFailure(later)).toBeUndefined();
      expect(later.names[0].incomplete.map((u) => u.outcome)).toEqual([
        'deleted',
        'deleted',
        'deleted',
      ]);
      expect(await allKeys(storage)).toEqual([...kept.keys].sort());
    });
  });

  it('removes verification records of backups that no longer exist, after the grace period', async () => {
    const backup = await writeSynthetic(storage, { name: 'shop', finishedAt: now });
    const orphan = await writeVerification(
      storage,
      'shop',
      '20250101T000000Z-abcdef',
      'passed',
      now,
    );
    const fresh = await runPrune(options({}), deps());
    expect(fresh.names[0].orphanedRecords).toMatchObject([
      { backupId: '20250101T000000Z-abcdef', records: 1, decision: 'leave', outcome: 'left' },
    ]);
    expect(await allKeys(storage)).toContain(orphan);
    const later = await runPrune(options({}), deps(storage, new Date(now.getTime() + 2 * DAY)));
    expect(later.names[0].orphanedRecords[0]).toMatchObject({
      decision: 'delete',
      outcome: 'deleted',
    });
    expect(await allKeys(storage)).toEqual([...backup.keys].sort());
    expect(pruneSummary(later)).toContain('Verification records of backups that no longer exist');
  });

  it('reports objects that Object Lock keeps and carries on', async () => {
    const made = await writeSynthetics(
      storage,
      Array.from({ length: 4 }, (_, i) => ({
        name: 'shop',
        finishedAt: new Date(now.getTime() - (i * 2 + 1) * DAY),
      })),
    );
    const [latest, manifestLocked, dumpLocked, free] = made;
    const lockedKeys = new Map([
      [
        manifestKey('shop', manifestLocked.id),
        'ObjectLocked: retention until 2027-01-01 (COMPLIANCE)',
      ],
      [dumpLocked.keys[0], 'AccessDenied: object is under legal hold'],
    ]);
    const seen: DeleteOptions[] = [];
    const lockable = withDelete(storage, async (keys, opts) => {
      seen.push(opts);
      const allowed = keys.filter((k) => !lockedKeys.has(k));
      const result = await storage.delete(allowed, opts);
      return {
        deleted: result.deleted,
        locked: keys
          .filter((k) => lockedKeys.has(k))
          .map((key) => ({ key, reason: lockedKeys.get(key) ?? '' })),
      };
    });
    const report = await runPrune(options({ bypassGovernanceRetention: true }), deps(lockable));
    expect(pruneFailure(report)).toBeUndefined();
    expect(seen.length).toBeGreaterThan(0);
    for (const o of seen) expect(o.bypassGovernanceRetention).toBe(true);

    // The locked manifest keeps its whole backup.
    const whole = byId(report, 'shop', manifestLocked.id);
    expect(whole.outcome).toBe('kept-locked');
    expect(whole.locked?.[0].reason).toContain('COMPLIANCE');
    // The other backup is gone from the catalog; its locked dump stays until the hold ends.
    const partial = byId(report, 'shop', dumpLocked.id);
    expect(partial.outcome).toBe('deleted');
    expect(partial.locked).toEqual([
      { key: dumpLocked.keys[0], reason: 'AccessDenied: object is under legal hold' },
    ]);
    expect(byId(report, 'shop', free.id).outcome).toBe('deleted');
    expect(report.locked).toBe(2);
    expect(report.deleted).toBe(2);
    expect(report.kept).toBe(2);

    const keys = await allKeys(storage);
    for (const k of [...latest.keys, ...manifestLocked.keys, dumpLocked.keys[0]])
      expect(keys).toContain(k);
    for (const k of [...free.keys, dumpLocked.keys[1]]) expect(keys).not.toContain(k);
    expect(await manifestsPointingAtNothing(storage)).toEqual([]);
    const summary = pruneSummary(report);
    expect(summary).toContain('kept by Object Lock');
    expect(summary).toContain('legal hold');
  });

  it('passes all the keys of a run to the store at once: one call for manifests, one for the rest', async () => {
    const at = (i: number) => new Date(now.getTime() - (i + 1) * DAY);
    await writeSynthetics(storage, [
      ...Array.from({ length: 30 }, (_, i) => ({ name: 'a', finishedAt: at(i) })),
      ...Array.from({ length: 30 }, (_, i) => ({ name: 'b', finishedAt: at(i) })),
    ]);
    await writeIncomplete(storage, 'b', at(100));
    const calls: number[] = [];
    const counting = withDelete(storage, async (keys, opts) => {
      calls.push(keys.length);
      return storage.delete(keys, opts);
    });
    const report = await runPrune(
      options({ names: ['a', 'b'] }),
      deps(counting, new Date(now.getTime() + 2 * DAY)),
    );
    expect(pruneFailure(report)).toBeUndefined();
    expect(report.deleted).toBe(58);
    expect(calls).toEqual([58, 59]);
    expect(await allKeys(storage)).toHaveLength(4);
  });

  it('leaves the files of names it was not asked to prune', async () => {
    const other = await writeSynthetics(
      storage,
      Array.from({ length: 5 }, (_, i) => ({
        name: 'other',
        finishedAt: new Date(now.getTime() - (i + 1) * 40 * DAY),
      })),
    );
    await writeIncomplete(storage, 'other', now);
    await writeSynthetics(
      storage,
      Array.from({ length: 5 }, (_, i) => ({
        name: 'shop',
        finishedAt: new Date(now.getTime() - (i + 1) * 40 * DAY),
      })),
    );
    const otherBefore = await allKeys(storage, 'other/');
    const report = await runPrune(options({}), deps(storage, new Date(now.getTime() + 2 * DAY)));
    expect(report.names.map((n) => n.name)).toEqual(['shop']);
    expect(report.deleted).toBe(4);
    expect(await allKeys(storage, 'other/')).toEqual(otherBefore);
    expect(otherBefore).toHaveLength(other.length * 2 + 1);

    const all = await runPrune(
      options({ names: '*' }),
      deps(storage, new Date(now.getTime() + 2 * DAY)),
    );
    expect(all.names.map((n) => n.name)).toEqual(['other', 'shop']);
    expect(all.names[0].deleted).toBe(4);
    expect(all.names[1].deleted).toBe(0);
  });

  it('keeps the classic schedule and writes every decision into the plan', async () => {
    const specs = Array.from({ length: 60 }, (_, i) => ({
      name: 'shop',
      finishedAt: new Date(now.getTime() - i * 7 * DAY - 2 * HOUR),
      kind: i % 10 === 3 ? ('pre-migration' as const) : ('scheduled' as const),
    }));
    await writeSynthetics(storage, specs);
    const report = await runPrune(options({ policy: CLASSIC, maxDelete: { fraction: 1 } }), deps());
    expect(pruneFailure(report)).toBeUndefined();
    const doc = JSON.parse(JSON.stringify(planDocument(report))) as {
      schemaVersion: number;
      policy: { text: string };
      names: { backups: { explanation: string; decision: string }[] }[];
    };
    expect(doc.schemaVersion).toBe(1);
    expect(doc.policy.text).toBe(
      'keep-daily 30, keep-weekly 12, keep-monthly 12, keep-yearly 7, keep-kind pre-migration=90d',
    );
    expect(doc.names[0].backups).toHaveLength(60);
    expect(doc.names[0].backups[0].explanation).toMatch(
      /^kept: newest complete backup, daily \d{4}-\d\d-\d\d, weekly \d{4}-W\d\d, monthly \d{4}-\d\d, yearly \d{4}$/,
    );
    for (const b of doc.names[0].backups) {
      expect(b.explanation.startsWith(b.decision === 'keep' ? 'kept: ' : 'delete: ')).toBe(true);
    }
    // A pre-migration backup within 90 days is kept for its kind.
    const premigration = report.names[0].backups.find(
      (b) => b.kind === 'pre-migration' && Date.parse(b.finishedAt) > now.getTime() - 90 * DAY,
    );
    expect(premigration?.reasons.some((r) => r.startsWith('kind pre-migration until'))).toBe(true);
    const keys = await allKeys(storage);
    for (const b of report.names[0].backups) {
      expect(keys.includes(manifestKey('shop', b.id))).toBe(b.decision === 'keep');
    }
    const summary = pruneSummary(report, '/tmp/plan.json');
    expect(summary).toContain('| Backup | Finished | Kind | Size | Why kept |');
    expect(summary).toContain('#### Deleted');
    expect(summary).toContain('`/tmp/plan.json`');

    // A second run deletes nothing.
    const again = await runPrune(options({ policy: CLASSIC, maxDelete: { fraction: 1 } }), deps());
    expect(again.deleted).toBe(0);
    expect(again.kept).toBe(report.kept);
    expect(await allKeys(storage)).toEqual(keys);
  });

  it('says when deletes only create delete markers (versioned bucket)', async () => {
    let store = storage;
    if (kind === 's3') {
      const bucket = uniqueName('versioned');
      await createBucket(bucket, true);
      store = new S3Storage(bucket, 'backups', s3Settings(), logger);
    }
    const made = await writeSynthetics(store, [
      { name: 'shop', finishedAt: new Date(now.getTime() - 2 * DAY) },
      { name: 'shop', finishedAt: new Date(now.getTime() - DAY) },
    ]);
    const plain = await runPrune(options({ dryRun: true }), deps());
    expect(plain.versioning).toBe(kind === 's3' ? 'Off' : undefined);
    expect(pruneSummary(plain)).not.toContain('Versioning');

    const report = await runPrune(options({}), deps(store));
    expect(report.deleted).toBe(1);
    expect(await allKeys(store)).toEqual([...made[1].keys].sort());
    const summary = pruneSummary(report);
    if (kind === 's3') {
      expect(report.versioning).toBe('Enabled');
      expect(summary).toContain('Versioning is Enabled on this bucket');
      expect(summary).toContain('NoncurrentVersionExpiration');
    } else {
      expect(report.versioning).toBeUndefined();
      expect(summary).not.toContain('Versioning');
    }
  });

  it('deletes nothing, unfinished uploads included, while a manifest cannot be read', async () => {
    const at = (days: number) => new Date(now.getTime() - days * DAY);
    const [oldest] = await writeSynthetics(storage, [
      { name: 'shop', finishedAt: at(30) },
      { name: 'shop', finishedAt: at(20) },
      { name: 'shop', finishedAt: at(1) },
    ]);
    await writeIncomplete(storage, 'shop', at(5));
    // Cut short: without its manifest the folder would look like an unfinished upload.
    await storage.putBytes(manifestKey('shop', oldest.id), '{"schemaVersion": 1, "id": ');
    const before = await allKeys(storage);

    await expect(runPrune(options({}), deps())).rejects.toThrow(
      `Nothing was pruned: The manifest ${storage.location(manifestKey('shop', oldest.id))} is not valid JSON`,
    );
    expect(await allKeys(storage)).toEqual(before);
  });

  it('rejects a name that is not a catalog name before touching anything', async () => {
    await expect(runPrune(options({ names: ['../etc'] }), deps())).rejects.toThrow(
      /"\.\.\/etc" is not a catalog name/,
    );
  });
});
