/**
 * The manifest against its JSON schema (docs/manifest.schema.json): what backups write is
 * accepted, in schema version 2 and as version 1 wrote it; a damaged one is reported naming the
 * field that is wrong.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { ManifestError, parseManifest, readManifest } from '../../src/catalog/catalog.js';
import { MANIFEST_SCHEMA_VERSION, type Manifest } from '../../src/catalog/manifest.js';
import { manifestSchemaProblem } from '../../src/catalog/manifest-schema.js';
import { findOnPath } from '../../src/core/process.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { repoRoot } from '../support/bundle.js';
import { machineClientTools } from '../support/embedded.js';
import { makeStore, testBackupDeps, testBackupOptions, type TestStore } from '../support/env.js';
import { loadSample, newDatabase, withClient } from '../support/sample.js';
import { syntheticManifest } from '../prune/synthetic.js';

const WHERE = 'local folder /backups/shop/backups/20261120T051500Z-3f9a1c/manifest.json';

/** parseManifest's error for `value` written as JSON (or as given, when a string). */
function damage(value: unknown): string {
  try {
    parseManifest(typeof value === 'string' ? value : JSON.stringify(value), WHERE);
  } catch (error) {
    expect(error).toBeInstanceOf(ManifestError);
    return (error as Error).message;
  }
  throw new Error('the manifest was accepted');
}

/** A manifest as schema version 1 wrote it: version 2 less what version 2 added. */
function asVersion1(manifest: Manifest): Manifest {
  const copy = JSON.parse(JSON.stringify(manifest)) as Manifest;
  copy.schemaVersion = 1;
  delete copy.sourceState;
  delete copy.platform;
  for (const table of copy.tables) delete table.extension;
  return copy;
}

describe('the manifest schema', () => {
  const valid = (): Manifest =>
    syntheticManifest(
      { name: 'shop', finishedAt: new Date('2026-11-20T05:16:00.000Z') },
      '20261120T051500Z-3f9a1c',
      { key: 'shop/backups/20261120T051500Z-3f9a1c/dump.pgc', bytes: 10, sha256: 'ab'.repeat(32) },
    );

  it('is the file users read, and knows this version', () => {
    const schema = JSON.parse(
      readFileSync(path.join(repoRoot, 'docs/manifest.schema.json'), 'utf8'),
    ) as { $schema: string; properties: { schemaVersion: { enum: number[] } } };
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.properties.schemaVersion.enum).toEqual([1, 2]);
    expect(schema.properties.schemaVersion.enum).toContain(MANIFEST_SCHEMA_VERSION);
  });

  it('takes the archive size when recorded, and reads manifests written before it', () => {
    const recorded = { ...valid(), archiveBytes: 4096 };
    expect(parseManifest(JSON.stringify(recorded), WHERE).archiveBytes).toBe(4096);
    expect(parseManifest(JSON.stringify(valid()), WHERE).archiveBytes).toBeUndefined();
    expect(damage({ ...valid(), archiveBytes: -1 })).toBe(
      `The manifest ${WHERE} is damaged: /archiveBytes must be >= 0.`,
    );
  });

  it('reports a wrong field type as damaged, naming the field', () => {
    const m = valid();
    m.tables = [0, 1, 2, 3].map((i) => ({ schema: 'app', name: `t${i}`, rows: 5, bytes: 8192 }));
    (m.tables[3] as { rows: unknown }).rows = '5';
    expect(damage(m)).toBe(
      `The manifest ${WHERE} is damaged: /tables/3/rows must be integer or null.`,
    );
    expect(damage({ ...valid(), objects: [{ ...valid().objects[0], bytes: 1.5 }] })).toBe(
      `The manifest ${WHERE} is damaged: /objects/0/bytes must be integer.`,
    );
    expect(damage({ ...valid(), encryption: 'age' })).toBe(
      `The manifest ${WHERE} is damaged: /encryption must be object or null.`,
    );
    expect(damage({ ...valid(), labels: { release: 42 } })).toBe(
      `The manifest ${WHERE} is damaged: /labels/release must be string.`,
    );
  });

  it('names a missing field, a value out of its set and a malformed one', () => {
    const withoutFinish: Partial<Manifest> = valid();
    delete withoutFinish.finishedAt;
    expect(damage(withoutFinish)).toBe(`The manifest ${WHERE} is damaged: /finishedAt is missing.`);
    expect(damage({ ...valid(), kind: 'nightly' })).toBe(
      `The manifest ${WHERE} is damaged: /kind must be one of "scheduled", "pre-migration", "manual", "pre-restore".`,
    );
    expect(damage({ ...valid(), finishedAt: 'yesterday' })).toMatch(
      /is damaged: \/finishedAt must match pattern/,
    );
    expect(
      damage({ ...valid(), objects: [{ ...valid().objects[0], sha256: 'x'.repeat(64) }] }),
    ).toMatch(/is damaged: \/objects\/0\/sha256 must match pattern/);
    expect(damage({ ...valid(), objects: [] })).toBe(
      `The manifest ${WHERE} is damaged: /objects must NOT have fewer than 1 items.`,
    );
    expect(damage({ ...valid(), kind: 'nightly', globals: 'no' })).toMatch(
      /is damaged: .+ \(and 1 more problem\(s\)\)\.$/,
    );
  });

  it('reports what is not a manifest at all', () => {
    expect(damage('{"schemaVersion": 2, "id": ')).toMatch(
      new RegExp(`^The manifest ${WHERE} is not valid JSON: `),
    );
    expect(damage('[]')).toBe(`The manifest ${WHERE} is damaged: / must be object.`);
    expect(damage('null')).toBe(`The manifest ${WHERE} is damaged: / must be object.`);
    expect(damage({ ...valid(), schemaVersion: 9 })).toBe(
      `The manifest ${WHERE} has schema version 9; this version reads up to ${MANIFEST_SCHEMA_VERSION}. Use a newer release of the actions.`,
    );
    expect(damage({ ...valid(), schemaVersion: 0 })).toBe(
      `The manifest ${WHERE} is damaged: /schemaVersion must be one of 1, 2.`,
    );
  });

  it('allows fields it does not know, where readers ignore them', () => {
    const m = { ...valid(), producedBy: 'a later release', git: { repository: 'o/r', extra: 1 } };
    expect(manifestSchemaProblem(m)).toBeUndefined();
  });
});

