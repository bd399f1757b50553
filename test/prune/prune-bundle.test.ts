/**
 * The prune bundle end to end, under Node 24 as the runner runs it, against the S3 server
 * (Swift) and a local folder: two real backups made by the backup bundle, hundreds of
 * synthetic ones over 400 days in several names (one larger than a listing page), incomplete
 * uploads of both ages, and verification records.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listCatalog } from '../../src/catalog/catalog.js';
import {
  planRetention,
  type CatalogBackup,
  type RetentionPolicy,
} from '../../src/catalog/retention.js';
import { generateIdentity } from '../../src/crypto/age.js';
import type { Storage } from '../../src/storage/storage.js';
import { runBundle, type BundleRun } from '../support/bundle.js';
import { backupWithBundle, makeStore, type TestStore } from '../support/env.js';
import { newDatabase, withClient } from '../support/sample.js';
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
  type SyntheticSpec,
} from './synthetic.js';

const CLASSIC_INPUTS = {
  'keep-daily': '30',
  'keep-weekly': '12',
  'keep-monthly': '12',
  'keep-yearly': '7',
  'keep-kind': 'pre-migration=90d',
};
const CLASSIC: RetentionPolicy = {
  timezone: 'UTC',
  keepDaily: 30,
  keepWeekly: 12,
  keepMonthly: 12,
  keepYearly: 7,
  keepKind: { 'pre-migration': 90 * 86400 },
};

interface PlanFile {
  now: string;
  dryRun: boolean;
  kept: number;
  deleted: number;
  freedBytes: number;
  refused: string[];
  names: {
    name: string;
    backups: {
      id: string;
      decision: 'keep' | 'delete';
      outcome: string;
      reasons: string[];
      explanation: string;
    }[];
    incomplete: { id: string; decision: string; outcome: string }[];
    kept: number;
    deleted: number;
  }[];
}

function readPlan(run: BundleRun): PlanFile {
  return JSON.parse(readFileSync(run.outputs['plan-path'], 'utf8')) as PlanFile;
}

function planOf(plan: PlanFile, name: string): PlanFile['names'][number] {
  const entry = plan.names.find((n) => n.name === name);
  if (!entry) throw new Error(`${name} is not in the plan`);
  return entry;
}

/** One day's start (00:00 UTC) `days` before `at`, plus `hours`. */
function dayAt(at: number, days: number, hours: number): Date {
  const day = new Date(at - days * DAY);
  day.setUTCHours(0, 0, 0, 0);
  return new Date(day.getTime() + hours * HOUR);
}

