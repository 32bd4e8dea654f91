/**
 * etcd connection settings for the CLI, from flags or the environment, and the one place that
 * builds an etcd3 client: every unary call carries a deadline and every command-level operation
 * is bounded again by `withDeadline`, so an unreachable etcd ends in a clear message, never a hang.
 */
import * as fs from 'fs';
import {
  EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdPermissionDeniedError, Etcd3,
  GRPCAbortedError, GRPCCancelledError, GRPCDeadlineExceededError, GRPCInternalError,
  GRPCUnauthenticatedError, GRPCUnavailableError, GRPCUnknownError, IOptions,
} from 'etcd3';

/** A mistake on the command line (or in the environment): exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** etcd could not be reached, did not answer in time, or refused the credentials: exit code 1. */
export class EtcdAccessError extends Error {
  override readonly name = 'EtcdAccessError';
}

export interface GlobalFlags {
  endpoints?: string;
  prefix?: string;
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
  timeout?: string;
}

export interface ConnectionSettings {
  endpoints: string[];
  /** False when the endpoints are the built-in default (nobody named an etcd). */
  explicitEndpoints: boolean;
  prefix: string;
  /** Deadline of each etcd call and bound of each command-level operation, ms. */
  timeoutMs: number;
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | null;
  auth: { username: string; password: string } | null;
}

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:2379';
export const DEFAULT_PREFIX = '/sqlite-ha';
export const DEFAULT_TIMEOUT_MS = 3000;

/** Flags win over the environment; the password only ever comes from the environment or a file. */
export function resolveConnection(flags: GlobalFlags, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const rawEndpoints = flags.endpoints ?? env.SQLITE_HA_ETCD_ENDPOINTS;
  const explicitEndpoints = rawEndpoints !== undefined && rawEndpoints.trim() !== '';
  const caFile = flags.ca ?? env.SQLITE_HA_ETCD_CA;
  const certFile = flags.cert ?? env.SQLITE_HA_ETCD_CERT;
  const keyFile = flags.key ?? env.SQLITE_HA_ETCD_KEY;
  const tlsWanted = Boolean(caFile || certFile || keyFile);
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new UsageError('a client certificate needs both --cert (SQLITE_HA_ETCD_CERT) and --key (SQLITE_HA_ETCD_KEY)');
  }
  const endpoints = (explicitEndpoints ? rawEndpoints! : DEFAULT_ENDPOINT)
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0)
    .map((e) => normalizeEndpoint(e, tlsWanted));

  const prefix = flags.prefix ?? env.SQLITE_HA_PREFIX ?? DEFAULT_PREFIX;
  if (!prefix.startsWith('/') || prefix.length < 2 || prefix.endsWith('/')) {
    throw new UsageError(`invalid prefix ${JSON.stringify(prefix)}: expected a key prefix such as '/sqlite-ha' (leading '/', no trailing '/')`);
  }

  const timeoutText = flags.timeout ?? env.SQLITE_HA_ETCD_TIMEOUT_MS ?? String(DEFAULT_TIMEOUT_MS);
  const timeoutMs = Number(timeoutText);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60000) {
    throw new UsageError(`invalid --timeout ${JSON.stringify(timeoutText)}: expected milliseconds between 100 and 60000`);
  }

  const tls = tlsWanted
    ? {
        ca: caFile ? readSecretFile(caFile, '--ca / SQLITE_HA_ETCD_CA') : undefined,
        cert: certFile ? readSecretFile(certFile, '--cert / SQLITE_HA_ETCD_CERT') : undefined,
        key: keyFile ? readSecretFile(keyFile, '--key / SQLITE_HA_ETCD_KEY') : undefined,
      }
    : null;

  const username = flags.user ?? env.SQLITE_HA_ETCD_USER;
  const passwordFile = flags.passwordFile ?? env.SQLITE_HA_ETCD_PASSWORD_FILE;
  let password = env.SQLITE_HA_ETCD_PASSWORD;
  if (passwordFile) password = readSecretFile(passwordFile, '--password-file / SQLITE_HA_ETCD_PASSWORD_FILE').toString('utf8').replace(/\r?\n$/, '');
  if (password !== undefined && !username) {
    throw new UsageError('a password was given (SQLITE_HA_ETCD_PASSWORD or a password file) but no user: set --user or SQLITE_HA_ETCD_USER');
  }
  if (username && password === undefined) {
    throw new UsageError(`user ${JSON.stringify(username)} given without a password: set SQLITE_HA_ETCD_PASSWORD or SQLITE_HA_ETCD_PASSWORD_FILE (or --password-file)`);
  }
  const auth = username ? { username, password: password! } : null;

  return { endpoints, explicitEndpoints, prefix, timeoutMs, tls, auth };
}

