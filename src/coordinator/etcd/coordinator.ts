/**
 * The etcd Coordinator: grant a session, queue on the Mutex, and hand back an EtcdLease. Also
 * writes the bookkeeping the CLI reads (info, hand-over history); none of that is on the write path.
 */
import { monotonicNow } from '../../clock';
import type { Etcd3 } from 'etcd3';
import { AcquireTimeoutError, CoordinatorUnavailableError, DatabaseMovedError, SqliteHaError } from '../../errors';
import { waitKeysGone } from './mutex';
import type { ResolvedEtcdCoordinator } from '../../options';
import type { AcquireOptions, CommitRecord, GatedCoordinator, GatedLease, ReaderTicket } from '../types';
import { createEtcdClient, etcdCall, isCredentialsRefusal } from './client';
import { DatabaseInfo, HandoverRecord, HISTORY_KEEP, Keys, parseJson, prefixEnd, StandbyRecord } from './keys';
import { EtcdLease } from './lease';
import { enqueue, Held, ownerNode, waitTurn } from './mutex';
import { Session } from './session';
import type { RecordedIdentity } from '../../storage/identity';

export interface EtcdCoordinatorSettings {
  options: ResolvedEtcdCoordinator;
  name: string;
  nodeId: string;
  leaseTtlMs: number;
  safetyMarginMs: number;
  rpcTimeoutMs: number;
  info: Omit<DatabaseInfo, 'node' | 'leaseTtlMs'>;
}

export class EtcdCoordinator implements GatedCoordinator {
  readonly kind = 'etcd' as const;
  readonly keys: Keys;
  private readonly client: Etcd3;

  constructor(private readonly s: EtcdCoordinatorSettings) {
    this.keys = new Keys(s.options.prefix, s.name);
    this.client = createEtcdClient(s.options, s.rpcTimeoutMs);
  }

  async acquire(opts: AcquireOptions): Promise<GatedLease> {
    const startedAt = monotonicNow();
    const deadline = startedAt + opts.timeoutMs;
    let session: Session | null = null;
    try {
      // One session serves this node's successive tenures, while it has life left; a lost,
      // revoked or expiring one (e.g. after this process was paused) is replaced.
      const reusable = this.writer?.alive && monotonicNow() < this.writer.commitDeadline ? this.writer : null;
      if (!reusable && this.writer) void this.writer.revoke().catch(() => undefined);
      session = reusable ?? (await retryUntil(deadline, () => Session.grant(this.client, this.s.leaseTtlMs, this.s.safetyMarginMs)));
      this.writer = session;
      const sess = session;
      const me = { node: this.s.nodeId, ttlMs: sess.ttlMs };
      const first = await retryUntil(deadline, () =>
        enqueue(this.client, this.keys, sess.leaseId, {
          node: this.s.nodeId, pid: process.pid, ttlMs: sess.ttlMs, queuedAt: Date.now(),
        }, me),
      );
      // A free lock is taken by enqueue itself (one round trip); otherwise wait for our turn.
      const held = first.held !== null
        ? first.held
        : await waitTurn(this.client, this.keys, first.queued, deadline, me, first.ahead, first.fromRevision);
      // After a promotion only the new path may be written: an old node would fork the data.
      if (held.promoted && held.promoted.path !== this.s.info.path) {
        throw new DatabaseMovedError(this.s.info.path, held.promoted.path, held.promoted.epoch);
      }
      const lease = new EtcdLease(this.client, this.keys, sess, held, this.s.nodeId);
      // Not awaited: the watch replays from our own key's revision, so no waiter is missed, and
      // the first write does not pay for setting it up. Without it the lease still goes when idle.
      void lease.watchQueue().catch(() => undefined);
      void this.recordAcquisition(held, Math.round(monotonicNow() - startedAt));
      return lease;
    } catch (err) {
      // Never leak a waiter key: revoking the session deletes it (the next acquire grants anew).
      await session?.revoke().catch(() => undefined);
      if (this.writer === session) this.writer = null;
      if (err instanceof AcquireTimeoutError) {
        throw new AcquireTimeoutError(opts.timeoutMs, err.holder);
      }
      throw err;
    }
  }

  async readCommit(): Promise<CommitRecord | null> {
    const res = await etcdCall('commit read', () => this.client.kv.range({ key: Buffer.from(this.keys.commit) }));
    return parseJson<CommitRecord>(res.kvs[0]?.value);
  }

  currentHolder(): Promise<string | null> {
    return ownerNode(this.client, this.keys);
  }

  async readIdentity(): Promise<RecordedIdentity | null> {
    const res = await etcdCall('identity read', () => this.client.kv.range({ key: Buffer.from(this.keys.identity) }));
    return parseJson<RecordedIdentity>(res.kvs[0]?.value);
  }

  async reportStandby(record: Omit<StandbyRecord, 'node'>): Promise<void> {
    const value: StandbyRecord = { ...record, node: this.s.nodeId };
    // No lease: the last known position must outlive the node (that is when it matters).
    await this.client.kv.put({ key: Buffer.from(this.keys.standby), value: Buffer.from(JSON.stringify(value)) }).catch(() => undefined);
  }

  async close(): Promise<void> {
    const writer = this.writer;
    this.writer = null;
    await writer?.revoke().catch(() => undefined);
    const reader = this.reader;
    this.reader = null;
    if (reader) await reader.then((s) => s.revoke()).catch(() => undefined);
    this.client.close();
  }

