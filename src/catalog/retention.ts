/**
 * The retention planner: which backups of one catalog name a policy keeps, and why.
 *
 * Pure functions only. Rules follow restic's `forget`: each rule is evaluated on its own over
 * the same backups, and a backup is kept when any rule or protection keeps it.
 */

import { compactDuration, parseDuration, parseDurationOrForever } from '../core/duration.js';
import { ConfigurationError, OptionError } from '../core/errors.js';
import { BACKUP_KINDS } from './manifest.js';

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** Keep every backup finished less than this many seconds before now. */
  keepWithinSeconds?: number;
  /** Kind → seconds (or `forever`) for which every backup of that kind is kept. */
  keepKind?: Record<string, number | 'forever'>;
  /** IANA time zone in which hours, days, weeks, months and years are counted. */
  timezone: string;
}

export interface CatalogBackup {
  id: string;
  name: string;
  finishedAt: Date;
  kind: string;
  keepUntil?: Date;
  lastVerification?: 'passed' | 'failed';
  bytes: number;
}

export interface PlanEntry {
  backup: CatalogBackup;
  decision: 'keep' | 'delete';
  /** Why: every rule and protection that keeps it, or why nothing does. Never empty. */
  reasons: string[];
}

export interface RetentionPlan {
  /** Every backup, newest first. */
  entries: PlanEntry[];
  keep: number;
  delete: number;
  /**
   * Set when the plan breaks a safety limit (it would delete every backup, or more than
   * max-delete). The decisions stay as computed so the report can show what the policy asked
   * for, but the caller MUST delete nothing at all when this is set.
   */
  refused?: string;
}

export interface MaxDelete {
  /** Largest share of the backups one run may delete, 0–1. */
  fraction?: number;
  /** Largest number of backups one run may delete. */
  count?: number;
}

const REASON_DELETE = 'no rule keeps it';
const REASON_NEWEST = 'newest complete backup';
const REASON_NEWEST_VERIFIED = 'newest verified backup';
const REASON_FUTURE = 'in the future';

const COUNT_INPUTS = [
  ['keepLast', 'keep-last'],
  ['keepHourly', 'keep-hourly'],
  ['keepDaily', 'keep-daily'],
  ['keepWeekly', 'keep-weekly'],
  ['keepMonthly', 'keep-monthly'],
  ['keepYearly', 'keep-yearly'],
] as const;

type CountKey = (typeof COUNT_INPUTS)[number][0];

const RULE_INPUT_NAMES = [...COUNT_INPUTS.map(([, input]) => input), 'keep-within', 'keep-kind'];

function quoted(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

function parseCount(text: string, inputName: string): number {
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(value)) {
    throw new OptionError(
      inputName,
      (w) =>
        `${w.option(inputName)} must be a whole number of backups, 0 or more; got ${quoted(text)}.`,
    );
  }
  return value;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** A formatter of local year, month, day and hour in `timezone`; throws RangeError for unknown zones. */
function localFormatter(timezone: string): Intl.DateTimeFormat {
  let format = formatters.get(timezone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      hourCycle: 'h23',
    });
    formatters.set(timezone, format);
  }
  return format;
}

/** Throws a ConfigurationError unless `timezone` is an IANA zone this runtime knows. */
function checkTimezone(timezone: string, inputName: string): void {
  try {
    localFormatter(timezone);
  } catch {
    throw new OptionError(
      inputName,
      (w) =>
        `${w.option(inputName)} must be an IANA time zone such as UTC, Europe/Berlin or ` +
        `America/New_York; got ${quoted(timezone)}.`,
    );
  }
}

function keepKindDuration(kind: string, text: string): number | 'forever' {
  try {
    return parseDurationOrForever(text, 'keep-kind');
  } catch (error) {
    if (!(error instanceof OptionError)) throw error;
    throw new OptionError(
      'keep-kind',
      (w) =>
        `${w.option('keep-kind')} gives the kind ${kind} ${quoted(text.trim())}, which is neither ` +
        'forever nor a duration such as 90d, 26h or 1y.',
    );
  }
}

