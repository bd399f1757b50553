import type pg from 'pg';
import type { Manifest } from '../catalog/manifest.js';
import type { Logger } from '../core/logger.js';
import { quoteIdent, quoteLiteral } from '../postgres/connection.js';
import { selectionMatcher } from '../postgres/inventory.js';

export interface EmptiedTarget {
  /** Schemas dropped (public is re-created empty with its owner, grants and comment). */
  schemas: string[];
  largeObjects: number;
  publications: number;
  eventTriggers: number;
}

/**
 * Empties what the backup covers in the target, in one transaction, so pg_restore rebuilds it
 * exactly: every schema the backup's selection includes is dropped with CASCADE (public is
 * re-created with its owner, grants and comment); for a whole-database backup also the large
 * objects, publications and event triggers. Schemas outside the selection are not touched.
 * A failure rolls everything back: the target is then unchanged.
 *
 * This is what `pg_restore --clean --if-exists` means to do, without its failures: it cannot
 * drop a partition's inherited primary key ("cannot drop inherited constraint"), and it fails
 * on objects created after the backup that depend on restored ones.
 */
export async function emptyTarget(
  client: pg.Client,
  manifest: Manifest,
  logger: Logger,
): Promise<EmptiedTarget> {
  const selection = {
    schemas: manifest.options?.schemas ?? [],
    excludeSchemas: manifest.options?.excludeSchemas ?? [],
    excludeTableData: [],
  };
  const wholeDatabase = selection.schemas.length === 0;
  await client.query('BEGIN');
  try {
    await client.query("SET LOCAL lock_timeout = '60s'");
    const found = await client.query<{ name: string }>(
      `SELECT nspname AS name FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
        ORDER BY 1`,
    );
    const matcher = selectionMatcher(selection);
    const schemas = found.rows.map((r) => r.name).filter((s) => matcher.schemaIncluded(s));
    for (const schema of schemas) {
      if (schema === 'public') continue;
      await client.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
    }
    if (schemas.includes('public')) await recreatePublic(client);

    let largeObjects = 0;
    let publications = 0;
    let eventTriggers = 0;
    if (wholeDatabase) {
      const lo = await client.query(
        `SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE pg_has_role(lomowner, 'MEMBER')`,
      );
      largeObjects = lo.rowCount ?? 0;
      const pubs = await client.query<{ name: string }>(
        `SELECT pubname AS name FROM pg_publication WHERE pg_has_role(pubowner, 'MEMBER')`,
      );
      for (const p of pubs.rows) await client.query(`DROP PUBLICATION ${quoteIdent(p.name)}`);
      publications = pubs.rows.length;
      const triggers = await client.query<{ name: string }>(
        `SELECT evtname AS name FROM pg_event_trigger WHERE pg_has_role(evtowner, 'MEMBER')`,
      );
      for (const t of triggers.rows) {
        await client.query(`DROP EVENT TRIGGER ${quoteIdent(t.name)}`);
      }
      eventTriggers = triggers.rows.length;
    }
    await client.query('COMMIT');
    logger.info(
      `Emptied the target: dropped schema(s) ${schemas.join(', ') || '(none)'}` +
        (schemas.includes('public') ? ' (public re-created empty)' : '') +
        (largeObjects ? `, ${largeObjects} large object(s)` : '') +
        (publications ? `, ${publications} publication(s)` : '') +
        (eventTriggers ? `, ${eventTriggers} event trigger(s)` : ''),
    );
    return { schemas, largeObjects, publications, eventTriggers };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Drops public with everything in it and creates it again as it was: owner, grants, comment. */
async function recreatePublic(client: pg.Client): Promise<void> {
  const r = await client.query<{ owner: string; comment: string | null }>(
    `SELECT pg_get_userbyid(nspowner) AS owner, obj_description(oid, 'pg_namespace') AS comment
       FROM pg_namespace WHERE nspname = 'public'`,
  );
  const grants = await client.query<{
    grantee: string | null;
    privilege: string;
    grantable: boolean;
  }>(
    `SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
            a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_namespace n, aclexplode(n.nspacl) a
      WHERE n.nspname = 'public' AND a.grantee <> n.nspowner`,
  );
  const { owner, comment } = r.rows[0];
  await client.query('DROP SCHEMA public CASCADE');
  await client.query(`CREATE SCHEMA public AUTHORIZATION ${quoteIdent(owner)}`);
  // A fresh schema grants nothing to others; the old grants come back one by one.
  for (const g of grants.rows) {
    await client.query(
      `GRANT ${g.privilege} ON SCHEMA public TO ${g.grantee === null ? 'PUBLIC' : quoteIdent(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`,
    );
  }
  if (comment !== null) await client.query(`COMMENT ON SCHEMA public IS ${quoteLiteral(comment)}`);
}
