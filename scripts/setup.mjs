// Prepares what the tests, the demo and the benchmark use beside node_modules:
// the embedded PostgreSQL servers (pg13, pg14, pg16, pg17, pg18) need their shared-library
// symlinks restored, which their own postinstall would do if install scripts ran.
import { existsSync, readFileSync, symlinkSync, lstatSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const packages = ['pg13', 'pg14', 'pg16', 'pg17', 'pg18'];

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
for (const name of packages) {
  const dir = path.join(root, 'node_modules', name);
  if (existsSync(dir)) total += hydrate(dir);
}
if (total > 0)
  console.log(`setup: restored ${total} library links of the embedded PostgreSQL servers`);