function parseKeepKind(text: string): Record<string, number | 'forever'> {
  const result: Record<string, number | 'forever'> = {};
  for (const raw of text.split(/[,\n]/)) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const kind = eq < 0 ? item : item.slice(0, eq).trim();
    if (eq < 0 || kind === '') {
      throw new OptionError(
        'keep-kind',
        (w) =>
          `${w.option('keep-kind')} must list kind=duration pairs such as "pre-migration=90d, ` +
          `manual=forever"; got ${quoted(item)}.`,
      );
    }
    if (!(BACKUP_KINDS as readonly string[]).includes(kind)) {
      throw new OptionError(
        'keep-kind',
        (w) =>
          `${w.option('keep-kind')} names the unknown kind ${quoted(kind)}; known kinds are ` +
          `${BACKUP_KINDS.join(', ')}.`,
      );
    }
    if (Object.hasOwn(result, kind)) {
      throw new OptionError(
        'keep-kind',
        (w) => `${w.option('keep-kind')} names the kind ${kind} more than once.`,
      );
    }
    result[kind] = keepKindDuration(kind, item.slice(eq + 1));
  }
  return result;
}

/**
 * Builds a policy from action inputs (empty strings count as unset). Counts are whole numbers,
 * 0 or more, where 0 switches the rule off; keep-within is a duration; keep-kind lists
 * `kind=duration` or `kind=forever` pairs separated by commas or newlines, for the known kinds
 * only. At least one rule must keep something. The timezone defaults to UTC.
 */
export function parseRetentionPolicy(inputs: {
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  keepKind?: string;
  timezone?: string;
}): RetentionPolicy {
  const timezone = inputs.timezone?.trim() || 'UTC';
  checkTimezone(timezone, 'timezone');
  const policy: RetentionPolicy = { timezone };
  for (const [key, inputName] of COUNT_INPUTS) {
    const text = inputs[key];
    if (text === undefined || text.trim() === '') continue;
    const count = parseCount(text, inputName);
    if (count > 0) policy[key] = count;
  }
  if (inputs.keepWithin !== undefined && inputs.keepWithin.trim() !== '') {
    const seconds = parseDuration(inputs.keepWithin, 'keep-within');
    if (seconds > 0) policy.keepWithinSeconds = seconds;
  }
  if (inputs.keepKind !== undefined && inputs.keepKind.trim() !== '') {
    const keepKind = parseKeepKind(inputs.keepKind);
    if (Object.keys(keepKind).length > 0) policy.keepKind = keepKind;
  }
  const hasRule =
    COUNT_INPUTS.some(([key]) => policy[key] !== undefined) ||
    policy.keepWithinSeconds !== undefined ||
    policy.keepKind !== undefined;
  if (!hasRule) {
    throw new OptionError(
      'keep-last',
      (w) =>
        `Set at least one of ${w.list(RULE_INPUT_NAMES)} to a value ` +
        'above zero; without a rule every backup but the newest would be deleted.',
    );
  }
  return policy;
}

/**
 * Parses max-delete: a percentage of the backups (`50%`, `12.5%`) or a number of backups
 * (`10`). Throws a ConfigurationError otherwise.
 */
export function parseMaxDelete(text: string): MaxDelete {
  const trimmed = text.trim();
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(trimmed);
  if (percent) {
    const value = Number(percent[1]);
    if (value <= 100) return { fraction: value / 100 };
  } else if (/^\d+$/.test(trimmed) && Number.isSafeInteger(Number(trimmed))) {
    return { count: Number(trimmed) };
  }
  throw new OptionError(
    'max-delete',
    (w) =>
      `${w.option('max-delete')} must be a percentage of the backups from 0% to 100% (such as ` +
      `50%) or a whole number of backups (such as 10); got ${quoted(text)}.`,
  );
}

interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
}

