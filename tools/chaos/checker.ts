/**
 * The checker: reads the histories and the final database and reports every violation. It is a
 * pure function of its inputs (check(), checkAvailability()), so hand-made histories test it.
 *
 * Ground truth is the final file: `commits` has one row per committed workload transaction, written
 * inside it with the meta row's fence and txid; `appends` and `transfers` hold the workloads' data.
 *
 * Bank     every ok read (any node, any consistency) sums to accounts × initial and has no negative
 *          balance; each read equals the replay of the committed transfers up to its txid (no torn
 *          or invented state); the final balances equal the replay of all transfers.
 * Append   every acknowledged append is in the file exactly once, at the txid it was acknowledged
 *          with; a definitely failed one is absent; an unknown one is reported as committed or
 *          absent, never counted as lost or as done; the rowid order agrees with txid order;
 *          nothing is in the file that no node attempted.
 * Fence    in txid order the fence never decreases; txids are unique and contiguous up to the meta
 *          row (a gap is a committed transaction that vanished); acknowledged txid/fence match.
 * Order    real time: a write that started after another write or read returned has a larger txid;
 *          a linearizable read sees at least every txid that was acknowledged or read before it
 *          started (docs/HAZARDS.md H4: a stale read is a violation, not just a slow one).
 * Integrity PRAGMA integrity_check says ok.
 */
import Database from 'better-sqlite3';
import { hasMetaTable, readMetaAnyVersion } from '../../src/storage/meta';
import { isWrite, Op, OpName } from './history';
import type { BankConfig } from './schema';

export interface FinalDb {
  integrity: string;
  meta: { fence: number; txid: number };
  accounts: { id: number; balance: number }[];
  transfers: { txid: number; src: number; dst: number; amount: number; opid: string }[];
  appends: { rowid: number; value: string; node: string; txid: number; fence: number }[];
  commits: { rowid: number; txid: number; fence: number; node: string; op: string; opid: string }[];
}

export type CheckName = 'bank' | 'append' | 'fence' | 'order' | 'integrity' | 'availability';
export type ViolationKind =
  | 'lost-ack' | 'duplicate' | 'failed-present' | 'phantom' | 'txid-mismatch' | 'append-order'
  | 'fence-decrease' | 'txid-duplicate' | 'txid-gap' | 'commit-order'
  | 'bank-total' | 'negative-balance' | 'bank-snapshot' | 'bank-final' | 'transfer-mismatch'
  | 'stale-read' | 'realtime-order' | 'integrity' | 'availability';

export interface Violation {
  check: CheckName;
  kind: ViolationKind;
  message: string;
  ops?: string[];
}

export interface CheckStats {
  ops: { total: number; ok: number; fail: number; unknown: number; crashed: number };
  byOp: Record<OpName, { ok: number; fail: number; unknown: number }>;
  bank: { readsChecked: number; linearizableReads: number; transfersAcked: number; transfersApplied: number; finalTotal: number; expectedTotal: number };
  append: { acked: number; ackedPresent: number; failed: number; failedAbsent: number; unknown: number; unknownCommitted: number; unknownAbsent: number; rows: number };
  writes: { acked: number; failed: number; unknown: number; unknownCommitted: number; unknownAbsent: number };
  fence: { commits: number; distinctFences: number; maxFence: number; metaTxid: number; metaFence: number };
  order: { writesChecked: number; readsChecked: number };
  integrity: string;
  /** Error codes of failed/unknown operations, with counts. */
  errors: Record<string, number>;
  /** One message per error code (the first seen), to tell unexpected errors apart. */
  errorExamples: Record<string, string>;
  /**
   * Failed writes whose error has no SQLITE_HA_* or SQLITE_* code: outside the library's error
   * contract, so the caller cannot tell whether it committed; the checker treats them as unknown.
   */
  unclassifiedErrors: number;
}

export interface CheckResult {
  violations: Violation[];
  /** Violations per kind, including ones left out of `violations` to keep the report short. */
  counts: Partial<Record<ViolationKind, number>>;
  stats: CheckStats;
}

const KEEP_PER_KIND = 20;

