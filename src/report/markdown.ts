/** Small Markdown builders for job summaries, issues and reports. */

/** Escapes text for a Markdown table cell. */
export function cell(value: unknown): string {
  return String(value ?? '')
    .replace(/\|/g, '\\|')
    .replace(/\r?\n/g, '<br>');
}

export function table(headers: string[], rows: unknown[][]): string {
  if (rows.length === 0) return '';
  const head = `| ${headers.map(cell).join(' | ')} |`;
  const sep = `| ${headers.map(() => '---').join(' | ')} |`;
  const body = rows.map((r) => `| ${r.map(cell).join(' | ')} |`);
  return [head, sep, ...body].join('\n') + '\n';
}

/** `name: value` pairs as a two-column table. */
export function facts(pairs: [string, unknown][]): string {
  return table(
    ['', ''],
    pairs.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => [`**${k}**`, v]),
  );
}

export function statusIcon(status: 'passed' | 'failed' | 'skipped' | string): string {
  return status === 'passed' ? '✅' : status === 'failed' ? '❌' : '➖';
}
