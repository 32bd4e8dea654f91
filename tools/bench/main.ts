/**
 * `npm run bench [-- options]`: sqlite-ha against raw better-sqlite3 on the same file system with
 * the same pragmas, plus hand-over, failover and read-scaling figures. Starts its own etcd from
 * PATH on loopback ports. Prints a table (stderr with --json, stdout otherwise) and writes
 * tools/bench/results/<timestamp>.json.
 *
 *   --quick            short runs (the whole run stays under a minute)
 *   --only a,b         run only these benchmarks: etcd, lock, etcdcpu, writes, dqlite, reads, contention, failover,
 *                      graceful, scaling, sshfs (the lockless mode on its own sshfs export; needs
 *                      root, sshfs and sshd), serve (Hrana over HTTP through @libsql/client),
 *                      takeover (lockless unclean takeover by file size, on sshfs; not in the
 *                      default set: minutes per run)
 *   --json             print the results document on stdout
 *   --dir DIR          where the database files go (default: a temp dir under os.tmpdir());
 *                      point it at the shared file system you deploy on
 *   --out DIR          where the results JSON goes (default: tools/bench/results); --no-save skips it
 *   --etcd-members N   etcd cluster size (default 1)
 *   --etcd-dir DIR     where etcd keeps its data (default: a temp dir, i.e. the same disk as the
 *                      databases; /dev/shm takes etcd's fsyncs off that disk)
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EtcdCluster } from '../cluster/etcd-process';
import { DEFAULTS } from '../../src/options';
import { mountFor, parseMounts } from '../../src/storage/mounts';
import { benchContention } from './contention';
import { benchDqlite } from './dqlite';
import { BenchContext, FULL, QUICK } from './env';
import { benchEtcd } from './etcd-rtt';
import { benchEtcdCpu } from './etcd-cpu';
import { benchFailover } from './failover';
import { benchGraceful } from './graceful';
import { benchLock } from './lock';
import { benchReads } from './reads';
import { benchScaling } from './read-scaling';
import { benchServe } from './serve';
import { benchSshfs } from './sshfs';
import { benchStandby } from './standby';
import { benchTakeover } from './takeover';
import { benchLocklessNodes } from './lockless-nodes';
import { Figure, formatTable, ResultsDocument, writeResults } from './report';
import { WorkerPool } from './workers';
import { benchWrites } from './writes';

export const BENCHMARKS: Record<string, (ctx: BenchContext) => Promise<Figure[]>> = {
  etcd: benchEtcd,
  lock: benchLock,
  etcdcpu: benchEtcdCpu,
  writes: benchWrites,
  dqlite: benchDqlite,
  reads: benchReads,
  contention: benchContention,
  failover: benchFailover,
  graceful: benchGraceful,
  scaling: benchScaling,
  sshfs: benchSshfs,
  'lockless-nodes': benchLocklessNodes,
  serve: benchServe,
  standby: benchStandby,
  takeover: benchTakeover,
};

/** Benchmarks that run only when named in --only (minutes per run). */
const OPT_IN = new Set(['takeover']);

const USAGE = `usage: node build/tools/bench/main.js [options]   (or: npm run bench -- [options])
  --quick            short runs (the whole run stays under a minute)
  --only a,b         only these benchmarks: etcd, lock, etcdcpu, writes, reads, contention, failover, graceful, scaling,
                     dqlite (sequential writes vs a 3-node dqlite-demo, when installed),
                     sshfs (lockless mode on a private sshfs export: needs root, sshfs, sshd),
                     lockless-nodes (lockless reads at 1, 2, 4 reader nodes, sshfs),
                     serve (sqlite-ha serve through @libsql/client over loopback), standby,
                     takeover (lockless unclean takeover by file size on sshfs; only when named)
  --json             print the results document on stdout (the table goes to stderr)
  --dir DIR          where the database files go (default: a temp dir under the OS temp dir)
  --out DIR          where the results JSON goes (default: tools/bench/results); --no-save skips it
  --etcd-members N   etcd cluster size (default 1)
  --etcd-dir DIR     where etcd keeps its data (default: a temp dir on the same disk)
See docs/BENCHMARKS.md.
`;

