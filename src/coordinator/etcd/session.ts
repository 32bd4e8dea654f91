/**
 * An etcd lease kept alive by us, not by etcd3's Lease helper (HAZARDS H6: its `lost` event comes
 * ~2×TTL late). The rule: a commit may start only before (send time of the last acknowledged
 * keep-alive + granted TTL − safety margin). Etcd cannot expire the lease earlier than that, since
 * it restarted the TTL no earlier than when we sent the request.
 */
import { EventEmitter } from 'events';
import type { Etcd3 } from 'etcd3';
import { LeaseLostError } from '../../errors';
import { etcdCall } from './client';

type KeepAliveStream = Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>>;

export class Session extends EventEmitter {
  /** Send time of the newest keep-alive etcd acknowledged (the grant counts as one). */
  private lastAckSentAt: number;
  private stream: KeepAliveStream | null = null;
  private readonly inFlight: number[] = [];
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
    const sentAt = Date.now();
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
  get commitDeadline(): number {
    return this.lastAckSentAt + this.ttlMs - this.marginMs;
  }
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
    if (Date.now() >= this.expiresAt) {
      this.lose(new LeaseLostError(`no keep-alive acknowledged within the ${this.ttlMs} ms TTL`));
      return;
    }
    // A stream to a stalled member never errors, it just stops answering: start a new one (the
    // client may pick another member) rather than wait on it until the lease runs out.
    const oldest = this.inFlight[0];
    if (this.stream && oldest !== undefined && Date.now() - oldest > this.everyMs) {
      const stale = this.stream;
      this.dropStream(stale);
      try {
        stale.end();
      } catch {
        /* already gone */
      }
    }
    void this.sendKeepAlive();
  }

  private async sendKeepAlive(): Promise<void> {
    try {
      if (!this.stream) {
        const stream = await this.client.leaseClient.leaseKeepAlive();
        if (this.ended) {
          stream.end();
          return;
        }
        stream.on('data', (res) => this.onAck(res));
        stream.on('error', () => this.dropStream(stream));
        stream.on('end', () => this.dropStream(stream));
        this.stream = stream;
      }
      this.inFlight.push(Date.now());
      this.stream.write({ ID: this.leaseId });
    } catch {
      // Unreachable etcd: the next tick retries; tick() declares the loss at expiry.
      this.stream = null;
    }
  }

  private dropStream(stream: KeepAliveStream): void {
    if (this.stream === stream) {
      this.stream = null;
      this.inFlight.length = 0;
    }
  }

  private onAck(res: { TTL: string }): void {
    const sentAt = this.inFlight.shift();
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
    const s = this.stream;
    this.stream = null;
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
