/**
 * The etcd lease against a real etcd (no mock): fencing tokens, hand-over on close(), interplay
 * with `etcdctl lock`, an unreachable coordinator, and SQL errors inside writes.
 * docs/HAZARDS.md H5 (fence only grows), H6 (Mutex recipe, deadlines on every call).
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort } from '../../tools/cluster/etcd-process';
import {
  AcquireTimeoutError, CoordinatorUnavailableError, HADatabase, open, OpenOptions,
} from '../../src';
import { useEtcd } from '../helpers/etcd';

const etcd = useEtcd();
let dir: string;
const handles: HADatabase[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-it-'));
});
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function node(nodeId: string, extra: Partial<OpenOptions> = {}, file = 'db.sqlite'): Promise<HADatabase> {
  const db = await open(path.join(dir, file), {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: `/t-${path.basename(dir)}` },
    nodeId,
    leaseTtlMs: 2000,
    safetyMarginMs: 500,
    acquireTimeoutMs: 10000,
    ...extra,
  });
  handles.push(db);
  return db;
}

test('fence tokens strictly increase across hand-overs and are stored in the database', async () => {
  const a = await node('a');
  const b = await node('b');
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  const fences: number[] = [];
  for (let i = 0; i < 6; i++) {
    const who = i % 2 === 0 ? a : b;
    await who.write((c) => c.prepare('INSERT INTO t VALUES (?)').run(i));
    fences.push(who.lease.fence!);
    const stored = await who.read((c) => c.prepare('SELECT fence FROM _sqlite_ha_meta').get() as { fence: number });
    expect(stored.fence).toBe(who.lease.fence);
    await who.release();
    expect(who.lease.held).toBe(false);
  }
  for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
  expect(await a.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n)).toBe(6);
});

test('close() hands the lease over without waiting out the TTL', async () => {
  const a = await node('a', { leaseTtlMs: 10000 });
  const b = await node('b', { leaseTtlMs: 10000 });
  await a.acquire(); // held explicitly: kept until release() or close(), waiters or not
  a.exec('CREATE TABLE t (x)');
  const waiting = b.write((c) => c.prepare('INSERT INTO t VALUES (1)').run());
  await new Promise((r) => setTimeout(r, 300));
  expect(b.lease.held).toBe(false); // still queued behind a's 10 s lease
  const t0 = Date.now();
  await a.close();
  await waiting;
  // Far below the 10 s TTL: the waiter was woken by the revoke, not by expiry.
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(b.lease.held).toBe(true);
});

test('a holder hands over as soon as another node waits (sticky lease lets go)', async () => {
  const a = await node('a', { idleReleaseMs: 60000 });
  const b = await node('b', { idleReleaseMs: 60000 });
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  expect(a.lease.held).toBe(true);
  await b.write((c) => c.prepare('INSERT INTO t VALUES (2)').run());
  expect(b.lease.held).toBe(true);
  expect(a.lease.held).toBe(false);
});

test('`etcdctl lock` on the same lock prefix makes writers wait until it exits', async () => {
  const a = await node('a');
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  await a.release();
  const lockName = `/t-${path.basename(dir)}/db.sqlite/lock`;
  const holder = spawn('etcdctl', ['--endpoints', etcd.cluster().endpoints.join(','), 'lock', lockName], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  const exited = new Promise((r) => holder.on('exit', r));
  // etcdctl prints its key once it holds the lock.
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('etcdctl lock did not take the lock')), 10000);
    holder.stdout!.on('data', (d) => {
      if (d.toString().includes(lockName)) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const t0 = Date.now();
  let done = false;
  const w = a.write((c) => c.prepare('INSERT INTO t VALUES (1)').run()).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 1200));
  expect(done).toBe(false);
  holder.kill('SIGTERM'); // etcdctl revokes its session on SIGTERM
  await w;
  await exited;
  expect(Date.now() - t0).toBeGreaterThan(1000);
  expect(await a.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n)).toBe(1);
});

test('an `etcdctl lock` waiter waits while sqlite-ha holds and gets the lock when it lets go', async () => {
  const a = await node('a');
  await a.acquire(); // a free lock: taken by the one enqueue transaction
  a.exec('CREATE TABLE t (x)');
  const lockName = `/t-${path.basename(dir)}/db.sqlite/lock`;
  const holder = spawn('etcdctl', ['--endpoints', etcd.cluster().endpoints.join(','), 'lock', lockName], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  const exited = new Promise((r) => holder.on('exit', r));
  let locked = false;
  const gotLock = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('etcdctl lock never took the lock')), 15000);
    holder.stdout!.on('data', (d) => {
      if (d.toString().includes(lockName)) {
        locked = true;
        clearTimeout(t);
        resolve();
      }
    });
  });
  gotLock.catch(() => undefined);
  try {
    await new Promise((r) => setTimeout(r, 1500));
    expect(locked).toBe(false);
    expect(a.lease.held).toBe(true);
    await a.release();
    await gotLock;
    // etcdctl holds now: our next write queues behind it.
    let done = false;
    const w = a.write((c) => c.prepare('INSERT INTO t VALUES (1)').run()).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 800));
    expect(done).toBe(false);
    holder.kill('SIGTERM');
    await w;
    expect(await a.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n)).toBe(1);
  } finally {
    holder.kill('SIGKILL');
    await exited;
  }
});

test('hand-over history tells a release from an expiry when each lock is taken free, in one transaction', async () => {
  const prefix = `/t-${path.basename(dir)}/db.sqlite`;
  const history = () =>
    etcd.cluster().etcdctl(['get', '--prefix', '--print-value-only', `${prefix}/history/`])
      .trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { fence: number; node: string; cause: string });
  const causeOf = async (fence: number) => {
    for (let i = 0; i < 100; i++) {
      const r = history().find((h) => h.fence === fence);
      if (r) return r.cause;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`no history record for fence ${fence}`);
  };
  const a = await node('a');
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  const fa = a.lease.fence!;
  await a.release();
  const b = await node('b');
  await b.write((c) => c.prepare('INSERT INTO t VALUES (1)').run());
  const fb = b.lease.fence!;
  // b "crashes": its lease is revoked behind its back, so no release marker is written.
  const lockKey = etcd.cluster().etcdctl(['get', '--prefix', '--keys-only', `${prefix}/lock/`]).trim().split('\n')[0];
  const lost = new Promise((r) => b.on('lost', r));
  etcd.cluster().etcdctl(['lease', 'revoke', lockKey.slice(lockKey.lastIndexOf('/') + 1)]);
  await lost;
  const c = await node('c');
  await c.write((x) => x.prepare('INSERT INTO t VALUES (2)').run());
  const fc = c.lease.fence!;
  expect(fa).toBeLessThan(fb);
  expect(fb).toBeLessThan(fc);
  expect(await causeOf(fa)).toBe('first');
  expect(await causeOf(fb)).toBe('released');
  expect(await causeOf(fc)).toBe('expired');
  expect(await c.read((x) => x.prepare('SELECT fence FROM _sqlite_ha_meta').pluck().get())).toBe(fc);
});

test('acquire gives up with AcquireTimeoutError naming the holder', async () => {
  const a = await node('holder-a');
  const b = await node('b', { acquireTimeoutMs: 800 });
  await a.acquire();
  const err = await b.write(() => 1).catch((e) => e);
  expect(err).toBeInstanceOf(AcquireTimeoutError);
  expect(err.code).toBe('SQLITE_HA_ACQUIRE_TIMEOUT');
  expect(err.message).toContain('holder-a');
  // b's waiter key was removed: a keeps writing and b can still get the lease later.
  const keys = etcd.cluster().etcdctl(['get', '--prefix', '--keys-only', `/t-${path.basename(dir)}/db.sqlite/lock/`]);
  expect(keys.trim().split('\n').filter(Boolean)).toHaveLength(1);
});

test('etcd unreachable: CoordinatorUnavailableError within acquireTimeoutMs, local reads keep working', async () => {
  const file = path.join(dir, 'db.sqlite');
  const seed = await node('seed');
  await seed.write((c) => c.exec('CREATE TABLE t (x); INSERT INTO t VALUES (42)'));
  await seed.close();
  const port = await freePort();
  const db = await open(file, {
    coordinator: { kind: 'etcd', endpoints: [`http://127.0.0.1:${port}`] },
    acquireTimeoutMs: 1500,
    rpcTimeoutMs: 500,
  });
  handles.push(db);
  const t0 = Date.now();
  const err = await db.write((c) => c.prepare('INSERT INTO t VALUES (1)').run()).catch((e) => e);
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.code).toBe('SQLITE_HA_COORDINATOR_UNAVAILABLE');
  expect(Date.now() - t0).toBeLessThan(4000);
  expect(db.prepare('SELECT x FROM t').pluck().all()).toEqual([42]);
  expect(await db.read((c) => c.prepare('SELECT x FROM t').pluck().get())).toBe(42);
});

test('an SQL error inside write() rolls back, keeps the lease, and the next write works', async () => {
  const a = await node('a', { idleReleaseMs: 60000 });
  await a.write((c) => c.exec('CREATE TABLE t (x UNIQUE)'));
  const fence = a.lease.fence;
  const err = await a
    .write((c) => {
      c.prepare('INSERT INTO t VALUES (1)').run();
      c.prepare('INSERT INTO t VALUES (1)').run();
    })
    .catch((e) => e);
  expect(err.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
  expect(a.lease.held).toBe(true);
  expect(a.lease.fence).toBe(fence);
  expect(a.prepare('SELECT count(*) FROM t').pluck().get()).toBe(0);
  await a.write((c) => c.prepare('INSERT INTO t VALUES (2)').run());
  expect(a.prepare('SELECT x FROM t').pluck().all()).toEqual([2]);
});

test('linearizable reads see every write acknowledged before they began, on another handle', async () => {
  const a = await node('a');
  const b = await node('b');
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  for (let i = 1; i <= 20; i++) {
    await a.write((c) => c.prepare('INSERT INTO t VALUES (?)').run(i));
    const n = await b.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get(), { consistency: 'linearizable' });
    expect(n).toBe(i);
  }
  const commit = JSON.parse(etcd.cluster().etcdctl(['get', '--print-value-only', `/t-${path.basename(dir)}/db.sqlite/commit`]));
  expect(commit).toMatchObject({ node: 'a', fence: a.lease.fence ?? expect.any(Number) });
  expect(commit.txid).toBe(await b.read((c) => c.prepare('SELECT txid FROM _sqlite_ha_meta').pluck().get()));
});
