import { parseMaxDelete, parseRetentionPolicy } from '../catalog/retention.js';
import { parseDeleteIncompleteAfter, parsePruneNames } from '../prune/options.js';
import type { PruneOptions } from '../prune/prune.js';
import type { OptionReader } from './reader.js';

/**
 * Prune's options. `names` is undefined when `name` is not given: the store's only name is
 * used, which needs the store to find.
 */
export function pruneOptions(
  read: OptionReader,
): Omit<PruneOptions, 'names'> & { names?: PruneOptions['names'] } {
  const name = read.string('name');
  return {
    names: name === undefined ? undefined : parsePruneNames(name, 'name'),
    policy: parseRetentionPolicy({
      keepLast: read.string('keep-last'),
      keepHourly: read.string('keep-hourly'),
      keepDaily: read.string('keep-daily'),
      keepWeekly: read.string('keep-weekly'),
      keepMonthly: read.string('keep-monthly'),
      keepYearly: read.string('keep-yearly'),
      keepWithin: read.string('keep-within'),
      keepKind: read.string('keep-kind'),
      timezone: read.string('timezone'),
    }),
    maxDelete: parseMaxDelete(read.string('max-delete') ?? '50%'),
    deleteIncompleteAfterSeconds: parseDeleteIncompleteAfter(
      read.string('delete-incomplete-after') ?? '24h',
      'delete-incomplete-after',
    ),
    dryRun: read.boolean('dry-run', false),
    bypassGovernanceRetention: read.boolean('bypass-governance-retention', false),
  };
}
