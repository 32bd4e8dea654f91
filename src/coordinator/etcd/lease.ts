/**
 * A held etcd write lease: the session that keeps it alive, the waiter key whose create revision
 * is the fence, a watch on the queue (to hand over as soon as someone waits, and to notice a forced
 * release at once), and the commit record that is written only while the key exists.
 */
import { EventEmitter } from 'events';
import type { Etcd3, Watcher } from 'etcd3';
import { CoordinatorUnavailableError, LeaseLostError } from '../../errors';
import type { CommitRecord, GatedLease } from '../types';
import { etcdCall } from './client';
import type { EtcdGateway } from './gateway';
import { EventRecord, HolderRecord, Keys, parseJson, prefixEnd, ReaderRecord } from './keys';
import type { Held } from './mutex';
import type { Session } from './session';
import { waitKeysSettled } from './wait-keys';
import type { RecordedIdentity } from '../../storage/identity';

export class EtcdLease extends EventEmitter implements GatedLease {
  readonly fence: number;
  readonly commitAtAcquire: CommitRecord | null;
  readonly cleanHandover: boolean;
  readonly previousTtlMs: number | null;
  readonly previousFence: number | null;
  readonly identity: RecordedIdentity | null;
  private waiters = new Set<string>();
  private readonly onSessionLost = (reason: Error) => this.markLost(reason);
  private watcher: Watcher | null = null;
  private ended = false;
  /** Mod revision of the gate this lease put last (null: none put, or opened since). */
  private gateRevision: string | null = null;

  constructor(
    private readonly client: Etcd3,
    /** Carries the commit record, the one call on every write's path (gateway.ts says why); null: gRPC. */
    private readonly gateway: EtcdGateway | null,
    private readonly keys: Keys,
    private readonly session: Session,
    private readonly held: Held,
    private readonly node: string,
    /** This node's own reader registration key, if any (not waited for: same thread). */
    private readonly ownReader: () => string | null = () => null,
    /** Tells this node's reader registration of each commit published here (read-your-writes). */
    private readonly onPublished: (record: CommitRecord) => void = () => undefined,
  ) {
    super();
    this.fence = held.revision;
    this.commitAtAcquire = held.commit;
    this.cleanHandover = held.cleanHandover;
    this.previousTtlMs = held.previous?.ttlMs ?? null;
    this.previousFence = held.previous?.fence ?? null;
    this.identity = held.identity;
    session.once('lost', this.onSessionLost);
  }

  /** Starts watching the queue; resolves once the watch is established. */
  async watchQueue(): Promise<void> {
    const w = await etcdCall('queue watch', () =>
      this.client
        .watch()
        .prefix(this.keys.lockPrefix)
        // From our own key's creation: every later put is a waiter, even one queued before we
        // confirmed ownership (puts and deletes since then are replayed in order).
        .startRevision(String(this.held.revision + 1))
        .create(),
    );
    this.watcher = w;
    if (this.ended) {
      void w.cancel().catch(() => undefined);
      return;
    }
    w.on('put', (kv) => {
      const key = kv.key.toString();
      if (key === this.held.key) return;
      this.waiters.add(key);
      this.emit('waiter');
    });
    w.on('delete', (kv) => {
      const key = kv.key.toString();
      if (key === this.held.key) {
        this.markLost(new LeaseLostError('our lock key was deleted (lease revoked or released by force)'));
      } else {
        this.waiters.delete(key);
      }
    });
  }

  get commitDeadline(): number {
    return this.ended ? 0 : this.session.commitDeadline;
  }
  get expiresAt(): number {
    return this.ended ? 0 : this.session.expiresAt;
  }
  get valid(): boolean {
    return !this.ended;
  }
  get hasWaiters(): boolean {
    return this.waiters.size > 0;
  }

  private get ownKeyExists() {
    return { key: Buffer.from(this.held.key), target: 'Create' as const, result: 'Equal' as const, create_revision: this.held.revision };
  }

  async publishCommit(record: CommitRecord, options: { openGate?: boolean } = {}): Promise<boolean> {
    const success: NonNullable<Parameters<Etcd3['kv']['txn']>[0]['success']> = [
      { request_put: { key: Buffer.from(this.keys.commit), value: Buffer.from(JSON.stringify(record)) } },
    ];
    if (options.openGate) success.push({ request_delete_range: { key: Buffer.from(this.keys.gate) } });
    // Only while our own key exists: a lease lost meanwhile makes this fail (false), not overwrite.
    const txn = { compare: [this.ownKeyExists], success, failure: [] };
    const res = await etcdCall<{ succeeded: boolean }>('commit publish', () =>
      (this.gateway ? this.gateway.txn(txn) : this.client.kv.txn(txn)));
    if (res.succeeded && options.openGate) this.gateRevision = null;
    if (res.succeeded) this.onPublished(record);
    return res.succeeded;
  }

