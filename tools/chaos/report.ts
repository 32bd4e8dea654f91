/**
 * The report: one JSON object (stable field names, for CI and other tools) and a text summary
 * with a fault table and a check table. ok is false on any violation.
 */
import type { Availability, CheckResult, Violation } from './checker';
import type { FaultKind, FaultRecord } from './faults';

export interface ChaosReport {
  ok: boolean;
  seed: number;
  durationMs: number;
  nodes: number;
  fs: string;
  /**
   * The storage mode: what --fs requires ('none' on sshfs, 'trusted' on local), what open() chose
   * for the harness's setup, and per mode how many node starts (all incarnations) reported it.
   */
  locks: { expected: string; setup: string; nodeStarts: Record<string, number> };
  faultKinds: FaultKind[];
  startedAt: string;
  wallMs: number;
  dir: string;
  kept: boolean;
  faults: (FaultRecord & {
    availability: Availability | null;
    /** The operation inside the large transaction when it was killed or paused, and its fate. */
    subjectOp: { id: string; outcome: string; crashed: boolean; committed: boolean } | null;
  })[];
  /** Kinds requested but never injected (the run was too short, or injection failed). */
  missingKinds: FaultKind[];
  skippedFaults: number;
  stats: CheckResult['stats'];
  violationCounts: CheckResult['counts'] & { availability?: number };
  violations: Violation[];
  /** Node processes that exited without being told to (logged, restarted). */
  unexpectedExits: string[];
  historyLinesSkipped: number;
  /** Harness failures (a fault that could not be injected or undone): exit 3 when checks pass. */
  errors: string[];
}

function pad(s: string | number, n: number, right = false): string {
  const t = String(s);
  return right ? t.padStart(n) : t.padEnd(n);
}

function ms(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : String(Math.round(v));
}

