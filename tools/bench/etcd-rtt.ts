/**
 * Plain etcd round trips from this process, with the client settings sqlite-ha uses: a
 * linearizable range (what a linearizable read adds) and a one-put transaction (what publishing a
 * commit record costs: etcd appends and fsyncs its log before answering).
 */
import type { Etcd3 } from 'etcd3';
import { createEtcdClient } from '../../src/coordinator/etcd/client';
import { BenchContext } from './env';
import { Figure, figure } from './report';
import { median, minMax } from './stats';

export function benchClient(ctx: BenchContext): Etcd3 {
  return createEtcdClient({ endpoints: ctx.endpoints, tls: null, auth: null }, 2000);
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

/**
 * Counts the etcd round trips this process makes while it is installed, and the time spent in
 * them: every unary call of any etcd3 client (KV range/put/delete/txn, lease grant/revoke, ...)
 * and every watch created, timed from the call to its settling (calls that overlap are each
 * timed in full). Keep-alive messages on an open lease stream are not counted (they run on a
 * timer, not per operation), nor are the client's own retries after errors (none in a healthy
 * run). Wraps etcd3 internals, like trace.ts; restore() puts them back.
 */
export class EtcdCallCounter {
  private n = 0;
  private markAt = 0;
  private doneSinceMark = 0;
  private totalMs = 0;
  private readonly restores: (() => void)[] = [];

  constructor() {
    /* eslint-disable @typescript-eslint/no-var-requires, @typescript-eslint/no-explicit-any */
    const targets: [any, string][] = [
      [require('etcd3/lib/connection-pool').ConnectionPool.prototype, 'exec'],
      [require('etcd3/lib/watch').WatchBuilder.prototype, 'create'],
    ];
    /* eslint-enable @typescript-eslint/no-var-requires, @typescript-eslint/no-explicit-any */
    const started = () => {
      const seq = ++this.n;
      const t = performance.now();
      return () => {
        if (seq > this.markAt) this.doneSinceMark++;
        this.totalMs += performance.now() - t;
      };
    };
    for (const [proto, name] of targets) {
      const orig = proto[name];
      if (typeof orig !== 'function') throw new Error(`EtcdCallCounter: etcd3 has no ${name}() to wrap`);
      proto[name] = function (this: unknown, ...args: unknown[]) {
        const done = started();
        const p = orig.apply(this, args);
        if (p && typeof p.then === 'function') p.then(done, done);
        else done();
        return p;
      };
      this.restores.push(() => (proto[name] = orig));
    }
  }

  /** Calls so far. */
  get count(): number {
    return this.n;
  }

  /** Starts a window for settledSinceMark. */
  mark(): void {
    this.markAt = this.n;
    this.doneSinceMark = 0;
  }

  /** Calls started since mark() that have settled: the ones an operation awaiting them waited for. */
  get settledSinceMark(): number {
    return this.doneSinceMark;
  }

  /** Milliseconds spent in calls so far (settled ones). */
  get ms(): number {
    return this.totalMs;
  }

  restore(): void {
    for (const r of this.restores.splice(0).reverse()) r();
  }
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
