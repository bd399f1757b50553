import fc from 'fast-check';
import {
  formatDuration,
  parseDuration,
  parseDurationOrForever,
  parseKeepUntil,
} from '../../src/core/duration.js';
import { ConfigurationError } from '../../src/core/errors.js';

function configurationErrorOf(fn: () => unknown): ConfigurationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return error as ConfigurationError;
  }
  throw new Error('expected a ConfigurationError, nothing was thrown');
}

describe('parseDuration', () => {
  it.each([
    ['90d', 90 * 86400],
    ['26h', 26 * 3600],
    ['30m', 1800],
    ['45s', 45],
    ['2w', 14 * 86400],
    ['1y', 365 * 86400],
    ['1h30m', 5400],
    ['1h 30m', 5400],
    ['  1h30m\n', 5400],
    ['1.5h', 5400],
    ['.5m', 30],
    ['0s', 0],
    ['1d2h3m4s', 86400 + 7200 + 180 + 4],
    ['30m1h', 5400],
    ['1 h', 3600],
  ])('reads %j as %d seconds', (text, seconds) => {
    expect(parseDuration(text, 'keep-within')).toBe(seconds);
  });

  it.each([
    '',
    '   ',
    '90',
    '1.5',
    'd',
    '1x',
    '1mo',
    '1M',
    '1H',
    '-1d',
    '1d-2h',
    '1h1h',
    '1d,2h',
    'forever',
    '1..5h',
    '1e3s',
  ])('rejects %j with the input name, the value and the accepted forms', (text) => {
    const error = configurationErrorOf(() => parseDuration(text, 'keep-within'));
    expect(error.message).toContain('keep-within');
    expect(error.message).toContain(JSON.stringify(text));
    expect(error.message).toContain('90d');
    expect(error.message).toContain('1h30m');
  });

  it('tells the user to add a unit to a bare number', () => {
    expect(configurationErrorOf(() => parseDuration('90', 'rpo-target')).message).toMatch(
      /rpo-target.*"90".*add a unit/,
    );
  });

  it('reads every combination of whole components as their sum', () => {
    const units = { y: 31536000, w: 604800, d: 86400, h: 3600, m: 60, s: 1 } as const;
    fc.assert(
      fc.property(
        fc.subarray(Object.keys(units) as (keyof typeof units)[], { minLength: 1 }),
        fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 6, maxLength: 6 }),
        fc.constantFrom('', ' ', '  '),
        (chosen, values, separator) => {
          const text = chosen.map((u, i) => `${values[i]}${u}`).join(separator);
          const expected = chosen.reduce((sum, u, i) => sum + values[i] * units[u], 0);
          expect(parseDuration(text, 'x')).toBe(expected);
        },
      ),
    );
  });
});

describe('parseDurationOrForever', () => {
  it('accepts forever in any case and durations', () => {
    expect(parseDurationOrForever('forever', 'keep-kind')).toBe('forever');
    expect(parseDurationOrForever(' Forever ', 'keep-kind')).toBe('forever');
    expect(parseDurationOrForever('90d', 'keep-kind')).toBe(90 * 86400);
  });
  it('lists forever among the accepted forms when rejecting', () => {
    const error = configurationErrorOf(() =>
      parseDurationOrForever('always', 'keep-kind (manual)'),
    );
    expect(error.message).toContain('keep-kind (manual)');
    expect(error.message).toContain('"always"');
    expect(error.message).toContain('"forever"');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [0.04, '0s'],
    [4.2, '4.2s'],
    [4.24, '4.2s'],
    [9.96, '10s'],
    [45, '45s'],
    [59.6, '1m 00s'],
    [303, '5m 03s'],
    [3599.6, '1h 00m'],
    [3900, '1h 05m'],
    [26 * 3600, '26h 00m'],
    [47 * 3600 + 59 * 60, '47h 59m'],
    [48 * 3600, '2d 00h'],
    [2 * 86400 + 3 * 3600, '2d 03h'],
    [400 * 86400, '400d 00h'],
    [-90, '-1m 30s'],
  ])('formats %d seconds as %j', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});

describe('parseKeepUntil', () => {
  const now = new Date('2026-11-21T06:00:00Z');

  it('reads an ISO date as midnight UTC at the start of that day', () => {
    expect(parseKeepUntil('2027-01-31', now, 'keep-until').toISOString()).toBe(
      '2027-01-31T00:00:00.000Z',
    );
  });
  it('reads ISO date-times with a zone', () => {
    expect(parseKeepUntil('2027-01-31T12:00:00Z', now, 'keep-until').toISOString()).toBe(
      '2027-01-31T12:00:00.000Z',
    );
    expect(parseKeepUntil(' 2027-01-31T12:00+01:00 ', now, 'keep-until').toISOString()).toBe(
      '2027-01-31T11:00:00.000Z',
    );
    expect(parseKeepUntil('2027-01-31T12:00:00.250-05:30', now, 'keep-until').toISOString()).toBe(
      '2027-01-31T17:30:00.250Z',
    );
  });
  it('reads a duration as counted from now', () => {
    expect(parseKeepUntil('90d', now, 'keep-until').toISOString()).toBe('2027-02-19T06:00:00.000Z');
  });
  it.each([
    '2027-02-30',
    '2027-13-01',
    '2027-1-31',
    '2027-01-31T12:00:00',
    '2027-01-31T25:00:00Z',
    '31.01.2027',
    'next year',
    '',
    'forever',
  ])('rejects %j naming the input and quoting the value', (text) => {
    const error = configurationErrorOf(() => parseKeepUntil(text, now, 'keep-until'));
    expect(error.message).toContain('keep-until');
    expect(error.message).toContain(JSON.stringify(text));
    expect(error.message).toContain('2027-01-31');
  });
  it('rejects a moment that is not after now', () => {
    expect(
      configurationErrorOf(() => parseKeepUntil('2026-11-21', now, 'keep-until')).message,
    ).toMatch(/keep-until.*"2026-11-21".*not after now/);
    expect(() => parseKeepUntil('0d', now, 'keep-until')).toThrow(ConfigurationError);
  });
});
