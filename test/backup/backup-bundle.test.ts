import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runProcess } from '../../src/core/process.js';
import { manifestKey } from '../../src/catalog/keys.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import { manifestSchemaProblem } from '../../src/catalog/manifest-schema.js';
import { generateIdentity } from '../../src/crypto/age.js';
import { runBundle } from '../support/bundle.js';
import { mistypedSecretKeys, showsKey } from '../support/mistyped-keys.js';
import { makeStore, type TestStore } from '../support/env.js';
import { restoreByHand } from '../support/restore-by-hand.js';
import { loadSample, newDatabase, rowCounts, withClient } from '../support/sample.js';

const PASSWORD = 'source-secret-pw';

describe('backup bundle given a secret key as a recipient', () => {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'backup-mistyped-'));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));
  const secret = generateIdentity();
  const team = generateIdentity();

  it.each(Object.entries(mistypedSecretKeys(secret.identity)))(
    'fails naming the line, masks the value and never prints it: %s',
    async (_spelling, value) => {
      const run = await runBundle('backup', {
        storage: folder,
        name: 'shop',
        'encryption-recipients': `${team.recipient}\n${value}`,
      });
      expect(run.code).toBe(1);
      expect(run.stdout).toMatch(/::error::age recipients, line 2: /);
      expect(showsKey(run.everything, secret.identity)).toBe(false);
      expect(run.stdout).toContain(`::add-mask::${value.trim()}`);
      expect(run.stdout).not.toContain(`::add-mask::${team.recipient}`);
    },
  );
});

describe.each(['s3', 'local'] as const)('backup bundle against %s storage', (kind) => {
  let store: TestStore;
  let sourceUrl: string;
  const key = generateIdentity();

  beforeAll(async () => {
    store = await makeStore(kind);
    sourceUrl = await newDatabase('src');
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
    expect(manifestSchemaProblem(manifest)).toBeUndefined();
    expect(manifest.compression.method).toBe('zstd');
    expect(manifest.encryption).toEqual({
      scheme: 'age',
      recipients: [key.recipient],
      passphrase: false,
    });
    expect(manifest.labels).toEqual({ release: 'v42' });
    expect(manifest.source.serverVersion).toMatch(/^15\./);
    expect(manifest.objects[0].sha256).toBe(run.outputs.sha256);

    const target = await newDatabase('byhand');
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
    // Counted in pg_dump's output on its way to zstd, not by scanning the tables again.
    expect(run.stdout).toContain(
      `Row counts: ${manifest.tables.length} tables counted in pg_dump's output as it passed.`,
    );

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
    // Another compression changes the size with the data unchanged: not compared, and said so.
    expect(second.outputs['size-change-percent']).toBe('');
    expect(second.stdout).toContain(
      `Size change against ${first.outputs['backup-id']} not compared: it was compressed with gzip inside the archive (pg_dump) and this one with none`,
    );
    expect(second.summary).toMatch(
      /not compared with the previous backup: it was compressed with gzip inside the archive/,
    );
    // The same compression with more data: compared, and past the threshold.
    await withClient(sourceUrl, (c) =>
      c.query(
        `CREATE TABLE public.bulk AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g`,
      ),
    );
    try {
      const third = await runBundle(
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
      expect(third.code).toBe(0);
      expect(Number(third.outputs['size-change-percent'])).toBeGreaterThan(5);
      expect(third.stdout).toMatch(/::warning::Backup size changed by \+/);
      expect(third.summary).toContain(second.outputs['backup-id']);
    } finally {
      await withClient(sourceUrl, (c) => c.query('DROP TABLE public.bulk'));
    }
  });

  it("still backs up when the previous backup's manifest is damaged, and says so", async () => {
    const inputs = {
      'database-url': sourceUrl,
      storage: store.location,
      name: 'damaged',
      'encryption-recipients': key.recipient,
      ...store.inputs,
    };
    const first = await runBundle('backup', inputs, store.env);
    expect(first.code).toBe(0);
    const damagedKey = manifestKey('damaged', first.outputs['backup-id']);
    await store.storage.putBytes(damagedKey, '{"schemaVersion": 1, "id": "');

    const second = await runBundle('backup', inputs, store.env);
    expect(second.stderr + second.stdout).not.toContain('::error');
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(
      `::warning::The size change against the previous backup of 'damaged' is left out: The manifest ${store.storage.location(damagedKey)} is not valid JSON`,
    );
    expect(second.outputs['size-change-percent']).toBe('');
    const written = await store.storage.getBytes(
      manifestKey('damaged', second.outputs['backup-id']),
    );
    const manifest = JSON.parse(written!.toString()) as Manifest;
    expect(manifest.id).toBe(second.outputs['backup-id']);
    expect(manifest.previous).toBeUndefined();
  });

  it('dumps the directory format in parallel, streamed as a tar, with the roles beside it', async () => {
    await withClient(sourceUrl, (c) =>
      c.query(
        `DO $$ BEGIN CREATE ROLE app_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
      ),
    );
    const run = await runBundle(
      'backup',
      {
        'database-url': sourceUrl,
        storage: store.location,
        name: 'dirfmt',
        format: 'directory',
        jobs: '2',
        globals: 'true',
        'encryption-recipients': key.recipient,
        ...store.inputs,
      },
      store.env,
    );
    expect(run.code).toBe(0);
    expect(run.outputs['object-key']).toMatch(/dump\.tar\.zst\.age$/);
    const id = run.outputs['backup-id'];
    const manifest = JSON.parse(
      (await store.storage.getBytes(manifestKey('dirfmt', id)))!.toString(),
    ) as Manifest;
    expect(manifest.format).toBe('directory');
    expect(manifest.globals).toBe(true);
    const globals = manifest.objects.find((o) => o.role === 'globals');
    expect(globals?.key).toMatch(/globals\.sql\.age$/);
    const target = await newDatabase('dir');
    await restoreByHand({
      storage: store.storage,
      objectKey: manifest.objects[0].key,
      identity: key.identity,
      targetUrl: target,
    });
    const source = await rowCounts(sourceUrl);
    expect(await rowCounts(target)).toEqual(source);
    // No archive passes through the action here: the tables are counted with count(*).
    for (const t of manifest.tables) expect(t.rows).toBe(source[`${t.schema}.${t.name}`]);
    expect(run.stdout).not.toContain('Row counts:');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'globals-'));
    try {
      const encrypted = path.join(dir, 'globals.sql.age');
      writeFileSync(encrypted, (await store.storage.getBytes(globals!.key))!);
      writeFileSync(path.join(dir, 'key'), key.identity);
      const r = await runProcess('age', ['-d', '-i', path.join(dir, 'key'), encrypted]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('CREATE ROLE app_reader');
      expect(r.stdout).not.toMatch(/PASSWORD '/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
