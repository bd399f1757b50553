// Builds one ncc bundle per action (and the CLI) into dist/<name>/index.js, with licenses.txt
// beside it naming every package bundled into any of its files.
// dist/sources.sha256 is the fingerprint of the sources built (scripts/fingerprint.mjs), which
// the tests that run dist/ check before they run it.
// `--check` builds into a temporary folder and fails when dist/ differs from it.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FINGERPRINT_FILE, sourcesFingerprint } from './fingerprint.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const entries = {
  backup: 'lib/actions/backup.js',
  verify: 'lib/actions/verify.js',
  'restore-drill': 'lib/actions/restore-drill.js',
  prune: 'lib/actions/prune.js',
  'backup-files': 'lib/actions/backup-files.js',
  cli: 'lib/cli.js',
};

execFileSync(
  process.execPath,
  [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: root,
    stdio: 'inherit',
  },
);

/** The folder of every node_modules package whose code is in a build, from webpack's stats. */
function bundledPackages(stats, dirs = new Set()) {
  const visit = (module) => {
    for (const inner of module.modules ?? []) visit(inner);
    const identifier = module.identifier ?? '';
    const resource = identifier.slice(identifier.lastIndexOf('!') + 1).split('|')[0];
    const at = resource.lastIndexOf('/node_modules/');
    if (at < 0) return;
    const segments = resource.slice(at + '/node_modules/'.length).split('/');
    const name = segments[0].startsWith('@') ? `${segments[0]}/${segments[1]}` : segments[0];
    dirs.add(path.join(resource.slice(0, at), 'node_modules', name));
  };
  for (const module of stats.modules ?? []) visit(module);
  for (const child of stats.children ?? []) bundledPackages(child, dirs);
  return dirs;
}

/**
 * licenses.txt as ncc's --license writes it (name, license, license file's text, by name), for
 * the packages of every file of the build: ncc's own covers only the last file written when a
 * lazily imported module makes more than one.
 */
function renderLicenses(packageDirs) {
  const packages = [...packageDirs].map((dir) => {
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const id =
      typeof pkg.license === 'string'
        ? pkg.license
        : (pkg.license?.type ?? pkg.licenses?.[0]?.type);
    const file = readdirSync(dir).find(
      (f) => /^licen[cs]e/i.test(f) && !statSync(path.join(dir, f)).isDirectory(),
    );
    const text = file && readFileSync(path.join(dir, file), 'utf8').replace(/\r\n/g, '\n');
    return { name: pkg.name, id, text };
  });
  packages.sort((a, b) => (a.name < b.name ? -1 : 1));
  const blocks = packages.map(
    (p) => `${p.name}${p.id ? `\n${p.id}` : ''}${p.text ? `\n${p.text}` : ''}`,
  );
  return `${blocks.join('\n\n').trim()}\n`;
}

const out = check ? mkdtempSync(path.join(os.tmpdir(), 'dist-check-')) : path.join(root, 'dist');
if (!check) rmSync(out, { recursive: true, force: true });
const statsDir = mkdtempSync(path.join(os.tmpdir(), 'ncc-stats-'));
try {
  for (const [name, entry] of Object.entries(entries)) {
    if (!existsSync(path.join(root, entry))) continue;
    const statsFile = path.join(statsDir, `${name}.json`);
    execFileSync(
      process.execPath,
      [
        path.join(root, 'node_modules/@vercel/ncc/dist/ncc/cli.js'),
        'build',
        entry,
        '-o',
        path.join(out, name),
        '--stats-out',
        statsFile,
        '--quiet',
      ],
      { cwd: root, stdio: 'inherit' },
    );
    const stats = JSON.parse(readFileSync(statsFile, 'utf8'));
    writeFileSync(path.join(out, name, 'licenses.txt'), renderLicenses(bundledPackages(stats)));
  }
  writeFileSync(path.join(out, FINGERPRINT_FILE), `${sourcesFingerprint(root)}\n`);
} finally {
  rmSync(statsDir, { recursive: true, force: true });
}

function files(dir, base = dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p, base) : [path.relative(base, p)];
  });
}

if (check) {
  const distDir = path.join(root, 'dist');
  const want = files(out).sort();
  const have = files(distDir).sort();
  const differ = [...new Set([...want, ...have])].filter((f) => {
    const a = path.join(out, f);
    const b = path.join(distDir, f);
    return !existsSync(a) || !existsSync(b) || !readFileSync(a).equals(readFileSync(b));
  });
  rmSync(out, { recursive: true, force: true });
  if (differ.length > 0) {
    console.error(
      `dist/ does not match the sources (${differ.length} file(s) differ: ${differ.slice(0, 10).join(', ')}).`,
    );
    console.error('Run `npm run package` and commit dist/.');
    process.exit(1);
  }
  console.log('dist/ matches the sources.');
} else {
  console.log(
    `Bundles written to ${path.relative(root, out)}/: ${Object.keys(entries)
      .filter((n) => existsSync(path.join(out, n)))
      .join(', ')}`,
  );
}
