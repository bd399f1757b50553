import fc from 'fast-check';
import {
  parseMaxDelete,
  parseRetentionPolicy,
  planRetention,
  type CatalogBackup,
  type RetentionPlan,
  type RetentionPolicy,
} from '../../src/catalog/retention.js';
import { BACKUP_KINDS } from '../../src/catalog/manifest.js';
import { compactTime } from '../../src/catalog/keys.js';
import { ConfigurationError } from '../../src/core/errors.js';

const DAY = 86_400_000;
const NOW = new Date('2026-11-21T06:00:00Z');

let serial = 0;
/** A backup of `prod` finished at `at`, with a real-looking unique id. */
function backup(at: string | Date, extra: Partial<CatalogBackup> = {}): CatalogBackup {
  const finishedAt = typeof at === 'string' ? new Date(at) : at;
  serial += 1;
  return {
    id: `${compactTime(finishedAt)}-${serial.toString(16).padStart(6, '0')}`,
    name: 'prod',
    finishedAt,
    kind: 'scheduled',
    bytes: 1000,
    ...extra,
  };
}

/** One backup a day at 02:17 UTC, the newest on `last`, `days` in all. */
function dailyHistory(last: string, days: number): CatalogBackup[] {
  const lastTime = new Date(`${last}T02:17:00Z`).getTime();
  return Array.from({ length: days }, (_, i) => backup(new Date(lastTime - i * DAY)));
}

function utc(policy: Omit<RetentionPolicy, 'timezone'>): RetentionPolicy {
  return { timezone: 'UTC', ...policy };
}

/** ISO times of the kept backups, newest first. */
function keptTimes(plan: RetentionPlan): string[] {
  return plan.entries
    .filter((e) => e.decision === 'keep')
    .map((e) => e.backup.finishedAt.toISOString());
}

function keptDays(plan: RetentionPlan): string[] {
  return keptTimes(plan).map((t) => t.slice(0, 10));
}

function reasonsAt(plan: RetentionPlan, iso: string): string[] | undefined {
  return plan.entries.find((e) => e.backup.finishedAt.toISOString() === iso)?.reasons;
}

describe('planRetention: classic tiers over a 400-day daily history', () => {
  // 2025-10-18 … 2026-11-21, one backup a day at 02:17 UTC; now is 2026-11-21T06:00Z (a Saturday).
  const history = dailyHistory('2026-11-21', 400);
  const policy = utc({ keepDaily: 30, keepWeekly: 12, keepMonthly: 12, keepYearly: 7 });

  // Daily 30: the 30 days 2026-10-23 … 2026-11-21.
  const daily = [
    '2026-11-21', '2026-11-20', '2026-11-19', '2026-11-18', '2026-11-17', '2026-11-16',
    '2026-11-15', '2026-11-14', '2026-11-13', '2026-11-12', '2026-11-11', '2026-11-10',
    '2026-11-09', '2026-11-08', '2026-11-07', '2026-11-06', '2026-11-05', '2026-11-04',
    '2026-11-03', '2026-11-02', '2026-11-01', '2026-10-31', '2026-10-30', '2026-10-29',
    '2026-10-28', '2026-10-27', '2026-10-26', '2026-10-25', '2026-10-24', '2026-10-23',
  ]; // prettier-ignore
  // Weekly 12: Saturday 2026-11-21 for W47, then the Sundays closing W46 … W36. Those older
  // than the daily range: W42 … W36.
  const weeklyOnly = [
    '2026-10-18', '2026-10-11', '2026-10-04', '2026-09-27', '2026-09-20', '2026-09-13',
    '2026-09-06',
  ]; // prettier-ignore
  // Monthly 12: 2026-11-21, then the last day of 2026-10 … 2025-12. Those older than the daily
  // range: 2026-09 … 2025-12. Yearly 7: only 2026 (2026-11-21) and 2025 (2025-12-31) have backups.
  const monthlyOnly = [
    '2026-09-30', '2026-08-31', '2026-07-31', '2026-06-30', '2026-05-31', '2026-04-30',
    '2026-03-31', '2026-02-28', '2026-01-31', '2025-12-31',
  ]; // prettier-ignore
  const expected = [...daily, ...weeklyOnly, ...monthlyOnly].sort().reverse();

  it('keeps exactly the hand-computed 47 days', () => {
    const plan = planRetention(history, policy, NOW);
    expect(expected).toHaveLength(47);
    expect(keptDays(plan)).toEqual(expected);
    expect(plan.keep).toBe(47);
    expect(plan.delete).toBe(353);
    expect(plan.entries).toHaveLength(400);
    expect(plan.refused).toBeUndefined();
  });

  it('gives every rule that keeps a backup as a reason', () => {
    const plan = planRetention(history, policy, NOW);
    expect(reasonsAt(plan, '2026-11-21T02:17:00.000Z')).toEqual([
      'newest complete backup',
      'daily 2026-11-21',
      'weekly 2026-W47',
      'monthly 2026-11',
      'yearly 2026',
    ]);
    expect(reasonsAt(plan, '2026-11-20T02:17:00.000Z')).toEqual(['daily 2026-11-20']);
    expect(reasonsAt(plan, '2026-11-15T02:17:00.000Z')).toEqual([
      'daily 2026-11-15',
      'weekly 2026-W46',
    ]);
    expect(reasonsAt(plan, '2026-10-31T02:17:00.000Z')).toEqual([
      'daily 2026-10-31',
      'monthly 2026-10',
    ]);
    expect(reasonsAt(plan, '2026-09-06T02:17:00.000Z')).toEqual(['weekly 2026-W36']);
    expect(reasonsAt(plan, '2025-12-31T02:17:00.000Z')).toEqual(['monthly 2025-12', 'yearly 2025']);
    expect(reasonsAt(plan, '2026-10-22T02:17:00.000Z')).toEqual(['no rule keeps it']);
    expect(reasonsAt(plan, '2025-10-18T02:17:00.000Z')).toEqual(['no rule keeps it']);
  });

  it('refuses, with the numbers, when more than max-delete would go', () => {
    const byShare = planRetention(history, policy, NOW, { maxDelete: { fraction: 0.5 } });
    expect(byShare.refused).toBe(
      'would delete 353 of 400 backups (88%), more than max-delete 50%; raise max-delete to proceed',
    );
    // The decisions stay as computed, for the report; the caller deletes nothing.
    expect(byShare.delete).toBe(353);
    expect(keptDays(byShare)).toEqual(expected);

    expect(planRetention(history, policy, NOW, { maxDelete: { count: 10 } }).refused).toBe(
      'would delete 353 of 400 backups, more than max-delete 10; raise max-delete to proceed',
    );
    expect(
      planRetention(history, policy, NOW, { maxDelete: { count: 353 } }).refused,
    ).toBeUndefined();
    expect(
      planRetention(history, policy, NOW, { maxDelete: { fraction: 0.9 } }).refused,
    ).toBeUndefined();
    expect(
      planRetention(history, policy, NOW, { maxDelete: { fraction: 0.9, count: 300 } }).refused,
    ).toMatch(/more than max-delete 300;/);
  });

  it('shows a decimal when the rounded share would equal the limit', () => {
    // 200 of 399 is 50.1%: "50%" would read as within a 50% limit.
    const history = dailyHistory('2026-11-21', 399);
    const plan = planRetention(history, utc({ keepLast: 199 }), NOW, {
      maxDelete: { fraction: 0.5 },
    });
    expect(plan.delete).toBe(200);
    expect(plan.refused).toBe(
      'would delete 200 of 399 backups (50.1%), more than max-delete 50%; raise max-delete to proceed',
    );
  });
});

