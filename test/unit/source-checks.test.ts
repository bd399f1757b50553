import type { SourceConstraint, SourceSequence } from '../../src/postgres/source-state.js';
import {
  alterSettingStatement,
  compareConstraints,
  compareContents,
  compareSequences,
  compareSettings,
  splitSettingList,
} from '../../src/restore/source-checks.js';

const seq = (overrides: Partial<SourceSequence> = {}): SourceSequence => ({
  schema: 'public',
  name: 's',
  lastValue: '10',
  isCalled: true,
  descending: false,
  ...overrides,
});

const constraint = (overrides: Partial<SourceConstraint> = {}): SourceConstraint => ({
  schema: 'public',
  on: 't',
  onKind: 'table',
  name: 'c',
  type: 'c',
  validated: true,
  ...overrides,
});

describe('database settings', () => {
  it('splits a list setting as pg_db_role_setting stores it', () => {
    expect(splitSettingList('"$user", public, "My ""S"", x", extensions')).toEqual([
      '$user',
      'public',
      'My "S", x',
      'extensions',
    ]);
  });

  it('quotes a list setting element by element, and any other as one literal', () => {
    expect(alterSettingStatement('db', null, 'search_path="$user", public, extensions')).toBe(
      `ALTER DATABASE "db" SET "search_path" TO '$user', 'public', 'extensions'`,
    );
    expect(alterSettingStatement('My Db', 'app', 'statement_timeout=5s')).toBe(
      `ALTER ROLE "app" IN DATABASE "My Db" SET "statement_timeout" TO '5s'`,
    );
    expect(alterSettingStatement('db', null, 'broken')).toBeUndefined();
  });

  it('fails a setting that is missing, and names one that could not be re-applied', () => {
    const source = [
      { role: null, setting: 'search_path=a, b' },
      { role: 'ghost', setting: 'work_mem=64MB' },
    ];
    expect(compareSettings(source, [], []).status).toBe('failed');
    const named = compareSettings(
      source,
      [{ role: null, setting: 'search_path=a, b' }],
      ['ALTER ROLE ghost IN DATABASE … SET work_mem=64MB: role "ghost" does not exist'],
    );
    expect(named.status).toBe('passed');
    expect(named.detail).toMatch(/1 of 2 settings .* not re-applied: ALTER ROLE ghost/);
  });
});

describe('sequences against the source', () => {
  it('passes the same value, and a value the source reached later during the dump', () => {
    expect(compareSequences([seq()], [seq()]).status).toBe('passed');
    const later = compareSequences([seq()], [seq({ lastValue: '12' })]);
    expect(later.status).toBe('passed');
    expect(later.detail).toMatch(/ahead of the value read at the snapshot.*public\.s/);
  });

  it('fails a sequence behind the source or missing, counting down as well as up', () => {
    expect(compareSequences([seq()], [seq({ lastValue: '9' })]).status).toBe('failed');
    expect(compareSequences([seq()], [seq({ isCalled: false })]).detail).toMatch(
      /restored at 10 \(not yet used\), the source was at 10/,
    );
    expect(compareSequences([seq()], []).detail).toMatch(/missing after the restore: public\.s/);
    const down = seq({ lastValue: '-10', descending: true });
    expect(compareSequences([down], [seq({ lastValue: '-12', descending: true })]).status).toBe(
      'passed',
    );
    expect(compareSequences([down], [seq({ lastValue: '-9', descending: true })]).status).toBe(
      'failed',
    );
  });

  it('reproduces a source sequence behind its column without a word about it', () => {
    // The source held 8 sequences behind rows inserted with explicit ids (the regression
    // database's identity tests): restored at the source's value, they pass.
    const behind = seq({ name: 'itest1_a_seq', lastValue: '1', isCalled: false });
    expect(compareSequences([behind], [behind])).toEqual({
      status: 'passed',
      detail: "all 1 sequences at the source's values",
    });
  });
});

describe('constraints against the source', () => {
  it('finds a NOT VALID domain constraint as a domain constraint', () => {
    const dom = constraint({
      on: 'constraint_comments_dom',
      onKind: 'domain',
      name: 'inv_ck',
      validated: false,
    });
    const result = compareConstraints([dom], [dom]);
    expect(result.status).toBe('passed');
    expect(result.detail).toMatch(/1 NOT VALID in the source and restored NOT VALID/);
    expect(compareConstraints([dom], [{ ...dom, onKind: 'table' }]).detail).toMatch(
      /missing after the restore: public\.constraint_comments_dom\.inv_ck \(domain\)/,
    );
  });

  it('fails a changed validation state or type, and notes one the source lacks', () => {
    expect(compareConstraints([constraint()], [constraint({ validated: false })]).detail).toMatch(
      /public\.t\.c is NOT VALID, validated in the source/,
    );
    expect(compareConstraints([constraint()], [constraint({ type: 'u' })]).status).toBe('failed');
    const extra = compareConstraints([], [constraint({ name: 'added' })]);
    expect(extra.status).toBe('passed');
    expect(extra.detail).toMatch(/not in the source: public\.t\.added/);
  });
});

describe('platform rows against the source', () => {
  const secrets = { table: 'vault.secrets', rows: 2, md5: 'a'.repeat(32) };

  it('fails the same count of rows with other values: a secret encrypted a second time', () => {
    const twice = compareContents([secrets], [{ ...secrets, md5: 'b'.repeat(32) }]);
    expect(twice).toEqual({
      status: 'failed',
      detail: 'vault.secrets holds 2 rows as the source, but other values',
    });
    expect(compareContents([secrets], []).detail).toBe(
      'vault.secrets cannot be read on the target',
    );
    expect(compareContents([secrets], [secrets]).status).toBe('passed');
  });
});
