import type pg from 'pg';
import type { Manifest } from '../catalog/manifest.js';
import { errorMessage } from '../core/errors.js';
import { quoteIdent, quoteLiteral } from '../postgres/connection.js';
import { selectionMatcher } from '../postgres/inventory.js';
import {
  countLargeObjects,
  readConstraints,
  readContents,
  readExtensions,
  readPolicies,
  readRowSecurity,
  readSequences,
  readSettings,
  type SourceConstraint,
  type SourcePolicy,
  type SourceSequence,
  type SourceState,
  type TableContent,
} from '../postgres/source-state.js';
import type { CheckResult } from './checks.js';

/** The names of the checks that compare the restored database with the source's state. */
export const StateCheckNames = {
  Constraints: 'Constraints',
  Sequences: 'Sequences',
  RowSecurity: 'Row security and policies',
  Extensions: 'Extensions',
  LargeObjects: 'Large objects',
  Settings: 'Database settings',
  Contents: 'Platform rows (users, files, secrets)',
} as const;

const CONSTRAINT_KINDS: Record<string, string> = {
  p: 'primary keys',
  u: 'unique',
  f: 'foreign keys',
  c: 'check',
  x: 'exclusion',
  t: 'constraint triggers',
};

/**
 * Re-applies what pg_dump leaves behind, as far as the restoring role may: the database's
 * settings (`ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE … SET`) and the values of
 * sequences that belong to extensions. Returns what could not be re-applied, each with why.
 */
export async function reapplySourceState(
  client: pg.Client,
  database: string,
  state: SourceState,
): Promise<string[]> {
  const notApplied: string[] = [];
  for (const s of state.settings) {
    const statement = alterSettingStatement(database, s.role, s.setting);
    const what = `${s.role ? `ALTER ROLE ${s.role} IN DATABASE` : 'ALTER DATABASE'} … SET ${s.setting}`;
    if (!statement) {
      notApplied.push(`${what} (the setting cannot be read)`);
      continue;
    }
    await attempt(client, statement, (error) => notApplied.push(`${what}: ${error}`));
  }
  for (const seq of state.sequences.filter((s) => s.extension !== undefined)) {
    const name = `${quoteIdent(seq.schema)}.${quoteIdent(seq.name)}`;
    await attempt(
      client,
      `SELECT pg_catalog.setval(${quoteLiteral(name)}, ${seq.lastValue}, ${seq.isCalled})`,
      (error) =>
        notApplied.push(`the value of ${seq.schema}.${seq.name} (${seq.extension}): ${error}`),
    );
  }
  return notApplied;
}

/** Runs a statement in a savepoint-free way: a failure is handed to `onError`, not thrown. */
async function attempt(
  client: pg.Client,
  sql: string,
  onError: (message: string) => void,
): Promise<void> {
  try {
    await client.query(sql);
  } catch (error) {
    onError(errorMessage(error));
  }
}

/** Settings whose value is a list of names, which pg_dump quotes one by one (GUC_LIST_QUOTE). */
const LIST_SETTINGS = new Set([
  'local_preload_libraries',
  'search_path',
  'session_preload_libraries',
  'shared_preload_libraries',
  'temp_tablespaces',
  'unix_socket_directories',
]);

/**
 * `ALTER DATABASE db SET name TO value` for one `name=value` of pg_db_role_setting, quoting a
 * list setting element by element as pg_dump's makeAlterConfigCommand does.
 */
export function alterSettingStatement(
  database: string,
  role: string | null,
  setting: string,
): string | undefined {
  const eq = setting.indexOf('=');
  if (eq <= 0) return undefined;
  const name = setting.slice(0, eq);
  const value = setting.slice(eq + 1);
  const values = LIST_SETTINGS.has(name.toLowerCase())
    ? splitSettingList(value).map(quoteLiteral).join(', ')
    : quoteLiteral(value);
  const head = role
    ? `ALTER ROLE ${quoteIdent(role)} IN DATABASE ${quoteIdent(database)}`
    : `ALTER DATABASE ${quoteIdent(database)}`;
  return `${head} SET ${quoteIdent(name)} TO ${values === '' ? "''" : values}`;
}

