/**
 * Diagnostic preload, not part of any figure: timestamps every etcd call (unary RPCs, watch
 * creation, watch events) and the SQLite steps that matter on the write and hand-over paths
 * (opening connections, pragmas, BEGIN/COMMIT, exec) in a process, appending JSON lines
 * {pid, t, op, ms} to $BENCH_TRACE_FILE (t = wall clock at the start, ms = duration).
 *
 *   BENCH_TRACE_FILE=/tmp/trace.jsonl BENCH_WORKER_EXEC_ARGV="-r $PWD/dist/bench/trace.js" \
 *     node dist/bench/main.js --quick --only graceful --no-save
 *
 * It wraps library internals (etcd3's KVClient/LeaseClient/WatchBuilder, better-sqlite3's
 * prototypes), so it may need adjusting when those libraries change.
 */
import * as fs from 'fs';
import { META_TABLE } from '../../src/storage/meta';

const file = process.env.BENCH_TRACE_FILE;

function now(): number {
  return performance.timeOrigin + performance.now();
}

function record(op: string, t: number, ms: number): void {
  if (file) fs.appendFileSync(file, JSON.stringify({ pid: process.pid, t, op, ms: Math.round(ms * 1000) / 1000 }) + '\n');
}

function wrapAsync(proto: any, name: string, label: (args: any[]) => string): void {
  const orig = proto[name];
  proto[name] = function (this: unknown, ...args: any[]) {
    const t = now();
    const p = orig.apply(this, args);
    const done = () => record(label(args), t, now() - t);
    if (p && typeof p.then === 'function') p.then(done, done);
    return p;
  };
}

function wrapSync(proto: any, name: string, label: (self: any, args: any[]) => string | null): void {
  const orig = proto[name];
  proto[name] = function (this: any, ...args: any[]) {
    const l = label(this, args);
    if (!l) return orig.apply(this, args);
    const t = now();
    try {
      return orig.apply(this, args);
    } finally {
      record(l, t, now() - t);
    }
  };
}

const key = (req: any) => (req?.key ? Buffer.from(req.key).toString().replace(/^\/bench-[^/]+/, '') : '');

if (file) {
  /* eslint-disable @typescript-eslint/no-var-requires */
  const rpc = require('etcd3/lib/rpc');
  const watch = require('etcd3/lib/watch');
  const txnLabel = (req: any) => {
    const ops = (req?.success ?? []).map((o: any) => Object.keys(o)[0].replace('request_', '') + ' ' + key(Object.values(o)[0]));
    return `[${ops.join(', ')}]`;
  };
  for (const m of ['range', 'put', 'deleteRange']) wrapAsync(rpc.KVClient.prototype, m, (a) => `etcd.${m} ${key(a[0])}`);
  wrapAsync(rpc.KVClient.prototype, 'txn', (a) => `etcd.txn ${txnLabel(a[0])}`);
  for (const m of ['leaseGrant', 'leaseRevoke']) wrapAsync(rpc.LeaseClient.prototype, m, () => `etcd.${m}`);
  wrapAsync(watch.WatchBuilder.prototype, 'create', function (this: any) {
    return `etcd.watch.create ${key(this?.request)}`;
  } as any);
  const emit = watch.Watcher.prototype.emit;
  watch.Watcher.prototype.emit = function (this: any, ev: string, ...args: any[]) {
    if (ev === 'put' || ev === 'delete') record(`etcd.watch.event ${ev} ${key(args[0])}`, now(), 0);
    return emit.call(this, ev, ...args);
  };

  const Database = require('better-sqlite3');
  const stmtProto = Object.getPrototypeOf(new Database(':memory:').prepare('SELECT 1'));
  wrapSync(stmtProto, 'run', (self) => (/^(BEGIN|COMMIT|ROLLBACK)/i.test(self.source) ? `sqlite.${self.source}` : null));
  wrapSync(stmtProto, 'get', (self) => (self.source.includes(META_TABLE) ? 'sqlite.meta read' : null));
  wrapSync(Database.prototype, 'exec', (_self, a) => `sqlite.exec ${String(a[0]).slice(0, 40)}`);
  wrapSync(Database.prototype, 'pragma', (_self, a) => `sqlite.pragma ${String(a[0])}`);
  wrapSync(Database.prototype, 'close', () => 'sqlite.close');
  // new Database(...) is a constructor call: hand out a timing wrapper wherever it is required.
  const Wrapped = function (...args: any[]) {
    const t = now();
    try {
      return new Database(...args);
    } finally {
      record(`sqlite.open${args[1]?.readonly ? ' ro' : ' rw'}`, t, now() - t);
    }
  } as any;
  Wrapped.prototype = Database.prototype;
  Object.assign(Wrapped, Database);
  const Module = require('module');
  const load = Module._load;
  Module._load = function (this: unknown, request: string, ...rest: any[]) {
    const m = load.call(this, request, ...rest);
    return request === 'better-sqlite3' && m === Database ? Wrapped : m;
  };
}
