/**
 * OpenStack Swift with its s3api middleware on loopback, started by the tests themselves:
 * account, container, object and proxy servers (plus a memcached) as child processes of the
 * test worker, in a throwaway folder, on free ports. Several can run side by side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutBucketVersioningCommand, S3Client } from '@aws-sdk/client-s3';
import { addContentMd5Middleware } from '../../src/storage/s3.js';

export interface SwiftServer {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  baseDir: string;
  createBucket(name: string, options?: { versioning?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

/** A second account on every Swift started here: buckets of its own, keys of its own. */
export const SECOND_ACCOUNT = {
  accessKeyId: 'second:keeper',
  secretAccessKey: 'second-account-key-7f3a91',
};

const PYTHON = '/usr/bin/python3';
/**
 * How long the four servers get to answer their health checks. About 3 s on an idle machine
 * with 2 cores; several stores starting at once next to other test workers took up to 30 s.
 */
const START_TIMEOUT_MS = Number(process.env.SWIFT_START_TIMEOUT_MS ?? 60_000);
const SERVER_TYPES = ['account', 'container', 'object', 'proxy'] as const;
type ServerType = (typeof SERVER_TYPES)[number];

/**
 * Runs argv[1..] in place of itself after asking the kernel to kill it when its parent (the
 * test worker) dies, so a crashed worker never leaves servers behind.
 */
const ORPHAN_GUARD = [
  'import ctypes, os, signal, sys',
  'ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))',
  "if os.getppid() != int(os.environ['SWIFT_TEST_PARENT_PID']): sys.exit(1)",
  'os.execv(sys.argv[1], sys.argv[1:])',
].join('\n');

const BUILD_RINGS = [
  'import sys',
  'from swift.common.ring import RingBuilder',
  'base = sys.argv[1]',
  'for name, port in zip(("account", "container", "object"), sys.argv[2:5]):',
  '    builder = RingBuilder(8, 1, 1)',
  "    builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port), 'device': 'd1', 'weight': 1.0})",
  '    builder.rebalance()',
  "    builder.save(f'{base}/etc/{name}.builder')",
  "    builder.get_ring().save(f'{base}/etc/{name}.ring.gz')",
].join('\n');

const PROXY_PIPELINE =
  'catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl ratelimit ' +
  's3api tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink ' +
  'proxy-logging proxy-server';

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port assigned');
    return address.port;
  });
  await Promise.all(
    servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
  );
  return ports;
}

function commonConf(base: string, port: number, user: string): string {
  return [
    '[DEFAULT]',
    'bind_ip = 127.0.0.1',
    `bind_port = ${port}`,
    'workers = 0',
    `user = ${user}`,
    `swift_dir = ${base}/etc`,
    `devices = ${base}/srv/node`,
    'mount_check = false',
    'disable_fallocate = true',
    `recon_cache_path = ${base}/cache`,
    'log_level = INFO',
    'bind_timeout = 3',
    '',
  ].join('\n');
}

function storageServerConf(
  type: Exclude<ServerType, 'proxy'>,
  base: string,
  port: number,
  user: string,
): string {
  return [
    commonConf(base, port, user),
    '[pipeline:main]',
    `pipeline = healthcheck ${type}-server`,
    '',
    `[app:${type}-server]`,
    `use = egg:swift#${type}`,
    '',
    '[filter:healthcheck]',
    'use = egg:swift#healthcheck',
    '',
  ].join('\n');
}

