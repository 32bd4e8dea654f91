/**
 * What a server on a network must do with bad or hostile input: bounded bodies, rows and streams,
 * idle streams closed (their transaction rolled back, the write slot freed), malformed requests
 * answered with Hrana errors (the server keeps serving), bearer auth, TLS, loopback by default,
 * and a lost lease failing the open write transaction with a Hrana error.
 */
import { createClient } from '@libsql/client';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as https from 'https';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir } from '../helpers/tmp';
import { cleanEnv, runCli } from '../cli/helpers';
import { parseListen } from '../../src/cli/serve';
import { InvalidOptionError } from '../../src';
import { resolveServeOptions } from '../../src/options';
import { exec, pipeline, startServed } from './helpers';
import { killAll, startServeNode } from './nodes';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-serve-sec-');
let n = 0;
afterAll(() => killAll());

async function served(opts: Parameters<typeof startServed>[3] = {}) {
  const prefix = `/sec-${++n}`;
  const s = await startServed(tmp.file(), etcd.cluster().endpoints, prefix, opts);
  tmp.defer(() => s.close());
  return { ...s, prefix };
}

test('malformed requests get Hrana errors naming the problem, and the server keeps serving', async () => {
  const s = await served();
  const url = s.server.url;
  const cases: [unknown, RegExp][] = [
    ['{not json', /not JSON/],
    [[], /body must be an object/],
    [{ baton: null }, /requests must be an array/],
    [{ baton: 5, requests: [] }, /baton must be a string/],
    [{ baton: null, requests: [{ type: 'explode' }] }, /requests\[0\]\.type .* not a known request type/],
    [{ baton: null, requests: [{ type: 'execute', stmt: {} }] }, /exactly one of sql and sql_id/],
    [{ baton: null, requests: [{ type: 'execute', stmt: { sql: 'SELECT ?', args: [{ type: 'integer', value: 'x' }] } }] }, /args\[0\]\.value must be a decimal string/],
    [{ baton: null, requests: [{ type: 'execute', stmt: { sql: 'SELECT ?', args: [{ type: 'integer', value: '99999999999999999999' }] } }] }, /64-bit range/],
    [{ baton: null, requests: [{ type: 'batch', batch: { steps: [{ condition: nest(40), stmt: { sql: 'SELECT 1' } }] } }] }, /nests deeper/],
    [{ baton: 'forged-baton', requests: [] }, /unknown or already used baton/],
  ];
  for (const [body, message] of cases) {
    const r = await pipeline(url, body);
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(message);
    expect(r.json.code).toEqual(expect.stringMatching(/^(HRANA_PROTO_ERROR|STREAM_EXPIRED)$/));
  }
  const wrongMethod = await fetch(`${url}/v2/pipeline`);
  expect(wrongMethod.status).toBe(405);
  expect((await fetch(`${url}/nope`)).status).toBe(404);
  const bad = await pipeline(url, { baton: null, requests: [exec('SELECT 1')] }, { 'x-sqlite-ha-consistency': 'eventual' });
  expect(bad.status).toBe(400);
  const ok = await pipeline(url, { baton: null, requests: [exec('SELECT 42'), { type: 'close' }] }, { 'x-sqlite-ha-consistency': 'linearizable' });
  expect(ok.json.results[0].response.result.rows).toEqual([[{ type: 'integer', value: '42' }]]);
});

function nest(depth: number): unknown {
  return depth === 0 ? { type: 'ok', step: 0 } : { type: 'not', cond: nest(depth - 1) };
}

test('bounded: request body size, rows per statement, open streams', async () => {
  const s = await served({ maxBodyBytes: 4096, maxRows: 5, maxStreams: 2 });
  const url = s.server.url;
  const big = await pipeline(url, { baton: null, requests: [exec(`SELECT '${'x'.repeat(5000)}'`)] });
  expect(big.status).toBe(413);
  expect(big.json.code).toBe('HRANA_PROTO_ERROR');
  const c = createClient({ url });
  tmp.defer(() => c.close());
  await expect(c.execute('WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 6) SELECT i FROM r'))
    .rejects.toMatchObject({ code: 'SQLITE_HA_TOO_MANY_ROWS' });
  expect((await c.execute('WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 5) SELECT i FROM r')).rows).toHaveLength(5);
  // A write whose RETURNING rows exceed the limit is rolled back, not half-done.
  await c.execute('CREATE TABLE t (x)');
  await expect(c.execute('INSERT INTO t WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 9) SELECT i FROM r RETURNING x'))
    .rejects.toMatchObject({ code: 'SQLITE_HA_TOO_MANY_ROWS' });
  expect((await c.execute('SELECT count(*) AS n FROM t')).rows[0].n).toBe(0);
  // Two open streams fill the limit; a third is refused until one closes.
  const a = await pipeline(url, { baton: null, requests: [exec('SELECT 1')] });
  const b = await pipeline(url, { baton: null, requests: [exec('SELECT 1')] });
  const third = await pipeline(url, { baton: null, requests: [exec('SELECT 1')] });
  expect(third.status).toBe(503);
  expect(third.json.code).toBe('SQLITE_HA_TOO_MANY_STREAMS');
  await pipeline(url, { baton: a.json.baton, requests: [{ type: 'close' }] });
  expect((await pipeline(url, { baton: null, requests: [exec('SELECT 1'), { type: 'close' }] })).status).toBe(200);
  await pipeline(url, { baton: b.json.baton, requests: [{ type: 'close' }] });
});

