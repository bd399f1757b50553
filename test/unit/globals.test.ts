import { withoutRole } from '../../src/restore/pg-restore.js';

describe('a roles script applied to a server the restore connects to', () => {
  const script = [
    'CREATE ROLE app;',
    'ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN;',
    'CREATE ROLE postgres;',
    'ALTER ROLE postgres WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN BYPASSRLS;',
    "COMMENT ON ROLE postgres IS 'the source''s admin';",
    'CREATE ROLE "Postgres Admin";',
    'ALTER ROLE "Postgres Admin" WITH SUPERUSER;',
    'GRANT app TO postgres GRANTED BY postgres;',
  ].join('\n');

  it('leaves out every statement about the connecting role, and keeps the others', () => {
    const { script: kept, skipped } = withoutRole(script, 'postgres');
    expect(skipped).toEqual([
      'CREATE ROLE postgres;',
      'ALTER ROLE postgres WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN BYPASSRLS;',
      "COMMENT ON ROLE postgres IS 'the source''s admin';",
    ]);
    expect(kept.split('\n')).toEqual([
      'CREATE ROLE app;',
      'ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN;',
      'CREATE ROLE "Postgres Admin";',
      'ALTER ROLE "Postgres Admin" WITH SUPERUSER;',
      'GRANT app TO postgres GRANTED BY postgres;',
    ]);
  });

  it('matches a quoted name exactly', () => {
    expect(withoutRole(script, 'Postgres Admin').skipped).toEqual([
      'CREATE ROLE "Postgres Admin";',
      'ALTER ROLE "Postgres Admin" WITH SUPERUSER;',
    ]);
  });
});