class Violations {
  readonly list: Violation[] = [];
  readonly counts: Partial<Record<ViolationKind, number>> = {};
  add(check: CheckName, kind: ViolationKind, message: string, ops?: string[]): void {
    const n = (this.counts[kind] ?? 0) + 1;
    this.counts[kind] = n;
    if (n <= KEEP_PER_KIND) this.list.push({ check, kind, message, ...(ops ? { ops } : {}) });
  }
}

function group<T, K>(items: T[], key: (t: T) => K): Map<K, T[]> {
  const m = new Map<K, T[]>();
  for (const it of items) {
    const k = key(it);
    const arr = m.get(k);
    if (arr) arr.push(it);
    else m.set(k, [it]);
  }
  return m;
}

export function check(ops: Op[], db: FinalDb, bank: BankConfig): CheckResult {
  const v = new Violations();
  const expectedTotal = bank.accounts * bank.initialBalance;
  const stats: CheckStats = {
    ops: { total: ops.length, ok: 0, fail: 0, unknown: 0, crashed: 0 },
    byOp: { append: { ok: 0, fail: 0, unknown: 0 }, transfer: { ok: 0, fail: 0, unknown: 0 }, read: { ok: 0, fail: 0, unknown: 0 } },
    bank: { readsChecked: 0, linearizableReads: 0, transfersAcked: 0, transfersApplied: 0, finalTotal: 0, expectedTotal },
    append: { acked: 0, ackedPresent: 0, failed: 0, failedAbsent: 0, unknown: 0, unknownCommitted: 0, unknownAbsent: 0, rows: db.appends.length },
    writes: { acked: 0, failed: 0, unknown: 0, unknownCommitted: 0, unknownAbsent: 0 },
    fence: { commits: db.commits.length, distinctFences: new Set(db.commits.map((c) => c.fence)).size, maxFence: 0, metaTxid: db.meta.txid, metaFence: db.meta.fence },
    order: { writesChecked: 0, readsChecked: 0 },
    integrity: db.integrity,
    errors: {},
    errorExamples: {},
    unclassifiedErrors: 0,
  };
  for (const op of ops) {
    stats.ops[op.outcome]++;
    if (op.crashed) stats.ops.crashed++;
    stats.byOp[op.op][op.outcome]++;
    if (op.outcome !== 'ok') {
      const code = op.crashed ? 'CRASHED' : op.error?.code ?? 'ERROR';
      if (!op.crashed && isWrite(op) && !code.startsWith('SQLITE_')) stats.unclassifiedErrors++;
      stats.errors[code] = (stats.errors[code] ?? 0) + 1;
      if (!(code in stats.errorExamples)) stats.errorExamples[code] = op.crashed ? `${op.id}: the process died before it returned` : `${op.id} (${op.op}, ${op.outcome}): ${op.error?.message ?? ''}`;
    }
  }

  // ---- integrity -----------------------------------------------------------------------------
  if (db.integrity !== 'ok') v.add('integrity', 'integrity', `PRAGMA integrity_check: ${db.integrity.slice(0, 500)}`);

  // ---- fence: the commits table in txid order --------------------------------------------------
  const commitsByTxid = group(db.commits, (c) => c.txid);
  const byTxid = [...db.commits].sort((a, b) => a.txid - b.txid || a.rowid - b.rowid);
  for (const [txid, rows] of commitsByTxid) {
    if (rows.length > 1) {
      v.add('fence', 'txid-duplicate', `txid ${txid} was committed ${rows.length} times (${rows.map((r) => `${r.opid}@fence ${r.fence}`).join(', ')}): two writers bumped the same meta row`, rows.map((r) => r.opid));
    }
  }
  let maxFence = 0;
  let prev: FinalDb['commits'][number] | null = null;
  for (const c of byTxid) {
    if (prev && c.fence < prev.fence) {
      v.add('fence', 'fence-decrease', `txid ${c.txid} (${c.opid}, node ${c.node}) carries fence ${c.fence} after txid ${prev.txid} (${prev.opid}) carried fence ${prev.fence}`, [prev.opid, c.opid]);
    }
    maxFence = Math.max(maxFence, c.fence);
    prev = c;
  }
  stats.fence.maxFence = maxFence;
  if (db.meta.fence < maxFence) v.add('fence', 'fence-decrease', `the meta row's fence ${db.meta.fence} is below fence ${maxFence} recorded by a commit`);
  if (byTxid.length > 0) {
    const first = byTxid[0].txid;
    const last = Math.max(byTxid[byTxid.length - 1].txid, db.meta.txid);
    let missing = 0;
    const examples: number[] = [];
    for (let t = first; t <= last; t++) {
      if (!commitsByTxid.has(t)) {
        missing++;
        if (examples.length < 10) examples.push(t);
      }
    }
    if (missing > 0) {
      v.add('fence', 'txid-gap', `${missing} txid(s) between ${first} and ${last} (meta row txid ${db.meta.txid}) have no commit row, e.g. ${examples.join(', ')}: committed transactions that vanished`);
    }
    if (db.meta.txid < byTxid[byTxid.length - 1].txid) {
      v.add('fence', 'txid-gap', `the meta row's txid ${db.meta.txid} is below txid ${byTxid[byTxid.length - 1].txid} recorded by a commit`);
    }
  }
  const byRowid = [...db.commits].sort((a, b) => a.rowid - b.rowid);
  for (let i = 1; i < byRowid.length; i++) {
    if (byRowid[i].txid <= byRowid[i - 1].txid) {
      v.add('fence', 'commit-order', `commit row ${byRowid[i].rowid} (txid ${byRowid[i].txid}) follows row ${byRowid[i - 1].rowid} (txid ${byRowid[i - 1].txid})`, [byRowid[i - 1].opid, byRowid[i].opid]);
    }
  }

  // ---- writes against the file (every write op has exactly one commits row iff it committed) ----
  const opsById = new Map(ops.map((o) => [o.id, o]));
  const commitsByOpid = group(db.commits, (c) => c.opid);
  const appendsByValue = group(db.appends, (a) => a.value);
  const transfersByOpid = group(db.transfers, (t) => t.opid);
  for (const op of ops) {
    if (!isWrite(op)) continue;
    const check: CheckName = op.op === 'append' ? 'append' : 'bank';
    const rows = commitsByOpid.get(op.id) ?? [];
    const dataRows = op.op === 'append' ? appendsByValue.get(op.value ?? op.id) ?? [] : null;
    const present = rows.length > 0 || (dataRows !== null && dataRows.length > 0);
    if (op.outcome === 'ok') {
      stats.writes.acked++;
      if (op.op === 'append') stats.append.acked++;
      else stats.bank.transfersAcked++;
      if (rows.length === 0 || (dataRows !== null && dataRows.length === 0)) {
        v.add(check, 'lost-ack', `${op.op} ${op.id} was acknowledged at txid ${op.txid} (fence ${op.fence}) but ${rows.length === 0 ? 'has no commit row' : 'its value is not in appends'}`, [op.id]);
        continue;
      }
      if (rows.length > 1 || (dataRows !== null && dataRows.length > 1)) {
        v.add(check, 'duplicate', `${op.op} ${op.id} is in the file ${Math.max(rows.length, dataRows?.length ?? 0)} times (txids ${[...rows.map((r) => r.txid), ...(dataRows ?? []).map((r) => r.txid)].join(', ')})`, [op.id]);
        continue;
      }
      const row = rows[0];
      if (op.txid !== row.txid || (op.fence !== null && op.fence !== row.fence) || (dataRows && dataRows[0].txid !== row.txid)) {
        v.add(check, 'txid-mismatch', `${op.op} ${op.id} was acknowledged at txid ${op.txid}/fence ${op.fence} but the file has it at txid ${row.txid}/fence ${row.fence}`, [op.id]);
        continue;
      }
      if (op.op === 'append') stats.append.ackedPresent++;
    } else if (op.outcome === 'fail') {
      stats.writes.failed++;
      if (op.op === 'append') stats.append.failed++;
      if (present) {
        v.add(check, 'failed-present', `${op.op} ${op.id} failed definitely (${op.error?.code}) but is in the file at txid ${rows[0]?.txid ?? dataRows?.[0]?.txid}`, [op.id]);
      } else if (op.op === 'append') stats.append.failedAbsent++;
    } else {
      stats.writes.unknown++;
      if (present) stats.writes.unknownCommitted++;
      else stats.writes.unknownAbsent++;
      if (op.op === 'append') {
        stats.append.unknown++;
        if (present) stats.append.unknownCommitted++;
        else stats.append.unknownAbsent++;
      }
      // Unknown: either is fine, but never twice.
      if (rows.length > 1 || (dataRows !== null && dataRows.length > 1)) {
        v.add(check, 'duplicate', `${op.op} ${op.id} (outcome unknown) is in the file ${Math.max(rows.length, dataRows?.length ?? 0)} times`, [op.id]);
      }
    }
    // Transfers: the transfers row exists iff the committed transfer was applied.
    if (op.op === 'transfer' && rows.length === 1) {
      const t = transfersByOpid.get(op.id) ?? [];
      if (op.outcome === 'ok' && op.applied === true && (t.length !== 1 || t[0].txid !== rows[0].txid)) {
        v.add('bank', 'transfer-mismatch', `transfer ${op.id} was acknowledged as applied at txid ${op.txid} but has ${t.length} transfer row(s)`, [op.id]);
      } else if (op.outcome === 'ok' && op.applied === false && t.length > 0) {
        v.add('bank', 'transfer-mismatch', `transfer ${op.id} was acknowledged as not applied but has a transfer row`, [op.id]);
      }
      if (op.outcome === 'ok' && op.applied) stats.bank.transfersApplied++;
    }
  }
  // Rows that no node ever attempted.
  for (const [opid, rows] of commitsByOpid) {
    if (opid !== 'setup' && !opsById.has(opid)) {
      v.add('fence', 'phantom', `commit row ${opid} (txid ${rows[0].txid}) belongs to no operation in any history`, [opid]);
    }
  }
  for (const [value, rows] of appendsByValue) {
    if (!opsById.has(value)) v.add('append', 'phantom', `append value ${value} (txid ${rows[0].txid}) belongs to no operation in any history`, [value]);
    else if (rows.length > 1 && opsById.get(value)!.outcome === 'fail') {
      /* reported as failed-present above */
    }
  }
  for (const t of db.transfers) {
    const c = commitsByOpid.get(t.opid);
    if (!c || !c.some((r) => r.txid === t.txid)) {
      v.add('bank', 'transfer-mismatch', `transfer row ${t.opid} at txid ${t.txid} has no commit row at that txid`, [t.opid]);
    }
  }
  // Append order: rowid order is commit order, so txids must rise.
  const appendsByRowid = [...db.appends].sort((a, b) => a.rowid - b.rowid);
  for (let i = 1; i < appendsByRowid.length; i++) {
    const a = appendsByRowid[i - 1];
    const b = appendsByRowid[i];
    if (b.txid <= a.txid) {
      v.add('append', 'append-order', `append ${b.value} (row ${b.rowid}, txid ${b.txid}) follows ${a.value} (row ${a.rowid}, txid ${a.txid})`, [a.value, b.value]);
    }
  }

  // ---- fence, as acknowledged: in txid order the acknowledged fences never decrease -------------
  const ackedWrites = ops.filter((o) => isWrite(o) && o.outcome === 'ok' && o.txid !== null && o.fence !== null).sort((a, b) => a.txid! - b.txid!);
  for (let i = 1; i < ackedWrites.length; i++) {
    const a = ackedWrites[i - 1];
    const b = ackedWrites[i];
    if (b.fence! < a.fence!) {
      v.add('fence', 'fence-decrease', `acknowledged ${b.id} at txid ${b.txid} carries fence ${b.fence}, below fence ${a.fence} of ${a.id} at txid ${a.txid}`, [a.id, b.id]);
    }
  }

  // ---- bank ------------------------------------------------------------------------------------
  const reads = ops.filter((o) => o.op === 'read' && o.outcome === 'ok' && Array.isArray(o.balances));
  for (const r of reads) {
    stats.bank.readsChecked++;
    if (r.consistency === 'linearizable') stats.bank.linearizableReads++;
    const total = r.balances!.reduce((s, b) => s + b, 0);
    if (total !== expectedTotal) {
      v.add('bank', 'bank-total', `read ${r.id} (${r.consistency}, txid ${r.txid}) sees total ${total}, expected ${expectedTotal}: [${r.balances!.join(', ')}]`, [r.id]);
    }
    const neg = r.balances!.findIndex((b) => b < 0);
    if (neg >= 0) v.add('bank', 'negative-balance', `read ${r.id} (txid ${r.txid}) sees account ${neg + 1} at ${r.balances![neg]}`, [r.id]);
  }
  // Replay the committed transfers in txid order; each read must equal the state at its txid.
  const initial = Array.from({ length: bank.accounts }, () => bank.initialBalance);
  const transfersSorted = [...db.transfers].sort((a, b) => a.txid - b.txid);
  const state = initial.slice();
  let ti = 0;
  const applyUpTo = (txid: number) => {
    while (ti < transfersSorted.length && transfersSorted[ti].txid <= txid) {
      const t = transfersSorted[ti++];
      if (t.src >= 1 && t.src <= bank.accounts && t.dst >= 1 && t.dst <= bank.accounts) {
        state[t.src - 1] -= t.amount;
        state[t.dst - 1] += t.amount;
      }
    }
  };
  for (const r of reads.filter((x) => x.txid !== null).sort((a, b) => a.txid! - b.txid!)) {
    applyUpTo(r.txid!);
    if (r.balances!.length !== bank.accounts || r.balances!.some((b, i) => b !== state[i])) {
      v.add('bank', 'bank-snapshot', `read ${r.id} at txid ${r.txid} sees [${r.balances!.join(', ')}], but the committed transfers up to txid ${r.txid} give [${state.join(', ')}]`, [r.id]);
    }
  }
  applyUpTo(Number.MAX_SAFE_INTEGER);
  const finalBalances = [...db.accounts].sort((a, b) => a.id - b.id).map((a) => a.balance);
  stats.bank.finalTotal = finalBalances.reduce((s, b) => s + b, 0);
  if (stats.bank.finalTotal !== expectedTotal) v.add('bank', 'bank-total', `the final balances total ${stats.bank.finalTotal}, expected ${expectedTotal}`);
  const finalNeg = finalBalances.findIndex((b) => b < 0);
  if (finalNeg >= 0) v.add('bank', 'negative-balance', `account ${finalNeg + 1} ends at ${finalBalances[finalNeg]}`);
  if (finalBalances.length !== bank.accounts || finalBalances.some((b, i) => b !== state[i])) {
    v.add('bank', 'bank-final', `final balances [${finalBalances.join(', ')}] differ from the replay of the committed transfers [${state.join(', ')}]`);
  }

  // ---- real-time order and stale reads ----------------------------------------------------------
  type Done = { op: Op; ret: number; txid: number; write: boolean };
  const done: Done[] = ops
    .filter((o) => o.outcome === 'ok' && o.txid !== null && o.ret !== null && (isWrite(o) || o.op === 'read'))
    .map((o) => ({ op: o, ret: o.ret!, txid: o.txid!, write: isWrite(o) }))
    .sort((a, b) => a.ret - b.ret);
  const started = done.slice().sort((a, b) => a.op.call - b.op.call);
  let di = 0;
  let maxW: Done | null = null;
  let maxR: Done | null = null;
  for (const b of started) {
    while (di < done.length && done[di].ret < b.op.call) {
      const d = done[di++];
      if (d.write && (!maxW || d.txid > maxW.txid)) maxW = d;
      if (!d.write && (!maxR || d.txid > maxR.txid)) maxR = d;
    }
    if (b.write) {
      stats.order.writesChecked++;
      const before = [maxW, maxR].find((x) => x && b.txid <= x.txid);
      if (before) {
        v.add('order', 'realtime-order', `${b.op.op} ${b.op.id} started at ${b.op.call} after ${before.op.op} ${before.op.id} returned at ${before.ret} with txid ${before.txid}, yet committed at txid ${b.txid}`, [before.op.id, b.op.id]);
      }
    } else if (b.op.consistency === 'linearizable') {
      stats.order.readsChecked++;
      const before = [maxW, maxR].find((x) => x && b.txid < x.txid);
      if (before) {
        v.add('order', 'stale-read', `linearizable read ${b.op.id} started at ${b.op.call} after ${before.op.op} ${before.op.id} returned at ${before.ret} with txid ${before.txid}, yet saw txid ${b.txid}`, [before.op.id, b.op.id]);
      }
    }
  }

  return { violations: v.list, counts: v.counts, stats };
}

