import type { VerificationRecord } from '../catalog/manifest.js';
import { formatDuration } from '../core/duration.js';
import { facts, statusIcon, table } from '../report/markdown.js';
import type { DrillResult } from './drill.js';

function seconds(value: number | undefined): string {
  return value === undefined ? '-' : formatDuration(value);
}

function title(result: DrillResult): string {
  const what = result.mode === 'restore' ? 'Restore' : 'Restore drill';
  return `${what} of \`${result.name}\`: ${statusIcon(result.status)} ${result.status}`;
}

/** One line per earlier drill (and this one), for the trend. */
function historyRows(records: VerificationRecord[]): unknown[][] {
  return records.map((r) => [
    r.finishedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    r.type,
    `\`${r.backupId}\``,
    seconds(r.rtoSeconds),
    seconds(r.rpoSeconds),
    `${statusIcon(r.status)} ${r.status}`,
  ]);
}

/** The job summary: phases against the targets, checks, tables, and the trend of past drills. */
export function drillSummary(result: DrillResult): string {
  const m = result.manifest;
  let md = `## ${title(result)}\n\n`;
  md += facts([
    ['Backup', `\`${m.id}\` (${m.kind}, taken ${m.startedAt})`],
    [
      'Source → target',
      result.target
        ? `PostgreSQL ${m.source.serverVersion} → ${result.target.serverVersion} (${result.target.scratch ? 'scratch server, removed afterwards' : result.target.describe})`
        : `PostgreSQL ${m.source.serverVersion}`,
    ],
    ['pg_restore', result.pgRestoreVersion],
    ['The target', result.targetStateText],
    [
      'Safety backup',
      result.safetyBackup
        ? `\`${result.safetyBackup.id}\` (kind pre-restore): restore it to undo` +
          (result.undoRehearsal ? `; ${result.undoRehearsal}` : '')
        : undefined,
    ],
    ['Stopped by', result.error],
  ]);
  if (result.warnings.length > 0) {
    md += `\n${result.warnings.map((w) => `- ⚠️ ${w}`).join('\n')}\n`;
  }

  md += `\n### Phases\n\n`;
  const rows: unknown[][] = result.phases.map((p) => [
    p.label,
    seconds(p.seconds),
    '',
    `${statusIcon(p.status)} ${p.detail}`,
  ]);
  const rto = result.checks.find((c) => c.name === 'Recovery time (RTO)');
  const rpo = result.checks.find((c) => c.name === 'Backup age (RPO)');
  rows.push([
    '**Recovery time (RTO)**',
    `**${seconds(result.rtoSeconds)}**`,
    seconds(result.rtoTargetSeconds),
    `${statusIcon(rto?.status ?? 'skipped')} ${result.rtoSeconds === undefined ? 'not recovered' : 'download start to a restored, checked database'}`,
  ]);
  rows.push([
    '**Backup age (RPO)**',
    `**${seconds(result.rpoSeconds)}**`,
    seconds(result.rpoTargetSeconds),
    `${statusIcon(rpo?.status ?? 'skipped')} from the backup's snapshot to the start of this run`,
  ]);
  md += table(['Phase', 'Time', 'Target', 'Result'], rows);

  const checks = result.checks.filter((c) => c !== rto && c !== rpo);
  if (checks.length > 0) {
    md += `\n### Checks\n\n`;
    md += table(
      ['Check', 'Result', 'Detail'],
      checks.map((c) => [c.name, statusIcon(c.status), c.detail]),
    );
  }

  const shown = result.comparison.filter((c) => c.status !== 'same');
  if (result.comparison.length > 0) {
    md += `\n### Tables\n\n`;
    md +=
      shown.length === 0
        ? `All ${result.comparison.length} tables restored with the row counts of the manifest.\n`
        : table(
            ['Table', 'Manifest', 'Restored', ''],
            shown.slice(0, 50).map((c) => [c.table, c.expected ?? '-', c.actual ?? '-', c.status]),
          );
  }

  const trend = [...result.history, ...(result.record ? [result.record] : [])].slice(-10);
  if (trend.length > 0) {
    md += `\n### Recent drills\n\n`;
    md += table(['Finished', 'Type', 'Backup', 'RTO', 'RPO', 'Result'], historyRows(trend));
  }
  return md;
}

/** The result as plain text for a terminal. */
export function drillText(result: DrillResult): string {
  const m = result.manifest;
  const lines = [
    `${result.mode === 'restore' ? 'restore' : 'drill'} ${result.status}: ${result.name} ${m.id}`,
  ];
  if (result.target) lines.push(`  target      ${result.target.describe}`);
  if (result.safetyBackup) lines.push(`  safety      ${result.safetyBackup.id} (pre-restore)`);
  if (result.targetStateText) lines.push(`  the target  ${result.targetStateText}`);
  for (const p of result.phases) {
    lines.push(`  ${p.name.padEnd(11)} ${seconds(p.seconds).padEnd(9)} ${p.status}: ${p.detail}`);
  }
  lines.push(
    `  rto         ${seconds(result.rtoSeconds).padEnd(9)} target ${seconds(result.rtoTargetSeconds)}`,
  );
  lines.push(
    `  rpo         ${seconds(result.rpoSeconds).padEnd(9)} target ${seconds(result.rpoTargetSeconds)}`,
  );
  for (const c of result.checks) {
    lines.push(
      `  ${c.status === 'passed' ? 'ok  ' : c.status === 'failed' ? 'FAIL' : 'skip'} ${c.name}: ${c.detail}`,
    );
  }
  if (result.error) lines.push(`  stopped by: ${result.error}`);
  for (const w of result.warnings) lines.push(`  warning: ${w}`);
  return `${lines.join('\n')}\n`;
}
