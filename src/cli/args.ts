import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigurationError, errorMessage, type Wording } from '../core/errors.js';
import { OptionReader, parseBoolean } from '../options/reader.js';

/**
 * The CLI's options. Every option `--some-name` can also be set with the environment variable
 * `PGBACKUP_SOME_NAME`; a flag wins over the variable. A few widely used variables are read
 * too (`aliases`). Secrets are never flags, where `ps` and the shell history would show them:
 * they come from the environment or from a file.
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  help: string;
  /** Environment variables read after PGBACKUP_<NAME>, in order. */
  aliases?: string[];
  /** Environment only (PGBACKUP_<NAME> and aliases), never a flag. */
  envOnly?: boolean;
  /** Shown in the help as the value's placeholder. */
  value?: string;
  /** May be given several times: the values are read as the lines of one value. */
  multiple?: boolean;
}

const storage: Record<string, OptionSpec> = {
  storage: {
    type: 'string',
    value: 'LOCATION',
    help: 's3://bucket/prefix or a folder (required)',
  },
  name: { type: 'string', value: 'NAME', help: 'catalog name (default: the only one in storage)' },
  's3-endpoint': {
    type: 'string',
    value: 'URL',
    help: 'S3-compatible endpoint (R2, B2, MinIO, ...)',
  },
  's3-region': { type: 'string', value: 'REGION', help: 'bucket region (default: AWS_REGION)' },
  's3-force-path-style': { type: 'boolean', help: 'address the bucket in the URL path' },
};

const decryption: Record<string, OptionSpec> = {
  'encryption-identity-file': {
    type: 'string',
    value: 'FILE',
    aliases: ['AGE_IDENTITY_FILE'],
    help: 'age identity file (age-keygen output)',
  },
  'encryption-identity': {
    type: 'string',
    envOnly: true,
    aliases: ['AGE_IDENTITY'],
    help: 'the age identity itself (AGE-SECRET-KEY-1...)',
  },
  'encryption-passphrase-file': {
    type: 'string',
    value: 'FILE',
    help: 'file holding the age passphrase',
  },
  'encryption-passphrase': {
    type: 'string',
    envOnly: true,
    aliases: ['AGE_PASSPHRASE'],
    help: 'the age passphrase itself',
  },
};

const output: Record<string, OptionSpec> = {
  json: { type: 'boolean', help: 'print the result as JSON on stdout' },
  verbose: { type: 'boolean', help: 'more detail on stderr' },
  help: { type: 'boolean', help: 'this help' },
};

const restoreCommon: Record<string, OptionSpec> = {
  'backup-id': { type: 'string', value: 'ID', help: 'backup to use (default: the newest)' },
  jobs: { type: 'string', value: 'N', help: 'parallel pg_restore jobs (default 2)' },
  checks: { type: 'string', value: 'SQL|FILE', help: 'SQL assertions (pass when no rows)' },
  'work-dir': {
    type: 'string',
    value: 'DIR',
    help: 'where the download, archive and scratch server go (default: the temp folder)',
  },
  'postgres-version': {
    type: 'string',
    value: 'auto|N',
    help: 'client tools (and least scratch server) major',
  },
  'restore-plan': {
    type: 'string',
    value: 'auto|disk|stream',
    help: 'archive on disk, or streamed into pg_restore (default auto: from the free space)',
  },
};

const drillOnly: Record<string, OptionSpec> = {
  'rto-target': { type: 'string', value: 'DURATION', help: 'fail when recovery takes longer' },
  'rpo-target': { type: 'string', value: 'DURATION', help: 'fail when the backup is older' },
  'smoke-command': {
    type: 'string',
    value: 'CMD',
    help: 'run with DATABASE_URL/PG* of the restored database',
  },
};

