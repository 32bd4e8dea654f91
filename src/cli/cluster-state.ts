/**
 * Reads what the cluster says about every database under a prefix: holder, fence token, lease TTL
 * left, waiters in queue order, last commit, storage info, recent hand-overs and events. `status`,
 * `monitor` and the metrics all derive their view from here, from raw key-values plus lease TTLs,
 * so a watch-fed key map and a one-shot range produce the same answer.
 */
import type { Etcd3, IKeyValue } from 'etcd3';
import {
  CommitRecord, DatabaseInfo, EventRecord, HandoverRecord, LockRecord, PromotionRecord, StandbyRecord,
  databaseNameFromKey, parseJson, prefixEnd,
} from '../coordinator/etcd/keys';
import { ConnectionSettings, withDeadline } from './connection';

/** A lease's remaining TTL as etcd reported it at `measuredAt` (local wall clock, ms). */
export interface LeaseTtl {
  /** null: etcd no longer knows the lease (revoked or expired). */
  ttlLeftMs: number | null;
  grantedMs: number | null;
  measuredAt: number;
}

/** One key in a database's lock queue (the holder is the first). */
export interface QueueEntry {
  key: string;
  /** The lease id in lower-case hex, as in the key name. */
  leaseId: string;
  /** The same lease id in decimal, as etcd's API takes it ('0': the key has no lease). */
  lease: string;
  /** Node id from the LockRecord, or '(foreign)' for keys not written by sqlite-ha (etcdctl lock, Go clients). */
  node: string;
  foreign: boolean;
  pid: number | null;
  /** The key's create revision: the fence token once this entry holds the lock. */
  createRevision: number;
  /** Wall clock (ms) the node wrote its key, from the LockRecord. */
  queuedAt: number | null;
  ttlLeftMs: number | null;
  leaseTtlMs: number | null;
}

export interface CommitView {
  txid: number;
  node: string;
  fence: number;
  time: number;
  ageMs: number;
}

export interface DatabaseView {
  name: string;
  holder: QueueEntry | null;
  /** The holder's fence token (its key's create revision). */
  fence: number | null;
  ttlLeftMs: number | null;
  /** Everyone behind the holder, in queue order (lowest create revision first). */
  waiters: QueueEntry[];
  lastCommit: CommitView | null;
  /** From the info record: 'trusted' (SQLite locks cross hosts) or 'none' (lockless mode). */
  storageMode: DatabaseInfo['locks'] | null;
  info: DatabaseInfo | null;
  lastHandover: HandoverRecord | null;
  /** The last event of each kind, newest first. */
  events: EventRecord[];
  /** Lockless mode: read transactions registered in etcd right now. */
  readers: number;
  /** Lockless mode: the writer's commit gate is closed (a commit is in progress, new reads wait). */
  committing: boolean;
  /** The standby copy, as its last writer reported it (null: no standby configured or reported). */
  standby: StandbyView | null;
  /** Set once `sqlite-ha promote` moved the primary. */
  promoted: PromotionRecord | null;
}

export interface StandbyView extends StandbyRecord {
  /** Acknowledged commits (etcd's commit record) not yet in the standby. */
  behindTxids: number | null;
  /** Age of the report, ms. */
  ageMs: number;
}

export interface ClusterView {
  prefix: string;
  /** etcd revision the view was read at. */
  revision: number;
  time: number;
  databases: DatabaseView[];
}

const FOREIGN = '(foreign)';

/**
 * Every key under `<prefix>/` (or only `<prefix>/<db>/`: all that an etcd role granted on one
 * database may read), read at one revision.
 */
export async function readKeys(client: Etcd3, prefix: string, db?: string): Promise<{ kvs: IKeyValue[]; revision: number }> {
  const from = db === undefined ? prefix + '/' : `${prefix}/${db}/`;
  const res = await client.kv.range({ key: Buffer.from(from), range_end: prefixEnd(from) });
  return { kvs: res.kvs, revision: Number(res.header.revision) };
}

/** LeaseTimeToLive for a lease id given in decimal (as IKeyValue.lease is). */
export async function readLeaseTtl(client: Etcd3, leaseDecimal: string): Promise<LeaseTtl> {
  const res = await client.leaseClient.leaseTimeToLive({ ID: leaseDecimal });
  const ttl = Number(res.TTL);
  return {
    ttlLeftMs: ttl < 0 ? null : ttl * 1000,
    grantedMs: ttl < 0 ? null : Number(res.grantedTTL) * 1000,
    measuredAt: Date.now(),
  };
}

