/**
 * Plain etcd round trips from this process, with the client settings sqlite-ha uses: a
 * linearizable range (what a linearizable read adds) and a one-put transaction (what publishing a
 * commit record costs: etcd appends and fsyncs its log before answering).
 */
import type { Etcd3 } from 'etcd3';
import { createEtcdClient } from '../coordinator/etcd/client';
import { BenchContext } from './env';
import { Figure, figure } from './report';
import { median, minMax } from './stats';

export function benchClient(ctx: BenchContext): Etcd3 {
  return createEtcdClient({ kind: 'etcd', endpoints: ctx.endpoints }, 2000);
}

/** Median ms of n sequential linearizable ranges of one key. */
export async function rangeRtt(client: Etcd3, key: string, n: number): Promise<number> {
  const k = Buffer.from(key);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.kv.range({ key: k });
    xs.push(performance.now() - t);
  }
  return median(xs);
}

/** Median ms of n sequential single-put transactions. */
export async function putRtt(client: Etcd3, key: string, n: number): Promise<number> {
  const k = Buffer.from(key);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.kv.txn({ compare: [], success: [{ request_put: { key: k, value: Buffer.from(String(i)) } }], failure: [] });
    xs.push(performance.now() - t);
  }
  return median(xs);
}

export async function benchEtcd(ctx: BenchContext): Promise<Figure[]> {
  const client = benchClient(ctx);
  const key = `${ctx.prefix}/rtt`;
  const runs = ctx.settings.readRuns;
  const n = Math.max(50, Math.round(ctx.settings.linearizableReads / 2));
  try {
    await client.put(key).value('0');
    await rangeRtt(client, key, 20); // warm the channel
    const ranges: number[] = [];
    const puts: number[] = [];
    for (let r = 0; r < runs; r++) {
      ranges.push(await rangeRtt(client, key, n));
      puts.push(await putRtt(client, key, n));
    }
    return [
      figure({
        bench: 'etcd', id: 'etcd.range.rtt', label: 'linearizable range round trip (median per run)', unit: 'ms',
        value: median(ranges), spread: minMax(ranges), n: runs, samples: ranges,
      }),
      figure({
        bench: 'etcd', id: 'etcd.txn.rtt', label: 'one-put txn round trip, incl. etcd fsync (median per run)', unit: 'ms',
        value: median(puts), spread: minMax(puts), n: runs, samples: puts,
      }),
    ];
  } finally {
    client.close();
  }
}
