/**
 * A held etcd write lease: the session that keeps it alive, the waiter key whose create revision
 * is the fence, a watch on the queue (to hand over as soon as someone waits, and to notice a forced
 * release at once), and the commit record that is written only while the key exists.
 */
import { EventEmitter } from 'events';
import type { Etcd3, Watcher } from 'etcd3';
import { LeaseLostError } from '../../errors';
import type { Lease } from '../types';
import { etcdCall } from './client';
import { CommitRecord, EventRecord, Keys } from './keys';
import type { Held } from './mutex';
import type { Session } from './session';

export class EtcdLease extends EventEmitter implements Lease {
  readonly fence: number;
  readonly commitAtAcquire: CommitRecord | null;
  private waiters = new Set<string>();
  private watcher: Watcher | null = null;
  private ended = false;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private readonly session: Session,
    private readonly held: Held,
    private readonly node: string,
  ) {
    super();
    this.fence = held.revision;
    this.commitAtAcquire = held.commit;
    session.once('lost', (reason: Error) => this.markLost(reason));
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

  async publishCommit(record: CommitRecord): Promise<boolean> {
    const key = Buffer.from(this.held.key);
    const res = await etcdCall('commit publish', () =>
      this.client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: this.held.revision }],
        success: [{ request_put: { key: Buffer.from(this.keys.commit), value: Buffer.from(JSON.stringify(record)) } }],
        failure: [],
      }),
    );
    return res.succeeded;
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
    const marker = { fence: this.fence, node: this.node, time: Date.now() };
    try {
      await this.client.kv.txn({
        compare: [{ key: Buffer.from(this.held.key), target: 'Create', result: 'Equal', create_revision: this.held.revision }],
        success: [
          { request_put: { key: Buffer.from(`${this.keys.root}/released`), value: Buffer.from(JSON.stringify(marker)) } },
          { request_delete_range: { key: Buffer.from(this.held.key) } },
        ],
        failure: [],
      });
    } finally {
      // Revoke even if the txn failed: the key goes with the lease either way.
      await this.session.revoke().catch(() => undefined);
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
    const w = this.watcher;
    this.watcher = null;
    void w?.cancel().catch(() => undefined);
  }
}