  /** Writes info and a hand-over record for the CLI; best effort, off the write path. */
  private async recordAcquisition(held: Held, waitedMs: number): Promise<void> {
    try {
      const now = Date.now();
      const info: DatabaseInfo = {
        ...this.s.info, node: this.s.nodeId, leaseTtlMs: this.s.leaseTtlMs, ...(held.identity ? { id: held.identity.id } : {}),
      };
      const prev = held.previous;
      const record: HandoverRecord = {
        fence: held.revision,
        node: this.s.nodeId,
        previousNode: prev?.node ?? null,
        cause: prev === null ? 'first' : held.cleanHandover ? 'released' : 'expired',
        waitedMs,
        handoverMs: held.cleanHandover && held.releasedAt !== null ? Math.max(0, now - held.releasedAt) : null,
        time: now,
      };
      await this.client.kv.txn({
        compare: [],
        success: [
          { request_put: { key: Buffer.from(this.keys.info), value: Buffer.from(JSON.stringify(info)) } },
          { request_put: { key: Buffer.from(this.keys.historyKey(held.revision)), value: Buffer.from(JSON.stringify(record)) } },
        ],
        failure: [],
      });
      if (held.revision % 25 === 0) await this.pruneHistory();
    } catch {
      /* bookkeeping only */
    }
  }

  /** Lockless mode: one key per read transaction, put only while no writer's gate is closed. */
  async registerReader(deadline: number): Promise<ReaderTicket> {
    const session = await this.readerSession();
    const key = Buffer.from(`${this.keys.readersPrefix}${BigInt(session.leaseId).toString(16)}-${++this.readerSeq}`);
    const gate = Buffer.from(this.keys.gate);
    for (;;) {
      const res = await this.readerCall(session, 'reader register', () =>
        this.client.kv.txn({
          compare: [{ key: gate, target: 'Version', result: 'Equal', version: 0 }],
          success: [
            { request_put: { key, value: Buffer.from(this.s.nodeId), lease: session.leaseId } },
            { request_range: { key: Buffer.from(this.keys.commit) } },
          ],
          failure: [],
        }),
      );
      if (res.succeeded) {
        const revision = res.header.revision;
        return {
          commit: parseJson<CommitRecord>(res.responses[1].response_range.kvs[0]?.value),
          finish: async () => {
            const done = await this.readerCall(session, 'reader finish', () =>
              this.client.kv.txn({
                compare: [{ key, target: 'Create', result: 'Equal', create_revision: revision }],
                success: [{ request_delete_range: { key } }],
                failure: [],
              }),
            );
            return done.succeeded;
          },
        };
      }
      // A writer is in its commit window: wait for its gate to open (or its lease to expire).
      const opened = await waitKeysGone(this.client, this.keys.gate, [this.keys.gate], Number(res.header.revision), deadline);
      if (!opened) {
        throw new CoordinatorUnavailableError(
          'read not registered in time: a writer kept its commit gate closed (or etcd did not answer)',
        );
      }
    }
  }

  /**
   * An etcd call on a reader key. If it fails, the key may exist without anyone to delete it (the
   * reply was lost, or the delete failed), kept alive by the shared reader session and blocking
   * every writer's gate: give that session up so such a key lives at most one TTL.
   */
  private async readerCall<T>(session: Session, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await etcdCall(what, fn);
    } catch (err) {
      session.lose(err as Error); // stops keep-alives; readerSession() grants a new one next time
      void session.revoke().catch(() => undefined);
      throw err;
    }
  }

  private writer: Session | null = null;
  private readerSeq = 0;
  private reader: Promise<Session> | null = null;

  /** One session for all of this node's reader keys, granted on first use, re-granted if lost. */
  private readerSession(): Promise<Session> {
    if (!this.reader) {
      const p = Session.grant(this.client, this.s.leaseTtlMs, this.s.safetyMarginMs);
      this.reader = p;
      p.then(
        (s) => s.once('lost', () => { if (this.reader === p) this.reader = null; }),
        () => { if (this.reader === p) this.reader = null; },
      );
    }
    return this.reader;
  }

  private async pruneHistory(): Promise<void> {
    const res = await this.client.kv.range({
      key: Buffer.from(this.keys.historyPrefix), range_end: prefixEnd(this.keys.historyPrefix),
      sort_order: 'Descend', sort_target: 'Key', keys_only: true, limit: HISTORY_KEEP + 1,
    });
    if (res.kvs.length <= HISTORY_KEEP) return;
    const oldestKept = res.kvs[HISTORY_KEEP - 1].key;
    await this.client.kv.deleteRange({ key: Buffer.from(this.keys.historyPrefix), range_end: oldestKept });
  }
}

/** Retries a coordinator call that failed as unavailable until the deadline. */
async function retryUntil<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
  let delayMs = 50;
  for (;;) {
    try {
      return await beforeDeadline(fn(), deadline);
    } catch (err) {
      if (!(err instanceof CoordinatorUnavailableError) || isCredentialsRefusal(err) || monotonicNow() + delayMs >= deadline) {
        if (err instanceof SqliteHaError) throw err;
        throw new CoordinatorUnavailableError(String(err), { cause: err });
      }
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(500, delayMs * 2);
    }
  }
}

/** Rejects as unavailable at the deadline even if a call's own RPC deadline is later. */
function beforeDeadline<T>(p: Promise<T>, deadline: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () => reject(new CoordinatorUnavailableError('etcd did not answer before acquireTimeoutMs')),
      Math.max(0, deadline - monotonicNow()),
    );
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}
