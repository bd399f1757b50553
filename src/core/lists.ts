/** A newline- or comma-separated list; blank entries and `#` comments dropped. */
export function splitList(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((s) => s.replace(/#.*$/, '').trim())
    .filter((s) => s !== '');
}
