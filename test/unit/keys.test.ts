import {
  backupIdTime,
  compactTime,
  isBackupId,
  isCatalogName,
  newBackupId,
} from '../../src/catalog/keys.js';

describe('catalog keys', () => {
  it('makes sortable backup ids from UTC time', () => {
    const at = new Date('2026-11-21T05:15:00.123Z');
    const id = newBackupId(at, () => '3f9a1c');
    expect(id).toBe('20261121T051500Z-3f9a1c');
    expect(isBackupId(id)).toBe(true);
    expect(backupIdTime(id)?.toISOString()).toBe('2026-11-21T05:15:00.000Z');
    expect(compactTime(new Date('2027-01-02T03:04:05Z'))).toBe('20270102T030405Z');
  });
  it('rejects names that are not one path segment', () => {
    expect(isCatalogName('prod-db')).toBe(true);
    expect(isCatalogName('../x')).toBe(false);
    expect(isCatalogName('a/b')).toBe(false);
    expect(isCatalogName('')).toBe(false);
  });
});
