import { compactDuration } from '../../src/core/duration.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { parseDeleteIncompleteAfter, parsePruneNames } from '../../src/prune/options.js';
import { maxDeleteText, policyText } from '../../src/prune/plan.js';

describe('parsePruneNames', () => {
  it('reads one name, a list, or * alone', () => {
    expect(parsePruneNames('shop')).toEqual(['shop']);
    expect(parsePruneNames('shop\nbilling-prod  # the big one\n\nshop, audit.v2\n')).toEqual([
      'shop',
      'billing-prod',
      'audit.v2',
    ]);
    expect(parsePruneNames(' * ')).toBe('*');
  });

  it('rejects empty input, * mixed with names, and what is not a catalog name', () => {
    expect(() => parsePruneNames(' \n# nothing\n')).toThrow(ConfigurationError);
    expect(() => parsePruneNames('*\nshop')).toThrow('mixes * with other names (shop)');
    expect(() => parsePruneNames('shop/../etc')).toThrow(
      `Input 'name' holds "shop/../etc", which is not a catalog name`,
    );
  });
});

describe('parseDeleteIncompleteAfter', () => {
  it('reads a duration in seconds, or never', () => {
    expect(parseDeleteIncompleteAfter('24h')).toBe(86400);
    expect(parseDeleteIncompleteAfter('1s')).toBe(1);
    expect(parseDeleteIncompleteAfter('Never')).toBeUndefined();
  });

  it('refuses zero, which would delete uploads in progress, and nonsense', () => {
    expect(() => parseDeleteIncompleteAfter('0s')).toThrow(
      "Input 'delete-incomplete-after' must be longer than zero",
    );
    expect(() => parseDeleteIncompleteAfter('soon')).toThrow(
      "Input 'delete-incomplete-after' must be",
    );
  });
});

describe('policy and limits in words', () => {
  it('spells the policy as the inputs do', () => {
    expect(
      policyText({
        timezone: 'Europe/Berlin',
        keepLast: 3,
        keepWithinSeconds: 14 * 86400,
        keepKind: { 'pre-migration': 90 * 86400, manual: 'forever' },
      }),
    ).toBe('keep-last 3, keep-within 14d, keep-kind pre-migration=90d manual=forever');
    expect(maxDeleteText({ fraction: 0.125 })).toBe("12.5% of a name's backups");
    expect(maxDeleteText({ count: 10 })).toBe('10 backups of a name');
    expect(maxDeleteText(undefined)).toBe('no limit');
    expect(compactDuration(5400)).toBe('1h30m');
    expect(compactDuration(0)).toBe('0s');
  });
});
