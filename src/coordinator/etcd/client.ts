/**
 * The one etcd3 client factory, used by the library, the CLI and the tools: a deadline on every
 * unary call (docs/HAZARDS.md H6: a call without one against a stalled etcd hung for 6 s), one
 * retry on another member, a short circuit breaker, watches that reconnect quickly, and TLS where
 * a missing CA stays missing (grpc-js then uses the system roots; an empty one would trust nothing).
 * Also maps the library's etcd failures to CoordinatorUnavailableError.
 */
import { Etcd3, IOptions, isRecoverableError } from 'etcd3';
import { circuitBreaker, ConsecutiveBreaker, handleWhen, retry } from 'cockatiel';
import { CoordinatorUnavailableError, SqliteHaError } from '../../errors';

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

/** The etcd3 options createEtcdClient() uses (separate so that tests can inspect them). */
export function etcdClientOptions(c: EtcdConnection, rpcTimeoutMs: number): IOptions {
  const options: IOptions = {
    hosts: [...c.endpoints],
    dialTimeout: rpcTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + rpcTimeoutMs }),
    faultHandling: {
      // One retry on another member; a short breaker so a restarted member is used again soon.
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 1 }),
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: 500,
          breaker: new ConsecutiveBreaker(3),
        }),
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
  return new CoordinatorUnavailableError(`${what} failed: ${msg}`, { cause: err });
}
