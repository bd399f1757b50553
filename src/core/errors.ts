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

/** How a front door names its options in messages. */
export interface Wording {
  /** An option as its user sets it: `input 'jobs'` in a workflow, `--jobs` on the command line. */
  option(key: string): string;
  /** How to turn a boolean option on: `set dry-run: true`, `pass --dry-run`. */
  enable(key: string): string;
  /** Options listed in a sentence: `keep-last, keep-daily`, `--keep-last, --keep-daily`. */
  list(keys: readonly string[]): string;
  /** The sentence for a required option that was not given. */
  missing(key: string): string;
}

/** The actions' wording: workflow inputs. */
export const inputWording: Wording = {
  option: (key) => `input '${key}'`,
  enable: (key) => `set ${key}: true`,
  list: (keys) => keys.join(', '),
  missing: (key) => `Input required and not supplied: ${key}`,
};

/**
 * A ConfigurationError about one option. The message is written once, as a function of the
 * wording, so each front door names the option as its user sets it; `message` holds the
 * actions' wording.
 */
export class OptionError extends ConfigurationError {
  constructor(
    readonly key: string,
    private readonly words: (wording: Wording) => string,
  ) {
    super(sentence(words(inputWording)));
    this.name = 'OptionError';
  }

  /** The message in a front door's wording. */
  worded(wording: Wording): string {
    return sentence(this.words(wording));
  }
}

function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
