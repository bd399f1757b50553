import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/*
 * A parallel restore in one pg_restore run may add a post-data entry before the data it
 * constrains is loaded: pg_restore makes a post-data entry wait for a table's data only when
 * the entry depends on that table (repoint_table_dependencies). A NOT VALID domain constraint
 * depends on its domain, not on the tables using it; added early, it rejects rows the source
 * holds. Running the post-data section only after all the data avoids that, but then no index
 * is built while other tables still load. So a parallel restore runs pg_restore twice:
 *
 * 1. the schema, then the data with the post-data entries that only build on tables whose data
 *    they wait for (indexes, primary key, unique and foreign key constraints), in parallel;
 * 2. every other post-data entry, in parallel, once all the data is in.
 *
 * The schema and the data share a run because pg_restore loads a table it created in the same
 * run with TRUNCATE and COPY in one transaction, which `wal_level=minimal` does not write to the
 * write-ahead log (restore_toc_entry); a table created by an earlier run is loaded with logging.
 * Data that must load in one session before the rest (extensions' configuration tables) splits
 * the first run in three: the schema, that data, then the rest with the jobs.
 */

/** Post-data kinds that build on their tables and neither reject nor change rows loaded later. */
const WITH_DATA_KINDS = new Set(['INDEX', 'CONSTRAINT', 'FK CONSTRAINT']);

/** One entry of `pg_restore --list --verbose`. */
export interface ListedEntry {
  id: number;
  /** The line as pg_restore prints it, which a `--use-list` file repeats. */
  line: string;
  /** The entry's kind, such as `TABLE DATA`, `INDEX` or `CHECK CONSTRAINT`. */
  kind: string;
  /** Dump ids of the entries it depends on. */
  dependsOn: number[];
}

/** One pg_restore run of a parallel restore. */
export interface RestoreRun {
  /** What the run restores, and the name of its list file. */
  name: 'schema' | 'serial' | 'main' | 'after';
  /** Its `--use-list` file: the archive's lines, those it leaves out commented out. */
  list: string;
  /** Whether it runs with the jobs (`--jobs`), or in one session. */
  parallel: boolean;
}

const KINDS = [
  'TABLE DATA',
  'TABLE ATTACH',
  'TABLE',
  'FK CONSTRAINT',
  'CHECK CONSTRAINT',
  'CONSTRAINT',
  'INDEX ATTACH',
  'INDEX',
];
const ENTRY_LINE = /^(\d+);\s+\d+\s+\d+\s+(.*)$/;
const DEPENDS_LINE = /^;\s*depends on:(.*)$/;

/** Reads `pg_restore --list --verbose`: each entry, its kind as far as the plan needs it, its dependencies. */
export function parseVerboseListing(text: string): ListedEntry[] {
  const entries: ListedEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    const entry = ENTRY_LINE.exec(line);
    if (entry) {
      const rest = entry[2];
      const kind = KINDS.find((k) => rest.startsWith(`${k} `)) ?? 'OTHER';
      entries.push({ id: Number(entry[1]), line, kind, dependsOn: [] });
      continue;
    }
    const depends = DEPENDS_LINE.exec(line);
    if (depends && entries.length > 0) {
      const ids = depends[1].trim().split(/\s+/).filter(Boolean).map(Number);
      entries[entries.length - 1].dependsOn.push(...ids);
    }
  }
  return entries;
}

/** Dump ids of the entries a `pg_restore --list` text names. */
export function listedIds(text: string): Set<number> {
  const ids = new Set<number>();
  for (const line of text.split('\n')) {
    const m = /^(\d+);/.exec(line);
    if (m) ids.add(Number(m[1]));
  }
  return ids;
}

/**
 * Plans the runs of a parallel restore (see above). `preData`, `data` and `postData` are the
 * dump ids pg_restore puts in those sections; `isSerial` picks the data that loads first.
 */
export function planParallelRuns(options: {
  entries: ListedEntry[];
  preData: Set<number>;
  data: Set<number>;
  postData: Set<number>;
  isSerial: (entry: ListedEntry) => boolean;
}): RestoreRun[] {
  const { entries, preData, data, postData } = options;
  const serial = new Set(
    entries.filter((e) => data.has(e.id) && options.isSerial(e)).map((e) => e.id),
  );
  const withData = postDataWithTheData(entries, postData);
  const run = (name: RestoreRun['name'], ids: Iterable<number>, parallel: boolean): RestoreRun => {
    const wanted = new Set(ids);
    const lines = entries.map((e) => (wanted.has(e.id) ? e.line : `;${e.line}`));
    return { name, list: lines.join('\n') + '\n', parallel };
  };
  const rest = [...data].filter((id) => !serial.has(id));
  const runs =
    serial.size > 0
      ? [
          run('schema', preData, false),
          run('serial', serial, false),
          run('main', [...rest, ...withData], true),
        ]
      : [run('main', [...preData, ...rest, ...withData], true)];
  const after = [...postData].filter((id) => !withData.has(id));
  if (after.length > 0) runs.push(run('after', after, true));
  return runs;
}

/**
 * The post-data entries that may run beside the data: of a kind in WITH_DATA_KINDS, and
 * depending only on tables that have data (pg_restore makes them wait for it), on other such
 * entries, or on what the earlier sections made. Anything else stays for the last run.
 */
function postDataWithTheData(entries: ListedEntry[], postData: Set<number>): Set<number> {
  const byId = new Map(entries.map((e) => [e.id, e]));
  const tablesWithData = new Set(
    entries.filter((e) => e.kind === 'TABLE DATA').flatMap((e) => e.dependsOn),
  );
  const chosen = new Set(
    entries.filter((e) => postData.has(e.id) && WITH_DATA_KINDS.has(e.kind)).map((e) => e.id),
  );
  const allowed = (dep: number): boolean => {
    const d = byId.get(dep);
    if (!d) return true;
    if (postData.has(dep)) return chosen.has(dep);
    if (d.kind === 'TABLE') return tablesWithData.has(dep);
    return d.kind !== 'TABLE ATTACH';
  };
  for (let changed = true; changed;) {
    changed = false;
    for (const id of chosen) {
      if (byId.get(id)?.dependsOn.every(allowed)) continue;
      chosen.delete(id);
      changed = true;
    }
  }
  return chosen;
}

/**
 * The `pg_restore` argument lists of a parallel restore of `archivePath` (see above), with the
 * list files written beside the archive.
 */
export async function parallelRunArgs(options: {
  archivePath: string;
  jobs: number;
  /** `pg_restore --list` of the archive, with these options. */
  list: (extra: string[]) => Promise<string>;
  isSerial: (entry: ListedEntry) => boolean;
}): Promise<string[][]> {
  const [verbose, preData, data, postData] = await Promise.all([
    options.list(['--verbose']),
    options.list(['--section=pre-data']),
    options.list(['--section=data']),
    options.list(['--section=post-data']),
  ]);
  const runs = planParallelRuns({
    entries: parseVerboseListing(verbose),
    preData: listedIds(preData),
    data: listedIds(data),
    postData: listedIds(postData),
    isSerial: options.isSerial,
  });
  const dir = path.dirname(options.archivePath);
  const args: string[][] = [];
  for (const run of runs) {
    const file = path.join(dir, `restore-${run.name}.list`);
    await writeFile(file, run.list);
    args.push([`--use-list=${file}`, ...(run.parallel ? [`--jobs=${options.jobs}`] : [])]);
  }
  return args;
}
