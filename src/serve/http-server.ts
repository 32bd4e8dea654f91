/**
 * The HTTP(S) side: routes, bearer-token check, bounded request bodies, and the rule that every
 * failure is answered (Hrana's JSON error shape) and none escapes to crash the process.
 */
import { createHash, timingSafeEqual } from 'crypto';
import * as http from 'http';
import * as https from 'https';
import { ServeError, SqliteHaError } from '../errors';
import type { ResolvedServeOptions } from '../options';
import { FORWARDED_HEADER } from './forward';

/** Request header naming the read consistency of a stream's reads: local (default) or linearizable. */
export const CONSISTENCY_HEADER = 'x-sqlite-ha-consistency';

export interface Routes {
  pipeline(body: unknown, consistency: 'local' | 'linearizable', headers: Record<string, string>, forwarded: boolean): Promise<unknown>;
  health(): Promise<{ status: number; body: unknown }>;
}

export function createHttpServer(opts: ResolvedServeOptions, routes: Routes): http.Server {
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(opts, routes, req, res).catch((err) => sendError(res, err));
  };
  const server = opts.tls
    ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler)
    : http.createServer(handler);
  // Bound slow or stuck clients: a whole request within 60 s, headers within 20 s.
  server.requestTimeout = 60000;
  server.headersTimeout = 20000;
  server.keepAliveTimeout = 30000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

async function handle(opts: ResolvedServeOptions, routes: Routes, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
    const h = await routes.health();
    return sendJson(res, h.status, h.body);
  }
  if (opts.authToken !== null && !authorized(req.headers.authorization, opts.authToken)) {
    res.setHeader('www-authenticate', 'Bearer');
    throw new ServeError('UNAUTHORIZED', 'missing or wrong bearer token (Authorization: Bearer …)', { httpStatus: 401 });
  }
  if (path === '/v2' && req.method === 'GET') return sendJson(res, 200, { version: 2 });
  if (path === '/v2/pipeline') {
    if (req.method !== 'POST') throw new ServeError('HRANA_PROTO_ERROR', 'use POST for /v2/pipeline', { httpStatus: 405 });
    const consistency = readConsistency(req.headers[CONSISTENCY_HEADER]);
    const text = await readBody(req, opts.maxBodyBytes);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new ServeError('HRANA_PROTO_ERROR', `malformed request: the body is not JSON (${(err as Error).message})`, { httpStatus: 400 });
    }
    const pass: Record<string, string> = {};
    if (req.headers.authorization) pass.authorization = req.headers.authorization;
    pass[CONSISTENCY_HEADER] = consistency;
    const answer = await routes.pipeline(body, consistency, pass, req.headers[FORWARDED_HEADER] !== undefined);
    return sendJson(res, 200, answer);
  }
  throw new ServeError('NOT_FOUND', `no route for ${req.method} ${path.slice(0, 100)}; this server speaks Hrana over HTTP v2 (POST /v2/pipeline) and GET /health`, { httpStatus: 404 });
}

function readConsistency(v: string | string[] | undefined): 'local' | 'linearizable' {
  if (v === undefined) return 'local';
  if (v === 'local' || v === 'linearizable') return v;
  throw new ServeError('HRANA_PROTO_ERROR', `${CONSISTENCY_HEADER} must be 'local' or 'linearizable'`, { httpStatus: 400 });
}

/** Constant-time comparison of digests, so neither the token nor its length leaks through timing. */
function authorized(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const a = createHash('sha256').update(m[1]).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

function readBody(req: http.IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge(maxBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > maxBytes) {
        failed = true;
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => !failed && resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', (err) => !failed && reject(err));
  });
}

function tooLarge(maxBytes: number): ServeError {
  return new ServeError('HRANA_PROTO_ERROR', `request body larger than ${maxBytes} bytes (the server's limit)`, { httpStatus: 413 });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  // Exactly application/json: the Hrana client reads error bodies only with that content type.
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = err instanceof ServeError && err.httpStatus ? err.httpStatus : err instanceof SqliteHaError ? 503 : 500;
  const code = err instanceof SqliteHaError ? err.code : 'SQLITE_HA_INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  try {
    if (status === 413) res.setHeader('connection', 'close');
    sendJson(res, status, { message, code });
  } catch {
    res.destroy();
  }
}
