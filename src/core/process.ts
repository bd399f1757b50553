import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';

/** How a child process ended, with the tail of what it wrote to stderr. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export interface RunningProcess {
  child: ChildProcess;
  /** Settles when the process has exited and its stderr is drained; never rejects. */
  exited: Promise<ProcessExit>;
  /** Sends SIGTERM, then SIGKILL after a grace period, when the process is still running. */
  kill(): void;
}

const STDERR_TAIL = 16 * 1024;

/**
 * Starts a tool, keeping the last 16 KiB of its stderr for error messages. `onStderrLine`
 * sees each line as it comes (for logs).
 */
export function startProcess(
  command: string,
  args: string[],
  options: SpawnOptions & { onStderrLine?: (line: string) => void } = {},
): RunningProcess {
  const { onStderrLine, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
  let tail = '';
  let pending = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-STDERR_TAIL);
    if (onStderrLine) {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) onStderrLine(line);
    }
  });
  const exited = new Promise<ProcessExit>((resolve) => {
    let spawnError: Error | undefined;
    child.on('error', (error) => {
      spawnError = error;
      tail += `${tail ? '\n' : ''}${error.message}`;
      resolve({ code: 127, signal: null, stderr: tail });
    });
    child.on('close', (code, signal) => {
      if (spawnError) return;
      if (onStderrLine && pending.trim()) onStderrLine(pending);
      resolve({ code, signal, stderr: tail });
    });
  });
  const kill = (): void => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, 5000);
    timer.unref();
  };
  return { child, exited, kill };
}

/** What a finished child process left behind. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions extends SpawnOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string;
  /** Kills the child with SIGKILL after this many milliseconds (code is then -1). */
  timeoutMs?: number;
}

/**
 * Runs a tool to completion and collects its output, without a shell. Never rejects: a
 * program that cannot be started yields code 127 with the reason in stderr; one killed by a
 * signal or the timeout yields -1.
 */
export async function runProcess(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<CommandResult & { signal: NodeJS.Signals | null }> {
  const { input, timeoutMs, ...spawnOptions } = options;
  const child = spawn(command, args, {
    ...spawnOptions,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  if (input !== undefined) child.stdin?.end(input);
  let timedOut = false;
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, timeoutMs);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: CommandResult & { signal: NodeJS.Signals | null }): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      resolve(result);
    };
    child.on('error', (error) =>
      finish({ code: 127, signal: null, stdout, stderr: `${stderr}${command}: ${error.message}` }),
    );
    child.on('close', (code, signal) =>
      finish({
        code: timedOut ? -1 : (code ?? -1),
        signal,
        stdout,
        stderr: timedOut ? `${stderr}\n${command}: timed out after ${timeoutMs} ms` : stderr,
      }),
    );
  });
}

/** `runProcess` with the program and its arguments in one array. */
export function runCommand(argv: string[], options: RunOptions = {}): Promise<CommandResult> {
  const [command, ...args] = argv;
  if (!command) return Promise.resolve({ code: 127, stdout: '', stderr: 'no command given' });
  return runProcess(command, args, options);
}

/** The last `lines` non-empty lines of a text, for error messages. */
export function tail(text: string, lines = 20): string {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-lines)
    .join('\n');
}

/** Describes an abnormal exit: `pg_dump exited with code 1: <stderr>`. */
export function describeExit(tool: string, exit: ProcessExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const text = exit.stderr.trim();
  return text ? `${tool} ${how}: ${text}` : `${tool} ${how}`;
}

/** The absolute path of an executable found on PATH, or undefined. */
export function findOnPath(name: string, pathEnv = process.env.PATH ?? ''): string | undefined {
  for (const dir of pathEnv.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether `pid` runs; a zombie (killed, not yet reaped by its parent) counts as gone. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
