/**
 * The lockless mode's commit (docs/HAZARDS.md H3, H5): with the user's work done and the transaction
 * still open, close the gate and wait for registered readers to finish, COMMIT (deadline checked
 * inside), then publish the commit record and open the gate in one etcd transaction. A commit that
 * cannot be published may sit in a file the next holder has already moved away from, so it is
 * reported as an unknown outcome, never as success, and the lease is dropped with it (which also
 * opens the gate).
 */
import { monotonicNow } from '../clock';
import type { GatedLease } from '../coordinator/types';
import { CommitOutcomeUnknownError, LeaseLostError } from '../errors';
import type { FencedTransactions } from '../txn/fenced';

export async function commitGated(
  fenced: FencedTransactions, lease: GatedLease, node: string, gateTimeoutMs: number,
): Promise<number> {
  try {
    await lease.closeGate(Math.min(lease.commitDeadline, monotonicNow() + gateTimeoutMs));
  } catch (err) {
    fenced.rollback();
    throw err;
  }
  let txid: number;
  try {
    txid = fenced.commit();
  } catch (err) {
    void lease.openGate();
    throw err;
  }
  const record = { txid, fence: lease.fence, node, time: Date.now(), epoch: fenced.epoch };
  const published = await lease.publishCommit(record, { openGate: true }).catch(() => false);
  if (!published) {
    // The gate is still closed and attached to a lease that may well be alive: drop the lease,
    // which deletes the gate (etcd revokes its keys; if etcd is unreachable, it expires within a
    // TTL), so readers are never blocked until some later write. The next write takes over anew.
    const reason = new LeaseLostError('publishing the commit failed');
    await lease.abandon(reason).catch(() => undefined);
    throw new CommitOutcomeUnknownError({ cause: reason });
  }
  return txid;
}
