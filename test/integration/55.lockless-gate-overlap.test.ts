/**
 * The lockless commit gate (docs/HAZARDS.md H3, docs/ARCHITECTURE.md "Commit window gate") on the
 * sshfs harness: a writer on mount 0 and a reader on mount 1 (two "hosts" whose locks do not see
 * each other), real processes, a real etcd. Nothing but the gate keeps the writer's COMMIT out of
 * the reader's read transaction here.
 *
 * Adversarial on purpose: every commit rewrites every page of a 2 MB table (a long COMMIT
 * over sshfs), and every read reads row 1, holds its read transaction open for holdMs, then
 * reads every row. The writer commits back to back, so without the gate nearly every commit lands
 * inside such a hold, and the second half of the read sees pages of the new commit next to row
 * 1's old one. Checked against a broken variant of src/coordinator/etcd/reader-registration.ts
 * in which the reader ignores a closed gate: ticket() does not wait for the gate to open and
 * finish() does not require it open (the node still acknowledges the gate at once, so the writer
 * commits during its reads). There this test failed in 4 runs of 4, with 4-9 of 25-41 reads torn
 * (row 1 and a few more from one commit, the rest from the next). Removing only the wait is not enough to fail it: finish() then discards every read
 * that started behind a closed gate and the read is retried, which costs throughput, not safety.
 */
import Database from 'better-sqlite3';
import * as path from 'path';
import { useEtcd } from '../helpers/etcd';
import { NodeEvent, NodeProcess, useNodeProcesses } from '../helpers/processes';
import { useSshfs } from '../helpers/sshfs';

const etcd = useEtcd();
const procs = useNodeProcesses();
const sshfs = useSshfs(2);

interface Read extends NodeEvent {
  start: number; end: number; txid: number; first: string; values: { v: string; n: number }[];
}

function node(mount: number, nodeId: string, cfg: Record<string, unknown>): NodeProcess {
  const p = new NodeProcess(
    { db: path.join(sshfs().mounts[mount], 'gate.db'), endpoints: etcd.cluster().endpoints, prefix: '/gate-overlap', nodeId, ...cfg },
    'gate-node.js',
  );
  procs.push(p);
  return p;
}

test('no read overlaps a many-page commit: every read sees one commit, across 20 commits', async () => {
  const rows = 1000;
  const commits = 20;
  const writer = node(0, 'w', { role: 'writer', rows, count: commits, durationMs: 120000 });
  await writer.waitFor((e) => e.ev === 'ack' || e.ev === 'fatal', 60000);
  // Bounded in count and time; the reader outlives the writer's commits in either case.
  const reader = node(1, 'r', { role: 'reader', count: 400, holdMs: 300, durationMs: 120000 });
  await writer.waitFor((e) => e.ev === 'done' || e.ev === 'fatal', 150000);
  reader.signal('SIGTERM');
  await reader.exited;
  const reads = reader.events.filter((e) => e.ev === 'read') as Read[];
  const torn = reads.filter((r) => r.values.length !== 1 || r.values[0].v !== r.first || r.values[0].n !== rows);
  expect(writer.events.filter((e) => e.ev === 'err' || e.ev === 'fatal')).toEqual([]);
  expect(writer.acked()).toHaveLength(commits);
  expect(reader.events.filter((e) => e.ev === 'err' || e.ev === 'fatal')).toEqual([]);
  expect(torn).toEqual([]);
  // The reads were interleaved with the commits (not all served from one snapshot).
  expect(reads.length).toBeGreaterThan(commits / 2);
  expect(new Set(reads.map((r) => r.txid)).size).toBeGreaterThan(commits / 4);
  // The file holds the last commit, whole.
  const db = new Database(path.join(sshfs().exportDir, 'gate.db'), { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.prepare('SELECT DISTINCT v FROM sweep').pluck().all()).toEqual([String(commits).padStart(6, '0')]);
  } finally {
    db.close();
  }
}, 240000);
