/**
 * etcd's concurrency Mutex recipe (client/v3/concurrency/mutex.go), so `etcdctl lock` and Go
 * services share the queue: waiter keys `<lock prefix><lease id hex>` attached to the session's
 * lease; the owner is the key with the lowest create revision; a waiter watches only the newest
 * key created before its own.
 *
 * Round trips:
 *   - free lock: ONE transaction. If no waiter key exists under the prefix, it puts ours, reads
 *     what the previous holder left (commit record, holder, release marker) and records us as
 *     holder: we own the lock from that revision on. Otherwise it puts our key unless present (a
 *     nested transaction) and returns the newest two keys, i.e. ours and the one just ahead of it.
 *   - queued: one confirming transaction per wake-up. It succeeds only while our key exists and no
 *     key under the prefix was created before it (a range compare), and then does the same reads
 *     and holder write; otherwise it returns the newest key still ahead of us, whose deletion we
 *     watch.
 */
import { monotonicNow } from '../../clock';
import type { Etcd3, IKeyValue, IRequestOp, IResponseOp } from 'etcd3';
import { AcquireTimeoutError, LeaseLostError } from '../../errors';
import { etcdCall } from './client';
import type { RecordedIdentity } from '../../storage/identity';
import { CommitRecord, HolderRecord, Keys, LockRecord, parseJson, prefixEnd, PromotionRecord } from './keys';
import { waitKeysSettled } from './wait-keys';

export interface Queued {
  /** Create revision of our waiter key: the fence token once we hold the lock. */
  revision: number;
  key: string;
}

export interface Held extends Queued {
  /** Commit record read after we became owner. */
  commit: CommitRecord | null;
  /** The holder before us, and whether it let go cleanly (released, not expired). */
  previous: HolderRecord | null;
  cleanHandover: boolean;
  /** When the previous holder released (clean hand-overs only). */
  releasedAt: number | null;
  /** The database's identity record, if its first holder created one. */
  identity: RecordedIdentity | null;
  /** Set once `sqlite-ha promote` moved the database (the caller refuses a different path). */
  promoted: PromotionRecord | null;
}

/** What enqueue() found: the lock (when it was free), or our place in the queue. */
export type Enqueued =
  | { held: Held }
  | { held: null; queued: Queued; ahead: Buffer | null; fromRevision: number };

type Me = Omit<HolderRecord, 'fence' | 'time'>;

/** The reads that tell a new owner what its predecessor left, then the write that names it holder. */
function ownerOps(keys: Keys, holder: Omit<HolderRecord, 'fence'> & { fence?: number }): IRequestOp[] {
  return [
    { request_range: { key: Buffer.from(keys.commit) } },
    { request_range: { key: Buffer.from(keys.holder) } },
    { request_range: { key: Buffer.from(keys.released) } },
    { request_range: { key: Buffer.from(keys.identity) } },
    { request_range: { key: Buffer.from(keys.promoted) } },
    { request_put: { key: Buffer.from(keys.holder), value: Buffer.from(JSON.stringify(holder)) } },
  ];
}

/** A holder record; one written by the one-round-trip path carries its fence as the mod revision. */
function holderOf(kv: IKeyValue | undefined): HolderRecord | null {
  const r = parseJson<Omit<HolderRecord, 'fence'> & { fence?: number }>(kv?.value);
  if (!r || !kv) return null;
  return { ...r, fence: r.fence ?? Number(kv.mod_revision) };
}

function heldFrom(q: Queued, responses: IResponseOp[]): Held {
  const [commitKv, holderKv, releasedKv, identityKv, promotedKv] = responses.slice(0, 5).map((r) => r.response_range.kvs[0]);
  const previous = holderOf(holderKv);
  const released = parseJson<HolderRecord>(releasedKv?.value);
  // A previous "holder" that is us (a retried enqueue whose first reply was lost) hides the real
  // predecessor: counted as unclean, the conservative reading.
  const clean = previous === null || (previous.fence !== q.revision && released !== null && released.fence === previous.fence);
  return {
    ...q,
    commit: parseJson<CommitRecord>(commitKv?.value),
    previous,
    cleanHandover: clean,
    releasedAt: clean && released ? released.time : null,
    identity: parseJson<RecordedIdentity>(identityKv?.value),
    promoted: parseJson<PromotionRecord>(promotedKv?.value),
  };
}

/**
 * Puts our waiter key (attached to leaseId) unless present. When the lock is free this one
 * transaction also takes it (held); otherwise it says which key to wait for.
 */