  /**
   * Deletes the gate only if it is still the one this lease put: a stale holder resuming on a
   * failure path must not open the gate of the holder that replaced it (readers would register
   * inside that holder's COMMIT, H3). Same lease id is not enough: the session outlives tenures.
   */
  async openGate(): Promise<void> {
    const rev = this.gateRevision;
    if (rev === null) return;
    this.gateRevision = null;
    const gate = Buffer.from(this.keys.gate);
    await this.client.kv
      .txn({
        compare: [{ key: gate, target: 'Mod', result: 'Equal', mod_revision: rev }],
        success: [{ request_delete_range: { key: gate } }],
        failure: [],
      })
      .catch(() => undefined);
  }

  async closeGate(deadline: number): Promise<void> {
    const gate = { fence: this.fence, node: this.node, time: Date.now() };
    const readers = Buffer.from(this.keys.readersPrefix);
    const res = await etcdCall('gate close', () =>
      this.client.kv.txn({
        compare: [this.ownKeyExists],
        success: [
          // Attached to our lease: a writer that dies mid-commit does not block readers forever.
          { request_put: { key: Buffer.from(this.keys.gate), value: Buffer.from(JSON.stringify(gate)), lease: this.session.leaseId } },
          { request_range: { key: readers, range_end: prefixEnd(this.keys.readersPrefix), keys_only: true } },
        ],
        failure: [],
      }),
    );
    if (!res.succeeded) throw new LeaseLostError('our lock key is gone (lease expired or revoked)');
    this.gateRevision = res.header.revision;
    const gateRevision = Number(res.header.revision);
    // Our own node's reads run on this JavaScript thread: none can overlap our COMMIT.
    const own = this.ownReader();
    const pending = res.responses[1].response_range.kvs.map((kv) => kv.key.toString()).filter((k) => k !== own);
    if (pending.length === 0) return;
    // Each registration acknowledges (its `acked` reaches the gate's revision) or is gone (its
    // node's session expired or ended).
    const acked = await waitKeysSettled(
      this.client, this.keys.readersPrefix, pending, gateRevision + 1, deadline, 'gate acknowledgement watch',
      (value) => {
        const r = parseJson<ReaderRecord>(value);
        return !!r && r.acked >= gateRevision;
      },
    );
    if (!acked) {
      await this.openGate();
      throw new CoordinatorUnavailableError(
        `${pending.length} registered reader node(s) did not acknowledge the commit gate in time (acquireTimeoutMs, ` +
          "or the lease's commit deadline); nothing was committed. Retry: a reader node that stays silent drops out " +
          'when its registration expires.',
      );
    }
  }

  async recordIdentity(identity: RecordedIdentity): Promise<RecordedIdentity> {
    const key = Buffer.from(this.keys.identity);
    const res = await etcdCall('identity record', () =>
      this.client.kv.txn({
        compare: [this.ownKeyExists, { key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: Buffer.from(JSON.stringify(identity)) } }],
        failure: [{ request_range: { key } }],
      }),
    );
    if (res.succeeded) return identity;
    const onRecord = parseJson<RecordedIdentity>(res.responses[0]?.response_range.kvs[0]?.value);
    if (!onRecord) throw new LeaseLostError('our lock key is gone (lease expired or revoked) before the identity was recorded');
    return onRecord;
  }

  reportEvent(kind: EventRecord['kind'], detail: string): void {
    const ev: EventRecord = { kind, node: this.node, fence: this.fence, detail, time: Date.now() };
    void this.client.kv
      .put({ key: Buffer.from(this.keys.event(kind)), value: Buffer.from(JSON.stringify(ev)) })
      .catch(() => undefined);
  }

  async release(): Promise<void> {
    if (this.ended) return;
    this.end();
    // The marker tells the successor (and `sqlite-ha history`) this was a clean hand-over.
    const marker: HolderRecord = { fence: this.fence, node: this.node, ttlMs: this.session.ttlMs, time: Date.now() };
    let deleted = false;
    try {
      const res = await this.client.kv.txn({
        compare: [{ key: Buffer.from(this.held.key), target: 'Create', result: 'Equal', create_revision: this.held.revision }],
        success: [
          { request_put: { key: Buffer.from(this.keys.released), value: Buffer.from(JSON.stringify(marker)) } },
          { request_delete_range: { key: Buffer.from(this.held.key) } },
          // A gate left closed by a failed commit would outlive this tenure on the kept session.
          { request_delete_range: { key: Buffer.from(this.keys.gate) } },
        ],
        failure: [],
      });
      deleted = res.succeeded;
    } catch {
      /* etcd unreachable: the revoke below (or the TTL) removes the key */
    } finally {
      // Deleting the key hands over; the session stays for this node's next tenure (two etcd
      // writes fewer per hand-over). If the delete did not happen, revoking removes the key.
      if (!deleted) await this.session.revoke().catch(() => undefined);
    }
    this.emit('released');
  }

  async abandon(reason: Error): Promise<void> {
    if (this.ended) return;
    this.markLost(reason);
    await this.session.revoke().catch(() => undefined);
  }

  private markLost(reason: Error): void {
    if (this.ended) return;
    this.end();
    this.session.lose(reason);
    this.emit('lost', reason);
  }

  private end(): void {
    this.ended = true;
    this.session.off('lost', this.onSessionLost);
    const w = this.watcher;
    this.watcher = null;
    void w?.cancel().catch(() => undefined);
  }
}
