/**
 * Connection settings for the CLI from flags or the environment, validated once. Kept apart from
 * the etcd client (connection.ts) so that usage errors and --help never load gRPC.
 */
import * as fs from 'fs';
import { DEFAULTS } from '../options';

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
  const endpoints = (explicitEndpoints ? rawEndpoints! : DEFAULTS.cliEndpoint)
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0)
    .map((e) => normalizeEndpoint(e, tlsWanted));

  const prefix = flags.prefix ?? env.SQLITE_HA_PREFIX ?? DEFAULTS.prefix;
  if (!prefix.startsWith('/') || prefix.length < 2 || prefix.endsWith('/')) {
    throw new UsageError(`invalid prefix ${JSON.stringify(prefix)}: expected a key prefix such as '/sqlite-ha' (leading '/', no trailing '/')`);
  }

  const timeoutText = flags.timeout ?? env.SQLITE_HA_ETCD_TIMEOUT_MS ?? String(DEFAULTS.cliTimeoutMs);
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
