/**
 * The history format: one JSON object per line, one file per node (all incarnations append to it).
 * Every operation writes an `invoke` line before it starts and a `complete` line when it returns;
 * the complete line repeats everything, so a reader that only wants finished operations can read
 * complete lines alone. An invoke with no complete line is an operation whose process died under
 * it (SIGKILL): its outcome is unknown.
 *
 *   {"type":"invoke","id":"n1.2.17","node":"n1","inc":2,"seq":17,"op":"append","call":1712.., "value":"n1.2.17"}
 *   {"type":"complete","id":"n1.2.17",...,"ret":1712..,"outcome":"ok","txid":431,"fence":8812}
 *
 * Fields: id (unique: node.incarnation.seq), node, inc (process incarnation, 1 = first start),
 * seq, op ("append" | "transfer" | "read"), call and ret (wall-clock ms, same host clock for all
 * nodes), outcome ("ok" | "fail" | "unknown"), txid and fence (of the committed transaction for
 * ok writes, of the view for ok reads), attempt ({txid, fence} the write function saw when the
 * outcome is not ok), error ({code, message}).
 * Per op: append: value, bulk (true for the large transaction); transfer: from, to, amount,
 * applied (false when the source balance was too low: the transaction still commits);
 * read: consistency ("linearizable" | "local"), balances (account id order).
 */
import * as fs from 'fs';

export type Outcome = 'ok' | 'fail' | 'unknown';
export type OpName = 'append' | 'transfer' | 'read';

export interface OpFields {
  id: string;
  node: string;
  inc: number;
  seq: number;
  op: OpName;
  call: number;
  value?: string;
  bulk?: boolean;
  from?: number;
  to?: number;
  amount?: number;
  consistency?: 'linearizable' | 'local';
}

export interface InvokeLine extends OpFields {
  type: 'invoke';
}

export interface CompleteLine extends OpFields {
  type: 'complete';
  ret: number;
  outcome: Outcome;
  txid?: number | null;
  fence?: number | null;
  attempt?: { txid: number; fence: number } | null;
  applied?: boolean;
  balances?: number[];
  /** `stack` only for errors without a code (outside the library's contract), to find their origin. */
  error?: { code: string; message: string; stack?: string } | null;
}

/** One operation as the checker sees it: paired invoke/complete lines. */
export interface Op extends OpFields {
  ret: number | null;
  outcome: Outcome;
  /** True when the process died before the operation returned. */
  crashed: boolean;
  txid: number | null;
  fence: number | null;
  applied?: boolean;
  balances?: number[];
  error?: { code: string; message: string } | null;
}

export const WRITE_OPS: ReadonlySet<OpName> = new Set(['append', 'transfer']);

export function isWrite(op: Op): boolean {
  return WRITE_OPS.has(op.op);
}

/** Pairs invoke and complete lines into operations; unmatched invokes become crashed/unknown. */
export function opsFromLines(lines: (InvokeLine | CompleteLine)[]): Op[] {
  const byId = new Map<string, Op>();
  const order: string[] = [];
  for (const l of lines) {
    const existing = byId.get(l.id);
    if (l.type === 'invoke') {
      if (existing) continue;
      const { type: _t, ...fields } = l;
      byId.set(l.id, { ...fields, ret: null, outcome: 'unknown', crashed: true, txid: null, fence: null });
      order.push(l.id);
    } else {
      const { type: _t, ...fields } = l;
      const op: Op = {
        ...fields,
        ret: l.ret,
        outcome: l.outcome,
        crashed: false,
        txid: l.txid ?? null,
        fence: l.fence ?? null,
      };
      if (!existing) order.push(l.id);
      byId.set(l.id, op);
    }
  }
  return order.map((id) => byId.get(id)!);
}

export interface ReadHistoryResult {
  ops: Op[];
  lines: number;
  /** Lines that did not parse (a torn last line of a killed process). */
  skipped: string[];
}

/** Reads every history file; a line that does not parse is skipped and listed. */
export function readHistoryFiles(files: string[]): ReadHistoryResult {
  const lines: (InvokeLine | CompleteLine)[] = [];
  const skipped: string[] = [];
  for (const f of files) {
    if (!fs.existsSync(f)) continue;
    const text = fs.readFileSync(f, 'utf8');
    for (const raw of text.split('\n')) {
      if (!raw.trim()) continue;
      try {
        const obj = JSON.parse(raw);
        if (obj && (obj.type === 'invoke' || obj.type === 'complete') && typeof obj.id === 'string') lines.push(obj);
        else skipped.push(raw.slice(0, 200));
      } catch {
        skipped.push(raw.slice(0, 200));
      }
    }
  }
  return { ops: opsFromLines(lines), lines: lines.length, skipped };
}
