// Prepares a machine for the tests, the demo and the benchmark, so that `npm test` and
// `npm run demo` work on a fresh Debian or Ubuntu machine:
// - npm packages (npm ci) when node_modules is missing;
// - the Debian packages the real parts need (PostgreSQL, age, zstd, OpenStack Swift for the S3
//   server) when they are missing, with apt-get (as root, or through sudo);
// - the embedded PostgreSQL servers (pg13 ... pg18) need their shared-library symlinks
//   restored, which their own postinstall would do if install scripts ran.
// `--demo` asks only for what the demo needs (no Swift).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const demoOnly = process.argv.includes('--demo');

function run(cmd, args) {
  console.log(`setup: ${[cmd, ...args].join(' ')}`);
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
}

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function postgresBinDirs() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base).map((v) => path.join(base, v, 'bin'));
}

if (!existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

const wanted = [];
const dirs = postgresBinDirs();
if (!dirs.some((d) => existsSync(path.join(d, 'pg_dump')))) wanted.push('postgresql-client');
if (!dirs.some((d) => existsSync(path.join(d, 'initdb'))) && !demoOnly) wanted.push('postgresql');
if (!has('zstd')) wanted.push('zstd');
// The PostGIS application test restores postgis, postgis_raster and postgis_topology.
for (const dir of dirs.filter((d) => existsSync(path.join(d, 'initdb')))) {
  const major = path.basename(path.dirname(dir));
  const control = `/usr/share/postgresql/${major}/extension/postgis.control`;
  if (!demoOnly && !existsSync(control)) {
    wanted.push(`postgresql-${major}-postgis-3`, `postgresql-${major}-postgis-3-scripts`);
  }
}
if (!demoOnly) {
  if (!has('age')) wanted.push('age');
  if (!existsSync('/usr/bin/swift-proxy-server')) {
    wanted.push(
      'swift',
      'swift-proxy',
      'swift-account',
      'swift-container',
      'swift-object',
      'memcached',
    );
  }
}
if (wanted.length > 0) {
  if (!has('apt-get')) {
    console.error(
      `setup: missing ${wanted.join(', ')}, and there is no apt-get here to install them.`,
    );
    process.exit(1);
  }
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const apt = (args) => (sudo.length ? run('sudo', ['apt-get', ...args]) : run('apt-get', args));
  process.env.DEBIAN_FRONTEND = 'noninteractive';
  apt(['update', '-q']);
  apt(['install', '-y', '-q', '--no-install-recommends', ...wanted]);
}

function hydrate(pkgDir) {
  const listFile = path.join(pkgDir, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return 0;
  const links = JSON.parse(readFileSync(listFile, 'utf8'));
  let made = 0;
  for (const { source, target } of links) {
    // Paths in the list are relative to the package directory.
    const src = path.resolve(pkgDir, source);
    const dst = path.resolve(pkgDir, target);
    try {
      lstatSync(dst);
      continue;
    } catch {
      // missing: create it
    }
    symlinkSync(path.relative(path.dirname(dst), src), dst);
    made++;
  }
  return made;
}

let total = 0;
for (const name of ['pg13', 'pg14', 'pg16', 'pg17', 'pg18']) {
  const dir = path.join(root, 'node_modules', name);
  if (existsSync(dir)) total += hydrate(dir);
}
if (total > 0)
  console.log(`setup: restored ${total} library links of the embedded PostgreSQL servers`);
