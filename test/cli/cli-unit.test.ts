import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { envName, parseCommandLine } from '../../src/cli/args.js';
import { main } from '../../src/cli/main.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { mistypedSecretKeys, showsKey } from '../support/mistyped-keys.js';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8').on('data', (c: string) => (text += c));
  return { stream, text: () => text };
}

describe('CLI options', () => {
  it('reads a flag first, then PGBACKUP_<NAME>, then the aliases', () => {
    expect(envName('rto-target')).toBe('PGBACKUP_RTO_TARGET');
    const env = { PGBACKUP_STORAGE: 's3://env/prefix', DATABASE_URL: 'postgresql://a@b/c' };
    const fromEnv = parseCommandLine(['restore'], env);
    expect(fromEnv.string('storage')).toBe('s3://env/prefix');
    expect(fromEnv.string('target-url')).toBe('postgresql://a@b/c');
    const fromFlag = parseCommandLine(['restore', '--storage', './here', '--target-url=x'], {
      ...env,
      PGBACKUP_TARGET_URL: 'y',
    });
    expect(fromFlag.string('storage')).toBe('./here');
    expect(fromFlag.string('target-url')).toBe('x');
    expect(
      parseCommandLine(['restore'], { ...env, PGBACKUP_TARGET_URL: 'y' }).string('target-url'),
    ).toBe('y');
  });

  it('takes booleans as flags or true/false variables, and secrets only from the environment or files', () => {
    expect(
      parseCommandLine(['restore', '--terminate-connections'], {}).boolean('terminate-connections'),
    ).toBe(true);
    expect(
      parseCommandLine(['restore'], { PGBACKUP_TERMINATE_CONNECTIONS: 'true' }).boolean(
        'terminate-connections',
      ),
    ).toBe(true);
    expect(() =>
      parseCommandLine(['restore'], { PGBACKUP_TERMINATE_CONNECTIONS: 'yes' }).boolean(
        'terminate-connections',
      ),
    ).toThrow("PGBACKUP_TERMINATE_CONNECTIONS must be true or false, got 'yes'.");
    expect(
      parseCommandLine(['drill'], { AGE_IDENTITY: 'AGE-SECRET-KEY-1Z' }).secret(
        'encryption-identity',
      ),
    ).toBe('AGE-SECRET-KEY-1Z');
    expect(() => parseCommandLine(['drill', '--encryption-passphrase=hunter2'], {})).toThrow(
      /not a flag.*AGE_PASSPHRASE/,
    );
  });

  it('takes --storage of backup once per destination, each value a line', () => {
    const backup = parseCommandLine(
      ['backup', '--storage', 's3://one/db', '--storage', './copy credentials=R2', '--storage='],
      { PGBACKUP_STORAGE: 's3://env/prefix' },
    );
    expect(backup.string('storage')).toBe('s3://one/db\n./copy credentials=R2');
    expect(
      parseCommandLine(['backup'], { PGBACKUP_STORAGE: 's3://a\n./b' }).string('storage'),
    ).toBe('s3://a\n./b');
    // The other commands read one destination: a repeated flag keeps its last value.
    expect(
      parseCommandLine(['verify', '--storage', './a', '--storage', './b'], {}).string('storage'),
    ).toBe('./b');
  });

  it("reads the actions' boolean spellings only, in flags' variables too", () => {
    for (const value of ['1', '0', 'yes']) {
      expect(() =>
        parseCommandLine(['prune'], { PGBACKUP_DRY_RUN: value }).boolean('dry-run'),
      ).toThrow(`PGBACKUP_DRY_RUN must be true or false, got '${value}'.`);
    }
    expect(parseCommandLine(['prune'], { PGBACKUP_DRY_RUN: 'FALSE' }).boolean('dry-run')).toBe(
      false,
    );
  });
});

describe('pg-backup restore on a terminal', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cli-tty-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = async (answer: string): Promise<{ code: number; stderr: string }> => {
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    const stdout = capture();
    const stderr = capture();
    const done = main(
      ['restore', '--storage', dir, '--target-url', 'postgresql://app@db.example.com:5432/shop'],
      { stdin, stdout: stdout.stream, stderr: stderr.stream, env: {}, cwd: dir },
    );
    stdin.write(`${answer}\n`);
    const code = await done;
    return { code, stderr: stderr.text() };
  };

  it('asks for the database name and refuses another answer, changing nothing', async () => {
    const wrong = await run('production');
    expect(wrong.stderr).toContain(
      "This replaces everything in database 'shop' (app@db.example.com:5432/shop)",
    );
    expect(wrong.stderr).toContain('Type the database name to continue:');
    expect(wrong.stderr).toContain(
      "--confirm must be the target database's name, 'shop', got 'production'",
    );
    expect(wrong.code).toBe(2);
  });

  it('goes on with the right name (here, to an empty catalog)', async () => {
    const right = await run('shop');
    expect(right.stderr).not.toContain('confirm must be');
    expect(right.stderr).toContain('No backups in local folder');
    expect(right.code).toBe(2);
  });
});

describe('pg-backup backup given a secret key as a recipient', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cli-mistyped-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const secret = generateIdentity();
  const team = generateIdentity();

  it.each(Object.entries(mistypedSecretKeys(secret.identity)))(
    'stops naming the line, never printing the value: %s',
    async (_spelling, value) => {
      const stdout = capture();
      const stderr = capture();
      const code = await main(
        ['backup', '--storage', dir, '--encryption-recipients', `${team.recipient},${value}`],
        {
          stdin: new PassThrough(),
          stdout: stdout.stream,
          stderr: stderr.stream,
          env: { PGHOST: '/nonexistent' },
          cwd: dir,
        },
      );
      expect(code).toBe(2);
      expect(stderr.text()).toMatch(/^error: age recipients, line 1, item 2: /);
      expect(showsKey(stdout.text() + stderr.text(), secret.identity)).toBe(false);
    },
  );
});