/** A consistent view of every database under the prefix (or of `db`), bounded by the connection timeout. */
export async function readClusterState(client: Etcd3, s: ConnectionSettings, db?: string): Promise<ClusterView> {
  return withDeadline(s, `reading ${db === undefined ? s.prefix : `${s.prefix}/${db}/`}`, async () => {
    const { kvs, revision } = await readKeys(client, s.prefix, db);
    const leases = await readQueueLeases(client, s.prefix, kvs);
    return deriveView(s.prefix, kvs, leases, revision, Date.now());
  });
}

/** TTLs of the leases of every lock key among `kvs`, keyed by decimal lease id. */
export async function readQueueLeases(client: Etcd3, prefix: string, kvs: Iterable<IKeyValue>): Promise<Map<string, LeaseTtl>> {
  const ids = new Set<string>();
  for (const kv of kvs) {
    if (classify(prefix, kv.key.toString())?.kind === 'lock' && kv.lease !== '0') ids.add(kv.lease);
  }
  const leases = new Map<string, LeaseTtl>();
  await Promise.all([...ids].map(async (id) => leases.set(id, await readLeaseTtl(client, id))));
  return leases;
}

export type KeyKind = 'lock' | 'commit' | 'info' | 'history' | 'event' | 'reader' | 'gate' | 'standby' | 'promoted' | 'other';

/** Which database a key belongs to and what it is, or null when it is not under the prefix. */
export function classify(prefix: string, key: string): { db: string; kind: KeyKind } | null {
  const db = databaseNameFromKey(prefix, key);
  if (!db) return null;
  const rest = key.slice(prefix.length + 1 + db.length);
  let kind: KeyKind = 'other';
  if (rest.startsWith('/lock/') && rest.length > '/lock/'.length) kind = 'lock';
  else if (rest === '/commit') kind = 'commit';
  else if (rest === '/info') kind = 'info';
  else if (rest.startsWith('/history/')) kind = 'history';
  else if (rest.startsWith('/events/')) kind = 'event';
  else if (rest.startsWith('/readers/')) kind = 'reader';
  else if (rest === '/gate') kind = 'gate';
  else if (rest === '/standby') kind = 'standby';
  else if (rest === '/promoted') kind = 'promoted';
  return { db, kind };
}

