/** Parsing of the prune inputs that the retention planner does not own (names, grace period). */

import { isCatalogName } from '../catalog/keys.js';
import { parseDuration } from '../core/duration.js';
import { OptionError } from '../core/errors.js';

/** Every catalog name under the store's prefix. */
export const ALL_NAMES = '*';

function quoted(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/**
 * The `name` input: one catalog name, several (newline or comma separated), or `*` alone for
 * every name under the prefix. Duplicates are dropped; `#` starts a comment.
 */
export function parsePruneNames(text: string, inputName = 'name'): string[] | typeof ALL_NAMES {
  const items = text
    .split(/[\n,]/)
    .map((s) => s.replace(/#.*$/, '').trim())
    .filter((s) => s !== '');
  if (items.length === 0) {
    throw new OptionError(
      inputName,
      (w) =>
        `${w.option(inputName)} must name the backups to prune: a catalog name such as shop, ` +
        'several names one per line, or * for every name under the storage prefix.',
    );
  }
  if (items.includes(ALL_NAMES)) {
    if (items.length > 1) {
      throw new OptionError(
        inputName,
        (w) =>
          `${w.option(inputName)} mixes * with other names (${items.filter((n) => n !== ALL_NAMES).join(', ')}); ` +
          'use * alone for every name, or list the names.',
      );
    }
    return ALL_NAMES;
  }
  for (const item of items) {
    if (!isCatalogName(item)) {
      throw new OptionError(
        inputName,
        (w) =>
          `${w.option(inputName)} holds ${quoted(item)}, which is not a catalog name: names are one ` +
          'path segment of letters, digits, ".", "_" and "-" (such as shop or billing-prod).',
      );
    }
  }
  return [...new Set(items)];
}

/**
 * The `delete-incomplete-after` input: a duration above zero (`24h`, `3d`), or `never` to keep
 * data without a manifest forever. Zero is refused: it would delete uploads still in progress.
 * Returns seconds, or undefined for `never`.
 */
export function parseDeleteIncompleteAfter(
  text: string,
  inputName = 'delete-incomplete-after',
): number | undefined {
  if (text.trim().toLowerCase() === 'never') return undefined;
  const seconds = parseDuration(text, inputName);
  if (!(seconds > 0)) {
    throw new OptionError(
      inputName,
      (w) =>
        `${w.option(inputName)} must be longer than zero (such as 24h), or never; got ${quoted(text)}. ` +
        'Data without a manifest younger than this may be an upload still in progress.',
    );
  }
  return seconds;
}
