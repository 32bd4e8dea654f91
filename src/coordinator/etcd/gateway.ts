/**
 * etcd's JSON gateway (POST /v3/kv/txn on the client port, etcd ≥ 3.4) over kept-alive HTTP/1.1,
 * for the one call on every write's acknowledgement path, the commit record: it costs about half
 * the client CPU of a grpc-js call (docs/BENCHMARKS.md, issue #11 item 2). Built only by the one
 * factory (client.ts: createEtcdGateway), from the same endpoints, TLS and auth as the gRPC client.
 * Every call has one deadline (rpcTimeoutMs) over all its attempts; a connection failure moves to
 * the next endpoint; an invalid (expired) auth token is replaced once. Errors become the same typed
 * etcd3 errors the gRPC client throws, so toCoordinatorError() maps both alike.
 */
import * as http from 'http';
import * as https from 'https';
import {
  castGrpcError, EtcdInvalidAuthTokenError, GRPCDeadlineExceededError, GRPCUnavailableError, ICompare, IRequestOp, ITxnRequest,
} from 'etcd3';
import { monotonicNow } from '../../clock';

export interface GatewaySettings {
  /** Endpoint base URLs (validated, no trailing slash), tried in order from the last one that answered. */
  readonly endpoints: readonly string[];
  readonly agent: http.Agent;
  readonly auth: { readonly username: string; readonly password: string } | null;
  readonly rpcTimeoutMs: number;
  /** Adds where the call went to an error (the factory's naming, shared with the gRPC client). */
  readonly name: (err: Error) => Error;
}

export interface GatewayTxnResult {
  readonly succeeded: boolean;
  readonly revision: string;
}

/** Bounds a reply we read into memory: a txn reply here is a few hundred bytes. */
const MAX_BODY = 1 << 20;

export class EtcdGateway {
  private next = 0;
  private token: Promise<string> | null = null;

  constructor(private readonly s: GatewaySettings) {}

  async txn(req: ITxnRequest): Promise<GatewayTxnResult> {
    const body = JSON.stringify(encodeTxn(req));
    const deadline = monotonicNow() + this.s.rpcTimeoutMs;
    try {
      return decodeTxn(await this.authorized('/v3/kv/txn', body, deadline));
    } catch (err) {
      throw this.s.name(err as Error);
    }
  }

  close(): void {
    this.s.agent.destroy();
  }

  /** A call with this client's token; an invalid or expired one is replaced once. */
  private async authorized(path: string, body: string, deadline: number): Promise<unknown> {
    if (!this.s.auth) return this.post(path, body, deadline, null);
    const current = (this.token ??= this.authenticate(deadline));
    try {
      return await this.post(path, body, deadline, await current);
    } catch (err) {
      if (!(err instanceof EtcdInvalidAuthTokenError)) throw err;
      if (this.token === current) this.token = null;
      return this.post(path, body, deadline, await (this.token ??= this.authenticate(deadline)));
    }
  }

  private authenticate(deadline: number): Promise<string> {
    const { username, password } = this.s.auth!;
    const p = this.post('/v3/auth/authenticate', JSON.stringify({ name: username, password }), deadline, null).then((doc) => {
      const token = (doc as { token?: unknown }).token;
      if (typeof token !== 'string' || token === '') throw new GRPCUnavailableError('etcd gateway: authenticate returned no token');
      return token;
    });
    // A failed authentication is not kept: the next call tries again.
    p.catch(() => {
      if (this.token === p) this.token = null;
    });
    return p;
  }

  /** One POST, on the endpoints in turn while connections fail, all within `deadline`. */
  private async post(path: string, body: string, deadline: number, token: string | null): Promise<unknown> {
    const n = this.s.endpoints.length;
    // One more attempt than endpoints: a kept-alive socket the server closed fails the first one.
    const attempts = n + 1;
    let last: Error = new GRPCUnavailableError('etcd gateway: no endpoint answered');
    for (let a = 0; a < attempts; a++) {
      const i = (this.next + a) % n;
      const left = deadline - monotonicNow();
      if (left <= 0) break;
      try {
        const res = await request(this.s.endpoints[i] + path, body, this.s.agent, left, token);
        this.next = i;
        if (res.status === 200) return parseBody(res.text);
        const err = gatewayError(res.status, res.text);
        if (!isUnavailable(err)) throw err;
        last = err; // that member cannot serve (no leader, stopping): another may
      } catch (err) {
        if (!isConnectionFailure(err)) throw err;
        last = err as Error;
      }
    }
    if (deadline - monotonicNow() <= 0) {
      throw new GRPCDeadlineExceededError(`etcd gateway: deadline of ${this.s.rpcTimeoutMs} ms exceeded (${last.message})`);
    }
    throw last instanceof GRPCUnavailableError ? last : new GRPCUnavailableError(`etcd gateway: ${last.message}`);
  }
}

