import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MemoryLogger } from '../../src/core/logger.js';
import { startScratchCluster } from '../../src/postgres/cluster.js';
import { runBundle } from '../support/bundle.js';
import { machineServer } from '../support/embedded.js';

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('the post: step of restore-drill', () => {
  it('stops a scratch server and removes the files a killed drill left behind', async () => {
    const cluster = await startScratchCluster({
      server: machineServer(),
      logger: new MemoryLogger(),
    });
    try {
      const work = mkdtempSync(path.join(os.tmpdir(), 'restore-drill-'));
      writeFileSync(path.join(work, 'dump.pgc.zst.age'), 'a large download');
      const scratchDir = path.dirname(cluster.dataDir);
      expect(await portAccepts(cluster.port)).toBe(true);

      const run = await runBundle(
        'restore-drill',
        {},
        {
          STATE_isPost: 'true',
          STATE_temporaryFolders: JSON.stringify([work, scratchDir, path.join(work, 'gone')]),
        },
      );
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Stopping the scratch PostgreSQL`);
      expect(existsSync(work)).toBe(false);
      expect(existsSync(scratchDir)).toBe(false);
      expect(await portAccepts(cluster.port)).toBe(false);

      const again = await runBundle('restore-drill', {}, { STATE_isPost: 'true' });
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('Nothing left behind');
    } finally {
      await cluster.stop();
    }
  });
});