/** Pure: builds the view from key-values and lease TTLs; `now` is the local wall clock. */
export function deriveView(
  prefix: string,
  kvs: Iterable<IKeyValue>,
  leases: Map<string, LeaseTtl>,
  revision: number,
  now: number,
): ClusterView {
  interface Acc {
    locks: IKeyValue[];
    commit: CommitRecord | null;
    info: DatabaseInfo | null;
    lastHandover: HandoverRecord | null;
    events: EventRecord[];
    readers: number;
    committing: boolean;
    standby: StandbyRecord | null;
    promoted: PromotionRecord | null;
  }
  const dbs = new Map<string, Acc>();
  for (const kv of kvs) {
    const c = classify(prefix, kv.key.toString());
    if (!c) continue;
    let acc = dbs.get(c.db);
    if (!acc) {
      acc = { locks: [], commit: null, info: null, lastHandover: null, events: [], readers: 0, committing: false, standby: null, promoted: null };
      dbs.set(c.db, acc);
    }
    switch (c.kind) {
      case 'lock':
        acc.locks.push(kv);
        break;
      case 'commit':
        acc.commit = parseJson<CommitRecord>(kv.value);
        break;
      case 'info':
        acc.info = parseJson<DatabaseInfo>(kv.value);
        break;
      case 'history': {
        const h = parseJson<HandoverRecord>(kv.value);
        if (h && (!acc.lastHandover || h.fence > acc.lastHandover.fence)) acc.lastHandover = h;
        break;
      }
      case 'event': {
        const e = parseJson<EventRecord>(kv.value);
        if (e) acc.events.push(e);
        break;
      }
      case 'reader':
        acc.readers++;
        break;
      case 'gate':
        acc.committing = true;
        break;
      case 'standby':
        acc.standby = parseJson<StandbyRecord>(kv.value);
        break;
      case 'promoted':
        acc.promoted = parseJson<PromotionRecord>(kv.value);
        break;
    }
  }
  const databases: DatabaseView[] = [];
  for (const [name, acc] of [...dbs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const queue = acc.locks
      .sort((a, b) => Number(a.create_revision) - Number(b.create_revision))
      .map((kv) => queueEntry(kv, leases.get(kv.lease), now));
    const holder = queue[0] ?? null;
    const c = acc.commit;
    databases.push({
      name,
      holder,
      fence: holder ? holder.createRevision : null,
      ttlLeftMs: holder ? holder.ttlLeftMs : null,
      waiters: queue.slice(1),
      lastCommit: c && typeof c.txid === 'number'
        ? { txid: c.txid, node: c.node, fence: c.fence, time: c.time, ageMs: Math.max(0, now - c.time) }
        : null,
      storageMode: acc.info?.locks ?? null,
      info: acc.info,
      lastHandover: acc.lastHandover,
      events: acc.events.sort((a, b) => b.time - a.time),
      readers: acc.readers,
      committing: acc.committing,
      standby: acc.standby && typeof acc.standby === 'object'
        ? {
            ...acc.standby,
            behindTxids: c && typeof c.txid === 'number' && acc.standby.txid !== null ? Math.max(0, c.txid - acc.standby.txid) : null,
            ageMs: Math.max(0, now - acc.standby.time),
          }
        : null,
      promoted: acc.promoted,
    });
  }
  return { prefix, revision, time: now, databases };
}

function queueEntry(kv: IKeyValue, lease: LeaseTtl | undefined, now: number): QueueEntry {
  const key = kv.key.toString();
  const rec = parseJson<LockRecord>(kv.value);
  const sqliteHa = rec !== null && typeof rec === 'object' && typeof rec.node === 'string';
  return {
    key,
    leaseId: kv.lease !== '0' ? BigInt(kv.lease).toString(16) : key.slice(key.lastIndexOf('/') + 1),
    lease: kv.lease,
    node: sqliteHa ? rec.node : FOREIGN,
    foreign: !sqliteHa,
    pid: sqliteHa && typeof rec.pid === 'number' ? rec.pid : null,
    createRevision: Number(kv.create_revision),
    queuedAt: sqliteHa && typeof rec.queuedAt === 'number' ? rec.queuedAt : null,
    ttlLeftMs: ttlLeftAt(lease, now),
    leaseTtlMs: lease?.grantedMs ?? (sqliteHa && typeof rec.ttlMs === 'number' ? rec.ttlMs : null),
  };
}

/** TTL left at `now`, counting down locally from etcd's last answer. */
export function ttlLeftAt(lease: LeaseTtl | undefined, now: number): number | null {
  if (!lease || lease.ttlLeftMs === null) return null;
  return Math.max(0, lease.ttlLeftMs - Math.max(0, now - lease.measuredAt));
}

/** The stable JSON form of a view (what `status --json` prints and monitor's snapshot line carries). */
export function viewToJson(view: ClusterView): object {
  return {
    prefix: view.prefix,
    revision: view.revision,
    time: new Date(view.time).toISOString(),
    databases: view.databases.map((d) => ({
      name: d.name,
      holder: d.holder ? entryJson(d.holder) : null,
      fence: d.fence,
      ttlLeftMs: d.ttlLeftMs,
      waiters: d.waiters.map(entryJson),
      lastCommit: d.lastCommit
        ? { txid: d.lastCommit.txid, node: d.lastCommit.node, fence: d.lastCommit.fence, time: iso(d.lastCommit.time), ageMs: d.lastCommit.ageMs }
        : null,
      storageMode: d.storageMode,
      info: d.info,
      lastHandover: d.lastHandover ? { ...d.lastHandover, time: iso(d.lastHandover.time) } : null,
      events: d.events.map((e) => ({ ...e, time: iso(e.time) })),
      readers: d.readers,
      committing: d.committing,
      standby: d.standby ? { ...d.standby, time: iso(d.standby.time) } : null,
      promoted: d.promoted ? { ...d.promoted, time: iso(d.promoted.time) } : null,
    })),
  };
}

function entryJson(e: QueueEntry): object {
  return {
    node: e.node,
    foreign: e.foreign,
    pid: e.pid,
    leaseId: e.leaseId,
    createRevision: e.createRevision,
    queuedAt: e.queuedAt === null ? null : iso(e.queuedAt),
    ttlLeftMs: e.ttlLeftMs,
    leaseTtlMs: e.leaseTtlMs,
    key: e.key,
  };
}

function iso(ms: number): string | null {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}
