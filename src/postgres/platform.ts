import type pg from 'pg';

/**
 * What Supabase's platform is, as its catalog shows it. The restore's route for it is in
 * src/restore/platform.ts.
 */

/**
 * The schemas a Supabase project's platform owns: supabase/cli's `InternalSchemas`
 * (apps/cli-go/pkg/migration/dump.go, the schemas `supabase db dump` leaves out of a schema
 * dump: "initialised by supabase/postgres image" and "owned by extensions"), without
 * PostgreSQL's own information_schema and pg_*. A trailing `*` matches any suffix.
 */
export const SUPABASE_PLATFORM_SCHEMAS: readonly string[] = [
  '_analytics',
  '_realtime',
  '_supavisor',
  'auth',
  'etl',
  'extensions',
  'pgbouncer',
  'realtime',
  'storage',
  'supabase_functions',
  'supabase_migrations',
  'cron',
  'dbdev',
  'graphql',
  'graphql_public',
  'net',
  'pgmq',
  'pgsodium',
  'pgsodium_masks',
  'pgtle',
  'repack',
  'tiger',
  'tiger_data',
  'timescaledb_*',
  '_timescaledb_*',
  'topology',
  'vault',
];

/**
 * Platform schemas whose rows a restore into a project leaves alone: supabase/cli's
 * `excludedSchemas` for `db dump --data-only` (same file: "Data dump includes auth, storage,
 * etc. for migrating to new project"), with three differences: `vault` and `pgsodium` are
 * restored here (Vault's secrets are the application's, and `vault.secrets.key_id` refers to
 * `pgsodium.key`), and so is `supabase_migrations` (the application's migration history, which
 * must match the application schema the restore brings back).
 */
export const SUPABASE_DATA_LEFT_OUT_SCHEMAS: readonly string[] = [
  'graphql',
  'graphql_public',
  'pgsodium_masks',
  'pgtle',
  'repack',
  'tiger',
  'tiger_data',
  'timescaledb_*',
  '_timescaledb_*',
  'topology',
  'etl',
  'extensions',
  'pgbouncer',
  'realtime',
  '_analytics',
  '_realtime',
  '_supavisor',
];

/**
 * Platform tables whose rows the target's own services own: the migration history of each
 * service. supabase/cli's scripts/dump_data.sh excludes the first three (`--exclude-table`);
 * realtime's lies in a schema whose data is left out anyway.
 */
export const SUPABASE_BOOKKEEPING_TABLES: readonly string[] = [
  'auth.schema_migrations',
  'storage.migrations',
  'supabase_functions.migrations',
  'realtime.schema_migrations',
];

/** The schemas that, with the role supabase_admin, make a database a Supabase one. */
const SUPABASE_MARKER_SCHEMAS = ['auth', 'storage', 'extensions'];

/** Created by the Supabase CLI as `postgres` on first use; restored whole where it is absent. */
export const CLI_SCHEMA = 'supabase_migrations';

export function matchesAny(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

/** Whether a schema is one of the platform's (SUPABASE_PLATFORM_SCHEMAS). */
export function isPlatformSchema(name: string): boolean {
  return matchesAny(name, SUPABASE_PLATFORM_SCHEMAS);
}

export interface PlatformInfo {
  name: 'supabase';
  /** The platform schemas the database holds. */
  managedSchemas: string[];
  /** Every extension installed in the database. */
  extensions: { name: string; version: string }[];
}

/**
 * Recognises a Supabase database from its catalog: the role supabase_admin and the schemas
 * auth, storage and extensions (supabase_migrations and the others are listed when present).
 */
export async function detectPlatform(client: pg.Client): Promise<PlatformInfo | undefined> {
  const r = await client.query<{ admin: boolean; schemas: string[] }>(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'supabase_admin') AS admin,
            ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace ORDER BY 1) AS schemas`,
  );
  const row = r.rows[0];
  if (!row?.admin || !SUPABASE_MARKER_SCHEMAS.every((s) => row.schemas.includes(s))) {
    return undefined;
  }
  const ext = await client.query<{ name: string; version: string }>(
    `SELECT extname::text AS name, extversion AS version FROM pg_catalog.pg_extension ORDER BY 1`,
  );
  return {
    name: 'supabase',
    managedSchemas: row.schemas.filter(isPlatformSchema),
    extensions: ext.rows,
  };
}

/**
 * The platform tables whose rows a restore must bring back exactly: the project's users, their
 * identities, its files and its Vault secrets (stored encrypted: equal rows decrypt to equal
 * values under the same project key). Their fingerprints go into the manifest.
 */
export const SUPABASE_CONTENT_TABLES: readonly string[] = [
  'auth.users',
  'auth.identities',
  'storage.buckets',
  'storage.objects',
  'vault.secrets',
];