describe('manifests of real backups', () => {
  let store: TestStore;
  let url: string;
  const key = generateIdentity();

  beforeAll(async () => {
    store = await makeStore('local');
    url = await newDatabase('manifest');
    await loadSample(url);
    const database = new URL(url).pathname.slice(1);
    await withClient(url, (c) => c.query(`ALTER DATABASE "${database}" SET work_mem = '8MB'`));
  });

  it('are accepted as written, and as schema version 1 wrote them', async () => {
    const tools = await machineClientTools();
    const deps = testBackupDeps(store.storage, tools, { zstdPath: findOnPath('zstd') });
    const first = await runBackup(
      testBackupOptions(url, 'shop', {
        encryption: { recipients: [key.recipient] },
        labels: { release: 'v42' },
        keepUntil: new Date('2030-01-01T00:00:00Z'),
        selection: { schemas: [], excludeSchemas: [], excludeTableData: ['public.documents'] },
        git: { repository: 'octo/shop', sha: 'f'.repeat(40), prNumber: 7, runId: '12' },
      }),
      deps,
    );
    const second = await runBackup(
      testBackupOptions(url, 'shop', {
        format: 'directory',
        jobs: 2,
        compression: { method: 'gzip', level: 5 },
        encryption: { recipients: [], passphrase: 'manifest test passphrase' },
        rowCounts: 'estimate',
        globals: true,
        kind: 'manual',
      }),
      deps,
    );
    for (const { manifest } of [first, second]) {
      expect(manifest.schemaVersion).toBe(2);
      expect(manifestSchemaProblem(manifest)).toBeUndefined();
      // As stored, read back through the catalog.
      expect(await readManifest(store.storage, 'shop', manifest.id)).toEqual(
        JSON.parse(JSON.stringify(manifest)),
      );
      expect(manifestSchemaProblem(asVersion1(manifest))).toBeUndefined();
    }
    const state = first.manifest.sourceState!;
    expect(state.constraints.length).toBeGreaterThan(3);
    expect(state.policies).toHaveLength(1);
    expect(state.sequences.length).toBeGreaterThan(2);
    expect(state.settings.length).toBeGreaterThan(0);
    expect(first.manifest.tables.some((t) => t.dataExcluded)).toBe(true);
  });
});
