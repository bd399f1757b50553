import { readManifest } from '../catalog/catalog.js';
import type { Manifest } from '../catalog/manifest.js';
import { errorMessage } from '../core/errors.js';
import type { CheckResult } from '../restore/checks.js';
import type { Storage } from '../storage/storage.js';

export const COPIES_CHECK = 'Copies in other destinations';

/**
 * The `copies` check: every other destination holds the verified backup whole, with a manifest
 * that lists each object with the same size and SHA-256 as the verified one, and each object
 * listed there stored with that size. The copies are checked side by side.
 */
export async function checkCopies(
  manifest: Manifest,
  copies: readonly Storage[],
): Promise<CheckResult> {
  const started = Date.now();
  const problems = (await Promise.all(copies.map((store) => copyProblems(manifest, store)))).flat();
  const seconds = (Date.now() - started) / 1000;
  if (problems.length > 0) {
    return { name: COPIES_CHECK, status: 'failed', detail: problems.join('\n'), seconds };
  }
  const where = copies.map((s) => s.description).join(', ');
  return {
    name: COPIES_CHECK,
    status: 'passed',
    detail: `${copies.length} ${copies.length === 1 ? 'copy holds' : 'copies hold'} backup ${manifest.id} with the same objects, sizes and SHA-256: ${where}`,
    seconds,
  };
}

/** What is wrong with one destination's copy; empty when it holds the backup as verified. */
async function copyProblems(verified: Manifest, store: Storage): Promise<string[]> {
  const where = store.description;
  let copy: Manifest | undefined;
  try {
    copy = await readManifest(store, verified.name, verified.id);
  } catch (error) {
    return [`${where}: the manifest cannot be read: ${errorMessage(error)}`];
  }
  if (copy === undefined) return [`${where}: no manifest of backup ${verified.id}`];
  const problems: string[] = [];
  for (const object of verified.objects) {
    const listed = copy.objects.find((o) => o.key === object.key);
    if (listed === undefined) {
      problems.push(`${where}: its manifest does not list ${object.key}`);
    } else if (listed.sha256 !== object.sha256 || listed.bytes !== object.bytes) {
      problems.push(
        `${where}: its manifest gives ${object.key} ${listed.bytes} bytes, SHA-256 ${listed.sha256}; the verified copy ${object.bytes} bytes, SHA-256 ${object.sha256}`,
      );
    }
    problems.push(...(await storedSizeProblems(store, object.key, object.bytes)));
  }
  return problems;
}

/** The object as the store lists it: present, with the size the manifest gives. */
async function storedSizeProblems(store: Storage, key: string, bytes: number): Promise<string[]> {
  try {
    const head = await store.head(key);
    if (head === undefined) return [`${store.location(key)} is missing`];
    if (head.size !== bytes) {
      return [`${store.location(key)} holds ${head.size} bytes, the manifest ${bytes}`];
    }
    return [];
  } catch (error) {
    return [`${store.location(key)} cannot be read: ${errorMessage(error)}`];
  }
}
