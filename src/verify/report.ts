import { formatDuration } from '../core/duration.js';
import { formatBytes } from '../core/streams.js';
import { facts, statusIcon, table } from '../report/markdown.js';
import type { CheckResult, TableComparison } from '../restore/checks.js';
import { describePlanReport } from '../restore/disk.js';
import type { VerifyReport } from './verify.js';

/** Rows of the table comparison shown at most; differences always come first. */
const MAX_TABLE_ROWS = 200;
/** Failing rows shown per user check. */
const MAX_FAILING_ROWS = 20;

function seconds(check: CheckResult): string {
  return check.seconds === undefined ? '' : check.seconds.toFixed(1);
}

function backupFacts(report: VerifyReport): [string, unknown][] {
  const b = report.backup;
  const pairs: [string, unknown][] = [['Database (catalog name)', `\`${report.name}\``]];
  if (b) {
    pairs.push(
      ['Backup', `\`${b.id}\` (${b.kind})`],
      ['Finished', `${b.finishedAt} (${formatDuration(b.ageSeconds)} ago)`],
      ['Size', `${formatBytes(b.bytes)} (${b.format} archive, compression ${b.compression})`],
      ['Encryption', b.encryption],
      ['Source', `PostgreSQL ${b.sourceVersion}, pg_dump ${b.pgDumpVersion}`],
      ['Object', `\`${b.objectLocation}\``],
    );
  }
  pairs.push(['Storage', report.storage]);
  if (report.target) {
    pairs.push([
      'Restored into',
      report.target.scratch
        ? `${report.target.description} (throwaway, removed afterwards)`
        : `${report.target.description} (PostgreSQL ${report.target.serverVersion})`,
    ]);
  } else if (!report.restore) {
    pairs.push(['Restored into', 'nothing: restore is false (object checks only)']);
  }
  if (report.restorePlan) pairs.push(['Restore plan', describePlanReport(report.restorePlan)]);
  if (report.pgRestoreVersion) pairs.push(['pg_restore', report.pgRestoreVersion]);
  if (report.freshness) {
    const f = report.freshness;
    pairs.push([
      'Newest complete backup',
      f.newestId
        ? `\`${f.newestId}\`, ${formatDuration(f.ageSeconds ?? 0)} old (max-age ${formatDuration(f.maxAgeSeconds)})`
        : `none (max-age ${formatDuration(f.maxAgeSeconds)})`,
    ]);
  }
  pairs.push(['Duration', formatDuration(report.durationSeconds)]);
  return pairs;
}

function checksTable(checks: CheckResult[]): string {
  return table(
    ['Check', 'Result', 'Detail', 'Seconds'],
    checks.map((c) => [c.name, `${statusIcon(c.status)} ${c.status}`, c.detail, seconds(c)]),
  );
}

/** The comparison's rows worth showing: differences first, then the rest, capped. */
function comparisonRows(tables: TableComparison[]): { rows: TableComparison[]; hidden: number } {
  const problems = tables.filter((t) => t.status !== 'same' && t.status !== 'not counted');
  const rest = tables.filter((t) => t.status === 'same' || t.status === 'not counted');
  const rows = [...problems, ...rest].slice(0, Math.max(MAX_TABLE_ROWS, problems.length));
  return { rows, hidden: tables.length - rows.length };
}

function tableStatus(t: TableComparison): string {
  switch (t.status) {
    case 'same':
      return '✅ same';
    case 'differs':
      return '❌ differs';
    case 'missing':
      return '❌ missing';
    case 'extra':
      return '❌ not in the manifest';
    default:
      return '➖ not counted';
  }
}

function tablesSection(report: VerifyReport): string {
  if (report.tables.length === 0) return '';
  const differ = report.tables.filter((t) => t.status !== 'same' && t.status !== 'not counted');
  const { rows, hidden } = comparisonRows(report.tables);
  const heading = `### Tables (${report.tables.length}${differ.length ? `, ${differ.length} with a problem` : ', all match'})\n\n`;
  const body = table(
    ['Table', 'Manifest', 'Restored', 'Status'],
    rows.map((t) => [t.table, t.expected ?? '', t.actual ?? '', tableStatus(t)]),
  );
  return `${heading}${body}${hidden > 0 ? `\n…and ${hidden} more tables whose row counts match.\n` : ''}`;
}

function failingRows(checks: CheckResult[]): string {
  const parts: string[] = [];
  for (const c of checks) {
    if (!c.rows || c.rows.length === 0) continue;
    const columns = [...new Set(c.rows.flatMap((r) => Object.keys(r)))];
    const rows = c.rows.slice(0, MAX_FAILING_ROWS).map((r) => columns.map((k) => valueText(r[k])));
    parts.push(
      `<details><summary>${escapeHtml(c.name)}: failing rows</summary>\n\n${table(columns, rows)}\n</details>\n`,
    );
  }
  return parts.join('\n');
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function valueText(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** The job summary and the Markdown report: every check, the table counts, the backup. */
export function verifyMarkdown(report: VerifyReport): string {
  const title =
    report.status === 'passed'
      ? `## ✅ Backup verification passed: ${report.name}`
      : `## ❌ Backup verification failed: ${report.name}`;
  const sections = [
    `${title}\n`,
    facts(backupFacts(report)),
    `### Checks\n\n${checksTable(report.checks)}`,
    failingRows(report.checks),
    tablesSection(report),
  ];
  if (report.warnings.length > 0) {
    sections.push(`### Warnings\n\n${report.warnings.map((w) => `- ${w}`).join('\n')}\n`);
  }
  return sections.filter((s) => s !== '').join('\n');
}

/** The report as JSON, for the report file and the artifact. */
export function verifyJson(report: VerifyReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

function backupLine(report: VerifyReport): string {
  const b = report.backup;
  return b
    ? `Backup \`${b.id}\` of \`${report.name}\`, finished ${b.finishedAt} (${formatDuration(b.ageSeconds)} before this verification), ${formatBytes(b.bytes)}, in ${report.storage}.`
    : `No backup of \`${report.name}\` could be read in ${report.storage}.`;
}

/** The body of the issue opened (or commented on) when a verification fails. */
export function failureIssueBody(report: VerifyReport): string {
  const failedChecks = report.checks.filter((c) => c.status === 'failed');
  return [
    `The backup verification of \`${report.name}\` failed.`,
    '',
    backupLine(report),
    '',
    '### Failed checks',
    '',
    table(
      ['Check', 'Detail'],
      failedChecks.map((c) => [c.name, c.detail]),
    ),
    failingRows(failedChecks),
    'Every check of this run:',
    '',
    checksTable(report.checks),
  ].join('\n');
}

/** The comment that closes the issue once a verification passes again. */
export function recoveryIssueBody(report: VerifyReport): string {
  return [
    `The backup verification of \`${report.name}\` passed again.`,
    '',
    backupLine(report),
    '',
    checksTable(report.checks),
  ].join('\n');
}

/** The step's failure message: each failed check with its first line of detail. */
export function failureMessage(report: VerifyReport): string {
  const which = report.backup ? ` (backup ${report.backup.id})` : '';
  return `Backup verification of ${report.name}${which} failed: ${report.failures.join('; ')}`;
}
