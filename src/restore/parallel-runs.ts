import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/*
 * A parallel restore in one pg_restore run may add a post-data entry before the data it
 * constrains is loaded: pg_restore makes a post-data entry wait for a table's data only when
 * the entry depends on that table (repoint_table_dependencies). A NOT VALID domain constraint
 * depends on its domain, not on the tables using it; added early, it rejects rows the source
 * holds. Running the post-data section only after all the data avoids that, but then no index
 * is built while other tables still load. So the runs are:
 *
 * 1. the pre-data section;
 * 2. the data of tables that must load in one session first (extension configuration tables);
 * 3. the rest of the data with the post-data entries that only build on tables whose data they
 *    wait for (indexes, primary key, unique and foreign key constraints), in parallel;
 * 4. every other post-data entry, in parallel, once all the data is in.
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

/** The list files of a parallel restore after its pre-data section, in the order they run. */
export interface ParallelRuns {
  /** Data that loads in one session first; undefined when there is none. */
  serial?: string;
  /** The rest of the data, with the post-data entries that wait for their tables' data. */
  main: string;
  /** The other post-data entries; undefined when there are none. */
  after?: string;
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
 * Plans the runs after the pre-data section (see above). `data` and `postData` are the dump
 * ids pg_restore puts in those sections; `isSerial` picks the data that loads first.
 */
export function planParallelRuns(options: {
  entries: ListedEntry[];
  data: Set<number>;
  postData: Set<number>;
  isSerial: (entry: ListedEntry) => boolean;
}): ParallelRuns {
  const { entries, data, postData } = options;
  const serial = new Set(
    entries.filter((e) => data.has(e.id) && options.isSerial(e)).map((e) => e.id),
  );
  const withData = postDataWithTheData(entries, postData);
  const listOf = (ids: Set<number>): string =>
    entries.map((e) => (ids.has(e.id) ? e.line : `;${e.line}`)).join('\n') + '\n';
  const main = new Set([...data].filter((id) => !serial.has(id)));
  for (const id of withData) main.add(id);
  const after = new Set([...postData].filter((id) => !withData.has(id)));
  return {
    serial: serial.size > 0 ? listOf(serial) : undefined,
    main: listOf(main),
    after: after.size > 0 ? listOf(after) : undefined,
  };
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
  const [verbose, data, postData] = await Promise.all([
    options.list(['--verbose']),
    options.list(['--section=data']),
    options.list(['--section=post-data']),
  ]);
  const runs = planParallelRuns({
    entries: parseVerboseListing(verbose),
    data: listedIds(data),
    postData: listedIds(postData),
    isSerial: options.isSerial,
  });
  const jobs = `--jobs=${options.jobs}`;
  const dir = path.dirname(options.archivePath);
  const list = async (name: string, text: string): Promise<string> => {
    const file = path.join(dir, `restore-${name}.list`);
    await writeFile(file, text);
    return `--use-list=${file}`;
  };
  const args: string[][] = [['--section=pre-data']];
  if (runs.serial) args.push([await list('serial', runs.serial)]);
  args.push([await list('main', runs.main), jobs]);
  if (runs.after) args.push([await list('after', runs.after), jobs]);
  return args;
}
