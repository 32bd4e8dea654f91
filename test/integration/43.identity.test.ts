/**
 * Database identity, freshness before the fence, and one storage mode per database (issue 10,
 * defects 5 and 6), against a real etcd. A new holder must not write anything (fence, meta row,
 * file) into a file that is not the database etcd records under the name, nor on top of a view
 * older than the published commit; a node that would run another storage mode is refused.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HADatabase, open, OpenOptions } from '../../src';
import { useEtcd } from '../helpers/etcd';
import { HeldRelay } from '../helpers/held-relay';

const etcd = useEtcd();
let dir: string;
let prefix: string;
const handles: HADatabase[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-id-'));
  prefix = `/id-${path.basename(dir)}`;
  for (const d of ['a', 'b', 'c']) fs.mkdirSync(path.join(dir, d));
});
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function node(file: string, nodeId: string, extra: Partial<OpenOptions> = {}, pfx = prefix): Promise<HADatabase> {
  const db = await open(file, {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: pfx },
    nodeId, leaseTtlMs: 2000, safetyMarginMs: 500, acquireTimeoutMs: 3000, ...extra,
  });
  handles.push(db);
  return db;
}

/** Node a creates app.db in dir/a and commits `n` times; returns the path. */
async function seeded(n: number): Promise<string> {
  const file = path.join(dir, 'a', 'app.db');
  const a = await node(file, 'a');
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  for (let i = 1; i < n; i++) await a.write((c) => c.prepare('INSERT INTO t VALUES (?)').run(i));
  await a.close();
  return file;
}

function meta(file: string): { fence: number; txid: number } | null {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const has = db.prepare("SELECT count(*) FROM sqlite_master WHERE name = '_sqlite_ha_meta'").pluck().get();
    return has ? (db.prepare('SELECT fence, txid FROM _sqlite_ha_meta').get() as { fence: number; txid: number }) : null;
  } finally {
    db.close();
  }
}

function published(): { txid: number; fence: number } {
  return JSON.parse(etcd.cluster().etcdctl(['get', '--print-value-only', `${prefix}/app.db/commit`]));
}

test('a missing file where etcd records commits (the mount missing at boot) is refused and not created', async () => {
  await seeded(5);
  const missing = path.join(dir, 'b', 'app.db'); // an empty mount point: the filesystem is not mounted
  const err = await node(missing, 'b').catch((e) => e);
  expect(err.code).toBe('SQLITE_HA_DATABASE_IDENTITY');
  expect(err.message).toContain(missing);
  expect(err.message).toMatch(/etcd records 5 commits/);
  expect(fs.existsSync(missing)).toBe(false);
});

// Nodes started together on a new database (a flake of the 3-process test in 41.processes): b's
// open() finds no file, and while its etcd read is on its way a creates the file and records the
// database. The record is then no reason to refuse: the file exists by the time it is known.
// Checked against the variant that looks at the file before the read: it fails there
// (DatabaseIdentityError "does not exist, but etcd records N commits").
test('a file created and recorded by another node while open() asks etcd is opened, not refused', async () => {
  const file = path.join(dir, 'a', 'app.db');
  const url = new URL(etcd.cluster().endpoints[0]);
  const relay = new HeldRelay({ host: url.hostname, port: Number(url.port) });
  const endpoint = await relay.listen();
  try {
    const opening = open(file, {
      coordinator: { kind: 'etcd', endpoints: [endpoint], prefix }, nodeId: 'b', leaseTtlMs: 2000, safetyMarginMs: 500,
    }).then((db) => (handles.push(db), db));
    const outcome = opening.then(() => 'opened', (e) => e);
    const a = await node(file, 'a');
    await a.write((c) => c.exec('CREATE TABLE t (x)'));
    expect(await Promise.race([outcome, new Promise((r) => setTimeout(() => r('held'), 50))])).toBe('held');
    relay.release();
    expect(await outcome).toBe('opened');
    const b = await opening;
    await b.write((c) => c.prepare('INSERT INTO t VALUES (1)').run());
    expect(await a.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get())).toBe(1);
  } finally {
    relay.release();
    await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
    await relay.close();
  }
});

test('an empty file where etcd records commits is refused before anything is written', async () => {
  await seeded(5);
  const empty = path.join(dir, 'b', 'app.db');
  fs.writeFileSync(empty, '');
  const before = published();
  const b = await node(empty, 'b');
  const err = await b.write((c) => c.exec('CREATE TABLE t (x)')).catch((e) => e);
  expect(err.code).toBe('SQLITE_HA_DATABASE_IDENTITY');
  expect(err.message).toMatch(/no sqlite-ha meta row/);
  expect(fs.statSync(empty).size).toBe(0); // no meta row, no fence, no table
  expect(published()).toEqual(before);
  expect(b.lease.held).toBe(false);
});

test('another database with the same name under the same prefix is refused, naming both ids and paths', async () => {
  const real = await seeded(3);
  // c/app.db is another database (its own prefix), opened under the first one's prefix.
  const other = path.join(dir, 'c', 'app.db');
  const c = await node(other, 'c', {}, `${prefix}-other`);
  await c.write((x) => x.exec('CREATE TABLE u (y)'));
  await c.close();
  const fenceBefore = meta(other)!.fence;
  const b = await node(other, 'b');
  const err = await b.write((x) => x.exec('INSERT INTO u VALUES (1)')).catch((e) => e);
  expect(err.code).toBe('SQLITE_HA_DATABASE_IDENTITY');
  expect(err.message).toContain(other);
  expect(err.message).toContain(real);
  expect(err.fileId).toEqual(expect.any(String));
  expect(err.recordedId).toEqual(expect.any(String));
  expect(err.fileId).not.toBe(err.recordedId);
  expect(err.message).toContain(err.fileId);
  expect(err.message).toContain(err.recordedId);
  expect(meta(other)!.fence).toBe(fenceBefore);
});

test('a stale copy of the database is refused without raising its fence (freshness before the fence)', async () => {
  const file = path.join(dir, 'a', 'app.db');
  const a = await node(file, 'a');
  await a.write((c) => c.exec('CREATE TABLE t (x)'));
  await a.release();
  const stale = path.join(dir, 'b', 'app.db');
  fs.copyFileSync(file, stale); // e.g. a restore from an old backup
  for (let i = 0; i < 4; i++) await a.write((c) => c.prepare('INSERT INTO t VALUES (?)').run(i));
  await a.close();
  const staleMeta = meta(stale)!;
  const b = await node(stale, 'b', { acquireTimeoutMs: 1500 });
  const err = await b.write((c) => c.prepare('INSERT INTO t VALUES (99)').run()).catch((e) => e);
  expect(err.code).toBe('SQLITE_HA_STALE_VIEW');
  expect(meta(stale)).toEqual(staleMeta); // fence not raised, nothing written
});

test('a node that would run another storage mode is refused, naming the modes and mount options', async () => {
  const file = await seeded(2);
  const err = await node(file, 'd', { locks: 'none' }).catch((e) => e);
  expect(err.code).toBe('SQLITE_HA_MIXED_MODES');
  expect(err.message).toContain("locks: 'none'");
  expect(err.message).toContain("etcd records locks: 'trusted'");
  expect(err.message).toMatch(/mount options that differ/);
});
