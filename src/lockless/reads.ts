/**
 * Reads in the lockless mode (docs/HAZARDS.md H3, H4). Every read transaction takes a ticket from the
 * node's reader registration (src/coordinator/etcd/reader-registration.ts: no etcd call while no
 * writer's gate is closed, a wait while one is, so no reader is inside a commit window), reads on
 * a connection opened after the last published commit (close-to-open: a kept-open handle on
 * sshfs can stay stale forever), checks that the file's txid and epoch match the published
 * commit, and checks the ticket right after the read; if the ticket was voided meanwhile (the
 * node acknowledged a gate, or its registration may have expired: a paused reader) or SQLite saw
 * anything odd, the result is discarded, the connection reopened, and the read retried.
 */
import { monotonicNow } from '../clock';
import type Database from 'better-sqlite3';
import type { GatedCoordinator } from '../coordinator/types';
import { StaleViewError } from '../errors';
import { readMeta } from '../storage/meta';
import { isUntrustedView } from '../storage/sqlite-errors';

export interface ReadConnections {
  readonly ro: Database.Database;
  reopenReadOnly(): void;
}

export class LocklessReads {
  /** txid/epoch the read-only connection was validated at; null forces a reopen. */
  private validatedAt: { txid: number; epoch: number } | null = null;

  constructor(
    private readonly coordinator: GatedCoordinator,
    private readonly conns: ReadConnections,
    private readonly timeoutMs: number,
  ) {}

  async read<T>(fn: (conn: Database.Database) => T, enter: () => void, leave: () => void): Promise<T> {
    const deadline = monotonicNow() + this.timeoutMs;
    let last = { txid: 0, want: 0, epoch: 0, wantEpoch: 0 };
    for (let attempt = 0; ; attempt++) {
      const ticket = await this.coordinator.registerReader(deadline);
      const want = { txid: ticket.commit?.txid ?? 0, epoch: ticket.commit?.epoch ?? 0 };
      let outcome: { ok: true; result: T } | { ok: false; txid: number; epoch: number } = { ok: false, txid: -1, epoch: -1 };
      try {
        const v = this.validatedAt;
        if (attempt > 0 || !v || v.txid !== want.txid || v.epoch !== want.epoch) this.conns.reopenReadOnly();
        outcome = this.once(fn, want, enter, leave);
      } catch (err) {
        if (!isUntrustedView(err)) {
          await ticket.finish().catch(() => undefined);
          throw err;
        }
      }
      const intact = await ticket.finish();
      if (intact && outcome.ok) {
        this.validatedAt = want;
        return outcome.result;
      }
      this.validatedAt = null;
      last = outcome.ok
        ? { txid: want.txid, want: want.txid, epoch: want.epoch, wantEpoch: want.epoch }
        : { txid: outcome.txid, want: want.txid, epoch: outcome.epoch, wantEpoch: want.epoch };
      if (monotonicNow() > deadline) {
        // epoch -1: the last attempt hit a storage error before reading the meta row.
        const epochs = last.epoch >= 0 ? { local: last.epoch, published: last.wantEpoch } : undefined;
        throw new StaleViewError(last.txid, last.want, this.timeoutMs, epochs);
      }
      await new Promise((r) => setTimeout(r, Math.min(200, 10 * (attempt + 1))));
    }
  }

  private once<T>(
    fn: (conn: Database.Database) => T, want: { txid: number; epoch: number }, enter: () => void, leave: () => void,
  ): { ok: true; result: T } | { ok: false; txid: number; epoch: number } {
    const conn = this.conns.ro;
    conn.exec('BEGIN');
    enter();
    try {
      const meta = readMeta(conn);
      // Registered readers exclude writers, so the file must hold exactly the published commit.
      if (meta.txid !== want.txid || meta.epoch !== want.epoch) return { ok: false, txid: meta.txid, epoch: meta.epoch };
      const result = fn(conn);
      if (result && typeof (result as { then?: unknown }).then === 'function') {
        throw new TypeError('the read function returned a promise: it must be synchronous');
      }
      return { ok: true, result };
    } finally {
      leave();
      if (conn.inTransaction) conn.exec('COMMIT');
    }
  }
}