describe('planRetention: single rules', () => {
  it('keep-last keeps the N newest', () => {
    const history = dailyHistory('2026-11-21', 10);
    const plan = planRetention(history, utc({ keepLast: 3 }), NOW);
    expect(keptDays(plan)).toEqual(['2026-11-21', '2026-11-20', '2026-11-19']);
    expect(plan.entries[0].reasons).toEqual(['newest complete backup', 'last 3']);
    expect(plan.entries[2].reasons).toEqual(['last 3']);
    expect(plan.entries[3].decision).toBe('delete');
  });

  it('keep-within keeps every backup finished after now minus the duration', () => {
    // Every 12 hours; 06:00Z is now, so 2026-11-14T06:00Z is exactly 7 days old and goes.
    const history = Array.from({ length: 40 }, (_, i) =>
      backup(new Date(NOW.getTime() - (i * DAY) / 2 - DAY / 2)),
    );
    const plan = planRetention(history, utc({ keepWithinSeconds: 7 * 86400 }), NOW);
    expect(keptTimes(plan)).toEqual([
      '2026-11-20T18:00:00.000Z', '2026-11-20T06:00:00.000Z', '2026-11-19T18:00:00.000Z',
      '2026-11-19T06:00:00.000Z', '2026-11-18T18:00:00.000Z', '2026-11-18T06:00:00.000Z',
      '2026-11-17T18:00:00.000Z', '2026-11-17T06:00:00.000Z', '2026-11-16T18:00:00.000Z',
      '2026-11-16T06:00:00.000Z', '2026-11-15T18:00:00.000Z', '2026-11-15T06:00:00.000Z',
      '2026-11-14T18:00:00.000Z',
    ]); // prettier-ignore
    expect(reasonsAt(plan, '2026-11-14T18:00:00.000Z')).toEqual(['within 7d']);
    expect(reasonsAt(plan, '2026-11-14T06:00:00.000Z')).toEqual(['no rule keeps it']);
    const recent = [backup('2026-11-21T04:45:00Z'), backup('2026-11-21T04:15:00Z'), ...history];
    const short = planRetention(recent, utc({ keepWithinSeconds: 5400 }), NOW);
    expect(short.entries.slice(0, 3).map((e) => e.reasons)).toEqual([
      ['newest complete backup', 'within 1h30m'],
      ['no rule keeps it'],
      ['no rule keeps it'],
    ]);
  });

  it('keep-kind keeps each kind for its own span, or forever', () => {
    const history = [
      backup('2026-11-21T02:17:00Z'),
      backup('2026-10-22T10:00:00Z', { kind: 'pre-migration' }), // 30 days old
      backup('2026-08-23T10:00:00Z', { kind: 'pre-migration' }), // 4 hours short of 90 days: kept
      backup('2026-08-13T10:00:00Z', { kind: 'pre-migration' }), // 100 days old
      backup('2023-05-01T12:00:00Z', { kind: 'manual' }),
      backup('2026-11-01T02:17:00Z'),
      backup('2026-06-01T12:00:00Z', { kind: 'pre-restore' }),
    ];
    const policy = parseRetentionPolicy({ keepKind: 'pre-migration=90d, manual=forever' });
    const plan = planRetention(history, policy, NOW);
    expect(plan.entries.map((e) => [e.backup.finishedAt.toISOString(), e.reasons])).toEqual([
      ['2026-11-21T02:17:00.000Z', ['newest complete backup']],
      ['2026-11-01T02:17:00.000Z', ['no rule keeps it']],
      ['2026-10-22T10:00:00.000Z', ['kind pre-migration until 2027-01-20 10:00 UTC']],
      ['2026-08-23T10:00:00.000Z', ['kind pre-migration until 2026-11-21 10:00 UTC']],
      ['2026-08-13T10:00:00.000Z', ['no rule keeps it']],
      ['2026-06-01T12:00:00.000Z', ['no rule keeps it']],
      ['2023-05-01T12:00:00.000Z', ['kind manual forever']],
    ]);
    expect(plan.keep).toBe(4);
    expect(plan.delete).toBe(3);
  });
});

