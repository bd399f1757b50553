// Builds one ncc bundle per action (and the CLI) into dist/<name>/index.js.
// `--check` builds into a temporary folder and fails when dist/ differs from it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const entries = {
  backup: 'lib/actions/backup.js',
  verify: 'lib/actions/verify.js',
  'restore-drill': 'lib/actions/restore-drill.js',
  prune: 'lib/actions/prune.js',
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

const out = check ? mkdtempSync(path.join(os.tmpdir(), 'dist-check-')) : path.join(root, 'dist');
if (!check) rmSync(out, { recursive: true, force: true });
for (const [name, entry] of Object.entries(entries)) {
  if (!existsSync(path.join(root, entry))) continue;
  execFileSync(
    process.execPath,
    [
      path.join(root, 'node_modules/@vercel/ncc/dist/ncc/cli.js'),
      'build',
      entry,
      '-o',
      path.join(out, name),
      '--license',
      'licenses.txt',
      '--quiet',
    ],
    { cwd: root, stdio: 'inherit' },
  );
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
