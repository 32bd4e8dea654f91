/**
 * Lockless mode: one reader registration per node, not per read (issue #11). The node puts
 * `<prefix>/<db>/readers/<lease id hex>` once, attached to its own reader session, and watches the
 * gate and the commit record. Reads then cost no etcd call while no commit is in progress:
 *
 *   - gate closed (a writer's put on the gate key): the node stops starting reads and
 *     acknowledges by writing the gate's revision into its registration; reads in JavaScript are
 *     synchronous, so none is in flight when the event is handled. The writer commits once every
 *     registration listed when it closed the gate has acknowledged or is gone (lease expired).
 *   - gate opened (the delete, in the same etcd transaction as the commit record's put, so the
 *     new record arrives first): reads start again, validated against that record.
 *
 * A read is kept only if, when it ends, no acknowledgement was sent since it began (the ticket's
 * generation) and the registration cannot have expired (before the reader session's commit
 * deadline: last acknowledged keep-alive's send time + TTL − margin). That is what discards the
 * read of a node paused past its registration: the writer may have committed without it.
 * Freshness: a write acknowledged before a read began needed this node's acknowledgement (then the
 * node saw its gate close and reopen, with the record) or the registration's expiry (then the
 * deadline check refuses to start, and a new registration reads the record linearizably).
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { monotonicNow } from '../../clock';
import { CoordinatorUnavailableError } from '../../errors';
import type { ReaderTicket } from '../types';
import { etcdCall } from './client';
import { CommitRecord, Keys, parseJson, ReaderRecord } from './keys';
import { Session } from './session';

/** Longest run of back-to-back reads before a ticket lets pending I/O (the gate watch) run. */
const YIELD_EVERY_MS = 1;

export class ReaderRegistration {
  /** Revision of the gate put we last saw, null while the gate is open. */
  private gateRevision: number | null = null;
  private commit: CommitRecord | null = null;
  /** Bumped before each acknowledgement: a ticket from an older generation is void. */
  private generation = 0;
  private watcher: Watcher | null = null;
  private ended = false;
  private readonly openWaiters = new Set<() => void>();
  private lastYieldAt = performance.now();

  private constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private readonly session: Session,
    readonly key: string,
    private readonly node: string,
  ) {
    session.once('lost', () => this.end());
  }

  /** Grants a reader session, registers, reads gate and commit record, and starts the watch. */
  static async create(client: Etcd3, keys: Keys, node: string, ttlMs: number, marginMs: number): Promise<ReaderRegistration> {
    const session = await Session.grant(client, ttlMs, marginMs);
    const key = keys.readerKey(session.leaseId);
    const r = new ReaderRegistration(client, keys, session, key, node);
    try {
      const res = await etcdCall('reader register', () =>
        client.kv.txn({
          compare: [],
          success: [
            { request_put: { key: Buffer.from(key), value: r.value(0), lease: session.leaseId } },
            { request_range: { key: Buffer.from(keys.gate) } },
            { request_range: { key: Buffer.from(keys.commit) } },
          ],
          failure: [],
        }),
      );
      const gate = res.responses[1].response_range.kvs[0];
      // A gate closed before we registered did not list us: we stay out until it opens.
      r.gateRevision = gate ? Number(gate.mod_revision) : null;
      r.commit = parseJson<CommitRecord>(res.responses[2].response_range.kvs[0]?.value);
      await r.watch(Number(res.header.revision) + 1);
      return r;
    } catch (err) {
      await r.close(); // the session would otherwise live on, kept alive, with nothing to use it
      throw err;
    }
  }

  /** False once the session is lost or the watch failed: register anew. */
  get alive(): boolean {
    return !this.ended && monotonicNow() < this.session.commitDeadline;
  }

  /** Waits while a gate is closed; then a ticket for one read against the last known commit. */
  async ticket(deadline: number): Promise<ReaderTicket> {
    // Reads are synchronous and a ticket needs no I/O: a loop of reads would never let the watch
    // deliver a gate, and the writer would wait for our acknowledgement. Let I/O in regularly.
    if (performance.now() - this.lastYieldAt >= YIELD_EVERY_MS) {
      await new Promise((r) => setImmediate(r));
      this.lastYieldAt = performance.now();
    }
    while (this.gateRevision !== null) {
      if (this.ended) throw new CoordinatorUnavailableError('the reader registration ended while a commit gate was closed');
      if (!(await this.waitOpen(deadline))) {
        throw new CoordinatorUnavailableError(
          'read not started in time: a writer kept its commit gate closed (or etcd did not answer)',
        );
      }
    }
    const generation = this.generation;
    return {
      commit: this.commit,
      // Checked synchronously when called, right after the read.
      finish: () => Promise.resolve(this.alive && this.generation === generation && this.gateRevision === null),
    };
  }

  /**
   * A commit this node just published (its gate was not waited on: same thread). Reads from now
   * on validate against it even before the watch delivers it: read-your-writes on this node.
   */
  notePublished(record: CommitRecord): void {
    this.advance(record);
  }

  async close(): Promise<void> {
    this.end();
    await this.session.revoke().catch(() => undefined);
  }

  private value(acked: number): Buffer {
    const r: ReaderRecord = { node: this.node, acked };
    return Buffer.from(JSON.stringify(r));
  }

  private async watch(fromRevision: number): Promise<void> {
    // One watcher over [commit, gate]: the record's put and the gate's delete of one transaction
    // arrive in order, so the gate never opens before the record it published is known.
    const w = await etcdCall('reader watch', () =>
      this.client.watch().inRange({ start: this.keys.commit, end: `${this.keys.gate}\0` })
        .startRevision(String(fromRevision)).create(),
    );
    this.watcher = w;
    if (this.ended) {
      void w.cancel().catch(() => undefined);
      return;
    }
    w.on('put', (kv) => this.onPut(kv));
    w.on('delete', (kv) => {
      if (kv.key.toString() !== this.keys.gate) return;
      this.gateRevision = null;
      for (const wake of [...this.openWaiters]) wake();
    });
    // A watch that cannot resume (e.g. compacted) ends the registration: its key goes with the
    // session, so no writer waits for us, and the next read registers anew.
    w.on('error', () => void this.close());
  }

  private onPut(kv: IKeyValue): void {
    const key = kv.key.toString();
    if (key === this.keys.commit) {
      const r = parseJson<CommitRecord>(kv.value);
      if (r) this.advance(r);
      return;
    }
    if (key !== this.keys.gate) return;
    const rev = Number(kv.mod_revision);
    this.gateRevision = rev;
    this.generation++;
    void this.acknowledge(rev);
  }

  /** Writes the gate's revision into our registration; retried while that gate stays closed. */
  private async acknowledge(rev: number): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (this.ended || this.gateRevision !== rev) return;
      try {
        await this.client.kv.put({ key: Buffer.from(this.key), value: this.value(rev), lease: this.session.leaseId });
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
      }
    }
    // The writer gives up at its gate deadline; dropping the registration lets it proceed sooner.
    void this.close();
  }

  /** Never moves back: a watch event older than a commit noted by notePublished() is ignored. */
  private advance(r: CommitRecord): void {
    if (!this.commit || r.txid >= this.commit.txid) this.commit = r;
  }

  private waitOpen(deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.openWaiters.delete(wake);
        resolve(v);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, deadline - monotonicNow()));
      this.openWaiters.add(wake);
    });
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    const w = this.watcher;
    this.watcher = null;
    void w?.cancel().catch(() => undefined);
    for (const wake of [...this.openWaiters]) wake();
  }
}
