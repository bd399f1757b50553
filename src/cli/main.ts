import { ConfigurationError, errorMessage } from '../core/errors.js';
import { StreamLogger } from '../core/logger.js';
import { COMMANDS, UsageRequest, parseCommandLine, usage } from './args.js';
import {
  backupCommand,
  drillCommand,
  filesCommand,
  listCommand,
  pruneCommand,
  restoreCommand,
  verifyCommand,
  type CliIo,
  type ExitCode,
} from './commands.js';
import type { ParsedOptions } from './args.js';

const RUN: Record<keyof typeof COMMANDS, (o: ParsedOptions, io: CliIo) => Promise<ExitCode>> = {
  list: listCommand,
  backup: backupCommand,
  verify: verifyCommand,
  drill: drillCommand,
  restore: restoreCommand,
  prune: pruneCommand,
  files: filesCommand,
};

/** Messages of the core name action inputs; on a terminal they are flags. */
export function asFlags(message: string): string {
  return message
    .replace(/\b[Ii]nput '([a-z0-9-]+)'/g, '--$1')
    .replace(/\b[Ii]nput ([a-z][a-z0-9-]+)\b/g, '--$1')
    .replace(
      /\bset (encryption-identity|encryption-passphrase)\b/g,
      'set AGE_IDENTITY or --$1-file',
    )
    .replace(/\bset ([a-z]+(?:-[a-z]+)+): true\b/g, 'pass --$1')
    .replace(/(^|[^-])\bconfirm must be\b/g, '$1--confirm must be');
}

/**
 * Runs one command line. Exit codes: 0 done, 1 a backup, verification, drill or restore
 * failed, 2 the command line or the configuration is wrong (the message says how).
 */
export async function main(
  argv: string[],
  io: Omit<CliIo, 'logger'> & { verbose?: boolean },
): Promise<number> {
  let verbose = argv.includes('--verbose');
  try {
    const options = parseCommandLine(argv, io.env);
    verbose = options.boolean('verbose');
    const logger = new StreamLogger(io.stderr, verbose);
    return await RUN[options.command](options, { ...io, logger });
  } catch (error) {
    if (error instanceof UsageRequest) {
      io.stdout.write(usage(error.command));
      return 0;
    }
    if (error instanceof ConfigurationError) {
      io.stderr.write(`error: ${asFlags(error.message)}\n`);
      return 2;
    }
    io.stderr.write(`error: ${errorMessage(error)}\n`);
    if (verbose && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    return 1;
  }
}
