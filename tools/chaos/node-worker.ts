/**
 * One chaos node: a real process (started inside its own network namespace) that runs the bank and
 * append workloads through the library and writes every operation to its history file (format in
 * history.ts). It never decides what is correct: it records what it asked for and what it got.
 *
 * Run: node dist/chaos/node-worker.js '<WorkerConfig JSON>'
 * stdout: JSON events for the harness: ready, ack (a write succeeded), bulk-begin / bulk-end
 * (inside the large transaction, written synchronously so the harness can kill or pause it there),
 * lease (acquired/released/lost), done. stderr: diagnostics. `ready` carries `locks`, the storage
 * mode open() chose, and `db`, the path it opened (on sshfs: its own mount).
 *
 * Only db.read(fn) and db.write(fn) touch the database (never the synchronous better-sqlite3
 * surface of the handle), so the same worker runs in both storage modes: in the lockless mode
 * (locks 'none') reads happen only inside db.read() and writes only through db.write().
 * SIGTERM/SIGINT: finish the current operation, close (releasing the lease), exit 0.
 * SIGUSR2: make the next write the large transaction.
 */
import * as fs from 'fs';
import { commitOutcomeOf, open } from '../../src/index';
import type { OpenOptions } from '../../src/options';
import type { CompleteLine, InvokeLine, OpFields, Outcome } from './history';
import { Prng } from './prng';
import { BankConfig, readMetaRow, recordCommit } from './schema';

export interface WorkerConfig {
  /** Path of the shared database file. */
  db: string;
  endpoints: string[];
  /** PEM file paths for etcd's TLS (the chaos etcd serves clients over mutual TLS). */
  tls?: { ca: string; cert: string; key: string };
  prefix: string;
  nodeId: string;
  incarnation: number;
  historyFile: string;
  seed: number;
  bank: BankConfig;
  /** Passed through to open(): 'auto' reads the mount and picks 'none' on sshfs, 'trusted' on local. */
  locks?: 'auto' | 'trusted' | 'none';
  /**
   * The storage mode open() must end up in (`db.locks`): 'none' on sshfs, 'trusted' on a local
   * file. A mismatch is fatal before the first operation (event `fatal`, code LOCKS_MISMATCH).
   */
  expectLocks?: 'trusted' | 'none';
  leaseTtlMs: number;
  safetyMarginMs: number;
  idleReleaseMs: number;
  acquireTimeoutMs: number;
  rpcTimeoutMs: number;
  busyTimeoutMs: number;
  /** Pause between operations: uniform in [0, thinkMs]. */
  thinkMs: number;
  /** Rows (of padBytes each) in the large transaction. */
  bulkRows: number;
  padBytes: number;
  /** Upper bounds: the worker stops by itself after maxOps operations or maxRunMs. */
  maxOps: number;
  maxRunMs: number;
  /** Exit when this process is no longer our parent (the harness died). */
  parentPid: number;
  /**
   * Share of each operation (default append 0.45, transfer 0.35, read 0.2) and of linearizable
   * among reads (default 0.75). The NFS lab runs append-only counters and transfer/audit splits.
   */
  mix?: { append: number; transfer: number; read: number; linearizable?: number };
}

/** ok / fail / unknown for a failed write, as the library documents it (commitOutcomeOf, err.outcome). */
export function writeOutcomeOf(err: unknown): Exclude<Outcome, 'ok'> {
  return commitOutcomeOf(err) === 'not-committed' ? 'fail' : 'unknown';
}

function errorInfo(err: unknown): { code: string; message: string; stack?: string } {
  const e = err as { code?: unknown; message?: unknown; stack?: unknown };
  const info = { code: typeof e?.code === 'string' ? e.code : 'ERROR', message: String(e?.message ?? err).slice(0, 300) };
  // An error without a code breaks the library's contract: keep where it came from.
  return info.code === 'ERROR' && typeof e?.stack === 'string' ? { ...info, stack: e.stack.slice(0, 6000) } : info;
}

function event(obj: Record<string, unknown>): void {
  // Synchronous: the harness must see bulk-begin while we are still inside the transaction.
  try {
    fs.writeSync(1, JSON.stringify({ ...obj, at: Date.now() }) + '\n');
  } catch {
    /* harness gone: the parent check ends us */
  }
}

