import { flagWording, optionReader, parseCommandLine } from '../../src/cli/args.js';
import { inputWording, OptionError, type Wording } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { backupOptions } from '../../src/options/backup.js';
import { pruneOptions } from '../../src/options/prune.js';
import { OptionReader, type FrontDoor } from '../../src/options/reader.js';
import { drillOptions, restoreOptions, verifyOptions } from '../../src/options/restore.js';

/** The action's inputs, as @actions/core reads them: '' is unset. */
function inputs(values: Record<string, string>): OptionReader {
  const value = (key: string): string | undefined => (values[key] === '' ? undefined : values[key]);
  return new OptionReader({ value, secret: value });
}

function door(wording: Wording): FrontDoor {
  return { env: {}, workspace: '/work', git: {}, now: new Date('2026-12-01T00:00:00Z'), wording };
}

function cli(argv: string[], env: NodeJS.ProcessEnv = {}): OptionReader {
  return optionReader(parseCommandLine(argv, env));
}

/** The error a builder throws, worded by each front door. */
function worded(build: () => unknown): { action: string; cli: string } {
  try {
    build();
  } catch (error) {
    if (!(error instanceof OptionError)) throw error;
    return { action: error.message, cli: error.worded(flagWording) };
  }
  throw new Error('no error');
}

describe('options built once for the actions and the CLI', () => {
  it('gives the same drill and restore options from inputs and from flags', () => {
    const action = inputs({
      'backup-id': '20261121T051500Z-3f9a1c',
      jobs: '4',
      'rto-target': '30m',
      'rpo-target': '26h',
      'target-url': 'postgresql://app@db/shop',
      confirm: 'shop',
      'terminate-connections': 'true',
      'safety-backup': 'false',
    });
    const flags = cli(
      [
        'restore',
        '--backup-id=20261121T051500Z-3f9a1c',
        '--jobs=4',
        '--rto-target=30m',
        '--rpo-target=26h',
        '--target-url=postgresql://app@db/shop',
        '--confirm=shop',
        '--terminate-connections',
        '--no-safety-backup',
      ],
      {},
    );
    const fromInputs = restoreOptions(action, door(inputWording));
    expect(restoreOptions(flags, door(flagWording))).toEqual(fromInputs);
    expect(fromInputs).toMatchObject({
      jobs: 4,
      rtoTargetSeconds: 1800,
      rpoTargetSeconds: 93600,
      terminateConnections: true,
      safetyBackup: false,
    });
    expect(drillOptions(inputs({}), door(inputWording))).toEqual(
      drillOptions(cli(['drill']), door(flagWording)),
    );
  });

  it('gives the same verify, backup and prune options from both front doors', () => {
    const logger = new MemoryLogger();
    expect(verifyOptions(inputs({ restore: 'false' }), door(inputWording), logger)).toEqual(
      verifyOptions(cli(['verify', '--no-restore']), door(flagWording), logger),
    );
    const env = { PGHOST: 'db', PGDATABASE: 'shop' };
    const backupInputs = inputs({ kind: 'manual', labels: 'a=1', 'keep-until': '90d' });
    expect(backupOptions(backupInputs, { ...door(inputWording), env }, 'scheduled')).toEqual(
      backupOptions(
        cli(['backup', '--labels', 'a=1', '--keep-until', '90d']),
        { ...door(flagWording), env },
        'manual',
      ),
    );
    expect(pruneOptions(inputs({ name: 'shop', 'keep-daily': '7', 'dry-run': 'true' }))).toEqual(
      pruneOptions(cli(['prune', '--name=shop', '--keep-daily=7', '--dry-run'])),
    );
  });

  it('takes true and false as the YAML core schema spells them, and nothing else', () => {
    expect(inputs({ globals: 'TRUE' }).boolean('globals', false)).toBe(true);
    for (const value of ['1', 'yes', 'on']) {
      expect(worded(() => inputs({ globals: value }).boolean('globals', false)).action).toBe(
        `Input 'globals' must be true or false, got '${value}'.`,
      );
    }
  });

  it('words an error about an option as each front door names it', () => {
    expect(worded(() => drillOptions(inputs({ 'backup-id': 'x' }), door(inputWording)))).toEqual({
      action:
        "Input 'backup-id' must look like 20261121T051500Z-3f9a1c (or be empty for the newest backup), got 'x'.",
      cli: "--backup-id must look like 20261121T051500Z-3f9a1c (or be empty for the newest backup), got 'x'.",
    });
    const rto = worded(() => drillOptions(cli(['drill', '--rto-target=30']), door(flagWording)));
    expect(rto.action).toMatch(/^Input 'rto-target' must be .*; got "30" \(add a unit/);
    expect(rto.cli).toMatch(/^--rto-target must be .*; got "30" \(add a unit/);
    const keep = worded(() => pruneOptions(inputs({ name: 'shop', 'keep-daily': 'x' })));
    expect(keep.cli).toBe('--keep-daily must be a whole number of backups, 0 or more; got "x".');
    const none = worded(() => pruneOptions(inputs({ name: 'shop' })));
    expect(none.cli).toMatch(/^Set at least one of --keep-last, --keep-hourly, /);
    expect(none.action).toMatch(/^Set at least one of keep-last, keep-hourly, /);
    const storage = worded(() => cli(['list']).required('storage'));
    expect(storage).toEqual({
      action: 'Input required and not supplied: storage',
      cli: 'This command needs --storage (or the environment variable PGBACKUP_STORAGE).',
    });
  });

  it('names secrets by where the CLI reads them, and negated booleans by their flag', () => {
    expect(flagWording.option('encryption-identity')).toBe(
      'AGE_IDENTITY or --encryption-identity-file',
    );
    expect(flagWording.option('encryption-passphrase')).toBe(
      'AGE_PASSPHRASE or --encryption-passphrase-file',
    );
    expect(flagWording.option('safety-backup')).toBe('--no-safety-backup');
    expect(flagWording.enable('terminate-connections')).toBe('pass --terminate-connections');
    expect(inputWording.enable('terminate-connections')).toBe('set terminate-connections: true');
  });
});
