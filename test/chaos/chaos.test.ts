/**
 * The chaos suite: (a) the checker against hand-made histories, one per violation kind plus a clean
 * one (a checker that never fails proves nothing); (b) the built harness for real (root, etcd on
 * PATH, sshfs + sshd for --fs sshfs, `npm run build` first): one sweep of every fault kind on each
 * filesystem (local: trusted locks; sshfs: one mount per node, the lockless mode), and the sshfs
 * wiring itself (mounts per node inside the namespaces, the checker reading the export, cleanup of
 * mounts and processes at the end and on SIGINT).
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { check, checkAvailability, FinalDb, readFinalDb, ViolationKind } from '../../tools/chaos/checker';
import { FAULT_KINDS, planSchedule } from '../../tools/chaos/faults';
import { CompleteLine, InvokeLine, Op, opsFromLines, readHistoryFiles } from '../../tools/chaos/history';
import { writeOutcomeOf } from '../../tools/chaos/node-worker';
import { Prng } from '../../tools/chaos/prng';
import { parseDuration } from '../../tools/chaos/main';
import type { ChaosReport } from '../../tools/chaos/report';
import { SCHEMA_SQL } from '../../tools/chaos/schema';

const BANK = { accounts: 2, initialBalance: 100 };

function ok(fields: Partial<Op> & Pick<Op, 'id' | 'op' | 'call' | 'ret'>): Op {
  const [node, inc, seq] = fields.id.split('.');
  return {
    node, inc: Number(inc), seq: Number(seq), outcome: 'ok', crashed: false, txid: null, fence: null,
    ...fields,
  } as Op;
}

/**
 * A clean run: setup (txid 1), n1 appends (2), n2 transfers 30 from 1 to 2 (3), n1 reads
 * linearizably (sees txid 3), n2 appends (4); n3's first append died in flight (not committed),
 * its second failed definitely (absent).
 */
function cleanRun(): { ops: Op[]; db: FinalDb } {
  const ops: Op[] = [
    ok({ id: 'n1.1.1', op: 'append', value: 'n1.1.1', call: 1000, ret: 1010, txid: 2, fence: 10 }),
    { ...ok({ id: 'n3.1.1', op: 'append', value: 'n3.1.1', call: 1005, ret: null }), outcome: 'unknown', crashed: true },
    ok({ id: 'n2.1.1', op: 'transfer', from: 1, to: 2, amount: 30, applied: true, call: 1020, ret: 1030, txid: 3, fence: 11 }),
    ok({ id: 'n1.1.2', op: 'read', consistency: 'linearizable', call: 1040, ret: 1045, txid: 3, fence: 11, balances: [70, 130] }),
    ok({ id: 'n2.1.2', op: 'append', value: 'n2.1.2', call: 1050, ret: 1060, txid: 4, fence: 11 }),
    { ...ok({ id: 'n3.1.2', op: 'append', value: 'n3.1.2', call: 1070, ret: 1080 }), outcome: 'fail', error: { code: 'SQLITE_HA_FENCED', message: 'fenced' } },
  ];
  const db: FinalDb = {
    integrity: 'ok',
    meta: { fence: 11, txid: 4 },
    accounts: [{ id: 1, balance: 70 }, { id: 2, balance: 130 }],
    transfers: [{ txid: 3, src: 1, dst: 2, amount: 30, opid: 'n2.1.1' }],
    appends: [
      { rowid: 1, value: 'n1.1.1', node: 'n1', txid: 2, fence: 10 },
      { rowid: 2, value: 'n2.1.2', node: 'n2', txid: 4, fence: 11 },
    ],
    commits: [
      { rowid: 1, txid: 1, fence: 10, node: 'setup', op: 'setup', opid: 'setup' },
      { rowid: 2, txid: 2, fence: 10, node: 'n1', op: 'append', opid: 'n1.1.1' },
      { rowid: 3, txid: 3, fence: 11, node: 'n2', op: 'transfer', opid: 'n2.1.1' },
      { rowid: 4, txid: 4, fence: 11, node: 'n2', op: 'append', opid: 'n2.1.2' },
    ],
  };
  return { ops, db };
}