const tableSelection: Record<string, OptionSpec> = {
  tables: {
    type: 'string',
    value: 'LIST',
    help: 'pg_dump -t patterns, comma separated (required)',
  },
  'backup-id': restoreCommon['backup-id'],
  jobs: restoreCommon.jobs,
  'work-dir': restoreCommon['work-dir'],
  'postgres-version': restoreCommon['postgres-version'],
  'scratch-url': {
    type: 'string',
    value: 'URL',
    help: 'a new database to use as the scratch copy (default: a server the command starts)',
  },
};

export interface CommandSpec {
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
}

const filesOnly: Record<string, OptionSpec> = {
  mode: {
    type: 'string',
    value: 'backup|restore|verify|drill|prune',
    help: 'what to do (default backup)',
  },
  source: { type: 'string', value: 'LOCATION', help: 'backup: s3://bucket[/prefix] or a folder' },
  target: {
    type: 'string',
    value: 'LOCATION',
    help: 'restore, drill: an empty s3://bucket/prefix or folder',
  },
  'files-s3-endpoint': { type: 'string', value: 'URL', help: 'endpoint of the source or target' },
  'files-s3-region': { type: 'string', value: 'REGION', help: 'region of the source or target' },
  'files-s3-force-path-style': { type: 'boolean', help: 'source or target bucket in the path' },
  'files-s3-access-key-id': { type: 'string', value: 'ID', help: 'source or target access key' },
  'files-s3-secret-access-key': {
    type: 'string',
    envOnly: true,
    help: 'secret of the source or target access key',
  },
  'encryption-recipients': {
    type: 'string',
    value: 'AGE1...',
    aliases: ['AGE_RECIPIENTS'],
    help: 'backup: age public keys to encrypt to',
  },
  kind: { type: 'string', value: 'KIND', help: 'backup: kind recorded in the manifest' },
  'backup-id': {
    type: 'string',
    value: 'ID',
    help: 'restore, verify, drill: point in time (default: newest)',
  },
  restore: { type: 'boolean', help: 'verify: also restore into a scratch folder and compare' },
  'work-dir': {
    type: 'string',
    value: 'DIR',
    help: 'verify, drill: where the scratch folder goes',
  },
  'rto-target': {
    type: 'string',
    value: 'DURATION',
    help: 'drill: fail when restoring takes longer',
  },
  'rpo-target': {
    type: 'string',
    value: 'DURATION',
    help: 'drill: fail when the newest file backup is older',
  },
  'keep-last': { type: 'string', value: 'N', help: 'prune: keep the newest N' },
  'keep-daily': { type: 'string', value: 'N', help: 'prune: keep the last of each of N days' },
  'keep-weekly': { type: 'string', value: 'N', help: 'prune: keep the last of each of N weeks' },
  'keep-monthly': { type: 'string', value: 'N', help: 'prune: keep the last of each of N months' },
  'keep-yearly': { type: 'string', value: 'N', help: 'prune: keep the last of each of N years' },
  'keep-within': { type: 'string', value: 'DURATION', help: 'prune: keep everything this young' },
  timezone: { type: 'string', value: 'TZ', help: 'prune: calendar of the daily/weekly rules' },
  'dry-run': { type: 'boolean', help: 'prune: plan and report only' },
  'delete-incomplete-after': {
    type: 'string',
    value: 'DURATION|never',
    help: 'prune: grace period of folders without a manifest (default 24h)',
  },
  'max-delete': {
    type: 'string',
    value: 'N|N%',
    help: 'prune: refuse larger deletions (default 50%)',
  },
};

