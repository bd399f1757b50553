import type { Logger } from '../core/logger.js';
import { aptArgv, defaultRunner, isRoot, mayInstallTools, type CommandRunner } from './install.js';

/**
 * The apt packages (`postgresql-<major>-<suffix>`, the naming of the PostgreSQL project's apt
 * repository and of Debian) that provide an extension a scratch server lacks.
 */
export const EXTENSION_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  vector: ['pgvector'],
  postgis: ['postgis-3', 'postgis-3-scripts'],
  postgis_raster: ['postgis-3', 'postgis-3-scripts'],
  postgis_topology: ['postgis-3', 'postgis-3-scripts'],
  postgis_sfcgal: ['postgis-3', 'postgis-3-scripts'],
  postgis_tiger_geocoder: ['postgis-3', 'postgis-3-scripts'],
  address_standardizer: ['postgis-3', 'postgis-3-scripts'],
  address_standardizer_data_us: ['postgis-3', 'postgis-3-scripts'],
  pgrouting: ['pgrouting', 'pgrouting-scripts'],
  pg_cron: ['cron'],
  h3: ['h3'],
  h3_postgis: ['h3'],
  hypopg: ['hypopg'],
  pg_partman: ['partman'],
  pgaudit: ['pgaudit'],
  orafce: ['orafce'],
  pg_repack: ['repack'],
  pg_hint_plan: ['pg-hint-plan'],
  pgtap: ['pgtap'],
  plpgsql_check: ['plpgsql-check'],
  pg_stat_kcache: ['pg-stat-kcache'],
  pg_qualstats: ['pg-qualstats'],
  pg_wait_sampling: ['pg-wait-sampling'],
  ip4r: ['ip4r'],
  prefix: ['prefix'],
  rum: ['rum'],
  semver: ['semver'],
  hll: ['hll'],
  periods: ['periods'],
  unit: ['unit'],
  tdigest: ['tdigest'],
  q3c: ['q3c'],
  pg_sphere: ['pgsphere'],
  pointcloud: ['pointcloud'],
  pointcloud_postgis: ['pointcloud'],
  pg_similarity: ['similarity'],
  jsquery: ['jsquery'],
  debversion: ['debversion'],
  numeral: ['numeral'],
  rational: ['rational'],
  first_last_agg: ['first-last-agg'],
  toastinfo: ['toastinfo'],
  icu_ext: ['icu-ext'],
  set_user: ['set-user'],
  pllua: ['pllua'],
  plr: ['plr'],
  mysql_fdw: ['mysql-fdw'],
  tds_fdw: ['tds-fdw'],
  ogr_fdw: ['ogr-fdw'],
};

/** The packages for the extensions that have one, and the extensions that have none. */
export function extensionPackages(
  names: string[],
  major: number,
): { packages: string[]; unknown: string[] } {
  const packages = new Set<string>();
  const unknown: string[] = [];
  for (const name of names) {
    const suffixes = EXTENSION_PACKAGES[name];
    if (!suffixes) unknown.push(name);
    else for (const s of suffixes) packages.add(`postgresql-${major}-${s}`);
  }
  return { packages: [...packages], unknown };
}

/**
 * Installs with apt the packages of the extensions a scratch server of `major` lacks (refreshing
 * the package lists once when the first attempt fails). Returns what happened, in one line for
 * the preflight's report; never throws (the preflight names what is still missing).
 */
export async function installExtensions(o: {
  names: string[];
  major: number;
  logger: Logger;
  runner?: CommandRunner;
  root?: boolean;
}): Promise<string> {
  const { packages, unknown } = extensionPackages(o.names, o.major);
  const none = unknown.length ? `; no apt package known for: ${unknown.join(', ')}` : '';
  if (packages.length === 0) return `not installed${none}`;
  const runner = o.runner ?? defaultRunner;
  const sudo = (o.root ?? isRoot()) ? [] : ['sudo'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = [
    ...sudo,
    ...['apt-get', 'install', '-y', '-q', '--no-install-recommends'],
    ...packages,
  ];
  o.logger.info(`Installing the missing extension(s) with apt: ${packages.join(' ')}`);
  let r = await runner(aptArgv(install), { env });
  if (r.code !== 0) {
    await runner(aptArgv([...sudo, 'apt-get', 'update', '-q']), { env });
    r = await runner(aptArgv(install), { env });
  }
  if (r.code !== 0) {
    const why = r.stderr.trim().split('\n').slice(-3).join(' ');
    return `apt-get install ${packages.join(' ')} failed: ${why}${none}`;
  }
  return `installed with apt: ${packages.join(' ')}${none}`;
}

/**
 * The extension installer verify and the drill hand their cores: apt, only where the run may
 * change the machine (`mayInstallTools`: GitHub-hosted runners, or PG_BACKUP_INSTALL_TOOLS).
 */
export function extensionInstaller(
  env: NodeJS.ProcessEnv,
  logger: Logger,
): ((names: string[], major: number) => Promise<string>) | undefined {
  if (!mayInstallTools(env)) return undefined;
  return (names, major) => installExtensions({ names, major, logger });
}
