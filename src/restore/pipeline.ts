import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Manifest } from '../catalog/manifest.js';
import { ConfigurationError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { runProcess } from '../core/process.js';
import { analyzeDatabase } from '../postgres/analyze.js';
import { childEnv, connect, quoteIdent } from '../postgres/connection.js';
import type { ClientTools } from '../postgres/tools.js';
import {
  SUPABASE_DATA_LEFT_OUT_SCHEMAS,
  detectPlatform,
  type PlatformInfo,
  isPlatformSchema,
  matchesAny,
} from '../postgres/platform.js';
import {
  parseToc,
  planPlatformRestore,
  planScratchPreparation,
  REPLICA_ROLE_OPTION,
  truncateStatement,
  type PlatformRestoreMode,
} from './platform.js';
import {
  compareTables,
  legacyConstraintsAndSequences,
  runUserChecks,
  type CheckResult,
  type TableComparison,
  type UserCheck,
} from './checks.js';
import type { ArchiveFeed } from './fetch.js';
import {
  applyGlobals,
  listArchiveText,
  lockTableHolds,
  runPgRestore,
  type ArchiveListing,
} from './pg-restore.js';
import {
  planReplacement,
  readArchiveContents,
  restoreAtomically,
  type ReplacementPlan,
} from './replace.js';
import { archiveRoles, planOwnership } from './roles.js';
import { compareWithSource, reapplySourceState } from './source-checks.js';
import { measureServerSpace, requireServerSpace } from './space.js';
import type { RestoreTarget } from './target.js';

/**
 * The steps verify, the drill and the real restore share, around pg_restore: the preflight of
 * what the archive needs against the target, the roles a target the run owns is given, what is
 * re-applied after the restore, and the checks against the source's recorded state. Verify words
 * their results as check lines, the drill as timed phases.
 */

/** What the archive needs of the target, and what the target lacks. */
export interface Preflight {
  /** Extensions the archive creates that the target server cannot install. */
  missingExtensions: string[];
  /** Roles the archive names (owners, grantees, policies, settings) that the target lacks. */
  missingRoles: string[];
  /** Roles the archive names. */
  roles: string[];
  /** Of those, the roles that own objects in the archive. */
  owners: string[];
}

/** Extensions of Supabase's platform: a target lacking them is not a Supabase image. */
const SUPABASE_EXTENSIONS = ['pg_graphql', 'pg_net', 'pgsodium', 'supabase_vault', 'pgjwt'];

/**
 * Reads what the archive needs (its extensions, and the roles its DDL, policies and settings
 * name) and compares it with the target, before anything is restored.
 */
export async function preflight(options: {
  client: pg.Client;
  pgRestore: string;
  archivePath: string;
  listing: ArchiveListing;
  manifest: Manifest;
}): Promise<Preflight> {
  const { client, manifest } = options;
  const fromDdl = await archiveRoles(options.pgRestore, options.archivePath);
  const state = manifest.sourceState;
  const roles = new Set([...fromDdl.owners, ...fromDdl.grantees]);
  for (const p of state?.policies ?? []) for (const r of p.roles) if (r !== 'public') roles.add(r);
  for (const s of state?.settings ?? []) if (s.role) roles.add(s.role);
  const extensions = new Set(options.listing.extensions);
  const available = await client.query<{ name: string }>(
    'SELECT name FROM pg_available_extensions WHERE name = ANY($1::text[])',
    [[...extensions]],
  );
  const present = await client.query<{ name: string }>(
    'SELECT rolname AS name FROM pg_roles WHERE rolname = ANY($1::text[])',
    [[...roles]],
  );
  const have = new Set(available.rows.map((r) => r.name));
  const haveRoles = new Set(present.rows.map((r) => r.name));
  return {
    missingExtensions: [...extensions].filter((e) => !have.has(e)).sort(),
    missingRoles: [...roles].filter((r) => !haveRoles.has(r)).sort(),
    roles: [...roles].sort(),
    owners: fromDdl.owners,
  };
}

/**
 * Fails, before anything is restored, with everything the target lacks and how to give it: a
 * server of the platform's own image as a `services:` container, and target-url.
 */
export function requireExtensions(found: Preflight, target: RestoreTarget, tried?: string): void {
  if (found.missingExtensions.length === 0) return;
  const supabase = found.missingExtensions.some((e) => SUPABASE_EXTENSIONS.includes(e));
  // Everything missing on the first line: a report line keeps the first and the last lines.
  const lines = [
    `The backup needs extensions that ${target.describe} cannot install: ${found.missingExtensions.join(', ')}` +
      (found.missingRoles.length > 0
        ? `; it also names roles the server lacks: ${found.missingRoles.join(', ')}.`
        : '.'),
  ];
  if (tried) lines.push(`Extensions of the scratch server: ${tried}.`);
  lines.push(
    supabase
      ? "These are Supabase platform extensions: restore into the platform itself, a services: container of the supabase/postgres image at the project's version, and give it as target-url:"
      : 'Restore into a server that has them, e.g. a services: container of the image your database runs on, and give it as target-url:',
    '',
    '    services:',
    '      postgres:',
    `        image: ${supabase ? "supabase/postgres:15.8.1.085   # the project's version" : 'postgis/postgis:15-3.4   # an image with the extensions'}`,
    '        env: { POSTGRES_PASSWORD: scratch }',
    "        ports: ['5432:5432']",
    '    …',
    `        target-url: postgresql://${supabase ? 'supabase_admin' : 'postgres'}:scratch@localhost:5432/restore_check`,
    '',
    'Nothing was restored; this says nothing about the backup itself.',
  );
  throw new ConfigurationError(lines.join('\n'));
}

/**
 * Creates the roles the archive names that the target lacks, as NOLOGIN roles with no
 * privileges, so owners, grants, policies and `aclitem` data restore as they were. Only on a
 * server or database this run owns; returns the roles created, which `dropRoles` removes.
 */
export async function createRoles(
  client: pg.Client,
  names: string[],
  superuser: string,
): Promise<string[]> {
  const created: string[] = [];
  for (const name of names) {
    if (name === superuser) continue;
    await client.query(`CREATE ROLE ${quoteIdent(name)} NOLOGIN`);
    created.push(name);
  }
  return created;
}

/** Drops roles a run created, once the database holding their objects is gone. */
export async function dropRoles(target: RestoreTarget, names: string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const client = await connect(target.connection, 'postgres');
  const left: string[] = [];
  try {
    for (const name of names) {
      await client.query(`DROP ROLE IF EXISTS ${quoteIdent(name)}`).catch(() => left.push(name));
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  return left;
}

/** The extension configuration tables whose data the archive carries (see runPgRestore). */
export function extensionTables(manifest: Manifest): { schema: string; name: string }[] {
  return manifest.tables.filter((t) => t.extension !== undefined);
}

/**
 * After pg_restore: statistics (ANALYZE over the restore's jobs), then what pg_dump leaves
 * behind. Returns what was not re-applied.
 */
export async function afterRestore(
  client: pg.Client,
  target: RestoreTarget,
  jobs: number,
  manifest: Manifest,
): Promise<string[]> {
  await analyzeDatabase(client, () => connect(target.connection, target.database), jobs);
  if (!manifest.sourceState) return [];
  return reapplySourceState(client, target.database, manifest.sourceState);
}

/**
 * Every check of a restored database: tables and row counts, then the source's recorded state
 * item by item (or, for a manifest without it, the checks of its time, labelled so), then the
 * user's SQL checks.
 */
export async function checkRestored(options: {
  client: pg.Client;
  manifest: Manifest;
  listing: ArchiveListing;
  checks: UserCheck[];
  notApplied: string[];
  /** Tables and sequences (`schema.name`) whose rows the restore left to the target's platform. */
  notRestored?: ReadonlySet<string>;
  /** Foreign keys (`schema.table.constraint`) restored NOT VALID: their rows are not in the backup. */
  unvalidated?: ReadonlySet<string>;
}): Promise<{ checks: CheckResult[]; comparison: TableComparison[] }> {
  const { client, manifest } = options;
  const notRestored = options.notRestored ?? new Set<string>();
  const tables = await compareTables(client, manifest, notRestored);
  const state = manifest.sourceState
    ? await compareWithSource(
        client,
        manifest,
        manifest.sourceState,
        options.notApplied,
        notRestored,
        options.unvalidated,
      )
    : await legacyConstraintsAndSequences(client, options.listing.constraints);
  return {
    checks: [tables.result, ...state, ...(await runUserChecks(client, options.checks))],
    comparison: tables.comparison,
  };
}

/** A logger line for a check result, the same in every report. */
export function logCheck(logger: Logger, result: CheckResult): void {
  const icon = result.status === 'passed' ? '✅' : result.status === 'failed' ? '❌' : '➖';
  logger.info(`${icon} ${result.name}: ${result.status} (${result.detail})`);
}

/**
 * How a restore of a platform's database (Supabase) goes, decided before pg_restore starts:
 * the platform's schemas are the target's and only their rows come from the backup, loaded
 * with session_replication_role = replica (Supabase's own route; see restore/platform.ts).
 */
export interface PlatformRoute {
  /** The pg_restore list (`--use-list`) of what is restored. */
  listFile: string;
  /** libpq's PGOPTIONS for pg_restore: session_replication_role = replica, so no trigger fires. */
  sessionOptions: string;
  /** Statements that run first: emptying the platform tables whose rows the backup brings. */
  before: string[];
  /** Statements that run after pg_restore: foreign keys to rows the backup lacks, NOT VALID. */
  after: string[];
  /** Those foreign keys (`schema.table.constraint`): the checks expect them NOT VALID. */
  unvalidated: Set<string>;
  /** Every entry of the archive left out, and why. */
  leftOut: { entry: string; why: string }[];
  /** Tables and sequences (`schema.name`) whose rows stay the target platform's. */
  notRestored: Set<string>;
  /** Application objects the target already holds: a restore into it must empty them first. */
  conflicts: string[];
  /** `project` (a Supabase project) or `scratch` (a new database on a supabase/postgres server). */
  mode: PlatformRestoreMode;
  /** The roles owning what the route restores (the platform's own objects left out). */
  owners: string[];
}

/**
 * For a backup of a platform's database: a new database on the platform's server (a
 * supabase/postgres service container) is given the archive's schemas and extensions first,
 * as the platform makes them; a project keeps its own. Then the plan of what is restored.
 * Undefined for a backup of a plain database. Throws a ConfigurationError, before anything
 * of the application is restored, when the target is not the platform.
 */
export async function platformRoute(o: {
  client: pg.Client;
  manifest: Manifest;
  pgRestore: string;
  /** pg_dump, for a new database scaffolded from the server's own project. */
  pgDump: string;
  archivePath: string;
  workDir: string;
  /** The run made the database (it may prepare it as a new platform database). */
  owned: boolean;
  /** The target, where a new platform database is given its schemas and extensions. */
  target: RestoreTarget;
  /** Environment the PostgreSQL tools inherit (PG* variables are replaced by the target's). */
  env: NodeJS.ProcessEnv;
  logger: Logger;
}): Promise<PlatformRoute | undefined> {
  if (!o.manifest.platform) return undefined;
  const listing = await listArchiveText(o.pgRestore, o.archivePath);
  let platform = await detectPlatform(o.client);
  let mode: PlatformRestoreMode = 'project';
  if (!platform) {
    if (!o.owned) throw notThePlatform(o.manifest.platform.name);
    if ((o.manifest.options?.schemas ?? []).length > 0) {
      // The application's schemas alone: the platform's come from the server's own project.
      platform = await scaffoldFromServer(o);
    } else {
      await preparePlatformDatabase(o, o.archivePath, listing);
      platform = await detectPlatform(o.client);
      mode = 'scratch';
    }
    if (!platform) throw notThePlatform(o.manifest.platform.name);
  }
  const plan = await planPlatformRestore({
    listing,
    platform,
    target: o.client,
    mode,
    archive: { pgRestore: o.pgRestore, path: o.archivePath },
    unvalidated: o.owned,
  });
  if (plan.missingOnTarget.length > 0) {
    throw notThePlatform(o.manifest.platform.name, plan.missingOnTarget);
  }
  const listFile = path.join(o.workDir, 'platform-restore.list');
  await writeFile(listFile, plan.listFile);
  const notRestored = new Set(
    plan.leftOut.flatMap((l) => {
      const m = /^\d+;\s+\d+\s+\d+\s+(?:TABLE DATA|SEQUENCE SET) (\S+) (\S+) /.exec(l.entry);
      return m ? [`${m[1]}.${m[2]}`] : [];
    }),
  );
  if (mode === 'project') {
    // The platform's own sequences in schemas whose rows stay the project's (graphql's schema
    // version, which its event trigger advances on every DDL) are the project's too.
    for (const seq of o.manifest.sourceState?.sequences ?? []) {
      if (matchesAny(seq.schema, SUPABASE_DATA_LEFT_OUT_SCHEMAS)) {
        notRestored.add(`${seq.schema}.${seq.name}`);
      }
    }
  }
  const truncate = truncateStatement(plan);
  return {
    listFile,
    sessionOptions: REPLICA_ROLE_OPTION,
    before: truncate ? [truncate] : [],
    after: plan.unvalidated.statements,
    unvalidated: new Set(plan.unvalidated.constraints),
    leftOut: plan.leftOut,
    notRestored,
    conflicts: plan.conflicts,
    mode,
    // The owners of what the restore creates: rows, sequence values, comments and grants are
    // loaded into objects, not owned by the entry's role.
    owners: [
      ...new Set(
        parseToc(plan.listFile)
          .filter((e) => !NOT_OWNED.includes(e.desc))
          .map((e) => e.owner),
      ),
    ]
      .filter(Boolean)
      .sort(),
  };
}

type RouteInput = Parameters<typeof platformRoute>[0];

/**
 * A new database on the platform's server is given the archive's schemas and extensions first,
 * as the platform makes them (CREATE EXTENSION, not the extension's dumped members).
 */
async function preparePlatformDatabase(
  o: RouteInput,
  archivePath: string,
  listing: string,
): Promise<void> {
  const name = o.manifest.platform?.name ?? 'supabase';
  const prep = await planScratchPreparation({ listing, target: o.client });
  const missing = prep.missingOnTarget.filter((m) => !m.startsWith('role '));
  if (missing.length > 0 || prep.conflicts.length > 0) {
    throw notThePlatform(name, [...missing, ...prep.conflicts]);
  }
  const prepFile = path.join(o.workDir, 'platform-prepare.list');
  await writeFile(prepFile, prep.listFile);
  o.logger.info(
    `A new database on the platform's server: its schemas and extensions first, as the platform makes them (${prep.kept.length} entries)`,
  );
  await runPgRestore({
    pgRestore: o.pgRestore,
    archivePath,
    connection: o.target.connection,
    database: o.target.database,
    jobs: 1,
    keepOwnership: true,
    listFile: prepFile,
    env: o.env,
    logger: o.logger,
  });
}

/**
 * For a backup of the application's schemas only (its foreign keys, policies and defaults name
 * auth.users, auth.uid(), extensions.*): a new database on the platform's server is scaffolded
 * from the server's own project database, the platform's definitions without any rows, as a
 * new project holds them. The application's schemas of that database are left out.
 */
async function scaffoldFromServer(o: RouteInput): Promise<PlatformInfo | undefined> {
  const name = o.manifest.platform?.name ?? 'supabase';
  const project = await connect(o.target.connection, PLATFORM_PROJECT_DATABASE);
  let schemas: string[];
  try {
    const platform = await detectPlatform(project);
    if (!platform) throw notThePlatform(name);
    const all = await project.query<{ name: string }>(
      `SELECT nspname AS name FROM pg_catalog.pg_namespace
        WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'`,
    );
    schemas = all.rows.map((r) => r.name).filter((s) => !isPlatformSchema(s));
  } finally {
    await project.end().catch(() => undefined);
  }
  const file = path.join(o.workDir, 'platform-scaffold.pgc');
  const dump = await runProcess(
    o.pgDump,
    [
      '--no-password',
      '--format=custom',
      '--schema-only',
      `--file=${file}`,
      ...schemas.map((s) => `--exclude-schema=${s}`),
    ],
    { env: childEnv(o.env, o.target.connection, PLATFORM_PROJECT_DATABASE) },
  );
  if (dump.code !== 0) {
    throw new Error(
      `pg_dump of the server's ${PLATFORM_PROJECT_DATABASE} database failed: ${dump.stderr.trim()}`,
    );
  }
  o.logger.info(
    `A backup of the application's schemas only: the new database is scaffolded from the server's own ${PLATFORM_PROJECT_DATABASE} database (the platform's definitions, no rows)`,
  );
  const listing = await listArchiveText(o.pgRestore, file);
  await preparePlatformDatabase(o, file, listing);
  const platform = await detectPlatform(o.client);
  if (!platform) return undefined;
  const plan = await planPlatformRestore({
    listing,
    platform,
    target: o.client,
    mode: 'scratch',
    archive: { pgRestore: o.pgRestore, path: file },
  });
  if (plan.missingOnTarget.length > 0) throw notThePlatform(name, plan.missingOnTarget);
  const listFile = path.join(o.workDir, 'platform-scaffold.list');
  await writeFile(listFile, plan.listFile);
  await runPgRestore({
    pgRestore: o.pgRestore,
    archivePath: file,
    connection: o.target.connection,
    database: o.target.database,
    jobs: 1,
    keepOwnership: true,
    listFile,
    sessionOptions: REPLICA_ROLE_OPTION,
    env: o.env,
    logger: o.logger,
  });
  return detectPlatform(o.client);
}

/** The database a platform's server keeps its own project in (Supabase: postgres). */
const PLATFORM_PROJECT_DATABASE = 'postgres';

/** Entries of an archive that create no object of their own, so set no owner. */
const NOT_OWNED = ['TABLE DATA', 'SEQUENCE SET', 'BLOBS', 'COMMENT', 'ACL', 'SECURITY LABEL'];

/**
 * Whether a restore along a platform's route keeps owners and grants: the roles owning what it
 * restores decide, not the platform's own (supabase_admin owns objects the route leaves to the
 * target, and postgres is no member of it).
 */
export async function routeKeepsOwnership(
  client: pg.Client,
  route: PlatformRoute,
  logger: Logger,
): Promise<boolean> {
  const plan = await planOwnership(client, { owners: route.owners, grantees: [] });
  if (!plan.keep) {
    logger.info(
      `Restoring without owners and grants (--no-owner --no-acl): ` +
        [
          plan.missing.length ? `missing roles: ${plan.missing.join(', ')}` : '',
          plan.notMember.length
            ? `the restoring user cannot own objects as: ${plan.notMember.join(', ')}`
            : '',
        ]
          .filter(Boolean)
          .join('; '),
    );
  }
  return plan.keep;
}

function notThePlatform(name: string, lacking: string[] = []): ConfigurationError {
  const label = name === 'supabase' ? 'Supabase' : name;
  return new ConfigurationError(
    `The backup is of a ${label} project, and the target is neither a ${label} project nor a new database on a ${label} server` +
      (lacking.length ? `: it lacks ${lacking.join(', ')}` : '') +
      `. Restore into the platform itself: a services: container of the supabase/postgres image at the project's version, with target-url naming a new database on it (connect as supabase_admin), or a project. Nothing was restored.`,
  );
}

/** The route in a report line: which platform, and what the restore left to it. */
export function platformDetail(route: PlatformRoute): string {
  const where =
    route.mode === 'scratch'
      ? "a new database on the Supabase server, given the archive's schemas and extensions first"
      : 'a Supabase project, whose platform schemas are its own';
  const data = route.notRestored.size
    ? `; ${route.notRestored.size} platform table(s) and sequence(s) keep the target's rows`
    : '';
  return (
    `Supabase's route into ${where}: data loaded with session_replication_role = replica; ` +
    `${route.leftOut.length} archive entr${route.leftOut.length === 1 ? 'y' : 'ies'} left to the platform (listed in the log)` +
    data
  );
}

/** What replaceTarget is given. */
interface ReplaceOptions {
  client: pg.Client;
  target: RestoreTarget;
  manifest: Manifest;
  pgDump: string;
  pgRestore: string;
  psql: string;
  archivePath: string;
  keepOwnership: boolean;
  workDir: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Everything, then a rollback: proves the replacement would succeed, changing nothing. */
  rehearsal?: boolean;
}

/** What a real restore emptied and restored, and what the emptying reached beyond the backup. */
export interface Replacement {
  plan: ReplacementPlan;
  route?: PlatformRoute;
  /** Whether owners and grants were restored as the archive has them. */
  keepOwnership: boolean;
}

/**
 * The real restore, all or nothing: empties what the backup covers and restores it in one
 * transaction of one session (restoreAtomically), so whatever fails the target is as it was.
 * A backup of selected schemas whose emptying would reach objects outside them (a trigger on
 * another schema's table running one of its functions) is refused before anything changes,
 * with the list. For a platform's project, only the application's schemas are emptied; the
 * platform's route is planned against the target as the emptying leaves it (in a transaction
 * rolled back), and its rows load with session_replication_role = replica.
 */
export async function replaceTarget(o: ReplaceOptions): Promise<Replacement> {
  const { client, manifest, logger } = o;
  const restoreEnv = childEnv(o.env, o.target.connection, o.target.database);
  const contents = await readArchiveContents({
    pgRestore: o.pgRestore,
    archivePath: o.archivePath,
    env: restoreEnv,
  });
  const selection = replacedSelection(manifest, contents.entries);
  const first = await planReplacement(client, { selection, archive: contents });
  const partial = (manifest.options?.schemas ?? []).length > 0;
  const recreated = new Set(first.recreate.map((r) => r.what));
  const lost = first.outside.filter((what) => !recreated.has(what));
  if (partial && lost.length > 0) {
    throw new ConfigurationError(
      `Refusing to restore: emptying the schemas this backup covers (${first.summary.schemas.join(', ')}) would also remove what depends on them outside it, which the backup does not bring back: ${lost.join('; ')}. ` +
        'Drop or move those objects first, or restore a backup of the whole database. Nothing was changed.',
    );
  }
  for (const r of first.recreate) {
    logger.info(
      `Emptying removes ${r.what}, outside the backup: re-created after the restore, as it was`,
    );
  }
  if (!partial) {
    for (const what of lost) {
      logger.info(`Emptying also removes ${what}; the backup of the whole database brings it back`);
    }
  }
  // A backup of the whole database brings back what its emptying removes.
  const keepRecreate = (p: ReplacementPlan): ReplacementPlan =>
    partial ? p : { ...p, recreate: [] };
  const { route, plan } = manifest.platform
    ? await platformReplacement(o, first, selection, keepRecreate)
    : { route: undefined, plan: keepRecreate(first) };
  const keepOwnership = route ? await routeKeepsOwnership(client, route, logger) : o.keepOwnership;
  await restoreAtomically({
    pgRestore: o.pgRestore,
    psql: o.psql,
    archivePath: o.archivePath,
    connection: o.target.connection,
    database: o.target.database,
    env: o.env,
    logger,
    plan,
    keepOwnership,
    listFile: route?.listFile,
    rehearsal: o.rehearsal,
  });
  return { plan, route, keepOwnership };
}

/**
 * A platform's project: the route is planned against the target as the emptying leaves it (in
 * a transaction rolled back), and the replacement re-planned for what the route restores.
 */
async function platformReplacement(
  o: ReplaceOptions,
  first: ReplacementPlan,
  selection: { schemas: string[]; excludeSchemas: string[] },
  keepRecreate: (p: ReplacementPlan) => ReplacementPlan,
): Promise<{ route?: PlatformRoute; plan: ReplacementPlan }> {
  const { client, manifest, logger } = o;
  const restoreEnv = childEnv(o.env, o.target.connection, o.target.database);
  let route: PlatformRoute | undefined;
  let plan = keepRecreate(first);
  await client.query('BEGIN');
  try {
    for (const statement of first.statements) await client.query(statement);
    route = await platformRoute({
      client,
      manifest,
      pgDump: o.pgDump,
      pgRestore: o.pgRestore,
      archivePath: o.archivePath,
      workDir: o.workDir,
      owned: false,
      target: o.target,
      env: o.env,
      logger,
    });
  } finally {
    await client.query('ROLLBACK');
  }
  if (route) {
    for (const line of route.leftOut) {
      logger.info(`Left to the platform: ${line.entry} (${line.why})`);
    }
    const listed = await readArchiveContents({
      pgRestore: o.pgRestore,
      archivePath: o.archivePath,
      listFile: route.listFile,
      env: restoreEnv,
    });
    const second = await planReplacement(client, { selection, archive: listed });
    plan = {
      ...keepRecreate(second),
      statements: [...second.statements, ...route.before, 'SET session_replication_role = replica'],
    };
  }
  return { route, plan };
}

/**
 * The schemas a real restore empties: those of the backup's selection; for a platform's project
 * the application's schemas the archive holds (public always), never the platform's.
 */
function replacedSelection(
  manifest: Manifest,
  entries: { text: string }[],
): { schemas: string[]; excludeSchemas: string[] } {
  const schemas = manifest.options?.schemas ?? [];
  const excludeSchemas = manifest.options?.excludeSchemas ?? [];
  if (!manifest.platform) return { schemas, excludeSchemas };
  if (schemas.length > 0) {
    return { schemas, excludeSchemas: [...excludeSchemas, ...manifest.platform.managedSchemas] };
  }
  const archived = entries.flatMap((e) => {
    const m = /^SCHEMA - (\S+) /.exec(e.text);
    return m ? [m[1]] : [];
  });
  const application = [...new Set(['public', ...archived])].filter(
    (s) => !isPlatformSchema(s) && !excludeSchemas.includes(s),
  );
  return { schemas: application.map((s) => `"${s.replace(/"/g, '""')}"`), excludeSchemas: [] };
}

/** A restore into a target: the same steps for verify, the drill and the real restore. */
export interface RestoreJob {
  target: RestoreTarget;
  manifest: Manifest;
  tools: Pick<ClientTools, 'pgDump' | 'pgRestore' | 'psql' | 'version'>;
  /** The archive; for the streamed plan, its table of contents alone (see feed). */
  archivePath: string;
  /** The streamed plan: pg_restore reads the archive from storage, in one session (new databases only). */
  feed?: ArchiveFeed;
  listing: ArchiveListing;
  workDir: string;
  jobs: number;
  /** `new`: into a database the run made (verify, the drill); `replace`: the real restore. */
  into: 'new' | 'replace';
  /** Roles this run creates on the target are added here, so the caller can drop them. */
  createdRoles: string[];
  /** The backup's globals as a psql file, applied before a restore into a new database. */
  globals?: () => Promise<string | undefined>;
  /**
   * Installs extensions a scratch server lacks (apt, where the run may change the machine);
   * returns one line saying what it did.
   */
  installExtensions?: (names: string[], major: number) => Promise<string>;
  /** Runs just before a real restore touches the target (other sessions are ended there). */
  beforeReplace?: (client: pg.Client) => Promise<void>;
  /** A real restore run to its end and rolled back: proves it would succeed, changing nothing. */
  rehearsal?: boolean;
  /** Called once a real restore has committed: from then on the target holds the backup. */
  onReplaced?: () => void;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

/** What the preflight found and decided; nothing of the application is restored yet. */
export interface PreparedRestore {
  found: Preflight;
  keepOwnership: boolean;
  /** Why owners and grants are left out, when they are. */
  ownershipNote?: string;
  /** A platform's route into a new database (a real restore plans its own, after emptying). */
  route?: PlatformRoute;
  /** One report line: what the target has, and what the run gave it. */
  detail: string;
}

/** A completed restore. */
export interface RestoreOutcome {
  route?: PlatformRoute;
  keepOwnership: boolean;
  /** What a real restore emptied. */
  replaced?: ReplacementPlan;
  /** What pg_dump leaves behind that could not be re-applied. */
  notApplied: string[];
  /** One report line: how the archive was restored. */
  detail: string;
}

/**
 * Everything checkable before the restore: the archive's extensions and roles against the
 * target (all missing ones named at once), roles given to a target the run owns, whether owners
 * and grants can be kept, and a platform's route into a new database.
 */
export async function prepareRestore(job: RestoreJob, client: pg.Client): Promise<PreparedRestore> {
  const read = (): Promise<Preflight> =>
    preflight({
      client,
      pgRestore: job.tools.pgRestore,
      archivePath: job.archivePath,
      listing: job.listing,
      manifest: job.manifest,
    });
  let found = await read();
  let installed: string | undefined;
  if (found.missingExtensions.length > 0 && job.target.scratch && job.installExtensions) {
    installed = await job.installExtensions(found.missingExtensions, job.target.serverMajor);
    found = await read();
  }
  requireExtensions(found, job.target, installed);
  const given = await provideRoles(job, client, found);
  const ownership = await ownershipKept(job, client, found);
  let keepOwnership = ownership.keep;
  const space =
    job.into === 'replace'
      ? requireServerSpace(
          await measureServerSpace(client, job.target.connection, job.manifest),
          job.target.describe,
        )
      : undefined;
  const route = job.into === 'new' ? await newDatabaseRoute(job, client) : undefined;
  if (route && !keepOwnership) keepOwnership = await routeKeepsOwnership(client, route, job.logger);
  const detail = [
    `the archive's ${job.listing.extensions.length} extension(s) can be installed on ${job.target.describe}` +
      (installed ? ` (${installed})` : ''),
    ...(route ? [platformDetail(route)] : []),
    `${found.roles.length} role(s) named` +
      (given
        ? `; ${given}`
        : found.missingRoles.length
          ? `; missing: ${found.missingRoles.join(', ')}`
          : ', all present'),
    keepOwnership ? 'owners and grants kept' : 'owners and grants left out (--no-owner --no-acl)',
    ...(space ? [space] : []),
  ].join('; ');
  return {
    found,
    keepOwnership,
    ownershipNote: keepOwnership ? undefined : ownership.why,
    route,
    detail,
  };
}

/**
 * The restore itself: into a new database with pg_restore (a platform's route first), or, for
 * the real restore, emptying and restoring in one transaction; then ANALYZE and what pg_dump
 * leaves behind.
 */
export async function performRestore(
  job: RestoreJob,
  client: pg.Client,
  prepared: PreparedRestore,
): Promise<RestoreOutcome> {
  const restored =
    job.into === 'replace'
      ? await replaceInTarget(job, client, prepared)
      : await restoreIntoNew(job, client, prepared);
  if (job.rehearsal) return { ...restored, notApplied: [] };
  const notApplied = await afterRestore(client, job.target, job.jobs, job.manifest);
  return { ...restored, notApplied };
}

/** Creates the roles a target the run owns lacks, then applies the backup's globals. */
async function provideRoles(job: RestoreJob, client: pg.Client, found: Preflight): Promise<string> {
  const done: string[] = [];
  if (found.missingRoles.length > 0 && job.target.owned) {
    const created = await createRoles(client, found.missingRoles, job.target.user);
    job.createdRoles.push(...created);
    done.push(
      `created ${created.length} role(s) the archive names as NOLOGIN: ${created.join(', ')}`,
    );
  }
  const file = job.into === 'new' ? await job.globals?.() : undefined;
  if (file) {
    const before = await roleNames(client);
    await applyGlobals({
      psql: job.tools.psql,
      file,
      connection: job.target.connection,
      user: job.target.user,
      env: job.env,
      logger: job.logger,
    });
    job.createdRoles.push(...(await roleNames(client)).filter((r) => !before.includes(r)));
    done.unshift('roles from globals applied first');
  }
  return done.join('; ');
}

async function roleNames(client: pg.Client): Promise<string[]> {
  const r = await client.query<{ name: string }>('SELECT rolname AS name FROM pg_roles');
  return r.rows.map((x) => x.name);
}

/**
 * Owners and grants are kept when every role exists and the restoring user may act as each
 * owner; otherwise the reason, which the log and a real restore's warnings carry.
 */
async function ownershipKept(
  job: RestoreJob,
  client: pg.Client,
  found: Preflight,
): Promise<{ keep: boolean; why?: string }> {
  const plan = await planOwnership(client, {
    owners: found.owners,
    grantees: found.roles.filter((r) => !found.owners.includes(r)),
  });
  if (plan.keep) return { keep: true };
  const reasons = [
    plan.missing.length ? `missing roles: ${plan.missing.join(', ')}` : '',
    plan.notMember.length
      ? `the restoring user cannot own objects as: ${plan.notMember.join(', ')}`
      : '',
  ].filter(Boolean);
  const why = `Restoring without owners and grants (--no-owner --no-acl): ${reasons.join('; ')}.`;
  job.logger.info(why);
  return { keep: false, why };
}

/** A platform's route into a new database, refused when the database holds the application. */
async function newDatabaseRoute(
  job: RestoreJob,
  client: pg.Client,
): Promise<PlatformRoute | undefined> {
  const route = await platformRoute({
    client,
    manifest: job.manifest,
    pgDump: job.tools.pgDump,
    pgRestore: job.tools.pgRestore,
    archivePath: job.archivePath,
    workDir: job.workDir,
    owned: job.target.owned,
    target: job.target,
    env: job.env,
    logger: job.logger,
  });
  if (route && route.conflicts.length > 0) {
    const shown =
      route.conflicts.slice(0, 5).join(', ') + (route.conflicts.length > 5 ? ', …' : '');
    throw new ConfigurationError(
      `The target database ${job.target.describe} already holds application objects (${shown}): verify and the drill restore into a new database. Name one that does not exist in target-url.`,
    );
  }
  for (const line of route?.leftOut ?? []) {
    job.logger.info(`Left to the platform: ${line.entry} (${line.why})`);
  }
  return route;
}

/**
 * A scratch server (wal_level=minimal) loads and indexes the tables one transaction creates
 * without writing the log: a session restores in one when the server's lock table holds it.
 */
async function oneTransactionFits(job: RestoreJob, client: pg.Client): Promise<boolean> {
  if (job.target.scratch === undefined) return false;
  if (await lockTableHolds(client, job.listing.entries)) return true;
  job.logger.info(
    `The archive's ${job.listing.entries} entries are more than the scratch server's lock table holds in one transaction: restoring without --single-transaction, its rows written to the log.`,
  );
  return false;
}

async function restoreIntoNew(
  job: RestoreJob,
  client: pg.Client,
  prepared: PreparedRestore,
): Promise<Omit<RestoreOutcome, 'notApplied'>> {
  const { route, keepOwnership } = prepared;
  for (const statement of route?.before ?? []) await client.query(statement);
  const flags = keepOwnership ? '' : ' --no-owner --no-acl';
  const jobs = job.feed ? 1 : job.jobs;
  const oneTransaction = jobs === 1 && (await oneTransactionFits(job, client));
  const inOne = oneTransaction ? ' --single-transaction' : '';
  const from = job.feed ? 'reading the archive as it streams from storage' : `--jobs=${jobs}`;
  job.logger.info(
    `pg_restore ${job.tools.version} --exit-on-error${flags}${inOne} ${from} into ${job.target.describe}`,
  );
  await runPgRestore({
    pgRestore: job.tools.pgRestore,
    archivePath: job.archivePath,
    feed: job.feed,
    connection: job.target.connection,
    database: job.target.database,
    jobs,
    keepOwnership,
    serialData: extensionTables(job.manifest),
    listFile: route?.listFile,
    sessionOptions: route?.sessionOptions,
    singleTransaction: oneTransaction,
    env: job.env,
    logger: job.logger,
  });
  for (const statement of route?.after ?? []) await client.query(statement);
  const detail =
    `${route ? `${platformDetail(route)}; ` : ''}pg_restore ${job.tools.version} --exit-on-error${flags}` +
    `${job.feed ? ' reading the archive as it streamed' : jobs > 1 ? ` with ${jobs} jobs` : ''}` +
    `${oneTransaction ? ', in one transaction' : ''}, then ANALYZE` +
    (job.manifest.sourceState ? " and the source database's settings" : '');
  return { route, keepOwnership, detail };
}

async function replaceInTarget(
  job: RestoreJob,
  client: pg.Client,
  prepared: PreparedRestore,
): Promise<Omit<RestoreOutcome, 'notApplied'>> {
  if (job.feed) {
    throw new Error('A real restore reads its archive from disk: the streamed plan is not for it.');
  }
  await job.beforeReplace?.(client);
  const replaced = await replaceTarget({
    client,
    target: job.target,
    manifest: job.manifest,
    pgDump: job.tools.pgDump,
    pgRestore: job.tools.pgRestore,
    psql: job.tools.psql,
    archivePath: job.archivePath,
    keepOwnership: prepared.keepOwnership,
    workDir: job.workDir,
    env: job.env,
    logger: job.logger,
    rehearsal: job.rehearsal,
  });
  if (!job.rehearsal) job.onReplaced?.();
  const emptied = replaced.plan.summary;
  const detail =
    `${replaced.route ? `${platformDetail(replaced.route)}; ` : ''}emptied (${emptied.schemas.length} schema(s)` +
    `${emptied.extensions.length ? `, ${emptied.extensions.length} extension(s)` : ''}` +
    `${emptied.other.length ? `, ${emptied.other.length} other database-level object(s)` : ''}` +
    `${emptied.largeObjects ? `, ${emptied.largeObjects} large object(s)` : ''}) and restored with pg_restore ${job.tools.version} in one transaction` +
    `${replaced.keepOwnership ? ', owners and grants kept' : ', --no-owner --no-acl'}`;
  return {
    route: replaced.route,
    keepOwnership: replaced.keepOwnership,
    replaced: replaced.plan,
    detail,
  };
}
