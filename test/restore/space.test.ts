import type { Manifest } from '../../src/catalog/manifest.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { parseConnectionString } from '../../src/postgres/connection.js';
import { measureServerSpace, requireServerSpace } from '../../src/restore/space.js';
import { sharedPostgresUrl } from '../support/env.js';
import { withClient } from '../support/sample.js';

const GiB = 1024 ** 3;

/** A manifest holding only what the space estimate reads. */
function manifestOf(tables: { bytes: number; dataExcluded?: boolean }[]): Manifest {
  return {
    tables: tables.map((t, i) => ({ schema: 'public', name: `t${i}`, rows: 0, ...t })),
  } as unknown as Manifest;
}

describe('the space a real restore needs on the server', () => {
  it('counts the tables the backup restores, and refuses when the server has too little', () => {
    const needed = 10 * GiB;
    expect(() => requireServerSpace({ needed, free: 10 * GiB, where: '/data' }, 'db@host')).toThrow(
      ConfigurationError,
    );
    expect(() => requireServerSpace({ needed, free: 10 * GiB, where: '/data' }, 'db@host')).toThrow(
      /needs about 11\.0 GiB free on the server until the commit .* 10\.0 GiB is free at \/data\. .*Nothing was changed\./,
    );
    expect(requireServerSpace({ needed, free: 12 * GiB, where: '/data' }, 'db@host')).toMatch(
      /12\.0 GiB is free at \/data$/,
    );
    expect(requireServerSpace({ needed }, 'db@host')).toMatch(
      /free space cannot be seen from here: check it/,
    );
  });

  it("measures a server on this machine at its data directory, never a remote one's", async () => {
    const url = sharedPostgresUrl();
    const manifest = manifestOf([{ bytes: 5 * GiB }, { bytes: 7 * GiB, dataExcluded: true }]);
    await withClient(url, async (client) => {
      const local = await measureServerSpace(client, parseConnectionString(url), manifest);
      expect(local.needed).toBe(5 * GiB);
      expect(local.free).toBeGreaterThan(0);
      expect(local.where).toMatch(/^\//);
      // Too little free space, as the server's disk would report it: refused.
      const full = await measureServerSpace(client, parseConnectionString(url), manifest, () =>
        Promise.resolve(GiB),
      );
      expect(() => requireServerSpace(full, 'db')).toThrow(/1\.0 GiB is free at \//);
      // A server elsewhere: its disk is not this machine's.
      const remote = { ...parseConnectionString(url), host: 'db.example.com' };
      expect(await measureServerSpace(client, remote, manifest)).toEqual({ needed: 5 * GiB });
    });
  });
});