export const COMMANDS: Record<string, CommandSpec> = {
  list: {
    summary: 'list the backups of the catalog, with their last verification',
    usage: 'pg-backup list --storage LOCATION [--name NAME]',
    options: { ...storage, ...output },
  },
  backup: {
    summary: 'back up a database (pg_dump, zstd, age) to the storage',
    usage:
      'pg-backup backup --storage LOCATION [--storage LOCATION ...] --database-url URL [options]',
    options: {
      ...storage,
      storage: {
        ...storage.storage,
        multiple: true,
        help: 's3://bucket/prefix or a folder, with its line options (required; repeat for several destinations)',
      },
      'destinations-required': {
        type: 'string',
        value: 'N',
        help: 'with several destinations: how many must succeed (default: all)',
      },
      'database-url': {
        type: 'string',
        value: 'URL',
        aliases: ['DATABASE_URL'],
        help: 'database to back up (default: PG* variables)',
      },
      format: { type: 'string', value: 'custom|directory', help: 'archive format' },
      jobs: { type: 'string', value: 'N', help: 'parallel pg_dump jobs (directory format)' },
      compression: { type: 'string', value: 'auto|zstd[:N]|gzip[:N]|none', help: 'compression' },
      schemas: { type: 'string', value: 'LIST', help: 'only these schemas' },
      'exclude-schemas': { type: 'string', value: 'LIST', help: 'leave out these schemas' },
      'exclude-table-data': { type: 'string', value: 'LIST', help: 'tables dumped without rows' },
      globals: { type: 'boolean', help: 'also dump roles (pg_dumpall --roles-only)' },
      'encryption-recipients': {
        type: 'string',
        value: 'AGE1...',
        aliases: ['AGE_RECIPIENTS'],
        help: 'age public keys to encrypt to',
      },
      'encryption-passphrase-file': decryption['encryption-passphrase-file'],
      'encryption-passphrase': decryption['encryption-passphrase'],
      kind: {
        type: 'string',
        value: 'KIND',
        help: 'scheduled|pre-migration|manual (default manual)',
      },
      labels: { type: 'string', value: 'K=V,...', help: 'labels recorded in the manifest' },
      'keep-until': { type: 'string', value: 'DATE|DURATION', help: 'pin against pruning' },
      'row-counts': { type: 'string', value: 'exact|estimate|off', help: 'table row counts' },
      'postgres-version': restoreCommon['postgres-version'],
      ...output,
    },
  },
  verify: {
    summary: 'prove a backup is intact and restores (into a scratch server)',
    usage: 'pg-backup verify --storage LOCATION [--backup-id ID] [options]',
    options: {
      ...storage,
      ...decryption,
      ...restoreCommon,
      'no-restore': { type: 'boolean', help: 'check the stored object only, do not restore' },
      'target-url': {
        type: 'string',
        value: 'URL',
        help: 'an empty or new database to restore into',
      },
      'max-age': {
        type: 'string',
        value: 'DURATION',
        help: 'fail when the newest backup is older',
      },
      ...output,
    },
  },
  drill: {
    summary: 'timed restore into a scratch server (RTO, RPO, checks, smoke command)',
    usage: 'pg-backup drill --storage LOCATION [--rto-target 30m] [--rpo-target 26h] [options]',
    options: {
      ...storage,
      ...decryption,
      ...restoreCommon,
      ...drillOnly,
      'target-url': {
        type: 'string',
        value: 'URL',
        help: 'an empty or new database instead of a scratch server',
      },
      ...output,
    },
  },
  restore: {
    summary: 'replace the contents of a database with a backup (the real restore)',
    usage: 'pg-backup restore --storage LOCATION --target-url URL [--confirm DBNAME] [options]',
    options: {
      ...storage,
      ...decryption,
      ...restoreCommon,
      ...drillOnly,
      'target-url': {
        type: 'string',
        value: 'URL',
        aliases: ['DATABASE_URL'],
        help: 'the database to replace (default: DATABASE_URL, then PG* variables)',
      },
      confirm: { type: 'string', value: 'DBNAME', help: 'the target database name (else asked)' },
      'terminate-connections': { type: 'boolean', help: 'end other sessions of the target' },
      'no-safety-backup': { type: 'boolean', help: 'skip the pre-restore backup of the target' },
      ...output,
    },
  },
  extract: {
    summary: 'tables of a backup into a new schema beside the live ones, compared with them',
    usage:
      'pg-backup extract --storage LOCATION --tables LIST [--target-url URL] [--confirm DBNAME] [options]',
    options: {
      ...storage,
      ...decryption,
      ...tableSelection,
      'target-url': {
        type: 'string',
        value: 'URL',
        aliases: ['DATABASE_URL'],
        help: 'the database to extract into (default: DATABASE_URL, then PG* variables)',
      },
      confirm: { type: 'string', value: 'DBNAME', help: 'the target database name (else asked)' },
      'extract-schema': {
        type: 'string',
        value: 'SCHEMA',
        help: 'the new schema (default: recovered_<backup id>)',
      },
      'replace-extract-schema': {
        type: 'boolean',
        help: 'replace that schema when an earlier extract made it',
      },
      'no-compare': { type: 'boolean', help: 'do not compare with the live tables' },
      'compare-limit': {
        type: 'string',
        value: 'N',
        help: 'rows per table in the comparison CSV (default 1000)',
      },
      output: {
        type: 'string',
        value: 'DIR',
        help: 'folder of the comparison CSV files (default: ./extract-<time>)',
      },
      ...output,
    },
  },
  export: {
    summary: 'tables of a backup as CSV or JSON Lines files, zstd-compressed, age-encrypted',
    usage: 'pg-backup export --storage LOCATION --tables LIST [--output DIR] [options]',
    options: {
      ...storage,
      ...decryption,
      ...tableSelection,
      'export-format': { type: 'string', value: 'csv|jsonl', help: 'file format (default csv)' },
      'encryption-recipients': {
        type: 'string',
        value: 'AGE1...',
        aliases: ['AGE_RECIPIENTS'],
        help: "age public keys (default: the backup's own)",
      },
      output: {
        type: 'string',
        value: 'DIR',
        help: 'a local folder (default: <name>/exports/<backup-id>/ in the storage)',
      },
      ...output,
    },
  },
  prune: {
    summary: 'apply a retention policy, never losing the last good backup',
    usage: 'pg-backup prune --storage LOCATION --name NAME|* --keep-daily 30 [options]',
    options: {
      ...storage,
      'keep-last': { type: 'string', value: 'N', help: 'keep the newest N' },
      'keep-hourly': { type: 'string', value: 'N', help: 'keep the last of each of N hours' },
      'keep-daily': { type: 'string', value: 'N', help: 'keep the last of each of N days' },
      'keep-weekly': { type: 'string', value: 'N', help: 'keep the last of each of N weeks' },
      'keep-monthly': { type: 'string', value: 'N', help: 'keep the last of each of N months' },
      'keep-yearly': { type: 'string', value: 'N', help: 'keep the last of each of N years' },
      'keep-within': { type: 'string', value: 'DURATION', help: 'keep everything this young' },
      'keep-kind': { type: 'string', value: 'KIND=DURATION', help: 'keep a kind for a time' },
      timezone: { type: 'string', value: 'TZ', help: 'calendar of the daily/weekly rules' },
      'dry-run': { type: 'boolean', help: 'plan and report only' },
      'delete-incomplete-after': {
        type: 'string',
        value: 'DURATION|never',
        help: 'grace period of uploads without a manifest (default 24h)',
      },
      'max-delete': {
        type: 'string',
        value: 'N|N%',
        help: 'refuse larger deletions (default 50%)',
      },
      'bypass-governance-retention': {
        type: 'boolean',
        help: 'delete under Object Lock governance mode',
      },
      ...output,
    },
  },
  files: {
    summary: 'back up, restore, verify or prune the files of a bucket or folder',
    usage:
      'pg-backup files --mode backup|restore|verify|drill|prune --storage LOCATION [--source|--target LOCATION] [options]',
    options: { ...storage, ...filesOnly, ...decryption, ...output },
  },
};

