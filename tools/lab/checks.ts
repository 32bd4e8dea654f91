/**
 * Checks the lab adds to the chaos checker's, pure functions of the histories and the final file
 * (unit-tested on hand-made histories):
 *   contract  every failed or unknown operation ended in one of the library's typed errors
 *             (SQLITE_HA_*) or a documented definite failure (SQLITE_BUSY*): a raw SQLite error
 *             (SQLITE_CORRUPT, SQLITE_IOERR_*, SQLITE_READONLY_*) from a hand-over is a violation;
 *   counter   the file holds exactly one row per acknowledged append plus the unknown ones that
 *             committed (the count is exact);
 *   fresh     without an injected NFS fault, no write failed on a storage error (a StorageFaultError or
 *             CommitOutcomeUnknownError, i.e. a raw SQLITE_CORRUPT/IOERR wrapped): each hand-over
 *             must start on a fresh view of the file, not merely fail cleanly when it does not;
 *   handover  the scenario really moved the lease between hosts (else it proved nothing).
 */
import type { FinalDb } from '../chaos/checker';
import { isWrite, Op } from '../chaos/history';

export interface LabViolation {
  check: 'contract' | 'fresh' | 'counter' | 'handover' | 'failover' | 'zombie' | 'locks';
  message: string;
}

const CONTRACT = /^(SQLITE_HA_[A-Z_]+|SQLITE_BUSY(_SNAPSHOT)?|SQLITE_LOCKED)$/;

/** Failed/unknown operations whose error is outside the library's contract, grouped by code. */
export function contractViolations(ops: Op[]): { violations: LabViolation[]; rawByCode: Record<string, number> } {
  const rawByCode: Record<string, number> = {};
  const examples: Record<string, string> = {};
  for (const o of ops) {
    if (o.outcome === 'ok' || o.crashed || !o.error) continue;
    if (CONTRACT.test(o.error.code)) continue;
    rawByCode[o.error.code] = (rawByCode[o.error.code] ?? 0) + 1;
    examples[o.error.code] ??= `${o.op} ${o.id}: ${o.error.message}`;
  }
  const violations = Object.entries(rawByCode).map(([code, n]) => ({
    check: 'contract' as const,
    message: `${n} operation(s) failed with raw ${code} instead of a typed outcome, e.g. ${examples[code].slice(0, 200)}`,
  }));
  return { violations, rawByCode };
}

const STORAGE_FAULTS = new Set(['SQLITE_HA_STORAGE_FAULT', 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN']);

/** Operations that failed on a storage error, counted by the SQLite code underneath (from the message). */
export function storageFaults(ops: Op[]): { byCode: Record<string, number>; examples: string[] } {
  const byCode: Record<string, number> = {};
  const examples: string[] = [];
  for (const o of ops) {
    if (o.outcome === 'ok' || o.crashed || !o.error || !STORAGE_FAULTS.has(o.error.code)) continue;
    const inner = /\b(SQLITE_[A-Z_]+)\b/.exec(o.error.message.replace(/SQLITE_HA_[A-Z_]+/g, ''))?.[1] ?? 'unknown';
    const key = `${o.error.code}(${inner})`;
    byCode[key] = (byCode[key] ?? 0) + 1;
    if (examples.length < 3) examples.push(`${o.op} ${o.id} on ${o.node}: ${o.error.message.slice(0, 200)}`);
  }
  return { byCode, examples };
}

/** The `fresh` check: storage faults are violations unless the run injected NFS faults. */
export function freshViolations(ops: Op[], nfsFaultsInjected: boolean): LabViolation[] {
  if (nfsFaultsInjected) return [];
  const { byCode, examples } = storageFaults(ops);
  const n = Object.values(byCode).reduce((a, b) => a + b, 0);
  return n === 0 ? [] : [{
    check: 'fresh',
    message: `${n} write(s) failed on a storage error with no NFS fault injected (${Object.entries(byCode).map(([k, v]) => `${k} ${v}`).join(', ')}): ` +
      `a hand-over started on a view that was not fresh; e.g. ${examples.join(' | ')}`,
  }];
}

export interface CounterStats {
  rows: number;
  acked: number;
  unknownCommitted: number;
  expected: number;
}

/** The counter: rows in `appends` = acknowledged + unknown-but-committed, each present once. */
export function counterCheck(ops: Op[], db: FinalDb): { stats: CounterStats; violations: LabViolation[] } {
  const present = new Set(db.appends.map((a) => a.value));
  const appends = ops.filter((o) => o.op === 'append');
  const acked = appends.filter((o) => o.outcome === 'ok').length;
  const unknownCommitted = appends.filter((o) => o.outcome === 'unknown' && present.has(o.value ?? o.id)).length;
  const stats = { rows: db.appends.length, acked, unknownCommitted, expected: acked + unknownCommitted };
  const violations: LabViolation[] = stats.rows === stats.expected ? [] : [{
    check: 'counter',
    message: `the counter is ${stats.rows}, expected ${stats.expected} (${acked} acknowledged + ${unknownCommitted} unknown that committed)`,
  }];
  return { stats, violations };
}

/** Lease moves between different nodes, from the acquisition events in time order. */
export function countHandovers(acquisitions: { at: number; node: string }[]): number {
  let n = 0;
  const sorted = acquisitions.slice().sort((a, b) => a.at - b.at);
  for (let i = 1; i < sorted.length; i++) if (sorted[i].node !== sorted[i - 1].node) n++;
  return n;
}

/** First acknowledged write by another node after `at` (host ms), or null. */
export function firstAckAfter(ops: Op[], at: number, notNode: string | null): Op | null {
  let best: Op | null = null;
  for (const o of ops) {
    if (!isWrite(o) || o.outcome !== 'ok' || o.ret === null || o.call < at - 60000) continue;
    if (o.ret <= at || o.node === notNode) continue;
    if (!best || o.ret < best.ret!) best = o;
  }
  return best;
}

/**
 * Hand-over times: from a node's lease release to the next holder's first acknowledged operation,
 * for each acquisition by a different node than the one that released last (host ms).
 */
export function handoverTimes(
  releases: { at: number; node: string }[], acquisitions: { at: number; node: string }[], acks: { at: number; node: string }[],
): number[] {
  const out: number[] = [];
  const acqs = acquisitions.slice().sort((a, b) => a.at - b.at);
  const rels = releases.slice().sort((a, b) => a.at - b.at);
  const sortedAcks = acks.slice().sort((a, b) => a.at - b.at);
  for (let i = 0; i < acqs.length; i++) {
    const a = acqs[i];
    const prevAcq = i > 0 ? acqs[i - 1].at : -Infinity;
    const rel = rels.filter((r) => r.at <= a.at && r.at >= prevAcq && r.node !== a.node).pop();
    if (!rel) continue;
    const until = i + 1 < acqs.length ? acqs[i + 1].at : Infinity;
    const ack = sortedAcks.find((k) => k.node === a.node && k.at >= a.at && k.at <= until);
    if (ack) out.push(ack.at - rel.at);
  }
  return out;
}
