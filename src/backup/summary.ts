import { describeEncryption } from '../catalog/manifest.js';
import { formatBytes, formatCount, rate } from '../core/streams.js';
import { facts, table } from '../report/markdown.js';
import type { BackupResult } from './backup.js';

/**
 * The backup's job summary: id, size, duration, throughput, change, what each destination holds
 * (when there are several), and the largest tables.
 */
export function backupSummary(result: BackupResult): string {
  const m = result.manifest;
  const enc = m.encryption ? describeEncryption(m.encryption) : 'none (unencrypted)';
  const change =
    result.sizeChangeSkipped !== undefined
      ? `not compared with ${m.previous?.id ?? 'the previous backup'}: ${result.sizeChangeSkipped}`
      : result.sizeChangePercent === undefined
        ? 'first backup of this name'
        : `${result.sizeChangePercent > 0 ? '+' : ''}${result.sizeChangePercent}% against ${m.previous?.id} (${formatBytes(m.previous?.bytes ?? 0)})`;
  const largest = [...m.tables].sort((a, b) => b.bytes - a.bytes).slice(0, 10);
  const rows = m.tables.reduce((n, t) => n + (t.rows ?? 0), 0);
  let md = `## Backup of \`${m.name}\`: ${m.id}\n\n`;
  md += facts([
    ['Backup id', `\`${m.id}\``],
    ['Kind', m.kind],
    ['Stored at', result.copies.length === 1 ? `\`${result.copies[0].location}\`` : undefined],
    ['Size', formatBytes(result.bytes)],
    ['Duration', `${result.durationSeconds.toFixed(1)} s`],
    ['Throughput', `${rate(result.bytes, result.dumpSeconds)} (the dump stream)`],
    ['Change', change],
    ['Server', `PostgreSQL ${m.source.serverVersion} (pg_dump ${m.tools.pgDumpVersion})`],
    [
      'Format',
      `${m.format}, compression ${m.compression.method}${m.compression.level !== undefined ? `:${m.compression.level}` : ''}`,
    ],
    ['Encryption', enc],
    ['SHA-256', `\`${result.sha256}\``],
    [
      'Tables',
      `${m.tables.length} (${m.rowCounts === 'off' ? 'rows not counted' : `${formatCount(rows)} rows, ${m.rowCounts}`})`,
    ],
    ['Globals', m.globals ? 'roles dumped' : undefined],
    ['Pinned until', m.keepUntil],
  ]);
  if (result.copies.length > 1) md += `\n### Destinations\n\n${destinationsTable(result)}`;
  if (result.warnings.length > 0) {
    md += `\n### Warnings\n\n${result.warnings.map((w) => `- ⚠️ ${w}`).join('\n')}\n`;
  }
  if (largest.length > 0) {
    md += `\n### Largest tables\n\n`;
    md += table(
      ['Table', 'Rows', 'Size'],
      largest.map((t) => [
        `${t.schema}.${t.name}`,
        t.rows === null ? '-' : formatCount(t.rows),
        formatBytes(t.bytes),
      ]),
    );
  }
  return md;
}

/** Per destination: the dump's location, its bytes and SHA-256 when the copy is complete. */
export function destinationsTable(result: BackupResult): string {
  return table(
    ['Destination', 'Status', 'Size', 'SHA-256'],
    result.copies.map((c) =>
      c.status === 'stored'
        ? [`\`${c.location}\``, '✅ stored', formatBytes(result.bytes), `\`${result.sha256}\``]
        : [`\`${c.location}\``, `❌ failed: ${c.error ?? ''}`, '-', '-'],
    ),
  );
}
