/**
 * 9. CPU per etcd call, by transport (issue #11, item 2). Each variant sends the same sequential
 * one-put transaction (a commit-record-sized value under a compare, like the commit publish) to
 * the run's etcd, N times per run, the variants rotated within each run; the figure is the CPU
 * of this process per call (process.cpuUsage, user + system, all threads) and the wall time:
 *   etcd3        the product's gRPC client (createEtcdClient: a deadline on each call, retry and
 *                circuit-breaker policies), what the commit publish cost before it moved to the gateway
 *   etcd3-bare   etcd3 without call options or fault-handling policies
 *   grpc-js      a bare @grpc/grpc-js unary call on the same proto (etcd3's own loader settings)
 *   http         etcd's JSON gateway (/v3/kv/txn on the client port) over one HTTP/1.1
 *                keep-alive connection (node:http): what the commit publish uses now
 *                (src/coordinator/etcd/gateway.ts; gRPC with a client certificate)
 * CPU per write of each is then today's measured CPU per sequential write minus the http call
 * plus the variant's call (one commit-record call per write: the keep-alive is a timer on its own
 * stream, 3 messages per TTL whatever the write rate, so there is no per-write call to share).
 */
import * as http from 'http';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { noop } from 'cockatiel';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createEtcdClient } from '../../src/coordinator/etcd/client';
import { BenchContext, createDatabase, dbFile, INSERT, openHa, PAYLOAD } from './env';
import { Figure, figure } from './report';
import { median, minMax } from './stats';

type Call = () => Promise<unknown>;

interface Variant {
  name: string;
  label: string;
  setup(): Promise<{ call: Call; close(): void }>;
}

function record(i: number): Buffer {
  return Buffer.from(JSON.stringify({ txid: i, fence: 1234567, node: 'bench-node', time: Date.now(), epoch: 0 }));
}

function variants(ctx: BenchContext, key: string): Variant[] {
  const k = Buffer.from(key);
  const txn = (i: number) => ({
    compare: [{ key: k, target: 'Version' as const, result: 'Greater' as const, version: -1 }],
    success: [{ request_put: { key: k, value: record(i) } }],
    failure: [],
  });
  const endpoint = new URL(ctx.endpoints[0]);
  return [
    {
      name: 'etcd3', label: 'etcd3, the product client (deadline + policies)',
      async setup() {
        const c = createEtcdClient({ endpoints: ctx.endpoints, tls: null, auth: null }, 2000);
        let i = 0;
        return { call: () => c.kv.txn(txn(i++)), close: () => c.close() };
      },
    },
    {
      name: 'etcd3-bare', label: 'etcd3, no call options, no policies',
      async setup() {
        const c = new Etcd3({ hosts: ctx.endpoints, faultHandling: { global: noop, host: () => noop } });
        let i = 0;
        return { call: () => c.kv.txn(txn(i++)), close: () => c.close() };
      },
    },
    {
      name: 'grpc-js', label: 'bare @grpc/grpc-js unary call',
      async setup() {
        const def = protoLoader.loadSync(path.join(path.dirname(require.resolve('etcd3/package.json')), 'proto', 'rpc.proto'), {
          keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
        });
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const pb = (grpc.loadPackageDefinition(def) as any).etcdserverpb;
        const kv = new pb.KV(endpoint.host, grpc.credentials.createInsecure());
        let i = 0;
        const call = () =>
          new Promise((resolve, reject) => kv.Txn(txn(i++), (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))));
        return { call, close: () => kv.close() };
      },
    },
    {
      name: 'http', label: 'JSON gateway over HTTP/1.1 keep-alive (node:http)',
      async setup() {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        const b64 = k.toString('base64');
        let i = 0;
        const call = () =>
          new Promise((resolve, reject) => {
            const body = JSON.stringify({
              compare: [{ key: b64, target: 'VERSION', result: 'GREATER', version: '-1' }],
              success: [{ request_put: { key: b64, value: record(i++).toString('base64') } }],
            });
            const req = http.request(
              { host: endpoint.hostname, port: endpoint.port, path: '/v3/kv/txn', method: 'POST', agent,
                headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 2000 },
              (res) => {
                const chunks: Buffer[] = [];
                res.on('data', (d: Buffer) => chunks.push(d));
                res.on('end', () => {
                  const text = Buffer.concat(chunks).toString();
                  if (res.statusCode !== 200) return reject(new Error(`gateway ${res.statusCode}: ${text}`));
                  const doc = JSON.parse(text) as { succeeded?: boolean };
                  return doc.succeeded ? resolve(doc) : reject(new Error(`gateway txn did not succeed: ${text}`));
                });
              },
            );
            req.on('error', reject);
            req.on('timeout', () => req.destroy(new Error('gateway call timed out')));
            req.end(body);
          });
        return { call, close: () => agent.destroy() };
      },
    },
  ];
}

