/**
 * `sqlite-ha serve <db-path>`: open the database as a node of the cluster and answer Hrana over
 * HTTP v2 until SIGTERM/SIGINT. The bearer token comes from a file or the environment, never a
 * flag (it would show in `ps`), and is never printed. One JSON line on stdout says where it listens.
 */
import * as fs from 'fs';
import * as os from 'os';
import { open } from '../open';
import { LocksMode, OpenOptions, resolveOptions, ServeOptions, WritesMode } from '../options';
import { serve } from '../serve';
import { ConnectionSettings, UsageError } from './settings';

export interface ServeFlags {
  listen: string;
  writes: string;
  advertiseUrl?: string;
  pinStreams: boolean;
  tlsCert?: string;
  tlsKey?: string;
  authTokenFile?: string;
  coordinator: string;
  name?: string;
  nodeId?: string;
  leaseTtlMs?: number;
  acquireTimeoutMs?: number;
  idleReleaseMs?: number;
  locks?: string;
  maxBodyBytes?: number;
  maxRows?: number;
  maxStreams?: number;
  streamIdleMs?: number;
}

/** host:port, [v6]:port, or a bare port (then 127.0.0.1). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(v) ?? /^()()(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`invalid --listen ${JSON.stringify(v)}: expected host:port, e.g. 127.0.0.1:8080`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

function readToken(flags: ServeFlags, env: NodeJS.ProcessEnv): string | undefined {
  const file = flags.authTokenFile ?? env.SQLITE_HA_SERVE_TOKEN_FILE;
  if (file) {
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read the token file given by --auth-token-file / SQLITE_HA_SERVE_TOKEN_FILE: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  const token = env.SQLITE_HA_SERVE_TOKEN;
  return token ? token.trim() : undefined;
}

function readPem(file: string, flag: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read ${flag} ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

export async function runServe(
  s: ConnectionSettings, dbPath: string, flags: ServeFlags, io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream },
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const { host, port } = parseListen(flags.listen);
  if (flags.writes !== 'local' && flags.writes !== 'forward') {
    throw new UsageError(`invalid --writes ${JSON.stringify(flags.writes)}: expected local or forward`);
  }
  if (flags.coordinator !== 'etcd' && flags.coordinator !== 'lockfile') {
    throw new UsageError(`invalid --coordinator ${JSON.stringify(flags.coordinator)}: expected etcd or lockfile`);
  }
  if (flags.writes === 'forward' && flags.coordinator !== 'etcd') {
    throw new UsageError('--writes forward needs --coordinator etcd (nodes find the holder there)');
  }
  if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) throw new UsageError('HTTPS needs both --tls-cert and --tls-key');
  const nodeId = flags.nodeId ?? `${os.hostname()}:${process.pid}`;
  const etcd = {
    kind: 'etcd' as const, endpoints: s.endpoints, prefix: s.prefix,
    ...(s.tls ? { tls: s.tls } : {}), ...(s.auth ? { auth: s.auth } : {}),
  };
  const openOpts: OpenOptions = {
    coordinator: flags.coordinator === 'etcd' ? etcd : { kind: 'lockfile' },
    nodeId,
    ...(flags.name ? { name: flags.name } : {}),
    ...(flags.leaseTtlMs !== undefined ? { leaseTtlMs: flags.leaseTtlMs } : {}),
    ...(flags.acquireTimeoutMs !== undefined ? { acquireTimeoutMs: flags.acquireTimeoutMs } : {}),
    ...(flags.idleReleaseMs !== undefined ? { idleReleaseMs: flags.idleReleaseMs } : {}),
    ...(flags.locks ? { locks: flags.locks as LocksMode } : {}),
  };
  const token = readToken(flags, env);
  const db = await open(dbPath, openOpts);
  const { name } = resolveOptions(dbPath, openOpts); // the same default name open() used
  const serveOpts: ServeOptions = {
    host, port, nodeId, writes: flags.writes as WritesMode,
    ...(token ? { authToken: token } : {}),
    ...(flags.tlsCert ? { tls: { cert: readPem(flags.tlsCert, '--tls-cert'), key: readPem(flags.tlsKey!, '--tls-key') } } : {}),
    ...(flags.advertiseUrl ? { advertiseUrl: flags.advertiseUrl } : {}),
    ...(flags.pinStreams === false ? { pinStreams: false } : {}),
    ...(flags.coordinator === 'etcd' ? { cluster: { coordinator: etcd, name } } : {}),
    ...(flags.maxBodyBytes !== undefined ? { maxBodyBytes: flags.maxBodyBytes } : {}),
    ...(flags.maxRows !== undefined ? { maxRows: flags.maxRows } : {}),
    ...(flags.maxStreams !== undefined ? { maxStreams: flags.maxStreams } : {}),
    ...(flags.streamIdleMs !== undefined ? { streamIdleMs: flags.streamIdleMs } : {}),
  };
  let server;
  try {
    server = await serve(db, serveOpts);
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
  io.out.write(JSON.stringify({
    ev: 'listening', url: server.url, node: nodeId, writes: flags.writes, auth: Boolean(token), tls: Boolean(flags.tlsCert),
  }) + '\n');
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  io.err.write(`sqlite-ha serve: ${signal}: closing streams and releasing the lease\n`);
  await server.close();
  await db.close();
  return 0;
}
