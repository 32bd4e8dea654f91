/**
 * The Coordinator/Lease split (after LiteFS's Leaser/Lease): a Coordinator hands out Leases for one
 * database; a Lease is the single place that says "you may write" and, through its `lost` event,
 * "you no longer may". One implementation per folder: etcd/ and lockfile/. The lockless mode needs
 * more (a commit gate, reader registration, the previous holder's fate): GatedCoordinator and
 * GatedLease, which only etcd implements. The records shared by every backend live here too.
 */
import { EventEmitter } from 'events';
import type { RecordedIdentity } from '../storage/identity';
import type { StandbyRecord } from './etcd/keys';

/** The last commit, as published by its writer; a node's view is fresh once its txid reaches it. */
export interface CommitRecord {
  txid: number;
  fence: number;
  node: string;
  /** Wall clock (ms) of the commit. */
  time: number;
  /** Lockless mode: fence of the hand-over that last moved the file to a new inode (0: never). */
  epoch?: number;
}

/** What a node reports to watchers (the CLI) when it stops using its lease abnormally. */
export type LeaseEventKind = 'fenced-write-refused' | 'commit-outcome-unknown' | 'lease-lost';

export interface AcquireOptions {
  timeoutMs: number;
}

export interface Lease extends EventEmitter {
  /** Fence token: strictly greater than every earlier holder's. */
  readonly fence: number;
  /** Monotonic ms (src/clock.ts) after which no commit may start (last acknowledged renewal + TTL - margin). */
  readonly commitDeadline: number;
  /** Monotonic ms (src/clock.ts) when the coordinator itself would let the lease go, for display. */
  readonly expiresAt: number;
  /** False once released or lost. */
  readonly valid: boolean;
  /** True when another node is queued behind this lease. */
  readonly hasWaiters: boolean;
  /** The last commit published before this lease was granted (null: none, or not tracked). */
  readonly commitAtAcquire: CommitRecord | null;
  /** The database's recorded identity when the lease was granted (null: none yet, or not kept by this backend). */
  readonly identity: RecordedIdentity | null;
  /**
   * Records the identity if none is recorded yet, only while this lease holds; resolves with the
   * identity on record afterwards (a backend that keeps none hands back the one given).
   */
  recordIdentity(identity: RecordedIdentity): Promise<RecordedIdentity>;
  /** Publishes a commit record; resolves false if the lease no longer exists. */
  publishCommit(record: CommitRecord): Promise<boolean>;
  /** Records an event that watchers (the CLI) should see; best effort. */
  reportEvent(kind: LeaseEventKind, detail: string): void;
  /** Gives the lease up (revokes it) so a waiter proceeds at once. Idempotent. */
  release(): Promise<void>;
  /** Marks the lease lost locally (e.g. after an unknown commit outcome) and releases it. */
  abandon(reason: Error): Promise<void>;

  on(event: 'lost', listener: (reason: Error) => void): this;
  on(event: 'waiter', listener: () => void): this;
}

export interface Coordinator {
  readonly kind: 'etcd' | 'lockfile';
  /** Waits for the lease; AcquireTimeoutError or CoordinatorUnavailableError past timeoutMs. */
  acquire(opts: AcquireOptions): Promise<Lease>;
  /** The last published commit, read linearizably (null when the backend keeps none). */
  readCommit(): Promise<CommitRecord | null>;
  /** Node id of the current holder, if any. */
  currentHolder(): Promise<string | null>;
  /** The database's recorded identity and mode (null: none yet, or not kept by this backend). */
  readIdentity(): Promise<RecordedIdentity | null>;
  /** Publishes where this node's standby stands, for the CLI (best effort; the lockfile backend keeps none). */
  reportStandby?(record: Omit<StandbyRecord, 'node'>): Promise<void>;
  close(): Promise<void>;
}

/** Lockless mode: a lease whose holder can gate readers out of its commit windows. */
export interface GatedLease extends Lease {
  /** False when the previous holder's lease expired instead of being released (a crash or pause). */
  readonly cleanHandover: boolean;
  /** The previous holder's lease TTL, when known (the successor waits it out after a crash). */
  readonly previousTtlMs: number | null;
  /** The previous holder's fence, when known (the successor neutralizes its half-done file move). */
  readonly previousFence: number | null;
  /** publishCommit() that can also open the gate, in the same coordinator transaction. */
  publishCommit(record: CommitRecord, options?: { openGate?: boolean }): Promise<boolean>;
  /**
   * Closes the gate and waits until every registered reader node acknowledged it (it starts no
   * read until the gate opens) or its registration expired, so the commit window has no reader
   * in it. publishCommit({ openGate: true }) lets them in again.
   */
  closeGate(deadline: number): Promise<void>; // deadline: monotonic ms (src/clock.ts)
  /** Opens the gate without publishing (after a commit that did not happen), only if it is still this lease's. Best effort. */
  openGate(): Promise<void>;
}

/** Lockless mode: leave to run one read transaction (the node's registration keeps writers out). */
export interface ReaderTicket {
  /** The last published commit when the ticket was issued. */
  readonly commit: CommitRecord | null;
  /**
   * Call right after the read, synchronously: false if the ticket was voided meanwhile (a gate
   * was acknowledged or the registration may have lapsed), so the read may have torn.
   */
  finish(): Promise<boolean>;
}

/** Lockless mode: a coordinator that hands out GatedLeases and registers readers. */
export interface GatedCoordinator extends Coordinator {
  acquire(opts: AcquireOptions): Promise<GatedLease>;
  /** A ticket for one read transaction, waiting while a writer's gate is closed. */
  registerReader(deadline: number): Promise<ReaderTicket>; // deadline: monotonic ms
}

/** Whether a coordinator can serve the lockless mode. */
export function isGated(c: Coordinator): c is GatedCoordinator {
  return typeof (c as Partial<GatedCoordinator>).registerReader === 'function';
}
