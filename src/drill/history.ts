import path from 'node:path';
import { mapLimit, readVerificationRecord, verificationKeys } from '../catalog/catalog.js';
import type { VerificationRecord } from '../catalog/manifest.js';
import type { Storage } from '../storage/storage.js';

const BATCH = 16;
/** Records read at most while looking for past drills among (many more) verifications. */
const MAX_READS = 400;

/**
 * The newest `limit` drill and restore records of a name, oldest first. Record keys end in
 * their time, so they are read newest first, in batches, until enough drills were found; a
 * catalog with years of daily verifications costs a listing, not a read of every record.
 */
export async function recentDrills(
  storage: Storage,
  name: string,
  limit = 10,
): Promise<VerificationRecord[]> {
  const keys = await verificationKeys(storage, name);
  keys.sort((a, b) => path.posix.basename(b).localeCompare(path.posix.basename(a)));
  const found: VerificationRecord[] = [];
  for (let i = 0; i < keys.length && i < MAX_READS && found.length < limit; i += BATCH) {
    const records = await mapLimit(keys.slice(i, i + BATCH), 8, (key) =>
      readVerificationRecord(storage, key),
    );
    for (const r of records) {
      if (r && (r.type === 'drill' || r.type === 'restore') && found.length < limit) found.push(r);
    }
  }
  return found.sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
}
