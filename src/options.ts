/**
 * open() options: the public shape, the defaults, and the single validation pass. Everything past
 * open() receives a frozen ResolvedOptions and never re-checks it.
 */
import * as os from 'os';
import * as path from 'path';
import { InvalidOptionError } from './errors';

/** The etcd coordinator (the product): leases, fences and commit records in etcd. */
export interface EtcdCoordinatorOptions {
  kind: 'etcd';
  /** etcd client URLs, e.g. ['http://127.0.0.1:2379']. */
  endpoints: string[];
  /** Key prefix shared by every node of the cluster. Default '/sqlite-ha'. */
  prefix?: string;
  /** PEM contents (not paths) for a TLS connection. */
  tls?: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string };
  auth?: { username: string; password: string };
}

/** The embedded coordinator for one host: a lock directory beside the database (docs/HAZARDS.md H7). */
export interface LockfileCoordinatorOptions {
  kind: 'lockfile';
  /** proper-lockfile's `stale`: a lock not refreshed for this long may be taken over. Default 10000. */
  staleMs?: number;
}

/** Which coordinator hands out the write lease. */
export type CoordinatorOptions = EtcdCoordinatorOptions | LockfileCoordinatorOptions;

/** The rollback journal flavours that work on shared storage. */
export type JournalMode = 'TRUNCATE' | 'PERSIST';
/** Whether SQLite's file locks are trusted across hosts: 'auto' decides from the mount. */
export type LocksMode = 'auto' | 'trusted' | 'none';

/** The options of open(); only `coordinator` is required. */
export interface OpenOptions {
  coordinator: CoordinatorOptions;
  /** Name of the database in the coordinator's keys. Default: the file's base name. */
  name?: string;
  /** This node's identity in lease records. Default `${hostname}:${pid}`. */
  nodeId?: string;
  /** Lease TTL. etcd grants whole seconds, at least 2 s. Default 5000. */
  leaseTtlMs?: number;
  /** Commits stop this long before the lease could expire. Default 1000. */
  safetyMarginMs?: number;
  /** A holder with no writes for this long releases the lease. Default 1000. */
  idleReleaseMs?: number;
  /** Longest wait for the lease (and for an unreachable coordinator). Default 10000. */
  acquireTimeoutMs?: number;
  /** Deadline on every single etcd call. Default 2000. */
  rpcTimeoutMs?: number;
  /** SQLite busy_timeout on every connection. Default 5000. */
  busyTimeoutMs?: number;
  /** Rollback journal flavour (WAL, MEMORY and OFF are refused). Default 'TRUNCATE'. */
  journalMode?: JournalMode;
  /**
   * Whether SQLite's file locks cross hosts: 'trusted' relies on them, 'none' is the lockless
   * mode (etcd gates readers out of commit windows), 'auto' picks from /proc/mounts. Default 'auto'.
   */
  locks?: LocksMode;
}

/** PEM contents as Buffers; a part not given is null (a missing CA means the system roots). */
export interface ResolvedTls {
  readonly ca: Buffer | null;
  readonly cert: Buffer | null;
  readonly key: Buffer | null;
}

/** The etcd coordinator options after validation: every default filled, nothing optional. */
export interface ResolvedEtcdCoordinator {
  readonly kind: 'etcd';
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly tls: ResolvedTls | null;
  readonly auth: { readonly username: string; readonly password: string } | null;
}

/** The lockfile coordinator options after validation. */
export interface ResolvedLockfileCoordinator {
  readonly kind: 'lockfile';
  readonly staleMs: number;
}

/** What open() works with: every option validated and every default filled in. */
export interface ResolvedOptions {
  readonly path: string;
  readonly coordinator: ResolvedEtcdCoordinator | ResolvedLockfileCoordinator;
  readonly name: string;
  readonly nodeId: string;
  readonly leaseTtlMs: number;
  readonly safetyMarginMs: number;
  readonly idleReleaseMs: number;
  readonly acquireTimeoutMs: number;
  readonly rpcTimeoutMs: number;
  readonly busyTimeoutMs: number;
  readonly journalMode: JournalMode;
  readonly locks: LocksMode;
}