export async function runWorker(cfg: WorkerConfig): Promise<number> {
  // gRPC errors carry the stack of the call site: deep enough to reach the library's frames.
  Error.stackTraceLimit = Math.max(Error.stackTraceLimit, 40);
  const fd = fs.openSync(cfg.historyFile, 'a');
  const record = (line: InvokeLine | CompleteLine) => fs.writeSync(fd, JSON.stringify(line) + '\n');
  const prng = Prng.derive(cfg.seed, cfg.nodeId, cfg.incarnation);
  const startedAt = Date.now();
  let stopping = false;
  let bulkRequested = false;
  let wake: (() => void) | null = null;
  const stop = () => {
    stopping = true;
    wake?.();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGUSR2', () => (bulkRequested = true));
  const parentCheck = setInterval(() => {
    if (process.ppid !== cfg.parentPid) process.exit(3);
  }, 500);
  parentCheck.unref();

  const options: OpenOptions = {
    coordinator: { kind: 'etcd', endpoints: cfg.endpoints, prefix: cfg.prefix, ...(cfg.tls ? { tls: cfg.tls } : {}) },
    nodeId: cfg.nodeId,
    leaseTtlMs: cfg.leaseTtlMs,
    safetyMarginMs: cfg.safetyMarginMs,
    idleReleaseMs: cfg.idleReleaseMs,
    acquireTimeoutMs: cfg.acquireTimeoutMs,
    rpcTimeoutMs: cfg.rpcTimeoutMs,
    busyTimeoutMs: cfg.busyTimeoutMs,
  };
  if (cfg.locks) options.locks = cfg.locks;
  const db = await open(cfg.db, options);
  db.on('acquired', (e: { fence: number }) => event({ ev: 'lease', event: 'acquired', fence: e?.fence }));
  db.on('released', () => event({ ev: 'lease', event: 'released' }));
  db.on('lost', (e: { code?: string }) => event({ ev: 'lease', event: 'lost', code: e?.code }));
  if (cfg.expectLocks && db.locks !== cfg.expectLocks) {
    const message = `open() chose locks '${db.locks}' for ${cfg.db}; expected '${cfg.expectLocks}'`;
    event({ ev: 'fatal', code: 'LOCKS_MISMATCH', message, locks: db.locks });
    process.stderr.write(`node-worker ${cfg.nodeId}: ${message}\n`);
    await db.close().catch(() => undefined);
    fs.closeSync(fd);
    return 4;
  }
  event({ ev: 'ready', pid: process.pid, locks: db.locks, db: cfg.db });

  const tally = { ok: 0, fail: 0, unknown: 0 };
  const accountIds = Array.from({ length: cfg.bank.accounts }, (_, i) => i + 1);
  const pad = Math.max(1, cfg.padBytes);
  const mix = cfg.mix ?? { append: 0.45, transfer: 0.35, read: 0.2, linearizable: 0.75 };
  const total = mix.append + mix.transfer + mix.read || 1;
  const appendShare = mix.append / total;
  const transferShare = mix.transfer / total;
  const linearizableShare = mix.linearizable ?? 0.75;

  for (let seq = 1; seq <= cfg.maxOps && !stopping && Date.now() - startedAt < cfg.maxRunMs; seq++) {
    const id = `${cfg.nodeId}.${cfg.incarnation}.${seq}`;
    const base: OpFields = { id, node: cfg.nodeId, inc: cfg.incarnation, seq, op: 'append', call: 0 };
    const roll = prng.next();
    let fields: OpFields;
    const bulk = bulkRequested;
    bulkRequested = false;
    if (bulk || roll < appendShare) fields = { ...base, op: 'append', value: id, ...(bulk ? { bulk: true } : {}) };
    else if (roll < appendShare + transferShare) {
      const [from, to] = prng.shuffle(accountIds).slice(0, 2);
      fields = { ...base, op: 'transfer', from, to, amount: prng.int(1, Math.max(1, Math.floor(cfg.bank.initialBalance * 0.6))) };
    } else {
      const readRoll = (roll - appendShare - transferShare) / Math.max(1e-9, 1 - appendShare - transferShare);
      fields = { ...base, op: 'read', consistency: readRoll < linearizableShare ? 'linearizable' : 'local' };
    }

    fields.call = Date.now();
    record({ type: 'invoke', ...fields });
    let complete: CompleteLine;
    if (fields.op === 'read') {
      try {
        const r = await db.read(
          (c) => ({ meta: readMetaRow(c), balances: (c.prepare('SELECT balance FROM accounts ORDER BY id').all() as { balance: number }[]).map((x) => x.balance) }),
          { consistency: fields.consistency },
        );
        complete = { type: 'complete', ...fields, ret: Date.now(), outcome: 'ok', txid: r.meta.txid, fence: r.meta.fence, balances: r.balances };
      } catch (err) {
        complete = { type: 'complete', ...fields, ret: Date.now(), outcome: 'fail', error: errorInfo(err) };
      }
    } else {
      let attempt: { txid: number; fence: number } | null = null;
      let applied: boolean | undefined;
      try {
        await db.write((c) => {
          attempt = null;
          if (fields.op === 'append') {
            if (fields.bulk) {
              event({ ev: 'bulk-begin', id });
              c.exec('DELETE FROM bulk');
              const ins = c.prepare('INSERT INTO bulk (pad) VALUES (randomblob(?))');
              for (let i = 0; i < cfg.bulkRows; i++) ins.run(pad);
            }
            const m = recordCommit(c, cfg.nodeId, 'append', id);
            c.prepare('INSERT INTO appends (value, node, txid, fence) VALUES (?, ?, ?, ?)').run(id, cfg.nodeId, m.txid, m.fence);
            attempt = m;
            if (fields.bulk) event({ ev: 'bulk-end', id });
          } else {
            const m = recordCommit(c, cfg.nodeId, 'transfer', id);
            const src = c.prepare('SELECT balance FROM accounts WHERE id = ?').get(fields.from) as { balance: number } | undefined;
            applied = src !== undefined && src.balance >= fields.amount!;
            if (applied) {
              c.prepare('UPDATE accounts SET balance = balance - ? WHERE id = ?').run(fields.amount, fields.from);
              c.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?').run(fields.amount, fields.to);
              c.prepare('INSERT INTO transfers (txid, src, dst, amount, opid) VALUES (?, ?, ?, ?, ?)').run(m.txid, fields.from, fields.to, fields.amount, id);
            }
            attempt = m;
          }
        });
        const m = attempt as { txid: number; fence: number } | null;
        complete = { type: 'complete', ...fields, ret: Date.now(), outcome: 'ok', txid: m?.txid ?? null, fence: m?.fence ?? null, ...(applied !== undefined ? { applied } : {}) };
        event({ ev: 'ack', id });
      } catch (err) {
        complete = {
          type: 'complete', ...fields, ret: Date.now(), outcome: writeOutcomeOf(err), attempt, error: errorInfo(err),
          ...(applied !== undefined ? { applied } : {}),
        };
      }
    }
    record(complete);
    tally[complete.outcome]++;
    if (stopping) break;
    const think = prng.int(0, cfg.thinkMs);
    if (think > 0) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, think);
        wake = () => (clearTimeout(t), r());
      });
      wake = null;
    }
  }

  const closed = Promise.race([
    db.close().then(() => true, () => false),
    new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(2000, cfg.acquireTimeoutMs)).unref()),
  ]);
  const cleanClose = await closed;
  fs.closeSync(fd);
  event({ ev: 'done', ...tally, cleanClose });
  return 0;
}

if (require.main === module) {
  let cfg: WorkerConfig;
  try {
    cfg = JSON.parse(process.argv[2] ?? '');
  } catch {
    process.stderr.write('usage: node-worker.js <WorkerConfig JSON>\n');
    process.exit(2);
  }
  runWorker(cfg).then(
    (code) => process.exit(code),
    (err) => {
      event({ ev: 'fatal', ...errorInfo(err) });
      process.stderr.write(`node-worker ${cfg.nodeId}: ${(err as Error)?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
