/**
 * An etcd lease kept alive by us, not by etcd3's Lease helper (docs/HAZARDS.md H6: its `lost` event comes
 * ~2×TTL late). The rule: a commit may start only before (send time of the last acknowledged
 * keep-alive + granted TTL − safety margin). Etcd cannot expire the lease earlier than that, since
 * it restarted the TTL no earlier than when we sent the request. Send times are monotonic
 * (src/clock.ts), and each ack is credited only to a request sent on its own stream.
 */
import { EventEmitter } from 'events';
import type { Etcd3 } from 'etcd3';
import { monotonicNow } from '../../clock';
import { LeaseLostError } from '../../errors';
import { etcdCall } from './client';

type KeepAliveStream = Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>>;

/** One keep-alive stream and the send times of its unanswered requests, oldest first. */
interface StreamState {
  readonly stream: KeepAliveStream;
  readonly inFlight: number[];
}

export class Session extends EventEmitter {
  /** Monotonic send time of the newest keep-alive etcd acknowledged (the grant counts as one). */
  private lastAckSentAt: number;
  private current: StreamState | null = null;
  private opening: Promise<StreamState | null> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ended = false;

  private constructor(
    private readonly client: Etcd3,
    readonly leaseId: string,
    readonly ttlMs: number,
    private readonly marginMs: number,
    grantSentAt: number,
  ) {
    super();
    this.lastAckSentAt = grantSentAt;
  }

  static async grant(client: Etcd3, ttlMs: number, marginMs: number): Promise<Session> {
    const sentAt = monotonicNow();
    const res = await etcdCall('lease grant', () =>
      client.leaseClient.leaseGrant({ TTL: Math.ceil(ttlMs / 1000) }),
    );
    // etcd may raise a short TTL (it raised 1 s to 2 s): trust what it granted.
    const s = new Session(client, res.ID, Number(res.TTL) * 1000, marginMs, sentAt);
    s.start();
    return s;
  }

  get alive(): boolean {
    return !this.ended;
  }
  /** Monotonic ms (monotonicNow()) after which no commit may start. */
  get commitDeadline(): number {
    return this.lastAckSentAt + this.ttlMs - this.marginMs;
  }
  /** Monotonic ms at which etcd may have expired the lease. */
  get expiresAt(): number {
    return this.lastAckSentAt + this.ttlMs;
  }

  private get everyMs(): number {
    return Math.max(100, Math.floor(this.ttlMs / 3));
  }

  private start(): void {
    this.timer = setInterval(() => this.tick(), this.everyMs);
    this.timer.unref();
  }

  private tick(): void {
    if (this.ended) return;
    const now = monotonicNow();
    if (now >= this.expiresAt) {
      this.lose(new LeaseLostError(`no keep-alive acknowledged within the ${this.ttlMs} ms TTL`));
      return;
    }
    // A stream to a stalled member never errors, it just stops answering: start a new one (the
    // client may pick another member) rather than wait on it until the lease runs out. `>=`: with
    // punctual ticks a stall is one interval old exactly at the next tick, and two intervals later
    // the lease (TTL = 3 intervals) is gone.
    const cur = this.current;
    const oldest = cur?.inFlight[0];
    if (cur && oldest !== undefined && now - oldest >= this.everyMs) {
      this.dropStream(cur);
      try {
        cur.stream.end();
      } catch {
        /* already gone */
      }
    }
    void this.sendKeepAlive();
  }

  private async sendKeepAlive(): Promise<void> {
    const state = this.current ?? (await (this.opening ??= this.openStream().finally(() => (this.opening = null))));
    if (!state || this.ended || state !== this.current) return;
    state.inFlight.push(monotonicNow());
    try {
      state.stream.write({ ID: this.leaseId });
    } catch {
      this.dropStream(state); // the next tick opens a new stream
    }
  }

  private async openStream(): Promise<StreamState | null> {
    let stream: KeepAliveStream;
    try {
      stream = await this.client.leaseClient.leaseKeepAlive();
    } catch {
      return null; // unreachable etcd: the next tick retries; tick() declares the loss at expiry
    }
    if (this.ended) {
      stream.end();
      return null;
    }
    const state: StreamState = { stream, inFlight: [] };
    // Each ack answers the oldest request on *its* stream: a late ack on a replaced stream must
    // never be credited with the newer stream's send time.
    stream.on('data', (res) => this.onAck(state, res));
    stream.on('error', () => this.dropStream(state));
    stream.on('end', () => this.dropStream(state));
    this.current = state;
    return state;
  }

  private dropStream(state: StreamState): void {
    if (this.current === state) this.current = null;
  }

  private onAck(state: StreamState, res: { TTL: string }): void {
    const sentAt = state.inFlight.shift();
    if (this.ended) return;
    if (Number(res.TTL) <= 0) {
      this.lose(new LeaseLostError('etcd reports the lease expired or revoked'));
      return;
    }
    if (sentAt !== undefined && sentAt > this.lastAckSentAt) this.lastAckSentAt = sentAt;
  }

  /** Ends the session locally and emits `lost` once. */
  lose(reason: Error): void {
    if (this.ended) return;
    this.stop();
    this.emit('lost', reason);
  }

  private stop(): void {
    this.ended = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const s = this.current?.stream;
    this.current = null;
    try {
      s?.end();
    } catch {
      /* stream already gone */
    }
  }

  /** Revokes the lease: etcd deletes every key attached to it, waking the next waiter. */
  async revoke(): Promise<void> {
    this.stop();
    await etcdCall('lease revoke', () => this.client.leaseClient.leaseRevoke({ ID: this.leaseId }));
  }
}
