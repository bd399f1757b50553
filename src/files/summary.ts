/** Job summaries of file backups: what was written, restored, verified, drilled or pruned. */
import { formatDuration } from '../core/duration.js';
import { formatBytes, formatCount } from '../core/streams.js';
import { facts, statusIcon, table } from '../report/markdown.js';
import type { CheckResult } from '../restore/checks.js';
import type { FileBackupResult } from './backup.js';
import { RPO_CHECK, RTO_CHECK, type FileDrillResult } from './drill.js';
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

function checksTable(checks: CheckResult[]): string {
  return table(
    ['check', 'status', 'detail'],
    checks.map((c) => [c.name, `${statusIcon(c.status)} ${c.status}`, c.detail]),
  );
}

/** Where the run's record went, or why the summary has none. */
function recorded(key: string | undefined): string {
  return key ?? 'not stored (see the warnings)';
}

export function fileVerifySummary(report: FileVerifyReport): string {
  const m = report.manifest;
  return [
    `### ${statusIcon(report.status)} File backup verification ${m.name}: ${m.id}\n`,
    facts([
      [
        'Point in time',
        `${m.startedAt} (${formatCount(m.files.length)} files, ${formatBytes(filesBytes(m))})`,
      ],
      ['Archives', String(m.archives.length)],
      [
        'Restore',
        report.restoreSeconds !== undefined
          ? formatDuration(report.restoreSeconds)
          : report.checks.some((c) => c.name === 'restore')
            ? 'did not complete'
            : 'not asked (restore: false)',
      ],
      ['Duration', formatDuration(report.seconds)],
      ['Record', recorded(report.recordKey)],
    ]),
    '\n',
    checksTable(report.checks),
  ].join('\n');
}

export function fileDrillSummary(result: FileDrillResult): string {
  const m = result.manifest;
  const target = (name: string) => result.checks.find((c) => c.name === name);
  const seconds = (value: number | undefined) =>
    value === undefined ? '–' : formatDuration(value);
  return [
    `### ${statusIcon(result.status)} File restore drill ${m.name}: ${m.id}\n`,
    table(
      ['', 'measured', 'target', ''],
      [
        [
          '**RTO**',
          `**${seconds(result.rtoSeconds)}**`,
          seconds(result.rtoTargetSeconds),
          `${statusIcon(target(RTO_CHECK)?.status ?? 'skipped')} restore start to every file written and checked`,
        ],
        [
          '**RPO**',
          `**${seconds(result.rpoSeconds)}**`,
          seconds(result.rpoTargetSeconds),
          `${statusIcon(target(RPO_CHECK)?.status ?? 'skipped')} age of the newest file backup at the start`,
        ],
      ],
    ),
    '\n',
    facts([
      ['Into', `${result.target} (emptied again afterwards)`],
      [
        'Files',
        result.files === undefined
          ? 'not restored'
          : `${formatCount(result.files)} (${formatBytes(result.bytes ?? 0)})`,
      ],
      ['Record', recorded(result.recordKey)],
    ]),
    '\n',
    checksTable(result.checks.filter((c) => c.name !== RTO_CHECK && c.name !== RPO_CHECK)),
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