/** What the command line gave for an option: a repeated one gives every value. */
type FlagValue = string | boolean | (string | boolean)[] | undefined;

/** The environment variable of an option: `--rto-target` → `PGBACKUP_RTO_TARGET`. */
export function envName(option: string): string {
  return `PGBACKUP_${option.toUpperCase().replace(/-/g, '_')}`;
}

/** Options of one command line, resolved from flags, then the environment. */
export class ParsedOptions {
  constructor(
    readonly command: string,
    private readonly values: Record<string, FlagValue>,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  private spec(name: string): OptionSpec {
    const spec = COMMANDS[this.command].options[name];
    if (!spec) throw new Error(`option --${name} is not defined for ${this.command}`);
    return spec;
  }

  /**
   * A string option: the flag, else PGBACKUP_<NAME>, else its aliases; '' counts as unset. A
   * flag given several times is its values as lines.
   */
  string(name: string): string | undefined {
    const spec = this.spec(name);
    const given = this.values[name];
    const flag = Array.isArray(given)
      ? given.filter((v) => typeof v === 'string' && v !== '').join('\n')
      : given;
    if (typeof flag === 'string' && flag !== '') return flag;
    for (const variable of [envName(name), ...(spec.aliases ?? [])]) {
      const value = this.env[variable];
      if (value !== undefined && value !== '') return value;
    }
    return undefined;
  }

  required(name: string): string {
    const value = this.string(name);
    if (value === undefined) {
      throw new ConfigurationError(
        `${this.command} needs --${name} (or the environment variable ${envName(name)}).`,
      );
    }
    return value;
  }

  /** Whether this command has the option. */
  has(name: string): boolean {
    return COMMANDS[this.command].options[name] !== undefined;
  }

  /** A boolean option: the flag, else PGBACKUP_<NAME> (true or false, as the actions take them). */
  boolean(name: string): boolean {
    this.spec(name);
    if (this.values[name] === true) return true;
    const value = this.env[envName(name)];
    if (value === undefined || value === '') return false;
    const parsed = parseBoolean(value);
    if (parsed === undefined) {
      throw new ConfigurationError(`${envName(name)} must be true or false, got '${value}'.`);
    }
    return parsed;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const text = this.string(name);
    if (text === undefined) return fallback;
    const n = Number(text.trim());
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigurationError(
        `--${name} must be a whole number from ${min} to ${max}, got '${text}'.`,
      );
    }
    return n;
  }

