/**
 * The lockless commit gate belongs to one holder (issue 10, defect 1): a stale holder's failure
 * path (openGate after a failed commit, a drain timeout, a failed takeover) must never delete the
 * gate of the holder that replaced it, or readers would register inside the new holder's COMMIT
 * (docs/HAZARDS.md H3). Real etcd, two coordinators for one database.
 */
import { monotonicNow } from '../../src/clock';
import { EtcdCoordinator } from '../../src/coordinator/etcd/coordinator';
import type { Lease } from '../../src/coordinator/types';
import { useEtcd } from '../helpers/etcd';

const etcd = useEtcd();
let run = 0;
const coordinators: EtcdCoordinator[] = [];

afterEach(async () => {
  await Promise.all(coordinators.splice(0).map((c) => c.close().catch(() => undefined)));
});

function coordinator(prefix: string, nodeId: string): EtcdCoordinator {
  const c = new EtcdCoordinator({
    options: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix, tls: null, auth: null },
    name: 'gate.db', nodeId, leaseTtlMs: 5000, safetyMarginMs: 1000, rpcTimeoutMs: 2000,
    info: { path: '/nowhere/gate.db', locks: 'none', journalMode: 'TRUNCATE' },
  });
  coordinators.push(c);
  return c;
}

function gate(prefix: string): { fence: number; node: string } | null {
  const out = etcd.cluster().etcdctl(['get', '--print-value-only', `${prefix}/gate.db/gate`]).trim();
  return out ? JSON.parse(out) : null;
}

/** The etcd lease id behind an EtcdLease, as etcdctl spells it (hex). */
function leaseHex(lease: Lease): string {
  return BigInt((lease as unknown as { session: { leaseId: string } }).session.leaseId).toString(16);
}

test("a stale holder's openGate() leaves the new holder's gate closed", async () => {
  const prefix = `/gate-${++run}`;
  const a = coordinator(prefix, 'a');
  const b = coordinator(prefix, 'b');
  const la = await a.acquire({ timeoutMs: 10000 });
  await la.closeGate(monotonicNow() + 5000);
  expect(gate(prefix)?.node).toBe('a');
  // a is paused past its lease: etcd ends it (as expiry would) while a's process notices nothing.
  etcd.cluster().etcdctl(['lease', 'revoke', leaseHex(la)]);
  const lb = await b.acquire({ timeoutMs: 10000 });
  await lb.closeGate(monotonicNow() + 5000);
  expect(gate(prefix)).toMatchObject({ node: 'b', fence: lb.fence });
  // a resumes on its failure path and "opens the gate".
  await la.openGate();
  expect(gate(prefix)).toMatchObject({ node: 'b', fence: lb.fence });
  // b's own failure path still opens its gate.
  await lb.openGate();
  expect(gate(prefix)).toBeNull();
  await lb.release();
}, 30000);

test("a stale holder's publish cannot open the new holder's gate either", async () => {
  const prefix = `/gate-${++run}`;
  const a = coordinator(prefix, 'a');
  const b = coordinator(prefix, 'b');
  const la = await a.acquire({ timeoutMs: 10000 });
  etcd.cluster().etcdctl(['lease', 'revoke', leaseHex(la)]);
  const lb = await b.acquire({ timeoutMs: 10000 });
  await lb.closeGate(monotonicNow() + 5000);
  const ok = await la.publishCommit({ txid: 1, fence: la.fence, node: 'a', time: Date.now(), epoch: 0 }, { openGate: true });
  expect(ok).toBe(false);
  expect(gate(prefix)).toMatchObject({ node: 'b' });
  await lb.release();
}, 30000);
