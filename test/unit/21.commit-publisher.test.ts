/**
 * CommitPublisher (src/txn/commit-publisher.ts): commit records are published coalesced, at most
 * one in flight, and every waiter resolves once a record at or past its txid is out, or the
 * publish failed (the commit is already durable and fenced). docs/HAZARDS.md H4 (published txid).
 */
import { EventEmitter } from 'events';
import type { CommitRecord, Lease } from '../../src/coordinator/types';
import { CommitPublisher } from '../../src/txn/commit-publisher';

interface Call {
  record: CommitRecord;
  resolve: (ok: boolean) => void;
  reject: (err: Error) => void;
}

/** A lease whose publishCommit calls stay pending until the test settles them. */
class FakeLease extends EventEmitter implements Lease {
  fence = 7;
  commitDeadline = Number.MAX_SAFE_INTEGER;
  expiresAt = Number.MAX_SAFE_INTEGER;
  valid = true;
  hasWaiters = false;
  commitAtAcquire = null;
  identity = null;
  calls: Call[] = [];
  async recordIdentity<I>(identity: I): Promise<I> {
    return identity;
  }
  publishCommit(record: CommitRecord): Promise<boolean> {
    return new Promise((resolve, reject) => this.calls.push({ record, resolve, reject }));
  }
  reportEvent(): void {}
  async release(): Promise<void> {}
  async abandon(): Promise<void> {}
  get inFlight(): Call {
    const c = this.calls[this.calls.length - 1];
    if (!c) throw new Error('no publishCommit call');
    return c;
  }
}

function setup(published = 0): { lease: FakeLease; pub: CommitPublisher } {
  const lease = new FakeLease();
  return { lease, pub: new CommitPublisher(lease, 'node-a', published) };
}

/** Lets queued promise callbacks run. */
async function ticks(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

function track(p: Promise<void>): { done: boolean } {
  const s = { done: false };
  void p.then(() => (s.done = true));
  return s;
}

test('one publish: one record carrying txid, fence, node and time; resolves only when acknowledged', async () => {
  const { lease, pub } = setup();
  const before = Date.now();
  const w = track(pub.publish(1));
  await ticks();
  expect(lease.calls).toHaveLength(1);
  expect(lease.calls[0].record).toEqual({ txid: 1, fence: 7, node: 'node-a', time: expect.any(Number) });
  expect(lease.calls[0].record.time).toBeGreaterThanOrEqual(before);
  expect(w.done).toBe(false);
  lease.inFlight.resolve(true);
  await ticks();
  expect(w.done).toBe(true);
  expect(lease.calls).toHaveLength(1);
});

test('coalescing: ten publishes while one is in flight cost at most two calls, and all resolve', async () => {
  const { lease, pub } = setup();
  const first = track(pub.publish(1));
  await ticks();
  const rest = [];
  for (let txid = 2; txid <= 11; txid++) rest.push(track(pub.publish(txid)));
  await ticks();
  expect(lease.calls).toHaveLength(1); // still just the first one in flight
  lease.inFlight.resolve(true);
  await ticks();
  expect(first.done).toBe(true);
  expect(rest.some((w) => w.done)).toBe(false); // 2..11 are not published yet
  expect(lease.calls).toHaveLength(2);
  expect(lease.calls[1].record.txid).toBe(11); // the newest txid, once
  lease.inFlight.resolve(true);
  await ticks();
  expect(rest.every((w) => w.done)).toBe(true);
  expect(lease.calls).toHaveLength(2);
});

test('publishes arriving out of order still end with the newest txid published', async () => {
  const { lease, pub } = setup();
  const a = track(pub.publish(5));
  const b = track(pub.publish(3));
  await ticks();
  lease.inFlight.resolve(true);
  await ticks();
  expect(a.done && b.done).toBe(true);
  expect(lease.calls.map((c) => c.record.txid)).toEqual([5]);
});

test('a txid at or below the already published one resolves at once, without a call', async () => {
  const { lease, pub } = setup(10);
  const w = track(pub.publish(10));
  const v = track(pub.publish(4));
  await ticks();
  expect(w.done && v.done).toBe(true);
  expect(lease.calls).toHaveLength(0);
});

test('a rejected publishCommit still resolves its waiters, and publishing continues', async () => {
  const { lease, pub } = setup();
  const w1 = track(pub.publish(1));
  await ticks();
  const w2 = track(pub.publish(2));
  lease.inFlight.reject(new Error('etcd unreachable'));
  await ticks();
  expect(w1.done).toBe(true);
  expect(lease.calls).toHaveLength(2);
  lease.inFlight.reject(new Error('etcd unreachable'));
  await ticks();
  expect(w2.done).toBe(true);
  const w3 = track(pub.publish(3));
  await ticks();
  expect(lease.calls).toHaveLength(3);
  lease.inFlight.resolve(true);
  await ticks();
  expect(w3.done).toBe(true);
});

test('publishCommit answering false (lease gone) resolves waiters too', async () => {
  const { lease, pub } = setup();
  const w = track(pub.publish(1));
  await ticks();
  lease.inFlight.resolve(false);
  await ticks();
  expect(w.done).toBe(true);
});

test('flush waits for the in-flight publish and the coalesced one behind it', async () => {
  const { lease, pub } = setup();
  void pub.publish(1);
  await ticks();
  void pub.publish(2);
  const f = track(pub.flush());
  await ticks();
  expect(f.done).toBe(false);
  lease.inFlight.resolve(true); // txid 1
  await ticks();
  expect(lease.calls).toHaveLength(2);
  expect(f.done).toBe(false); // txid 2 still in flight
  lease.inFlight.reject(new Error('boom')); // a failure does not make flush reject
  await ticks();
  expect(f.done).toBe(true);
});

test('flush with nothing pending resolves at once', async () => {
  const { pub } = setup();
  const f = track(pub.flush());
  await ticks(1);
  expect(f.done).toBe(true);
});