/** A function giving the wall-clock year, month, day and hour of an instant in `timezone`. */
function localTimeIn(timezone: string): (at: Date) => LocalTime {
  if (timezone === 'UTC') {
    return (at) => ({
      year: at.getUTCFullYear(),
      month: at.getUTCMonth() + 1,
      day: at.getUTCDate(),
      hour: at.getUTCHours(),
    });
  }
  const format = localFormatter(timezone);
  return (at) => {
    const local: LocalTime = { year: 0, month: 0, day: 0, hour: 0 };
    for (const part of format.formatToParts(at)) {
      switch (part.type) {
        case 'year':
          local.year = Number(part.value);
          break;
        case 'month':
          local.month = Number(part.value);
          break;
        case 'day':
          local.day = Number(part.value);
          break;
        case 'hour':
          local.hour = Number(part.value) % 24;
          break;
        default:
          break;
      }
    }
    return local;
  };
}

function pad(n: number, width = 2): string {
  return n < 0 ? `-${String(-n).padStart(width, '0')}` : String(n).padStart(width, '0');
}

/** ISO 8601 week of a calendar date: weeks start on Monday, week 1 holds the year's first Thursday. */
function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  const weekday = date.getUTCDay() === 0 ? 7 : date.getUTCDay();
  const thursday = new Date(date.getTime() + (4 - weekday) * 86_400_000);
  const weekYear = thursday.getUTCFullYear();
  const january1 = new Date(0);
  january1.setUTCFullYear(weekYear, 0, 1);
  const dayOfYear = Math.round((thursday.getTime() - january1.getTime()) / 86_400_000);
  return { year: weekYear, week: Math.floor(dayOfYear / 7) + 1 };
}

type Period = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';

const PERIOD_RULES: readonly { period: Period; key: CountKey }[] = [
  { period: 'hourly', key: 'keepHourly' },
  { period: 'daily', key: 'keepDaily' },
  { period: 'weekly', key: 'keepWeekly' },
  { period: 'monthly', key: 'keepMonthly' },
  { period: 'yearly', key: 'keepYearly' },
];

function periodLabel(period: Period, local: LocalTime): string {
  const date = `${pad(local.year, 4)}-${pad(local.month)}-${pad(local.day)}`;
  switch (period) {
    case 'hourly':
      return `${date}T${pad(local.hour)}`;
    case 'daily':
      return date;
    case 'weekly': {
      const week = isoWeek(local.year, local.month, local.day);
      return `${pad(week.year, 4)}-W${pad(week.week)}`;
    }
    case 'monthly':
      return `${pad(local.year, 4)}-${pad(local.month)}`;
    case 'yearly':
      return pad(local.year, 4);
  }
}

/** `2027-01-01` when the moment is midnight UTC, else `2027-01-01 12:30 UTC`. */
function formatInstant(at: Date): string {
  const iso = at.toISOString();
  if (iso.endsWith('T00:00:00.000Z')) return iso.slice(0, 10);
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

function checkPolicy(policy: RetentionPolicy): void {
  for (const [key, inputName] of COUNT_INPUTS) {
    const value = policy[key];
    if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
      throw new ConfigurationError(`${inputName} must be a whole number, 0 or more; got ${value}.`);
    }
  }
  const within = policy.keepWithinSeconds;
  if (within !== undefined && !(Number.isFinite(within) && within >= 0)) {
    throw new ConfigurationError(`keep-within must be a duration of 0 or more; got ${within}.`);
  }
  for (const [kind, value] of Object.entries(policy.keepKind ?? {})) {
    if (value !== 'forever' && !(Number.isFinite(value) && value >= 0)) {
      throw new ConfigurationError(
        `keep-kind ${kind} must be a duration or forever; got ${value}.`,
      );
    }
  }
  checkTimezone(policy.timezone, 'timezone');
}

function checkMaxDelete(maxDelete: MaxDelete): void {
  const { fraction, count } = maxDelete;
  if (fraction !== undefined && !(fraction >= 0 && fraction <= 1)) {
    throw new ConfigurationError(`max-delete fraction must be between 0 and 1; got ${fraction}.`);
  }
  if (count !== undefined && !(Number.isInteger(count) && count >= 0)) {
    throw new ConfigurationError(`max-delete count must be a whole number; got ${count}.`);
  }
}