describe('planRetention: protections', () => {
  it('keeps pinned backups until their pin ends', () => {
    const history = [
      ...dailyHistory('2026-11-21', 5),
      backup('2026-03-01T02:17:00Z', { keepUntil: new Date('2027-01-01T00:00:00Z') }),
      backup('2026-02-01T02:17:00Z', { keepUntil: new Date('2026-12-24T18:30:00Z') }),
      backup('2026-01-15T02:17:00Z', { keepUntil: new Date('2026-11-21T06:01:00Z') }), // 1 min left
      backup('2026-01-01T02:17:00Z', { keepUntil: new Date('2026-11-21T06:00:00Z') }), // ends now
      backup('2025-12-01T02:17:00Z', { keepUntil: new Date('2026-06-01T00:00:00Z') }),
    ];
    const plan = planRetention(history, utc({ keepLast: 2 }), NOW);
    expect(reasonsAt(plan, '2026-03-01T02:17:00.000Z')).toEqual(['pinned until 2027-01-01']);
    expect(reasonsAt(plan, '2026-02-01T02:17:00.000Z')).toEqual([
      'pinned until 2026-12-24 18:30 UTC',
    ]);
    expect(reasonsAt(plan, '2026-01-15T02:17:00.000Z')).toEqual([
      'pinned until 2026-11-21 06:01 UTC',
    ]);
    expect(reasonsAt(plan, '2026-01-01T02:17:00.000Z')).toEqual(['no rule keeps it']);
    expect(reasonsAt(plan, '2025-12-01T02:17:00.000Z')).toEqual(['no rule keeps it']);
    expect(plan.keep).toBe(5);
  });

  it('keeps the newest verified backup even when it is old and no rule keeps it', () => {
    const history = dailyHistory('2026-11-21', 60).map((b, i) => ({
      ...b,
      lastVerification:
        i === 45 || i === 50 ? ('passed' as const) : i < 45 ? ('failed' as const) : undefined,
    }));
    const plan = planRetention(history, utc({ keepDaily: 7 }), NOW);
    // Day 45 before 2026-11-21 is 2026-10-07; day 50 is 2026-10-02 and not protected.
    expect(reasonsAt(plan, '2026-10-07T02:17:00.000Z')).toEqual(['newest verified backup']);
    expect(reasonsAt(plan, '2026-10-02T02:17:00.000Z')).toEqual(['no rule keeps it']);
    expect(plan.keep).toBe(8);
  });

  it('always keeps the newest backup, even after a week without a complete one', () => {
    // The last complete backup is 9 days old: the week since then only had failed runs,
    // which never reach the catalog.
    const history = dailyHistory('2026-11-12', 30);
    const plan = planRetention(history, utc({ keepWithinSeconds: 3 * 86400 }), NOW);
    expect(keptDays(plan)).toEqual(['2026-11-12']);
    expect(plan.entries[0].reasons).toEqual(['newest complete backup']);
    expect(plan.delete).toBe(29);
  });

  it('keeps future-dated backups and leaves them out of the rules', () => {
    const history = [
      backup('2026-11-21T06:05:00Z'), // clock skew: 5 minutes ahead
      ...dailyHistory('2026-11-21', 5),
    ];
    const plan = planRetention(history, utc({ keepLast: 2 }), NOW);
    expect(plan.entries.map((e) => e.reasons)).toEqual([
      ['in the future', 'newest complete backup'],
      ['last 2'],
      ['last 2'],
      ['no rule keeps it'],
      ['no rule keeps it'],
      ['no rule keeps it'],
    ]);
  });
});