function normalizeEndpoint(e: string, tls: boolean): string {
  if (/^https?:\/\//.test(e)) return e.replace(/\/+$/, '');
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(e)) {
    throw new UsageError(`invalid endpoint ${JSON.stringify(e)}: expected http://host:port or https://host:port`);
  }
  return `${tls ? 'https' : 'http'}://${e}`;
}

function readSecretFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    // The path is safe to show; the contents never are.
    throw new UsageError(`cannot read ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** A client whose unary calls all carry a deadline of `timeoutMs`. Streams (watch, keep-alive) do not. */
export function createClient(s: ConnectionSettings): Etcd3 {
  const options: IOptions = {
    hosts: s.endpoints,
    dialTimeout: s.timeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.timeoutMs }),
  };
  if (s.tls) {
    options.credentials = {
      // grpc-js uses the system roots when no CA is given.
      rootCertificate: s.tls.ca as Buffer,
      privateKey: s.tls.key,
      certChain: s.tls.cert,
    };
  }
  if (s.auth) {
    options.auth = {
      username: s.auth.username,
      password: s.auth.password,
      callOptions: () => ({ deadline: Date.now() + s.timeoutMs }),
    };
  }
  // Watches reconnect quickly after an etcd outage (etcd3's default backoff grows to 30 s).
  options.faultHandling = { watchBackoff: cappedBackoff(200, 2000) };
  return new Etcd3(options);
}

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/** Exponential backoff from `ms`, doubling up to `maxMs` (cockatiel's IBackoff shape). */
function cappedBackoff(ms: number, maxMs: number): WatchBackoff {
  return { duration: ms, next: () => cappedBackoff(Math.min(ms * 2, maxMs), maxMs) } as WatchBackoff;
}

/**
 * Bounds one command-level operation (which may be several etcd calls, each retried by the client)
 * to `ms`, turning a timeout or a transport error into EtcdAccessError naming the endpoints.
 */
export async function withDeadline<T>(s: ConnectionSettings, what: string, op: () => Promise<T>, ms = s.timeoutMs): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EtcdAccessError(unreachableMessage(s, what, `no answer within ${ms} ms`))), ms);
  });
  try {
    return await Promise.race([op(), timeout]);
  } catch (err) {
    if (err instanceof EtcdAccessError) throw err;
    if (isTransportError(err)) throw new EtcdAccessError(unreachableMessage(s, what, shortReason(err)));
    if (isAuthError(err)) {
      throw new EtcdAccessError(`etcd at ${s.endpoints.join(',')} refused access (${what}): ${shortReason(err)}. ` +
        'Check SQLITE_HA_ETCD_USER and the password (environment or file), and the role granted on the prefix.');
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export function unreachableMessage(s: ConnectionSettings, what: string, reason: string): string {
  return `cannot reach etcd at ${s.endpoints.join(',')} (${what}): ${reason}. ` +
    'Check --endpoints / SQLITE_HA_ETCD_ENDPOINTS and that etcd is running.';
}

/** gRPC transport and deadline failures as etcd3 maps them, and an open circuit breaker. */
export function isTransportError(err: unknown): boolean {
  return err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError ||
    err instanceof GRPCCancelledError || err instanceof GRPCInternalError || err instanceof GRPCAbortedError ||
    err instanceof GRPCUnknownError || (err as { isBrokenCircuitError?: boolean } | undefined)?.isBrokenCircuitError === true;
}

/** Wrong user or password, or a user without permission on the prefix. */
export function isAuthError(err: unknown): boolean {
  return err instanceof EtcdAuthenticationFailedError || err instanceof EtcdInvalidAuthTokenError ||
    err instanceof EtcdPermissionDeniedError || err instanceof GRPCUnauthenticatedError;
}

/** The gRPC message without its resolution-note tail, which says nothing to an operator. */
export function shortReason(err: unknown): string {
  const msg = String((err as Error)?.message ?? err);
  return msg.replace(/\s*Resolution note:.*$/s, '').replace(/,name resolution:.*$/s, '').trim();
}
