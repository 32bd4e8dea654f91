/**
 * The chaos suite: (a) the checker against hand-made histories, one per violation kind plus a clean
 * one (a checker that never fails proves nothing); (b) one real sweep of every fault kind through
 * the built harness (root, etcd on PATH, `npm run build` first).
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { check, checkAvailability, FinalDb, readFinalDb, ViolationKind } from '../../src/chaos/checker';
import { FAULT_KINDS, planSchedule } from '../../src/chaos/faults';
import { CompleteLine, InvokeLine, Op, opsFromLines, readHistoryFiles } from '../../src/chaos/history';
import { writeOutcomeOf } from '../../src/chaos/node-worker';
import { Prng } from '../../src/chaos/prng';
import { parseDuration } from '../../src/chaos/main';
import type { ChaosReport } from '../../src/chaos/report';
import { SCHEMA_SQL } from '../../src/chaos/schema';

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
    expect(new Set(a.slice(0, 4).map((f) => f.kind))).toEqual(new Set(FAULT_KINDS));
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

const MAIN = path.join(__dirname, '..', '..', 'dist', 'chaos', 'main.js');

describe('the harness', () => {
  beforeAll(() => {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build first`);
  });

  test('--fs sshfs is refused clearly (exit 2) until the lockless mode exists', () => {
    const r = spawnSync(process.execPath, [MAIN, '--fs', 'sshfs', '--duration', '5s'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not yet supported: the lockless mode is being built/);
  });

  test('a real 40 s sweep of every fault kind: exit 0, each kind injected, zero violations', async () => {
    const child = spawn(process.execPath, [MAIN, '--duration', '40s', '--faults', 'kill,pause,partition,etcd', '--seed', '1', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGTERM'), 85000); // the harness cleans up on SIGTERM
    const code = await new Promise<number | null>((r) => child.on('close', r));
    clearTimeout(killer);
    let report: ChaosReport;
    try {
      report = JSON.parse(stdout);
    } catch {
      throw new Error(`no JSON report (exit ${code}); stderr:\n${stderr.slice(-4000)}`);
    }
    if (code !== 0 || !report.ok) process.stderr.write(`${stderr.slice(-6000)}\n`);
    expect(report.violations).toEqual([]);
    expect(code).toBe(0);
    const injected = new Set(report.faults.filter((f) => f.injected).map((f) => f.kind));
    expect([...injected].sort()).toEqual([...FAULT_KINDS].sort());
    expect(report.missingKinds).toEqual([]);
    expect(report.stats.integrity).toBe('ok');
    expect(report.stats.append.acked).toBeGreaterThan(20);
    expect(report.stats.bank.readsChecked).toBeGreaterThan(5);
    expect(report.wallMs).toBeLessThan(60000);
  }, 95000);
});
