import {
  dumpObjectName,
  parseCompression,
  pgDumpArgs,
  planCompression,
} from '../../src/backup/backup.js';
import { ConfigurationError, OptionError } from '../../src/core/errors.js';
import { flagWording } from '../../src/cli/args.js';
import {
  childEnv,
  connectionError,
  connectionUrl,
  describeConnection,
  parseConnectionString,
  resolveConnection,
  transactionPoolerHint,
} from '../../src/postgres/connection.js';

describe('connection strings', () => {
  it('parses a URL with an encoded password and parameters', () => {
    const info = parseConnectionString(
      'postgresql://backup%40acme:p%40ss%3Aw%2Ford@db.example.com:6432/app?sslmode=require&application_name=nightly',
    );
    expect(info).toEqual({
      host: 'db.example.com',
      port: 6432,
      user: 'backup@acme',
      password: 'p@ss:w/ord',
      database: 'app',
      sslmode: 'require',
      params: { application_name: 'nightly' },
      option: 'database-url',
    });
  });

  it('parses libpq key=value strings with quotes and escapes', () => {
    const info = parseConnectionString(
      "host=/var/run/postgresql port=5433 dbname='my db' user=me password='it\\'s secret'",
    );
    expect(info.host).toBe('/var/run/postgresql');
    expect(info.port).toBe(5433);
    expect(info.database).toBe('my db');
    expect(info.password).toBe("it's secret");
  });

  it('never puts the given text in its errors', () => {
    for (const bad of [
      'postgresql://u:hunter2@[::1',
      'host=x password=hunter2 =oops',
      "password='hunter2",
    ]) {
      let message = '';
      try {
        parseConnectionString(bad);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigurationError);
        message = (error as Error).message;
      }
      expect(message).not.toBe('');
      expect(message).not.toContain('hunter2');
    }
  });

  it('names the option a connection came from in its failures, per front door, without the password', () => {
    const info = parseConnectionString(
      'postgresql://app:s3cret-pw@db.example:5432/shop',
      'target-url',
    );
    const refused = Object.assign(new Error('password authentication failed for s3cret-pw'), {
      code: '28P01',
    });
    const error = connectionError(refused, info, 'shop');
    expect(error).toBeInstanceOf(OptionError);
    expect(error.message).toContain("Check the user and password in input 'target-url'.");
    expect((error as OptionError).worded(flagWording)).toContain(
      'Check the user and password in --target-url.',
    );
    expect(error.message).not.toContain('s3cret-pw');
    const missing = Object.assign(new Error('database "shop" does not exist'), { code: '3D000' });
    expect(
      connectionError(missing, parseConnectionString('host=x dbname=shop'), 'shop').message,
    ).toContain("Check the database name in input 'database-url'.");
  });

  it('falls back to PG* variables for what the URL leaves out, and passes the password only in the environment', () => {
    const info = resolveConnection('postgresql://db.example.com/app', {
      PGUSER: 'backup',
      PGPASSWORD: 'from-env',
      PGSSLMODE: 'verify-full',
    });
    expect(info.user).toBe('backup');
    expect(info.password).toBe('from-env');
    const env = childEnv({ PATH: '/bin', PGHOST: 'stale', PGSERVICE: 'stale' }, info);
    expect(env).toEqual({
      PATH: '/bin',
      PGHOST: 'db.example.com',
      PGUSER: 'backup',
      PGPASSWORD: 'from-env',
      PGDATABASE: 'app',
      PGSSLMODE: 'verify-full',
    });
    expect(describeConnection(info)).toBe('backup@db.example.com:5432/app');
    expect(connectionUrl(info)).toBe(
      'postgresql://backup:from-env@db.example.com/app?sslmode=verify-full',
    );
  });

  it('refuses transaction-mode poolers and names the session-mode alternative', () => {
    const supabase = parseConnectionString(
      'postgresql://postgres.ref:x@aws-0-eu-west-1.pooler.supabase.com:6543/postgres',
    );
    expect(transactionPoolerHint(supabase)).toContain('session-mode pooler on port 5432');
    const neon = parseConnectionString(
      'postgresql://u:x@ep-cool-1234-pooler.eu-central-1.aws.neon.tech/neondb',
    );
    expect(transactionPoolerHint(neon)).toContain("without '-pooler'");
    const direct = parseConnectionString('postgresql://u:x@db.ref.supabase.co:5432/postgres');
    expect(transactionPoolerHint(direct)).toBeUndefined();
  });
});

describe('backup options', () => {
  it('parses compression choices strictly', () => {
    expect(parseCompression(undefined)).toEqual({ method: 'auto' });
    expect(parseCompression('zstd:7')).toEqual({ method: 'zstd', level: 7 });
    expect(parseCompression('gzip')).toEqual({ method: 'gzip', level: undefined });
    expect(() => parseCompression('zstd:30')).toThrow(/zstd levels go from 1 to 19/);
    expect(() => parseCompression('lz4')).toThrow(
      /must be auto, none, zstd\[:level\] or gzip\[:level\], got 'lz4'/,
    );
    expect(() => parseCompression('auto:3')).toThrow(ConfigurationError);
  });

  it('compresses outside pg_dump with parallel zstd when it is installed, inside otherwise', () => {
    const auto = planCompression({ method: 'auto' }, 15, '/usr/bin/zstd');
    expect(auto.pgDumpCompress).toBe('0');
    expect(auto.external?.args).toEqual(['-1', '--zstd=hlog=16', '-T0', '-q', '-c']);
    expect(auto.info).toEqual({ method: 'zstd', level: 1 });
    expect(dumpObjectName('custom', auto, true)).toBe('dump.pgc.zst.age');
    const fallback = planCompression({ method: 'auto' }, 15, undefined);
    expect(fallback.info).toEqual({ method: 'pg_dump-gzip', level: 6 });
    expect(dumpObjectName('directory', fallback, false)).toBe('dump.tar');
    expect(planCompression({ method: 'zstd', level: 5 }, 16, undefined).pgDumpCompress).toBe(
      'zstd:5',
    );
    expect(() => planCompression({ method: 'zstd' }, 15, undefined)).toThrow(
      /apt-get install -y zstd/,
    );
  });

  it('gives pg_dump the snapshot and the selection, never the connection', () => {
    const args = pgDumpArgs({
      format: 'custom',
      compress: '0',
      snapshot: '00000003-0000001B-1',
      selection: { schemas: ['app'], excludeSchemas: ['audit'], excludeTableData: ['app.big_log'] },
      jobs: 1,
    });
    expect(args).toEqual([
      '--no-password',
      '--compress=0',
      '--format=custom',
      '--snapshot=00000003-0000001B-1',
      '--schema=app',
      '--exclude-schema=audit',
      '--exclude-table-data=app.big_log',
    ]);
  });
});
