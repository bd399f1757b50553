/**
 * The catalog lookups against both stores: the one a backup makes before it dumps (its
 * predecessor, for the size change), and the listing with a damaged manifest in it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ManifestError,
  assertReadable,
  completeBackups,
  lastStoredBackup,
  listCatalog,
  selectBackup,
} from '../../src/catalog/catalog.js';
import { backupPrefix, manifestKey, newBackupId } from '../../src/catalog/keys.js';
import type { Storage } from '../../src/storage/storage.js';
import { makeStore, type TestStore } from '../support/env.js';
import { DAY, writeSynthetic } from '../prune/synthetic.js';

/** The store, recording the keys read whole (manifests are). */
function recordingReads(storage: Storage): { storage: Storage; reads: string[] } {
  const reads: string[] = [];
  const recorded = new Proxy(storage, {
    get(target, property) {
      if (property === 'getBytes') {
        return (key: string) => {
          reads.push(key);
          return target.getBytes(key);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { storage: recorded, reads };
}

describe.each(['s3', 'local'] as const)('lastStoredBackup against %s storage', (kind) => {
  let store: TestStore;

  beforeAll(async () => {
    store = await makeStore(kind);
  });

  it('finds the backup stored last by reading its manifest alone', async () => {
    const now = Date.now();
    for (let day = 10; day >= 1; day--) {
      await writeSynthetic(store.storage, { name: 'db', finishedAt: new Date(now - day * DAY) });
    }
    // Stored a second later whatever the store's clock resolution: the backup that started
    // first (the oldest id) and finished last.
    await sleep(1100);
    const longest = await writeSynthetic(store.storage, {
      name: 'db',
      finishedAt: new Date(now),
      idTime: new Date(now - 20 * DAY),
    });
    // A newer folder without a manifest: an upload in progress or one that failed.
    const unfinished = newBackupId(new Date(now + 60_000), () => 'ffffff');
    await store.storage.putBytes(`${backupPrefix('db', unfinished)}dump.pgc`, 'partial');

    const { storage, reads } = recordingReads(store.storage);
    const found = await lastStoredBackup(storage, 'db');
    expect(found?.id).toBe(longest.id);
    expect(found?.finishedAt).toBe(new Date(now).toISOString());
    expect(reads).toEqual([manifestKey('db', longest.id)]);
  });

  it('has nothing for a name whose only folder has no manifest, and reads nothing', async () => {
    const id = newBackupId(new Date(), () => 'abcdef');
    await store.storage.putBytes(`${backupPrefix('lonely', id)}dump.pgc`, 'partial');
    const { storage, reads } = recordingReads(store.storage);
    expect(await lastStoredBackup(storage, 'lonely')).toBeUndefined();
    expect(await lastStoredBackup(storage, 'never-backed-up')).toBeUndefined();
    expect(reads).toEqual([]);
  });
});

describe.each(['s3', 'local'] as const)(
  'a damaged manifest in the catalog (%s storage)',
  (kind) => {
    it('marks its backup damaged, not incomplete, and the others stay readable', async () => {
      const { storage } = await makeStore(kind);
      const now = Date.now();
      const older = await writeSynthetic(storage, { name: 'db', finishedAt: new Date(now - DAY) });
      const newer = await writeSynthetic(storage, { name: 'db', finishedAt: new Date(now) });
      const key = manifestKey('db', newer.id);
      await storage.putBytes(key, JSON.stringify({ schemaVersion: 1, id: newer.id }));

      const entries = await listCatalog(storage, 'db');
      expect(entries.map((e) => [e.id, Boolean(e.manifest), e.damaged])).toEqual([
        [older.id, true, undefined],
        [
          newer.id,
          false,
          `The manifest ${storage.location(key)} is damaged: /name is missing (and 15 more problem(s)).`,
        ],
      ]);
      expect(completeBackups(entries).map((m) => m.id)).toEqual([older.id]);
      expect((await selectBackup(storage, 'db')).id).toBe(older.id);
      expect(() => assertReadable(entries)).toThrow(ManifestError);
      expect(() => assertReadable(entries)).toThrow(
        `The manifest ${storage.location(key)} is damaged`,
      );
      expect(() => assertReadable(entries.slice(0, 1))).not.toThrow();
      await expect(selectBackup(storage, 'db', newer.id)).rejects.toThrow(ManifestError);

      // With no readable backup left, the damage is the answer, not "no complete backup".
      await storage.putBytes(manifestKey('db', older.id), 'not json');
      await expect(selectBackup(storage, 'db')).rejects.toThrow(
        `The manifest ${storage.location(manifestKey('db', older.id))} is not valid JSON`,
      );
    });
  },
);
