/**
 * Unclean takeovers of a large database in the lockless mode (issue 10, defect 2; docs/HAZARDS.md H5, H8),
 * on the sshfs harness (two mounts = two hosts without shared locks) with a real etcd and real
 * processes. The successor must move the file to a new inode; with a synchronous copy a 1 GB file
 * starved its keep-alives and the takeover never completed. Also: a successor paused mid-move,
 * whose lease ran out meanwhile, must never rename its copy over the next holder's file.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import { useEtcd } from '../helpers/etcd';
import { NodeProcess, useNodeProcesses } from '../helpers/processes';
import { useSshfs } from '../helpers/sshfs';

const etcd = useEtcd();
const procs = useNodeProcesses();
const sshfs = useSshfs(2);
let run = 0;
const MB = 1024 * 1024;

/** A real SQLite database of about `mb` MB, written on the server's disk (fast), zero pages. */
function bigDatabase(file: string, mb: number): void {
  const db = new Database(path.join(sshfs().exportDir, file));
  try {
    db.pragma('journal_mode = TRUNCATE');
    db.pragma('synchronous = OFF');
    db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)');
    const ins = db.prepare('INSERT INTO big (b) VALUES (zeroblob(?))');
    for (let left = mb; left > 0; left -= 100) ins.run(Math.min(100, left) * MB);
  } finally {
    db.close();
  }
}

function node(file: string, mount: number, nodeId: string, cfg: Record<string, unknown>): NodeProcess {
  const p = new NodeProcess({
    db: path.join(sshfs().mounts[mount], file), endpoints: etcd.cluster().endpoints, prefix: `/large-${run}`,
    nodeId, mode: 'counter', ttlMs: 5000, marginMs: 1000, acquireTimeoutMs: 180000, busyTimeoutMs: 10000, ...cfg,
  });
  procs.push(p);
  return p;
}

function fileMeta(file: string): { fence: number; epoch: number; txid: number; n: number } {
  const db = new Database(path.join(sshfs().exportDir, file), { readonly: true });
  try {
    const meta = db.prepare('SELECT fence, epoch, txid FROM _sqlite_ha_meta').get() as { fence: number; epoch: number; txid: number };
    const n = db.prepare('SELECT n FROM counter WHERE id = 1').pluck().get() as number;
    return { ...meta, n };
  } finally {
    db.close();
  }
}

function published(file: string): { txid: number; fence: number; epoch: number } {
  return JSON.parse(etcd.cluster().etcdctl(['get', '--print-value-only', `/large-${run}/${file}/commit`]));
}

test('a 1 GB database with TTL 5 s is taken over after an unclean hand-over', async () => {
  run++;
  const file = `big-${run}.db`;
  bigDatabase(file, 1024);
  expect(fs.statSync(path.join(sshfs().exportDir, file)).size).toBeGreaterThan(1000 * MB);
  // a holds the lease and writes; it is killed while holding (no release: an unclean hand-over).
  const a = node(file, 0, 'a', { count: 1000, pin: true, intervalMs: 100 });
  await a.waitFor((e) => e.ev === 'ack' && e.seq === 2, 120000);
  a.signal('SIGKILL');
  await a.exited;
  const aAcked = a.acked().length;
  // b on the other "host" must take over (moving the 1 GB file) and commit.
  const b = node(file, 1, 'b', { count: 2 });
  const bDone = await b.waitFor((e) => e.ev === 'done' || e.ev === 'fatal', 200000);
  expect(b.events.filter((e) => e.ev === 'err')).toEqual([]);
  expect(bDone).toMatchObject({ ev: 'done', acked: 2 });
  const bFence = b.events.find((e) => e.ev === 'ack')!.fence!;
  // The file was moved (epoch = b's fence), etcd published that epoch, and nothing acknowledged was lost.
  const meta = fileMeta(file);
  expect(meta).toMatchObject({ epoch: bFence, fence: bFence, n: aAcked + 2 });
  expect(published(file)).toMatchObject({ txid: meta.txid, epoch: bFence });
  expect(fs.readdirSync(sshfs().exportDir).filter((n) => n.startsWith(`${file}.sqlite-ha-epoch-`) && n.endsWith('.tmp') &&
    fs.statSync(path.join(sshfs().exportDir, n)).isFile())).toEqual([]);
}, 300000);

test("a successor paused mid-move past its lease never replaces the next holder's file", async () => {
  run++;
  const file = `stale-mover-${run}.db`;
  bigDatabase(file, 400);
  const a = node(file, 0, 'a', { count: 1000, pin: true, intervalMs: 100 });
  await a.waitFor((e) => e.ev === 'ack' && e.seq === 2, 120000);
  a.signal('SIGKILL');
  await a.exited;
  const aAcked = a.acked().length;
  // s1 starts the unclean takeover; it is stopped once its copy is under way.
  const s1 = node(file, 1, 's1', { count: 1 });
  const started = Date.now();
  let tmp: string | undefined;
  while (!tmp && Date.now() - started < 120000) {
    // A file: s1's copy (a directory there is s1's tombstone for a's temp name).
    tmp = fs.readdirSync(sshfs().exportDir).find((n) => n.startsWith(`${file}.sqlite-ha-epoch-`) && n.endsWith('.tmp') &&
      fs.statSync(path.join(sshfs().exportDir, n), { throwIfNoEntry: false })?.isFile());
    if (!tmp) await new Promise((r) => setTimeout(r, 50));
  }
  expect(tmp).toBeDefined();
  s1.signal('SIGSTOP');
  // s2 waits out s1's lease, moves the file itself and commits twice.
  const s2 = node(file, 0, 's2', { count: 2 });
  await s2.waitFor((e) => e.ev === 'done' || e.ev === 'fatal', 200000);
  expect(s2.events.filter((e) => e.ev === 'err')).toEqual([]);
  const s2Fence = s2.events.find((e) => e.ev === 'ack')!.fence!;
  const before = fileMeta(file);
  expect(before).toMatchObject({ epoch: s2Fence, n: aAcked + 2 });
  const inode = fs.statSync(path.join(sshfs().exportDir, file)).ino;
  // s1 resumes in the middle of its copy: it must give up, and s2's file must stay.
  s1.signal('SIGCONT');
  const s1End = await s1.waitFor((e) => e.ev === 'done' || e.ev === 'fatal', 200000);
  const s1Write = s1.events.find((e) => e.ev === 'ack' || e.ev === 'err');
  if (s1Write?.ev === 'ack') {
    // It may only succeed as a fresh holder after s2 (re-acquired, above s2's fence).
    expect(s1Write.fence).toBeGreaterThan(s2Fence);
    expect(fileMeta(file).n).toBe(aAcked + 3);
  } else {
    expect(s1End.ev).toBe('done');
    expect(['SQLITE_HA_LEASE_LOST', 'SQLITE_HA_FENCED', 'SQLITE_HA_ACQUIRE_TIMEOUT']).toContain(s1Write?.code);
    expect(fs.statSync(path.join(sshfs().exportDir, file)).ino).toBe(inode);
    expect(fileMeta(file)).toEqual(before);
  }
  expect(published(file).txid).toBe(fileMeta(file).txid);
}, 400000);
