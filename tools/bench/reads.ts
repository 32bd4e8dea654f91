/**
 * 2. Reads on a node that does not hold the lease (its read-only connection), against raw
 * better-sqlite3 on a file in the same directory with the same pragmas, point lookups by primary
 * key over 1,000 rows:
 *   get     db.prepare(sql).get(id)                       vs raw stmt.get(id)
 *   read    await db.read(c => stmt.get(id))  ('local')    vs raw stmt.get(id), and (no target)
 *           vs raw transaction(() => stmt.get(id)).deferred(), the same work in one read transaction;
 *           and raw transaction ÷ raw get(), the ceiling a read transaction leaves (no target)
 *   linearizable: per run, the median latency of db.read(fn, {consistency: 'linearizable'})
 *           minus that of a local db.read, and the same run's median etcd range round trip,
 *           so the added latency is also given in round trips (one is the floor: the commit
 *           record must be read from etcd).
 */
import type Database from 'better-sqlite3';
import * as path from 'path';
import { Keys } from '../../src/coordinator/etcd/keys';
import { BenchContext, createDatabase, dbFile, openHa, openRaw, paired, PAYLOAD, SELECT, timedAsync, timedSync } from './env';
import { benchClient, rangeRtt } from './etcd-rtt';
import { Figure, runsFigure } from './report';
import { median, pairDiffs, pairRatios } from './stats';

const ROWS = 1000;