/** Splits `"$user", public, "My Schema"` into its elements, unquoting double-quoted ones. */
export function splitSettingList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < value.length) {
    while (value[i] === ' ' || value[i] === ',') i++;
    if (i >= value.length) break;
    let element = '';
    if (value[i] === '"') {
      i++;
      while (i < value.length) {
        if (value[i] === '"' && value[i + 1] === '"') {
          element += '"';
          i += 2;
        } else if (value[i] === '"') {
          i++;
          break;
        } else element += value[i++];
      }
    } else {
      while (i < value.length && value[i] !== ',') element += value[i++];
      element = element.trim();
    }
    out.push(element);
  }
  return out;
}

/**
 * Compares the restored database with the source's state recorded in the manifest, item by
 * item: constraints, sequences, row security and policies, extensions, large objects and the
 * database's settings. `notApplied` names what reapplySourceState could not re-apply.
 */
export async function compareWithSource(
  client: pg.Client,
  manifest: Manifest,
  state: SourceState,
  notApplied: string[] = [],
  notRestored: ReadonlySet<string> = new Set(),
  unvalidated: ReadonlySet<string> = new Set(),
): Promise<CheckResult[]> {
  const matcher = selectionMatcher({
    schemas: manifest.options?.schemas ?? [],
    excludeSchemas: manifest.options?.excludeSchemas ?? [],
    excludeTableData: [],
  });
  const selected = <T extends { schema: string }>(rows: T[]): T[] =>
    rows.filter((r) => matcher.schemaIncluded(r.schema));
  const wholeDatabase = (manifest.options?.schemas ?? []).length === 0;
  // Extensions' sequences come with a whole-database backup; with selected schemas, the target's.
  const carried = (s: SourceSequence): boolean =>
    s.extension !== undefined ? wholeDatabase : matcher.schemaIncluded(s.schema);
  return [
    await timed(StateCheckNames.Constraints, async () =>
      compareConstraints(state.constraints, selected(await readConstraints(client)), unvalidated),
    ),
    await timed(StateCheckNames.Sequences, async () =>
      compareSequences(
        state.sequences.filter((s) => carried(s) && !notRestored.has(sequenceName(s))),
        (await readSequences(client)).filter(carried),
      ),
    ),
    await timed(StateCheckNames.RowSecurity, async () =>
      compareRowSecurity(
        state,
        selected(await readRowSecurity(client)),
        selected(await readPolicies(client)),
      ),
    ),
    await timed(StateCheckNames.Extensions, async () =>
      wholeDatabase
        ? compareExtensions(state.extensions, await readExtensions(client))
        : {
            status: 'skipped',
            detail: 'a backup of selected schemas carries no extensions: the target provides them',
          },
    ),
    await timed(StateCheckNames.LargeObjects, async () =>
      state.largeObjects === null
        ? { status: 'skipped', detail: 'a backup of selected schemas carries no large objects' }
        : compareCount('large objects', state.largeObjects, await countLargeObjects(client)),
    ),
    await timed(StateCheckNames.Settings, async () =>
      compareSettings(state.settings, await readSettings(client), notApplied),
    ),
    ...(state.contents && state.contents.length > 0
      ? [
          await timed(StateCheckNames.Contents, async () =>
            compareContents(
              state.contents!,
              await readContents(
                client,
                state.contents!.map((c) => c.table),
              ),
            ),
          ),
        ]
      : []),
  ];
}

/**
 * The platform tables' rows, figure against figure: the same count with other rows (a secret
 * encrypted a second time by a trigger during the load) fails.
 */
export function compareContents(source: TableContent[], restored: TableContent[]): Outcome {
  const byTable = new Map(restored.map((c) => [c.table, c]));
  const problems = source.flatMap((c) => {
    const r = byTable.get(c.table);
    if (!r) return [`${c.table} cannot be read on the target`];
    if (r.rows !== c.rows) return [`${c.table} holds ${r.rows} rows, ${c.rows} in the source`];
    if (r.md5 !== c.md5) return [`${c.table} holds ${c.rows} rows as the source, but other values`];
    return [];
  });
  if (problems.length > 0) return { status: 'failed', detail: problems.join('; ') };
  return {
    status: 'passed',
    detail: `every row of ${source.map((c) => c.table).join(', ')} equals the source's (encrypted secrets byte for byte, so they decrypt to the source's values under the same project key)`,
  };
}

type Outcome = Pick<CheckResult, 'status' | 'detail'>;

