/**
 * open() options: the public shape, the defaults, and the single validation pass. Everything past
 * open() receives a frozen ResolvedOptions and never re-checks it.
 */
import { createPrivateKey, X509Certificate } from 'crypto';
import * as fs from 'fs';
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
  /**
   * TLS client settings. Each value is PEM: a Buffer (file contents), a string starting with
   * '-----BEGIN' (PEM text), or any other string (a path to a PEM file, read once by open()).
   * Without `ca` the system roots are used; `cert` and `key` go together.
   */
  tls?: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string };
  /** etcd user and password (never printed). */
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
  /** A standby copy on a second volume, kept by whichever node holds the lease (docs/STANDBY.md). */
  standby?: StandbyOptions;
}

/** 'sync': a write resolves once its segment is durable in the standby; 'async': written behind the commit. */
export type StandbyMode = 'async' | 'sync';

/** open() option `standby`: a standby copy on a second volume (docs/STANDBY.md). */
export interface StandbyOptions {
  /** An existing directory on another volume than the database (a second export, a local disk). */
  dir: string;
  /** 'sync': a write resolves after its segment is fsynced (RPO 0); 'async': behind the commit. Default 'async'. */
  mode?: StandbyMode;
  /** async: the standby is never meant to lag more than this; past it `db.standby.lagging` and an event. Default 1000. */
  maxLagMs?: number;
  /** Compaction keeps at most this many segments after the newest snapshot. Default 10000. */
  retainSegments?: number;
  /** Compaction folds segments older than this into a snapshot. Default 7 days. */
  retainMs?: number;
}

/** Resolved `standby` option (defaults filled). */
export interface ResolvedStandbyOptions {
  readonly dir: string;
  readonly mode: StandbyMode;
  readonly maxLagMs: number;
  readonly retainSegments: number;
  readonly retainMs: number;
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
  readonly standby: ResolvedStandbyOptions | null;
}

const TOP_KEYS = [
  'coordinator', 'name', 'nodeId', 'leaseTtlMs', 'safetyMarginMs', 'idleReleaseMs',
  'acquireTimeoutMs', 'rpcTimeoutMs', 'busyTimeoutMs', 'journalMode', 'locks', 'standby',
];
const STANDBY_KEYS = ['dir', 'mode', 'maxLagMs', 'retainSegments', 'retainMs'];
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
  standbyMode: 'async' as StandbyMode,
  standbyMaxLagMs: 1000,
  standbyRetainSegments: 10000,
  standbyRetainMs: 7 * 24 * 3600 * 1000,
  /** The CLI's etcd endpoint without --endpoints or SQLITE_HA_ETCD_ENDPOINTS. */
  cliEndpoint: 'http://127.0.0.1:2379',
  /** The CLI's deadline for each etcd call (--timeout): above rpcTimeoutMs, a person waits for one answer. */
  cliTimeoutMs: 3000,
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
      "'TRUNCATE' or 'PERSIST' (WAL, MEMORY, OFF and DELETE break on shared filesystems, see docs/HAZARDS.md H1)",
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
    standby: resolveStandby(options.standby, path.resolve(file)),
  });
}

