/**
 * The streams this node owns, by baton. A baton is `<owner tag>.<24 random bytes>` (crypto; the
 * tag names the owning node, so another node can relay to it), used once: taking a
 * stream removes its baton, and the answer carries a new one. Streams idle past streamIdleMs are
 * closed (their transaction rolled back); at most maxStreams are open.
 */
import { createHash, randomBytes } from 'crypto';
import { ServeError } from '../errors';
import { Stream, StreamContext } from './stream';

export class StreamRegistry {
  private readonly byBaton = new Map<string, Stream>();
  private readonly open = new Set<Stream>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly onLeaseGone: (err?: Error) => void;
  /** This node's part of every baton it hands out. */
  readonly tag: string;

  constructor(private readonly ctx: StreamContext) {
    this.tag = nodeTag(ctx.opts.nodeId);
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, ctx.opts.streamIdleMs / 4)));
    this.sweeper.unref();
    // The library rolled back the open transaction with the lease: fail those streams now and
    // free the write slot, instead of waiting for their next request.
    this.onLeaseGone = (err?: Error) => {
      for (const s of this.open) s.failWrite(err instanceof Error ? err : new ServeError('SQLITE_HA_LEASE_LOST', 'the write lease was released during this transaction, which was rolled back'));
    };
    ctx.db.on('lost', this.onLeaseGone);
    ctx.db.on('released', this.onLeaseGone);
  }

  get size(): number {
    return this.open.size;
  }

  /** A new stream, unless maxStreams are open. */
  create(): Stream {
    if (this.open.size >= this.ctx.opts.maxStreams) {
      throw new ServeError('SQLITE_HA_TOO_MANY_STREAMS', `this node has ${this.open.size} streams open (its limit); close streams or retry later`, { httpStatus: 503 });
    }
    const s = new Stream(this.ctx);
    this.open.add(s);
    return s;
  }

  /** The stream of `baton`, which is used up. */
  take(baton: string): Stream {
    const s = this.byBaton.get(baton);
    if (!s) {
      throw new ServeError(
        'STREAM_EXPIRED',
        'unknown or already used baton: the stream was closed, expired after being idle, or belongs to another node',
        { httpStatus: 400 },
      );
    }
    this.byBaton.delete(baton);
    s.busy = true;
    return s;
  }

  /** Parks an open stream and returns its next baton. */
  park(s: Stream): string {
    const baton = `${this.tag}.${randomBytes(24).toString('base64url')}`;
    s.busy = false;
    s.lastUsedAt = Date.now();
    this.byBaton.set(baton, s);
    return baton;
  }

  /** Forgets a closed stream (closing it if it was not). */
  discard(s: Stream): void {
    s.close();
    this.open.delete(s);
  }

  private sweep(): void {
    const cutoff = Date.now() - this.ctx.opts.streamIdleMs;
    for (const [baton, s] of this.byBaton) {
      if (!s.busy && s.lastUsedAt < cutoff) {
        this.byBaton.delete(baton);
        this.discard(s);
      }
    }
  }

  /** Closes every stream (rolling back their transactions). */
  closeAll(): void {
    clearInterval(this.sweeper);
    this.ctx.db.lease.off('lost', this.onLeaseGone);
    this.ctx.db.lease.off('released', this.onLeaseGone);
    this.byBaton.clear();
    for (const s of [...this.open]) this.discard(s);
  }
}

/** A node's tag in batons: a short hash of its node id (ids may hold any character). */
export function nodeTag(nodeId: string): string {
  return createHash('sha256').update(nodeId).digest('base64url').slice(0, 12);
}

/** The owner tag of a baton, or null when it has none. */
export function tagOfBaton(baton: string): string | null {
  const i = baton.indexOf('.');
  return i > 0 ? baton.slice(0, i) : null;
}
