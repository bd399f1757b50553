import path from 'node:path';
import { formatCount } from '../core/streams.js';
import { facts, table } from '../report/markdown.js';
import type { LiveDiff } from './compare.js';
import type { ExportResult } from './export.js';
import type { ExtractResult } from './extract.js';
import { topLevel, type ChosenTable } from './scratch.js';

function partitionsOf(tables: ChosenTable[], t: ChosenTable): number {
  return tables.filter((p) => p.parent?.schema === t.schema && p.parent.name === t.name).length;
}

function count(value: number | undefined): string {
  return value === undefined ? '-' : formatCount(value);
}

/** One row per top-level table: rows, and what the comparison found. */
function tableRows(result: ExtractResult): unknown[][] {
  return topLevel(result.tables).map((t) => {
    const diff: LiveDiff | undefined = result.diffs.find(
      (d) => d.table === `${t.schema}.${t.name}`,
    );
    const partitions = partitionsOf(result.tables, t);
    return [
      `\`${t.schema}.${t.name}\` → \`${result.schema}.${t.name}\`` +
        (partitions ? ` (${partitions} partitions)` : ''),
      formatCount(t.rows),
      count(diff?.missing),
      count(diff?.changed),
      count(diff?.extra),
      diff?.skipped ? `not compared: ${diff.skipped}` : diff?.csv ? path.basename(diff.csv) : '',
    ];
  });
}

/** The job summary of an extract: where the tables went, what differs from live, how to copy back. */
export function extractSummary(result: ExtractResult): string {
  const m = result.manifest;
  let md = `## Extract from \`${result.name}\`: ✅ ${topLevel(result.tables).length} table(s) in schema \`${result.schema}\`\n\n`;
  md += facts([
    ['Backup', `\`${m.id}\` (${m.kind}, taken ${m.startedAt})`],
    [
      'Into',
      `schema \`${result.schema}\` of ${result.target}` +
        (result.replaced ? ' (an earlier extract of that name replaced)' : ' (new)'),
    ],
  ]);
  if (result.warnings.length > 0) {
    md += `\n${result.warnings.map((w) => `- ⚠️ ${w}`).join('\n')}\n`;
  }
  md += '\n### Tables\n\n';
  md += table(
    ['Table', 'Rows in the backup', 'Missing from live', 'Changed', 'Not in the backup', 'Details'],
    tableRows(result),
  );
  const copyBack = result.diffs.filter((d) => d.copyBack && (d.missing ?? 0) > 0);
  if (copyBack.length > 0) {
    md += '\n### Copy the missing rows back\n\n';
    md += 'Review the rows first (the CSV files of the report), then, in one transaction:\n\n';
    md += `\`\`\`sql\n${copyBack.map((d) => d.copyBack).join('\n\n')}\n\`\`\`\n`;
  }
  md += `\nDrop the schema when done: \`DROP SCHEMA ${result.schema} CASCADE;\`\n`;
  return md;
}

/** The extract as plain lines for a terminal. */
export function extractText(result: ExtractResult): string {
  const lines = [
    `Extracted ${topLevel(result.tables).length} table(s) of backup ${result.manifest.id} into schema ${result.schema} of ${result.target}`,
  ];
  for (const row of tableRows(result)) {
    const [name, rows, missing, changed, extra, details] = row.map(String);
    lines.push(
      `  ${name.replace(/`/g, '')}: ${rows} rows; missing from live ${missing}, changed ${changed}, not in the backup ${extra}${details ? `; ${details}` : ''}`,
    );
  }
  for (const d of result.diffs.filter((x) => x.copyBack && (x.missing ?? 0) > 0)) {
    lines.push('', `-- copy the rows missing from ${d.table} back:`, d.copyBack as string);
  }
  return `${lines.join('\n')}\n`;
}

/** The job summary of an export. */
export function exportSummary(result: ExportResult): string {
  const e = result.exportManifest;
  let md = `## Export of \`${e.name}\`: ✅ ${e.tables.length} table(s) as ${e.format}\n\n`;
  md += facts([
    ['Backup', `\`${e.backupId}\``],
    ['Manifest', `\`${result.location}\``],
    [
      'Encryption',
      e.encryption ? `age, to ${e.encryption.recipients.join(', ')}` : 'none (nor is the backup)',
    ],
  ]);
  md += '\n';
  md += table(
    ['Table', 'Rows', 'Bytes', 'SHA-256', 'Key'],
    e.tables.map((t) => [
      `\`${t.table}\``,
      formatCount(t.rows),
      formatCount(t.bytes),
      `\`${t.sha256.slice(0, 12)}…\``,
      `\`${t.key}\``,
    ]),
  );
  return md;
}

/** The export as plain lines for a terminal. */
export function exportText(result: ExportResult): string {
  const e = result.exportManifest;
  return (
    [
      `Exported ${e.tables.length} table(s) of backup ${e.backupId} as ${e.format}: ${result.location}`,
      ...e.tables.map((t) => `  ${t.table}: ${formatCount(t.rows)} rows, ${t.key}`),
    ].join('\n') + '\n'
  );
}
