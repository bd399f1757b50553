import { open } from 'node:fs/promises';
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { describeExit, startProcess } from '../core/process.js';
import { childEnv, type ConnectionInfo } from '../postgres/connection.js';

/** One extracted table against its live counterpart. */
export interface LiveDiff {
  /** The live table, `schema.name`. */
  table: string;
  /** Its copy in the extract schema, `schema.name`. */
  extracted: string;
  /** Rows of the backup's copy. */
  rows: number;
  primaryKey: string[];
  /** Rows in the backup that live lacks (by primary key). */
  missing?: number;
  /** Rows in live that the backup lacks. */
  extra?: number;
  /** Rows in both whose other columns differ. */
  changed?: number;
  /** The CSV of the differences (capped at compare-limit rows), when there were any. */
  csv?: string;
  /** Why the table was not compared. */
  skipped?: string;
  /** How to copy the backup's rows that live lacks back, by primary key. */
  copyBack?: string;
}

interface Column {
  name: string;
  /** The name as SQL needs it, quoted by the server only where it must be. */
  ident: string;
  type: string;
  /** pg_attribute's attgenerated and attidentity ('' when neither). */
  generated: string;
  identity: string;
}

/** A column both tables have, with its type in each. */
interface CommonColumn extends Column {
  liveType: string;
  sameType: boolean;
  /** Generated in the live table: compared, never copied back. */
  liveGenerated: boolean;
}

interface Pair {
  side: string;
  live: string;
  /** What the comparison reads: `ONLY` a table (an inheritance child's rows are its own). */
  sideFrom: string;
  liveFrom: string;
  key: CommonColumn[];
  common: CommonColumn[];
  /** Whether a live column is GENERATED ALWAYS AS IDENTITY (copying back then overrides it). */
  liveIdentityAlways: boolean;
}

