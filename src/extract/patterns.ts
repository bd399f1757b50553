import { ConfigurationError } from '../core/errors.js';

/** A `pg_dump -t` pattern as two anchored PostgreSQL regular expressions. */
export interface TablePattern {
  text: string;
  /** Undefined for an unqualified pattern: it matches tables on the search path, as pg_dump's does. */
  schema?: string;
  name: string;
}

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|]/;

/**
 * Translates a pattern the way psql and pg_dump read one (hand-written: no library speaks
 * their dialect): outside double quotes letters fold to lower case, `*` is `.*`, `?` is `.`,
 * `.` separates the schema from the name and `$` is literal, other regular expression
 * characters keep their meaning; inside double quotes every character is literal and `""` is
 * a quote.
 */
export function parseTablePattern(text: string): TablePattern {
  const parts: string[] = [''];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      if (quoted && text[i + 1] === '"') {
        parts[parts.length - 1] += '"';
        i++;
      } else {
        quoted = !quoted;
      }
    } else if (quoted) {
      parts[parts.length - 1] += REGEX_SPECIAL.test(c) ? `\\${c}` : c;
    } else if (c === '.') {
      parts.push('');
    } else if (c === '*') {
      parts[parts.length - 1] += '.*';
    } else if (c === '?') {
      parts[parts.length - 1] += '.';
    } else if (c === '$') {
      parts[parts.length - 1] += '\\$';
    } else {
      parts[parts.length - 1] += c.toLowerCase();
    }
  }
  if (quoted || parts.length > 2 || parts.some((p) => p === '')) {
    throw new ConfigurationError(
      `Input 'tables': '${text}' is not a table pattern: write [schema.]table, with * and ? as wildcards and double quotes around names with capitals or dots.`,
    );
  }
  const anchor = (p: string): string => `^(${p})$`;
  return parts.length === 2
    ? { text, schema: anchor(parts[0]), name: anchor(parts[1]) }
    : { text, name: anchor(parts[0]) };
}