describe('planRetention: periods', () => {
  it('does not let missing days shrink what keep-daily keeps', () => {
    // 30 daily backups with 2026-11-10 … 2026-11-16 missing: the 10 newest days that HAVE a
    // backup reach back to 2026-11-05.
    const history = dailyHistory('2026-11-21', 30).filter((b) => {
      const day = b.finishedAt.toISOString().slice(0, 10);
      return day < '2026-11-10' || day > '2026-11-16';
    });
    const plan = planRetention(history, utc({ keepDaily: 10 }), NOW);
    expect(keptDays(plan)).toEqual([
      '2026-11-21', '2026-11-20', '2026-11-19', '2026-11-18', '2026-11-17',
      '2026-11-09', '2026-11-08', '2026-11-07', '2026-11-06', '2026-11-05',
    ]); // prettier-ignore
  });

  it('keeps the newest backup of each period, not the first', () => {
    const history = [
      backup('2026-11-20T01:00:00Z'),
      backup('2026-11-20T23:00:00Z'),
      backup('2026-11-20T12:00:00Z'),
      backup('2026-11-21T03:00:00Z'),
    ];
    const plan = planRetention(history, utc({ keepDaily: 2 }), NOW);
    expect(keptTimes(plan)).toEqual(['2026-11-21T03:00:00.000Z', '2026-11-20T23:00:00.000Z']);
  });

  it('counts days in the policy time zone', () => {
    // 23:30 UTC on 2026-11-20 is 00:30 on 2026-11-21 in Berlin (UTC+1 in November).
    const history = [
      backup('2026-11-20T22:30:00Z'),
      backup('2026-11-20T23:30:00Z'),
      backup('2026-11-21T05:00:00Z'),
    ];
    const inUtc = planRetention(history, utc({ keepDaily: 2 }), NOW);
    expect(keptTimes(inUtc)).toEqual(['2026-11-21T05:00:00.000Z', '2026-11-20T23:30:00.000Z']);
    expect(reasonsAt(inUtc, '2026-11-20T23:30:00.000Z')).toEqual(['daily 2026-11-20']);

    const inBerlin = planRetention(history, { keepDaily: 2, timezone: 'Europe/Berlin' }, NOW);
    expect(keptTimes(inBerlin)).toEqual(['2026-11-21T05:00:00.000Z', '2026-11-20T22:30:00.000Z']);
    expect(reasonsAt(inBerlin, '2026-11-20T22:30:00.000Z')).toEqual(['daily 2026-11-20']);
    expect(reasonsAt(inBerlin, '2026-11-20T23:30:00.000Z')).toEqual(['no rule keeps it']);
  });

  it('counts months and years in the policy time zone', () => {
    // 2026-12-31T23:30Z is already 2027-01-01 in Tokyo (UTC+9), 14:00Z is still 2026-12-31;
    // 2027-01-01T03:00Z is still 2026-12-31 in Los Angeles (UTC-8).
    const history = [backup('2026-12-31T23:30:00Z'), backup('2026-12-31T14:00:00Z')];
    const now = new Date('2027-01-02T00:00:00Z');
    const tokyo = planRetention(history, { keepYearly: 2, timezone: 'Asia/Tokyo' }, now);
    expect(tokyo.entries.map((e) => e.reasons)).toEqual([
      ['newest complete backup', 'yearly 2027'],
      ['yearly 2026'],
    ]);
    expect(
      planRetention(history, utc({ keepYearly: 2 }), now).entries.map((e) => e.reasons),
    ).toEqual([['newest complete backup', 'yearly 2026'], ['no rule keeps it']]);
    const la = planRetention(
      [backup('2027-01-01T03:00:00Z'), backup('2026-12-31T20:00:00Z')],
      { keepMonthly: 2, timezone: 'America/Los_Angeles' },
      now,
    );
    expect(la.entries.map((e) => e.reasons)).toEqual([
      ['newest complete backup', 'monthly 2026-12'],
      ['no rule keeps it'],
    ]);
  });

  it('uses ISO weeks across year boundaries', () => {
    // 2026 starts on a Thursday, so it has 53 weeks: Mon 2026-12-28 … Sun 2027-01-03 is
    // 2026-W53 and 2027-W01 starts on Mon 2027-01-04.
    const turnOf2027 = [
      backup('2026-12-27T12:00:00Z'), // Sunday, 2026-W52
      backup('2026-12-30T12:00:00Z'), // Wednesday, 2026-W53
      backup('2027-01-02T12:00:00Z'), // Saturday, 2026-W53
      backup('2027-01-05T12:00:00Z'), // Tuesday, 2027-W01
    ];
    const plan2027 = planRetention(
      turnOf2027,
      utc({ keepWeekly: 3 }),
      new Date('2027-01-06T00:00Z'),
    );
    expect(
      plan2027.entries.map((e) => [e.backup.finishedAt.toISOString().slice(0, 10), e.reasons]),
    ).toEqual([
      ['2027-01-05', ['newest complete backup', 'weekly 2027-W01']],
      ['2027-01-02', ['weekly 2026-W53']],
      ['2026-12-30', ['no rule keeps it']],
      ['2026-12-27', ['weekly 2026-W52']],
    ]);
    // Mon 2024-12-30 already belongs to 2025-W01; Sun 2024-12-29 closes 2024-W52.
    const turnOf2025 = [
      backup('2024-12-29T12:00:00Z'),
      backup('2024-12-30T12:00:00Z'),
      backup('2025-01-05T12:00:00Z'),
    ];
    const plan2025 = planRetention(
      turnOf2025,
      utc({ keepWeekly: 5, keepYearly: 5 }),
      new Date('2025-01-06T00:00Z'),
    );
    expect(
      plan2025.entries.map((e) => [e.backup.finishedAt.toISOString().slice(0, 10), e.reasons]),
    ).toEqual([
      ['2025-01-05', ['newest complete backup', 'weekly 2025-W01', 'yearly 2025']],
      ['2024-12-30', ['yearly 2024']],
      ['2024-12-29', ['weekly 2024-W52']],
    ]);
  });

  it('counts the repeated hour of a daylight-saving change as one local hour', () => {
    // Berlin turns 03:00 CEST back to 02:00 CET on 2026-10-25: 00:30Z and 01:30Z both read 02:30.
    const history = [
      backup('2026-10-25T00:30:00Z'),
      backup('2026-10-25T01:30:00Z'),
      backup('2026-10-25T02:30:00Z'),
    ];
    const now = new Date('2026-10-25T03:00:00Z');
    const plan = planRetention(history, { keepHourly: 3, timezone: 'Europe/Berlin' }, now);
    expect(plan.entries.map((e) => e.reasons)).toEqual([
      ['newest complete backup', 'hourly 2026-10-25T03'],
      ['hourly 2026-10-25T02'],
      ['no rule keeps it'],
    ]);
  });

  it('breaks ties in finish time by id and ignores the input order', () => {
    const at = new Date('2026-11-20T10:00:00Z');
    const a = { ...backup(at), id: '20261120T100000Z-aaaaaa' };
    const b = { ...backup(at), id: '20261120T100000Z-bbbbbb' };
    const older = backup('2026-11-19T10:00:00Z');
    for (const order of [
      [a, b, older],
      [older, b, a],
      [b, older, a],
    ]) {
      const plan = planRetention(order, utc({ keepDaily: 2 }), NOW);
      expect(plan.entries.map((e) => [e.backup.id, e.decision])).toEqual([
        [b.id, 'keep'],
        [a.id, 'delete'],
        [older.id, 'keep'],
      ]);
    }
  });

  it('never sorts by id: ids that disagree with finish times do not matter', () => {
    const newer = { ...backup('2026-11-21T02:00:00Z'), id: '20200101T000000Z-000001' };
    const older = { ...backup('2026-11-20T02:00:00Z'), id: '20991231T000000Z-ffffff' };
    const plan = planRetention([older, newer], utc({ keepLast: 1 }), NOW);
    expect(plan.entries.map((e) => [e.backup.id, e.decision])).toEqual([
      [newer.id, 'keep'],
      [older.id, 'delete'],
    ]);
  });
});

