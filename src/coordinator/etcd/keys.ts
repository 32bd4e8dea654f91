/**
 * The etcd key layout, the contract between the library, the CLI and anything else that reads
 * the cluster (docs/ARCHITECTURE.md describes it):
 *
 *   <prefix>/<db>/lock/<lease id hex>  waiter keys, etcd concurrency Mutex layout (etcdctl lock
 *                                      <prefix>/<db>/lock takes part in the same queue). Value:
 *                                      JSON LockRecord for sqlite-ha nodes, anything for others.
 *   <prefix>/<db>/commit               JSON CommitRecord of the last commit, written only while
 *                                      the writer's lock key exists.
 *   <prefix>/<db>/info                 JSON DatabaseInfo written by each holder on acquire.
 *   <prefix>/<db>/identity             JSON RecordedIdentity {id,locks,path,node,mount}: created once,
 *                                      by the database's first holder, never overwritten.
 *   <prefix>/<db>/holder               JSON HolderRecord, written in the transaction that confirms
 *                                      ownership, before the holder touches the file. Without a
 *                                      `fence` field (a free lock taken in one transaction) the
 *                                      fence is the key's mod revision.
 *   <prefix>/<db>/released             JSON HolderRecord of the last holder that let go cleanly.
 *   <prefix>/<db>/gate                 lockless mode: exists while the writer commits (no new readers).
 *   <prefix>/<db>/readers/<lease hex>  lockless mode: one registration per reading node, attached
 *                                      to its reader session; JSON ReaderRecord (`acked`: the
 *                                      revision of the last gate it acknowledged).
 *   <prefix>/<db>/history/<fence>      JSON HandoverRecord, one per acquisition (last 100 kept).
 *   <prefix>/<db>/events/<kind>        JSON event, overwritten; exists so watchers see refusals.
 *   <prefix>/<db>/serve/<node>         JSON ServeRecord of a node running `sqlite-ha serve`, on its
 *                                      own etcd lease (gone soon after the node is).
 *   <prefix>/<db>/standby              JSON StandbyRecord: the standby's position as its last writer
 *                                      saw it (best effort, at most about once a second).
 *   <prefix>/<db>/promoted             JSON PromotionRecord: `sqlite-ha promote` moved the primary to
 *                                      a file built from the standby; holders of any other path refuse.
 */
import type { LeaseEventKind } from '../types';

/** The value of a waiter key: who queued for the lease, and when. */
export interface LockRecord {
  node: string;
  pid: number;
  ttlMs: number;
  /** Wall clock (ms) when the waiter key was written. */
  queuedAt: number;
}

export type { CommitRecord } from '../types';

/** Lockless mode: a reading node's registration. */
export interface ReaderRecord {
  node: string;
  /** Mod revision of the last gate this node acknowledged (0: none yet). */
  acked: number;
}

/** The current (or last cleanly released) holder of the lease. */
export interface HolderRecord {
  fence: number;
  node: string;
  ttlMs: number;
  time: number;
}

/** How the database is set up, as its latest holder wrote it (for the CLI). */
export interface DatabaseInfo {
  path: string;
  locks: 'trusted' | 'none';
  journalMode: string;
  leaseTtlMs: number;
  node: string;
  /** The database id (from the identity key), once known. */
  id?: string;
}

/** Written by the holder's standby writer (src/standby/writer.ts). */
export interface StandbyRecord {
  node: string;
  dir: string;
  mode: 'async' | 'sync';
  /** Newest txid durable in the standby chain (null: none yet). */
  txid: number | null;
  /** Newest txid the node committed (captured). */
  capturedTxid: number | null;
  lagMs: number;
  lagging: boolean;
  lastError: { code: string; message: string; time: number } | null;
  time: number;
}

/** Written by `sqlite-ha promote`: where the database lives now. */
export interface PromotionRecord {
  /** The new primary file. */
  path: string;
  /** The path it replaced. */
  previousPath: string | null;
  /** The etcd revision of the promotion; also the new file's fence and epoch (above every older lease). */
  epoch: number;
  /** txid the new primary was built at. */
  txid: number;
  /** txid of the last acknowledged commit in etcd at promotion (txid - this = writes lost). */
  ackedTxid: number;
  standbyDir: string;
  time: number;
}

/** One acquisition of the lease: from whom, why, and how long it took. */
export interface HandoverRecord {
  fence: number;
  node: string;
  previousNode: string | null;
  /** How the previous holder let go: released (deleted its key), expired (lease ran out), first. */
  cause: 'released' | 'expired' | 'first';
  /** Time from queueing to holding, ms. */
  waitedMs: number;
  /** Time from the previous holder letting go to this node holding, ms (null when unknown). */
  handoverMs: number | null;
  time: number;
}

/** An abnormal end of a node's use of its lease, for watchers. */
export interface EventRecord {
  kind: LeaseEventKind;
  node: string;
  fence: number;
  detail: string;
  time: number;
}

/** Where a serving node answers (Hrana over HTTP); forwarding nodes send writes there. */
export interface ServeRecord {
  node: string;
  url: string;
  writes: 'local' | 'forward';
  time: number;
}

export const HISTORY_KEEP = 100;

export class Keys {
  readonly root: string;
  constructor(readonly prefix: string, readonly db: string) {
    this.root = `${prefix}/${db}`;
  }
  get lockPrefix(): string {
    return `${this.root}/lock/`;
  }
  lockKey(leaseId: string): string {
    // etcd's Mutex names waiter keys by the lease ID in lower-case hex.
    return `${this.lockPrefix}${BigInt(leaseId).toString(16)}`;
  }
  get commit(): string {
    return `${this.root}/commit`;
  }
  get info(): string {
    return `${this.root}/info`;
  }
  get identity(): string {
    return `${this.root}/identity`;
  }
  get holder(): string {
    return `${this.root}/holder`;
  }
  get released(): string {
    return `${this.root}/released`;
  }
  get gate(): string {
    return `${this.root}/gate`;
  }
  get readersPrefix(): string {
    return `${this.root}/readers/`;
  }
  readerKey(leaseId: string): string {
    return `${this.readersPrefix}${BigInt(leaseId).toString(16)}`;
  }
  get historyPrefix(): string {
    return `${this.root}/history/`;
  }
  historyKey(fence: number): string {
    return `${this.historyPrefix}${String(fence).padStart(16, '0')}`;
  }
  serve(node: string): string {
    return `${this.root}/serve/${encodeURIComponent(node)}`;
  }
  get standby(): string {
    return `${this.root}/standby`;
  }
  get promoted(): string {
    return `${this.root}/promoted`;
  }
  event(kind: EventRecord['kind']): string {
    return `${this.root}/events/${kind}`;
  }
}

/** Databases under a prefix are the names that have a lock/, commit or info key. */
export function databaseNameFromKey(prefix: string, key: string): string | null {
  if (!key.startsWith(prefix + '/')) return null;
  const rest = key.slice(prefix.length + 1);
  const slash = rest.indexOf('/');
  return slash > 0 ? rest.slice(0, slash) : null;
}

/** The exclusive end of a prefix range: the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): Buffer {
  const buf = Buffer.from(prefix);
  for (let i = buf.length - 1; i >= 0; i--) {
    if (buf[i] < 0xff) {
      buf[i]++;
      return buf.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export function parseJson<T>(value: Buffer | string | undefined | null): T | null {
  if (value === undefined || value === null) return null;
  try {
    const text = value.toString();
    return text ? (JSON.parse(text) as T) : null;
  } catch {
    return null;
  }
}
