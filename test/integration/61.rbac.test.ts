/**
 * etcd authentication and RBAC against a real etcd with `auth enable`: a user whose role grants
 * readwrite on `<prefix>/<db>/` only runs a database's whole life cycle (queue, hold, publish,
 * hand-over, lockless reads, release, CLI status/history/release with --db) and is refused, with a
 * typed error and nothing written, outside it. docs/SECURITY.md lists the same etcdctl commands.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CoordinatorUnavailableError, HADatabase, open } from '../../src';
import { EtcdCluster } from '../../tools/cluster/etcd-process';
import { runCli } from '../cli/helpers';

jest.setTimeout(90000);

const PREFIX = '/rbac';
const DB = 'app.db';
const LOCKLESS_DB = 'lockless.db';
const ROOT = ['--user', 'root:root-pw'];
let cluster: EtcdCluster;
let dir: string;
const handles: HADatabase[] = [];

beforeAll(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-rbac-'));
  // The commands of docs/SECURITY.md, verbatim but for the names.
  for (const args of [
    ['user', 'add', 'root', '--new-user-password=root-pw'],
    ['role', 'add', 'sqlite-ha-app'],
    ['role', 'grant-permission', 'sqlite-ha-app', '--prefix=true', 'readwrite', `${PREFIX}/${DB}/`],
    // A second database for the lockless test (etcd records each database's locking mode once).
    ['role', 'grant-permission', 'sqlite-ha-app', '--prefix=true', 'readwrite', `${PREFIX}/${LOCKLESS_DB}/`],
    ['user', 'add', 'app-node', '--new-user-password=app-pw'],
    ['user', 'grant-role', 'app-node', 'sqlite-ha-app'],
    ['auth', 'enable'],
  ]) cluster.etcdctl(args);
}, 60000);

afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
});

afterAll(async () => {
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function node(nodeId: string, opts: { db?: string; locks?: 'trusted' | 'none'; password?: string } = {}): Promise<HADatabase> {
  const db = await open(path.join(dir, opts.db ?? DB), {
    coordinator: {
      kind: 'etcd', endpoints: cluster.endpoints, prefix: PREFIX,
      auth: { username: 'app-node', password: opts.password ?? 'app-pw' },
    },
    nodeId,
    locks: opts.locks ?? 'trusted',
    // The default TTL: with auth on, etcd checks each password with bcrypt, slow on a loaded host.
    leaseTtlMs: 5000,
    acquireTimeoutMs: 8000,
  });
  handles.push(db);
  return db;
}

const cliEnv = { SQLITE_HA_ETCD_USER: 'app-node', SQLITE_HA_ETCD_PASSWORD: 'app-pw' };
const cliConn = () => ['--endpoints', cluster.endpoints.join(','), '--prefix', PREFIX];

function keys(under: string): string[] {
  return cluster.etcdctl([...ROOT, 'get', '--prefix', '--keys-only', under]).split('\n').filter((l) => l.trim() !== '');
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const r = await p.then(() => null, (err: Error) => err);
  expect(r).not.toBeNull();
  return r!;
}

test('the role on <prefix>/<db>/ is enough for the whole life cycle, library and CLI', async () => {
  const a = await node('node-a');
  const b = await node('node-b');
  await a.acquire(); // pinned: b queues behind a
  await a.write((c) => c.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)'));
  const queued = b.write((c) => c.exec('INSERT INTO t VALUES (2)'));

  // CLI status with --db reads only what the role grants: holder a, b waiting.
  let st: { databases: { name: string; holder: { node: string } | null; waiters: { node: string }[] }[] } | null = null;
  for (let i = 0; i < 50 && !(st?.databases[0]?.waiters.length); i++) {
    const r = await runCli(['status', '--json', '--db', DB, ...cliConn()], { env: cliEnv });
    expect(r.code).toBe(0);
    st = JSON.parse(r.stdout);
  }
  expect(st!.databases[0]).toMatchObject({ name: DB, holder: { node: 'node-a' }, waiters: [{ node: 'node-b' }] });

  await a.release();
  await queued;
  expect(await a.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n, { consistency: 'linearizable' })).toBe(2);
  const history = await runCli(['history', '--json', '--db', DB, ...cliConn()], { env: cliEnv });
  expect(history.code).toBe(0);
  expect((JSON.parse(history.stdout) as { node: string }[]).map((r) => r.node)).toEqual(expect.arrayContaining(['node-a', 'node-b']));

  // release --force of b's lease by the CLI with the same role: revoking deletes only keys under the grant.
  await b.acquire();
  const rel = await runCli(['release', '--force', '-y', DB, ...cliConn()], { env: cliEnv });
  expect(rel.stderr).toBe('');
  expect(rel.code).toBe(0);
  expect(rel.stdout).toContain('Revoked lease');
  expect(keys(`${PREFIX}/${DB}/`)).toEqual(expect.arrayContaining([`${PREFIX}/${DB}/commit`, `${PREFIX}/${DB}/info`]));
});

test('the lockless mode (gate, reader keys) works within the same grant', async () => {
  const w = await node('lockless-w', { db: LOCKLESS_DB, locks: 'none' });
  const r = await node('lockless-r', { db: LOCKLESS_DB, locks: 'none' });
  await w.write((c) => c.exec('CREATE TABLE IF NOT EXISTS u (x); INSERT INTO u VALUES (1)'));
  expect(await r.read((c) => (c.prepare('SELECT count(*) n FROM u').get() as { n: number }).n)).toBe(1);
  await w.release();
  // Readers register once per node and keep the registration while the handle is open.
  await r.close();
  await w.close();
  expect(keys(`${PREFIX}/${LOCKLESS_DB}/readers/`)).toEqual([]);
  expect(keys(`${PREFIX}/${LOCKLESS_DB}/gate`)).toEqual([]);
});

test('outside the grant: a typed error naming the role to grant, and nothing written', async () => {
  // A new file: open() asks etcd first whether the database exists elsewhere, and is refused there.
  const err = await rejection(node('node-o', { db: 'other.db' }));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toMatch(/permission denied/);
  expect(err.message).toContain("readwrite on the prefix '<prefix>/<db>/'");
  expect(fs.existsSync(path.join(dir, 'other.db'))).toBe(false);
  expect(keys(`${PREFIX}/other.db/`)).toEqual([]);

  // The whole prefix is outside the grant too: status without --db is refused, exit 1, with advice.
  const r = await runCli(['status', ...cliConn()], { env: cliEnv });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/refused access .*permission denied.*--db/s);
});

test('a wrong password is a typed error that says to check coordinator.auth, and never shows the password', async () => {
  const bad = await node('node-bad', { password: 'not-the-pw' });
  const err = await rejection(bad.write((c) => c.exec('CREATE TABLE t (x)')));
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err.message).toContain('coordinator.auth');
  expect(err.message).not.toContain('not-the-pw');
});
