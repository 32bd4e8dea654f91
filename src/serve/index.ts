/**
 * serve(db, options): Hrana over HTTP v2 on an open handle, so @libsql/client (and Drizzle,
 * Kysely, Prisma through it) reach the writer unchanged. docs/SERVE.md describes the protocol
 * coverage, the flags, and what a client sees across a failover.
 */
import type { AddressInfo } from 'net';
import * as os from 'os';
import type { HADatabase } from '../handle/database';
import { resolveServeOptions, ServeOptions } from '../options';
import { Directory } from './directory';
import { Forwarder } from './forward';
import { health } from './health';
import { createHttpServer } from './http-server';
import { handlePipeline, PipelineDeps } from './pipeline';
import { isReadOnly, StreamContext } from './stream';
import { StreamRegistry } from './streams';
import { WriteGate } from './write-gate';

export { CONSISTENCY_HEADER } from './http-server';

/** A running server. */
export interface ServeHandle {
  /** The base URL clients use (advertiseUrl, or derived from the listen address). */
  readonly url: string;
  readonly port: number;
  /** Stops listening, rolls back open streams, withdraws the published address. Leaves `db` open. */
  close(): Promise<void>;
}

const CLASSIFY_CACHE = 1000;

/** Starts the Hrana-over-HTTP endpoint for `db`; resolves once it listens. */
export async function serve(db: HADatabase, options: ServeOptions = {}): Promise<ServeHandle> {
  const opts = resolveServeOptions(options);
  const cache = new Map<string, boolean | null>();
  const ctx: StreamContext = {
    db,
    gate: new WriteGate(opts.txnWaitMs),
    opts,
    classify(sql) {
      let v = cache.get(sql);
      if (v === undefined) {
        v = isReadOnly(db, sql);
        if (v !== null) {
          if (cache.size >= CLASSIFY_CACHE) cache.delete(cache.keys().next().value!);
          cache.set(sql, v);
        }
      }
      return v;
    },
  };
  const registry = new StreamRegistry(ctx);
  const deps: PipelineDeps = { ctx, registry, selfUrl: '', forward: null, relay: null };
  let directory: Directory | null = null;
  const server = createHttpServer(opts, {
    pipeline: (body, consistency, headers, forwarded) => handlePipeline(deps, body, consistency, headers, forwarded),
    health: () => health(ctx, directory, registry.size),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => undefined); // after listen, socket errors are per connection
  const port = (server.address() as AddressInfo).port;
  const scheme = opts.tls ? 'https' : 'http';
  const host = opts.host === '0.0.0.0' || opts.host === '::' ? os.hostname() : opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = opts.advertiseUrl ?? `${scheme}://${host}:${port}`;
  deps.selfUrl = url;
  let forwarder: Forwarder | null = null;
  try {
    if (opts.cluster) {
      directory = new Directory(opts.cluster.coordinator, opts.cluster.name, opts.nodeId, { url, writes: opts.writes });
      await directory.publish();
      forwarder = new Forwarder(opts.forwardTimeoutMs, opts.nodeId);
      deps.relay = { directory, forwarder };
      if (opts.writes === 'forward') deps.forward = { directory, forwarder };
    }
  } catch (err) {
    await stop();
    throw err;
  }
  async function stop(): Promise<void> {
    registry.closeAll();
    forwarder?.close();
    await directory?.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
  let closing: Promise<void> | null = null;
  return {
    url,
    port,
    close: () => (closing ??= stop()),
  };
}
