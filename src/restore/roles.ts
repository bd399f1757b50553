import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import { describeExit, startProcess } from '../core/process.js';

/** The roles an archive's DDL names: owners of objects, and grantees of privileges. */
export interface ArchiveRoles {
  owners: string[];
  grantees: string[];
}

/** Whether the restore can keep owners and grants, and why not when it cannot. */
export interface OwnershipPlan {
  keep: boolean;
  /** Roles the archive names that the target server lacks. */
  missing: string[];
  /** Owners the restoring user cannot hand objects to (not a member of them). */
  notMember: string[];
}

/** Splits `a, "B c", PUBLIC` into role names, unquoting; the PUBLIC pseudo-role is left out. */
export function parseRoleList(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === ' ' || ch === ',') {
      i++;
      continue;
    }
    if (ch === '"') {
      let name = '';
      i++;
      while (i < text.length) {
        if (text[i] === '"' && text[i + 1] === '"') {
          name += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else {
          name += text[i++];
        }
      }
      out.push(name);
      continue;
    }
    let word = '';
    while (i < text.length && text[i] !== ',' && text[i] !== ' ') word += text[i++];
    if (word !== 'PUBLIC' && word !== 'CURRENT_USER' && word !== 'SESSION_USER') out.push(word);
  }
  return out;
}

/** The roles one line of pg_restore's SQL output names, by role in the statement. */
export function rolesInLine(line: string): ArchiveRoles {
  const owners: string[] = [];
  const grantees: string[] = [];
  const owner = /^ALTER .* OWNER TO (.+);$/.exec(line);
  if (owner) owners.push(...parseRoleList(owner[1]));
  const session = /^SET SESSION AUTHORIZATION (.+);$/.exec(line);
  if (session) owners.push(...parseRoleList(session[1].replace(/^'(.*)'$/, '"$1"')));
  const forRole = /^ALTER DEFAULT PRIVILEGES FOR ROLE (\S+) /.exec(line);
  if (forRole) owners.push(...parseRoleList(forRole[1]));
  const grant = /(?:^| )GRANT .+;$/.test(line) ? line.lastIndexOf(' TO ') : -1;
  if (grant > 0) {
    const list = line
      .slice(grant + 4, -1)
      .replace(/ WITH GRANT OPTION$/, '')
      .replace(/ GRANTED BY .+$/, '');
    grantees.push(...parseRoleList(list));
  }
  const revoke = /(?:^| )REVOKE .+;$/.test(line) ? line.lastIndexOf(' FROM ') : -1;
  if (revoke > 0) {
    grantees.push(...parseRoleList(line.slice(revoke + 6, -1).replace(/ CASCADE$/, '')));
  }
  return { owners, grantees };
}

/**
 * Reads the archive's schema as SQL (`pg_restore --schema-only -f -`, streamed, nothing kept
 * but role names) and collects the roles it names.
 */
export async function archiveRoles(pgRestore: string, archivePath: string): Promise<ArchiveRoles> {
  const proc = startProcess(pgRestore, ['--schema-only', '--file=-', archivePath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const owners = new Set<string>();
  const grantees = new Set<string>();
  const lines = createInterface({ input: proc.child.stdout as Readable, crlfDelay: Infinity });
  for await (const line of lines) {
    const found = rolesInLine(line);
    for (const o of found.owners) owners.add(o);
    for (const g of found.grantees) grantees.add(g);
  }
  const exit = await proc.exited;
  if (exit.code !== 0) throw new Error(describeExit('pg_restore --schema-only', exit));
  return { owners: [...owners].sort(), grantees: [...grantees].sort() };
}

/**
 * Owners and grants can be restored as they were when every role the archive names exists on
 * the target and the restoring user may hand objects to each owner; otherwise the restore
 * runs with --no-owner --no-acl, as a scratch restore does.
 */
export async function planOwnership(
  client: pg.Client,
  roles: ArchiveRoles,
): Promise<OwnershipPlan> {
  const names = [...new Set([...roles.owners, ...roles.grantees])];
  if (names.length === 0) return { keep: true, missing: [], notMember: [] };
  const r = await client.query<{ name: string; present: boolean; member: boolean }>(
    `SELECT n.name, r.rolname IS NOT NULL AS present,
            COALESCE(pg_has_role(r.oid, 'MEMBER'), false) AS member
       FROM unnest($1::text[]) AS n(name) LEFT JOIN pg_roles r ON r.rolname = n.name`,
    [names],
  );
  const missing = r.rows.filter((x) => !x.present).map((x) => x.name);
  const notMember = r.rows
    .filter((x) => x.present && !x.member && roles.owners.includes(x.name))
    .map((x) => x.name);
  return { keep: missing.length === 0 && notMember.length === 0, missing, notMember };
}
