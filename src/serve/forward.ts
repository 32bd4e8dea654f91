/**
 * --writes forward: a pipeline that needs the writer is sent, whole, to the lease holder over
 * HTTP/1.1 keep-alive with a deadline. The holder opens the stream there and answers with its own
 * base_url, so the client sends the rest of the stream straight to it.
 */
import * as http from 'http';
import * as https from 'https';
import { ServeError } from '../errors';
import type { PipelineResponse, StreamRequest } from './protocol';

/** Marks a forwarded request, so the holder runs it instead of forwarding it again. */
export const FORWARDED_HEADER = 'x-sqlite-ha-forwarded';

/** The request was never delivered (connection refused): running it elsewhere cannot double it. */
export class NotDelivered extends Error {}

export class Forwarder {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 64 });

  constructor(private readonly timeoutMs: number, private readonly fromNode: string) {}

  /**
   * Sends the pipeline to `baseUrl` as a new stream there (carrying this stream's stored SQL
   * first) and returns the holder's answer without the results of those carried requests.
   */
  async forward(
    baseUrl: string, stored: [number, string][], requests: StreamRequest[], headers: Record<string, string>,
  ): Promise<PipelineResponse> {
    const carried: StreamRequest[] = stored.map(([sql_id, sql]) => ({ type: 'store_sql', sql_id, sql }));
    const body = JSON.stringify({ baton: null, requests: [...carried, ...requests] });
    const res = await this.post(new URL('v2/pipeline', baseUrl + '/'), body, headers);
    if (res.status !== 200) {
      let message = `the lease holder at ${baseUrl} answered HTTP ${res.status}`;
      try {
        message += `: ${JSON.parse(res.body).message}`;
      } catch {
        /* not JSON */
      }
      throw new ServeError('SQLITE_HA_FORWARD_FAILED', message, { httpStatus: res.status >= 500 ? 502 : res.status });
    }
    const parsed = JSON.parse(res.body) as PipelineResponse;
    if (!Array.isArray(parsed.results) || parsed.results.length !== carried.length + requests.length) {
      throw new ServeError('SQLITE_HA_FORWARD_FAILED', `the lease holder at ${baseUrl} sent a malformed answer`, { httpStatus: 502 });
    }
    // The holder decides base_url: its own URL when it pins streams, null behind a load balancer.
    return { baton: parsed.baton ?? null, base_url: parsed.base_url ?? null, results: parsed.results.slice(carried.length) };
  }

  /** Sends a request for another node's stream to that node, as it came; returns its answer. */
  async relay(baseUrl: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
    // Not marked as forwarded: the owner may still send the stream's first write on to the holder.
    const res = await this.post(new URL('v2/pipeline', baseUrl + '/'), JSON.stringify(body), headers, false);
    try {
      return { status: res.status, body: JSON.parse(res.body) };
    } catch {
      throw new ServeError('SQLITE_HA_FORWARD_FAILED', `the node at ${baseUrl} sent a malformed answer`, { httpStatus: 502 });
    }
  }

  private post(url: URL, body: string, headers: Record<string, string>, mark = true): Promise<{ status: number; body: string }> {
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      let delivered = false;
      const req = mod.request(url, {
        method: 'POST',
        agent: url.protocol === 'https:' ? this.httpsAgent : this.httpAgent,
        headers: {
          ...headers,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(mark ? { [FORWARDED_HEADER]: encodeURIComponent(this.fromNode) } : {}),
        },
        timeout: this.timeoutMs,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(unknownOutcome(url, err)));
      });
      req.on('socket', (s) => {
        if (!s.connecting) delivered = true; // a reused keep-alive socket: the bytes may arrive
        else s.once('connect', () => (delivered = true));
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!delivered && ['ECONNREFUSED', 'EHOSTUNREACH', 'ENOTFOUND', 'ENETUNREACH', 'EAI_AGAIN'].includes(err.code ?? '')) {
          reject(new NotDelivered(`${url.origin}: ${err.code}`));
        } else {
          reject(unknownOutcome(url, err));
        }
      });
      req.end(body);
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

function unknownOutcome(url: URL, err: Error): ServeError {
  return new ServeError(
    'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN',
    `forwarded to the lease holder at ${url.origin}, which did not answer (${err.message}): the request may or ` +
      'may not have been applied there. Read the data back (consistency "linearizable") before retrying.',
    { httpStatus: 502, cause: err },
  );
}
