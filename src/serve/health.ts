/**
 * GET /health for load balancers: 200 only when this node can serve — the handle is open, the
 * local file answers a read, and (with etcd) the coordinator answers, so the node can reach or
 * become the writer. The body says who holds the lease at which fence, and the local txid.
 */
import { readMeta } from '../storage/meta';
import type { Directory } from './directory';
import type { StreamContext } from './stream';

export interface HealthBody {
  ok: boolean;
  node: string;
  /** The lease holder's node id (null: no holder), as etcd (or, without it, this handle) reports. */
  holder: string | null;
  fence: number | null;
  /** The txid of the file as this node reads it. */
  txid: number | null;
  writes: 'local' | 'forward';
  /** True when this node holds the write lease. */
  holding: boolean;
  streams: number;
  reason?: string;
}

export async function health(ctx: StreamContext, directory: Directory | null, streams: number): Promise<{ status: number; body: HealthBody }> {
  const { db, opts } = ctx;
  const body: HealthBody = {
    ok: false, node: opts.nodeId, holder: db.lease.holder, fence: db.lease.fence, txid: null,
    writes: opts.writes, holding: db.lease.held, streams,
  };
  const reasons: string[] = [];
  if (!db.open) reasons.push('the database handle is closed');
  else {
    try {
      body.txid = await db.read((conn) => readMeta(conn).txid);
    } catch (err) {
      reasons.push(`local read failed: ${(err as Error).message}`);
    }
  }
  if (directory) {
    try {
      const h = await directory.holder();
      body.holder = h?.node ?? null;
      body.fence = h?.fence ?? null;
    } catch (err) {
      reasons.push(`etcd unreachable: ${(err as Error).message}`);
    }
  }
  body.ok = reasons.length === 0;
  if (!body.ok) body.reason = reasons.join('; ');
  return { status: body.ok ? 200 : 503, body };
}
