/**
 * 4. Crash failover with the default lease TTL (5000 ms). Per trial, two fresh processes on their
 * own database and key prefix: the holder acquires and commits; the standby calls db.write() and
 * queues for the lock; after a random delay (so the kill lands at a random point of the holder's
 * keep-alive cycle, TTL/3) the holder gets SIGKILL. Failover time = the standby's write resolving
 * (its first commit, published) − the moment just before the kill. Trials run a few at a time:
 * they spend nearly all their time waiting for etcd to expire the dead holder's lease.
 */
import * as path from 'path';
import { Keys, prefixEnd } from '../../src/coordinator/etcd/keys';
import { DEFAULTS } from '../../src/options';
import { BenchContext, createDatabase, dbFile, now, sleep, waitFor } from './env';
import { benchClient } from './etcd-rtt';
import { Figure, figure } from './report';
import { iqr, quantile } from './stats';

interface Trial {
  /** kill → standby's first commit acknowledged, ms */
  failoverMs: number;
  /** kill → standby holds the lease (its `acquired` event), ms */
  acquiredMs: number;
}

export async function benchFailover(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const ttl = DEFAULTS.leaseTtlMs;
  const client = benchClient(ctx);
  const trials: Trial[] = [];
  const failures: string[] = [];
  try {
    for (let first = 0; first < s.failoverTrials; first += s.failoverParallel) {
      const batch = Array.from({ length: Math.min(s.failoverParallel, s.failoverTrials - first) }, (_, j) => first + j);
      const results = await Promise.allSettled(batch.map((i) => oneTrial(ctx, client, i, ttl)));
      for (const r of results) {
        if (r.status === 'fulfilled') trials.push(r.value);
        else failures.push(String((r.reason as Error)?.message ?? r.reason));
      }
      ctx.log(`  ${trials.length}/${s.failoverTrials} trials: ${trials.map((t) => t.failoverMs.toFixed(0)).join(', ')} ms`);
    }
  } finally {
    client.close();
  }
  if (trials.length === 0) throw new Error(`every failover trial failed: ${failures.join('; ')}`);
  const fo = trials.map((t) => t.failoverMs);
  const acq = trials.map((t) => t.acquiredMs);
  const failNote = failures.length ? `; ${failures.length} trials failed: ${failures[0]}` : '';
  return [
    figure({
      bench: 'failover', id: 'failover.p50', label: `SIGKILL → first commit by the standby, p50 (TTL ${ttl} ms)`, unit: 'ms',
      value: quantile(fo, 0.5), spread: iqr(fo), n: fo.length, samples: fo,
    }),
    figure({
      bench: 'failover', id: 'failover.p99', label: 'SIGKILL → first commit by the standby, p99', unit: 'ms',
      value: quantile(fo, 0.99), spread: fo.length > 1 ? { kind: 'min-max', low: Math.min(...fo), high: Math.max(...fo) } : null,
      n: fo.length, samples: fo, target: { op: '<=', value: ttl + 1000 },
      note: `spread here: min–max of the trials${failNote}`,
    }),
    figure({
      bench: 'failover', id: 'failover.acquired.p50', label: '  SIGKILL → standby holds the lease, p50', unit: 'ms',
      value: quantile(acq, 0.5), spread: iqr(acq), n: acq.length, samples: acq,
    }),
  ];
}

async function oneTrial(ctx: BenchContext, client: ReturnType<typeof benchClient>, i: number, ttl: number): Promise<Trial> {
  const file = dbFile(ctx, `failover-${i}`);
  createDatabase(file);
  const prefix = `${ctx.prefix}/failover/${i}`;
  const keys = new Keys(prefix, path.basename(file));
  const [holder, standby] = await ctx.pool.take(2);
  try {
    const init = { db: file, endpoints: ctx.endpoints, prefix };
    await holder.call('init', { ...init, nodeId: `holder${i}` });
    await holder.call('acquire');
    await holder.call('write', { rows: 1 });
    // The standby must not give up while it waits for the TTL: its acquire timeout is generous.
    await standby.call('init', { ...init, nodeId: `standby${i}`, options: { acquireTimeoutMs: 60000 } });
    const write = standby.call<{ at: number }>('write', { rows: 1 }, 60000);
    write.catch(() => undefined);
    const lockKeys = async () =>
      (await client.kv.range({ key: Buffer.from(keys.lockPrefix), range_end: prefixEnd(keys.lockPrefix), count_only: true })).count;
    await waitFor('the standby to queue', async () => Number(await lockKeys()) >= 2, 10000, 10);
    await sleep(50 + Math.random() * (ttl / 3)); // a random point in the keep-alive cycle
    const killedAt = now();
    await holder.kill('SIGKILL');
    const { at } = await write;
    const acquired = standby.events.find((e) => e.ev === 'acquired');
    return { failoverMs: at - killedAt, acquiredMs: (acquired?.at ?? NaN) - killedAt };
  } finally {
    await holder.kill();
    await ctx.pool.give([holder, standby]);
  }
}
