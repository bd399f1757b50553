/** The prune job summary: per name, kept backups with their reasons, deleted ones, leftovers. */

import { formatBytes } from '../core/streams.js';
import { cell, facts, table } from '../report/markdown.js';
import { incompleteAfterText, maxDeleteText, policyText } from './plan.js';
import type { NamePrune, PruneReport, PrunedBackup } from './prune.js';

/** Rows shown per table; the plan document has all of them. */
const MAX_ROWS = 100;

/** `2026-11-20 02:17 UTC` */
function when(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

function capped(rows: unknown[][]): { rows: unknown[][]; more: string } {
  if (rows.length <= MAX_ROWS) return { rows, more: '' };
  return {
    rows: rows.slice(0, MAX_ROWS),
    more: `\n…and ${rows.length - MAX_ROWS} more, listed in the plan file.\n`,
  };
}

function section(title: string, headers: string[], rows: unknown[][]): string {
  if (rows.length === 0) return '';
  const shown = capped(rows);
  return `\n#### ${title}\n\n${table(headers, shown.rows)}${shown.more}`;
}

function lockedNote(item: { locked?: { key: string; reason: string }[] }): string {
  if (!item.locked || item.locked.length === 0) return '';
  return `🔒 ${item.locked.length} object(s) kept by Object Lock: ${item.locked[0].reason}`;
}

const OUTCOME_TEXT: Record<string, string> = {
  deleted: 'deleted',
  'would-delete': 'would delete',
  'not-deleted': 'not deleted',
  'kept-locked': '🔒 kept by Object Lock',
  left: 'left',
};

function backupRow(b: PrunedBackup, why: string): unknown[] {
  return [`\`${b.id}\``, when(b.finishedAt), b.kind, formatBytes(b.bytes), why];
}

function nameSection(n: NamePrune, report: PruneReport): string {
  const freed = report.dryRun ? 'would free' : 'freed';
  const deleted = report.dryRun ? 'would delete' : 'deleted';
  let md = `\n### \`${n.name}\`: kept ${n.kept}, ${deleted} ${n.deleted}, ${freed} ${formatBytes(n.freedBytes)}\n`;
  if (n.refused !== undefined) md += `\n> ⛔ **Refused:** ${cell(n.refused)}.\n`;
  if (n.backups.length === 0) md += '\nNo complete backups.\n';

  const kept = n.backups.filter((b) => b.outcome === 'kept' || b.outcome === 'kept-locked');
  md += section(
    'Kept',
    ['Backup', 'Finished', 'Kind', 'Size', 'Why kept'],
    kept.map((b) =>
      backupRow(
        b,
        b.outcome === 'kept-locked'
          ? `${lockedNote(b)} (the policy would delete it: ${b.reasons.join(', ')})`
          : b.reasons.join(', '),
      ),
    ),
  );
  const gone = n.backups.filter((b) => b.outcome === 'deleted' || b.outcome === 'would-delete');
  md += section(
    report.dryRun ? 'Would delete' : 'Deleted',
    ['Backup', 'Finished', 'Kind', 'Size', 'Why'],
    gone.map((b) => backupRow(b, [b.reasons.join(', '), lockedNote(b)].filter(Boolean).join('; '))),
  );
  const spared = n.backups.filter((b) => b.outcome === 'not-deleted');
  md += section(
    'Not deleted (the run was refused or failed)',
    ['Backup', 'Finished', 'Kind', 'Size', 'The policy says'],
    spared.map((b) => backupRow(b, b.reasons.join(', '))),
  );
  md += section(
    'Incomplete uploads (data without a manifest)',
    ['Upload', 'Last written', 'Size', 'Objects', 'Outcome', 'Why'],
    n.incomplete.map((u) => [
      `\`${u.id}\``,
      when(u.lastModified),
      formatBytes(u.bytes),
      u.objects,
      [OUTCOME_TEXT[u.outcome] ?? u.outcome, lockedNote(u)].filter(Boolean).join('; '),
      u.why,
    ]),
  );
  md += section(
    'Verification records of backups that no longer exist',
    ['Backup id', 'Records', 'Last written', 'Outcome'],
    n.orphanedRecords.map((o) => [
      `\`${o.backupId}\``,
      o.records,
      when(o.lastModified),
      [OUTCOME_TEXT[o.outcome] ?? o.outcome, lockedNote(o)].filter(Boolean).join('; '),
    ]),
  );
  return md;
}

function heading(report: PruneReport): string {
  const n = report.names.length;
  const names = `${n} name${n === 1 ? '' : 's'}`;
  if (report.refused.length > 0) return `## Prune refused: nothing was deleted (${names})`;
  if (report.dryRun) {
    return (
      `## Prune dry run: nothing was deleted (${names}; would delete ${report.deleted} ` +
      `backup(s), ${formatBytes(report.freedBytes)})`
    );
  }
  if (report.errors.length > 0) return `## Prune failed part way (${names})`;
  return (
    `## Prune: kept ${report.kept}, deleted ${report.deleted} backup(s), freed ` +
    `${formatBytes(report.freedBytes)} (${names})`
  );
}

/** The versioned-bucket note, or '' when deletes really free space. */
export function versioningNote(report: PruneReport): string {
  if (report.versioning !== 'Enabled' && report.versioning !== 'Suspended') return '';
  return (
    `> ⚠️ **Versioning is ${report.versioning} on this bucket.** Deletes only add delete ` +
    'markers: the deleted objects stay as noncurrent versions and are still stored and billed. ' +
    'Add a lifecycle rule with `NoncurrentVersionExpiration` (and `ExpiredObjectDeleteMarker`) ' +
    'so the store expires them; see the prune documentation for the rule.\n'
  );
}

/** Markdown for the job summary. `planPath` is where the full plan was written, when it was. */
export function pruneSummary(report: PruneReport, planPath?: string): string {
  let md = `${heading(report)}\n\n`;
  md += facts([
    ['Storage', report.storage],
    ['Policy', `${policyText(report.policy)} (time zone ${report.policy.timezone})`],
    ['Protected', 'pinned backups, the newest complete backup, the newest verified backup'],
    ['Max delete', maxDeleteText(report.maxDelete)],
    ['Incomplete uploads removed after', incompleteAfterText(report.deleteIncompleteAfterSeconds)],
    ['Object Lock', report.bypassGovernanceRetention ? 'governance retention bypassed' : undefined],
    ['Objects kept by Object Lock', report.locked > 0 ? report.locked : undefined],
    ['Plan', planPath ? `\`${planPath}\`` : undefined],
    ['Run at', report.now],
  ]);
  if (report.refused.length > 0) {
    md +=
      '\n> ⛔ **Nothing was deleted in any name**, because these plans break a safety limit:\n' +
      report.refused.map((r) => `> - ${cell(r)}\n`).join('') +
      '>\n> Check the policy; raise `max-delete` when the deletions are intended.\n';
  }
  if (report.errors.length > 0) {
    md += `\n> ❌ **Deletes failed:**\n${report.errors.map((e) => `> - ${cell(e)}\n`).join('')}`;
  }
  const note = versioningNote(report);
  if (note) md += `\n${note}`;
  if (report.names.length === 0) md += '\nNo catalog names found.\n';
  for (const n of report.names) md += nameSection(n, report);
  const left = report.names.flatMap((n) => n.incomplete.filter((u) => u.outcome === 'left'));
  if (left.length > 0 && report.deleteIncompleteAfterSeconds !== undefined) {
    md +=
      `\n${left.length} incomplete upload(s) younger than ` +
      `${incompleteAfterText(report.deleteIncompleteAfterSeconds)} were left alone: they may still be in progress.\n`;
  }
  return md;
}