/** A percentage for a message, with a decimal when rounding would hide the difference. */
function percentText(share: number, limit?: number): string {
  const whole = Math.round(share * 100);
  if (limit !== undefined && whole <= Math.round(limit * 100) && share > limit) {
    return `${(share * 100).toFixed(1)}%`;
  }
  return `${whole}%`;
}

function refusal(
  deleting: number,
  total: number,
  name: string,
  maxDelete?: MaxDelete,
): string | undefined {
  if (total > 0 && deleting === total) {
    return `would delete all ${total} backups of ${name}; refusing to leave nothing`;
  }
  if (maxDelete === undefined || deleting === 0) return undefined;
  const share = deleting / total;
  if (maxDelete.fraction !== undefined && share > maxDelete.fraction) {
    const limit = `${Number((maxDelete.fraction * 100).toFixed(4))}%`;
    return (
      `would delete ${deleting} of ${total} backups (${percentText(share, maxDelete.fraction)}), ` +
      `more than max-delete ${limit}; raise max-delete to proceed`
    );
  }
  if (maxDelete.count !== undefined && deleting > maxDelete.count) {
    return (
      `would delete ${deleting} of ${total} backups, more than max-delete ${maxDelete.count}; ` +
      'raise max-delete to proceed'
    );
  }
  return undefined;
}

