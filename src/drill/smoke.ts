import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from '../core/logger.js';
import { childEnv, connectionUrl, type ConnectionInfo } from '../postgres/connection.js';

export interface SmokeResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
}

/**
 * Runs the smoke command with `bash -c` in `cwd`, with DATABASE_URL and PGHOST, PGPORT,
 * PGDATABASE, PGUSER (and PGPASSWORD when there is one) pointing at the restored database.
 * Its output goes to the log line by line; its exit code is the result. Processes it leaves
 * running in the background are stopped when it exits.
 */
export async function runSmokeCommand(o: {
  command: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  connection: ConnectionInfo;
  database: string;
  logger: Logger;
}): Promise<SmokeResult> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = {
    ...childEnv(o.env, o.connection, o.database),
    DATABASE_URL: connectionUrl(o.connection, o.database),
  };
  if (!env.PGHOST) env.PGHOST = 'localhost';
  if (!env.PGPORT) env.PGPORT = '5432';
  // Its own process group, so everything it started can be stopped with it when this process
  // exits early (a cancelled job, Ctrl-C).
  const child = spawn('bash', ['-c', o.command], {
    cwd: o.cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const stopGroup = (): void => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.on('exit', stopGroup);
  const forward = (stream: Readable | null): Promise<void> => {
    if (!stream) return Promise.resolve();
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    return (async () => {
      for await (const line of lines) o.logger.info(line);
    })();
  };
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (error) => {
      o.logger.error(`Could not start bash: ${error.message}`);
      resolve({ code: 127, signal: null });
    });
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const output = Promise.all([forward(child.stdout), forward(child.stderr)]);
  const exit = await done;
  // What the command left running in the background (a server it started) goes with it; its
  // pipes then close, and the output is complete.
  stopGroup();
  process.removeListener('exit', stopGroup);
  await output;
  return { exitCode: exit.code, signal: exit.signal, seconds: (Date.now() - started) / 1000 };
}
