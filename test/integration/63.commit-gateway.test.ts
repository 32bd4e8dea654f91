/**
 * The commit record over etcd's JSON gateway (src/coordinator/etcd/gateway.ts), against real etcds:
 * plain, mutual TLS and user/password auth, from the one factory's options; a dead endpoint is
 * skipped; an expired token is replaced; a lost lease fails the publish and leaves the new
 * holder's record alone (the fence compare, docs/HAZARDS.md H5).
 */
import * as fs from 'fs';
import { CoordinatorUnavailableError } from '../../src/errors';
import type { ResolvedEtcdCoordinator } from '../../src/options';
import { createEtcdGateway, EtcdConnection, isCredentialsRefusal, toCoordinatorError } from '../../src/coordinator/etcd/client';
import { EtcdCoordinator } from '../../src/coordinator/etcd/coordinator';
import type { EtcdGateway } from '../../src/coordinator/etcd/gateway';
import type { CommitRecord, Lease } from '../../src/coordinator/types';
import { EtcdCluster, freePort } from '../../tools/cluster/etcd-process';
import { useEtcd } from '../helpers/etcd';
import { useTlsEtcd } from '../helpers/tls';

jest.setTimeout(60000);

const plain = useEtcd();
const tls = useTlsEtcd();
let authed: EtcdCluster | null = null;
/** TLS without client certificates (server authentication only), with auth on. */
let serverTls: EtcdCluster | null = null;
let run = 0;
const closers: (() => Promise<void> | void)[] = [];

const AUTH_SETUP = [
  ['user', 'add', 'root', '--new-user-password=root-pw'],
  ['role', 'add', 'app'],
  ['role', 'grant-permission', 'app', '--prefix=true', 'readwrite', '/gw-auth/'],
  ['user', 'add', 'app-node', '--new-user-password=app-secret-pw'],
  ['user', 'grant-role', 'app-node', 'app'],
  ['auth', 'enable'],
];

beforeAll(async () => {
  // Tokens unused for 1 s expire: the gateway's, idle between calls, goes invalid (its gRPC twin
  // is kept fresh by the lease keep-alives).
  authed = await EtcdCluster.start({ members: 1, extraArgs: ['--auth-token-ttl', '1'] });
  const fx = tls.tls();
  serverTls = await EtcdCluster.start({ members: 1, tls: { ca: fx.ca.cert, cert: fx.server.cert, key: fx.server.key, clientCertAuth: false } });
  for (const c of [authed, serverTls]) for (const args of AUTH_SETUP) c.etcdctl(args);
}, 60000);
afterAll(async () => {
  await authed?.stop();
  await serverTls?.stop();
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
});

function coordinator(connection: Pick<ResolvedEtcdCoordinator, 'endpoints' | 'tls' | 'auth'>, prefix: string, nodeId: string): EtcdCoordinator {
  const c = new EtcdCoordinator({
    options: { kind: 'etcd', prefix, ...connection },
    name: 'gw.db', nodeId, leaseTtlMs: 5000, safetyMarginMs: 1000, rpcTimeoutMs: 3000,
    info: { path: '/nowhere/gw.db', locks: 'trusted', journalMode: 'TRUNCATE' },
  });
  closers.push(() => c.close());
  return c;
}

function gateway(connection: EtcdConnection, rpcTimeoutMs = 3000): EtcdGateway {
  const g = createEtcdGateway(connection, rpcTimeoutMs);
  if (!g) throw new Error('no gateway for these options');
  closers.push(() => g.close());
  return g;
}

function record(lease: Lease, node: string, txid: number): CommitRecord {
  return { txid, fence: lease.fence, node, time: Date.now(), epoch: 0 };
}

function stored(cluster: EtcdCluster, prefix: string, extra: string[] = []): CommitRecord | null {
  const out = cluster.etcdctl([...extra, 'get', '--print-value-only', `${prefix}/gw.db/commit`]).trim();
  return out ? (JSON.parse(out) as CommitRecord) : null;
}

/** The etcd lease id behind an EtcdLease, as etcdctl spells it (hex). */
function leaseHex(lease: Lease): string {
  return BigInt((lease as unknown as { session: { leaseId: string } }).session.leaseId).toString(16);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const r = await p.then(() => null, (err: Error) => err);
  expect(r).not.toBeNull();
  return r!;
}

