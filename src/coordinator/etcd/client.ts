/**
 * The one etcd3 client factory, used by the library, the CLI and the tools: a deadline on every
 * unary call (docs/HAZARDS.md H6: a call without one against a stalled etcd hung for 6 s), one
 * retry on another member, a short circuit breaker, watches that reconnect quickly, and TLS where
 * a missing CA stays missing (grpc-js then uses the system roots; an empty one would trust nothing).
 * Also builds, from the same options, the JSON-gateway client that publishes commit records
 * (gateway.ts), and maps the library's etcd failures to CoordinatorUnavailableError.
 */
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { EtcdAuthenticationFailedError, EtcdPermissionDeniedError, Etcd3, IOptions, isRecoverableError } from 'etcd3';
import { circuitBreaker, ConsecutiveBreaker, handleWhen, IPolicy, retry } from 'cockatiel';
import { CoordinatorUnavailableError, SqliteHaError } from '../../errors';
import { EtcdGateway } from './gateway';

/** Where etcd is and how to authenticate: the library's resolved options and the CLI's settings both fit. */
export interface EtcdConnection {
  readonly endpoints: readonly string[];
  /** PEM contents; a CA left out (undefined or null) means the system roots. */
  readonly tls: { readonly ca?: Buffer | null; readonly cert?: Buffer | null; readonly key?: Buffer | null } | null;
  readonly auth: { readonly username: string; readonly password: string } | null;
}

/** A client whose unary calls all carry a deadline of `rpcTimeoutMs`; streams (watch, keep-alive) do not. */
export function createEtcdClient(c: EtcdConnection, rpcTimeoutMs: number): Etcd3 {
  return new Etcd3(etcdClientOptions(c, rpcTimeoutMs));
}

/**
 * The JSON-gateway client for the commit record, on the same endpoints, TLS and auth as
 * createEtcdClient(c) and with the same deadline; a CA left out means grpc-js's roots here too.
 * Null (the record stays on gRPC) with a client certificate: with auth on, etcd 3.4 refuses
 * gateway requests that present one ("CommonName of client sending a request against gateway
 * will be ignored", HTTP 400), and without `auth` its CN may be the etcd user (docs/SECURITY.md).
 */
export function createEtcdGateway(c: EtcdConnection, rpcTimeoutMs: number): EtcdGateway | null {
  if (c.tls?.cert) return null;
  const agent = c.tls
    ? new https.Agent({ keepAlive: true, ca: c.tls.ca ?? grpcDefaultRoots() ?? undefined })
    : new http.Agent({ keepAlive: true });
  return new EtcdGateway({
    endpoints: c.endpoints.map((e) => e.replace(/\/$/, '')),
    agent,
    auth: c.auth,
    rpcTimeoutMs,
    name: (err) => nameEndpoints(err, c.endpoints),
  });
}

/**
 * The roots grpc-js uses when no CA is given (its GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, read by
 * grpc-js itself), or null for Node's bundled roots: both clients then trust the same CAs.
 */
function grpcDefaultRoots(): Buffer | null {
  // etcd3's own copy of grpc-js (a dependency of etcd3, not of ours).
  const helpers = require.resolve('@grpc/grpc-js/build/src/tls-helpers', { paths: [path.dirname(require.resolve('etcd3'))] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(helpers) as { getDefaultRootsData(): Buffer | null }).getDefaultRootsData();
}

/** The etcd3 options createEtcdClient() uses (separate so that tests can inspect them). */
export function etcdClientOptions(c: EtcdConnection, rpcTimeoutMs: number): IOptions {
  const options: IOptions = {
    hosts: [...c.endpoints],
    dialTimeout: rpcTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + rpcTimeoutMs }),
    faultHandling: {
      // One retry on another member; a short breaker so a restarted member is used again soon.
      global: namingEndpoints(retry(handleWhen(isRecoverableError), { maxAttempts: 1 }), c.endpoints),
      host: (host) =>
        namingEndpoints(circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: 500,
          breaker: new ConsecutiveBreaker(3),
        }), [host]),
      // Watches reconnect quickly after an etcd outage (etcd3's default backoff grows to 30 s).
      watchBackoff: cappedBackoff(200, 2000),
    },
  };
  if (c.auth) {
    options.auth = {
      username: c.auth.username,
      password: c.auth.password,
      callOptions: () => ({ deadline: Date.now() + rpcTimeoutMs }),
    };
  }
  if (c.tls) {
    options.credentials = {
      rootCertificate: c.tls.ca ?? (undefined as unknown as Buffer),
      privateKey: c.tls.key ?? undefined,
      certChain: c.tls.cert ?? undefined,
    };
  }
  return options;
}

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/** Exponential backoff from `ms`, doubling up to `maxMs` (cockatiel's IBackoff shape). */
function cappedBackoff(ms: number, maxMs: number): WatchBackoff {
  return { duration: ms, next: () => cappedBackoff(Math.min(ms * 2, maxMs), maxMs) } as WatchBackoff;
}

