import type pg from 'pg';

/** Client sessions connected to `database` other than this one. */
export async function otherSessions(client: pg.Client, database: string): Promise<number> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    [database],
  );
  return Number(r.rows[0].n);
}

/** Terminates the other client sessions of `database`; returns how many are left. */
export async function terminateSessions(
  client: pg.Client,
  database: string,
): Promise<{ terminated: number; remaining: number }> {
  const r = await client.query<{ ok: boolean | null }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    [database],
  );
  const terminated = r.rows.filter((row) => row.ok).length;
  // A terminated backend leaves pg_stat_activity a moment after the signal.
  let remaining = await otherSessions(client, database);
  for (let i = 0; i < 50 && remaining > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    remaining = await otherSessions(client, database);
  }
  return { terminated, remaining };
}