test('plain: the holder publishes its commit record; a lost lease fails the publish and leaves the new holder\'s record', async () => {
  const prefix = `/gw-${++run}`;
  const conn = { endpoints: plain.cluster().endpoints, tls: null, auth: null };
  const a = coordinator(conn, prefix, 'a');
  const b = coordinator(conn, prefix, 'b');
  const la = await a.acquire({ timeoutMs: 10000 });
  expect(await la.publishCommit(record(la, 'a', 1))).toBe(true);
  expect(stored(plain.cluster(), prefix)).toMatchObject({ txid: 1, node: 'a', fence: la.fence });
  // a's lease ends in etcd (as expiry would) while a's process notices nothing; b takes over.
  plain.cluster().etcdctl(['lease', 'revoke', leaseHex(la)]);
  const lb = await b.acquire({ timeoutMs: 10000 });
  expect(await lb.publishCommit(record(lb, 'b', 2))).toBe(true);
  expect(await la.publishCommit(record(la, 'a', 3))).toBe(false);
  expect(stored(plain.cluster(), prefix)).toMatchObject({ txid: 2, node: 'b', fence: lb.fence });
  // With the gate delete in the same txn (the lockless commit): refused as a whole.
  plain.cluster().etcdctl(['put', `${prefix}/gw.db/gate`, '{"node":"b"}']);
  expect(await la.publishCommit(record(la, 'a', 4), { openGate: true })).toBe(false);
  expect(plain.cluster().etcdctl(['get', '--print-value-only', `${prefix}/gw.db/gate`]).trim()).toBe('{"node":"b"}');
  expect(await lb.publishCommit(record(lb, 'b', 5), { openGate: true })).toBe(true);
  expect(plain.cluster().etcdctl(['get', '--print-value-only', `${prefix}/gw.db/gate`]).trim()).toBe('');
  await lb.release();
});

test('endpoint failover: a refused endpoint first, the next one answers; none answering is a typed error', async () => {
  const prefix = `/gw-${++run}`;
  const dead = `http://127.0.0.1:${await freePort()}`;
  const c = coordinator({ endpoints: [dead, ...plain.cluster().endpoints], tls: null, auth: null }, prefix, 'a');
  const l = await c.acquire({ timeoutMs: 10000 });
  expect(await l.publishCommit(record(l, 'a', 1))).toBe(true);
  expect(await l.publishCommit(record(l, 'a', 2))).toBe(true);
  expect(stored(plain.cluster(), prefix)).toMatchObject({ txid: 2, node: 'a' });
  await l.release();

  const none = gateway({ endpoints: [dead, `http://127.0.0.1:${await freePort()}`], tls: null, auth: null }, 1000);
  const err = toCoordinatorError('commit publish', await rejection(none.txn({ success: [{ request_put: { key: Buffer.from('k'), value: Buffer.from('v') } }] })));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toContain(`commit publish failed at ${dead},`);
  expect(err.message).toMatch(/ECONNREFUSED/);
});

test('a restarted member: the kept-alive connection it closed is replaced on the next call', async () => {
  const prefix = `/gw-${++run}`;
  const g = gateway({ endpoints: plain.cluster().endpoints, tls: null, auth: null }, 2000);
  const put = (v: string) => g.txn({ success: [{ request_put: { key: Buffer.from(`${prefix}/k`), value: Buffer.from(v) } }] });
  expect((await put('1')).succeeded).toBe(true); // a kept-alive connection now exists
  await plain.cluster().restart(0); // that connection is gone; the next call opens a new one
  expect((await put('2')).succeeded).toBe(true);
  expect(plain.cluster().etcdctl(['get', '--print-value-only', `${prefix}/k`]).trim()).toBe('2');
});

test('mutual TLS (a client certificate): no gateway, the record stays on gRPC, and a lost lease still fails it', async () => {
  const fx = tls.tls();
  const certs = { ca: fs.readFileSync(fx.ca.cert), cert: fs.readFileSync(fx.client.cert), key: fs.readFileSync(fx.client.key) };
  const endpoints = tls.cluster().endpoints;
  expect(createEtcdGateway({ endpoints, tls: certs, auth: null }, 3000)).toBeNull();
  expect(createEtcdGateway({ endpoints, tls: certs, auth: { username: 'u', password: 'p' } }, 3000)).toBeNull();
  const c = coordinator({ endpoints, tls: certs, auth: null }, '/gw-mtls', 'a');
  const l = await c.acquire({ timeoutMs: 10000 });
  expect(await l.publishCommit(record(l, 'a', 5))).toBe(true);
  expect(stored(tls.cluster(), '/gw-mtls')).toMatchObject({ txid: 5, fence: l.fence });
  tls.cluster().etcdctl(['lease', 'revoke', leaseHex(l)]);
  expect(await l.publishCommit(record(l, 'a', 6))).toBe(false);
  expect(stored(tls.cluster(), '/gw-mtls')).toMatchObject({ txid: 5 });
});