function proxyConf(base: string, port: number, user: string, memcachedPort: number): string {
  const simpleFilters = [
    'catch_errors',
    'gatekeeper',
    'healthcheck',
    'listing_formats',
    'bulk',
    'tempurl',
    'ratelimit',
    'copy',
    'slo',
    'dlo',
    'symlink',
  ];
  return [
    commonConf(base, port, user),
    '[pipeline:main]',
    `pipeline = ${PROXY_PIPELINE}`,
    '',
    '[app:proxy-server]',
    'use = egg:swift#proxy',
    'account_autocreate = true',
    '',
    '[filter:tempauth]',
    'use = egg:swift#tempauth',
    'user_test_tester = testing .admin',
    `user_${SECOND_ACCOUNT.accessKeyId.replace(':', '_')} = ${SECOND_ACCOUNT.secretAccessKey} .admin`,
    '',
    '[filter:s3api]',
    'use = egg:swift#s3api',
    'location = us-east-1',
    'multi_delete_concurrency = 16',
    '',
    '[filter:cache]',
    'use = egg:swift#memcache',
    `memcache_servers = 127.0.0.1:${memcachedPort}`,
    '',
    '[filter:versioned_writes]',
    'use = egg:swift#versioned_writes',
    'allow_object_versioning = true',
    '',
    '[filter:proxy-logging]',
    'use = egg:swift#proxy_logging',
    '',
    '[filter:container-quotas]',
    'use = egg:swift#container_quotas',
    '',
    '[filter:account-quotas]',
    'use = egg:swift#account_quotas',
    '',
    ...simpleFilters.flatMap((name) => [`[filter:${name}]`, `use = egg:swift#${name}`, '']),
  ].join('\n');
}

interface Child {
  name: string;
  process: ChildProcess;
  exited: Promise<void>;
  exitCode?: number | null;
  exitSignal?: NodeJS.Signals | null;
}

function startChild(name: string, argv: string[], logFile: string): Child {
  const fd = openSync(logFile, 'a');
  const env: NodeJS.ProcessEnv = { ...process.env, SWIFT_TEST_PARENT_PID: String(process.pid) };
  delete env.PYTHONPATH;
  delete env.PYTHONHOME;
  let child: ChildProcess;
  try {
    child = spawn(PYTHON, ['-c', ORPHAN_GUARD, ...argv], { stdio: ['ignore', fd, fd], env });
  } finally {
    closeSync(fd);
  }
  const record: Child = { name, process: child, exited: Promise.resolve() };
  record.exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      record.exitCode = code;
      record.exitSignal = signal;
      resolve();
    });
    child.once('error', () => resolve());
  });
  return record;
}

async function stopChild(child: Child): Promise<void> {
  if (child.exitCode !== undefined) return;
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 5_000);
  await child.exited;
  clearTimeout(timer);
}

async function logTail(base: string, name: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(join(base, 'log', `${name}.log`), 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function healthy(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthcheck`, {
      signal: AbortSignal.timeout(2_000),
    });
    const text = await response.text();
    return response.status === 200 && text.trim() === 'OK';
  } catch {
    return false;
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}: ${stderr}`)),
    );
  });
}

type ServerFacts = Pick<
  SwiftServer,
  'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey' | 'baseDir'
>;

