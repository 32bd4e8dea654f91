/**
 * 1. A single writer holding the lease (`await db.acquire()` first), against raw better-sqlite3
 * on a file in the same directory with the same pragmas. Three ways to write, each with 1-row and
 * 100-row transactions:
 *   seq        sequential `await db.write(fn)`: each call is acknowledged after its commit record
 *              is published to etcd
 *   sync       the better-sqlite3 surface under the held lease: `stmt.run()` (1 row, autocommit)
 *              and `db.transaction(fn).immediate()` (100 rows); each commit is fenced, its record
 *              published in the background
 *   concurrent `Promise.all` of a batch of db.write calls, so commit records coalesce
 * Raw runs the same transactions synchronously (`stmt.run()` / `transaction(fn).immediate()`).
 * Each run is a few back-to-back pairs of raw and sqlite-ha slices, in alternating order (see
 * paired() in env.ts); the ratio is taken per run. etcd's revision counter, read before and after
 * each sqlite-ha slice, gives the etcd writes (commit records) each transaction cost.
 */
import type Database from 'better-sqlite3';
import { BenchContext, createDatabase, dbFile, INSERT, openHa, openRaw, paired, PAYLOAD, Timed, timedAsync, timedSync } from './env';
import { benchClient } from './etcd-rtt';
import { Figure, figure } from './report';
import { median, overRuns } from './stats';

type Surface = 'seq' | 'sync' | 'concurrent';

const SURFACE_LABEL: Record<Surface, string> = {
  seq: 'sequential await db.write()',
  sync: 'sync surface (stmt.run / db.transaction)',
  concurrent: 'concurrent Promise.all(db.write ×K)',
};

export async function benchWrites(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const rawFile = dbFile(ctx, 'writes-raw');
  const haFile = dbFile(ctx, 'writes-ha');
  createDatabase(rawFile);
  createDatabase(haFile);
  const raw = openRaw(rawFile);
  const ha = await openHa(ctx, haFile, `${ctx.prefix}/writes`, 'bench-writer');
  const figures: Figure[] = [];
  const client = benchClient(ctx);
  const revision = async () => Number((await client.kv.range({ key: Buffer.from(`${ctx.prefix}/writes`) })).header.revision);
  try {
    await ha.acquire();
    const rawIns = raw.prepare(INSERT);
    const haIns = ha.prepare(INSERT);
    // Statements prepared once per connection, as a careful user of db.write would.
    const cache = new WeakMap<Database.Database, Database.Statement>();
    const insertOn = (c: Database.Database) => {
      let st = cache.get(c);
      if (!st) cache.set(c, (st = c.prepare(INSERT)));
      return st;
    };
    await ha.write((c) => void insertOn(c).run(0, PAYLOAD)); // warm: fence raised, statement prepared

    for (const rows of [1, 100]) {
      const rawTx = raw.transaction(() => {
        for (let i = 0; i < rows; i++) rawIns.run(i, PAYLOAD);
      });
      const haFn = (c: Database.Database) => {
        const st = insertOn(c);
        for (let i = 0; i < rows; i++) st.run(i, PAYLOAD);
      };
      const haTx = ha.transaction(() => {
        for (let i = 0; i < rows; i++) haIns.run(i, PAYLOAD);
      });
      const rawRun = (): Promise<Timed> =>
        timedSync(s.writeSliceMs, rows === 1 ? () => void rawIns.run(0, PAYLOAD) : () => void rawTx.immediate());
      const haRun: Record<Surface, () => Promise<Timed>> = {
        seq: () => timedAsync(s.writeSliceMs, async () => {
          await ha.write(haFn);
          return 1;
        }),
        sync: () => timedSync(s.writeSliceMs, rows === 1 ? () => void haIns.run(0, PAYLOAD) : () => void haTx.immediate()),
        concurrent: () => timedAsync(s.writeSliceMs, async () => {
          await Promise.all(Array.from({ length: s.concurrentBatch }, () => ha.write(haFn)));
          return s.concurrentBatch;
        }),
      };
      for (const surface of ['seq', 'sync', 'concurrent'] as Surface[]) {
        // etcd's revision rises by one per etcd write: the commit records this surface costs.
        let etcdWrites = 0;
        let haTxns = 0;
        const counted = async (): Promise<Timed> => {
          const before = await revision();
          const t = await haRun[surface]();
          etcdWrites += (await revision()) - before;
          haTxns += t.ops;
          return t;
        };
        const { ratios, rawRates, haRates, rawCpuPerOp, haCpuPerOp } = await paired(s.writeRuns, s.writePairs, rawRun, counted);
        const tag = `writes.${surface}.${rows}row`;
        const what = `${SURFACE_LABEL[surface]}, ${rows}-row txn`;
        ctx.log(
          `  ${what}: ratio ${median(ratios).toFixed(3)} (raw ${median(rawRates).toFixed(0)}/s, ` +
            `sqlite-ha ${median(haRates).toFixed(0)}/s, ${(etcdWrites / haTxns).toFixed(2)} etcd writes/txn)`,
        );
        figures.push(
          figure({
            bench: 'writes', id: `${tag}.ratio`, label: `${what}: sqlite-ha ÷ raw`, unit: 'x',
            ...overRuns(ratios),
            target: { op: '>=', value: 0.9 },
            note: surface === 'concurrent' ? `K = ${s.concurrentBatch} writes per Promise.all, each its own transaction` : undefined,
          }),
          figure({
            bench: 'writes', id: `${tag}.raw`, label: `  raw better-sqlite3`, unit: 'txn/s',
            ...overRuns(rawRates),
          }),
          figure({
            bench: 'writes', id: `${tag}.ha`, label: `  sqlite-ha`, unit: 'txn/s',
            ...overRuns(haRates),
          }),
          figure({
            bench: 'writes', id: `${tag}.etcd_writes_per_txn`, label: '  etcd writes (commit records) per txn', unit: '',
            value: etcdWrites / haTxns, spread: null, n: haTxns, samples: [],
          }),
          figure({
            bench: 'writes', id: `${tag}.cpu_us_per_txn`, label: '  CPU of this process per txn, sqlite-ha', unit: 'µs',
            ...overRuns(haCpuPerOp),
            note: `raw: ${median(rawCpuPerOp).toFixed(0)} µs per txn (user + system, incl. the etcd client)`,
          }),
        );
      }
    }
  } finally {
    client.close();
    raw.close();
    await ha.close();
  }
  return figures;
}