describe('planRetention: input checks', () => {
  it('plans an empty catalog', () => {
    expect(planRetention([], utc({ keepLast: 1 }), NOW, { maxDelete: { count: 0 } })).toEqual({
      entries: [],
      keep: 0,
      delete: 0,
    });
  });

  it('refuses to mix names', () => {
    expect(() =>
      planRetention(
        [backup('2026-11-20T00:00:00Z'), { ...backup('2026-11-19T00:00:00Z'), name: 'staging' }],
        utc({ keepLast: 1 }),
        NOW,
      ),
    ).toThrow(/several names.*prod.*staging/);
  });

  it('rejects repeated ids, invalid dates, bad policies and bad limits', () => {
    const one = backup('2026-11-20T00:00:00Z');
    expect(() => planRetention([one, { ...one }], utc({ keepLast: 1 }), NOW)).toThrow(/twice/);
    expect(() =>
      planRetention([{ ...one, finishedAt: new Date(NaN) }], utc({ keepLast: 1 }), NOW),
    ).toThrow(/invalid finishedAt/);
    expect(() => planRetention([one], utc({ keepLast: -1 }), NOW)).toThrow(ConfigurationError);
    expect(() => planRetention([one], utc({ keepDaily: 1.5 }), NOW)).toThrow(ConfigurationError);
    expect(() => planRetention([one], { keepLast: 1, timezone: 'Mars/Olympus' }, NOW)).toThrow(
      ConfigurationError,
    );
    expect(() =>
      planRetention([one], utc({ keepLast: 1 }), NOW, { maxDelete: { fraction: 50 } }),
    ).toThrow(ConfigurationError);
  });
});