export async function benchReads(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const rawFile = dbFile(ctx, 'reads-raw');
  const haFile = dbFile(ctx, 'reads-ha');
  createDatabase(rawFile, ROWS);
  createDatabase(haFile, ROWS);
  const prefix = `${ctx.prefix}/reads`;
  const raw = openRaw(rawFile);
  const ha = await openHa(ctx, haFile, prefix, 'bench-reader');
  const client = benchClient(ctx);
  const figures: Figure[] = [];
  try {
    // One fenced write publishes a commit record (txid 1), so linearizable reads have one to
    // check; then the lease goes and this node reads like any non-holder.
    await ha.write((c) => void c.prepare('UPDATE bench SET v = ? WHERE id = 1').run(PAYLOAD));
    await ha.release();
    const commitKey = new Keys(prefix, path.basename(haFile)).commit;

    const rawSel = raw.prepare(SELECT);
    const haSel = ha.prepare(SELECT);
    const cache = new WeakMap<Database.Database, Database.Statement>();
    const selOn = (c: Database.Database) => {
      let st = cache.get(c);
      if (!st) cache.set(c, (st = c.prepare(SELECT)));
      return st;
    };
    let id = 0;
    const nextId = () => (id = (id * 7919 + 13) % ROWS) + 1;
    const rawRun = () => timedSync(s.readSliceMs, () => void rawSel.get(nextId()));
    const variants = {
      get: () => timedSync(s.readSliceMs, () => void haSel.get(nextId())),
      read: () => timedAsync(s.readSliceMs, async () => {
        await ha.read((c) => selOn(c).get(nextId()));
        return 1;
      }),
    };
    const labels = { get: 'local reads, db.prepare().get()', read: "local reads, await db.read(fn) ('local')" };
    // What a raw better-sqlite3 user writes for "fn in one read transaction": the same work
    // db.read does, so this ratio is sqlite-ha's own overhead (the async call, its bookkeeping).
    const rawTx = raw.transaction(() => rawSel.get(nextId()));
    const rawTxRun = () => timedSync(s.readSliceMs, () => void rawTx.deferred());
    for (const v of ['get', 'read'] as const) {
      const { ratios, rawRates, haRates, rawCpuPerOp, haCpuPerOp } = await paired(s.readRuns, s.readPairs, rawRun, variants[v]);
      ctx.log(`  ${labels[v]}: ratio ${median(ratios).toFixed(3)} (raw ${median(rawRates).toFixed(0)}/s, sqlite-ha ${median(haRates).toFixed(0)}/s)`);
      figures.push(
        runsFigure('reads', `reads.${v}.ratio`, `${labels[v]}: sqlite-ha ÷ raw`, 'x', ratios, {
          target: { op: '>=', value: 0.95 },
        }),
        runsFigure('reads', `reads.${v}.raw`, '  raw better-sqlite3 stmt.get()', 'reads/s', rawRates),
        runsFigure('reads', `reads.${v}.ha`, '  sqlite-ha', 'reads/s', haRates),
        // CPU time moves less than wall time on a loaded machine (another process's turn is not ours).
        runsFigure('reads', `reads.${v}.cpu_ratio`, '  by CPU per read: raw µs ÷ sqlite-ha µs', 'x', pairRatios(rawCpuPerOp, haCpuPerOp), {
          note: `raw ${median(rawCpuPerOp).toFixed(2)} µs, sqlite-ha ${median(haCpuPerOp).toFixed(2)} µs of this process's CPU per read`,
        }),
      );
    }

    {
      const { ratios, rawRates, rawCpuPerOp, haCpuPerOp } = await paired(s.readRuns, s.readPairs, rawTxRun, variants.read);
      ctx.log(`  db.read vs raw transaction(fn).deferred(): ratio ${median(ratios).toFixed(3)}`);
      figures.push(
        runsFigure('reads', 'reads.read.vs_raw_txn', '  db.read ÷ raw transaction(fn).deferred() (same work)', 'x', ratios, {
          note: `raw transaction(fn).deferred(): ${Math.round(median(rawRates))} reads/s; by CPU per read ` +
            `${median(pairRatios(rawCpuPerOp, haCpuPerOp)).toFixed(2)}; no target, it splits the gap above`,
        }),
      );
    }

    {
      // The ceiling for any read in one read transaction: raw better-sqlite3's own BEGIN/get/COMMIT.
      const { ratios, rawCpuPerOp, haCpuPerOp } = await paired(s.readRuns, s.readPairs, rawRun, rawTxRun);
      ctx.log(`  raw transaction(fn).deferred() vs raw get(): ratio ${median(ratios).toFixed(3)}`);
      figures.push(
        runsFigure('reads', 'reads.read.ceiling', '  raw transaction(fn).deferred() ÷ raw get(): the read transaction\'s own cost', 'x', ratios, {
          note: `by CPU per read ${median(pairRatios(rawCpuPerOp, haCpuPerOp)).toFixed(2)}; ` +
            'no target: the most db.read ÷ raw get() can reach while each read is one read transaction',
        }),
      );
    }

    // Linearizable reads, each run: local latency, linearizable latency, etcd range round trip.
    const latency = async (consistency: 'local' | 'linearizable'): Promise<number> => {
      const xs: number[] = [];
      for (let i = 0; i < s.linearizableReads; i++) {
        const t = performance.now();
        await ha.read((c) => selOn(c).get(nextId()), { consistency });
        xs.push(performance.now() - t);
      }
      return median(xs);
    };
    await latency('linearizable'); // warm
    const local: number[] = [];
    const lin: number[] = [];
    const rtt: number[] = [];
    for (let t = 0; t < s.readRuns; t++) {
      local.push(await latency('local'));
      lin.push(await latency('linearizable'));
      rtt.push(await rangeRtt(client, commitKey, s.linearizableReads));
    }
    const added = pairDiffs(lin, local);
    const inRtt = pairRatios(added, rtt);
    ctx.log(`  linearizable read: +${median(added).toFixed(3)} ms = ${median(inRtt).toFixed(2)} etcd round trips`);
    figures.push(
      runsFigure('reads', 'reads.linearizable.latency', 'linearizable db.read latency (median per run)', 'ms', lin),
      runsFigure('reads', 'reads.linearizable.added', '  added over a local db.read', 'ms', added),
      runsFigure('reads', 'reads.linearizable.added_rtt', '  added, in etcd range round trips', 'RTT', inRtt, {
        note: `floor is 1 RTT (the commit record is read from etcd); this run's range RTT: ${median(rtt).toFixed(3)} ms`,
      }),
    );
  } finally {
    client.close();
    raw.close();
    await ha.close();
  }
  return figures;
}
