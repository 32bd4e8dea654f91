/**
 * --writes forward: a node that does not hold the lease sends pipelines that write to the holder
 * (found in etcd: the lock queue's first key, and the address each serving node publishes), and the
 * answer's base_url pins the rest of the stream there. Reads stay on the node asked.
 */
import { createClient } from '@libsql/client';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir } from '../helpers/tmp';
import { exec, pipeline, startServed } from './helpers';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-serve-fwd-');

test('writes on a non-holder go to the holder; base_url pins an interactive transaction there', async () => {
  const endpoints = etcd.cluster().endpoints;
  const prefix = '/fwd-1';
  const cluster = { coordinator: { kind: 'etcd' as const, endpoints, prefix }, name: 'db.sqlite' };
  const a = await startServed(tmp.file(), endpoints, prefix, { nodeId: 'a', writes: 'forward', cluster }, { idleReleaseMs: 600000 });
  tmp.defer(() => a.close());
  const b = await startServed(tmp.file(), endpoints, prefix, { nodeId: 'b', writes: 'forward', cluster }, { idleReleaseMs: 600000 });
  tmp.defer(() => b.close());
  const ca = createClient({ url: a.server.url });
  const cb = createClient({ url: b.server.url });
  tmp.defer(() => ca.close());
  tmp.defer(() => cb.close());
  await ca.execute('CREATE TABLE t (v TEXT)'); // no holder yet: a takes the lease itself
  expect(a.db.lease.held).toBe(true);
  await cb.execute("INSERT INTO t VALUES ('via-b')");
  await cb.batch(["INSERT INTO t VALUES ('batch-b')"], 'write');
  expect(b.db.lease.held).toBe(false); // forwarded, never taken by b
  expect((await cb.execute('SELECT v FROM t ORDER BY v')).rows.map((r) => r.v)).toEqual(['batch-b', 'via-b']);
  // A raw stream opened on b continues on a.
  const open = await pipeline(b.server.url, { baton: null, requests: [exec('BEGIN IMMEDIATE'), exec("INSERT INTO t VALUES ('tx')")] });
  expect(open.status).toBe(200);
  expect(open.json.base_url).toBe(a.server.url);
  const onA = await pipeline(a.server.url, { baton: open.json.baton, requests: [exec("INSERT INTO t VALUES ('tx2')")] });
  expect(onA.json.results[0].type).toBe('ok');
  // A client that ignores base_url still reaches the stream: b relays the baton to its owner a.
  const viaB = await pipeline(b.server.url, { baton: onA.json.baton, requests: [exec('COMMIT'), { type: 'close' }] });
  expect(viaB.json.results.map((r: { type: string }) => r.type)).toEqual(['ok', 'ok']);
  // @libsql/client follows base_url by itself.
  const tx = await cb.transaction('write');
  await tx.execute("INSERT INTO t VALUES ('client-tx')");
  await tx.commit();
  expect(b.db.lease.held).toBe(false);
  expect((await ca.execute('SELECT count(*) AS n FROM t')).rows[0].n).toBe(5);
  // Stored SQL of a stream travels with it when its first write is forwarded.
  const stored = await pipeline(b.server.url, { baton: null, requests: [{ type: 'store_sql', sql_id: 9, sql: "INSERT INTO t VALUES ('stored')" }] });
  const used = await pipeline(b.server.url, { baton: stored.json.baton, requests: [{ type: 'execute', stmt: { sql_id: 9 } }, { type: 'close' }] });
  expect(used.json.results.map((r: { type: string }) => r.type)).toEqual(['ok', 'ok']);
  expect((await ca.execute("SELECT count(*) AS n FROM t WHERE v = 'stored'")).rows[0].n).toBe(1);
  // /health names the holder and its fence on every node.
  const h = (await (await fetch(`${b.server.url}/health`)).json()) as { fence: number };
  expect(h).toMatchObject({ ok: true, node: 'b', holder: 'a', holding: false, writes: 'forward' });
  expect(h.fence).toBe(a.db.lease.fence);
}, 60000);

test('behind a load balancer (pinStreams false): any node relays a stream to the node that owns it', async () => {
  const endpoints = etcd.cluster().endpoints;
  const prefix = '/fwd-2';
  const cluster = { coordinator: { kind: 'etcd' as const, endpoints, prefix }, name: 'db.sqlite' };
  const common = { writes: 'forward' as const, cluster, pinStreams: false };
  const a = await startServed(tmp.file(), endpoints, prefix, { nodeId: 'a', ...common }, { idleReleaseMs: 600000 });
  tmp.defer(() => a.close());
  const b = await startServed(tmp.file(), endpoints, prefix, { nodeId: 'b', ...common }, { idleReleaseMs: 600000 });
  tmp.defer(() => b.close());
  await pipeline(a.server.url, { baton: null, requests: [exec('CREATE TABLE t (v TEXT)'), { type: 'close' }] });
  // The stream starts on b (forwarded to the holder a), and goes on through either node.
  const open = await pipeline(b.server.url, { baton: null, requests: [exec('BEGIN IMMEDIATE'), exec("INSERT INTO t VALUES ('1')")] });
  expect(open.json.base_url).toBeNull();
  const mid = await pipeline(b.server.url, { baton: open.json.baton, requests: [exec("INSERT INTO t VALUES ('2')")] });
  expect(mid.json.results[0].type).toBe('ok');
  const end = await pipeline(a.server.url, { baton: mid.json.baton, requests: [exec('COMMIT'), { type: 'close' }] });
  expect(end.json.results.map((r: { type: string }) => r.type)).toEqual(['ok', 'ok']);
  const c = createClient({ url: b.server.url });
  tmp.defer(() => c.close());
  expect((await c.execute('SELECT count(*) AS n FROM t')).rows[0].n).toBe(2);
  const tx = await c.transaction('write'); // @libsql/client through one address
  await tx.execute("INSERT INTO t VALUES ('3')");
  await tx.commit();
  expect((await c.execute('SELECT count(*) AS n FROM t')).rows[0].n).toBe(3);
  // A baton whose node is unknown is an expired stream.
  const forged = await pipeline(b.server.url, { baton: 'nosuchnode00.abc', requests: [exec('SELECT 1')] });
  expect(forged.status).toBe(400);
  expect(forged.json.code).toBe('STREAM_EXPIRED');
}, 60000);