function kinds(ops: Op[], db: FinalDb): ViolationKind[] {
  return check(ops, db, BANK).violations.map((v) => v.kind);
}

describe('checker on hand-made histories', () => {
  test('a clean history has no violation, and unknown/failed writes are tallied, not counted lost or done', () => {
    const { ops, db } = cleanRun();
    const r = check(ops, db, BANK);
    expect(r.violations).toEqual([]);
    expect(r.stats.append).toMatchObject({ acked: 2, ackedPresent: 2, failed: 1, failedAbsent: 1, unknown: 1, unknownAbsent: 1, unknownCommitted: 0 });
    expect(r.stats.ops).toMatchObject({ total: 6, ok: 4, fail: 1, unknown: 1, crashed: 1 });
    expect(r.stats.bank.readsChecked).toBe(1);
  });

  test('an unknown write that did commit is fine either way', () => {
    const { ops, db } = cleanRun();
    db.commits.push({ rowid: 5, txid: 5, fence: 11, node: 'n3', op: 'append', opid: 'n3.1.1' });
    db.appends.push({ rowid: 3, value: 'n3.1.1', node: 'n3', txid: 5, fence: 11 });
    db.meta.txid = 5;
    const r = check(ops, db, BANK);
    expect(r.violations).toEqual([]);
    expect(r.stats.append.unknownCommitted).toBe(1);
  });

  test('lost acknowledged append', () => {
    const { ops, db } = cleanRun();
    db.appends = db.appends.filter((a) => a.value !== 'n2.1.2');
    db.commits = db.commits.filter((c) => c.opid !== 'n2.1.2');
    db.meta.txid = 3;
    expect(kinds(ops, db)).toContain('lost-ack');
  });

  test('acknowledged append present twice (duplicate)', () => {
    const { ops, db } = cleanRun();
    db.commits.push({ rowid: 5, txid: 5, fence: 11, node: 'n1', op: 'append', opid: 'n1.1.1' });
    db.appends.push({ rowid: 3, value: 'n1.1.1', node: 'n1', txid: 5, fence: 11 });
    db.meta.txid = 5;
    expect(kinds(ops, db)).toContain('duplicate');
  });

  test('definitely failed append present in the file', () => {
    const { ops, db } = cleanRun();
    db.commits.push({ rowid: 5, txid: 5, fence: 11, node: 'n3', op: 'append', opid: 'n3.1.2' });
    db.appends.push({ rowid: 3, value: 'n3.1.2', node: 'n3', txid: 5, fence: 11 });
    db.meta.txid = 5;
    expect(kinds(ops, db)).toEqual(['failed-present']);
  });

  test('decreasing fence in txid order (a stale writer committed after its successor)', () => {
    const { ops, db } = cleanRun();
    db.commits[3].fence = 9;
    db.appends[1].fence = 9;
    ops[4].fence = 9;
    const k = kinds(ops, db);
    expect(k).toContain('fence-decrease');
    expect(k.every((x) => x === 'fence-decrease')).toBe(true);
  });

  test('two commits with one txid, and a txid that vanished', () => {
    const { ops, db } = cleanRun();
    db.commits[3].txid = 3; // a2 and t1 both claim txid 3: a lost update of the meta row
    ops[4].txid = 3;
    db.appends[1].txid = 3;
    expect(kinds(ops, db)).toEqual(expect.arrayContaining(['txid-duplicate', 'txid-gap']));
  });

  test('bad bank total in a read', () => {
    const { ops, db } = cleanRun();
    ops[3].balances = [70, 120];
    expect(kinds(ops, db)).toEqual(expect.arrayContaining(['bank-total', 'bank-snapshot']));
  });

  test('negative balance', () => {
    const { ops, db } = cleanRun();
    // Two writers both "checked" the balance: account 1 went to -10 (total still 200).
    ops[2].amount = 110;
    db.transfers[0].amount = 110;
    db.accounts = [{ id: 1, balance: -10 }, { id: 2, balance: 210 }];
    ops[3].balances = [-10, 210];
    const k = kinds(ops, db);
    expect(k).toContain('negative-balance');
    expect(k).not.toContain('bank-total');
  });

  test('a read that mixes two states (torn) is caught by the replay', () => {
    const { ops, db } = cleanRun();
    ops[3].balances = [100, 100];
    expect(kinds(ops, db)).toEqual(['bank-snapshot']);
  });

  test('final balances that disagree with the committed transfers', () => {
    const { ops, db } = cleanRun();
    db.accounts = [{ id: 1, balance: 100 }, { id: 2, balance: 100 }];
    expect(kinds(ops, db)).toEqual(['bank-final']);
  });

  test('stale linearizable read', () => {
    const { ops, db } = cleanRun();
    ops.push(ok({ id: 'n3.1.3', op: 'read', consistency: 'linearizable', call: 1100, ret: 1110, txid: 3, fence: 11, balances: [70, 130] }));
    expect(kinds(ops, db)).toEqual(['stale-read']);
    ops[ops.length - 1].consistency = 'local'; // local reads may be stale
    expect(kinds(ops, db)).toEqual([]);
  });

  test('a write ordered before one that completed before it started', () => {
    const { ops, db } = cleanRun();
    ops[4].call = 1011; // a2 starts after a1 returned…
    ops[0].call = 1061; // …and a1 now starts after a2 returned, yet has the smaller txid
    ops[0].ret = 1062;
    expect(kinds(ops, db)).toContain('realtime-order');
  });

  test('append rows out of txid order, phantom rows, integrity', () => {
    const { ops, db } = cleanRun();
    db.appends[0].rowid = 9;
    expect(kinds(ops, db)).toContain('append-order');
    const b = cleanRun();
    b.db.appends.push({ rowid: 3, value: 'n9.1.1', node: 'n9', txid: 4, fence: 11 });
    expect(kinds(b.ops, b.db)).toContain('phantom');
    const c = cleanRun();
    c.db.integrity = 'row 3 missing from index sqlite_autoindex';
    expect(kinds(c.ops, c.db)).toEqual(['integrity']);
  });

  test('availability: measured per fault; no ack after healing within the bound is a violation', () => {
    const { ops } = cleanRun();
    const fault = { index: 1, type: 'kill-holder', target: 'n1', injectAt: 1015, healAt: 1025, injected: true };
    const a = checkAvailability([fault], ops, 100, 5000);
    expect(a.violations).toEqual([]);
    expect(a.availability[0]).toMatchObject({ writesResumedMs: 15, afterHealMs: 5, targetAfterHealMs: null });
    const late = checkAvailability([{ ...fault, injectAt: 2000, healAt: 2100 }], ops, 100, 5000);
    expect(late.violations.map((v) => v.kind)).toEqual(['availability']);
  });

  test('history lines: an invoke without a complete line is a crashed operation with unknown outcome', () => {
    const inv: InvokeLine = { type: 'invoke', id: 'n1.1.1', node: 'n1', inc: 1, seq: 1, op: 'append', call: 1, value: 'n1.1.1' };
    const inv2: InvokeLine = { ...inv, id: 'n1.1.2', seq: 2, value: 'n1.1.2', call: 3 };
    const done: CompleteLine = { ...inv, type: 'complete', ret: 2, outcome: 'ok', txid: 7, fence: 3 };
    const ops = opsFromLines([inv, done, inv2]);
    expect(ops.map((o) => [o.id, o.outcome, o.crashed, o.txid])).toEqual([['n1.1.1', 'ok', false, 7], ['n1.1.2', 'unknown', true, null]]);
  });

  test('outcome classification follows the error contract', () => {
    expect(writeOutcomeOf({ code: 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN' })).toBe('unknown');
    expect(writeOutcomeOf({ code: 'SQLITE_HA_FENCED' })).toBe('fail');
    expect(writeOutcomeOf({ code: 'SQLITE_HA_LEASE_LOST' })).toBe('fail');
    expect(writeOutcomeOf({ code: 'SQLITE_BUSY' })).toBe('fail');
    expect(writeOutcomeOf(new Error('something unexpected'))).toBe('unknown');
  });
});

describe('checker pipeline on real files', () => {
  test('history files (with a line torn by SIGKILL) and a real database: a lost ack is found', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-chaos-unit-'));
    try {
      const dbFile = path.join(dir, 'chaos.db');
      const conn = new Database(dbFile);
      conn.exec(SCHEMA_SQL);
      conn.exec('CREATE TABLE _sqlite_ha_meta (id INTEGER PRIMARY KEY, fence INTEGER, txid INTEGER); INSERT INTO _sqlite_ha_meta VALUES (1, 5, 2)');
      conn.exec("INSERT INTO accounts VALUES (1, 100), (2, 100)");
      conn.exec("INSERT INTO commits (txid, fence, node, op, opid) VALUES (1, 5, 'setup', 'setup', 'setup'), (2, 5, 'n1', 'append', 'n1.1.1')");
      conn.exec("INSERT INTO appends (value, node, txid, fence) VALUES ('n1.1.1', 'n1', 2, 5)");
      conn.close();
      const line = (o: object) => JSON.stringify(o) + '\n';
      const a1: InvokeLine = { type: 'invoke', id: 'n1.1.1', node: 'n1', inc: 1, seq: 1, op: 'append', call: 10, value: 'n1.1.1' };
      const a2: InvokeLine = { ...a1, id: 'n1.1.2', seq: 2, call: 30, value: 'n1.1.2' };
      fs.writeFileSync(path.join(dir, 'n1.jsonl'),
        line(a1) + line({ ...a1, type: 'complete', ret: 20, outcome: 'ok', txid: 2, fence: 5 }) +
        line(a2) + line({ ...a2, type: 'complete', ret: 40, outcome: 'ok', txid: 3, fence: 5 }) + '{"type":"invo');
      const hist = readHistoryFiles([path.join(dir, 'n1.jsonl'), path.join(dir, 'n2.jsonl')]);
      expect(hist.skipped).toHaveLength(1);
      expect(hist.ops).toHaveLength(2);
      const r = check(hist.ops, readFinalDb(dbFile), BANK);
      expect(r.stats.integrity).toBe('ok');
      expect(r.violations.map((v) => [v.kind, v.ops])).toEqual([['lost-ack', ['n1.1.2']]]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('schedule and flags', () => {
  test('a seed gives the same schedule; every kind comes first; variants alternate', () => {
    const a = planSchedule(42, [...FAULT_KINDS], 60000, 2000);
    expect(planSchedule(42, [...FAULT_KINDS], 60000, 2000)).toEqual(a);
    expect(planSchedule(43, [...FAULT_KINDS], 60000, 2000)).not.toEqual(a);
    expect(new Set(a.slice(0, FAULT_KINDS.length).map((f) => f.kind))).toEqual(new Set(FAULT_KINDS));
    const kills = planSchedule(1, ['kill'], 60000, 2000).map((f) => f.type);
    expect(kills.slice(0, 4).sort()).toEqual(['kill-holder', 'kill-holder', 'kill-mid-commit', 'kill-mid-commit']);
    expect(new Prng(5).next()).toBe(new Prng(5).next());
  });

  test('durations', () => {
    expect(parseDuration('60s')).toBe(60000);
    expect(parseDuration('1m')).toBe(60000);
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('40')).toBe(40000);
    expect(() => parseDuration('soon')).toThrow();
  });
});

const MAIN = path.join(__dirname, '..', '..', 'build', 'tools', 'chaos', 'main.js');

interface HarnessRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built harness; `onStderr` may act on progress lines (e.g. send SIGINT). */
function harness(args: string[], killAfterMs: number, onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<HarnessRun> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    onStderr?.(stderr, child);
  });
  const killer = setTimeout(() => child.kill('SIGTERM'), killAfterMs); // the harness cleans up on SIGTERM
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

function reportOf(run: HarnessRun): ChaosReport {
  try {
    return JSON.parse(run.stdout);
  } catch {
    throw new Error(`no JSON report (exit ${run.code}); stderr:\n${run.stderr.slice(-4000)}`);
  }
}

/** sshfs mount points under `dir` still listed in /proc/mounts. */
function sshfsMountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'fuse.sshfs' && f[1].startsWith(dir + '/'))
    .map((f) => f[1]);
}

/** Live (non-zombie) processes whose command line mentions `dir`. */
function processesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${e}/stat`, 'utf8'))) continue;
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) out.push(`${e}: ${cmd.slice(0, 120)}`);
    } catch {
      // gone
    }
  }
  return out;
}

function namespacesOf(pid: number): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.startsWith(`shc-${pid}-`));
}

/** The sweep every CI run makes, on one filesystem: all fault kinds, zero violations. */
async function sweep(fsKind: 'local' | 'sshfs', seed: number): Promise<ChaosReport> {
  const run = await harness(['--fs', fsKind, '--duration', '40s', '--faults', FAULT_KINDS.join(','), '--seed', String(seed), '--json'], 85000);
  const report = reportOf(run);
  if (run.code !== 0 || !report.ok) process.stderr.write(`${run.stderr.slice(-6000)}\n`);
  expect(report.violations).toEqual([]);
  expect(report.errors).toEqual([]);
  expect(run.code).toBe(0);
  expect(report.fs).toBe(fsKind);
  const mode = fsKind === 'sshfs' ? 'none' : 'trusted';
  expect(report.locks.expected).toBe(mode);
  expect(report.locks.setup).toBe(mode);
  expect(Object.keys(report.locks.nodeStarts)).toEqual([mode]);
  const injected = new Set(report.faults.filter((f) => f.injected).map((f) => f.kind));
  expect([...injected].sort()).toEqual([...FAULT_KINDS].sort());
  expect(report.missingKinds).toEqual([]);
  expect(report.stats.integrity).toBe('ok');
  expect(report.stats.append.acked).toBeGreaterThan(20);
  expect(report.stats.bank.readsChecked).toBeGreaterThan(5);
  expect(report.wallMs).toBeLessThan(65000);
  return report;
}

describe('the harness', () => {
  beforeAll(() => {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build first`);
  });

  test('an unknown --fs is refused (exit 2)', () => {
    const r = spawnSync(process.execPath, [MAIN, '--fs', 'nfs', '--duration', '5s'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--fs nfs: expected local or sshfs/);
  });

  test('--fs sshfs: one mount per node inside its namespace, the lockless mode, the checker on the export, nothing left behind', async () => {
    const run = await harness(['--fs', 'sshfs', '--faults', 'none', '--duration', '3s', '--seed', '2', '--json', '--keep'], 60000);
    const report = reportOf(run);
    const dir = report.dir;
    try {
      if (run.code !== 0) process.stderr.write(`${run.stderr.slice(-4000)}\n`);
      expect(report.violations).toEqual([]);
      expect(run.code).toBe(0);
      expect(report.locks).toEqual({ expected: 'none', setup: 'none', nodeStarts: { none: 3 } });
      // Each node opened the file through its own mount (its own "host"), from inside its namespace.
      const opened = [1, 2, 3].map((i) => {
        const ready = fs.readFileSync(path.join(dir, 'logs', `n${i}.log`), 'utf8').split('\n').find((l) => l.includes('"ev":"ready"'));
        return JSON.parse(ready ?? '{}') as { db?: string; locks?: string };
      });
      expect(opened.map((r) => [r.db, r.locks])).toEqual([1, 2, 3].map((i) => [path.join(dir, 'sshfs', `mnt-${i}`, 'chaos.db'), 'none']));
      // Every node wrote; the checker read the server's disk: the export's file holds every commit.
      const hist = readHistoryFiles([1, 2, 3].map((i) => path.join(dir, 'history', `n${i}.jsonl`)));
      expect(new Set(hist.ops.filter((o) => o.outcome === 'ok' && o.op !== 'read').map((o) => o.node))).toEqual(new Set(['n1', 'n2', 'n3']));
      const exported = readFinalDb(path.join(dir, 'sshfs', 'export', 'chaos.db'));
      expect(exported.commits.length).toBe(report.stats.fence.commits);
      expect(exported.meta.txid).toBe(report.stats.fence.metaTxid);
      expect(fs.existsSync(path.join(dir, 'db'))).toBe(false);
      // Cleaned up: no mount, no sshd/sshfs/etcd/node process, no namespace.
      expect(sshfsMountsUnder(dir)).toEqual([]);
      expect(processesUnder(dir)).toEqual([]);
      const pid = Number(fs.readFileSync(path.join(dir, 'harness.pid'), 'utf8'));
      expect(namespacesOf(pid)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 70000);

  test('--fs sshfs: SIGINT during faults unmounts the export and ends every process (exit 130)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-chaos-sigint-'));
    try {
      let mountsAtSigint: string[] | null = null;
      const run = await harness(['--fs', 'sshfs', '--faults', 'kill,pause', '--duration', '30s', '--seed', '3', '--dir', dir], 60000, (text, child) => {
        if (mountsAtSigint === null && /fault 1 /.test(text)) {
          mountsAtSigint = sshfsMountsUnder(dir);
          child.kill('SIGINT');
        }
      });
      if (mountsAtSigint === null) throw new Error(`no fault was injected; stderr:\n${run.stderr.slice(-4000)}`);
      expect(mountsAtSigint).toHaveLength(4); // the harness's own mount and one per node
      expect(run.code).toBe(130);
      expect(run.stderr).toMatch(/SIGINT: undoing faults/);
      expect(sshfsMountsUnder(dir)).toEqual([]);
      expect(processesUnder(dir)).toEqual([]);
      expect(namespacesOf(Number(fs.readFileSync(path.join(dir, 'harness.pid'), 'utf8')))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 70000);

  test('a real 40 s sweep of every fault kind on a local file (trusted locks): exit 0, each kind injected, zero violations', async () => {
    await sweep('local', 1);
  }, 95000);

  test('a real 40 s sweep of every fault kind on sshfs (lockless mode, one mount per node): exit 0, each kind injected, zero violations', async () => {
    await sweep('sshfs', 1);
  }, 95000);

  test('etcd-restart-tls: a member of the mutual-TLS etcd killed and restarted with a rotated certificate; zero violations', async () => {
    // The first seed whose schedule opens with this fault, so the run is short and certain to inject it.
    const seed = Array.from({ length: 50 }, (_, i) => i + 1).find((s) => planSchedule(s, ['etcd'], 15000, 2000)[0]?.type === 'etcd-restart-tls');
    expect(seed).toBeDefined();
    const run = await harness(['--fs', 'local', '--duration', '12s', '--faults', 'etcd', '--seed', String(seed), '--json'], 85000);
    const report = reportOf(run);
    if (run.code !== 0 || !report.ok) process.stderr.write(`${run.stderr.slice(-6000)}\n`);
    expect(report.violations).toEqual([]);
    expect(report.errors).toEqual([]);
    expect(run.code).toBe(0);
    const tls = report.faults.filter((f) => f.type === 'etcd-restart-tls');
    expect(tls.length).toBeGreaterThan(0);
    for (const f of tls) {
      expect(f.injected).toBe(true);
      expect(f.error).toBeUndefined();
      expect(f.detail).toMatch(/restarted with a new TLS server certificate \(serial \w+ -> \w+\)/);
      expect(f.ackAfterHealAt).not.toBeNull(); // the nodes reconnected over TLS and wrote again
    }
    expect(run.stderr).toMatch(/mutual TLS/);
    expect(report.stats.append.acked).toBeGreaterThan(5);
  }, 95000);
});
