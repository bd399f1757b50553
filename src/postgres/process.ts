import { spawn } from 'node:child_process';

/** What a finished child process left behind. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kills the child with SIGKILL after this many milliseconds (code is then -1). */
  timeoutMs?: number;
}

/**
 * Runs `argv` without a shell and collects its output. Never rejects for a non-zero exit; a
 * program that cannot be started yields code 127 with the reason in stderr.
 */
export function runCommand(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv;
    if (!file) {
      resolve({ code: 127, stdout: '', stderr: 'no command given' });
      return;
    }
    const child = spawn(file, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    const finish = (result: CommandResult): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      resolve(result);
    };
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => {
      finish({ code: 127, stdout: '', stderr: `${file}: ${error.message}` });
    });
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8');
      finish({
        code: timedOut ? -1 : (code ?? -1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: timedOut ? `${stderr}\n${file}: timed out after ${opts.timeoutMs} ms` : stderr,
      });
    });
  });
}

/** The last `lines` non-empty lines of a text, for error messages. */
export function tail(text: string, lines = 20): string {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-lines)
    .join('\n');
}
