/**
 * 3. Three writer processes contending for one database, each a sequential `await db.write()`
 * loop of 1-row transactions with default options (sticky lease, handed over as soon as another
 * node waits). Each run measures, back to back:
 *   single      one of the processes writing alone (the others idle)
 *   contended   all three writing at once
 * and the share is contended ÷ single for that run. Hand-over latency comes from the product's
 * own history records (<prefix>/<db>/history/<fence>, HandoverRecord.handoverMs: the releasing
 * node's release marker → the next node holding the lock), watched live because the history is
 * pruned to the last 100. The commit gap (last commit of one holder → first commit of the next,
 * from the workers' own timestamps) is the end-to-end cost of a hand-over.
 */
import type { Watcher } from 'etcd3';
import * as path from 'path';
import { HandoverRecord, Keys, parseJson } from '../../src/coordinator/etcd/keys';
import { BenchContext, createDatabase, dbFile, now, sleep } from './env';
import { benchClient } from './etcd-rtt';
import { Figure, figure, runsFigure } from './report';
import { minMax, pairRatios, quantile } from './stats';
import type { Worker } from './workers';

interface LoopResult {
  commits: number[];
  errors: number;
  firstError: string | null;
}

/** Commits inside [startAt, startAt + durationMs] per second. */
function rateIn(results: LoopResult[], startAt: number, durationMs: number): number {
  const end = startAt + durationMs;
  const n = results.reduce((a, r) => a + r.commits.filter((t) => t >= startAt && t <= end).length, 0);
  return n / (durationMs / 1000);
}

/**
 * Release marker → the next holder's first commit, per clean hand-over: the marker's time is the
 * record's acquisition time minus its handoverMs; the first commit is the new holder's first
 * commit timestamp at or after its acquisition.
 */
function releaseToFirstCommit(records: HandoverRecord[], results: LoopResult[]): number[] {
  const out: number[] = [];
  for (const r of records) {
    if (r.handoverMs === null) continue;
    const w = Number(/^writer(\d+)$/.exec(r.node)?.[1] ?? NaN) - 1;
    const first = results[w]?.commits.find((at) => at >= r.time - 1);
    if (first !== undefined) out.push(first - (r.time - r.handoverMs));
  }
  return out;
}

/** Gaps between the last commit of one holder and the first commit of the next. */
function commitGaps(results: LoopResult[]): number[] {
  const all = results.flatMap((r, w) => r.commits.map((at) => ({ at, w }))).sort((a, b) => a.at - b.at);
  const gaps: number[] = [];
  for (let i = 1; i < all.length; i++) if (all[i].w !== all[i - 1].w) gaps.push(all[i].at - all[i - 1].at);
  return gaps;
}

