import {
  listedIds,
  parseVerboseListing,
  planParallelRuns,
  type ListedEntry,
  type RestoreRun,
} from '../../src/restore/parallel-runs.js';

// What runs beside the data in a parallel restore, and what waits until all of it is in. The
// listing is `pg_restore --list --verbose` of a PostgreSQL 15 dump of a database with a NOT VALID
// domain constraint, a partitioned table, a foreign key, a trigger, a commented index and a
// materialized view.

const VERBOSE = `;
; Archive created at 2026-12-02 18:05:11 UTC
; Selected TOC Entries:
;
3378; 0 0 ENCODING - ENCODING 
3381; 1262 16860 DATABASE - lt postgres
842; 1247 16862 DOMAIN public posint postgres
219; 1255 16888 FUNCTION public f() postgres
214; 1259 16863 TABLE public t postgres
;	depends on: 842
218; 1259 16890 MATERIALIZED VIEW public mv postgres
;	depends on: 214
216; 1259 16880 TABLE public p postgres
217; 1259 16883 TABLE public p1 postgres
;	depends on: 216
215; 1259 16869 TABLE public u postgres
3217; 0 0 TABLE ATTACH public p1 postgres
;	depends on: 217 216
3374; 0 16883 TABLE DATA public p1 postgres
;	depends on: 217
3372; 0 16863 TABLE DATA public t postgres
;	depends on: 214
3373; 0 16869 TABLE DATA public u postgres
;	depends on: 215
843; 2606 16868 CHECK CONSTRAINT public posint posint_check postgres
;	depends on: 842
3219; 2606 16867 CONSTRAINT public t t_pkey postgres
;	depends on: 214
3221; 2606 16873 CONSTRAINT public u u_pkey postgres
;	depends on: 215
3225; 1259 16894 INDEX public mv_idx postgres
;	depends on: 218
3223; 1259 16886 INDEX public p_at postgres
;	depends on: 216
3224; 1259 16887 INDEX public p1_at_idx postgres
;	depends on: 217 3223 217
3222; 1259 16879 INDEX public u_t_idx postgres
;	depends on: 215
3382; 0 0 COMMENT public INDEX u_t_idx postgres
;	depends on: 3222
3226; 0 0 INDEX ATTACH public p1_at_idx postgres
;	depends on: 3224 3223 217 216
3228; 2620 16889 TRIGGER public u tr postgres
;	depends on: 219 215
3227; 2606 16874 FK CONSTRAINT public u u_t_id_fkey postgres
;	depends on: 3219 214 215
3375; 0 16890 MATERIALIZED VIEW DATA public mv postgres
;	depends on: 218 3377
`;
const PRE_DATA = [842, 219, 214, 218, 216, 217, 215, 3217];
const DATA = [3374, 3372, 3373];
const POST_DATA = [843, 3219, 3221, 3225, 3223, 3224, 3222, 3382, 3226, 3228, 3227, 3375];

/** The dump ids a run restores (its list's lines that are not commented out). */
function restored(run: RestoreRun | undefined): number[] {
  return [...listedIds(run?.list ?? '')].sort((a, b) => a - b);
}

function plan(isSerial: (e: ListedEntry) => boolean = () => false): Map<string, RestoreRun> {
  const runs = planParallelRuns({
    entries: parseVerboseListing(VERBOSE),
    preData: new Set(PRE_DATA),
    data: new Set(DATA),
    postData: new Set(POST_DATA),
    isSerial,
  });
  return new Map(runs.map((r) => [r.name, r]));
}

const sorted = (ids: number[]): number[] => [...ids].sort((a, b) => a - b);

describe('parseVerboseListing', () => {
  it('reads each entry with its kind and dependencies', () => {
    const entries = parseVerboseListing(VERBOSE);
    expect(entries).toHaveLength(25);
    const byId = new Map(entries.map((e) => [e.id, e]));
    expect(byId.get(3374)).toMatchObject({ kind: 'TABLE DATA', dependsOn: [217] });
    expect(byId.get(3217)).toMatchObject({ kind: 'TABLE ATTACH', dependsOn: [217, 216] });
    expect(byId.get(843)).toMatchObject({ kind: 'CHECK CONSTRAINT', dependsOn: [842] });
    expect(byId.get(3226)).toMatchObject({ kind: 'INDEX ATTACH' });
    expect(byId.get(3227)).toMatchObject({ kind: 'FK CONSTRAINT', dependsOn: [3219, 214, 215] });
    expect(byId.get(3382)).toMatchObject({ kind: 'OTHER', dependsOn: [3222] });
    expect(byId.get(3378)?.line).toBe('3378; 0 0 ENCODING - ENCODING');
  });
});

describe('planParallelRuns', () => {
  it('creates the tables and loads them in one run, building keys and indexes as data arrives', () => {
    const runs = plan();
    expect([...runs.keys()]).toEqual(['main', 'after']);
    expect(runs.get('main')?.parallel).toBe(true);
    // The schema, the data, both primary keys, the foreign key between those tables, the plain
    // index, and the index of the materialized view (built on it empty, then refreshed last).
    expect(restored(runs.get('main'))).toEqual(
      sorted([...PRE_DATA, ...DATA, 3219, 3221, 3222, 3225, 3227]),
    );
  });

  it('keeps for the last run what could reject, change or miss rows loaded after it', () => {
    const after = plan().get('after');
    expect(after?.parallel).toBe(true);
    // The NOT VALID domain constraint (its domain is not a table), the partitioned table's
    // index and everything built on it, the trigger, the comment and the view's data.
    expect(restored(after)).toEqual([843, 3223, 3224, 3226, 3228, 3375, 3382]);
  });

  it('loads the serial data in one session between the schema and the rest', () => {
    const runs = plan((e) => e.line.includes(' TABLE DATA public t '));
    expect([...runs.values()].map((r) => [r.name, r.parallel])).toEqual([
      ['schema', false],
      ['serial', false],
      ['main', true],
      ['after', true],
    ]);
    expect(restored(runs.get('schema'))).toEqual(sorted(PRE_DATA));
    expect(restored(runs.get('serial'))).toEqual([3372]);
    expect(restored(runs.get('main'))).toEqual([3219, 3221, 3222, 3225, 3227, 3373, 3374]);
  });

  it('restores every entry of the three sections exactly once', () => {
    for (const runs of [plan(), plan((e) => e.line.includes(' TABLE DATA public u '))]) {
      const all = [...runs.values()].flatMap((r) => restored(r));
      expect(sorted(all)).toEqual(sorted([...PRE_DATA, ...DATA, ...POST_DATA]));
    }
  });

  it('writes list files that keep every line, in the archive order', () => {
    const lines = plan().get('after')?.list.trimEnd().split('\n') ?? [];
    expect(lines).toHaveLength(25);
    expect(lines[0]).toBe(';3378; 0 0 ENCODING - ENCODING');
    expect(lines).toContain(';3227; 2606 16874 FK CONSTRAINT public u u_t_id_fkey postgres');
    expect(lines).toContain('843; 2606 16868 CHECK CONSTRAINT public posint posint_check postgres');
  });

  it('runs once when every post-data entry waits for its data', () => {
    const entries = parseVerboseListing(VERBOSE).filter((e) => [214, 3372, 3219].includes(e.id));
    const runs = planParallelRuns({
      entries,
      preData: new Set([214]),
      data: new Set([3372]),
      postData: new Set([3219]),
      isSerial: () => false,
    });
    expect(runs.map((r) => r.name)).toEqual(['main']);
    expect(restored(runs[0])).toEqual([214, 3219, 3372]);
  });
});
