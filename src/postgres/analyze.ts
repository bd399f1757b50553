import type pg from 'pg';

/**
 * What a bare ANALYZE of the database covers, one statement each: every table and materialized
 * view, and each partition tree through its root (which analyzes its partitions too). Partition
 * trees first, then the largest tables, so that the long ones start while the small ones fill
 * the other sessions.
 */
const ANALYZE_UNITS = `
  SELECT format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'm', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
   ORDER BY c.relkind = 'p' DESC, pg_relation_size(c.oid) DESC, 1`;

/**
 * ANALYZE of the whole database over `jobs` sessions: `client`, and up to `jobs - 1` more from
 * `openSession`; a session that cannot be opened (a connection limit) leaves the work to the
 * others, since statistics are no reason to fail a restore that is done. Written here because
 * `vacuumdb --analyze-only --jobs` leaves partitioned tables out before PostgreSQL 16. Tables
 * the user may not analyze are skipped with a warning, as a bare ANALYZE skips them.
 */
export async function analyzeDatabase(
  client: pg.Client,
  openSession: () => Promise<pg.Client>,
  jobs: number,
): Promise<void> {
  if (jobs <= 1) {
    await client.query('ANALYZE');
    return;
  }
  const units = (await client.query<{ name: string }>(ANALYZE_UNITS)).rows.map((r) => r.name);
  const opening = Array.from({ length: Math.min(jobs, units.length) - 1 }, () => openSession());
  const more = (await Promise.allSettled(opening)).flatMap((o) =>
    o.status === 'fulfilled' ? [o.value] : [],
  );
  try {
    const analyzeNext = async (session: pg.Client): Promise<void> => {
      try {
        for (let name = units.shift(); name !== undefined; name = units.shift()) {
          await session.query(`ANALYZE ${name}`);
        }
      } catch (error) {
        units.length = 0;
        throw error;
      }
    };
    const ran = await Promise.allSettled([client, ...more].map(analyzeNext));
    const failed = ran.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    await Promise.all(more.map((s) => s.end().catch(() => undefined)));
  }
}
