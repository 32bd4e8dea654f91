/**
 * 5. Graceful hand-over on close(). Two processes take turns: the holder has acquired (pinned)
 * and committed; the standby calls db.write() and queues; then the holder calls close(). The
 * hand-over time is the standby's write resolving (first commit, published) − the moment close()
 * was called. The standby then pins the lease and the old holder reopens and becomes the standby.
 */
import * as path from 'path';
import { Keys, prefixEnd } from '../../src/coordinator/etcd/keys';
import { BenchContext, createDatabase, dbFile, sleep, waitFor } from './env';
import { benchClient } from './etcd-rtt';
import { Figure, figure } from './report';
import { iqr, quantile } from './stats';

export async function benchGraceful(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const file = dbFile(ctx, 'graceful');
  createDatabase(file);
  const prefix = `${ctx.prefix}/graceful`;
  const keys = new Keys(prefix, path.basename(file));
  const client = benchClient(ctx);
  const nodes = await ctx.pool.take(2);
  const toCommit: number[] = [];
  const toAcquired: number[] = [];
  const closeDurations: number[] = [];
  try {
    const init = (i: number) => nodes[i].call('init', { db: file, endpoints: ctx.endpoints, prefix, nodeId: `graceful${i + 1}` });
    await Promise.all([init(0), init(1)]);
    await nodes[0].call('acquire');
    await nodes[0].call('write', { rows: 1 });
    const lockKeys = async () =>
      Number((await client.kv.range({ key: Buffer.from(keys.lockPrefix), range_end: prefixEnd(keys.lockPrefix), count_only: true })).count);
    for (let t = 0; t < s.gracefulTrials; t++) {
      const holder = nodes[t % 2];
      const standby = nodes[(t + 1) % 2];
      const seen = standby.events.length;
      const write = standby.call<{ at: number }>('write', { rows: 1 }, 30000);
      write.catch(() => undefined);
      await waitFor('the standby to queue', async () => (await lockKeys()) >= 2, 10000, 5);
      await sleep(20); // let the standby's watch on the key ahead of it be established
      const { closeStartAt, closedAt } = await holder.call<{ closeStartAt: number; closedAt: number }>('close');
      const { at } = await write;
      const acquired = standby.events.slice(seen).find((e) => e.ev === 'acquired');
      toCommit.push(at - closeStartAt);
      toAcquired.push((acquired?.at ?? NaN) - closeStartAt);
      closeDurations.push(closedAt - closeStartAt);
      await standby.call('acquire'); // pin: the next trial's standby must wait for close()
      await init(t % 2);
    }
    ctx.log(`  close() → first commit: p50 ${quantile(toCommit, 0.5).toFixed(1)} ms, p99 ${quantile(toCommit, 0.99).toFixed(1)} ms`);
  } finally {
    client.close();
    await ctx.pool.give(nodes);
  }
  return [
    figure({
      bench: 'graceful', id: 'graceful.commit.p99', label: 'close() → first commit by the next holder, p99', unit: 'ms',
      value: quantile(toCommit, 0.99), spread: { kind: 'min-max', low: Math.min(...toCommit), high: Math.max(...toCommit) },
      n: toCommit.length, samples: toCommit, target: { op: '<=', value: 50 },
      note: 'spread here: min–max of the trials',
    }),
    figure({
      bench: 'graceful', id: 'graceful.commit.p50', label: '  close() → first commit by the next holder, p50', unit: 'ms',
      value: quantile(toCommit, 0.5), spread: iqr(toCommit), n: toCommit.length, samples: toCommit,
    }),
    figure({
      bench: 'graceful', id: 'graceful.acquired.p99', label: '  close() → next holder holds the lease, p99', unit: 'ms',
      value: quantile(toAcquired, 0.99), spread: iqr(toAcquired), n: toAcquired.length, samples: toAcquired,
    }),
    figure({
      bench: 'graceful', id: 'graceful.close.p50', label: '  duration of close() itself, p50', unit: 'ms',
      value: quantile(closeDurations, 0.5), spread: iqr(closeDurations), n: closeDurations.length, samples: closeDurations,
    }),
  ];
}