describe('parseRetentionPolicy', () => {
  it('reads counts, durations, kinds and the time zone', () => {
    expect(
      parseRetentionPolicy({
        keepLast: ' 3 ',
        keepHourly: '0',
        keepDaily: '30',
        keepWeekly: '12',
        keepMonthly: '12',
        keepYearly: '7',
        keepWithin: '1h30m',
        keepKind: 'pre-migration=90d,\n manual = forever\n\n',
        timezone: 'Europe/Berlin',
      }),
    ).toEqual({
      keepLast: 3,
      keepDaily: 30,
      keepWeekly: 12,
      keepMonthly: 12,
      keepYearly: 7,
      keepWithinSeconds: 5400,
      keepKind: { 'pre-migration': 90 * 86400, manual: 'forever' },
      timezone: 'Europe/Berlin',
    });
  });

  it('treats empty inputs as unset and defaults to UTC', () => {
    expect(parseRetentionPolicy({ keepDaily: '7', keepLast: '', timezone: '' })).toEqual({
      keepDaily: 7,
      timezone: 'UTC',
    });
  });

  it('names the kebab-case input in errors', () => {
    expect(() => parseRetentionPolicy({ keepDaily: '-1' })).toThrow(/keep-daily.*"-1"/);
    expect(() => parseRetentionPolicy({ keepWeekly: '1.5' })).toThrow(/keep-weekly.*"1.5"/);
    expect(() => parseRetentionPolicy({ keepYearly: 'seven' })).toThrow(/keep-yearly.*"seven"/);
    expect(() => parseRetentionPolicy({ keepWithin: '7' })).toThrow(/keep-within.*"7"/);
    expect(() => parseRetentionPolicy({ keepLast: '3', timezone: 'Europe/Atlantis' })).toThrow(
      /timezone.*"Europe\/Atlantis"/,
    );
    expect(() => parseRetentionPolicy({ keepKind: 'nightly=30d' })).toThrow(
      /keep-kind.*"nightly".*scheduled, pre-migration, manual, pre-restore/,
    );
    expect(() => parseRetentionPolicy({ keepKind: 'manual' })).toThrow(/keep-kind.*"manual"/);
    expect(() => parseRetentionPolicy({ keepKind: 'manual=30d, manual=forever' })).toThrow(
      /manual more than once/,
    );
    expect(() => parseRetentionPolicy({ keepKind: 'manual=always' })).toThrow(
      /^Input 'keep-kind' gives the kind manual "always", which is neither forever nor a duration/,
    );
  });

  it('requires at least one rule that keeps something', () => {
    const expected =
      'Set at least one of keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, ' +
      'keep-yearly, keep-within, keep-kind to a value above zero';
    expect(() => parseRetentionPolicy({})).toThrow(expected);
    expect(() => parseRetentionPolicy({ keepLast: '0', keepWithin: '0d', keepKind: ' ' })).toThrow(
      expected,
    );
    expect(() => parseRetentionPolicy({ timezone: 'UTC' })).toThrow(ConfigurationError);
  });
});

describe('parseMaxDelete', () => {
  it('reads a percentage or a count', () => {
    expect(parseMaxDelete('50%')).toEqual({ fraction: 0.5 });
    expect(parseMaxDelete(' 12.5 % ')).toEqual({ fraction: 0.125 });
    expect(parseMaxDelete('100%')).toEqual({ fraction: 1 });
    expect(parseMaxDelete('0%')).toEqual({ fraction: 0 });
    expect(parseMaxDelete('10')).toEqual({ count: 10 });
    expect(parseMaxDelete('0')).toEqual({ count: 0 });
  });
  it.each(['', '150%', '-5', '0.5', '%', 'half', '10 backups'])('rejects %j', (text) => {
    expect(() => parseMaxDelete(text)).toThrow(ConfigurationError);
    expect(() => parseMaxDelete(text)).toThrow(`max-delete`);
    expect(() => parseMaxDelete(text)).toThrow(JSON.stringify(text));
  });
});

