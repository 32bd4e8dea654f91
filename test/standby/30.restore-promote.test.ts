/**
 * Point-in-time restore and promotion through the real CLI (dist/cli/main.js), real etcd, real
 * processes. Needs `npm run build`.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { open } from '../../src';
import { useEtcd } from '../helpers/etcd';
import { NodeProcess, useNodeProcesses } from '../helpers/processes';
import { useTmpDir, sleep } from '../helpers/tmp';
import { integrity, metaOf } from './helpers';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-sbcli-');
const procs = useNodeProcesses();
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function dirs() {
  const primary = path.join(tmp.dir(), 'primary');
  const standby = path.join(tmp.dir(), 'standby');
  fs.mkdirSync(primary);
  fs.mkdirSync(standby);
  return { db: path.join(primary, 'app.db'), standby, prefix: `/pr-${path.basename(tmp.dir())}` };
}

test('restore to a txid in the middle of the chain, and to a time, is byte-identical to the primary then', async () => {
  const d = dirs();
  const db = await open(d.db, {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: d.prefix },
    standby: { dir: d.standby, mode: 'sync' },
    idleReleaseMs: 60000,
  });
  tmp.defer(() => db.close());
  const images = new Map<number, Buffer>();
  const times = new Map<number, number>();
  for (let i = 1; i <= 30; i++) {
    await db.write((c) => {
      c.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)');
      c.prepare('INSERT INTO t (v) VALUES (randomblob(?))').run(500 + i * 97);
      if (i % 4 === 0) c.exec('DELETE FROM t WHERE id % 3 = 0');
    });
    images.set(i, fs.readFileSync(d.db));
    times.set(i, Date.now());
    await sleep(5);
  }
  const mid = path.join(tmp.dir(), 'mid.db');
  const r = cli(['restore', d.standby, '--to-txid', '13', '--out', mid, '--json']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  expect(JSON.parse(r.out).txid).toBe(13);
  expect(fs.readFileSync(mid).equals(images.get(13)!)).toBe(true);
  expect(integrity(mid)).toBe('ok');
  const at = path.join(tmp.dir(), 'at.db');
  const rt = cli(['restore', d.standby, '--to-time', new Date(times.get(20)!).toISOString(), '--out', at]);
  expect(rt.code).toBe(0);
  expect(rt.out).toMatch(/at txid 20 /);
  expect(fs.readFileSync(at).equals(images.get(20)!)).toBe(true);
  // Never written over; a point past the chain is refused with a clear message.
  expect(cli(['restore', d.standby, '--to-txid', '5', '--out', mid]).err).toMatch(/already exists/);
  expect(cli(['restore', d.standby, '--to-time', '1000', '--out', path.join(tmp.dir(), 'x.db')]).err).toMatch(/older than every snapshot/);
  expect(cli(['restore', d.standby, '--out', path.join(tmp.dir(), 'y.db')]).code).toBe(2);
}, 120000);

test('promotion with the old holder still running: the old holder writes nothing more, no acknowledged write is lost, new nodes write the new primary', async () => {
  const d = dirs();
  const a = new NodeProcess({
    db: d.db, endpoints: etcd.cluster().endpoints, prefix: d.prefix, nodeId: 'old',
    standby: { dir: d.standby, mode: 'sync' }, count: 100000, intervalMs: 10, idleReleaseMs: 50,
  }, 'standby-node.js');
  procs.push(a);
  await a.waitFor((e) => e.ev === 'ack' && (e.seq as number) >= 40, 60000);
  const to = path.join(tmp.dir(), 'new-primary', 'app.db');
  fs.mkdirSync(path.dirname(to));
  const r = cli(['--endpoints', etcd.cluster().endpoints.join(','), '--prefix', d.prefix, 'promote', 'app.db', '--from', d.standby, '--to', to, '--json']);
  const promotedAt = Date.now();
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  const res = JSON.parse(r.out);
  expect(res.lostWrites).toBe(0);
  expect(res.revokedLeases).toBeGreaterThanOrEqual(1);
  expect(integrity(to)).toBe('ok');
  expect(metaOf(to)).toEqual({ txid: res.txid, fence: res.epoch });
  // The old holder keeps trying for 3 s: nothing is acknowledged, nothing reaches the old file.
  const oldMeta = metaOf(d.db);
  await sleep(3000);
  expect(a.events.filter((e) => e.ev === 'ack' && (e.t as number) > promotedAt)).toEqual([]);
  expect(metaOf(d.db)).toEqual(oldMeta);
  const refused = a.events.filter((e) => e.ev === 'err' && e.code === 'SQLITE_HA_DATABASE_MOVED');
  expect(refused.length).toBeGreaterThan(0);
  expect(refused[0].message).toContain(to);
  // Every write the old holder had acknowledged is in the new primary.
  const acked = a.events.filter((e) => e.ev === 'ack').map((e) => e.seq as number);
  const nb = new Database(to, { readonly: true });
  const have = new Set(nb.prepare("SELECT seq FROM log WHERE node = 'old'").pluck().all() as number[]);
  nb.close();
  expect(acked.filter((s) => !have.has(s))).toEqual([]);
  // A node opening the new path writes on top of it.
  const b = await open(to, { coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: d.prefix } });
  tmp.defer(() => b.close());
  await b.write((c) => c.prepare("INSERT INTO log (node, seq) VALUES ('new', 1)").run());
  expect(metaOf(to).txid).toBe(res.txid + 1);
  expect(metaOf(to).fence).toBeGreaterThan(res.epoch);
}, 180000);