export interface CliOptions {
  quick: boolean;
  only: string[] | null;
  json: boolean;
  dir: string | null;
  out: string | null;
  etcdMembers: number;
  etcdDir: string | null;
}

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = {
    quick: false, only: null, json: false, dir: null, out: path.join(process.cwd(), 'tools', 'bench', 'results'), etcdMembers: 1,
    etcdDir: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--json') o.json = true;
    else if (a === '--only') o.only = value().split(',').map((x) => x.trim()).filter(Boolean);
    else if (a === '--dir') o.dir = path.resolve(value());
    else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--no-save') o.out = null;
    else if (a === '--etcd-members') o.etcdMembers = Number(value());
    else if (a === '--etcd-dir') o.etcdDir = path.resolve(value());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  for (const b of o.only ?? []) {
    if (!BENCHMARKS[b]) throw new Error(`--only: unknown benchmark '${b}' (known: ${Object.keys(BENCHMARKS).join(', ')})`);
  }
  if (!Number.isInteger(o.etcdMembers) || o.etcdMembers < 1) throw new Error('--etcd-members: a positive integer');
  return o;
}

function fileSystemOf(dir: string): string {
  try {
    const m = mountFor(fs.realpathSync(dir), parseMounts(fs.readFileSync('/proc/mounts', 'utf8')));
    return `${m.fsType} (${m.mountPoint})`;
  } catch {
    return 'unknown';
  }
}

function machine(dir: string): Record<string, unknown> {
  let etcdVersion = 'unknown';
  try {
    etcdVersion = execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0].replace('etcd Version: ', '');
  } catch {
    /* reported as unknown */
  }
  const fsType = fileSystemOf(dir);
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: `${os.platform()} ${os.release()}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    etcd: etcdVersion,
    dbDir: dir,
    fileSystem: fsType,
  };
}

export async function main(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
  const settings = opts.quick ? QUICK : FULL;
  const startedAt = new Date();
  const out = opts.json ? process.stderr : process.stdout;
  const log = (msg: string) => process.stderr.write(`${msg}\n`);
  const dir = opts.dir ? fs.mkdtempSync(path.join(opts.dir, 'sqlite-ha-bench-')) : fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-bench-'));
  const selected = opts.only ?? Object.keys(BENCHMARKS).filter((b) => !OPT_IN.has(b));
  const figures: Figure[] = [];
  const errors: { bench: string; message: string }[] = [];
  log(`sqlite-ha bench (${opts.quick ? 'quick' : 'full'}): ${selected.join(', ')}; databases in ${dir}`);
  const etcdDir = opts.etcdDir ? fs.mkdtempSync(path.join(opts.etcdDir, 'sqlite-ha-bench-etcd-')) : undefined;
  const cluster = await EtcdCluster.start({ members: opts.etcdMembers, dir: etcdDir });
  const pool = new WorkerPool();
  const loadBefore = os.loadavg();
  try {
    const ctx: BenchContext = {
      settings,
      endpoints: cluster.endpoints,
      dir,
      prefix: `/bench-${startedAt.getTime().toString(36)}`,
      pool,
      log,
    };
    for (const name of selected) {
      const t = Date.now();
      log(`[${name}]`);
      try {
        figures.push(...(await BENCHMARKS[name](ctx)));
      } catch (err) {
        const message = (err as Error).stack ?? String(err);
        errors.push({ bench: name, message });
        log(`  ${name} failed: ${message}`);
      }
      log(`  (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    }
  } finally {
    await pool.stop();
    await cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const doc: ResultsDocument = {
    tool: 'sqlite-ha bench',
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    mode: opts.quick ? 'quick' : 'full',
    only: opts.only,
    machine: { ...machine(opts.dir ?? os.tmpdir()), loadavgBefore: loadBefore, loadavgAfter: os.loadavg() },
    settings: {
      ...settings, etcdMembers: opts.etcdMembers, etcdFileSystem: fileSystemOf(opts.etcdDir ?? os.tmpdir()),
      leaseTtlMs: DEFAULTS.leaseTtlMs, journalMode: 'TRUNCATE', synchronous: 'FULL',
    },
    figures,
    errors,
  };
  const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(' ');
  out.write(`\n${formatTable(figures)}\n`);
  out.write(
    `machine: ${os.cpus().length} CPUs, load average ${load(loadBefore)} before, ${load(os.loadavg())} after; ` +
      `databases on ${String(doc.machine.fileSystem)}, etcd data on ${String(doc.settings.etcdFileSystem)}; ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s\n`,
  );
  for (const e of errors) out.write(`ERROR in ${e.bench}: ${e.message.split('\n')[0]}\n`);
  if (opts.out) log(`results: ${writeResults(doc, opts.out)}`);
  if (opts.json) process.stdout.write(JSON.stringify(doc) + '\n');
  return errors.length ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`bench: ${(err as Error).message}\n`);
      process.exit(2);
    },
  );
}
