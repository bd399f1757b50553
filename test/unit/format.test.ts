import { formatBytes, formatCount } from '../../src/core/streams.js';

describe('formatCount', () => {
  it('groups digits as en-US does', () => {
    const values = [
      0, 7, 999, 1000, 12_345, 999_999, 1_000_000, 2_980_004, -1234, 9_007_199_254_740_991,
    ];
    for (const v of values) expect(formatCount(v)).toBe(v.toLocaleString('en-US'));
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(151 * 1024 * 1024)).toBe('151 MiB');
  });
});
