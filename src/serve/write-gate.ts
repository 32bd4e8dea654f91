/**
 * This node's write slot. The handle has one read-write connection, so an interactive write
 * transaction (BEGIN … COMMIT across requests) must have it alone ('exclusive'), while autocommit
 * writes and one-request batches are separate db.write() calls the handle already serializes
 * ('shared'). First come, first served; a waiter gives up after txnWaitMs with SQLITE_BUSY.
 */
import { ServeError } from '../errors';

type Mode = 'shared' | 'exclusive';

interface Waiter {
  mode: Mode;
  grant: () => void;
}

export class WriteGate {
  private shared = 0;
  private exclusive = false;
  private readonly queue: Waiter[] = [];

  constructor(private readonly waitMs: number) {}

  /** Resolves with a release function once the slot is granted in `mode`. */
  acquire(mode: Mode): Promise<() => void> {
    return new Promise((resolve, reject) => {
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        if (mode === 'exclusive') this.exclusive = false;
        else this.shared--;
        this.pump();
      };
      const waiter: Waiter = { mode, grant: () => resolve(release) };
      if (this.queue.length === 0 && this.fits(mode)) {
        this.take(mode);
        resolve(release);
        return;
      }
      this.queue.push(waiter);
      const timer = setTimeout(() => {
        const i = this.queue.indexOf(waiter);
        if (i < 0) return;
        this.queue.splice(i, 1);
        this.pump();
        reject(new ServeError(
          'SQLITE_BUSY',
          `this node's write transaction slot stayed taken for ${this.waitMs} ms (another stream has an ` +
            'interactive write transaction open); retry, or keep write transactions short',
        ));
      }, this.waitMs);
      waiter.grant = () => {
        clearTimeout(timer);
        resolve(release);
      };
    });
  }

  /** True while an interactive write transaction holds the slot. */
  get busyExclusive(): boolean {
    return this.exclusive;
  }

  private fits(mode: Mode): boolean {
    return !this.exclusive && (mode === 'shared' || this.shared === 0);
  }

  private take(mode: Mode): void {
    if (mode === 'exclusive') this.exclusive = true;
    else this.shared++;
  }

  private pump(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0].mode)) {
      const w = this.queue.shift()!;
      this.take(w.mode);
      w.grant();
    }
  }
}
