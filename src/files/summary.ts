/** Job summaries of file backups: what was written, restored, verified or pruned. */
import { formatDuration } from '../core/duration.js';
import { formatBytes, formatCount } from '../core/streams.js';
import { facts, statusIcon, table } from '../report/markdown.js';
import type { FileBackupResult } from './backup.js';
import { filesBytes } from './manifest.js';
import type { FilePruneReport } from './prune.js';
import type { FileRestoreResult } from './restore.js';
import type { FileVerifyReport } from './verify.js';

export function fileBackupSummary(result: FileBackupResult, location: string): string {
  const m = result.manifest;
  const c = m.changes;
  return [
    `### File backup ${m.name}: ${m.id}\n`,
    facts([
      ['Source', m.source.location],
      ['Stored in', location],
      ['Compared with', m.previous ?? 'nothing (first file backup)'],
      ['Files at this time', `${formatCount(m.files.length)} (${formatBytes(filesBytes(m))})`],
      [
        'Archived',
        `${formatBytes(c.bytesArchived)} read, ${formatBytes(c.bytesUploaded)} uploaded`,
      ],
      ['Archives referred to', String(m.archives.length)],
      ['Encryption', m.encryption ? 'age' : 'none'],
      ['Duration', formatDuration(result.durationSeconds)],
    ]),
    '\n',
    table(
      ['new', 'changed', 'unchanged', 'deleted'],
      [[c.new, c.changed, c.unchanged, c.deleted].map(formatCount)],
    ),
  ].join('\n');
}

export function fileRestoreSummary(result: FileRestoreResult, target: string): string {
  return [
    `### File restore ${result.manifest.name}: ${result.manifest.id}\n`,
    facts([
      ['Into', target],
      [
        'Files',
        `${formatCount(result.files)} (${formatBytes(result.bytes)}), each SHA-256 checked`,
      ],
      ['Archives read', String(result.archivesRead)],
      ['Restore time', formatDuration(result.seconds)],
      ['Age of the backup', formatDuration(result.backupAgeSeconds)],
    ]),
  ].join('\n');
}

export function fileVerifySummary(report: FileVerifyReport): string {
  return [
    `### ${statusIcon(report.status)} File backup ${report.manifest.name}: ${report.manifest.id}\n`,
    table(
      ['check', 'status', 'detail'],
      report.checks.map((c) => [c.name, `${statusIcon(c.status)} ${c.status}`, c.detail]),
    ),
  ].join('\n');
}

export function filePruneSummary(report: FilePruneReport): string {
  const verb = report.dryRun ? 'would delete' : 'deleted';
  return [
    `### File backups pruned${report.dryRun ? ' (dry run)' : ''}\n`,
    table(
      ['backup', 'decision', 'why'],
      report.plan.entries.map((e) => [e.backup.id, e.decision, e.reasons.join('; ')]),
    ),
    '\n',
    facts([
      [`Objects ${verb}`, String(report.deletedKeys.length)],
      ['Archives kept for kept backups', String(report.keptForReferences.length)],
      ...(report.plan.refused ? ([['Refused', report.plan.refused]] as [string, string][]) : []),
    ]),
  ].join('\n');
}