describe.each(['s3', 'local'] as const)('prune bundle against %s storage', (kind) => {
  let store: TestStore;
  let storage: Storage;
  let runnerTemp: string;
  let realIds: string[];
  let verified: SyntheticBackup;
  let flaky: SyntheticBackup;
  let oldIncomplete: { id: string; key: string };
  let youngIncomplete: { id: string; key: string };
  let oldWrittenAt: number;
  const key = generateIdentity();

  const prune = (inputs: Record<string, string>): Promise<BundleRun> =>
    runBundle(
      'prune',
      { storage: store.location, ...store.inputs, ...inputs },
      { ...store.env, RUNNER_TEMP: runnerTemp },
    );

  const expectNoSecrets = (run: BundleRun): void => {
    const secret = store.env.AWS_SECRET_ACCESS_KEY;
    if (secret) expect(run.everything).not.toContain(secret);
  };

  beforeAll(async () => {
    store = await makeStore(kind);
    storage = store.storage;
    runnerTemp = mkdtempSync(path.join(os.tmpdir(), 'prune-runner-'));
    // An upload that never finished; it is old by the time the real run looks at it.
    oldIncomplete = await writeIncomplete(storage, 'shop', new Date(Date.now() - 3 * DAY));
    oldWrittenAt = Date.now();

    const sourceUrl = await newDatabase('prunesrc');
    await withClient(sourceUrl, (c) =>
      c.query(
        'CREATE TABLE items (id int PRIMARY KEY, label text); ' +
          "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g",
      ),
    );
    realIds = [];
    for (let i = 0; i < 2; i++) {
      const run = await backupWithBundle(store, sourceUrl, 'shop', key.recipient);
      expect(run.code).toBe(0);
      realIds.push(run.outputs['backup-id']);
    }

    const now = Date.now();
    const shop: SyntheticSpec[] = Array.from({ length: 40 }, (_, i) => ({
      name: 'shop',
      finishedAt: dayAt(now, i * 10 + 1, 5),
      kind: i % 7 === 3 ? 'pre-migration' : 'scheduled',
    }));
    const other: SyntheticSpec[] = [30, 60, 90, 120, 150].map((days) => ({
      name: 'other',
      finishedAt: dayAt(now, days, 4),
    }));
    const big: SyntheticSpec[] = Array.from({ length: 600 }, (_, i) => ({
      name: 'big',
      finishedAt: new Date(now - i * 16 * HOUR - HOUR),
    }));
    await writeSynthetics(storage, [...shop, ...other, ...big]);
    // Two backups on one day each: the earlier of a day is newest in no period, so only a
    // passing last verification can keep it.
    verified = await writeSynthetic(storage, { name: 'shop', finishedAt: dayAt(now, 205, 1) });
    await writeSynthetic(storage, { name: 'shop', finishedAt: dayAt(now, 205, 3) });
    flaky = await writeSynthetic(storage, { name: 'shop', finishedAt: dayAt(now, 155, 1) });
    await writeSynthetic(storage, { name: 'shop', finishedAt: dayAt(now, 155, 3) });
    await writeVerification(storage, 'shop', verified.id, 'passed', dayAt(now, 204, 0));
    await writeVerification(storage, 'shop', flaky.id, 'passed', dayAt(now, 154, 0));
    await writeVerification(storage, 'shop', flaky.id, 'failed', dayAt(now, 20, 0));
  }, 300_000);

  it('refuses when a name would lose more than max-delete, and deletes nothing anywhere', async () => {
    const before = await allKeys(storage);
    const run = await prune({ name: '*', ...CLASSIC_INPUTS });
    expect(run.code).not.toBe(0);
    // Workflow commands encode % as %25; the runner decodes it.
    expect(run.stdout.replace(/%25/g, '%')).toMatch(
      /::error::Prune refused, nothing was deleted in any name: .*big: would delete \d+ of 600 backups \(\d+%\), more than max-delete 50%/,
    );
    expect(run.outputs.deleted).toBe('0');
    expect(run.summary.split('\n')[0]).toBe('## Prune refused: nothing was deleted (3 names)');
    expect(await allKeys(storage)).toEqual(before);
    const plan = readPlan(run);
    expect(plan.refused.some((r) => r.startsWith('big: '))).toBe(true);
    expectNoSecrets(run);
  });

  it('dry run lists every backup of every name, through listing pages, and deletes nothing', async () => {
    const before = await allKeys(storage);
    expect(before.filter((k) => k.startsWith('big/')).length).toBeGreaterThan(1000);
    const run = await prune({
      name: '*',
      ...CLASSIC_INPUTS,
      'max-delete': '100%',
      'dry-run': 'true',
    });
    expect(run.stderr + run.stdout).not.toContain('::error');
    expect(run.code).toBe(0);
    expect(run.summary.split('\n')[0]).toMatch(
      /^## Prune dry run: nothing was deleted \(3 names; would delete \d+ backup/,
    );
    expect(run.summary).toContain('#### Would delete');
    const plan = readPlan(run);
    expect(plan.dryRun).toBe(true);
    expect(plan.names.map((n) => n.name)).toEqual(['big', 'other', 'shop']);
    expect(planOf(plan, 'big').backups).toHaveLength(600);
    expect(planOf(plan, 'shop').backups).toHaveLength(46);
    expect(Number(run.outputs.deleted)).toBeGreaterThan(500);
    expect(Number(run.outputs.deleted)).toBe(plan.deleted);
    expect(Number(run.outputs['freed-bytes'])).toBeGreaterThan(0);
    expect(await allKeys(storage)).toEqual(before);
    expectNoSecrets(run);
  });

  it('prunes one name by the classic schedule, protecting the newest and the verified backups', async () => {
    // The old incomplete upload must be older than the grace period, and a new one younger.
    const grace = 15;
    const wait = oldWrittenAt + (grace + 5) * 1000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    youngIncomplete = await writeIncomplete(storage, 'shop', new Date(Date.now() - 10 * DAY));
    const othersBefore = [
      ...(await allKeys(storage, 'big/')),
      ...(await allKeys(storage, 'other/')),
    ];
    const entries = await listCatalog(storage, 'shop');

    const run = await prune({
      name: 'shop',
      ...CLASSIC_INPUTS,
      'max-delete': '100%',
      'delete-incomplete-after': `${grace}s`,
    });
    expect(run.stderr + run.stdout).not.toContain('::error');
    expect(run.code).toBe(0);
    const plan = readPlan(run);
    const shop = planOf(plan, 'shop');
    expect(plan.names).toHaveLength(1);

    // The same decisions as the planner makes from the manifests and the last verifications.
    const backups: CatalogBackup[] = entries.flatMap((e) =>
      e.manifest
        ? [
            {
              id: e.id,
              name: 'shop',
              finishedAt: new Date(e.manifest.finishedAt),
              kind: e.manifest.kind,
              bytes: 0,
              lastVerification:
                e.id === verified.id ? 'passed' : e.id === flaky.id ? 'failed' : undefined,
            },
          ]
        : [],
    );
    const expected = planRetention(backups, CLASSIC, new Date(plan.now));
    expect(shop.backups.map((b) => [b.id, b.decision, b.reasons])).toEqual(
      expected.entries.map((e) => [e.backup.id, e.decision, e.reasons]),
    );
    expect(shop.deleted).toBeGreaterThan(5);
    expect(run.outputs.deleted).toBe(String(shop.deleted));
    expect(run.outputs.kept).toBe(String(shop.kept));
    expect(Number(run.outputs['freed-bytes'])).toBeGreaterThan(0);

    const byId = new Map(shop.backups.map((b) => [b.id, b]));
    expect(byId.get(realIds[1])?.reasons[0]).toBe('newest complete backup');
    // The earlier real backup is the newest of no period when both finished the same UTC day.
    const day = (id: string) => entries.find((e) => e.id === id)?.manifest?.finishedAt.slice(0, 10);
    expect(byId.get(realIds[0])?.reasons).toEqual(
      day(realIds[0]) === day(realIds[1])
        ? ['no rule keeps it']
        : expect.arrayContaining([expect.stringMatching(/^daily /)]),
    );
    expect(byId.get(verified.id)?.reasons).toEqual(['newest verified backup']);
    expect(byId.get(flaky.id)?.outcome).toBe('deleted');
    expect(
      shop.backups.find((b) => b.reasons.some((r) => r.startsWith('kind pre-migration until'))),
    ).toBeDefined();

    // Storage matches the plan; other names are untouched; nothing points at missing data.
    const keys = await allKeys(storage);
    for (const b of shop.backups) {
      const present = keys.some((k) => k.startsWith(`shop/backups/${b.id}/`));
      expect([b.id, present]).toEqual([b.id, b.decision === 'keep']);
    }
    expect(keys.filter((k) => k.startsWith('shop/verifications/'))).toEqual([
      expect.stringMatching(new RegExp(`^shop/verifications/${verified.id}/`)),
    ]);
    expect(keys).not.toContain(oldIncomplete.key);
    expect(keys).toContain(youngIncomplete.key);
    expect(shop.incomplete).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: oldIncomplete.id, outcome: 'deleted' }),
        expect.objectContaining({ id: youngIncomplete.id, outcome: 'left' }),
      ]),
    );
    expect([...(await allKeys(storage, 'big/')), ...(await allKeys(storage, 'other/'))]).toEqual(
      othersBefore,
    );
    expect(await manifestsPointingAtNothing(storage)).toEqual([]);

    // The summary: counts, the kept backups with their reasons, the deleted, the leftovers.
    expect(run.summary.split('\n')[0]).toMatch(
      /^## Prune: kept \d+, deleted \d+ backup\(s\), freed /,
    );
    expect(run.summary).toMatch(/### `shop`: kept \d+, deleted \d+, freed /);
    expect(run.summary).toContain('| Backup | Finished | Kind | Size | Why kept |');
    expect(run.summary).toContain('newest verified backup');
    expect(run.summary).toContain('#### Deleted');
    expect(run.summary).toContain('#### Incomplete uploads (data without a manifest)');
    expect(run.summary).toContain('an upload may be in progress');
    expectNoSecrets(run);
  });

  it('prunes every name with *, more than a page of keys at once, and a second run deletes nothing', async () => {
    const shopBefore = await allKeys(storage, 'shop/');
    const run = await prune({ name: '*', ...CLASSIC_INPUTS, 'max-delete': '100%' });
    expect(run.stderr + run.stdout).not.toContain('::error');
    expect(run.code).toBe(0);
    const plan = readPlan(run);
    const big = planOf(plan, 'big');
    expect(big.backups).toHaveLength(600);
    expect(big.deleted).toBeGreaterThan(500);
    expect(planOf(plan, 'shop').deleted).toBe(0);
    const bigKeys = await allKeys(storage, 'big/');
    expect(bigKeys).toHaveLength(2 * big.kept);
    for (const b of big.backups.filter((e) => e.decision === 'keep')) {
      expect(bigKeys).toContain(`big/backups/${b.id}/manifest.json`);
    }
    // The young incomplete upload is still within the default 24h.
    expect(await allKeys(storage, 'shop/')).toEqual(shopBefore);

    const everything = await allKeys(storage);
    const again = await prune({ name: '*', ...CLASSIC_INPUTS, 'max-delete': '100%' });
    expect(again.code).toBe(0);
    expect(again.outputs.deleted).toBe('0');
    expect(again.outputs['freed-bytes']).toBe('0');
    expect(again.outputs.kept).toBe(run.outputs.kept);
    expect(await allKeys(storage)).toEqual(everything);
    expectNoSecrets(again);
  });

  it('fails with a message naming the input for a bad policy', async () => {
    const run = await prune({ name: 'shop', 'keep-daily': 'thirty' });
    expect(run.code).not.toBe(0);
    expect(run.stdout).toContain("::error::Input 'keep-daily' must be a whole number of backups");
    const none = await prune({ name: 'shop' });
    expect(none.stdout).toContain('::error::Set at least one of keep-last');
  });
});

describe('prune without a name', () => {
  it('prunes the only name in the store, and does not guess among several', async () => {
    const store = await makeStore('local');
    const now = Date.now();
    await writeSynthetics(
      store.storage,
      [0, 1, 2, 3].map((d) => ({ name: 'solo', finishedAt: new Date(now - d * DAY - HOUR) })),
    );
    const run = await runBundle('prune', { storage: store.location, 'keep-last': '2' });
    expect(run.code).toBe(0);
    expect(run.outputs.kept).toBe('2');
    expect(run.outputs.deleted).toBe('2');
    await writeSynthetics(store.storage, [{ name: 'other', finishedAt: new Date(now - HOUR) }]);
    const several = await runBundle('prune', { storage: store.location, 'keep-last': '2' });
    expect(several.code).toBe(1);
    expect(several.stdout).toMatch(/several databases \(other, solo\): set the name input/);
  });
});
