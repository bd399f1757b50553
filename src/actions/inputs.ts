import * as core from '@actions/core';
import { ConfigurationError } from '../core/errors.js';
import { splitList } from '../core/lists.js';

/** Reads an input; `''` becomes undefined. */
export function optionalInput(name: string): string | undefined {
  const value = core.getInput(name);
  return value === '' ? undefined : value;
}

export function requiredInput(name: string): string {
  const value = optionalInput(name);
  if (value === undefined) throw new ConfigurationError(`Input required and not supplied: ${name}`);
  return value;
}

/** Strict booleans, as the YAML 1.2 core schema spells them; anything else is an error. */
export function booleanInput(name: string, fallback: boolean): boolean {
  const value = optionalInput(name);
  if (value === undefined) return fallback;
  if (['true', 'True', 'TRUE'].includes(value)) return true;
  if (['false', 'False', 'FALSE'].includes(value)) return false;
  throw new ConfigurationError(`Input '${name}' must be true or false, got '${value}'.`);
}

export function integerInput(
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = optionalInput(name);
  if (value === undefined) return fallback;
  const n = Number(value.trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigurationError(
      `Input '${name}' must be a whole number from ${min} to ${max}, got '${value}'.`,
    );
  }
  return n;
}

export function numberInput(name: string, fallback: number, min = 0): number {
  const value = optionalInput(name);
  if (value === undefined) return fallback;
  const n = Number(value.trim().replace(/%$/, ''));
  if (!Number.isFinite(n) || n < min) {
    throw new ConfigurationError(`Input '${name}' must be a number ≥ ${min}, got '${value}'.`);
  }
  return n;
}

/** A newline- or comma-separated list; blank entries and `#` comments dropped. */
export function listInput(name: string): string[] {
  return splitList(optionalInput(name) ?? '');
}

export function choiceInput<T extends string>(name: string, choices: readonly T[], fallback: T): T {
  const value = optionalInput(name);
  if (value === undefined) return fallback;
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new ConfigurationError(
    `Input '${name}' must be one of ${choices.join(', ')}, got '${value}'.`,
  );
}

/** `key=value` pairs (newline or comma separated). */
export function labelsInput(name: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of listInput(name)) {
    const eq = item.indexOf('=');
    if (eq <= 0) {
      throw new ConfigurationError(
        `Input '${name}' takes key=value pairs (e.g. "release=v42, env=prod"), got '${item}'.`,
      );
    }
    labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return labels;
}
