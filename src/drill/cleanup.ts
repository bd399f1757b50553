import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { processAlive } from '../core/process.js';

/** Whether `pid` is a postgres process (where /proc tells; elsewhere, trusted). */
async function isPostgres(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  return cmdline === undefined || /postgres/.test(cmdline);
}

/**
 * Removes what a drill left behind when its process was killed before its own cleanup ran
 * (the `post:` step of the action): a scratch PostgreSQL still running in one of `dirs` is
 * shut down (SIGQUIT, then SIGKILL), and each folder is deleted. Returns the folders removed.
 */
export async function removeLeftovers(dirs: string[], logger: Logger): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of dirs) {
    if (!dir || !(await stat(dir).catch(() => undefined))) continue;
    const pidFile = path.join(dir, 'data', 'postmaster.pid');
    const pidText = await readFile(pidFile, 'utf8').catch(() => undefined);
    const pid = pidText ? Number(pidText.split('\n')[0]) : NaN;
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid) && (await isPostgres(pid))) {
      logger.info(`Stopping the scratch PostgreSQL (pid ${pid}) left in ${dir}`);
      try {
        process.kill(pid, 'SIGQUIT');
        for (let i = 0; i < 100 && processAlive(pid); i++)
          await new Promise((r) => setTimeout(r, 100));
        if (processAlive(pid)) process.kill(pid, 'SIGKILL');
      } catch (error) {
        logger.warning(`Could not stop pid ${pid}: ${errorMessage(error)}`);
      }
    }
    try {
      await rm(dir, { recursive: true, force: true });
      logger.info(`Removed ${dir}`);
      removed.push(dir);
    } catch (error) {
      logger.warning(`Could not remove ${dir}: ${errorMessage(error)}`);
    }
  }
  return removed;
}