async function timed(name: string, run: () => Promise<Outcome>): Promise<CheckResult> {
  const started = Date.now();
  try {
    return { name, ...(await run()), seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    return {
      name,
      status: 'failed',
      detail: `the check could not run: ${errorMessage(error)}`,
      seconds: (Date.now() - started) / 1000,
    };
  }
}

const constraintKey = (c: SourceConstraint): string => `${c.schema}.${c.on}.${c.name}`;

export function compareConstraints(
  source: SourceConstraint[],
  restored: SourceConstraint[],
  unvalidated: ReadonlySet<string> = new Set(),
): Outcome {
  const byKey = new Map(restored.map((c) => [`${c.onKind}:${constraintKey(c)}`, c]));
  const missing: string[] = [];
  const differs: string[] = [];
  const counts: Record<string, number> = {};
  let notValid = 0;
  const outside: string[] = [];
  for (const c of source) {
    const r = byKey.get(`${c.onKind}:${constraintKey(c)}`);
    const label = `${constraintKey(c)}${c.onKind === 'domain' ? ' (domain)' : ''}`;
    if (!r) {
      missing.push(label);
      continue;
    }
    byKey.delete(`${c.onKind}:${constraintKey(c)}`);
    counts[c.type] = (counts[c.type] ?? 0) + 1;
    if (!c.validated) notValid++;
    if (r.type !== c.type) differs.push(`${label} is of type ${r.type}, ${c.type} in the source`);
    else if (c.validated && !r.validated && unvalidated.has(constraintKey(c))) outside.push(label);
    else if (r.validated !== c.validated) {
      differs.push(
        `${label} is ${r.validated ? 'validated' : 'NOT VALID'}, ${c.validated ? 'validated' : 'NOT VALID'} in the source`,
      );
    }
  }
  const problems = [
    ...(missing.length ? [`missing after the restore: ${missing.join(', ')}`] : []),
    ...differs,
  ];
  if (problems.length > 0) return { status: 'failed', detail: problems.join('; ') };
  const kinds = Object.entries(CONSTRAINT_KINDS)
    .filter(([k]) => counts[k])
    .map(([k, label]) => `${counts[k]} ${label}`)
    .join(', ');
  const extra = [...byKey.values()].map(constraintKey);
  return {
    status: 'passed',
    detail:
      `all ${source.length} constraints of the source restored as they were${kinds ? ` (${kinds})` : ''}` +
      (notValid ? `; ${notValid} NOT VALID in the source and restored NOT VALID` : '') +
      (outside.length
        ? `; ${outside.length} foreign key(s) restored NOT VALID, as the rows they refer to are not in the backup: ${outside.join(', ')}`
        : '') +
      (extra.length ? `; not in the source: ${extra.join(', ')}` : ''),
  };
}

const sequenceName = (s: SourceSequence): string => `${s.schema}.${s.name}`;

/**
 * A sequence's value is read outside the snapshot, before pg_dump reads its own, so a restored
 * value ahead of the recorded one (a source that used the sequence during the dump) is the
 * source's later state, not a fault.
 */
export function compareSequences(source: SourceSequence[], restored: SourceSequence[]): Outcome {
  const byName = new Map(restored.map((s) => [sequenceName(s), s]));
  const missing: string[] = [];
  const behind: string[] = [];
  const ahead: string[] = [];
  for (const s of source) {
    const r = byName.get(sequenceName(s));
    if (!r) {
      missing.push(sequenceName(s));
      continue;
    }
    const order = compareSequencePosition(r, s);
    if (order < 0) {
      behind.push(
        `${sequenceName(s)} restored at ${describeSequence(r)}, the source was at ${describeSequence(s)}`,
      );
    } else if (order > 0) ahead.push(sequenceName(s));
  }
  const problems = [
    ...(missing.length ? [`missing after the restore: ${missing.join(', ')}`] : []),
    ...(behind.length ? [`behind the source: ${behind.join('; ')}`] : []),
  ];
  if (problems.length > 0) return { status: 'failed', detail: problems.join('; ') };
  const own = source.filter((s) => s.extension !== undefined).length;
  return {
    status: 'passed',
    detail:
      `all ${source.length} sequences at the source's values` +
      (own ? ` (${own} of them belong to extensions and were set after the restore)` : '') +
      (ahead.length
        ? `; ahead of the value read at the snapshot, as pg_dump read them later: ${ahead.join(', ')}`
        : ''),
  };
}

function describeSequence(s: SourceSequence): string {
  return `${s.lastValue}${s.isCalled ? '' : ' (not yet used)'}`;
}

/** Negative when `a` would hand out a value the sequence already handed out at `b`. */
function compareSequencePosition(a: SourceSequence, b: SourceSequence): number {
  const next = (s: SourceSequence): bigint =>
    BigInt(s.lastValue) + (s.isCalled ? (s.descending ? -1n : 1n) : 0n);
  const diff = next(a) - next(b);
  const signed = a.descending ? -diff : diff;
  return signed === 0n ? 0 : signed > 0n ? 1 : -1;
}

const policyKey = (p: SourcePolicy): string => `${p.schema}.${p.table}.${p.name}`;

export function compareRowSecurity(
  state: SourceState,
  restoredFlags: SourceState['rowSecurity'],
  restoredPolicies: SourcePolicy[],
): Outcome {
  const problems: string[] = [];
  const flags = new Map(restoredFlags.map((f) => [`${f.schema}.${f.table}`, f]));
  for (const f of state.rowSecurity) {
    const r = flags.get(`${f.schema}.${f.table}`);
    const want = `${f.enabled ? 'enabled' : 'disabled'}${f.forced ? ', forced' : ''}`;
    const got = r
      ? `${r.enabled ? 'enabled' : 'disabled'}${r.forced ? ', forced' : ''}`
      : 'disabled';
    if (want !== got)
      problems.push(`${f.schema}.${f.table}: row security ${got}, ${want} in the source`);
  }
  const policies = new Map(restoredPolicies.map((p) => [policyKey(p), p]));
  const missing: string[] = [];
  for (const p of state.policies) {
    const r = policies.get(policyKey(p));
    if (!r) {
      missing.push(policyKey(p));
      continue;
    }
    const differences: string[] = (['command', 'permissive', 'using', 'check'] as const).filter(
      (k) => r[k] !== p[k],
    );
    if (r.roles.join(',') !== p.roles.join(',')) differences.push('roles');
    if (differences.length)
      problems.push(`policy ${policyKey(p)} differs in ${differences.join(', ')}`);
  }
  if (missing.length) problems.unshift(`policies missing after the restore: ${missing.join(', ')}`);
  if (problems.length) return { status: 'failed', detail: problems.join('; ') };
  const enabled = state.rowSecurity.filter((f) => f.enabled).length;
  return {
    status: 'passed',
    detail:
      state.policies.length === 0 && enabled === 0
        ? 'no table of the source uses row security'
        : `${enabled} tables with row security and all ${state.policies.length} policies as in the source (commands, roles, expressions)`,
  };
}

export function compareExtensions(
  source: SourceState['extensions'],
  restored: SourceState['extensions'],
): Outcome {
  const byName = new Map(restored.map((e) => [e.name, e]));
  const missing = source.filter((e) => !byName.has(e.name)).map((e) => e.name);
  if (missing.length)
    return { status: 'failed', detail: `missing after the restore: ${missing.join(', ')}` };
  const versions = source
    .filter((e) => byName.get(e.name)?.version !== e.version)
    .map((e) => `${e.name} ${byName.get(e.name)?.version} (the source has ${e.version})`);
  return {
    status: 'passed',
    detail:
      source.length === 0
        ? 'the source has no extensions besides plpgsql'
        : `all ${source.length} extensions of the source installed` +
          (versions.length
            ? `; other versions than the source's: ${versions.join(', ')}`
            : ", at the source's versions"),
  };
}

function compareCount(what: string, source: number, restored: number): Outcome {
  return restored === source
    ? { status: 'passed', detail: `${source} ${what}, as in the source` }
    : { status: 'failed', detail: `${restored} ${what} restored, ${source} in the source` };
}

export function compareSettings(
  source: SourceState['settings'],
  restored: SourceState['settings'],
  notApplied: string[],
): Outcome {
  const key = (s: { role: string | null; setting: string }): string =>
    `${s.role ?? ''}\u0000${s.setting}`;
  const have = new Set(restored.map(key));
  const missing = source.filter((s) => !have.has(key(s)));
  const unexplained = missing.filter(
    (s) => !notApplied.some((n) => n.includes(`SET ${s.setting}`)),
  );
  const describe = (s: { role: string | null; setting: string }): string =>
    `${s.setting}${s.role ? ` for role ${s.role}` : ''}`;
  if (unexplained.length) {
    return {
      status: 'failed',
      detail: `not set on the restored database: ${unexplained.map(describe).join(', ')}`,
    };
  }
  if (source.length === 0) return { status: 'passed', detail: 'the source database sets nothing' };
  return {
    status: 'passed',
    detail:
      `${source.length - missing.length} of ${source.length} settings of the source database re-applied after the restore` +
      (notApplied.length ? `; not re-applied: ${notApplied.join('; ')}` : ''),
  };
}
