/**
 * Serving nodes in etcd: each publishes where it answers under <prefix>/<db>/serve/<node> on an
 * etcd lease of its own (so a dead node's entry goes away), and looks up who holds the write lease
 * (the first key of the lock queue) and where that node answers.
 */
import type { Etcd3, Lease as EtcdLease } from 'etcd3';
import { createEtcdClient, etcdCall } from '../coordinator/etcd/client';
import { Keys, LockRecord, parseJson, prefixEnd, ServeRecord } from '../coordinator/etcd/keys';
import { DEFAULTS } from '../options';
import type { ResolvedEtcdCoordinator, WritesMode } from '../options';

/** TTL of a node's address entry: long enough to ride out an etcd blip, short next to a failover. */
const ENTRY_TTL_S = 10;

export interface HolderView {
  node: string;
  fence: number;
  /** Where the holder serves, or null when it does not (or its entry expired). */
  url: string | null;
}

export class Directory {
  private readonly client: Etcd3;
  private readonly keys: Keys;
  private lease: EtcdLease | null = null;
  private closed = false;

  constructor(
    coordinator: ResolvedEtcdCoordinator, name: string, private readonly nodeId: string,
    private readonly record: { url: string; writes: WritesMode }, rpcTimeoutMs = DEFAULTS.rpcTimeoutMs,
  ) {
    this.client = createEtcdClient(coordinator, rpcTimeoutMs);
    this.keys = new Keys(coordinator.prefix, name);
  }

  /** Publishes this node's entry; keeps it alive, and puts it back if its lease is lost. */
  async publish(): Promise<void> {
    if (this.closed) return;
    const lease = this.client.lease(ENTRY_TTL_S, { autoKeepAlive: true });
    this.lease = lease;
    lease.on('lost', () => {
      if (this.closed || this.lease !== lease) return;
      setTimeout(() => void this.publish().catch(() => undefined), 1000).unref();
    });
    const value: ServeRecord = { node: this.nodeId, ...this.record, time: Date.now() };
    await etcdCall('serve address publish', () => lease.put(this.keys.serve(this.nodeId)).value(JSON.stringify(value)).exec());
  }

  /** The current lease holder and its address, or null when no one holds the lease. */
  async holder(): Promise<HolderView | null> {
    const res = await etcdCall('lock queue read', () =>
      this.client.kv.range({
        key: Buffer.from(this.keys.lockPrefix), range_end: prefixEnd(this.keys.lockPrefix),
        sort_target: 'Create', sort_order: 'Ascend', limit: '1',
      }),
    );
    const first = res.kvs[0];
    if (!first) return null;
    const node = parseJson<LockRecord>(first.value)?.node ?? '(foreign)';
    const entry = await etcdCall('serve address read', () => this.client.get(this.keys.serve(node)).string());
    const url = parseJson<ServeRecord>(entry)?.url ?? null;
    return { node, fence: Number(first.create_revision), url };
  }

  /** The address of the serving node whose baton tag is `tag` (see streams.ts), or null. */
  async urlOfTag(tag: string, tagOf: (node: string) => string): Promise<string | null> {
    const prefix = this.keys.serve('').replace(/\/$/, '/');
    const res = await etcdCall('serve addresses read', () =>
      this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) }),
    );
    for (const kv of res.kvs) {
      const rec = parseJson<ServeRecord>(kv.value);
      if (rec && tagOf(rec.node) === tag) return rec.url;
    }
    return null;
  }

  async close(): Promise<void> {
    this.closed = true;
    const lease = this.lease;
    this.lease = null;
    await lease?.revoke().catch(() => undefined);
    this.client.close();
  }
}