describe('planRetention: properties', () => {
  const START = Date.parse('2024-01-01T00:00:00Z');
  const SPAN = 3 * 365 * DAY;
  const ZONES = [
    'UTC',
    'Europe/Berlin',
    'America/New_York',
    'Pacific/Auckland',
    'Asia/Kolkata',
    'America/Santiago',
  ];

  // Times collide now and then (a small set of fixed instants) to exercise tie-breaking.
  const timeArb = fc.oneof(
    { weight: 9, arbitrary: fc.integer({ min: 0, max: SPAN }) },
    { weight: 1, arbitrary: fc.constantFrom(0, DAY, SPAN / 2, SPAN - DAY, SPAN) },
  );
  const itemArb = fc.record({
    t: timeArb,
    kind: fc.constantFrom(...BACKUP_KINDS),
    pin: fc.option(fc.integer({ min: 0, max: SPAN + 365 * DAY }), { nil: undefined, freq: 5 }),
    verification: fc.constantFrom(undefined, 'passed' as const, 'failed' as const),
    shuffleKey: fc.integer(),
  });
  const catalogArb = fc
    .tuple(fc.array(itemArb, { maxLength: 300 }), fc.integer({ min: 0, max: 60 * DAY }))
    .map(([items, nowBack]) => {
      const now = new Date(START + SPAN - nowBack);
      const backups: CatalogBackup[] = items.map((item, i) => ({
        id: `b${String(i).padStart(4, '0')}`,
        name: 'prod',
        finishedAt: new Date(START + item.t),
        kind: item.kind,
        keepUntil: item.pin === undefined ? undefined : new Date(START + item.pin),
        lastVerification: item.verification,
        bytes: 1,
      }));
      const shuffled = backups
        .map((b, i) => ({ b, key: items[i].shuffleKey }))
        .sort((x, y) => x.key - y.key)
        .map((x) => x.b);
      return { backups, shuffled, now };
    });
  const count = fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined });
  const policyArb: fc.Arbitrary<RetentionPolicy> = fc.record(
    {
      keepLast: count,
      keepHourly: count,
      keepDaily: count,
      keepWeekly: count,
      keepMonthly: count,
      keepYearly: count,
      keepWithinSeconds: fc.option(fc.integer({ min: 0, max: 400 * 86400 }), { nil: undefined }),
      keepKind: fc.option(
        fc.dictionary(
          fc.constantFrom(...BACKUP_KINDS),
          fc.oneof(fc.constant('forever' as const), fc.integer({ min: 0, max: 400 * 86400 })),
        ),
        { nil: undefined },
      ),
      timezone: fc.constantFrom(...ZONES),
    },
    { requiredKeys: ['timezone'] },
  );
  const maxDeleteArb = fc.option(
    fc.record(
      {
        fraction: fc.double({ min: 0, max: 1, noNaN: true }),
        count: fc.integer({ min: 0, max: 300 }),
      },
      { requiredKeys: [] },
    ),
    { nil: undefined },
  );

  function summary(plan: RetentionPlan): [string, string, string[]][] {
    return plan.entries.map((e) => [e.backup.id, e.decision, e.reasons]);
  }

  it('never deletes a protected backup, keeps one at least, and accounts for every backup', () => {
    fc.assert(
      fc.property(catalogArb, policyArb, maxDeleteArb, ({ backups, now }, policy, maxDelete) => {
        const plan = planRetention(backups, policy, now, { maxDelete });
        const kept = new Set(
          plan.entries.filter((e) => e.decision === 'keep').map((e) => e.backup.id),
        );

        expect(plan.entries).toHaveLength(backups.length);
        expect(new Set(plan.entries.map((e) => e.backup.id)).size).toBe(backups.length);
        expect(plan.keep + plan.delete).toBe(backups.length);
        expect(plan.keep).toBe(kept.size);
        for (const e of plan.entries) expect(e.reasons.length).toBeGreaterThan(0);
        for (let i = 1; i < plan.entries.length; i++) {
          const a = plan.entries[i - 1].backup;
          const b = plan.entries[i].backup;
          expect(
            a.finishedAt.getTime() > b.finishedAt.getTime() ||
              (a.finishedAt.getTime() === b.finishedAt.getTime() && a.id > b.id),
          ).toBe(true);
        }

        if (backups.length > 0) expect(kept.size).toBeGreaterThan(0);
        const byTime = [...backups].sort((a, b) => b.finishedAt.getTime() - a.finishedAt.getTime());
        const newestTime = byTime[0]?.finishedAt.getTime();
        for (const b of backups) {
          if (b.finishedAt.getTime() === newestTime) {
            // Of backups finished at the same newest instant, at least one is protected.
            expect(
              backups.some((o) => o.finishedAt.getTime() === newestTime && kept.has(o.id)),
            ).toBe(true);
          }
          if (b.keepUntil !== undefined && b.keepUntil.getTime() > now.getTime())
            expect(kept.has(b.id)).toBe(true);
          if (b.finishedAt.getTime() > now.getTime()) expect(kept.has(b.id)).toBe(true);
        }
        const newestVerifiedTime = byTime
          .find((b) => b.lastVerification === 'passed')
          ?.finishedAt.getTime();
        if (newestVerifiedTime !== undefined) {
          expect(
            backups.some(
              (b) =>
                b.lastVerification === 'passed' &&
                b.finishedAt.getTime() === newestVerifiedTime &&
                kept.has(b.id),
            ),
          ).toBe(true);
        }

        // Rules with a simple meaning, checked directly.
        const past = byTime.filter((b) => b.finishedAt.getTime() <= now.getTime());
        const lastN = policy.keepLast ?? 0;
        const cutoff = past[Math.min(lastN, past.length) - 1]?.finishedAt.getTime();
        if (lastN > 0 && cutoff !== undefined) {
          expect(
            past.filter((b) => b.finishedAt.getTime() > cutoff).every((b) => kept.has(b.id)),
          ).toBe(true);
          expect(past.filter((b) => kept.has(b.id)).length).toBeGreaterThanOrEqual(
            Math.min(lastN, past.length),
          );
        }
        if (policy.keepWithinSeconds !== undefined) {
          const since = now.getTime() - policy.keepWithinSeconds * 1000;
          for (const b of past)
            if (b.finishedAt.getTime() > since) expect(kept.has(b.id)).toBe(true);
        }
        for (const b of past) {
          const span = policy.keepKind?.[b.kind];
          if (span === 'forever') expect(kept.has(b.id)).toBe(true);
          if (typeof span === 'number' && b.finishedAt.getTime() + span * 1000 > now.getTime()) {
            expect(kept.has(b.id)).toBe(true);
          }
        }

        // Safety limits.
        if (plan.refused === undefined && maxDelete !== undefined) {
          if (maxDelete.count !== undefined)
            expect(plan.delete).toBeLessThanOrEqual(maxDelete.count);
          if (maxDelete.fraction !== undefined && backups.length > 0) {
            expect(plan.delete / backups.length).toBeLessThanOrEqual(maxDelete.fraction);
          }
        }
        if (plan.refused !== undefined) {
          expect(maxDelete).toBeDefined();
          expect(plan.refused).toContain(
            `would delete ${plan.delete} of ${backups.length} backups`,
          );
        }
      }),
      { numRuns: 200 },
    );
  });

  it('is idempotent: planning again over the kept backups deletes nothing', () => {
    fc.assert(
      fc.property(catalogArb, policyArb, ({ backups, now }, policy) => {
        const first = planRetention(backups, policy, now);
        const kept = first.entries.filter((e) => e.decision === 'keep').map((e) => e.backup);
        const second = planRetention(kept, policy, now);
        expect(second.delete).toBe(0);
        expect(second.keep).toBe(kept.length);
      }),
      { numRuns: 200 },
    );
  });

  it('does not depend on the input order', () => {
    fc.assert(
      fc.property(catalogArb, policyArb, ({ backups, shuffled, now }, policy) => {
        expect(summary(planRetention(shuffled, policy, now))).toEqual(
          summary(planRetention(backups, policy, now)),
        );
        expect(summary(planRetention([...backups].reverse(), policy, now))).toEqual(
          summary(planRetention(backups, policy, now)),
        );
      }),
      { numRuns: 100 },
    );
  });

  it('keeps, for daily and monthly rules in a fixed-offset zone, the newest of each of the N latest periods', () => {
    // Asia/Kolkata has been UTC+05:30 all year since 1945, so local dates are UTC dates shifted.
    const local = (b: CatalogBackup): string =>
      new Date(b.finishedAt.getTime() + 5.5 * 3600_000).toISOString().slice(0, 10);
    fc.assert(
      fc.property(
        catalogArb,
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom('day', 'month'),
        ({ backups, now }, n, unit) => {
          const label = (b: CatalogBackup): string =>
            unit === 'day' ? local(b) : local(b).slice(0, 7);
          const policy: RetentionPolicy =
            unit === 'day'
              ? { keepDaily: n, timezone: 'Asia/Kolkata' }
              : { keepMonthly: n, timezone: 'Asia/Kolkata' };
          const plan = planRetention(backups, policy, now);
          // Reference: group by local period, newest first, first n periods, newest of each.
          const groups = new Map<string, CatalogBackup[]>();
          for (const b of backups.filter((x) => x.finishedAt.getTime() <= now.getTime())) {
            groups.set(label(b), [...(groups.get(label(b)) ?? []), b]);
          }
          const chosen = [...groups.keys()]
            .sort()
            .reverse()
            .slice(0, n)
            .map((key) => {
              const members = groups.get(key) ?? [];
              return members.reduce((best, b) =>
                b.finishedAt.getTime() > best.finishedAt.getTime() ||
                (b.finishedAt.getTime() === best.finishedAt.getTime() && b.id > best.id)
                  ? b
                  : best,
              );
            });
          const word = unit === 'day' ? 'daily' : 'monthly';
          const byRule = plan.entries.filter((e) =>
            e.reasons.some((r) => r.startsWith(`${word} `)),
          );
          expect(byRule.map((e) => e.backup.id).sort()).toEqual(chosen.map((b) => b.id).sort());
          for (const e of byRule) expect(e.reasons).toContain(`${word} ${label(e.backup)}`);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('plans the same in UTC whether the zone is read through Intl or not', () => {
    fc.assert(
      fc.property(catalogArb, policyArb, ({ backups, now }, policy) => {
        expect(summary(planRetention(backups, { ...policy, timezone: 'Etc/GMT' }, now))).toEqual(
          summary(planRetention(backups, { ...policy, timezone: 'UTC' }, now)),
        );
      }),
      { numRuns: 100 },
    );
  });
});

describe('planRetention: performance', () => {
  it('plans 10,000 backups well within a second (sanity bound: 2 s)', () => {
    const backups = Array.from({ length: 10_000 }, (_, i) =>
      backup(new Date(NOW.getTime() - i * 2 * 3600_000 - 1000), {
        kind: BACKUP_KINDS[i % BACKUP_KINDS.length],
        lastVerification: i % 7 === 0 ? 'failed' : undefined,
      }),
    ).reverse();
    const policy: RetentionPolicy = {
      keepLast: 10,
      keepHourly: 48,
      keepDaily: 30,
      keepWeekly: 12,
      keepMonthly: 12,
      keepYearly: 7,
      keepWithinSeconds: 3 * 86400,
      keepKind: { 'pre-migration': 90 * 86400, manual: 'forever' },
      timezone: 'Europe/Berlin',
    };
    const started = performance.now();
    const plan = planRetention(backups, policy, NOW, { maxDelete: { fraction: 1 } });
    const elapsed = performance.now() - started;
    expect(plan.entries).toHaveLength(10_000);
    expect(plan.delete).toBeGreaterThan(0);
    expect(elapsed).toBeLessThan(2000);
  });
});