async function timedCalls(call: Call, n: number): Promise<{ cpuUs: number; wallMs: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await call();
  const wallMs = (performance.now() - t0) / n;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / n, wallMs };
}

export async function benchEtcdCpu(ctx: BenchContext): Promise<Figure[]> {
  const runs = ctx.settings.readRuns;
  const n = Math.max(100, ctx.settings.linearizableReads);
  const vs = variants(ctx, `${ctx.prefix}/etcd-cpu`);
  const open = await Promise.all(vs.map((v) => v.setup()));
  const cpu = vs.map(() => [] as number[]);
  const wall = vs.map(() => [] as number[]);
  // Sequential 1-row `await db.write()` under a held lease, in the same rotation: the write the
  // transports would carry.
  const file = dbFile(ctx, 'etcd-cpu');
  createDatabase(file);
  const db = await openHa(ctx, file, `${ctx.prefix}/etcd-cpu-db`, 'bench-cpu');
  const writeCpu: number[] = [];
  try {
    await db.acquire();
    const stmts = new WeakMap<object, { run(...a: unknown[]): unknown }>();
    const write = () => db.write((c) => {
      let st = stmts.get(c);
      if (!st) stmts.set(c, (st = c.prepare(INSERT)));
      st.run(0, PAYLOAD);
    });
    for (const o of open) await timedCalls(o.call, 30); // warm each channel / connection
    await timedCalls(write, 30);
    for (let r = 0; r < runs; r++) {
      for (let j = 0; j <= vs.length; j++) {
        const v = (j + r) % (vs.length + 1); // rotate the order from run to run
        if (v === vs.length) {
          writeCpu.push((await timedCalls(write, n)).cpuUs);
          continue;
        }
        const t = await timedCalls(open[v].call, n);
        cpu[v].push(t.cpuUs);
        wall[v].push(t.wallMs);
      }
    }
  } finally {
    for (const o of open) o.close();
    await db.close();
  }
  const base = median(cpu[0]);
  const product = vs.findIndex((v) => v.name === 'http'); // the transport the measured write uses
  const perWrite = median(writeCpu);
  ctx.log(`  CPU per call: ${vs.map((v, i) => `${v.name} ${median(cpu[i]).toFixed(0)} µs`).join(', ')}`);
  return [
    figure({
      bench: 'etcdcpu', id: 'etcdcpu.write.cpu_us', label: 'CPU per sequential 1-row await db.write() (record over the gateway, measured)', unit: 'µs',
      value: perWrite, spread: minMax(writeCpu), n: runs, samples: writeCpu, target: { op: '<=', value: 600 },
      note: 'one commit-record call per write; keep-alives are 3 per TTL on their own stream, not per write',
    }),
    ...vs.filter((_, i) => i !== product).map((v) => {
      const i = vs.indexOf(v);
      const derived = cpu[i].map((c, r) => writeCpu[r] - cpu[product][r] + c);
      return figure({
        bench: 'etcdcpu', id: `etcdcpu.write.${v.name}.cpu_us`, label: `  per write with ${v.name} instead (derived, per run)`, unit: 'µs',
        value: median(derived), spread: minMax(derived), n: runs, samples: derived, target: { op: '<=', value: 600 },
        note: 'the measured write − the gateway call + this transport\'s call, run by run',
      });
    }),
    ...vs.flatMap((v, i) => [
    figure({
      bench: 'etcdcpu', id: `etcdcpu.${v.name}.cpu_us_per_call`, label: `${i === 0 ? '' : '  '}CPU per one-put txn: ${v.label}`, unit: 'µs',
      value: median(cpu[i]), spread: minMax(cpu[i]), n: runs, samples: cpu[i],
      note: `wall ${median(wall[i]).toFixed(2)} ms per call; ${i === 0 ? 'the baseline' : `${(base - median(cpu[i])).toFixed(0)} µs less than etcd3`} (${n} calls per run)`,
    }),
  ])];
}