export function formatReport(r: ChaosReport): string {
  const out: string[] = [];
  const t0 = r.faults[0]?.injectAt ?? 0;
  out.push(
    `sqlite-ha chaos: seed ${r.seed}, ${Math.round(r.durationMs / 1000)} s of faults, ${r.nodes} nodes, fs ${r.fs} ` +
      `(locks ${Object.entries(r.locks.nodeStarts).map(([m, n]) => `'${m}' in ${n} node start${n === 1 ? '' : 's'}`).join(', ') || 'not reported'}), ` +
      `faults ${r.faultKinds.join(',') || 'none'} (wall ${Math.round(r.wallMs / 1000)} s)`,
  );
  out.push('');
  out.push('Faults (ms. resumed: first write started after the injection acknowledged; max gap: longest time without an');
  out.push('ack until recovery; after heal: first ack after the fault was undone; target: the faulted node\'s own first ack)');
  out.push(`  ${pad('#', 3)}${pad('type', 19)}${pad('target', 9)}${pad('at s', 7, true)}${pad('held', 7, true)}${pad('resumed', 9, true)}${pad('max gap', 9, true)}${pad('after heal', 12, true)}${pad('target', 8, true)}${pad('fail/unk', 10, true)}`);
  for (const f of r.faults) {
    const a = f.availability;
    out.push(
      `  ${pad(f.index, 3)}${pad(f.type, 19)}${pad(f.target.replace('etcd ', 'etcd:'), 9)}` +
        `${pad(((f.injectAt - t0) / 1000).toFixed(1), 7, true)}${pad(ms(f.healAt - f.injectAt), 7, true)}` +
        `${pad(ms(a?.writesResumedMs), 9, true)}${pad(ms(a?.maxGapMs), 9, true)}${pad(ms(a?.afterHealMs), 12, true)}${pad(ms(a?.targetAfterHealMs), 8, true)}` +
        `${pad(a ? `${a.failedWrites}/${a.unknownWrites}` : '—', 10, true)}` +
        (f.subjectOp ? `  ${f.subjectOp.id}: ${f.subjectOp.crashed ? 'died in flight' : f.subjectOp.outcome}, ${f.subjectOp.committed ? 'committed' : 'not committed'}` : '') +
        (f.injected ? '' : '  NOT INJECTED') + (f.error ? `  error: ${f.error.slice(0, 80)}` : ''),
    );
  }
  if (r.missingKinds.length) out.push(`  kinds never injected: ${r.missingKinds.join(', ')}`);
  if (r.skippedFaults) out.push(`  ${r.skippedFaults} planned fault(s) did not fit in the duration`);
  out.push('');
  const s = r.stats;
  const c = r.violationCounts as Record<string, number | undefined>;
  const count = (...kinds: string[]) => kinds.reduce((n, k) => n + (c[k] ?? 0), 0);
  out.push('Checks');
  out.push(`  ${pad('check', 13)}${pad('checked', 80)}violations`);
  const rows: [string, string, number][] = [
    ['bank', `${s.bank.readsChecked} reads (${s.bank.linearizableReads} linearizable), ${s.bank.transfersAcked} acked transfers, final total ${s.bank.finalTotal}/${s.bank.expectedTotal}`,
      count('bank-total', 'negative-balance', 'bank-snapshot', 'bank-final', 'transfer-mismatch')],
    ['append', `${s.append.acked} acked (${s.append.ackedPresent} present once), ${s.append.failed} failed, ${s.append.unknown} unknown (${s.append.unknownCommitted} committed)`,
      count('lost-ack', 'duplicate', 'failed-present', 'phantom', 'txid-mismatch', 'append-order')],
    ['fence', `${s.fence.commits} commits, ${s.fence.distinctFences} fences, meta txid ${s.fence.metaTxid} fence ${s.fence.metaFence}`,
      count('fence-decrease', 'txid-duplicate', 'txid-gap', 'commit-order')],
    ['order', `${s.order.writesChecked} writes, ${s.order.readsChecked} linearizable reads in real-time order`, count('realtime-order', 'stale-read')],
    ['integrity', `integrity_check: ${s.integrity.slice(0, 50)}`, count('integrity')],
    ['availability', `${r.faults.filter((f) => f.injected).length} faults recovered within the bound`, count('availability')],
  ];
  for (const [name, what, n] of rows) out.push(`  ${pad(name, 13)}${pad(what.length > 78 ? what.slice(0, 77) + '…' : what, 79)} ${n}`);
  out.push('');
  out.push(
    `Operations: ${s.ops.total} (ok ${s.ops.ok}, fail ${s.ops.fail}, unknown ${s.ops.unknown} of which ${s.ops.crashed} crashed); ` +
      `writes unknown: ${s.writes.unknown} (${s.writes.unknownCommitted} committed, ${s.writes.unknownAbsent} absent)`,
  );
  const errs = Object.entries(s.errors).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
  if (errs) out.push(`Errors: ${errs}`);
  for (const [code, example] of Object.entries(s.errorExamples)) {
    if (!code.startsWith('SQLITE_HA_') && code !== 'CRASHED') out.push(`  ${code}: ${example.slice(0, 200)}`);
  }
  if (s.unclassifiedErrors) {
    out.push(`Warning: ${s.unclassifiedErrors} failed write(s) threw an error with no SQLITE_HA_*/SQLITE_* code (outside the error contract); counted as unknown outcome`);
  }
  if (r.unexpectedExits.length) out.push(`Unexpected node exits: ${r.unexpectedExits.length}: ${r.unexpectedExits.slice(0, 3).join(' ; ')}`);
  if (r.historyLinesSkipped) out.push(`History lines skipped (torn by SIGKILL): ${r.historyLinesSkipped}`);
  for (const e of r.errors) out.push(`Harness: ${e}`);
  out.push('');
  if (r.violations.length) {
    out.push('Violations');
    for (const v of r.violations.slice(0, 40)) out.push(`  [${v.check}/${v.kind}] ${v.message}`);
    const total = Object.values(c).reduce<number>((a, b) => a + (b ?? 0), 0);
    if (total > 40) out.push(`  … ${total - 40} more (see the JSON report)`);
    out.push('');
  }
  out.push(`${r.ok ? 'PASS' : 'FAIL'}: ${r.ok ? 'no violations' : `${Object.values(c).reduce<number>((a, b) => a + (b ?? 0), 0)} violation(s)`}` +
    (r.kept ? `; histories, database and logs kept in ${r.dir}` : ''));
  return out.join('\n');
}
