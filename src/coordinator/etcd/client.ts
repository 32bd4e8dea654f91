/**
 * Builds the raw etcd3 client with a deadline on every unary call (HAZARDS H6: a call without one
 * against a stalled etcd hung for 6 s) and maps its failures to CoordinatorUnavailableError.
 */
import { Etcd3, IOptions, isRecoverableError } from 'etcd3';
import { circuitBreaker, ConsecutiveBreaker, handleWhen, retry } from 'cockatiel';
import { CoordinatorUnavailableError, SqliteHaError } from '../../errors';
import type { EtcdCoordinatorOptions } from '../../options';

export function createEtcdClient(c: EtcdCoordinatorOptions, rpcTimeoutMs: number): Etcd3 {
  const options: IOptions = {
    hosts: c.endpoints,
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
    },
  };
  if (c.auth) options.auth = { username: c.auth.username, password: c.auth.password };
  if (c.tls) {
    options.credentials = {
      rootCertificate: toBuf(c.tls.ca) ?? Buffer.alloc(0),
      privateKey: toBuf(c.tls.key),
      certChain: toBuf(c.tls.cert),
    };
  }
  return new Etcd3(options);
}

function toBuf(v: Buffer | string | undefined): Buffer | undefined {
  return v === undefined ? undefined : Buffer.isBuffer(v) ? v : Buffer.from(v);
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
