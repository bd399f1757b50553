/** The prune plan as a JSON document (the `plan-path` output) and the policy in words. */

import type { MaxDelete, RetentionPolicy } from '../catalog/retention.js';
import { compactDuration as compact } from '../core/duration.js';
import type { PruneReport } from './prune.js';

export const PLAN_SCHEMA_VERSION = 1;

/** The policy as the inputs spell it: `keep-daily 30, keep-weekly 12, keep-kind pre-migration=90d`. */
export function policyText(policy: RetentionPolicy): string {
  const parts: string[] = [];
  const counts = [
    ['keep-last', policy.keepLast],
    ['keep-hourly', policy.keepHourly],
    ['keep-daily', policy.keepDaily],
    ['keep-weekly', policy.keepWeekly],
    ['keep-monthly', policy.keepMonthly],
    ['keep-yearly', policy.keepYearly],
  ] as const;
  for (const [input, value] of counts) if (value !== undefined) parts.push(`${input} ${value}`);
  if (policy.keepWithinSeconds !== undefined) {
    parts.push(`keep-within ${compact(policy.keepWithinSeconds)}`);
  }
  const kinds = Object.entries(policy.keepKind ?? {}).map(
    ([kind, span]) => `${kind}=${span === 'forever' ? 'forever' : compact(span)}`,
  );
  if (kinds.length > 0) parts.push(`keep-kind ${kinds.join(' ')}`);
  return parts.join(', ');
}

export function maxDeleteText(maxDelete: MaxDelete | undefined): string {
  if (maxDelete === undefined) return 'no limit';
  const parts: string[] = [];
  if (maxDelete.fraction !== undefined) {
    parts.push(`${Number((maxDelete.fraction * 100).toFixed(4))}% of a name's backups`);
  }
  if (maxDelete.count !== undefined) parts.push(`${maxDelete.count} backups of a name`);
  return parts.length > 0 ? parts.join(' and ') : 'no limit';
}

export function incompleteAfterText(seconds: number | undefined): string {
  return seconds === undefined ? 'never' : compact(seconds);
}

/**
 * The plan document: every backup of every name with its decision, reasons and outcome, the
 * incomplete uploads, and the run's settings and totals.
 */
export function planDocument(report: PruneReport): Record<string, unknown> {
  return {
    schemaVersion: PLAN_SCHEMA_VERSION,
    storage: report.storage,
    now: report.now,
    dryRun: report.dryRun,
    policy: {
      text: policyText(report.policy),
      timezone: report.policy.timezone,
      rules: report.policy,
    },
    maxDelete: maxDeleteText(report.maxDelete),
    deleteIncompleteAfter: incompleteAfterText(report.deleteIncompleteAfterSeconds),
    bypassGovernanceRetention: report.bypassGovernanceRetention,
    versioning: report.versioning,
    refused: report.refused,
    errors: report.errors,
    kept: report.kept,
    deleted: report.deleted,
    freedBytes: report.freedBytes,
    lockedObjects: report.locked,
    names: report.names,
  };
}
