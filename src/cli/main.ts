import { ConfigurationError, errorMessage, OptionError } from '../core/errors.js';
import { StreamLogger } from '../core/logger.js';
import { COMMANDS, UsageRequest, flagWording, parseCommandLine, usage } from './args.js';
import {
  backupCommand,
  drillCommand,
  exportCommand,
  extractCommand,
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
  extract: extractCommand,
  export: exportCommand,
  prune: pruneCommand,
  files: filesCommand,
};

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
    if (error instanceof OptionError) {
      io.stderr.write(`error: ${error.worded(flagWording)}\n`);
      return 2;
    }
    if (error instanceof ConfigurationError) {
      io.stderr.write(`error: ${error.message}\n`);
      return 2;
    }
    io.stderr.write(`error: ${errorMessage(error)}\n`);
    if (verbose && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    return 1;
  }
}