// ---- availability --------------------------------------------------------------------------------

export interface FaultWindow {
  index: number;
  type: string;
  /** Node id (n1…) or "etcd m2". */
  target: string;
  injectAt: number;
  healAt: number;
  injected: boolean;
}

export interface Availability {
  index: number;
  type: string;
  /** First write invoked after the injection that succeeded: its return − injectAt. */
  writesResumedMs: number | null;
  /** Longest stretch without any acknowledged write, from injection to the first ack after healing. */
  maxGapMs: number | null;
  /** First acknowledged write after the fault was undone − healAt. */
  afterHealMs: number | null;
  /** For a node fault: the target node's own first acknowledged write after healAt − healAt. */
  targetAfterHealMs: number | null;
  /** Writes that failed or ended unknown between injection and recovery. */
  failedWrites: number;
  unknownWrites: number;
}

export function checkAvailability(
  faults: FaultWindow[], ops: Op[], boundMs: number, runEnd: number,
): { availability: Availability[]; violations: Violation[] } {
  const okWrites = ops.filter((o) => isWrite(o) && o.outcome === 'ok' && o.ret !== null).sort((a, b) => a.ret! - b.ret!);
  const out: Availability[] = [];
  const violations: Violation[] = [];
  for (const f of faults) {
    if (!f.injected) continue;
    const resumed = okWrites.filter((o) => o.call >= f.injectAt).reduce<number | null>((m, o) => (m === null || o.ret! < m ? o.ret! : m), null);
    const afterHeal = okWrites.find((o) => o.ret! > f.healAt)?.ret ?? null;
    let maxGap: number | null = null;
    if (afterHeal !== null) {
      let last = f.injectAt;
      maxGap = 0;
      for (const o of okWrites) {
        if (o.ret! <= f.injectAt) continue;
        if (o.ret! > afterHeal) break;
        maxGap = Math.max(maxGap, o.ret! - last);
        last = o.ret!;
      }
    }
    const targetAck = /^n\d+$/.test(f.target) ? okWrites.find((o) => o.node === f.target && o.ret! > f.healAt)?.ret ?? null : null;
    const end = afterHeal ?? runEnd;
    const during = ops.filter((o) => isWrite(o) && o.outcome !== 'ok' && (o.ret ?? o.call) >= f.injectAt && o.call <= end);
    out.push({
      index: f.index,
      type: f.type,
      writesResumedMs: resumed === null ? null : resumed - f.injectAt,
      maxGapMs: maxGap,
      afterHealMs: afterHeal === null ? null : afterHeal - f.healAt,
      targetAfterHealMs: targetAck === null ? null : targetAck - f.healAt,
      failedWrites: during.filter((o) => o.outcome === 'fail').length,
      unknownWrites: during.filter((o) => o.outcome === 'unknown').length,
    });
    if ((afterHeal === null || afterHeal - f.healAt > boundMs) && runEnd - f.healAt >= boundMs) {
      violations.push({
        check: 'availability',
        kind: 'availability',
        message: `fault ${f.index} (${f.type}): no write succeeded within ${boundMs} ms after it was undone`,
      });
    }
  }
  return { availability: out, violations };
}

// ---- the final database ------------------------------------------------------------------------------

/** Reads what the checker needs from the final file (every node must be stopped). */
export function readFinalDb(file: string): FinalDb {
  // Read-write so that a hot journal left by a crash is rolled back first, as the next holder would.
  const conn = new Database(file, { fileMustExist: true });
  try {
    conn.pragma('busy_timeout = 5000');
    const integrity = (conn.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    const has = (t: string) => Boolean(conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t));
    const all = <T>(t: string, sql: string): T[] => (has(t) ? (conn.prepare(sql).all() as T[]) : []);
    return {
      integrity,
      meta: (({ fence, txid }) => ({ fence, txid }))(hasMetaTable(conn) ? readMetaAnyVersion(conn) : { fence: 0, txid: 0 }),
      accounts: all('accounts', 'SELECT id, balance FROM accounts ORDER BY id'),
      transfers: all('transfers', 'SELECT txid, src, dst, amount, opid FROM transfers'),
      appends: all('appends', 'SELECT rowid, value, node, txid, fence FROM appends ORDER BY rowid'),
      commits: all('commits', 'SELECT rowid, txid, fence, node, op, opid FROM commits ORDER BY rowid'),
    };
  } finally {
    conn.close();
  }
}
