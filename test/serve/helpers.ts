/** In-process `serve()` on a real etcd for the serve tests: one handle, one server, cleaned up. */
import { HADatabase, open, OpenOptions, serve, ServeHandle, ServeOptions } from '../../src';

export interface Served {
  db: HADatabase;
  server: ServeHandle;
  close(): Promise<void>;
}

export async function startServed(
  file: string, endpoints: string[], prefix: string, serveOpts: ServeOptions = {}, openOpts: Partial<OpenOptions> = {},
): Promise<Served> {
  const db = await open(file, {
    coordinator: { kind: 'etcd', endpoints, prefix }, nodeId: serveOpts.nodeId ?? 'n1', leaseTtlMs: 5000,
    acquireTimeoutMs: 8000, ...openOpts,
  });
  const server = await serve(db, { port: 0, nodeId: serveOpts.nodeId ?? 'n1', ...serveOpts });
  return {
    db,
    server,
    close: async () => {
      await server.close();
      await db.close();
    },
  };
}

/** POST /v2/pipeline with a raw body; returns status and parsed JSON (or text). */
export async function pipeline(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/v2/pipeline`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** A Hrana statement request. */
export function exec(sql: string, args: unknown[] = []): unknown {
  return { type: 'execute', stmt: { sql, args } };
}