  /** A secret: from its file option (`--<name>-file`), else from the environment. */
  secret(name: string): string | undefined {
    const fileOption = `${name}-file`;
    const file = COMMANDS[this.command].options[fileOption] ? this.string(fileOption) : undefined;
    if (file !== undefined) {
      try {
        return readFileSync(file, 'utf8').trim();
      } catch (error) {
        throw new ConfigurationError(`Cannot read --${fileOption} ${file}: ${errorMessage(error)}`);
      }
    }
    return this.string(name);
  }
}

/** Boolean inputs of the actions that are on by default: the CLI has a flag to turn them off. */
const NEGATED: Record<string, string> = {
  compare: 'no-compare',
  restore: 'no-restore',
  'safety-backup': 'no-safety-backup',
};

/**
 * The command line as the option builders read it, keyed by the actions' input names: a
 * boolean flag is `true`, a `--no-` flag sets its input to `false`, and an option the command
 * does not have is unset.
 */
export function optionReader(o: ParsedOptions): OptionReader {
  const value = (key: string): string | undefined => {
    const negated = NEGATED[key];
    if (negated !== undefined && o.has(negated)) return o.boolean(negated) ? 'false' : undefined;
    if (!o.has(key)) return undefined;
    if (COMMANDS[o.command].options[key].type === 'boolean') {
      return o.boolean(key) ? 'true' : undefined;
    }
    return o.string(key);
  };
  return new OptionReader({ value, secret: (key) => (o.has(key) ? o.secret(key) : undefined) });
}