function serverHandle(facts: ServerFacts, stopServers: () => Promise<void>): SwiftServer {
  const client = new S3Client({
    endpoint: facts.endpoint,
    region: facts.region,
    forcePathStyle: true,
    credentials: { accessKeyId: facts.accessKeyId, secretAccessKey: facts.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  addContentMd5Middleware(client);
  let stopping: Promise<void> | undefined;
  return {
    ...facts,
    async createBucket(name, options = {}) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
      if (options.versioning) {
        await client.send(
          new PutBucketVersioningCommand({
            Bucket: name,
            VersioningConfiguration: { Status: 'Enabled' },
          }),
        );
      }
    },
    stop() {
      stopping ??= (async () => {
        client.destroy();
        await stopServers();
      })();
      return stopping;
    },
  };
}

class StartFailure extends Error {
  constructor(
    message: string,
    readonly portClash: boolean,
  ) {
    super(message);
  }
}

async function startOnce(): Promise<SwiftServer> {
  const base = await mkdtemp(join(tmpdir(), 'swift-s3-'));
  const children: Child[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(children.map(stopChild));
  };
  try {
    await Promise.all(
      ['etc', 'srv/node/d1', 'cache', 'log'].map((dir) =>
        mkdir(join(base, dir), { recursive: true }),
      ),
    );
    const [accountPort, containerPort, objectPort, proxyPort, memcachedPort] = await freePorts(5);
    const ports: Record<ServerType, number> = {
      account: accountPort,
      container: containerPort,
      object: objectPort,
      proxy: proxyPort,
    };
    const user = userInfo().username;
    await Promise.all([
      writeFile(
        join(base, 'etc/account-server.conf'),
        storageServerConf('account', base, accountPort, user),
      ),
      writeFile(
        join(base, 'etc/container-server.conf'),
        storageServerConf('container', base, containerPort, user),
      ),
      writeFile(
        join(base, 'etc/object-server.conf'),
        storageServerConf('object', base, objectPort, user),
      ),
      writeFile(
        join(base, 'etc/proxy-server.conf'),
        proxyConf(base, proxyPort, user, memcachedPort),
      ),
    ]);
    await run(PYTHON, [
      '-c',
      BUILD_RINGS,
      base,
      String(accountPort),
      String(containerPort),
      String(objectPort),
    ]);

    const memcachedArgs = ['/usr/bin/memcached', '-l', '127.0.0.1', '-p', String(memcachedPort)];
    memcachedArgs.push('-U', '0', '-m', '32', '-t', '1');
    if (process.getuid?.() === 0) memcachedArgs.push('-u', 'root');
    children.push(startChild('memcached', memcachedArgs, join(base, 'log', 'memcached.log')));
    for (const type of SERVER_TYPES) {
      const conf = join(base, 'etc', `${type}-server.conf`);
      children.push(
        startChild(
          type,
          [`/usr/bin/swift-${type}-server`, conf, '-v'],
          join(base, 'log', `${type}.log`),
        ),
      );
    }

    const deadline = Date.now() + START_TIMEOUT_MS;
    const pending = new Set<ServerType>(SERVER_TYPES);
    while (pending.size > 0) {
      const dead = children.find((child) => child.exitCode !== undefined);
      if (dead !== undefined || Date.now() > deadline) {
        const tails = await Promise.all(
          children.map(
            async (child) => `--- ${child.name}.log\n${await logTail(base, child.name)}`,
          ),
        );
        const text = tails.join('\n');
        const reason =
          dead !== undefined
            ? `the ${dead.name} server exited (code ${dead.exitCode}, signal ${dead.exitSignal})`
            : `not healthy within ${START_TIMEOUT_MS / 1000} s: ${[...pending].join(', ')}`;
        throw new StartFailure(
          `Swift did not start in ${base}: ${reason}\n${text}`,
          /Could not bind|Address already in use|EADDRINUSE/.test(text),
        );
      }
      const results = await Promise.all(
        [...pending].map(async (type) => [type, await healthy(ports[type])] as const),
      );
      for (const [type, ok] of results) if (ok) pending.delete(type);
      if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 150));
    }

    return serverHandle(
      {
        endpoint: `http://127.0.0.1:${proxyPort}`,
        region: 'us-east-1',
        accessKeyId: 'test:tester',
        secretAccessKey: 'testing',
        baseDir: base,
      },
      async () => {
        await stopAll();
        await rm(base, { recursive: true, force: true });
      },
    );
  } catch (error) {
    await stopAll();
    await rm(base, { recursive: true, force: true });
    throw error;
  }
}

/** Starts a fresh Swift+s3api store; retries on a port taken between choosing and binding it. */
export async function startSwift(): Promise<SwiftServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce();
    } catch (error) {
      if (!(error instanceof StartFailure && error.portClash && attempt < 3)) throw error;
    }
  }
}

/**
 * The run's shared server when the global setup started one (it announces it in the
 * TEST_S3_* variables), else a fresh one. `stop()` stops only a server started here; on the
 * shared one, tests make their own uniquely named buckets. `baseDir` is '' for the shared one.
 */
export async function useSwift(): Promise<SwiftServer> {
  const { TEST_S3_ENDPOINT, TEST_S3_REGION, TEST_S3_ACCESS_KEY_ID, TEST_S3_SECRET_ACCESS_KEY } =
    process.env;
  if (TEST_S3_ENDPOINT && TEST_S3_ACCESS_KEY_ID && TEST_S3_SECRET_ACCESS_KEY) {
    return serverHandle(
      {
        endpoint: TEST_S3_ENDPOINT,
        region: TEST_S3_REGION || 'us-east-1',
        accessKeyId: TEST_S3_ACCESS_KEY_ID,
        secretAccessKey: TEST_S3_SECRET_ACCESS_KEY,
        baseDir: '',
      },
      async () => undefined,
    );
  }
  return startSwift();
}
