/**
 * The demo's coordinator: a 3-member etcd cluster from PATH when etcd (and etcdctl) are installed,
 * the embedded lockfile coordinator otherwise (or when asked for). The caller prints `describe`
 * in the first lines of output, so nobody mistakes a lockfile run for an etcd one.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Etcd3 } from 'etcd3';
import { EtcdCluster, etcdOnPath } from '../cluster/etcd-process';
import { HandoverRecord, Keys, LockRecord, parseJson, prefixEnd } from '../../src/coordinator/etcd/keys';
import { createEtcdClient } from '../../src/coordinator/etcd/client';
import { DEFAULTS } from '../../src/options';
import { atExit } from './cleanup';

export type CoordinatorChoice = 'auto' | 'etcd' | 'lockfile';

export const ETCD_MEMBERS = 3;
export const PREFIX = DEFAULTS.prefix;

export interface DemoCoordinator {
  kind: 'etcd' | 'lockfile';
  /** First-lines text: what coordinates the nodes, and why this one. */
  describe: string;
  /** etcd client URLs; empty for the lockfile coordinator. */
  endpoints: string[];
  prefix: string;
  /** etcd data dirs and member logs (null for lockfile). */
  logDir: string | null;
  /** etcd's hand-over record for the acquisition at `fence` (null: lockfile, not found, or no answer in ~3 s). */
  handoverRecord(db: string, fence: number): Promise<HandoverRecord | null>;
  /**
   * The node id etcd says holds the lease (the oldest key in the lock queue), `undefined` when
   * etcd did not answer within ~1 s; lockfile coordinators return undefined (no independent view).
   */
  currentHolder(db: string): Promise<{ node: string; fence: number } | null | undefined>;
  stop(opts: { keepData: boolean }): Promise<void>;
}

/** A usage-level problem (exit code 2): e.g. `--coordinator etcd` without etcd on PATH. */
export class DemoUsageError extends Error {}

/** Full path of an executable on PATH, or null. */
export function onPath(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

function etcdctlWorks(): boolean {
  return spawnSync('etcdctl', ['version'], { stdio: 'ignore', timeout: 5000 }).status === 0;
}

/** Decides etcd or lockfile without starting anything; throws DemoUsageError for impossible asks. */
export function resolveChoice(choice: CoordinatorChoice): { kind: 'etcd' } | { kind: 'lockfile'; why: string } {
  if (choice === 'lockfile') return { kind: 'lockfile', why: 'as asked by --coordinator lockfile' };
  const haveEtcd = etcdOnPath();
  const haveCtl = haveEtcd && etcdctlWorks();
  if (haveEtcd && haveCtl) return { kind: 'etcd' };
  const missing = haveEtcd ? 'etcdctl is not on PATH (etcd is)' : 'etcd is not on PATH';
  if (choice === 'etcd') {
    throw new DemoUsageError(
      `--coordinator etcd: ${missing}. Install etcd 3.4+ (Debian: apt-get install etcd-server etcd-client) ` +
        'or run with --coordinator lockfile.',
    );
  }
  return { kind: 'lockfile', why: `${missing}; install etcd (and etcdctl) to see the etcd lease` };
}

/** Starts the chosen coordinator; for etcd, members listen on `host` (127.0.0.1 unless --netns). */
export async function startCoordinator(
  choice: { kind: 'etcd' } | { kind: 'lockfile'; why: string },
  workDir: string,
  host: string,
): Promise<DemoCoordinator> {
  if (choice.kind === 'lockfile') {
    return {
      kind: 'lockfile',
      describe:
        `coordinator: the embedded LOCKFILE coordinator, not etcd (${choice.why}). ` +
        'Nodes take a lock directory beside the database; one host only.',
      endpoints: [],
      prefix: PREFIX,
      logDir: null,
      handoverRecord: async () => null,
      currentHolder: async () => undefined,
      stop: async () => undefined,
    };
  }
  const dir = path.join(workDir, 'etcd');
  fs.mkdirSync(dir, { recursive: true });
  const cluster = await EtcdCluster.start({ members: ETCD_MEMBERS, dir, host });
  let etcd: Etcd3 | null = null;
  // One client for the demo's own questions; every unary call carries a 1 s deadline.
  const client = (): Etcd3 =>
    (etcd ??= createEtcdClient({ endpoints: cluster.endpoints, tls: null, auth: null }, 1000));
  const unregister = atExit('etcd members', () => {
    for (const m of cluster.members) {
      if (m.process && m.process.exitCode === null && m.process.signalCode === null) m.process.kill('SIGKILL');
    }
  });
  return {
    kind: 'etcd',
    describe: `coordinator: etcd, ${ETCD_MEMBERS} members started from ${onPath('etcd') ?? 'etcd'} at ${cluster.endpoints.join(',')}`,
    endpoints: cluster.endpoints,
    prefix: PREFIX,
    logDir: dir,
    handoverRecord: (db, fence) => readHandoverRecord(client(), PREFIX, db, fence),
    currentHolder: (db) => readHolder(client(), PREFIX, db),
    stop: async ({ keepData }) => {
      etcd?.close();
      etcd = null;
      await cluster.stop({ keepData: true });
      unregister();
      if (!keepData) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The acquirer writes its hand-over record just after it starts holding (off its write path), so
 * this retries for a moment; every call carries a deadline and the whole read is bounded.
 */
async function readHandoverRecord(client: Etcd3, prefix: string, db: string, fence: number): Promise<HandoverRecord | null> {
  const key = new Keys(prefix, db).historyKey(fence);
  const deadline = Date.now() + 3000;
  for (let attempt = 0; attempt < 20 && Date.now() < deadline; attempt++) {
    try {
      const record = parseJson<HandoverRecord>(await client.get(key).string());
      if (record) return record;
    } catch {
      // not reachable this instant; try again until the deadline
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return null;
}

/** The holder is the lock-queue key with the lowest create revision (etcd's Mutex layout). */
async function readHolder(client: Etcd3, prefix: string, db: string): Promise<{ node: string; fence: number } | null | undefined> {
  const lockPrefix = new Keys(prefix, db).lockPrefix;
  let timer: NodeJS.Timeout | undefined;
  try {
    const res = await Promise.race([
      client.kv.range({
        key: Buffer.from(lockPrefix), range_end: prefixEnd(lockPrefix), sort_order: 'Ascend', sort_target: 'Create', limit: 1,
      }),
      new Promise<null>((r) => (timer = setTimeout(() => r(null), 1000))),
    ]);
    if (!res) return undefined;
    const kv = res.kvs[0];
    // The holder's fence token is its key's create revision.
    return kv ? { node: parseJson<LockRecord>(kv.value)?.node ?? '(foreign)', fence: Number(kv.create_revision) } : null;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