export async function benchContention(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const file = dbFile(ctx, 'contention');
  createDatabase(file);
  const prefix = `${ctx.prefix}/contention`;
  const keys = new Keys(prefix, path.basename(file));
  const client = benchClient(ctx);
  const records = new Map<number, HandoverRecord>();
  let watcher: Watcher | null = null;
  const workers: Worker[] = await ctx.pool.take(3);
  try {
    watcher = await client.watch().prefix(keys.historyPrefix).create();
    watcher.on('put', (kv) => {
      const r = parseJson<HandoverRecord>(kv.value);
      if (r) records.set(r.fence, r);
    });
    await Promise.all(workers.map((w, i) => w.call('init', { db: file, endpoints: ctx.endpoints, prefix, nodeId: `writer${i + 1}` })));
    await workers[0].call('write', { rows: 1 }); // first holder raises the fence

    const singles: number[] = [];
    const aggregates: number[] = [];
    const handoverP50: number[] = [];
    const handoverP99: number[] = [];
    const allHandovers: number[] = [];
    const allGaps: number[] = [];
    const toCommit: number[] = [];
    const toCommitP50: number[] = [];
    const gapP50: number[] = [];
    const handoversPerSec: number[] = [];
    let unclean = 0;
    let errors = 0;
    let firstError: string | null = null;
    for (let t = 0; t < s.contentionTrials; t++) {
      const w = workers[t % workers.length];
      // Make the single writer the holder first, so its run does not start with a hand-over.
      await w.call('write', { rows: 1 });
      let startAt = now() + 50;
      const single: LoopResult = await w.call('writeLoop', { startAt, durationMs: s.contentionSingleMs, rows: 1 });
      singles.push(rateIn([single], startAt, s.contentionSingleMs));

      startAt = now() + 100;
      const results: LoopResult[] = await Promise.all(
        workers.map((x) => x.call('writeLoop', { startAt, durationMs: s.contentionMs, rows: 1 })),
      );
      aggregates.push(rateIn(results, startAt, s.contentionMs));
      for (const r of [single, ...results]) {
        errors += r.errors;
        firstError ??= r.firstError;
      }
      const gaps = commitGaps(results);
      allGaps.push(...gaps);
      gapP50.push(quantile(gaps, 0.5));
      await sleep(300); // the last history records are written just after acquisition
      const end = startAt + s.contentionMs;
      const inRun = [...records.values()].filter((r) => r.time >= startAt && r.time <= end);
      const hs = inRun.filter((r) => r.handoverMs !== null).map((r) => r.handoverMs as number);
      unclean += inRun.length - hs.length;
      const tc = releaseToFirstCommit(inRun, results);
      toCommit.push(...tc);
      toCommitP50.push(quantile(tc, 0.5));
      handoverP50.push(quantile(hs, 0.5));
      handoverP99.push(quantile(hs, 0.99));
      handoversPerSec.push(inRun.length / (s.contentionMs / 1000));
      allHandovers.push(...hs);
      ctx.log(
        `  run ${t + 1}: single ${singles[t].toFixed(0)}/s, 3 writers ${aggregates[t].toFixed(0)}/s, ` +
          `${inRun.length} hand-overs (p50 ${handoverP50[t].toFixed(1)} ms), commit gap p50 ${quantile(gaps, 0.5).toFixed(1)} ms`,
      );
    }
    const shares = pairRatios(aggregates, singles).map((x) => x * 100);
    const p50 = quantile(allHandovers, 0.5);
    const p99 = quantile(allHandovers, 0.99);
    return [
      runsFigure('contention', 'contention.share', 'aggregate of 3 writers ÷ single writer', '%', shares, {
        target: { op: '>=', value: 50 },
      }),
      runsFigure('contention', 'contention.aggregate', '  3 writers, aggregate', 'txn/s', aggregates),
      runsFigure('contention', 'contention.single', '  1 writer process alone', 'txn/s', singles),
      runsFigure('contention', 'contention.handovers_per_s', '  hand-overs per second (3 writers)', '/s', handoversPerSec),
      figure({
        bench: 'contention', id: 'contention.handover.p50', label: 'hand-over p50 (release → next holder, history records)', unit: 'ms',
        value: p50, spread: minMax(handoverP50), n: allHandovers.length, samples: allHandovers,
        target: { op: '<=', value: 5 },
        note: `spread: min–max of each run's p50; ${unclean} acquisitions without a clean release marker left out`,
      }),
      figure({
        bench: 'contention', id: 'contention.handover_commit.p50',
        label: 'hand-over p50 (release marker → next holder\'s first commit)', unit: 'ms',
        value: quantile(toCommit, 0.5), spread: minMax(toCommitP50), n: toCommit.length, samples: toCommit,
        target: { op: '<=', value: 5 },
        note: `p99 ${quantile(toCommit, 0.99).toFixed(1)} ms; marker time = acquisition − handoverMs (history record), first commit from the worker's own timestamps`,
      }),
      figure({
        bench: 'contention', id: 'contention.handover.p99', label: 'hand-over p99', unit: 'ms',
        value: p99, spread: minMax(handoverP99), n: allHandovers.length, samples: [],
      }),
      figure({
        bench: 'contention', id: 'contention.commit_gap.p50', label: 'commit gap p50 (last commit of one → first of next)', unit: 'ms',
        value: quantile(allGaps, 0.5), spread: minMax(gapP50), n: allGaps.length, samples: [],
        note: `p99 ${quantile(allGaps, 0.99).toFixed(1)} ms; ${errors} failed writes${firstError ? ` (first: ${firstError})` : ''}`,
      }),
    ];
  } finally {
    await watcher?.cancel().catch(() => undefined);
    client.close();
    await ctx.pool.give(workers);
  }
}
