/**
 * An error the user can fix: a bad input, a missing permission, a missing tool.
 * Entrypoints report these as they are; anything else is reported as a bug.
 */
export class ConfigurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigurationError';
  }
}

/** `error` as an Error: thrown non-Error values are wrapped with their text. */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The message of any thrown value. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
