/**
 * The one place that builds an etcd3 client for the CLI: every unary call carries a deadline and
 * every command-level operation is bounded again by `withDeadline`, so an unreachable etcd ends in
 * a clear message, never a hang.
 */
import {
  EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdPermissionDeniedError, Etcd3,
  GRPCAbortedError, GRPCCancelledError, GRPCDeadlineExceededError, GRPCInternalError,
  GRPCUnauthenticatedError, GRPCUnavailableError, GRPCUnknownError,
} from 'etcd3';
import { createEtcdClient } from '../coordinator/etcd/client';
import { ConnectionSettings, EtcdAccessError } from './settings';

export { ConnectionSettings, EtcdAccessError, UsageError } from './settings';

/** A client whose unary calls all carry a deadline of `timeoutMs`. Streams (watch, keep-alive) do not. */
export function createClient(s: ConnectionSettings): Etcd3 {
  return createEtcdClient(s, s.timeoutMs);
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
        'Check SQLITE_HA_ETCD_USER and the password (environment or file), and the role granted on the prefix ' +
        '(a role granted on one database only reads <prefix>/<db>/: pass --db <name>).');
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function unreachableMessage(s: ConnectionSettings, what: string, reason: string): string {
  return `cannot reach etcd at ${s.endpoints.join(',')} (${what}): ${reason}. ` +
    'Check --endpoints / SQLITE_HA_ETCD_ENDPOINTS and that etcd is running.';
}

/** gRPC transport and deadline failures as etcd3 maps them, and an open circuit breaker. */
function isTransportError(err: unknown): boolean {
  return err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError ||
    err instanceof GRPCCancelledError || err instanceof GRPCInternalError || err instanceof GRPCAbortedError ||
    err instanceof GRPCUnknownError || (err as { isBrokenCircuitError?: boolean } | undefined)?.isBrokenCircuitError === true;
}

/** Wrong user or password, or a user without permission on the prefix. */
function isAuthError(err: unknown): boolean {
  return err instanceof EtcdAuthenticationFailedError || err instanceof EtcdInvalidAuthTokenError ||
    err instanceof EtcdPermissionDeniedError || err instanceof GRPCUnauthenticatedError;
}

/** The gRPC message without its resolution-note tail, which says nothing to an operator. */
function shortReason(err: unknown): string {
  const msg = String((err as Error)?.message ?? err);
  return msg.replace(/\s*Resolution note:.*$/s, '').replace(/,name resolution:.*$/s, '').trim().replace(/\.+$/, '');
}