function resolveStandby(sb: unknown, dbPath: string): ResolvedStandbyOptions | null {
  if (sb === undefined) return null;
  if (!isObject(sb)) throw new InvalidOptionError('standby', sb, "{ dir: '/mnt/standby', mode?: 'async' | 'sync', maxLagMs? }");
  rejectUnknown('standby', sb, STANDBY_KEYS);
  if (typeof sb.dir !== 'string' || sb.dir.length === 0) {
    throw new InvalidOptionError('standby.dir', sb.dir, 'the path of an existing directory on another volume than the database');
  }
  const dir = path.resolve(sb.dir);
  // Never created here: a missing mount point must not silently become a directory on the root disk.
  let isDir = false;
  try {
    isDir = fs.statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new InvalidOptionError('standby.dir', sb.dir, 'an existing directory (mount the standby volume first)');
  if (dir === path.dirname(dbPath)) {
    throw new InvalidOptionError('standby.dir', sb.dir, "a directory other than the database's own (on another volume)");
  }
  const mode = sb.mode ?? DEFAULTS.standbyMode;
  if (mode !== 'async' && mode !== 'sync') throw new InvalidOptionError('standby.mode', mode, "'async' or 'sync'");
  const retainSegments = sb.retainSegments ?? DEFAULTS.standbyRetainSegments;
  if (typeof retainSegments !== 'number' || !Number.isInteger(retainSegments) || retainSegments < 1 || retainSegments > 10_000_000) {
    throw new InvalidOptionError('standby.retainSegments', retainSegments, 'an integer from 1 to 10000000');
  }
  return Object.freeze({
    dir,
    mode,
    maxLagMs: int(sb, 'maxLagMs', DEFAULTS.standbyMaxLagMs, 10, 3_600_000, 'standby.'),
    retainSegments,
    retainMs: int(sb, 'retainMs', DEFAULTS.standbyRetainMs, 1000, 3650 * 24 * 3600 * 1000, 'standby.'),
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
  for (const e of endpoints) checkEndpoint(e);
  const prefix = c.prefix ?? DEFAULTS.prefix;
  if (typeof prefix !== 'string' || !/^\/[^\s]*[^/\s]$|^\/$/.test(prefix) || prefix === '/') {
    throw new InvalidOptionError('coordinator.prefix', prefix, "a key prefix starting with '/' and not ending with '/', e.g. '/sqlite-ha'");
  }
  const auth = resolveAuth(c.auth);
  const tls = resolveTls(c.tls);
  if (tls) {
    const plain = endpoints.find((e: string) => e.startsWith('http://'));
    if (plain !== undefined) {
      throw new InvalidOptionError('coordinator.endpoints', plain, 'https:// endpoints when coordinator.tls is given (every endpoint uses TLS)');
    }
  }
  return Object.freeze({
    kind: 'etcd' as const,
    endpoints: Object.freeze(endpoints.map((e: string) => e.replace(/\/$/, ''))),
    prefix,
    tls,
    auth,
  });
}

// --- coordinator.endpoints, .auth and .tls: secrets are never echoed (keys, passwords, PEM). ---

function checkEndpoint(e: unknown): void {
  if (typeof e !== 'string' || !/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(e)) {
    const shown = typeof e === 'string' ? e.replace(/\/\/[^/@]*@/, '//(credentials not shown)@') : e;
    throw new InvalidOptionError('coordinator.endpoints', shown, "URLs like 'http://host:2379' or 'https://host:2379'");
  }
  if (e.includes('@')) {
    throw new InvalidOptionError(
      'coordinator.endpoints', e.replace(/\/\/[^/]*@/, '//(credentials not shown)@'),
      'a URL without user or password in it; give credentials as coordinator.auth { username, password }',
    );
  }
}

const AUTH_KEYS = ['username', 'password'];

function resolveAuth(a: unknown): ResolvedEtcdCoordinator['auth'] {
  if (a === undefined) return null;
  if (!isObject(a)) throw new InvalidOptionError('coordinator.auth', '(redacted)', '{ username: string, password: string }');
  const unknown = Object.keys(a).find((k) => !AUTH_KEYS.includes(k));
  if (unknown !== undefined) {
    throw new InvalidOptionError('coordinator.auth', '(redacted)', `only the keys username and password (got a key ${JSON.stringify(unknown.slice(0, 64))})`);
  }
  if (typeof a.username !== 'string' || a.username.length === 0) {
    throw new InvalidOptionError('coordinator.auth', '(redacted)', '{ username: string, password: string } with a non-empty username');
  }
  if (typeof a.password !== 'string' || a.password.length === 0) {
    throw new InvalidOptionError('coordinator.auth', '(redacted)', '{ username: string, password: string } with a non-empty password');
  }
  return Object.freeze({ username: a.username, password: a.password });
}

const TLS_KEYS = ['ca', 'cert', 'key'];
function resolveTls(t: unknown): ResolvedTls | null {
  if (t === undefined) return null;
  if (!isObject(t)) {
    throw new InvalidOptionError('coordinator.tls', '(value not shown)', '{ ca?, cert?, key? }, each a PEM Buffer, PEM text or a path to a PEM file');
  }
  rejectUnknown('coordinator.tls', t, TLS_KEYS);
  const ca = pem(t, 'ca');
  const cert = pem(t, 'cert');
  const key = pem(t, 'key');
  if ((cert === null) !== (key === null)) {
    throw new InvalidOptionError(
      cert ? 'coordinator.tls.key' : 'coordinator.tls.cert', undefined,
      'both cert and key for a client certificate (or neither)',
    );
  }
  if (ca) certificate(ca, 'ca');
  if (cert && key) {
    const x509 = certificate(cert, 'cert');
    let privateKey;
    try {
      privateKey = createPrivateKey(key);
    } catch (err) {
      throw new InvalidOptionError(
        'coordinator.tls.key', `${key.length} bytes (contents not shown)`,
        `an unencrypted PEM private key (gRPC cannot use a passphrase): ${shortCryptoError(err)}`,
      );
    }
    if (!x509.checkPrivateKey(privateKey)) {
      throw new InvalidOptionError('coordinator.tls.key', '(contents not shown)', `the private key of the certificate in coordinator.tls.cert (${x509.subject.replace(/\n/g, ', ')})`);
    }
    if (Date.parse(x509.validTo) < Date.now()) {
      throw new InvalidOptionError(
        'coordinator.tls.cert', `a certificate for ${x509.subject.replace(/\n/g, ', ')} that expired on ${x509.validTo}`,
        'a certificate that is still valid: renew it and open() again',
      );
    }
  }
  return Object.freeze({ ca, cert, key });
}

/** A Buffer is PEM contents; a string is PEM text if it starts with '-----BEGIN', else a file path. */
function pem(t: Record<string, unknown>, key: string): Buffer | null {
  const v = t[key];
  const option = `coordinator.tls.${key}`;
  if (v === undefined) return null;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v !== 'string' || v.length === 0) {
    throw new InvalidOptionError(option, typeof v === 'string' ? v : `a ${typeof v} (value not shown)`, 'a PEM Buffer, PEM text, or a path to a PEM file');
  }
  if (v.trimStart().startsWith('-----BEGIN')) return Buffer.from(v);
  // Only a plausible path is shown: anything else may be key material without its PEM header.
  const shown = v.length <= 4096 && !/[\n\r]/.test(v) ? v : '(value not shown)';
  try {
    return fs.readFileSync(v);
  } catch (err) {
    throw new InvalidOptionError(option, shown, `a readable PEM file or PEM text (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

function certificate(buf: Buffer, key: string): X509Certificate {
  try {
    return new X509Certificate(buf);
  } catch (err) {
    throw new InvalidOptionError(
      `coordinator.tls.${key}`, `${buf.length} bytes (contents not shown)`,
      `a PEM certificate ('-----BEGIN CERTIFICATE-----'): ${shortCryptoError(err)}`,
    );
  }
}

function shortCryptoError(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0];
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

// ---- serve(db, options): the Hrana-over-HTTP endpoint (docs/SERVE.md) ---------------------------

/** Where a served stream's writes run: 'local' takes the lease here, 'forward' sends them to the holder. */
export type WritesMode = 'local' | 'forward';

/** The options of serve(db, options): listener, TLS, auth, write routing and limits (docs/SERVE.md). */
export interface ServeOptions {
  /** Address to listen on. Default '127.0.0.1' (never all interfaces unless told). */
  host?: string;
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** PEM contents (not paths) of the server certificate and key: serve HTTPS. */
  tls?: { cert: Buffer | string; key: Buffer | string };
  /** Bearer token every request must carry (`Authorization: Bearer …`). Default: no auth. */
  authToken?: string;
  /** 'local': this node takes the lease for writes; 'forward': writes go to the holder. Default 'local'. */
  writes?: WritesMode;
  /** URL other nodes and clients use to reach this server (`base_url`). Default: from host and port. */
  advertiseUrl?: string;
  /**
   * true: answers name this node in `base_url`, so a stream's next requests come straight here.
   * false (behind a load balancer): `base_url` stays null and a node that gets another node's
   * baton relays the request to that node (needs cluster). Default true.
   */
  pinStreams?: boolean;
  /** This node in /health and in the address it publishes. Default `${hostname}:${pid}` (use open()'s nodeId). */
  nodeId?: string;
  /** Where serving nodes publish their addresses (needed by 'forward'): the db's etcd settings and name. */
  cluster?: { coordinator: EtcdCoordinatorOptions; name: string };
  /** Largest request body accepted, bytes. Default 8 MiB. */
  maxBodyBytes?: number;
  /** Most rows one statement may return. Default 10000. */
  maxRows?: number;
  /** Most streams open at once. Default 128. */
  maxStreams?: number;
  /** A stream unused for this long is closed (its transaction rolled back). Default 10000. */
  streamIdleMs?: number;
  /** Longest wait for this node's write transaction slot (one interactive write at a time). Default 10000. */
  txnWaitMs?: number;
  /** Deadline of one forwarded request. Default 15000. */
  forwardTimeoutMs?: number;
}

export interface ResolvedServeOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: { cert: Buffer | string; key: Buffer | string } | null;
  readonly authToken: string | null;
  readonly writes: WritesMode;
  readonly advertiseUrl: string | null;
  readonly pinStreams: boolean;
  readonly nodeId: string;
  readonly cluster: { coordinator: ResolvedEtcdCoordinator; name: string } | null;
  readonly maxBodyBytes: number;
  readonly maxRows: number;
  readonly maxStreams: number;
  readonly streamIdleMs: number;
  readonly txnWaitMs: number;
  readonly forwardTimeoutMs: number;
}

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  writes: 'local' as WritesMode,
  maxBodyBytes: 8 * 1024 * 1024,
  maxRows: 10000,
  maxStreams: 128,
  streamIdleMs: 10000,
  txnWaitMs: 10000,
  forwardTimeoutMs: 15000,
};

const SERVE_KEYS = [
  'host', 'port', 'tls', 'authToken', 'writes', 'advertiseUrl', 'pinStreams', 'nodeId', 'cluster', 'maxBodyBytes', 'maxRows',
  'maxStreams', 'streamIdleMs', 'txnWaitMs', 'forwardTimeoutMs',
];

/** Validates serve() options once and fills defaults; InvalidOptionError names the option. */
export function resolveServeOptions(options: unknown): ResolvedServeOptions {
  const o = options ?? {};
  if (!isObject(o)) throw new InvalidOptionError('serve options', o, 'an object');
  rejectUnknown('serve', o, SERVE_KEYS);
  const host = o.host ?? SERVE_DEFAULTS.host;
  if (typeof host !== 'string' || !/^[A-Za-z0-9.:_-]+$/.test(host)) {
    throw new InvalidOptionError('host', host, "an address to listen on, e.g. '127.0.0.1' or '0.0.0.0'");
  }
  const count = (key: string, dflt: number, min: number, max: number): number => {
    const v = o[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new InvalidOptionError(key, v, `an integer from ${min} to ${max}`);
    }
    return v;
  };
  const writes = o.writes ?? SERVE_DEFAULTS.writes;
  if (writes !== 'local' && writes !== 'forward') throw new InvalidOptionError('writes', writes, "'local' or 'forward'");
  if (o.tls !== undefined && (!isObject(o.tls) || !o.tls.cert || !o.tls.key)) {
    throw new InvalidOptionError('tls', '(not shown)', '{ cert, key } with PEM contents');
  }
  if (o.authToken !== undefined && (typeof o.authToken !== 'string' || o.authToken.length < 16 || /\s/.test(o.authToken))) {
    // Never echo a token back.
    throw new InvalidOptionError('authToken', '(redacted)', 'a string of at least 16 characters without spaces');
  }
  const advertiseUrl = o.advertiseUrl ?? null;
  if (advertiseUrl !== null && (typeof advertiseUrl !== 'string' || !/^https?:\/\/[^\s/]+\/?$/.test(advertiseUrl))) {
    throw new InvalidOptionError('advertiseUrl', advertiseUrl, "an absolute URL without a path, e.g. 'http://10.0.0.5:8080'");
  }
  let cluster: ResolvedServeOptions['cluster'] = null;
  if (o.cluster !== undefined) {
    if (!isObject(o.cluster) || typeof o.cluster.name !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(o.cluster.name)) {
      throw new InvalidOptionError('cluster', '(not shown)', '{ coordinator: { kind: "etcd", ... }, name } with the database name open() uses');
    }
    rejectUnknown('cluster', o.cluster, ['coordinator', 'name']);
    const coordinator = resolveCoordinator(o.cluster.coordinator);
    if (coordinator.kind !== 'etcd') {
      throw new InvalidOptionError('cluster.coordinator.kind', coordinator.kind, "'etcd' (addresses are published in etcd)");
    }
    cluster = Object.freeze({ coordinator, name: o.cluster.name });
  }
  const nodeId = o.nodeId ?? `${os.hostname()}:${process.pid}`;
  if (typeof nodeId !== 'string' || nodeId.length === 0 || nodeId.length > 256) {
    throw new InvalidOptionError('nodeId', nodeId, 'a non-empty string of at most 256 characters');
  }
  const pinStreams = o.pinStreams ?? true;
  if (typeof pinStreams !== 'boolean') throw new InvalidOptionError('pinStreams', pinStreams, 'true or false');
  if (!pinStreams && !cluster) {
    throw new InvalidOptionError('pinStreams', pinStreams, 'true, or give cluster (nodes relay each other\'s streams through etcd addresses)');
  }
  if (writes === 'forward' && !cluster) {
    throw new InvalidOptionError('writes', writes, "'local', or give cluster (the etcd settings) for 'forward'");
  }
  return Object.freeze({
    host,
    port: count('port', SERVE_DEFAULTS.port, 0, 65535),
    tls: o.tls ? { cert: o.tls.cert, key: o.tls.key } : null,
    authToken: o.authToken ?? null,
    writes,
    advertiseUrl: advertiseUrl ? advertiseUrl.replace(/\/$/, '') : null,
    pinStreams,
    nodeId,
    cluster,
    maxBodyBytes: count('maxBodyBytes', SERVE_DEFAULTS.maxBodyBytes, 1024, 1024 * 1024 * 1024),
    maxRows: count('maxRows', SERVE_DEFAULTS.maxRows, 1, 10_000_000),
    maxStreams: count('maxStreams', SERVE_DEFAULTS.maxStreams, 1, 100000),
    streamIdleMs: count('streamIdleMs', SERVE_DEFAULTS.streamIdleMs, 100, 3_600_000),
    txnWaitMs: count('txnWaitMs', SERVE_DEFAULTS.txnWaitMs, 0, 3_600_000),
    forwardTimeoutMs: count('forwardTimeoutMs', SERVE_DEFAULTS.forwardTimeoutMs, 100, 600_000),
  });
}
