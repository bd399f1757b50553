import { manifestKey } from '../../src/catalog/keys.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle } from '../support/bundle.js';
import { makeStore, sharedPostgresUrl, uniqueName, type TestStore } from '../support/env.js';
import { restoreByHand } from '../support/restore-by-hand.js';
import { createDatabase, loadSample, rowCounts } from '../support/sample.js';

const PASSWORD = 'source-secret-pw';

describe.each(['s3', 'local'] as const)('backup bundle against %s storage', (kind) => {
  let store: TestStore;
  let sourceUrl: string;
  const key = generateIdentity();

  beforeAll(async () => {
    store = await makeStore(kind);
    sourceUrl = await createDatabase(sharedPostgresUrl(), uniqueName('src').replace(/-/g, '_'));
    await loadSample(sourceUrl);
  });

  it('streams an encrypted, checksummed backup that restores with age, zstd and pg_restore alone', async () => {
    const run = await runBundle(
      'backup',
      {
        'database-url': sourceUrl,
        storage: store.location,
        name: 'shop',
        'encryption-recipients': key.recipient,
        labels: 'release=v42',
        ...store.inputs,
      },
      store.env,
    );
    expect(run.stderr + run.stdout).not.toContain('::error');
    expect(run.code).toBe(0);
    const id = run.outputs['backup-id'];
    expect(id).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    expect(run.outputs['object-key']).toMatch(/shop\/backups\/.+\/dump\.pgc\.zst\.age$/);
    expect(Number(run.outputs.bytes)).toBeGreaterThan(1000);
    expect(run.summary).toContain(id);
    expect(run.summary).toContain('Largest tables');
    expect(run.summary).toContain('app.orders_2026');

    const manifestData = await store.storage.getBytes(manifestKey('shop', id));
    expect(manifestData).toBeDefined();
    const manifest = JSON.parse(manifestData!.toString()) as Manifest;
    expect(manifest.compression.method).toBe('zstd');
    expect(manifest.encryption).toEqual({
      scheme: 'age',
      recipients: [key.recipient],
      passphrase: false,
    });
    expect(manifest.labels).toEqual({ release: 'v42' });
    expect(manifest.source.serverVersion).toMatch(/^15\./);
    expect(manifest.objects[0].sha256).toBe(run.outputs.sha256);

    const target = await createDatabase(
      sharedPostgresUrl(),
      uniqueName('byhand').replace(/-/g, '_'),
    );
    const dumpKey = manifest.objects[0].key;
    const { sha256 } = await restoreByHand({
      storage: store.storage,
      objectKey: dumpKey,
      identity: key.identity,
      targetUrl: target,
    });
    expect(sha256).toBe(manifest.objects[0].sha256);
    const restored = await rowCounts(target);
    const source = await rowCounts(sourceUrl);
    expect(restored).toEqual(source);
    for (const t of manifest.tables) expect(t.rows).toBe(source[`${t.schema}.${t.name}`]);
    expect(source['app.orders_2025'] + source['app.orders_2026']).toBe(3000);

    // No secret in anything a person or a later step reads.
    expect(run.everything).not.toContain(PASSWORD);
    expect(manifestData!.toString()).not.toContain(PASSWORD);
    expect(manifestData!.toString()).not.toContain(key.identity);
  });

  it('warns about an unencrypted backup and reports the size change against the previous one', async () => {
    const first = await runBundle(
      'backup',
      {
        'database-url': sourceUrl,
        storage: store.location,
        name: 'plain',
        compression: 'gzip',
        ...store.inputs,
      },
      store.env,
    );
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('::warning::Backup of');
    expect(first.stdout).toContain('not encrypted');
    expect(first.outputs['size-change-percent']).toBe('');
    const second = await runBundle(
      'backup',
      {
        'database-url': sourceUrl,
        storage: store.location,
        name: 'plain',
        compression: 'none',
        'size-change-threshold': '5',
        ...store.inputs,
      },
      store.env,
    );
    expect(second.code).toBe(0);
    expect(Number(second.outputs['size-change-percent'])).toBeGreaterThan(5);
    expect(second.stdout).toMatch(/::warning::Backup size changed by \+/);
    expect(second.summary).toContain(first.outputs['backup-id']);
  });
});
