/**
 * Lockless mode, a commit whose record cannot be published (issue #10, defect 10): the writer
 * closed the reader gate and committed, then etcd refused the commit record. The outcome is
 * unknown (CommitOutcomeUnknownError), and the gate must not stay closed behind a lease that is
 * still alive: the writer drops the lease (which deletes the gate), so other nodes read again at
 * once. Made deterministic with etcd RBAC: after a first commit, the node's role keeps write access
 * to every key of the database but the commit record, which it may then only read.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CommitOutcomeUnknownError, HADatabase, open, StaleViewError } from '../../src';
import { EtcdCluster } from '../../tools/cluster/etcd-process';

jest.setTimeout(90000);

const P = '/pubfail';
const DB = 'app.db';
let cluster: EtcdCluster;
let dir: string;
const handles: HADatabase[] = [];

beforeAll(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-pubfail-'));
  const root = `${P}/${DB}`;
  const grants: string[][] = [
    // Read on the whole database: a node's reader registration watches the range [commit, gate].
    ['--prefix=true', 'read', `${root}/`],
    ['--prefix=true', 'readwrite', `${root}/lock/`],
    ['--prefix=true', 'readwrite', `${root}/readers/`],
    ['--prefix=true', 'readwrite', `${root}/history/`],
    ['--prefix=true', 'readwrite', `${root}/events/`],
    ['readwrite', `${root}/gate`],
    ['readwrite', `${root}/holder`],
    ['readwrite', `${root}/info`],
    ['readwrite', `${root}/released`],
    ['readwrite', `${root}/identity`],
    ['readwrite', `${root}/promoted`],
    ['readwrite', `${root}/standby`],
    ['readwrite', `${root}/commit`], // until the test takes write away, after the first commit
  ];
  cluster.etcdctl(['user', 'add', 'root', '--new-user-password=root-pw']);
  cluster.etcdctl(['role', 'add', 'no-publish']);
  for (const g of grants) cluster.etcdctl(['role', 'grant-permission', 'no-publish', ...g]);
  cluster.etcdctl(['user', 'add', 'node', '--new-user-password=node-pw']);
  cluster.etcdctl(['user', 'grant-role', 'node', 'no-publish']);
  cluster.etcdctl(['auth', 'enable']);
}, 60000);

afterAll(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function node(nodeId: string): Promise<HADatabase> {
  const db = await open(path.join(dir, DB), {
    coordinator: { kind: 'etcd', endpoints: cluster.endpoints, prefix: P, auth: { username: 'node', password: 'node-pw' } },
    nodeId,
    locks: 'none',
    leaseTtlMs: 6000,
    acquireTimeoutMs: 4000,
  });
  handles.push(db);
  return db;
}

test('a failed publish drops the lease, so the gate opens and readers go on', async () => {
  const writer = await node('writer');
  const reader = await node('reader');
  await writer.acquire(); // pinned: before the fix the gate stayed closed for as long as it held on
  await writer.write((c) => c.exec('CREATE TABLE t (x)'));
  const root = ['--user', 'root:root-pw'];
  cluster.etcdctl([...root, 'role', 'revoke-permission', 'no-publish', `${P}/${DB}/commit`]);
  cluster.etcdctl([...root, 'role', 'grant-permission', 'no-publish', 'read', `${P}/${DB}/commit`]);
  const err = await writer.write((c) => c.exec('INSERT INTO t VALUES (1)')).then(() => null, (e: Error) => e);
  expect(err).toBeInstanceOf(CommitOutcomeUnknownError);
  expect(writer.lease.held).toBe(false);
  const gate = cluster.etcdctl([...root, 'get', `${P}/${DB}/gate`]).trim();
  expect(gate).toBe('');
  // The gate is open: a reader registers at once. The file holds a commit etcd never recorded, so
  // the reader refuses that view (typed, naming both txids) instead of waiting on the gate...
  const readErr = await reader.read((c) => c.prepare('SELECT count(*) FROM t').get()).then(() => null, (e: Error) => e);
  expect(readErr).toBeInstanceOf(StaleViewError);
  expect(readErr!.message).toMatch(/local view is at txid \d+ but txid \d+ was published/);
  // ...until the next holder takes over and publishes (here the reader itself, once it may again).
  cluster.etcdctl([...root, 'role', 'grant-permission', 'no-publish', 'readwrite', `${P}/${DB}/commit`]);
  await reader.write((c) => c.exec('INSERT INTO t VALUES (2)'));
  await reader.release();
  expect(await writer.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n)).toBeGreaterThanOrEqual(1);
});
