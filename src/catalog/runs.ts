import path from 'node:path';
import type { Storage } from '../storage/storage.js';
import { mapLimit } from './catalog.js';
import { runKey, runsPrefix } from './keys.js';

/** The four actions and the file backups' jobs, as alerts and run records name them. */
export const ACTION_NAMES = [
  'backup',
  'verify',
  'restore-drill',
  'prune',
  'files-backup',
  'files-verify',
  'files-drill',
  'files-prune',
] as const;
export type ActionName = (typeof ACTION_NAMES)[number];

export const RUN_RECORD_SCHEMA_VERSION = 1;

/**
 * The outcome of one run of an action for one catalog name, appended under
 * `<name>/runs/<action>/<time>-<random>.json` whether the run passed or failed. It is what tells a
 * run that the previous one failed (so a success is a recovery), since when, and how many runs in
 * a row: a failed backup leaves no backup behind, and a team without GitHub issues still needs to
 * hear that things work again. Never rewritten, like every other catalog object.
 */
export interface RunRecord {
  schemaVersion: number;
  action: ActionName;
  name: string;
  status: 'passed' | 'failed';
  /** When the run finished, ISO 8601. */
  time: string;
  /** What failed, or what was done; free of secrets. */
  message: string;
  backupId?: string;
  runUrl?: string;
}

/** Records read at most: enough to count a long failing streak, bounded for old catalogs. */
const MAX_READS = 60;

/** Appends a run record; the key carries the time and a random suffix, so runs never collide. */
export async function appendRunRecord(storage: Storage, record: RunRecord): Promise<string> {
  const key = runKey(record.name, record.action, new Date(record.time));
  await storage.putBytes(key, `${JSON.stringify(record, null, 2)}\n`, { ifNoneMatch: true });
  return key;
}

/** The newest run records of an action for a name, newest first (at most `limit`). */
export async function recentRuns(
  storage: Storage,
  name: string,
  action: ActionName,
  limit = MAX_READS,
): Promise<RunRecord[]> {
  const keys: string[] = [];
  for await (const object of storage.list(runsPrefix(name, action))) {
    if (object.key.endsWith('.json')) keys.push(object.key);
  }
  keys.sort((a, b) => path.posix.basename(b).localeCompare(path.posix.basename(a)));
  const records = await mapLimit(keys.slice(0, limit), 8, async (key) => {
    const data = await storage.getBytes(key);
    if (!data) return undefined;
    try {
      return JSON.parse(data.toString()) as RunRecord;
    } catch {
      return undefined;
    }
  });
  return records
    .filter(
      (r): r is RunRecord => r !== undefined && (r.status === 'passed' || r.status === 'failed'),
    )
    .sort((a, b) => b.time.localeCompare(a.time));
}

/** The failing streak that ends at the newest record: how many failed runs, since when. */
export interface FailingStreak {
  /** Failed runs in a row, newest first, before the current run. */
  runs: number;
  /** The first run of the streak. */
  since?: string;
}

/** The failures in a row at the head of `records` (newest first). */
export function failingStreak(records: RunRecord[]): FailingStreak {
  let runs = 0;
  let since: string | undefined;
  for (const record of records) {
    if (record.status !== 'failed') break;
    runs += 1;
    since = record.time;
  }
  return { runs, since };
}
