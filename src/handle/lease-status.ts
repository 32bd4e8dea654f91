/** db.lease: the live view of this node's write lease. */
import { monotonicNow } from '../clock';
import { EventEmitter } from 'events';
import type { Lease } from '../coordinator/types';

/** Live view of this node's lease; emits `acquired`, `released`, `lost`. */
export class LeaseStatus extends EventEmitter {
  /** @internal */ current: Lease | null = null;
  /** @internal */ lastHolder: string | null = null;
  constructor(private readonly nodeId: string) {
    super();
  }
  get held(): boolean {
    return this.current?.valid ?? false;
  }
  get fence(): number | null {
    return this.held ? this.current!.fence : null;
  }
  get expiresInMs(): number | null {
    return this.held ? Math.max(0, Math.round(this.current!.expiresAt - monotonicNow())) : null;
  }
  get holder(): string | null {
    return this.held ? this.nodeId : this.lastHolder;
  }
  toJSON() {
    return { held: this.held, fence: this.fence, expiresInMs: this.expiresInMs, holder: this.holder };
  }
}

