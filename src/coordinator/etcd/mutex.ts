/**
 * etcd's concurrency Mutex recipe (client/v3/concurrency/mutex.go), so `etcdctl lock` and Go
 * services share the queue: one transaction puts our waiter key if absent and reads the owner (the
 * lowest create revision under the prefix); then we wait for every key created before ours to be
 * deleted, watching only the newest of them each time.
 */
import { monotonicNow } from '../../clock';
import type { Etcd3 } from 'etcd3';
import { AcquireTimeoutError, LeaseLostError } from '../../errors';
import { etcdCall, toCoordinatorError } from './client';
import type { RecordedIdentity } from '../../storage/identity';
import { CommitRecord, HolderRecord, Keys, LockRecord, parseJson, prefixEnd, PromotionRecord } from './keys';

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

/** Puts our waiter key (attached to leaseId) unless present; returns its create revision. */
export async function enqueue(client: Etcd3, keys: Keys, leaseId: string, record: LockRecord): Promise<Queued> {
  const key = keys.lockKey(leaseId);
  const k = Buffer.from(key);
  const res = await etcdCall('lock enqueue', () =>
    client.kv.txn({
      compare: [{ key: k, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: k, value: Buffer.from(JSON.stringify(record)), lease: leaseId } }],
      failure: [{ request_range: { key: k } }],
    }),
  );
  const revision = res.succeeded
    ? Number(res.header.revision)
    : Number(res.responses[0].response_range.kvs[0].create_revision);
  return { revision, key };
}

/**
 * Waits until every waiter key created before ours is gone, then confirms ours still exists.
 * Gives up at deadline with AcquireTimeoutError naming the current owner.
 */
export async function waitTurn(
  client: Etcd3, keys: Keys, q: Queued, deadline: number, me: Omit<HolderRecord, 'fence' | 'time'>,
): Promise<Held> {
  const lockPrefix = Buffer.from(keys.lockPrefix);
  const end = prefixEnd(keys.lockPrefix);
  for (;;) {
    const res = await etcdCall('lock wait', () =>
      client.kv.range({
        key: lockPrefix,
        range_end: end,
        max_create_revision: q.revision - 1,
        sort_order: 'Descend',
        sort_target: 'Create',
        limit: 1,
      }),
    );
    const ahead = res.kvs[0];
    if (!ahead) break;
    const gone = await waitDelete(client, ahead.key, Number(res.header.revision) + 1, deadline);
    if (!gone) throw new AcquireTimeoutError(0, await ownerNode(client, keys));
  }
  // One round trip confirms ownership, reads what the previous holder left, and records us as
  // holder before we touch the file (so our successor can tell a clean hand-over from a crash).
  const record: HolderRecord = { ...me, fence: q.revision, time: Date.now() };
  const confirm = await etcdCall('lock confirm', () =>
    client.kv.txn({
      compare: [{ key: Buffer.from(q.key), target: 'Create', result: 'Equal', create_revision: q.revision }],
      success: [
        { request_range: { key: Buffer.from(keys.commit) } },
        { request_range: { key: Buffer.from(keys.holder) } },
        { request_range: { key: Buffer.from(keys.released) } },
        { request_range: { key: Buffer.from(keys.identity) } },
        { request_range: { key: Buffer.from(keys.promoted) } },
        { request_put: { key: Buffer.from(keys.holder), value: Buffer.from(JSON.stringify(record)) } },
      ],
      failure: [],
    }),
  );
  if (!confirm.succeeded) throw new LeaseLostError('our etcd lease expired while queued for the lock');
  const [commitKv, holderKv, releasedKv, identityKv, promotedKv] = confirm.responses.slice(0, 5).map((r) => r.response_range.kvs[0]);
  const previous = parseJson<HolderRecord>(holderKv?.value);
  const released = parseJson<HolderRecord>(releasedKv?.value);
  const clean = previous === null || (released !== null && released.fence === previous.fence);
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

/** Resolves true when `key` is deleted (watching from `fromRevision`), false at deadline. */
function waitDelete(client: Etcd3, key: Buffer, fromRevision: number, deadline: number): Promise<boolean> {
  const k = key.toString();
  return waitKeysGone(client, k, [k], fromRevision, deadline);
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

/**
 * Resolves true once every key in `keys` (under `prefix`) is deleted, watching from
 * `fromRevision`; false at deadline.
 */
export function waitKeysGone(
  client: Etcd3, prefix: string, keys: string[], fromRevision: number, deadline: number,
): Promise<boolean> {
  const pending = new Set(keys);
  return new Promise((resolve, reject) => {
    let done = false;
    let watcher: { cancel(): Promise<void> } | null = null;
    const finish = (v: boolean | Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void watcher?.cancel().catch(() => undefined);
      if (v instanceof Error) reject(toCoordinatorError('watch', v));
      else resolve(v);
    };
    const timer = setTimeout(() => finish(false), Math.max(0, deadline - monotonicNow()));
    client
      .watch()
      .prefix(prefix)
      .startRevision(String(fromRevision))
      .create()
      .then((w) => {
        watcher = w;
        if (done) void w.cancel().catch(() => undefined);
        w.on('delete', (kv) => {
          pending.delete(kv.key.toString());
          if (pending.size === 0) finish(true);
        });
        w.on('error', (err) => finish(err));
      })
      .catch((err) => finish(err));
  });
}
