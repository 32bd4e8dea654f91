/**
 * Publishes commit records for one lease, coalesced: at most one etcd txn in flight, and each
 * publish carries the newest txid, so a burst of N commits costs about two round trips, not N.
 * A write is acknowledged once a record with a txid at least its own is published.
 */
import type { Lease } from '../coordinator/types';

export class CommitPublisher {
  private published = 0;
  private newest = 0;
  private inFlight: Promise<void> | null = null;
  private waiters: { txid: number; resolve: () => void }[] = [];

  constructor(private readonly lease: Lease, private readonly node: string, publishedTxid: number) {
    this.published = publishedTxid;
    this.newest = publishedTxid;
  }

  /** Resolves once txid (or a later one) is published, or once the lease is gone. */
  publish(txid: number): Promise<void> {
    if (txid <= this.published) return Promise.resolve();
    if (txid > this.newest) this.newest = txid;
    const p = new Promise<void>((resolve) => this.waiters.push({ txid, resolve }));
    this.pump();
    return p;
  }

  /** Resolves when nothing is pending. */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
  }

  private pump(): void {
    if (this.inFlight || this.newest <= this.published) return;
    const txid = this.newest;
    this.inFlight = this.lease
      .publishCommit({ txid, fence: this.lease.fence, node: this.node, time: Date.now() })
      .then(
        () => this.settle(txid),
        () => this.settle(txid),
      )
      .finally(() => {
        this.inFlight = null;
        this.pump();
      });
  }

  // A failed publish (lease gone, etcd unreachable) does not undo a commit that is already durable
  // and was fenced: the write resolves; the next holder's view is checked against the file itself.
  private settle(txid: number): void {
    this.published = Math.max(this.published, txid);
    const ready = this.waiters.filter((w) => w.txid <= txid);
    this.waiters = this.waiters.filter((w) => w.txid > txid);
    for (const w of ready) w.resolve();
  }
}