export async function enqueue(client: Etcd3, keys: Keys, leaseId: string, record: LockRecord, me: Me): Promise<Enqueued> {
  const key = keys.lockKey(leaseId);
  const k = Buffer.from(key);
  const lockPrefix = Buffer.from(keys.lockPrefix);
  const end = prefixEnd(keys.lockPrefix);
  const putOwn: IRequestOp = { request_put: { key: k, value: Buffer.from(JSON.stringify(record)), lease: leaseId } };
  const res = await etcdCall('lock enqueue', () =>
    client.kv.txn({
      // Over a range, Create == 0 holds only when no key exists in it: nobody holds or waits.
      compare: [{ key: lockPrefix, range_end: end, target: 'Create', result: 'Equal', create_revision: 0 }],
      // Both puts land at this transaction's revision, so the holder record's mod revision is our
      // fence (it is not known before the transaction runs).
      success: [putOwn, ...ownerOps(keys, { ...me, time: Date.now() })],
      failure: [
        {
          request_txn: {
            compare: [{ key: k, target: 'Create', result: 'Equal', create_revision: 0 }],
            success: [putOwn],
            failure: [{ request_range: { key: k } }],
          },
        },
        { request_range: { key: lockPrefix, range_end: end, sort_order: 'Descend', sort_target: 'Create', limit: 2 } },
      ],
    }),
  );
  const revision = Number(res.header.revision);
  if (res.succeeded) return { held: heldFrom({ revision, key }, res.responses.slice(1)) };
  const nested = res.responses[0].response_txn;
  if (nested.succeeded) {
    // Our key is the newest; the one before it is the key to wait for.
    const ahead = res.responses[1].response_range.kvs[1]?.key ?? null;
    return { held: null, queued: { revision, key }, ahead, fromRevision: revision + 1 };
  }
  // Our key was already there (a retry after a lost reply): find our place by confirming.
  const own = Number(nested.responses[0].response_range.kvs[0].create_revision);
  return { held: null, queued: { revision: own, key }, ahead: null, fromRevision: revision + 1 };
}

/**
 * Waits until every waiter key created before ours is gone, confirming ownership in the same
 * transaction that reads what the previous holder left and records us as holder (before we touch
 * the file, so our successor can tell a clean hand-over from a crash). Gives up at deadline with
 * AcquireTimeoutError naming the current owner.
 */
export async function waitTurn(
  client: Etcd3, keys: Keys, q: Queued, deadline: number, me: Me, ahead: Buffer | null, fromRevision: number,
): Promise<Held> {
  const lockPrefix = Buffer.from(keys.lockPrefix);
  const end = prefixEnd(keys.lockPrefix);
  const own = Buffer.from(q.key);
  for (let next = ahead, from = fromRevision; ; ) {
    if (next) {
      const gone = await waitDelete(client, next, from, deadline);
      if (!gone) throw new AcquireTimeoutError(0, await ownerNode(client, keys));
    }
    const record: HolderRecord = { ...me, fence: q.revision, time: Date.now() };
    const res = await etcdCall('lock confirm', () =>
      client.kv.txn({
        compare: [
          { key: own, target: 'Create', result: 'Equal', create_revision: q.revision },
          // Every key under the prefix was created at our revision or later: none is ahead.
          { key: lockPrefix, range_end: end, target: 'Create', result: 'Greater', create_revision: q.revision - 1 },
        ],
        success: ownerOps(keys, record),
        failure: [
          { request_range: { key: own } },
          {
            request_range: {
              key: lockPrefix, range_end: end, max_create_revision: q.revision - 1,
              sort_order: 'Descend', sort_target: 'Create', limit: 1,
            },
          },
        ],
      }),
    );
    if (res.succeeded) return heldFrom(q, res.responses);
    const mine = res.responses[0].response_range.kvs[0];
    if (!mine || Number(mine.create_revision) !== q.revision) {
      throw new LeaseLostError('our etcd lease expired while queued for the lock');
    }
    next = res.responses[1].response_range.kvs[0]?.key ?? null;
    from = Number(res.header.revision) + 1;
    if (monotonicNow() >= deadline) throw new AcquireTimeoutError(0, await ownerNode(client, keys));
  }
}

/** Resolves true when `key` is deleted (watching from `fromRevision`), false at deadline. */
function waitDelete(client: Etcd3, key: Buffer, fromRevision: number, deadline: number): Promise<boolean> {
  const k = key.toString();
  return waitKeysSettled(client, k, [k], fromRevision, deadline, 'watch');
}
/** Node of the current owner: its LockRecord's node, or '(foreign)' for etcdctl/Go holders. */
export async function ownerNode(client: Etcd3, keys: Keys): Promise<string | null> {
  const res = await etcdCall('lock owner', () =>
    client.kv.range({
      key: Buffer.from(keys.lockPrefix),
      range_end: prefixEnd(keys.lockPrefix),
      sort_order: 'Ascend',
      sort_target: 'Create',
      limit: 1,
    }),
  );
  const kv = res.kvs[0];
  if (!kv) return null;
  return parseJson<LockRecord>(kv.value)?.node ?? `(foreign ${kv.key.toString()})`;
}