async function columns(client: pg.Client, relation: string): Promise<Column[]> {
  const r = await client.query<Column>(
    `SELECT attname AS name, quote_ident(attname) AS ident, format_type(atttypid, atttypmod) AS type,
            attgenerated::text AS generated, attidentity::text AS identity FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [relation],
  );
  return r.rows;
}

async function primaryKey(client: pg.Client, relation: string): Promise<string[]> {
  const r = await client.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [relation],
  );
  return r.rows.map((row) => row.name);
}

/** The side table and its live counterpart, or why they cannot be compared. */
async function pairUp(
  client: pg.Client,
  side: { schema: string; name: string },
  live: { schema: string; name: string },
): Promise<Pair | string> {
  const names = await client.query<{
    side: string;
    live: string;
    found: string | null;
    side_kind: string;
    live_kind: string | null;
  }>(
    `SELECT format('%I.%I', $1::text, $2::text) AS side, format('%I.%I', $3::text, $4::text) AS live,
            to_regclass(format('%I.%I', $3::text, $4::text))::text AS found,
            (SELECT relkind::text FROM pg_class WHERE oid = format('%I.%I', $1::text, $2::text)::regclass) AS side_kind,
            (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(format('%I.%I', $3::text, $4::text))) AS live_kind`,
    [side.schema, side.name, live.schema, live.name],
  );
  const { side: sideName, live: liveName, found } = names.rows[0];
  if (found === null) return `no table ${live.schema}.${live.name} in the target`;
  const from = (name: string, kind: string | null): string =>
    kind === 'p' ? name : `ONLY ${name}`;
  const key = await primaryKey(client, sideName);
  if (key.length === 0) return 'no primary key';
  const sideColumns = await columns(client, sideName);
  const liveList = await columns(client, liveName);
  const liveColumns = new Map(liveList.map((c) => [c.name, c.type]));
  const generated = new Set(liveList.filter((c) => c.generated !== '').map((c) => c.name));
  const missingKey = key.filter((k) => !liveColumns.has(k));
  if (missingKey.length > 0) return `live table lacks key column(s) ${missingKey.join(', ')}`;
  const common = sideColumns
    .filter((c) => liveColumns.has(c.name))
    .map((c) => {
      const liveType = liveColumns.get(c.name) as string;
      return {
        ...c,
        liveType,
        sameType: liveType === c.type,
        liveGenerated: generated.has(c.name),
      };
    });
  return {
    side: sideName,
    live: liveName,
    sideFrom: from(sideName, names.rows[0].side_kind),
    liveFrom: from(liveName, names.rows[0].live_kind),
    key: key.map((k) => common.find((c) => c.name === k) as CommonColumn),
    common,
    liveIdentityAlways: liveList.some((c) => c.identity === 'a'),
  };
}

/** `b.col` against `l.col`: directly when the types match (indexes help), else as text. */
function equalKeys(pair: Pair): string {
  return pair.key
    .map((c) => {
      const q = c.ident;
      return c.sameType ? `l.${q} = b.${q}` : `l.${q}::text = b.${q}::text`;
    })
    .join(' AND ');
}

function diffQueries(pair: Pair): { missing: string; extra: string; changed: string } {
  const on = equalKeys(pair);
  const values = (alias: string): string =>
    `ROW(${pair.common.map((c) => `${alias}.${c.ident}::text`).join(', ')})`;
  return {
    missing: `FROM ${pair.sideFrom} b WHERE NOT EXISTS (SELECT 1 FROM ${pair.liveFrom} l WHERE ${on})`,
    extra: `FROM ${pair.liveFrom} l WHERE NOT EXISTS (SELECT 1 FROM ${pair.sideFrom} b WHERE ${on})`,
    changed: `FROM ${pair.sideFrom} b JOIN ${pair.liveFrom} l ON ${on} WHERE ${values('b')} IS DISTINCT FROM ${values('l')}`,
  };
}

/** The differences as CSV rows: the change, the key, and both rows as JSON. */
function csvQuery(pair: Pair, limit: number): string {
  const q = diffQueries(pair);
  const key = (alias: string): string =>
    pair.key.map((c) => `${alias}.${c.ident}::text AS ${c.ident}`).join(', ');
  return `SELECT change, ${pair.key.map((c) => c.ident).join(', ')}, backup_row, live_row FROM (
      SELECT 1 AS o, 'missing from live' AS change, ${key('b')}, row_to_json(b.*)::text AS backup_row, NULL::text AS live_row ${q.missing}
      UNION ALL
      SELECT 2, 'changed', ${key('b')}, row_to_json(b.*)::text, row_to_json(l.*)::text ${q.changed}
      UNION ALL
      SELECT 3, 'not in backup', ${key('l')}, NULL::text, row_to_json(l.*)::text ${q.extra}
    ) d ORDER BY o LIMIT ${limit}`;
}

/**
 * The INSERT … SELECT that puts back the backup's rows live lacks, by primary key: generated
 * columns left to the live table, an always-identity column's value kept (OVERRIDING SYSTEM VALUE).
 */
export function copyBackStatement(pair: Pair): string {
  const copied = pair.common.filter((c) => !c.liveGenerated);
  const names = copied.map((c) => c.ident).join(', ');
  const values = copied
    .map((c) => (c.sameType ? `b.${c.ident}` : `b.${c.ident}::text::${c.liveType}`))
    .join(', ');
  return (
    `INSERT INTO ${pair.live} (${names})${pair.liveIdentityAlways ? ' OVERRIDING SYSTEM VALUE' : ''}\n` +
    `SELECT ${values}\n  FROM ${pair.sideFrom} b\n` +
    ` WHERE NOT EXISTS (SELECT 1 FROM ${pair.liveFrom} l WHERE ${equalKeys(pair)});`
  );
}

/**
 * Compares one extracted table with its live counterpart by primary key: counts of rows
 * missing from live, only in live, and changed; the first `limit` of them as CSV in `csvFile`.
 */
export async function compareWithLive(o: {
  client: pg.Client;
  side: { schema: string; name: string };
  live: { schema: string; name: string };
  rows: number;
  limit: number;
  csvFile: string;
  psql: string;
  connection: ConnectionInfo;
  database: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}): Promise<LiveDiff> {
  const diff: LiveDiff = {
    table: `${o.live.schema}.${o.live.name}`,
    extracted: `${o.side.schema}.${o.side.name}`,
    rows: o.rows,
    primaryKey: [],
  };
  const pair = await pairUp(o.client, o.side, o.live);
  if (typeof pair === 'string') return { ...diff, skipped: pair };
  diff.primaryKey = pair.key.map((c) => c.name);
  const q = diffQueries(pair);
  const counts = await o.client.query<{ missing: string; extra: string; changed: string }>(
    `SELECT (SELECT count(*) ${q.missing})::text AS missing, (SELECT count(*) ${q.extra})::text AS extra,
            (SELECT count(*) ${q.changed})::text AS changed`,
  );
  diff.missing = Number(counts.rows[0].missing);
  diff.extra = Number(counts.rows[0].extra);
  diff.changed = Number(counts.rows[0].changed);
  diff.copyBack = copyBackStatement(pair);
  o.logger.info(
    `${diff.table}: ${diff.missing} missing from live, ${diff.changed} changed, ${diff.extra} not in the backup`,
  );
  if (diff.missing + diff.extra + diff.changed > 0 && o.limit > 0) {
    await copyOut({ ...o, query: csvQuery(pair, o.limit), file: o.csvFile });
    diff.csv = o.csvFile;
  }
  return diff;
}

/** `COPY (query) TO STDOUT` as CSV with a header, through psql, into `file`. */
async function copyOut(o: {
  psql: string;
  connection: ConnectionInfo;
  database: string;
  env: NodeJS.ProcessEnv;
  query: string;
  file: string;
}): Promise<void> {
  const out = await open(o.file, 'w', 0o600);
  try {
    const proc = startProcess(
      o.psql,
      [
        '-X',
        '-q',
        '--no-password',
        '-v',
        'ON_ERROR_STOP=1',
        '-c',
        `COPY (${o.query}) TO STDOUT WITH (FORMAT csv, HEADER)`,
      ],
      { env: childEnv(o.env, o.connection, o.database), stdio: ['ignore', out.fd, 'pipe'] },
    );
    const exit = await proc.exited;
    if (exit.code !== 0) throw new Error(describeExit('psql (comparison CSV)', exit));
  } finally {
    await out.close();
  }
}
