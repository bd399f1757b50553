import type { Logger } from '../core/logger.js';
import { ensureClientTools } from '../postgres/install.js';
import { findServerBinaries } from '../postgres/tools.js';
import { scratchServer } from '../restore/target.js';
import type { VerifyDeps } from './verify.js';

/**
 * How the action (and the CLI) find PostgreSQL programs for a verification: a pg_restore at least
 * as new as the archive's pg_dump (exactly `postgresVersion` when one is given), and a server at
 * least as new as the source for the throwaway cluster. With `install`, missing ones are
 * installed with apt on Debian and Ubuntu, as the backup action does for pg_dump.
 */
export function verifyToolResolvers(o: {
  postgresVersion: 'auto' | number;
  install: boolean;
  logger: Logger;
}): Pick<VerifyDeps, 'resolveTools' | 'findServer'> {
  const search = { logger: o.logger };
  return {
    resolveTools: ({ major, version }) =>
      ensureClientTools({
        serverMajor: major,
        serverVersion: version,
        postgresVersion: o.postgresVersion,
        install: o.install,
        search,
      }),
    findServer: async (minMajor) => {
      const found = await findServerBinaries(minMajor, search);
      if (found) return found;
      if (o.install) {
        await ensureClientTools({
          serverMajor: minMajor,
          serverVersion: String(minMajor),
          postgresVersion: 'auto',
          install: true,
          needServer: true,
          search,
        });
      }
      return scratchServer(minMajor, o.logger);
    },
  };
}
