import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { generateIdentity } from '../../src/crypto/age.js';
import { bundlePath, node24, runBundle } from '../support/bundle.js';
import { makeStore, type TestStore } from '../support/env.js';
import { loadSample, newDatabase } from '../support/sample.js';

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

/** Polls `count` until it returns `expected` or `ms` pass; returns the last count. */
async function settle(count: () => number, expected: number, ms = 5000): Promise<number> {
  const deadline = Date.now() + ms;
  let last = count();
  while (last !== expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    last = count();
  }
  return last;
}

/** Processes whose command line contains `text`. */
function processesWith(text: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe.each(['s3', 'local'] as const)('a cancelled drill (%s storage)', (kind) => {
  let store: TestStore;
  const key = generateIdentity();

  beforeAll(async () => {
    store = await makeStore(kind);
    const source = await newDatabase('cancel');
    await loadSample(source);
    const backup = await runBundle(
      'backup',
      {
        'database-url': source,
        storage: store.location,
        'encryption-recipients': key.recipient,
        ...store.inputs,
      },
      store.env,
    );
    expect(backup.code).toBe(0);
  });

  it('stops its scratch server, its smoke command and removes its files on SIGTERM', async () => {
    const runnerTemp = mkdtempSync(path.join(os.tmpdir(), 'runner-'));
    const marker = `${Math.floor(Math.random() * 1000) + 100}.25`;
    const inputs: Record<string, string> = {
      storage: store.location,
      'encryption-identity': key.identity,
      'smoke-command': `echo smoke-started; sleep ${marker}`,
      ...store.inputs,
    };
    const env: NodeJS.ProcessEnv = { ...process.env, ...store.env, RUNNER_TEMP: runnerTemp };
    for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
    const child = spawn(node24, [bundlePath('restore-drill')], {
      env,
      cwd: runnerTemp,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const started = new Promise<void>((resolve) => {
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        stdout += c;
        if (stdout.includes('smoke-started\n')) resolve();
      });
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await started;
    const port = Number(/Started a scratch PostgreSQL \S+ on port (\d+)/.exec(stdout)?.[1]);
    const states = [...stdout.matchAll(/::save-state name=temporaryFolders::(.*)/g)];
    const folders = JSON.parse(states[states.length - 1][1]) as string[];
    expect(folders.length).toBe(3);
    expect(await portAccepts(port)).toBe(true);
    // Under load, /proc can show the sleep a moment after its line reaches us.
    expect(await settle(() => processesWith(`sleep ${marker}`).length, 1)).toBe(1);

    child.kill('SIGTERM');
    expect(await exited).toBe(1);
    expect(stdout).toContain('Received SIGTERM');
    expect(await portAccepts(port)).toBe(false);
    for (const folder of folders) expect(existsSync(folder)).toBe(false);
    expect(processesWith(`sleep ${marker}`)).toEqual([]);
  });
});
