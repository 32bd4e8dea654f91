/**
 * The etcd lock's own cost, in this process: EtcdCoordinator.acquire() on a FREE lock, counted in
 * etcd round trips (calls that settled before acquire() resolved: the ones it waited for; the
 * queue watch and the bookkeeping write it starts without waiting are left out, and so are calls
 * still in flight from the previous tenure) and timed. The
 * first tenure grants a session; later tenures reuse it (the steady state of a sticky writer).
 */
import { EtcdCoordinator } from '../../src/coordinator/etcd/coordinator';
import { DEFAULTS } from '../../src/options';
import { BenchContext, sleep } from './env';
import { EtcdCallCounter, benchClient, putRtt } from './etcd-rtt';
import { Figure, figure } from './report';
import { median, minMax } from './stats';

export async function benchLock(ctx: BenchContext): Promise<Figure[]> {
  const trials = Math.max(20, ctx.settings.gracefulTrials * 2);
  const coordinator = new EtcdCoordinator({
    options: { kind: 'etcd', endpoints: ctx.endpoints, prefix: `${ctx.prefix}/lock`, tls: null, auth: null },
    name: 'free.db', nodeId: 'bench-lock', leaseTtlMs: DEFAULTS.leaseTtlMs, safetyMarginMs: DEFAULTS.safetyMarginMs,
    rpcTimeoutMs: DEFAULTS.rpcTimeoutMs, info: { path: 'free.db', locks: 'trusted', journalMode: 'TRUNCATE' },
  });
  const client = benchClient(ctx);
  const counter = new EtcdCallCounter();
  const reusedCalls: number[] = [];
  const reusedMs: number[] = [];
  let firstCalls = NaN;
  let rtt = NaN;
  try {
    rtt = await putRtt(client, `${ctx.prefix}/lock-rtt`, 20);
    for (let t = 0; t <= trials; t++) {
      await sleep(10);
      counter.mark();
      const t0 = performance.now();
      const lease = await coordinator.acquire({ timeoutMs: DEFAULTS.acquireTimeoutMs });
      const ms = performance.now() - t0;
      const calls = counter.settledSinceMark;
      await lease.release();
      if (t === 0) firstCalls = calls;
      else {
        reusedCalls.push(calls);
        reusedMs.push(ms);
      }
    }
  } finally {
    counter.restore();
    await coordinator.close();
    client.close();
  }
  ctx.log(`  free lock: ${median(reusedCalls)} round trips, ${median(reusedMs).toFixed(2)} ms (one-put txn ${rtt.toFixed(2)} ms)`);
  return [
    figure({
      bench: 'lock', id: 'lock.free.round_trips', label: 'free-lock acquire, etcd round trips (session kept)', unit: 'RT',
      value: median(reusedCalls), spread: minMax(reusedCalls), n: reusedCalls.length, samples: reusedCalls,
      target: { op: '<=', value: 1 },
      note: 'spread here: min–max of the trials',
    }),
    figure({
      bench: 'lock', id: 'lock.free.first.round_trips', label: '  first tenure (session granted too)', unit: 'RT',
      value: firstCalls, spread: null, n: 1, samples: [firstCalls],
    }),
    figure({
      bench: 'lock', id: 'lock.free.ms', label: '  free-lock acquire latency (session kept)', unit: 'ms',
      value: median(reusedMs), spread: minMax(reusedMs), n: reusedMs.length, samples: reusedMs,
      note: `etcd one-put txn round trip in the same run: ${rtt.toFixed(2)} ms`,
    }),
  ];
}
