import { parseDuration } from '../core/duration.js';
import { OptionError, type Wording } from '../core/errors.js';
import { splitList } from '../core/lists.js';
import type { GitContext } from '../catalog/manifest.js';

/**
 * Where a front door's option values come from: the action's inputs, or the CLI's flags and
 * environment. Keys are the action inputs' names (`backup-id`, `restore`).
 */
export interface OptionSource {
  /** The value as given; undefined when unset or empty. */
  value(key: string): string | undefined;
  /** A secret value: an input, or for the CLI the environment or a file, never a flag. */
  secret(key: string): string | undefined;
}

/** What a front door knows of where it runs, beside the options. */
export interface FrontDoor {
  env: NodeJS.ProcessEnv;
  /** Where relative paths (SQL check files, the smoke command) are resolved. */
  workspace: string;
  git: GitContext;
  now: Date;
  /** How this front door names options in what it logs. */
  wording: Wording;
}

const TRUE = ['true', 'True', 'TRUE'];
const FALSE = ['false', 'False', 'FALSE'];

/** A boolean as the YAML 1.2 core schema spells it, or undefined for anything else. */
export function parseBoolean(text: string): boolean | undefined {
  if (TRUE.includes(text)) return true;
  if (FALSE.includes(text)) return false;
  return undefined;
}

/**
 * Typed options of one front door. Every bad value is an OptionError naming the key, which
 * each front door words its own way.
 */
export class OptionReader {
  constructor(private readonly source: OptionSource) {}

  string(key: string): string | undefined {
    return this.source.value(key);
  }

  /** A string with surrounding whitespace removed; undefined when blank. */
  trimmed(key: string): string | undefined {
    const value = this.source.value(key)?.trim();
    return value === '' ? undefined : value;
  }

  required(key: string): string {
    const value = this.source.value(key);
    if (value === undefined) {
      throw new OptionError(key, (w) => w.missing(key));
    }
    return value;
  }

  secret(key: string): string | undefined {
    return this.source.secret(key);
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.source.value(key);
    if (value === undefined) return fallback;
    const parsed = parseBoolean(value);
    if (parsed === undefined) {
      throw new OptionError(key, (w) => `${w.option(key)} must be true or false, got '${value}'.`);
    }
    return parsed;
  }

  integer(key: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.source.value(key);
    if (value === undefined) return fallback;
    const n = Number(value.trim());
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new OptionError(
        key,
        (w) => `${w.option(key)} must be a whole number from ${min} to ${max}, got '${value}'.`,
      );
    }
    return n;
  }

  /** A number ≥ min; a trailing `%` is allowed. */
  number(key: string, fallback: number, min = 0): number {
    const value = this.source.value(key);
    if (value === undefined) return fallback;
    const n = Number(value.trim().replace(/%$/, ''));
    if (!Number.isFinite(n) || n < min) {
      throw new OptionError(
        key,
        (w) => `${w.option(key)} must be a number ≥ ${min}, got '${value}'.`,
      );
    }
    return n;
  }

  /** A newline- or comma-separated list; blank entries and `#` comments dropped. */
  list(key: string): string[] {
    return splitList(this.source.value(key) ?? '');
  }

  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const value = this.source.value(key);
    if (value === undefined) return fallback;
    if ((choices as readonly string[]).includes(value)) return value as T;
    throw new OptionError(
      key,
      (w) => `${w.option(key)} must be one of ${choices.join(', ')}, got '${value}'.`,
    );
  }

  /** `key=value` pairs (newline or comma separated). */
  labels(key: string): Record<string, string> {
    const labels: Record<string, string> = {};
    for (const item of this.list(key)) {
      const eq = item.indexOf('=');
      if (eq <= 0) {
        throw new OptionError(
          key,
          (w) =>
            `${w.option(key)} takes key=value pairs (e.g. "release=v42, env=prod"), got '${item}'.`,
        );
      }
      labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
    }
    return labels;
  }

  /** A duration in seconds (`26h`, `1h30m`), or undefined when not given. */
  duration(key: string): number | undefined {
    const value = this.source.value(key);
    return value === undefined ? undefined : parseDuration(value, key);
  }
}
