/**
 * POST /v2/pipeline: find or open the stream, decide whether the pipeline needs the writer and
 * this node is not it (then forward it), run the requests in order, park the stream.
 */
import { ServeError } from '../errors';
import type { Directory } from './directory';
import { Forwarder, NotDelivered } from './forward';
import { parsePipeline, PipelineResponse, StreamRequest } from './protocol';
import { txnControl } from './sql';
import type { Consistency, Stream, StreamContext } from './stream';
import { nodeTag, StreamRegistry, tagOfBaton } from './streams';

export interface PipelineDeps {
  ctx: StreamContext;
  registry: StreamRegistry;
  /** This node's base URL, returned as base_url while a stream stays open (pins it here). */
  selfUrl: string;
  /** Set in --writes forward. */
  forward: { directory: Directory; forwarder: Forwarder } | null;
  /** Set when the node knows the cluster: relays requests for other nodes' streams to them. */
  relay: { directory: Directory; forwarder: Forwarder } | null;
}

export async function handlePipeline(
  deps: PipelineDeps, body: unknown, consistency: Consistency, headers: Record<string, string>, forwarded: boolean,
): Promise<PipelineResponse> {
  const req = parsePipeline(body);
  const { registry } = deps;
  const owner = req.baton === null ? null : tagOfBaton(req.baton);
  if (owner !== null && owner !== registry.tag && deps.relay && !forwarded) return relayToOwner(deps, owner, body, headers);
  const stream = req.baton === null ? registry.create() : registry.take(req.baton);
  let closed = false;
  try {
    if (deps.forward && !forwarded && !stream.inTransaction && needsWriter(deps.ctx, stream, req.requests)) {
      const target = await holderElsewhere(deps);
      if (target) {
        try {
          const answer = await deps.forward.forwarder.forward(target, stream.storedSql(), req.requests, headers);
          closed = true; // the stream lives on the holder now
          return answer;
        } catch (err) {
          if (!(err instanceof NotDelivered)) throw err;
          // The holder is gone (refused the connection): nothing reached it, so run here; this
          // node waits for the lease until the old one expires.
        }
      }
    }
    const results = [];
    for (const r of req.requests) {
      if (closed) {
        results.push({ type: 'error' as const, error: { message: 'the stream is closed', code: 'STREAM_CLOSED' } });
        continue;
      }
      const out = await stream.execute(r, consistency);
      if (r.type === 'close') closed = true;
      results.push(out.ok ? { type: 'ok' as const, response: out.response } : { type: 'error' as const, error: out.error });
    }
    if (closed) return { baton: null, base_url: null, results };
    return { baton: registry.park(stream), base_url: deps.ctx.opts.pinStreams ? deps.selfUrl : null, results };
  } catch (err) {
    closed = true;
    throw err;
  } finally {
    if (closed) registry.discard(stream);
  }
}

/**
 * Another node's baton (a client behind a load balancer): send the request to that node. If the
 * node is gone, so is its stream: STREAM_EXPIRED, as for any stream that ended.
 */
async function relayToOwner(deps: PipelineDeps, tag: string, body: unknown, headers: Record<string, string>): Promise<PipelineResponse> {
  const { directory, forwarder } = deps.relay!;
  const url = await directory.urlOfTag(tag, nodeTag).catch((err) => {
    throw new ServeError('SQLITE_HA_COORDINATOR_UNAVAILABLE', `cannot find the node that owns this stream: ${(err as Error).message}`, { httpStatus: 503 });
  });
  const expired = (why: string) => new ServeError('STREAM_EXPIRED', `the stream's node ${why}; its transaction, if any, did not commit`, { httpStatus: 400 });
  if (!url) throw expired('no longer serves');
  let answer;
  try {
    answer = await forwarder.relay(url, body, headers);
  } catch (err) {
    if (err instanceof NotDelivered) throw expired(`at ${url} is unreachable`);
    throw err;
  }
  if (answer.status !== 200) {
    const b = answer.body as { message?: string; code?: string };
    throw new ServeError(b.code ?? 'SQLITE_HA_FORWARD_FAILED', b.message ?? `the stream's node answered HTTP ${answer.status}`, { httpStatus: answer.status });
  }
  return answer.body as PipelineResponse;
}

/** The holder's URL when another serving node holds the lease; null to run here. */
async function holderElsewhere(deps: PipelineDeps): Promise<string | null> {
  const { db } = deps.ctx;
  if (db.lease.held) return null;
  let holder;
  try {
    holder = await deps.forward!.directory.holder();
  } catch (err) {
    throw new ServeError('SQLITE_HA_COORDINATOR_UNAVAILABLE', `cannot find the lease holder: ${(err as Error).message}`, { httpStatus: 503, cause: err });
  }
  if (!holder || holder.node === deps.ctx.opts.nodeId) return null;
  if (!holder.url) return null; // held by a node that does not serve: queue for the lease here
  return holder.url;
}

/** Whether running these requests on an idle stream needs the write lease. */
function needsWriter(ctx: StreamContext, stream: Stream, requests: StreamRequest[]): boolean {
  const stored = new Map(stream.storedSql());
  const sqlOf = (s: { sql?: string; sql_id?: number }) => s.sql ?? stored.get(s.sql_id!) ?? null;
  const writes = (sql: string | null): boolean => {
    if (sql === null) return true;
    const ctl = txnControl(sql);
    if (ctl) return ctl.verb === 'begin' && ctl.mode !== 'readonly';
    return ctx.classify(sql) !== true;
  };
  for (const r of requests) {
    if (r.type === 'store_sql') stored.set(r.sql_id, r.sql);
    else if (r.type === 'close_sql') stored.delete(r.sql_id);
    else if (r.type === 'sequence') return true;
    else if (r.type === 'execute' && writes(sqlOf(r.stmt))) return true;
    else if (r.type === 'batch') {
      if (stream.wholeTransaction(r.batch.steps) === 'read') continue;
      if (r.batch.steps.some((s) => writes(sqlOf(s.stmt)))) return true;
    }
  }
  return false;
}