const ENDPOINTS = Symbol('sqlite-ha etcd endpoints');

/**
 * The same policy, but what it throws carries the endpoints for the error message: the member's
 * own on the per-host policy, all of them on the global one (an error already named keeps its).
 */
function namingEndpoints<P extends IPolicy<any, any>>(policy: P, endpoints: readonly string[]): P {
  const named: P = Object.create(policy);
  named.execute = async (fn, signal) => {
    try {
      return await policy.execute(fn, signal);
    } catch (err) {
      throw nameEndpoints(err, endpoints);
    }
  };
  return named;
}

function nameEndpoints<E>(err: E, endpoints: readonly string[]): E {
  // Not `instanceof Error`: node's own errors (sockets, TLS) may come from another realm (jest's vm).
  if (typeof err === 'object' && err !== null && !(ENDPOINTS in err)) Object.defineProperty(err, ENDPOINTS, { value: endpoints, configurable: true });
  return err;
}

/** Wraps an etcd call: our own errors pass through, anything else becomes CoordinatorUnavailable. */
export async function etcdCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toCoordinatorError(what, err);
  }
}

export function toCoordinatorError(what: string, err: unknown): Error {
  if (err instanceof SqliteHaError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const endpoints = (err as { [ENDPOINTS]?: string[] } | null)?.[ENDPOINTS];
  const at = endpoints ? ` at ${endpoints.join(',')}` : '';
  const tls = tlsFailure(msg);
  if (tls) {
    return new CoordinatorUnavailableError(
      `${what} failed: TLS connection to etcd${at} failed: ${tls}. Check coordinator.tls: ca must be the CA ` +
        "that signed etcd's server certificate; cert and key a valid client certificate signed by a CA in etcd's --trusted-ca-file",
      { cause: err },
    );
  }
  const advice = err instanceof EtcdPermissionDeniedError
    ? ". The etcd user's role must grant readwrite on the prefix '<prefix>/<db>/' of this database (docs/SECURITY.md)"
    : err instanceof EtcdAuthenticationFailedError ? '. Check coordinator.auth (user name and password)' : '';
  return new CoordinatorUnavailableError(`${what} failed${at}: ${msg}${advice}`, { cause: err });
}

/** A refusal that retrying with the same credentials cannot change: a wrong password, a missing grant. */
export function isCredentialsRefusal(err: unknown): boolean {
  const cause = err instanceof CoordinatorUnavailableError ? (err as Error & { cause?: unknown }).cause : err;
  return cause instanceof EtcdAuthenticationFailedError || cause instanceof EtcdPermissionDeniedError;
}

/** The TLS reason in a gRPC "No connection established" message, in words, or null. */
function tlsFailure(msg: string): string | null {
  const last = /Last error: (?:Error: )?(.*?)(?:\s*\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*(?:Resolution note:|$)/s.exec(msg)?.[1] ?? msg;
  const alert = /alert ([a-z ]+?)(?::|$)/.exec(last)?.[1];
  if (alert) return `etcd refused the handshake (TLS alert "${alert}": a missing, expired or untrusted client certificate)`;
  if (/certificate|self[- ]signed|SSL routines|ERR_TLS|handshake/i.test(last)) return `the server certificate did not verify (${last.split('\n')[0].trim()})`;
  return null;
}