const TOP_KEYS = [
  'coordinator', 'name', 'nodeId', 'leaseTtlMs', 'safetyMarginMs', 'idleReleaseMs',
  'acquireTimeoutMs', 'rpcTimeoutMs', 'busyTimeoutMs', 'journalMode', 'locks',
];
const ETCD_KEYS = ['kind', 'endpoints', 'prefix', 'tls', 'auth'];
const LOCKFILE_KEYS = ['kind', 'staleMs'];

/** The defaults of every open() option (the one place they are written). */
export const DEFAULTS = {
  prefix: '/sqlite-ha',
  leaseTtlMs: 5000,
  safetyMarginMs: 1000,
  idleReleaseMs: 1000,
  acquireTimeoutMs: 10000,
  rpcTimeoutMs: 2000,
  busyTimeoutMs: 5000,
  journalMode: 'TRUNCATE' as JournalMode,
  locks: 'auto' as LocksMode,
  lockfileStaleMs: 10000,
};

/** Validates once and fills defaults; throws InvalidOptionError naming the option and the fix. */
export function resolveOptions(file: unknown, options: unknown): ResolvedOptions {
  if (typeof file !== 'string' || file.length === 0 || file === ':memory:') {
    throw new InvalidOptionError('path', file, 'a path to a database file on shared storage');
  }
  if (!isObject(options)) throw new InvalidOptionError('options', options, 'an object with a coordinator');
  rejectUnknown('options', options, TOP_KEYS);
  const coordinator = resolveCoordinator(options.coordinator);

  const leaseTtlMs = int(options, 'leaseTtlMs', DEFAULTS.leaseTtlMs, 2000, 3_600_000);
  const safetyMarginMs = int(options, 'safetyMarginMs', defaultSafetyMarginMs(leaseTtlMs), 0, leaseTtlMs);
  if (safetyMarginMs >= leaseTtlMs / 2) {
    throw new InvalidOptionError('safetyMarginMs', safetyMarginMs, `less than half of leaseTtlMs (${leaseTtlMs})`);
  }
  const journalMode = options.journalMode ?? DEFAULTS.journalMode;
  if (journalMode !== 'TRUNCATE' && journalMode !== 'PERSIST') {
    throw new InvalidOptionError(
      'journalMode', journalMode,
      "'TRUNCATE' or 'PERSIST' (WAL, MEMORY, OFF and DELETE break on shared filesystems, see HAZARDS H1)",
    );
  }
  const locks = options.locks ?? DEFAULTS.locks;
  if (locks !== 'auto' && locks !== 'trusted' && locks !== 'none') {
    throw new InvalidOptionError('locks', locks, "'auto', 'trusted' or 'none'");
  }
  // The default name is the file's base name, made safe for etcd keys.
  const name = options.name ?? path.basename(file).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 128);
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(name)) {
    throw new InvalidOptionError('name', name, '1-128 characters of A-Z a-z 0-9 . _ -');
  }
  const nodeId = options.nodeId ?? `${os.hostname()}:${process.pid}`;
  if (typeof nodeId !== 'string' || nodeId.length === 0 || nodeId.length > 256) {
    throw new InvalidOptionError('nodeId', nodeId, 'a non-empty string of at most 256 characters');
  }
  if (locks === 'none' && coordinator.kind !== 'etcd') {
    throw new InvalidOptionError('locks', locks, "'auto' or 'trusted' with the lockfile coordinator (the lockless mode needs etcd)");
  }
  return Object.freeze({
    path: path.resolve(file),
    coordinator,
    name,
    nodeId,
    leaseTtlMs,
    safetyMarginMs,
    idleReleaseMs: int(options, 'idleReleaseMs', DEFAULTS.idleReleaseMs, 0, 3_600_000),
    acquireTimeoutMs: int(options, 'acquireTimeoutMs', DEFAULTS.acquireTimeoutMs, 1, 3_600_000),
    rpcTimeoutMs: int(options, 'rpcTimeoutMs', DEFAULTS.rpcTimeoutMs, 50, 600_000),
    busyTimeoutMs: int(options, 'busyTimeoutMs', DEFAULTS.busyTimeoutMs, 0, 600_000),
    journalMode,
    locks,
  });
}

