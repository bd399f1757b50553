import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBackup } from '../../src/backup/backup.js';
import { findOnPath } from '../../src/core/process.js';
import { runRestore } from '../../src/drill/drill.js';
import { connect, parseConnectionString } from '../../src/postgres/connection.js';
import type { ClientTools } from '../../src/postgres/tools.js';
import { runVerify } from '../../src/verify/verify.js';
import { machineClientTools } from '../support/embedded.js';
import {
  makeStore,
  testBackupDeps,
  testBackupOptions,
  sharedPostgresUrl,
  testDrillDeps,
  testRestoreOptions,
  testVerifyDeps,
  type TestStore,
} from '../support/env.js';
import { newDatabase, urlOfDatabase, withClient } from '../support/sample.js';

// An application database as teams build them on PostGIS: postgis with postgis_raster and
// postgis_topology (a topology, a TopoGeometry layer: the extension's configuration tables tied
// by its own foreign key, and its own sequence), a custom SRID (a row of an extension
// configuration table), an extension in a schema of its own, and ALTER DATABASE … SET
// search_path, which pg_dump does not carry and a function needs to find that extension.

const zstdPath = findOnPath('zstd');
let tools: ClientTools;
let store: TestStore;
let sourceUrl: string;

const APP = `
CREATE SCHEMA extensions;
CREATE EXTENSION postgis;
CREATE EXTENSION postgis_raster;
CREATE EXTENSION postgis_topology;
CREATE EXTENSION pg_trgm WITH SCHEMA extensions;
INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, proj4text, srtext)
  SELECT 990001, 'custom', 990001, proj4text, srtext FROM spatial_ref_sys WHERE srid = 4326;
CREATE TABLE parcels (id serial PRIMARY KEY, name text NOT NULL,
                      geom geometry(Polygon, 990001));
INSERT INTO parcels (name, geom)
  SELECT 'parcel ' || i, ST_SetSRID(ST_MakeEnvelope(i, i, i + 1, i + 1), 990001)
    FROM generate_series(1, 200) AS i;
CREATE TABLE tiles (rid serial PRIMARY KEY, rast raster);
INSERT INTO tiles (rast) SELECT ST_AddBand(ST_MakeEmptyRaster(8, 8, i, i, 1, -1, 0, 0, 4326), '8BUI'::text, i, 0)
  FROM generate_series(1, 20) AS i;
SELECT topology.CreateTopology('city', 4326);
CREATE TABLE roads (id serial PRIMARY KEY, name text);
SELECT topology.AddTopoGeometryColumn('city', 'public', 'roads', 'topo', 'LINE');
INSERT INTO roads (name, topo)
  SELECT 'road ' || i,
         topology.toTopoGeom(ST_SetSRID(ST_MakeLine(ST_MakePoint(i, 0), ST_MakePoint(i, 1)), 4326), 'city', 1)
    FROM generate_series(1, 5) AS i;
SET check_function_bodies = off;
CREATE FUNCTION similar_parcels(q text) RETURNS SETOF text LANGUAGE sql STABLE
  AS $$ SELECT name FROM public.parcels WHERE name % q ORDER BY name $$;
`;

beforeAll(async () => {
  tools = await machineClientTools();
  store = await makeStore('local');
  sourceUrl = await newDatabase('gis');
  const database = parseConnectionString(sourceUrl).database!;
  await withClient(sourceUrl, async (c) => {
    await c.query(APP);
    await c.query(
      `ALTER DATABASE ${database} SET search_path = "$user", public, extensions, topology`,
    );
  });
  await runBackup(
    testBackupOptions(sourceUrl, 'gis'),
    testBackupDeps(store.storage, tools, { zstdPath }),
  );
}, 600_000);

describe('a PostGIS application database', () => {
  it('verifies with default inputs, every time', async () => {
    for (let i = 0; i < 3; i++) {
      const report = await runVerify(
        { restore: true, checks: [] },
        testVerifyDeps(store.storage, tools),
      );
      expect(report.failures).toEqual([]);
      const counts = report.tables.filter((t) => t.table.startsWith('topology.'));
      expect(counts.map((t) => [t.table, t.status])).toEqual([
        ['topology.layer', 'same'],
        ['topology.topology', 'same'],
      ]);
      expect(report.tables).toContainEqual(
        expect.objectContaining({ table: 'public.spatial_ref_sys', status: 'same' }),
      );
    }
  }, 900_000);

  it('restores with the source database settings and topology sequence, so CreateTopology works', async () => {
    const name = `gis_restored_${Date.now()}`;
    const url = urlOfDatabase(sharedPostgresUrl(), name);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gis-restore-'));
    try {
      const result = await runRestore(
        testRestoreOptions(url, { confirm: name, terminateConnections: false }),
        testDrillDeps(store.storage, tools, dir),
      );
      expect(result.checks.filter((c) => c.status === 'failed')).toEqual([]);
      expect(result.status).toBe('passed');
      // A new session, as the application opens one.
      const client = await connect(parseConnectionString(url));
      try {
        const sp = await client.query<{ search_path: string }>('SHOW search_path');
        expect(sp.rows[0].search_path).toBe('"$user", public, extensions, topology');
        const similar = await client.query("SELECT * FROM similar_parcels('parcel 12')");
        expect(similar.rowCount).toBeGreaterThan(0);
        await client.query("SELECT topology.CreateTopology('harbour', 4326)");
      } finally {
        await client.end();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await withClient(sharedPostgresUrl(), (c) =>
        c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
      );
    }
  }, 900_000);
});
