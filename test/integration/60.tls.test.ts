/**
 * TLS against a real etcd started with --client-cert-auth and --auto-compaction-retention, with
 * certificates made by openssl at run time (test/helpers/tls.ts): mutual TLS with the CA and the
 * client certificate given as Buffers, as paths and as PEM text; a wrong CA, a missing client
 * certificate and an expired one each end in a typed error naming the endpoint and the reason, and
 * leave no key behind in etcd. Issue #10, defect 7.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CoordinatorUnavailableError, HADatabase, InvalidOptionError, open, OpenOptions } from '../../src';
import { createEtcdClient, etcdCall } from '../../src/coordinator/etcd/client';
import { runCli } from '../cli/helpers';
import { useTlsEtcd } from '../helpers/tls';

const etcd = useTlsEtcd();
let dir: string;
let prefix: string;
const handles: HADatabase[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-it-'));
  prefix = `/t-${path.basename(dir)}`;
});
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function node(nodeId: string, tls: NonNullable<Extract<OpenOptions['coordinator'], { kind: 'etcd' }>['tls']>): Promise<HADatabase> {
  const db = await open(path.join(dir, 'db.sqlite'), {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix, tls },
    nodeId,
    leaseTtlMs: 2000,
    safetyMarginMs: 500,
    acquireTimeoutMs: 5000,
    rpcTimeoutMs: 1500,
  });
  handles.push(db);
  return db;
}

function keysUnderPrefix(): string[] {
  return etcd.cluster().etcdctl(['get', '--prefix', '--keys-only', prefix]).split('\n').filter((l) => l.trim() !== '');
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const r = await p.then(() => null, (err: Error) => err);
  expect(r).not.toBeNull();
  return r!;
}

test('mutual TLS, CA and client certificate as Buffers: writes, hand-over and a linearizable read', async () => {
  const fx = etcd.tls();
  const tls = { ca: fs.readFileSync(fx.ca.cert), cert: fs.readFileSync(fx.client.cert), key: fs.readFileSync(fx.client.key) };
  const a = await node('a', tls);
  const b = await node('b', tls);
  await a.write((c) => c.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)'));
  const fenceA = a.lease.fence!;
  await a.release();
  await b.write((c) => c.exec('INSERT INTO t VALUES (2)'));
  expect(b.lease.fence!).toBeGreaterThan(fenceA);
  const n = await a.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n, { consistency: 'linearizable' });
  expect(n).toBe(2);
  expect(keysUnderPrefix().some((k) => k.endsWith('/commit'))).toBe(true);
});

test('CA, certificate and key given as paths, and as PEM text', async () => {
  const fx = etcd.tls();
  const byPath = await node('by-path', { ca: fx.ca.cert, cert: fx.client.cert, key: fx.client.key });
  await byPath.write((c) => c.exec('CREATE TABLE t (x)'));
  await byPath.release();
  const byText = await node('by-text', {
    ca: fs.readFileSync(fx.ca.cert, 'utf8'), cert: fs.readFileSync(fx.client.cert, 'utf8'), key: fs.readFileSync(fx.client.key, 'utf8'),
  });
  await byText.write((c) => c.exec('INSERT INTO t VALUES (1)'));
  expect(await byText.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n)).toBe(1);
});

test('no ca: the default roots are used (a CA installed as grpc-js default roots works)', () => {
  // A child process, because grpc-js reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (its default roots) at
  // load: it stands in for a publicly trusted etcd. An empty root list instead fails the handshake.
  const fx = etcd.tls();
  const script = `
    const { open } = require(${JSON.stringify(path.resolve(__dirname, '../../dist'))});
    (async () => {
      const db = await open(${JSON.stringify(path.join(dir, 'roots.sqlite'))}, {
        coordinator: { kind: 'etcd', endpoints: ${JSON.stringify(etcd.cluster().endpoints)}, prefix: ${JSON.stringify(prefix)},
          tls: { cert: ${JSON.stringify(fx.client.cert)}, key: ${JSON.stringify(fx.client.key)} } },
        acquireTimeoutMs: 4000, rpcTimeoutMs: 1500,
      });
      try { await db.write((c) => c.exec('CREATE TABLE t (x)')); console.log('written'); }
      catch (e) { console.log(e.name + ': ' + e.message); }
      finally { await db.close(); }
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8', timeout: 30000, env: { ...process.env, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: fx.ca.cert },
  });
  expect(r.stdout.trim()).toBe('written');
  // The commit record went out too (over the JSON gateway, on the same roots as grpc-js).
  const record = etcd.cluster().etcdctl(['get', '--print-value-only', `${prefix}/roots.sqlite/commit`]).trim();
  expect(JSON.parse(record)).toMatchObject({ txid: 1 });
});

test('a wrong CA: a typed error naming the endpoint and the verification failure; nothing left in etcd', async () => {
  const fx = etcd.tls();
  // A new file: open() asks etcd first whether the database exists elsewhere, and fails there.
  const err = await rejection(node('wrong-ca', { ca: fx.wrongCa.cert, cert: fx.client.cert, key: fx.client.key }));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toContain(etcd.cluster().endpoints[0]);
  expect(err.message).toMatch(/TLS connection to etcd .* failed: the server certificate did not verify \(unable to verify/);
  expect(err.message).toContain('coordinator.tls');
  expect(handles).toEqual([]);
  expect(keysUnderPrefix()).toEqual([]);
});

test('no client certificate against --client-cert-auth: a typed error saying etcd refused the handshake', async () => {
  const fx = etcd.tls();
  const err = await rejection(node('no-cert', { ca: fx.ca.cert }));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toContain(etcd.cluster().endpoints[0]);
  expect(err.message).toMatch(/etcd refused the handshake \(TLS alert/);
  expect(keysUnderPrefix()).toEqual([]);
});

test('an expired client certificate: open() refuses it by name; etcd refuses it too', async () => {
  const fx = etcd.tls();
  let caught: unknown = null;
  try {
    await node('expired', { ca: fx.ca.cert, cert: fx.expiredClient.cert, key: fx.expiredClient.key });
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidOptionError);
  expect((caught as InvalidOptionError).option).toBe('coordinator.tls.cert');
  expect((caught as Error).message).toMatch(/expired on .*renew it/);

  // The server side, past open()'s check: the handshake itself fails, with a typed error.
  const client = createEtcdClient({
    endpoints: etcd.cluster().endpoints,
    tls: { ca: fs.readFileSync(fx.ca.cert), cert: fs.readFileSync(fx.expiredClient.cert), key: fs.readFileSync(fx.expiredClient.key) },
    auth: null,
  }, 1500);
  try {
    const err = await rejection(etcdCall('probe', () => client.get('x').string()));
    expect(err).toBeInstanceOf(CoordinatorUnavailableError);
    expect(err.message).toContain(etcd.cluster().endpoints[0]);
    expect(err.message).toMatch(/TLS alert "certificate expired"|TLS alert "bad certificate"/);
  } finally {
    client.close();
  }
});

test('the CLI reads the same cluster over TLS (--ca, --cert, --key as files)', async () => {
  const fx = etcd.tls();
  const db = await node('cli-tls', { ca: fx.ca.cert, cert: fx.client.cert, key: fx.client.key });
  await db.acquire();
  await db.write((c) => c.exec('CREATE TABLE t (x)'));
  const r = await runCli([
    'status', '--json', '--endpoints', etcd.cluster().endpoints.join(','), '--prefix', prefix,
    '--ca', fx.ca.cert, '--cert', fx.client.cert, '--key', fx.client.key,
  ]);
  // (Node warns once that an IP address cannot be a TLS server name; nothing else may appear.)
  expect(r.stderr.split('\n').filter((l) => l && !/DEP0123|trace-deprecation/.test(l))).toEqual([]);
  expect(r.code).toBe(0);
  const status = JSON.parse(r.stdout);
  expect(JSON.stringify(status)).toContain('cli-tls');
});