/** The option of every command with this name. */
function anySpec(key: string): OptionSpec | undefined {
  for (const command of Object.values(COMMANDS)) {
    if (command.options[key]) return command.options[key];
  }
  return undefined;
}

/** How the CLI names options in messages: flags, or the variables and files of secrets. */
export const flagWording: Wording = {
  option: (key) => {
    if (NEGATED[key] !== undefined) return `--${NEGATED[key]}`;
    const spec = anySpec(key);
    if (!spec?.envOnly) return `--${key}`;
    const variable = spec.aliases?.[0] ?? envName(key);
    return anySpec(`${key}-file`) ? `${variable} or --${key}-file` : variable;
  },
  enable: (key) => `pass --${key}`,
  list: (keys) => keys.map((key) => flagWording.option(key)).join(', '),
  missing: (key) =>
    `This command needs ${flagWording.option(key)} (or the environment variable ${envName(key)}).`,
};

/** Parses `argv` (without node and the script): the command, then its options. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): ParsedOptions {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    throw new UsageRequest(undefined);
  }
  const spec = COMMANDS[command];
  if (!spec) {
    throw new ConfigurationError(
      `Unknown command '${command}'. Commands: ${Object.keys(COMMANDS).join(', ')}. Try pg-backup --help.`,
    );
  }
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    if (!o.envOnly) options[name] = { type: o.type, multiple: o.multiple === true };
  }
  let values: Record<string, FlagValue>;
  try {
    ({ values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false }));
  } catch (error) {
    const secret = Object.entries(spec.options).find(
      ([name, o]) => o.envOnly && rest.some((a) => a === `--${name}` || a.startsWith(`--${name}=`)),
    );
    if (secret) {
      throw new ConfigurationError(
        `--${secret[0]} is not a flag, so the secret does not show in ps or the shell history: set ${envName(secret[0])}${secret[1].aliases ? ` (or ${secret[1].aliases.join(', ')})` : ''}, or use --${secret[0]}-file.`,
      );
    }
    throw new ConfigurationError(`${errorMessage(error)}. Try pg-backup ${command} --help.`);
  }
  if (values.help === true) throw new UsageRequest(command);
  return new ParsedOptions(command, values, env);
}

/** `--help` was asked for (of one command, or of all). */
export class UsageRequest extends Error {
  constructor(readonly command: string | undefined) {
    super('usage');
    this.name = 'UsageRequest';
  }
}

/** The help text of a command, or of the whole CLI. */
export function usage(command?: string): string {
  if (!command) {
    const lines = [
      'pg-backup: PostgreSQL backups to S3 or a folder, verified, drilled and restored.',
      '',
      'Usage: pg-backup <command> [options]',
      '',
      'Commands:',
      ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`),
      '',
      'Every option --some-name can be set as PGBACKUP_SOME_NAME in the environment.',
      'Secrets come from the environment or files: DATABASE_URL, AGE_IDENTITY or',
      '--encryption-identity-file, AGE_PASSPHRASE or --encryption-passphrase-file;',
      'S3 credentials from the AWS environment or profile, as the aws CLI finds them.',
      '',
      'Exit codes: 0 ok, 1 failed (verification, drill, restore, backup), 2 usage or configuration.',
      'Run pg-backup <command> --help for the options of a command.',
    ];
    return `${lines.join('\n')}\n`;
  }
  const spec = COMMANDS[command];
  const lines = [
    `pg-backup ${command}: ${spec.summary}`,
    '',
    `Usage: ${spec.usage}`,
    '',
    'Options:',
  ];
  for (const [name, o] of Object.entries(spec.options)) {
    const flag = o.envOnly
      ? `(env) ${envName(name)}`
      : `--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    const env = o.envOnly
      ? (o.aliases ?? []).join(', ')
      : [envName(name), ...(o.aliases ?? [])].join(', ');
    lines.push(`  ${flag.padEnd(38)} ${o.help}${env && name !== 'help' ? ` [${env}]` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