test('TLS with auth: the gateway verifies etcd with the same CA and publishes as the etcd user; a wrong CA fails by name', async () => {
  const cluster = serverTls!;
  const fx = tls.tls();
  const ca = fs.readFileSync(fx.ca.cert);
  const root = ['--user', 'root:root-pw'];
  const conn = { endpoints: cluster.endpoints, tls: { ca, cert: null, key: null }, auth: { username: 'app-node', password: 'app-secret-pw' } };
  const a = coordinator(conn, '/gw-auth', 'a');
  const la = await a.acquire({ timeoutMs: 15000 });
  expect(await la.publishCommit(record(la, 'a', 7))).toBe(true);
  expect(stored(cluster, '/gw-auth', root)).toMatchObject({ txid: 7, node: 'a', fence: la.fence });
  cluster.etcdctl([...root, 'lease', 'revoke', leaseHex(la)]);
  expect(await la.publishCommit(record(la, 'a', 8))).toBe(false);
  expect(stored(cluster, '/gw-auth', root)).toMatchObject({ txid: 7 });

  const wrong = gateway({ ...conn, tls: { ca: fs.readFileSync(fx.wrongCa.cert), cert: null, key: null } });
  const err = toCoordinatorError('commit publish', await rejection(
    wrong.txn({ success: [{ request_put: { key: Buffer.from('/gw-auth/k'), value: Buffer.from('v') } }] })));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toMatch(/TLS connection to etcd at https:\/\/127\.0\.0\.1:\d+ failed: the server certificate did not verify/);
  expect(cluster.etcdctl([...root, 'get', '--print-value-only', '/gw-auth/k']).trim()).toBe('');
});

test('auth: publishes as the etcd user, re-authenticates once when the token is no longer valid, refuses a wrong password without showing it', async () => {
  const cluster = authed!;
  const root = ['--user', 'root:root-pw'];
  const prefix = '/gw-auth';
  const conn = { endpoints: cluster.endpoints, tls: null, auth: { username: 'app-node', password: 'app-secret-pw' } };
  const a = coordinator(conn, prefix, 'a');
  const la = await a.acquire({ timeoutMs: 15000 });
  expect(await la.publishCommit(record(la, 'a', 1))).toBe(true);
  expect(stored(cluster, prefix, root)).toMatchObject({ txid: 1, node: 'a' });

  const g = gateway(conn);
  const put = (key: string, v: string) => g.txn({ success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(v) } }] });
  expect((await put(`${prefix}/k`, '1')).succeeded).toBe(true);
  await new Promise((r) => setTimeout(r, 3500)); // past the 1 s token TTL (checked each second)
  expect((await put(`${prefix}/k`, '2')).succeeded).toBe(true);
  expect(await la.publishCommit(record(la, 'a', 2))).toBe(true);
  expect(cluster.etcdctl([...root, 'get', '--print-value-only', `${prefix}/k`]).trim()).toBe('2');

  // Outside the grant: the same typed refusal as over gRPC.
  const denied = toCoordinatorError('commit publish', await rejection(put('/elsewhere/k', 'x')));
  expect(denied).toBeInstanceOf(CoordinatorUnavailableError);
  expect(denied.message).toMatch(/permission denied.*role must grant readwrite/);
  expect(isCredentialsRefusal(denied)).toBe(true);

  const bad = gateway({ ...conn, auth: { username: 'app-node', password: 'not-the-pw-42' } });
  const err = toCoordinatorError('commit publish', await rejection(bad.txn({ success: [{ request_put: { key: Buffer.from(`${prefix}/k`), value: Buffer.from('3') } }] })));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toMatch(/authentication failed.*Check coordinator\.auth/);
  expect(isCredentialsRefusal(err)).toBe(true);
  expect(`${err.message} ${String(err.stack)} ${JSON.stringify(err)}`).not.toMatch(/not-the-pw-42|app-secret-pw/);
  expect(cluster.etcdctl([...root, 'get', '--print-value-only', `${prefix}/k`]).trim()).toBe('2');
  await la.release();
});