/** The gateway's JSON for a txn: bytes as base64, enums by name, 64-bit integers as strings. */
export function encodeTxn(req: ITxnRequest): Record<string, unknown> {
  return {
    compare: (req.compare ?? []).map(encodeCompare),
    success: (req.success ?? []).map(encodeOp),
    failure: (req.failure ?? []).map(encodeOp),
  };
}

const TARGETS = ['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE'];
const RESULTS = ['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL'];
const TARGET_NAMES: Record<string, string> = { Version: 'VERSION', Create: 'CREATE', Mod: 'MOD', Value: 'VALUE', Lease: 'LEASE' };
const RESULT_NAMES: Record<string, string> = { Equal: 'EQUAL', Greater: 'GREATER', Less: 'LESS', NotEqual: 'NOT_EQUAL' };

function enumName(v: unknown, byIndex: string[], byName: Record<string, string>, what: string): string {
  const name = typeof v === 'number' ? byIndex[v] : byName[String(v)];
  if (!name) throw new TypeError(`etcd gateway: unsupported compare ${what} ${String(v)}`);
  return name;
}

function encodeCompare(c: ICompare): Record<string, unknown> {
  const out: Record<string, unknown> = {
    key: b64(c.key),
    target: enumName(c.target ?? 'Version', TARGETS, TARGET_NAMES, 'target'),
    result: enumName(c.result ?? 'Equal', RESULTS, RESULT_NAMES, 'result'),
  };
  if (c.range_end !== undefined) out.range_end = b64(c.range_end);
  if (c.version !== undefined) out.version = String(c.version);
  if (c.create_revision !== undefined) out.create_revision = String(c.create_revision);
  if (c.mod_revision !== undefined) out.mod_revision = String(c.mod_revision);
  if (c.value !== undefined) out.value = b64(c.value);
  if (c.lease !== undefined) out.lease = String(c.lease);
  return out;
}

function encodeOp(op: IRequestOp): Record<string, unknown> {
  if (op.request_put) {
    const p = op.request_put;
    const put: Record<string, unknown> = { key: b64(p.key), value: b64(p.value) };
    if (p.lease !== undefined) put.lease = String(p.lease);
    return { request_put: put };
  }
  if (op.request_delete_range) {
    const d = op.request_delete_range;
    const del: Record<string, unknown> = { key: b64(d.key) };
    if (d.range_end !== undefined) del.range_end = b64(d.range_end);
    return { request_delete_range: del };
  }
  // Ranges and nested txns would need their replies decoded; the commit record has neither.
  throw new TypeError('etcd gateway: only put and delete-range operations are supported');
}

function b64(b: Buffer | undefined): string {
  return (b ?? Buffer.alloc(0)).toString('base64');
}

/** A txn reply: proto3 JSON leaves `succeeded` out when it is false. */
export function decodeTxn(doc: unknown): GatewayTxnResult {
  const d = doc as { succeeded?: unknown; header?: { revision?: unknown } } | null;
  if (!d || typeof d !== 'object' || !d.header) throw new GRPCUnavailableError('etcd gateway: a txn reply without a header');
  return { succeeded: d.succeeded === true, revision: String(d.header.revision ?? '0') };
}

function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new GRPCUnavailableError(`etcd gateway: a reply that is not JSON (${text.slice(0, 80)})`);
  }
}

/**
 * The typed etcd3 error for a gateway error reply ({ error, message, code } with the gRPC code):
 * the same class the gRPC client would throw for that status (permission denied, invalid token, ...).
 */
export function gatewayError(status: number, text: string): Error {
  let message = `etcd gateway: HTTP ${status}`;
  let code: number | undefined;
  try {
    const doc = JSON.parse(text) as { error?: unknown; message?: unknown; code?: unknown };
    const m = typeof doc.message === 'string' && doc.message !== '' ? doc.message : doc.error;
    if (typeof m === 'string' && m !== '') message = m;
    if (typeof doc.code === 'number') code = doc.code;
  } catch {
    if (text.trim() !== '') message += `: ${text.trim().slice(0, 200)}`;
  }
  if (code === undefined && status === 503) code = 14;
  return castGrpcError(Object.assign(new Error(message), code === undefined ? {} : { code }));
}

function isUnavailable(err: Error): boolean {
  return err instanceof GRPCUnavailableError;
}

/** Failures of reaching a member, where another member (or a fresh connection) may answer. */
function isConnectionFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT']);

function request(
  url: string, body: string, agent: http.Agent, timeoutMs: number, token: string | null,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    if (token !== null) headers.authorization = token;
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { method: 'POST', agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_BODY) req.destroy(new GRPCUnavailableError('etcd gateway: reply too large'));
        else chunks.push(d);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    // The socket never saw a reply in time: ETIMEDOUT, so the caller may try another member.
    const timer = setTimeout(
      () => req.destroy(Object.assign(new Error(`no reply from ${new URL(url).host} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}
