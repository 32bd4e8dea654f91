/**
 * A benchmark node: one child process (started with fork() by workers.ts) holding one sqlite-ha
 * handle, driven by the parent over the IPC channel. Every timestamp is now() (wall clock with
 * sub-millisecond resolution), so the parent can subtract times taken in different processes.
 *
 * Requests {id, cmd, ...}; replies {id, ok: true, result} or {id, ok: false, error}; unsolicited
 * lease events {ev: 'acquired'|'released'|'lost', fence, at}. Commands:
 *   init {db, endpoints, prefix, nodeId, options}   open a handle (closing any previous one)
 *   acquire                                          db.acquire() (pins the lease) → {at}
 *   write {rows}                                     one db.write of `rows` rows → {at}
 *   writeLoop {startAt, durationMs, rows}            sequential db.write until startAt+durationMs
 *                                                    → {commits: [at...], errors, firstError}
 *   readLoop {startAt, durationMs, maxId}            db.prepare(SELECT).get() by random id
 *                                                    → {ops, seconds}
 *   readLoopDb {startAt, durationMs, maxId}          the same lookups, each in its own
 *                                                    `await db.read(fn)` (the lockless mode's
 *                                                    only read surface) → {ops, seconds, errors}
 *   close                                            db.close() → {closeStartAt, closedAt}
 *   exit
 */
import type Database from 'better-sqlite3';
import { setImmediate as immediate } from 'timers/promises';
import type { HADatabase } from '../../src/handle/database';
import { BUSY_TIMEOUT_MS, INSERT, now, PAYLOAD, SELECT, SLICE_MS } from './env';
import { open } from '../../src/index';

interface Request {
  id: number;
  cmd: string;
  [k: string]: any;
}

let db: HADatabase | null = null;
let nodeId = 'worker';

function send(msg: unknown): void {
  process.send?.(msg);
}

function need(): HADatabase {
  if (!db) throw new Error('worker: init first');
  return db;
}

/** The insert, prepared once per connection (each holder tenure opens a new one). */
const inserts = new WeakMap<Database.Database, Database.Statement>();

function insertRows(rows: number) {
  return (c: Database.Database) => {
    let ins = inserts.get(c);
    if (!ins) inserts.set(c, (ins = c.prepare(INSERT)));
    for (let i = 0; i < rows; i++) ins.run(i, PAYLOAD);
  };
}

async function untilStart(startAt: number): Promise<void> {
  const wait = startAt - now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

const handlers: Record<string, (req: Request) => Promise<unknown>> = {
  async init(req) {
    if (db) await db.close().catch(() => undefined);
    nodeId = req.nodeId;
    const h = await open(req.db, {
      coordinator: { kind: 'etcd', endpoints: req.endpoints, prefix: req.prefix },
      nodeId,
      busyTimeoutMs: BUSY_TIMEOUT_MS,
      ...(req.options ?? {}),
    });
    db = h;
    h.on('acquired', (e: { fence: number }) => send({ ev: 'acquired', node: nodeId, fence: e.fence, at: now() }));
    h.on('released', (e: { fence: number }) => send({ ev: 'released', node: nodeId, fence: e.fence, at: now() }));
    h.on('lost', (e: Error) => send({ ev: 'lost', node: nodeId, message: e.message, at: now() }));
    return { pid: process.pid };
  },

  async acquire() {
    await need().acquire();
    return { at: now(), fence: need().lease.fence };
  },

  async write(req) {
    await need().write(insertRows(req.rows ?? 1));
    return { at: now(), fence: need().lease.fence };
  },

  async writeLoop(req) {
    const h = need();
    const fn = insertRows(req.rows ?? 1);
    await untilStart(req.startAt);
    const end = req.startAt + req.durationMs;
    const commits: number[] = [];
    let errors = 0;
    let firstError: string | null = null;
    while (now() < end) {
      try {
        await h.write(fn);
        commits.push(now());
      } catch (err) {
        errors++;
        firstError ??= `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`;
      }
    }
    return { commits, errors, firstError };
  },

  async readLoop(req) {
    const stmt = need().prepare(SELECT);
    const maxId: number = req.maxId;
    await untilStart(req.startAt);
    const end = req.startAt + req.durationMs;
    const start = now();
    let ops = 0;
    let t = start;
    let id = 1;
    while (t < end) {
      const sliceEnd = Math.min(end, t + SLICE_MS);
      while (t < sliceEnd) {
        id = (id * 7919 + 13) % maxId; // cheap spread of ids, same for every process
        stmt.get(id + 1);
        ops++;
        t = now();
      }
      await immediate();
      t = now();
    }
    return { ops, seconds: (t - start) / 1000 };
  },

  async readLoopDb(req) {
    const h = need();
    const stmts = new WeakMap<Database.Database, Database.Statement>();
    const maxId: number = req.maxId;
    await untilStart(req.startAt);
    const end = req.startAt + req.durationMs;
    const start = now();
    let ops = 0;
    let errors = 0;
    let id = 1;
    while (now() < end) {
      id = (id * 7919 + 13) % maxId;
      try {
        await h.read((c) => {
          let st = stmts.get(c);
          if (!st) stmts.set(c, (st = c.prepare(SELECT)));
          return st.get(id + 1);
        });
        ops++;
      } catch {
        errors++;
      }
    }
    return { ops, seconds: (now() - start) / 1000, errors };
  },

  async close() {
    if (!db) return {};
    const h = db;
    const closeStartAt = now();
    await h.close();
    const closedAt = now();
    db = null;
    return { closeStartAt, closedAt };
  },

  async exit() {
    setImmediate(() => process.exit(0));
    return {};
  },
};

process.on('message', (req: Request) => {
  const handler = handlers[req.cmd];
  const p = handler ? handler(req) : Promise.reject(new Error(`worker: unknown command ${req.cmd}`));
  p.then(
    (result) => send({ id: req.id, ok: true, result }),
    (err: Error & { code?: string }) =>
      send({ id: req.id, ok: false, error: { code: err?.code ?? null, message: String(err?.message ?? err) } }),
  );
});
process.on('disconnect', () => process.exit(0));
send({ ev: 'ready', pid: process.pid });
