/** Durations as users write them in action inputs (`90d`, `1h30m`), and as reports print them. */

import { ConfigurationError, OptionError } from './errors.js';

const UNIT_SECONDS: Readonly<Record<string, number>> = {
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
  w: 7 * 86400,
  y: 365 * 86400,
};

const ACCEPTED_FORMS =
  'a number with a unit such as 90d, 26h, 30m, 45s, 2w, 1y (365 days), 1h30m or 1.5h';

/** One `<number><unit>` component, optionally followed by whitespace. */
const COMPONENT = /(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]+)\s*/y;

/** The value as it appears in an error message: quoted, and cut short when long. */
function quoted(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

function durationError(text: string, key: string, extraForms = ''): OptionError {
  const hint = /^\s*\d+(?:\.\d+)?\s*$/.test(text) ? ' (add a unit: s, m, h, d, w or y)' : '';
  return new OptionError(
    key,
    (w) => `${w.option(key)} must be ${extraForms}${ACCEPTED_FORMS}; got ${quoted(text)}${hint}.`,
  );
}

/**
 * Parses a duration into seconds. Components are a number (decimals allowed) and one of the
 * units s, m, h, d, w (7 days) or y (365 days), each unit at most once: `90d`, `1h30m`,
 * `1h 30m`, `1.5h`. Surrounding whitespace is ignored. Throws an OptionError naming
 * the input and quoting the value otherwise.
 */
export function parseDuration(text: string, inputName: string): number {
  const trimmed = text.trim();
  if (trimmed === '') throw durationError(text, inputName);
  const used = new Set<string>();
  let seconds = 0;
  let position = 0;
  while (position < trimmed.length) {
    COMPONENT.lastIndex = position;
    const match = COMPONENT.exec(trimmed);
    if (!match) throw durationError(text, inputName);
    const unit = match[2];
    const factor = UNIT_SECONDS[unit];
    if (factor === undefined || used.has(unit)) throw durationError(text, inputName);
    used.add(unit);
    seconds += Number(match[1]) * factor;
    position = COMPONENT.lastIndex;
  }
  if (!Number.isFinite(seconds)) throw durationError(text, inputName);
  return seconds;
}

/** Like {@link parseDuration}, but also accepts `forever` (any case). */
export function parseDurationOrForever(text: string, inputName: string): number | 'forever' {
  if (text.trim().toLowerCase() === 'forever') return 'forever';
  try {
    return parseDuration(text, inputName);
  } catch (error) {
    if (error instanceof ConfigurationError) throw durationError(text, inputName, '"forever" or ');
    throw error;
  }
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/**
 * A duration for people: `0s`, `4.2s` and `45s` below a minute, `5m 03s` below an hour,
 * `1h 05m` and `26h 00m` below two days, `2d 03h` from two days on. Rounds to the shown unit.
 */
export function formatDuration(seconds: number): string {
  if (Number.isNaN(seconds)) return 'NaN';
  if (seconds < 0) return `-${formatDuration(-seconds)}`;
  if (!Number.isFinite(seconds)) return '∞';
  if (seconds < 10) {
    const tenths = Math.round(seconds * 10) / 10;
    if (tenths < 10) return `${tenths}s`;
  }
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${pad2(whole % 60)}s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)}h ${pad2(minutes % 60)}m`;
  const hours = Math.round(seconds / 3600);
  return `${Math.floor(hours / 24)}d ${pad2(hours % 24)}h`;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const ISO_DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))$/;

/** Milliseconds since the epoch of a UTC calendar time, or undefined when a field is out of range. */
function utcTime(
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
): number | undefined {
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) {
    return undefined;
  }
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  return date.getTime();
}

function parseIsoInstant(text: string): Date | undefined {
  const date = ISO_DATE.exec(text);
  if (date) {
    const time = utcTime(Number(date[1]), Number(date[2]), Number(date[3]));
    return time === undefined ? undefined : new Date(time);
  }
  const dt = ISO_DATETIME.exec(text);
  if (!dt) return undefined;
  const base = utcTime(
    Number(dt[1]),
    Number(dt[2]),
    Number(dt[3]),
    Number(dt[4]),
    Number(dt[5]),
    dt[6] === undefined ? 0 : Number(dt[6]),
  );
  if (base === undefined) return undefined;
  const millis = dt[7] === undefined ? 0 : Math.floor(Number(`0${dt[7]}`) * 1000);
  let offsetMinutes = 0;
  if (dt[8] === undefined) {
    const hours = Number(dt[10]);
    const minutes = Number(dt[11]);
    if (hours > 23 || minutes > 59) return undefined;
    offsetMinutes = (dt[9] === '-' ? -1 : 1) * (hours * 60 + minutes);
  }
  return new Date(base + millis - offsetMinutes * 60_000);
}

/**
 * The moment a pin ends. Accepts an ISO date (`2027-01-31`, meaning 00:00 UTC at the start of
 * that day), an ISO date-time with a zone (`2027-01-31T12:00:00Z`, `2027-01-31T12:00+01:00`),
 * or a duration counted from `now` (`90d`). The moment must be after `now`: a pin that has
 * already ended is almost always a typo. Throws a ConfigurationError otherwise.
 */
export function parseKeepUntil(text: string, now: Date, inputName: string): Date {
  const trimmed = text.trim();
  let until: Date | undefined;
  if (/^\d{4}-/.test(trimmed)) {
    until = parseIsoInstant(trimmed);
    if (until === undefined) {
      throw new OptionError(
        inputName,
        (w) =>
          `${w.option(inputName)} must be an ISO date (2027-01-31), an ISO date-time with a ` +
          `zone (2027-01-31T12:00:00Z) or a duration from now (90d); got ${quoted(text)}.`,
      );
    }
  } else {
    try {
      until = new Date(now.getTime() + parseDuration(trimmed, inputName) * 1000);
    } catch (error) {
      if (!(error instanceof ConfigurationError)) throw error;
      throw new OptionError(
        inputName,
        (w) =>
          `${w.option(inputName)} must be an ISO date (2027-01-31), an ISO date-time with a ` +
          `zone (2027-01-31T12:00:00Z) or a duration from now (${ACCEPTED_FORMS}); ` +
          `got ${quoted(text)}.`,
      );
    }
  }
  if (!(until.getTime() > now.getTime())) {
    throw new OptionError(
      inputName,
      (w) =>
        `${w.option(inputName)} is ${quoted(text)}, which is not after now ` +
        `(${now.toISOString()}); give a later date or a positive duration.`,
    );
  }
  return until;
}

/** A duration as the inputs write it: `7d`, `1h30m`, `90m`, `1.5s`. */
export function compactDuration(seconds: number): string {
  if (seconds <= 0) return '0s';
  let rest = seconds;
  let text = '';
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    const whole = Math.floor(rest / size);
    if (whole > 0) text += `${whole}${unit}`;
    rest -= whole * size;
  }
  const secs = Math.round(rest * 1000) / 1000;
  if (secs > 0) text += `${secs}s`;
  return text || '0s';
}