/** The default safety margin for a lease TTL: 1 s, at most a quarter of the TTL. */
export function defaultSafetyMarginMs(leaseTtlMs: number): number {
  return Math.min(DEFAULTS.safetyMarginMs, leaseTtlMs / 4);
}

function resolveCoordinator(c: unknown): ResolvedOptions['coordinator'] {
  if (!isObject(c)) {
    throw new InvalidOptionError(
      'coordinator', c, "{ kind: 'etcd', endpoints: [...] } or { kind: 'lockfile' }",
    );
  }
  if (c.kind === 'lockfile') {
    rejectUnknown('coordinator', c, LOCKFILE_KEYS);
    return Object.freeze({
      kind: 'lockfile' as const,
      staleMs: int(c, 'staleMs', DEFAULTS.lockfileStaleMs, 2000, 3_600_000, 'coordinator.'),
    });
  }
  if (c.kind !== 'etcd') {
    throw new InvalidOptionError('coordinator.kind', c.kind, "'etcd' or 'lockfile'");
  }
  rejectUnknown('coordinator', c, ETCD_KEYS);
  const endpoints = c.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw new InvalidOptionError('coordinator.endpoints', endpoints, "a non-empty array such as ['http://127.0.0.1:2379']");
  }
  for (const e of endpoints) {
    if (typeof e !== 'string' || !/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(e)) {
      throw new InvalidOptionError('coordinator.endpoints', e, "URLs like 'http://host:2379' or 'https://host:2379'");
    }
  }
  const prefix = c.prefix ?? DEFAULTS.prefix;
  if (typeof prefix !== 'string' || !/^\/[^\s]*[^/\s]$|^\/$/.test(prefix) || prefix === '/') {
    throw new InvalidOptionError('coordinator.prefix', prefix, "a key prefix starting with '/' and not ending with '/', e.g. '/sqlite-ha'");
  }
  if (c.auth !== undefined) {
    if (!isObject(c.auth) || typeof c.auth.username !== 'string' || typeof c.auth.password !== 'string') {
      // Never echo the password back.
      throw new InvalidOptionError('coordinator.auth', '(redacted)', '{ username: string, password: string }');
    }
  }
  if (c.tls !== undefined && !isObject(c.tls)) {
    throw new InvalidOptionError('coordinator.tls', c.tls, '{ ca?, cert?, key? } with PEM contents');
  }
  const tls = c.tls as EtcdCoordinatorOptions['tls'];
  return Object.freeze({
    kind: 'etcd' as const,
    endpoints: Object.freeze(endpoints.map((e: string) => e.replace(/\/$/, ''))),
    prefix,
    tls: tls === undefined ? null : Object.freeze({ ca: pem(tls, 'ca'), cert: pem(tls, 'cert'), key: pem(tls, 'key') }),
    auth: c.auth === undefined ? null : Object.freeze({ username: c.auth.username as string, password: c.auth.password as string }),
  });
}

function pem(tls: NonNullable<EtcdCoordinatorOptions['tls']>, part: 'ca' | 'cert' | 'key'): Buffer | null {
  const v: unknown = tls[part];
  if (v === undefined) return null;
  if (Buffer.isBuffer(v)) return v;
  // Never echo it: it may be a private key.
  if (typeof v !== 'string') throw new InvalidOptionError(`coordinator.tls.${part}`, '(value not shown)', 'PEM contents as a string or Buffer');
  return Buffer.from(v);
}

function int(
  obj: Record<string, unknown>, key: string, dflt: number, min: number, max: number, scope = '',
): number {
  const v = obj[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new InvalidOptionError(scope + key, v, `a number of milliseconds from ${min} to ${max}`);
  }
  return Math.round(v);
}

function rejectUnknown(scope: string, obj: Record<string, unknown>, known: string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      // The value is not echoed: a misspelt key may hold credentials.
      throw new InvalidOptionError(`${scope}.${k}`, '(value not shown)', `one of the known options: ${known.join(', ')}`);
    }
  }
}

function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