test('an idle stream expires: its write transaction is rolled back and the write slot freed', async () => {
  const s = await served({ streamIdleMs: 300, txnWaitMs: 5000 });
  const url = s.server.url;
  await pipeline(url, { baton: null, requests: [exec('CREATE TABLE t (x)'), { type: 'close' }] });
  const open = await pipeline(url, { baton: null, requests: [exec('BEGIN IMMEDIATE'), exec("INSERT INTO t VALUES ('abandoned')")] });
  expect(open.json.results.map((r: { type: string }) => r.type)).toEqual(['ok', 'ok']);
  // Another client's transaction waits for the slot, then gets it once the idle stream expires.
  const c = createClient({ url });
  tmp.defer(() => c.close());
  const tx = await c.transaction('write');
  await tx.execute("INSERT INTO t VALUES ('next')");
  await tx.commit();
  const late = await pipeline(url, { baton: open.json.baton, requests: [exec('COMMIT')] });
  expect(late.status).toBe(400);
  expect(late.json.code).toBe('STREAM_EXPIRED');
  expect((await c.execute('SELECT x FROM t')).rows.map((r) => r.x)).toEqual(['next']);
});

test('a lost lease fails the open write transaction with a Hrana error; nothing of it is committed', async () => {
  const s = await served();
  const url = s.server.url;
  const c = createClient({ url });
  tmp.defer(() => c.close());
  await c.execute('CREATE TABLE t (x)');
  const tx = await c.transaction('write');
  await tx.execute("INSERT INTO t VALUES ('doomed')");
  const name = s.db.name.split('/').pop()!;
  const rel = await runCli(['release', name, '--force', '--yes', '--endpoints', etcd.cluster().endpoints.join(','), '--prefix', s.prefix]);
  expect(rel.code).toBe(0);
  for (let i = 0; i < 100 && s.db.lease.held; i++) await new Promise((r) => setTimeout(r, 50));
  expect(s.db.lease.held).toBe(false);
  await expect(tx.execute("INSERT INTO t VALUES ('after')")).rejects.toMatchObject({ code: 'SQLITE_HA_LEASE_LOST' });
  await expect(tx.commit()).rejects.toMatchObject({ code: 'SQLITE_HA_LEASE_LOST' });
  tx.close();
  expect((await c.execute('SELECT count(*) AS n FROM t')).rows[0].n).toBe(0);
  await c.execute("INSERT INTO t VALUES ('later')"); // the node takes the lease again
  expect((await c.execute('SELECT x FROM t')).rows.map((r) => r.x)).toEqual(['later']);
});

test('bearer auth: the token is required, compared in constant time, and /health stays open', async () => {
  const token = 'tok-' + 'a1b2c3d4e5f6a7b8c9d0';
  const s = await served({ authToken: token });
  const url = s.server.url;
  expect((await pipeline(url, { baton: null, requests: [] })).status).toBe(401);
  expect((await pipeline(url, { baton: null, requests: [] }, { authorization: 'Bearer wrong' })).status).toBe(401);
  const anon = createClient({ url });
  tmp.defer(() => anon.close());
  await expect(anon.execute('SELECT 1')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  const c = createClient({ url, authToken: token });
  tmp.defer(() => c.close());
  expect((await c.execute('SELECT 1 AS one')).rows[0].one).toBe(1);
  const h = await fetch(`${url}/health`);
  expect(h.status).toBe(200);
  expect(await h.json()).toMatchObject({ ok: true, node: 'n1', txid: expect.any(Number) });
  expect(() => resolveServeOptions({ authToken: 'short' })).toThrow(InvalidOptionError);
});

test('loopback by default; --listen parsing', async () => {
  const s = await served();
  expect(new URL(s.server.url).hostname).toBe('127.0.0.1');
  expect(parseListen('8080')).toEqual({ host: '127.0.0.1', port: 8080 });
  expect(parseListen('0.0.0.0:9000')).toEqual({ host: '0.0.0.0', port: 9000 });
  expect(parseListen('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
  expect(() => parseListen('host:99999')).toThrow(/invalid --listen/);
});

test('the serve command: HTTPS with --tls-cert/--tls-key, token from the environment, never printed', async () => {
  const cert = tmp.file('cert.pem');
  const key = tmp.file('key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const token = 'env-token-0123456789abcdef';
  const node = await startServeNode(tmp.file(), etcd.cluster().endpoints, `/sec-tls-${++n}`, 'tls1',
    ['--tls-cert', cert, '--tls-key', key], { SQLITE_HA_SERVE_TOKEN: token });
  expect(node.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const post = (auth: string | null) => new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = https.request(`${node.url}/v2/pipeline`, {
      method: 'POST', ca: fs.readFileSync(cert),
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ baton: null, requests: [exec('SELECT 7'), { type: 'close' }] }));
  });
  expect((await post(null)).status).toBe(401);
  const ok = await post(`Bearer ${token}`);
  expect(ok.status).toBe(200);
  expect(ok.body.results[0].response.result.rows).toEqual([[{ type: 'integer', value: '7' }]]);
  node.proc.child.kill('SIGTERM');
  expect(await node.proc.exited).toBe(0);
  expect(node.proc.lines.join('\n') + node.proc.stderr).not.toContain(token);
  // A token on the command line is not an option.
  const r = await runCli(['serve', tmp.file(), '--auth-token', token], { env: cleanEnv() as Record<string, string> });
  expect(r.code).toBe(2);
}, 60000);