/** Newest first; equal times by id, descending, so the order never depends on the input's. */
function newestFirst(a: CatalogBackup, b: CatalogBackup): number {
  const byTime = b.finishedAt.getTime() - a.finishedAt.getTime();
  if (byTime !== 0) return byTime;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * Decides, for the backups of ONE catalog name, which to keep and which to delete.
 *
 * Order is by `finishedAt`, newest first, equal times by id; the input order never matters.
 * Rules, each evaluated independently over the backups finished at or before `now`:
 * - keep-last N: the N newest;
 * - keep-hourly/daily/weekly/monthly/yearly N: for each of the N most recent periods that have a
 *   backup, the newest backup of that period (periods without a backup do not count), with
 *   periods taken in `policy.timezone` and weeks as ISO weeks starting on Monday;
 * - keep-within D: every backup finished after now − D;
 * - keep-kind kind=D: every backup of that kind finished after now − D, or all of them (forever).
 * Kept whatever the policy: backups finished after `now` (clock skew), the newest backup, the
 * newest backup whose last verification passed, and backups pinned (`keepUntil` after `now`).
 *
 * When the plan would delete every backup, or more than `options.maxDelete` (a fraction of the
 * backups and/or a count; no limit when absent), `refused` explains it with the numbers and the
 * caller must delete nothing; the decisions are left as computed for the report.
 *
 * Throws when the backups belong to more than one name, ids repeat, or a date is invalid.
 */
export function planRetention(
  backups: CatalogBackup[],
  policy: RetentionPolicy,
  now: Date,
  options?: { maxDelete?: MaxDelete },
): RetentionPlan {
  checkPolicy(policy);
  if (options?.maxDelete) checkMaxDelete(options.maxDelete);
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new Error('planRetention: now is an invalid date');
  checkBackups(backups);
  const sorted = [...backups].sort(newestFirst);
  const reasons: string[][] = sorted.map(() => []);
  addProtections(sorted, reasons, nowMs);
  // Rules see only the backups finished at or before now: `sorted` without its future-dated head.
  const past = sorted.flatMap((b, i) => (b.finishedAt.getTime() <= nowMs ? [i] : []));
  addLastAndWithin(sorted, past, reasons, policy, nowMs);
  addPeriods(sorted, past, reasons, policy);
  addKinds(sorted, past, reasons, policy, nowMs);
  return decide(sorted, reasons, options?.maxDelete);
}

/** One name, unique ids, valid dates. */
function checkBackups(backups: CatalogBackup[]): void {
  const names = new Set(backups.map((b) => b.name));
  if (names.size > 1) {
    throw new Error(
      `planRetention: backups of several names must be planned separately: ${[...names].join(', ')}`,
    );
  }
  const ids = new Set<string>();
  for (const b of backups) {
    if (ids.has(b.id)) throw new Error(`planRetention: backup id ${b.id} appears twice`);
    ids.add(b.id);
    if (Number.isNaN(b.finishedAt.getTime())) {
      throw new Error(`planRetention: backup ${b.id} has an invalid finishedAt`);
    }
  }
}

/** Kept whatever the policy: in the future, the newest, the newest verified, pinned. */
function addProtections(sorted: CatalogBackup[], reasons: string[][], nowMs: number): void {
  sorted.forEach((b, i) => {
    if (b.finishedAt.getTime() > nowMs) reasons[i].push(REASON_FUTURE);
  });
  if (sorted.length > 0) reasons[0].push(REASON_NEWEST);
  const verified = sorted.findIndex((b) => b.lastVerification === 'passed');
  if (verified >= 0) reasons[verified].push(REASON_NEWEST_VERIFIED);
  sorted.forEach((b, i) => {
    if (b.keepUntil !== undefined && b.keepUntil.getTime() > nowMs) {
      reasons[i].push(`pinned until ${formatInstant(b.keepUntil)}`);
    }
  });
}

function addLastAndWithin(
  sorted: CatalogBackup[],
  past: number[],
  reasons: string[][],
  policy: RetentionPolicy,
  nowMs: number,
): void {
  const keepLast = policy.keepLast ?? 0;
  for (const i of past.slice(0, keepLast)) reasons[i].push(`last ${keepLast}`);
  if (policy.keepWithinSeconds !== undefined && policy.keepWithinSeconds > 0) {
    const since = nowMs - policy.keepWithinSeconds * 1000;
    const label = `within ${compactDuration(policy.keepWithinSeconds)}`;
    for (const i of past) if (sorted[i].finishedAt.getTime() > since) reasons[i].push(label);
  }
}

/** Hourly to yearly: the newest backup of each of the last N periods that have one. */
function addPeriods(
  sorted: CatalogBackup[],
  past: number[],
  reasons: string[][],
  policy: RetentionPolicy,
): void {
  const periodRules = PERIOD_RULES.filter((r) => (policy[r.key] ?? 0) > 0);
  if (periodRules.length === 0) return;
  const localTime = localTimeIn(policy.timezone);
  const state = periodRules.map((r) => ({
    period: r.period,
    left: policy[r.key] ?? 0,
    seen: new Set<string>(),
  }));
  for (const i of past) {
    if (state.every((s) => s.left === 0)) break;
    const local = localTime(sorted[i].finishedAt);
    for (const s of state) {
      if (s.left === 0) continue;
      const label = periodLabel(s.period, local);
      if (s.seen.has(label)) continue;
      s.seen.add(label);
      s.left -= 1;
      reasons[i].push(`${s.period} ${label}`);
    }
  }
}

function addKinds(
  sorted: CatalogBackup[],
  past: number[],
  reasons: string[][],
  policy: RetentionPolicy,
  nowMs: number,
): void {
  const keepKind = policy.keepKind ?? {};
  for (const i of past) {
    const b = sorted[i];
    if (!Object.hasOwn(keepKind, b.kind)) continue;
    const span = keepKind[b.kind];
    if (span === 'forever') {
      reasons[i].push(`kind ${b.kind} forever`);
    } else if (span > 0) {
      const until = b.finishedAt.getTime() + span * 1000;
      if (until > nowMs) reasons[i].push(`kind ${b.kind} until ${formatInstant(new Date(until))}`);
    }
  }
}

/** Keep what any reason keeps; refuse the plan when it breaks a safety limit. */
function decide(
  sorted: CatalogBackup[],
  reasons: string[][],
  maxDelete: MaxDelete | undefined,
): RetentionPlan {
  const entries: PlanEntry[] = sorted.map((backup, i) =>
    reasons[i].length > 0
      ? { backup, decision: 'keep', reasons: reasons[i] }
      : { backup, decision: 'delete', reasons: [REASON_DELETE] },
  );
  const deleting = entries.filter((e) => e.decision === 'delete').length;
  const plan: RetentionPlan = { entries, keep: entries.length - deleting, delete: deleting };
  const name = sorted[0]?.name ?? '';
  const refused = refusal(deleting, entries.length, name, maxDelete);
  if (refused !== undefined) plan.refused = refused;
  return plan;
}
