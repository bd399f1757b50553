// The fingerprint of the sources a dist/ is built from: SHA-256 over the TypeScript sources, the
// compiler settings, the lock file (the bundled packages' versions) and the bundler script.
// `npm run package` writes it to dist/sources.sha256; tests that run dist/ compare it with the
// working tree's, which costs milliseconds where a rebuild (`npm run check-dist`) costs minutes.
//
//   node scripts/fingerprint.mjs          prints the working tree's fingerprint
//   node scripts/fingerprint.mjs --check  exits 1, saying what to run, when dist/ is stale
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Name of the fingerprint file inside dist/. */
export const FINGERPRINT_FILE = 'sources.sha256';

const SOURCE_FILES = [
  'tsconfig.json',
  'tsconfig.build.json',
  'package-lock.json',
  'scripts/package.mjs',
];

function tree(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? tree(p) : [p];
  });
}

/** SHA-256 (hex) over every source file's path and content, in a fixed order. */
export function sourcesFingerprint(base = root) {
  const files = [
    ...tree(path.join(base, 'src'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.relative(base, f)),
    ...SOURCE_FILES,
  ]
    .map((f) => f.split(path.sep).join('/'))
    .sort();
  const hash = createHash('sha256');
  for (const file of files) {
    const full = path.join(base, file);
    if (!existsSync(full)) continue;
    const content = readFileSync(full);
    hash.update(`${file}\0${content.length}\0`);
    hash.update(content);
  }
  return hash.digest('hex');
}

/** Why dist/ does not match the working tree's sources, or undefined when it does. */
export function staleDist(base = root) {
  const file = path.join(base, 'dist', FINGERPRINT_FILE);
  if (!existsSync(file)) {
    return `dist/${FINGERPRINT_FILE} is missing, so dist/ cannot be matched to the sources.`;
  }
  const built = readFileSync(file, 'utf8').trim();
  const now = sourcesFingerprint(base);
  if (built !== now) {
    return `dist/ was built from other sources than these (fingerprint ${built.slice(0, 12)}, sources ${now.slice(0, 12)}).`;
  }
  return undefined;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const stale = staleDist();
    if (stale) {
      console.error(`${stale}\nRun \`npm run package\` to rebuild dist/.`);
      process.exit(1);
    }
    console.log('dist/ was built from these sources.');
  } else {
    console.log(sourcesFingerprint());
  }
}
