/** Where the core writes its log. The actions pass one backed by @actions/core, the CLI one on stderr. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
  /** Runs `fn` inside a foldable log section. */
  group<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** The time source; tests hand in a fixed one. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/**
 * The logger with info lines demoted to debug, for steps whose details only the debug log needs;
 * `everything` also demotes warnings and folds no groups (a step inside another step's group).
 */
export function quieter(logger: Logger, everything = false): Logger {
  return {
    debug: (m) => logger.debug(m),
    info: (m) => logger.debug(m),
    warning: (m) => (everything ? logger.debug(m) : logger.warning(m)),
    error: (m) => logger.error(m),
    group: (name, fn) => (everything ? fn() : logger.group(name, fn)),
  };
}

/** A logger that keeps the lines it was given, for tests and for reports. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  debug(message: string): void {
    this.lines.push(`debug: ${message}`);
  }
  info(message: string): void {
    this.lines.push(message);
  }
  warning(message: string): void {
    this.lines.push(`warning: ${message}`);
  }
  error(message: string): void {
    this.lines.push(`error: ${message}`);
  }
  async group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.lines.push(`group: ${name}`);
    try {
      return await fn();
    } finally {
      this.lines.push(`endgroup: ${name}`);
    }
  }
}

/** A logger that writes plain lines to a stream (the CLI's stderr). */
export class StreamLogger implements Logger {
  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly verbose = false,
  ) {}
  debug(message: string): void {
    if (this.verbose) this.out.write(`  ${message}\n`);
  }
  info(message: string): void {
    this.out.write(`${message}\n`);
  }
  warning(message: string): void {
    this.out.write(`warning: ${message}\n`);
  }
  error(message: string): void {
    this.out.write(`error: ${message}\n`);
  }
  async group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.out.write(`== ${name}\n`);
    return fn();
  }
}
