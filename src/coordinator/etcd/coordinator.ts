/**
 * The etcd Coordinator: grant a session, queue on the Mutex, and hand back an EtcdLease. Also
 * writes the bookkeeping the CLI reads (info, hand-over history); none of that is on the write path.
 */
import { monotonicNow } from '../../clock';
import type { Etcd3 } from 'etcd3';
import { AcquireTimeoutError, CoordinatorUnavailableError, DatabaseMovedError, SqliteHaError } from '../../errors';
import type { ResolvedEtcdCoordinator } from '../../options';
import type { AcquireOptions, CommitRecord, GatedCoordinator, GatedLease, ReaderTicket } from '../types';
import { createEtcdClient, createEtcdGateway, etcdCall, isCredentialsRefusal } from './client';
import { DatabaseInfo, HandoverRecord, HISTORY_KEEP, Keys, parseJson, prefixEnd, StandbyRecord } from './keys';
import type { EtcdGateway } from './gateway';
import { EtcdLease } from './lease';
import { enqueue, Held, ownerNode, waitTurn } from './mutex';
import { ReaderRegistration } from './reader-registration';
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
  private readonly gateway: EtcdGateway | null;

  constructor(private readonly s: EtcdCoordinatorSettings) {
    this.keys = new Keys(s.options.prefix, s.name);
    this.client = createEtcdClient(s.options, s.rpcTimeoutMs);
    this.gateway = createEtcdGateway(s.options, s.rpcTimeoutMs);
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
      const lease = new EtcdLease(
        this.client, this.gateway, this.keys, sess, held, this.s.nodeId,
        () => this.reader?.key ?? null, (record) => this.reader?.notePublished(record),
      );
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
    const reader = this.reader ?? (await this.readerPending?.catch(() => null));
    this.reader = null;
    await reader?.close();
    this.client.close();
    this.gateway?.close();
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

  /**
   * Lockless mode: a ticket for one read from this node's registration (created on first use,
   * replaced once lost); waits while a writer's gate is closed. No etcd call while none is.
   */
  async registerReader(deadline: number): Promise<ReaderTicket> {
    for (;;) {
      const reg = await this.readerRegistration();
      if (reg.alive) {
        try {
          return await reg.ticket(deadline);
        } catch (err) {
          if (reg.alive || monotonicNow() >= deadline) throw err;
        }
      }
      if (this.reader === reg) this.reader = null;
      void reg.close();
      if (monotonicNow() >= deadline) {
        throw new CoordinatorUnavailableError('read not started in time: the reader registration kept lapsing');
      }
    }
  }

  private writer: Session | null = null;
  private reader: ReaderRegistration | null = null;
  private readerPending: Promise<ReaderRegistration> | null = null;

  /** This node's reader registration; one creation at a time. */
  private async readerRegistration(): Promise<ReaderRegistration> {
    if (this.reader) return this.reader;
    this.readerPending ??= ReaderRegistration.create(
      this.client, this.keys, this.s.nodeId, this.s.leaseTtlMs, this.s.safetyMarginMs,
    ).finally(() => (this.readerPending = null));
    const reg = await this.readerPending;
    this.reader ??= reg;
    return reg;
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
