/**
 * The lab's scenarios. Each starts workers (tools/chaos/node-worker.ts) in the client VMs with a
 * workload mix, injects its faults, and returns the fault records; the run then checks every
 * history against the final file (chaos checker + checks.ts).
 *
 *   counter   every node appends (increments); the lease moves at nearly every write; with
 *             `failover` one SIGKILL of the holder's process in the middle (the CI run)
 *   bank      transfers on the first half of the nodes, local + linearizable audits on the rest
 *   failover  counter, then SIGKILL of the holder's process, then a power cut of the holder's VM
 *   zombie    the holder SIGSTOPped inside a transaction for longer than its TTL, then SIGCONT
 *   mix       appends, transfers, local and linearizable reads on every node, no faults (frequent
 *             hand-overs with reads in between)
 *   bench     (main.ts first measures throughput in one VM) counter with hand-overs and, with
 *             `failover`, one SIGKILL of the holder: hand-over and failover times as multiples of TTL
 *   chaos     counter+bank mix with a seeded series of process, etcd-link and NFS-server faults
 *   stale-cache  counter on NFSv3 mounted nolock,nocto,actimeo=600 with locks 'trusted' forced
 *             (main.ts sets the mount): hand-overs onto a client page cache that may be stale
 *   stale-knfsd  counter; the first node writes on; the others' workers are started again and again so
 *             that they open the file while it commits (the pattern before the stale view of the knfsd
 *             chaos run, seed 86: a read delegation handed out while another client writes?)
 */
import type { FaultRecord } from '../chaos/faults';
import { Prng } from '../chaos/prng';
import type { BankConfig } from '../chaos/schema';
import { Lab, LAB_TIMING, NodeState } from './lab';

export const SCENARIOS = ['counter', 'mix', 'bank', 'failover', 'zombie', 'chaos', 'bench', 'stale-cache', 'stale-knfsd'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const BANK: BankConfig = { accounts: 5, initialBalance: 100 };

export interface ScenarioOptions {
  scenario: Scenario;
  durationMs: number;
  seed: number;
  /** counter: SIGKILL the holder's process once, half-way. */
  failover: boolean;
  /** The workers' locks option. */
  locks: 'auto' | 'trusted' | 'none';
}

/** A fault as the report shows it (the chaos FaultRecord, with lab fault types). */
export type LabFault = Omit<FaultRecord, 'kind' | 'type'> & { kind: string; type: string; measuredMs?: number | null };

export interface ScenarioResult {
  faults: LabFault[];
  /** Scenario-specific checks that need live information (bounds, the zombie's operation). */
  notes: string[];
  failoverMs: { kind: string; ms: number }[];
  zombie?: { node: string; pausedAt: number; resumedAt: number; opId: string | null; fence: number | null };
  harnessErrors: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function mixFor(s: Scenario, n: NodeState, nodes: number) {
  switch (s) {
    case 'counter':
    case 'bench':
    case 'failover':
    case 'zombie':
    case 'stale-cache':
    case 'stale-knfsd':
      return { append: 1, transfer: 0, read: 0 };
    case 'bank':
      return n.index <= Math.ceil(nodes / 2) ? { append: 0, transfer: 1, read: 0 } : { append: 0, transfer: 0, read: 1, linearizable: 0.6 };
    case 'mix':
    case 'chaos':
      return { append: 0.45, transfer: 0.35, read: 0.2, linearizable: 0.75 };
  }
}

export async function runScenario(lab: Lab, o: ScenarioOptions): Promise<ScenarioResult> {
  const res: ScenarioResult = { faults: [], notes: [], failoverMs: [], harnessErrors: [] };
  const workerCfg = (n: NodeState) => ({
    bank: BANK, seed: o.seed, maxRunMs: o.durationMs + 240000, mix: mixFor(o.scenario, n, lab.nodes.length),
    thinkMs: o.scenario === 'bank' ? 20 : 50, locks: o.locks,
  });
  // stale-knfsd starts the first node alone: the others open the file later, while it writes.
  const first = o.scenario === 'stale-knfsd' ? lab.nodes.slice(0, 1) : lab.nodes;
  for (const n of first) await lab.startWorker(n, workerCfg(n));
  // Warm-up: each node has completed one operation (and so opened the database through NFS).
  const warm = new Set<string>();
  const warmUntil = Date.now() + 240000;
  const off = lab.on((n, e) => {
    if (e.ev === 'ack' || e.ev === 'ready') warm.add(`${n.nodeId}:${e.ev}`);
  });
  while (first.some((n) => !warm.has(`${n.nodeId}:ready`)) && Date.now() < warmUntil) await sleep(500);
  off();
  const notReady = first.filter((n) => !warm.has(`${n.nodeId}:ready`));
  if (notReady.length) {
    throw new Error(`warm-up: ${notReady.map((n) => `${n.nodeId} (${n.stderrTail.trim().split('\n').slice(-3).join(' | ')})`).join(', ')} not ready within 240 s`);
  }
  lab.log(`workers ready on ${first.map((n) => `${n.nodeId}@${n.vm} locks '${n.locks}'`).join(', ')}`);
  const start = Date.now();
  const endAt = start + o.durationMs;
  const prng = new Prng(o.seed);
  let index = 0;
  const record = (kind: string, type: string, target: string, detail: string, injectAt: number, healAt: number, extra: Partial<LabFault> = {}) => {
    const f: LabFault = { index: ++index, kind, type, target, detail, injectAt, healAt, ackAfterHealAt: null, injected: true, ...extra };
    res.faults.push(f);
    lab.log(`fault ${f.index} ${type} on ${target}: ${detail}`);
    return f;
  };
  const waitHolder = async (timeoutMs: number, exclude: NodeState[] = []): Promise<NodeState | null> => {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const h = lab.holder();
      if (h && !exclude.includes(h)) return h;
      await sleep(100);
    }
    return null;
  };
  /** SIGKILL of the holder's worker; measures the first ack by another node; restarts it later. */
  const killHolder = async (): Promise<void> => {
    const h = await waitHolder(60000);
    if (!h) return void res.harnessErrors.push('kill-holder: no holder within 60 s');
    const at = Date.now();
    await lab.killWorker(h);
    const next = await lab.waitEvent((n, e) => n !== h && e.ev === 'ack', LAB_TIMING.leaseTtlMs * 4);
    const ms = next ? next.e.at! - at : null;
    record('kill', 'kill-holder', h.nodeId, `SIGKILL of the holder's process; next ack by another node after ${ms ?? '—'} ms`, at, at, { measuredMs: ms });
    if (ms !== null) res.failoverMs.push({ kind: 'process SIGKILL', ms });
    await lab.startWorker(h, workerCfg(h));
  };

  if (o.scenario === 'counter' || o.scenario === 'stale-cache' || o.scenario === 'bank' || o.scenario === 'mix' || o.scenario === 'bench') {
    if (o.failover && lab.nodes.length > 1) {
      await sleep(Math.max(0, o.durationMs / 2 - (Date.now() - start)));
      await killHolder();
    }
  } else if (o.scenario === 'failover') {
    await sleep(Math.min(o.durationMs / 4, 20000));
    await killHolder();
    await sleep(LAB_TIMING.leaseTtlMs / 2);
    if (lab.nodes.filter((n) => lab.vms.get(n.vm)?.running).length < 2) {
      res.harnessErrors.push('vm power cut needs two live client VMs');
    } else {
      const h = await waitHolder(60000);
      if (!h) res.harnessErrors.push('power cut: no holder within 60 s');
      else {
        const at = Date.now();
        lab.saveClock(h.vm);
        await lab.hardStopVm(h.vm);
        const next = await lab.waitEvent((n, e) => n !== h && e.ev === 'ack', LAB_TIMING.leaseTtlMs * 6);
        const ms = next ? next.e.at! - at : null;
        record('kill', 'power-cut-holder-vm', `${h.nodeId}@${h.vm}`, `SIGKILL of the holder's QEMU; next ack after ${ms ?? '—'} ms`, at, at, { measuredMs: ms });
        if (ms !== null) res.failoverMs.push({ kind: 'VM power cut', ms });
      }
    }
  } else if (o.scenario === 'zombie') {
    await sleep(5000);
    const h = await waitHolder(60000);
    if (!h) res.harnessErrors.push('zombie: no holder within 60 s');
    else {
      // Inside a transaction: ask for the large one, stop at its first row.
      const inTxn = lab.waitEvent((n, e) => n === h && e.ev === 'bulk-begin', 60000);
      await lab.signalWorker(h, 'SIGUSR2');
      const ev = await inTxn;
      // The stop must land inside the transaction: a bulk-end (or an ack) of that operation before
      // the SIGSTOP took effect means the test proved nothing (and the check would misfire).
      let finishedFirst = false;
      const offEnd = lab.on((n, e) => {
        if (n === h && (e.ev === 'bulk-end' || e.ev === 'ack') && ev && String(e.id) === String(ev.e.id)) finishedFirst = true;
      });
      await lab.signalWorker(h, 'SIGSTOP');
      const pausedAt = Date.now();
      await sleep(2000); // events written before the stop are still in flight from the guest
      offEnd();
      if (!ev) res.harnessErrors.push('zombie: the holder never began the large transaction');
      else if (finishedFirst) res.harnessErrors.push(`zombie: ${ev.e.id} finished its transaction before the SIGSTOP took effect`);
      const holdMs = LAB_TIMING.leaseTtlMs + LAB_TIMING.safetyMarginMs + 10000;
      const other = await lab.waitEvent((n, e) => n !== h && e.ev === 'ack', holdMs);
      await sleep(Math.max(0, pausedAt + holdMs - Date.now()));
      await lab.signalWorker(h, 'SIGCONT');
      const resumedAt = Date.now();
      record('pause', 'pause-holder-mid-txn', h.nodeId, `SIGSTOP inside the large transaction for ${holdMs} ms (> TTL ${LAB_TIMING.leaseTtlMs}); another node acked after ${other ? other.e.at! - pausedAt : '—'} ms`,
        pausedAt, resumedAt, { opId: ev ? String(ev.e.id) : undefined });
      res.zombie = { node: h.nodeId, pausedAt, resumedAt, opId: ev ? String(ev.e.id) : null, fence: null };
    }
  } else if (o.scenario === 'stale-knfsd') {
    await staleKnfsdCycles();
  } else if (o.scenario === 'chaos') {
    const kinds = ['kill-holder', 'pause-holder', 'etcd-cut', 'nfs-restart', 'nfs-pause-short', 'nfs-pause-long'];
    let k = 0;
    while (Date.now() < endAt - 20000) {
      await sleep(prng.int(3000, 8000));
      const type = kinds[(k++ + prng.int(0, 0)) % kinds.length];
      try {
        await chaosFault(type);
      } catch (err) {
        res.harnessErrors.push(`${type}: ${(err as Error).message}`);
      }
    }
  }
  if (Date.now() < endAt) await sleep(endAt - Date.now());
  return res;

  /**
   * Each cycle: the first node writes alone (it holds the lease, committing every ~50 ms plus TCG);
   * another node's worker starts, so that it opens the file (read-only, then read-write for its
   * first write, which takes the lease over) while those commits land; it writes a few times and
   * is stopped gracefully. Every second cycle the first node's VM starts afresh too (worker
   * stopped, remounted, started just before the other's), as both did at the start of the seed-86
   * run. A stale view shows as SQLITE_HA_STALE_VIEW in the history (typed, not committed) or,
   * without fix #1, as lost acknowledged writes / a failed integrity check.
   */
  async function staleKnfsdCycles(): Promise<void> {
    const writer = lab.nodes[0];
    const others = lab.nodes.slice(1);
    for (let cycle = 1; cycle <= 200 && Date.now() < endAt - 15000; cycle++) {
      const n = others[(cycle - 1) % others.length];
      const both = cycle % 2 === 0;
      try {
        if (both) {
          await lab.stopWorker(writer, LAB_TIMING.acquireTimeoutMs);
          await lab.remount(writer.vm);
        } else if (!(await lab.waitEvent((x, e) => x === writer && e.ev === 'ack', 60000))) {
          // The first node commits again before the other opens (it may have lost the lease to it).
          throw new Error(`${writer.nodeId} wrote nothing for 60 s`);
        }
        // The other opens the file as a client that has not seen it (as c2 in the seed-86 run):
        // the remount gives back the client's delegations and drops its cached pages and attributes.
        await lab.remount(n.vm);
      } catch (err) {
        res.harnessErrors.push(`stale-knfsd cycle ${cycle}: ${(err as Error).message}`);
        return;
      }
      const acks = { n: 0 };
      const off2 = lab.on((x, e) => {
        if (x === n && e.ev === 'ack') acks.n++;
      });
      const at = Date.now();
      if (both) await lab.startWorker(writer, workerCfg(writer));
      await lab.startWorker(n, workerCfg(n));
      const ready = await lab.waitEvent((x, e) => x === n && e.ev === 'ready', 120000);
      // Three acks, or a bounded wait: a stale view gives the lease back within seconds (3 reopens, 1 s).
      const until = Date.now() + 30000;
      while (acks.n < 3 && Date.now() < until && n.running) await sleep(200);
      off2();
      await lab.stopWorker(n, LAB_TIMING.acquireTimeoutMs);
      record('open', both ? 'both-fresh' : 'open-during-commits', `${n.nodeId}@${n.vm}`,
        `${both ? `${writer.nodeId} and ${n.nodeId} started afresh` : `worker started while ${writer.nodeId} committed`}; ` +
        `ready after ${ready ? ready.e.at! - at : '—'} ms; ${acks.n} ack(s) before the stop`, at, Date.now());
    }
  }

  async function chaosFault(type: string): Promise<void> {
    const ttl = LAB_TIMING.leaseTtlMs;
    if (type === 'kill-holder') return killHolder();
    if (type === 'pause-holder') {
      const h = await waitHolder(30000);
      if (!h) return;
      await lab.signalWorker(h, 'SIGSTOP');
      const at = Date.now();
      await sleep(ttl + LAB_TIMING.safetyMarginMs + 2000);
      await lab.signalWorker(h, 'SIGCONT');
      record('pause', 'pause-holder', h.nodeId, `SIGSTOP for ${Date.now() - at} ms`, at, Date.now());
      return;
    }
    if (type === 'etcd-cut') {
      const h = (await waitHolder(30000)) ?? lab.nodes[0];
      const relay = lab.relays.get(h.vm)!;
      relay.cut();
      const at = Date.now();
      await sleep(ttl + 5000);
      relay.heal();
      record('partition', 'etcd-cut', `${h.nodeId}@${h.vm}`, `VM cut off from etcd (NFS still reachable) for ${Date.now() - at} ms`, at, Date.now());
      return;
    }
    const g = lab.ganesha;
    const vm = lab.vms.get('nfsd');
    if (type === 'nfs-restart') {
      const at = Date.now();
      if (g) await g.restart();
      else if (vm) {
        // knfsd: restart the server threads (the VM and its disk stay).
        await lab.guestExec('nfsd', ['/bin/sh', '-c', 'rpc.nfsd 0; sleep 1; rpc.nfsd -N 3 -V 4 8']);
      }
      record('nfs', 'nfs-server-restart', g ? 'ganesha' : 'knfsd', 'NFS server killed and started again (its open/lock state lost)', at, Date.now());
      return;
    }
    const holdMs = type === 'nfs-pause-short' ? Math.round(ttl / 3) : ttl + 5000;
    const at = Date.now();
    if (g) g.pause();
    else vm?.pause();
    await sleep(holdMs);
    if (g) g.resume();
    else vm?.resume();
    record('nfs', type, g ? 'ganesha' : 'knfsd', `NFS server stopped (SIGSTOP) for ${holdMs} ms (${holdMs < ttl ? 'shorter' : 'longer'} than the lease)`, at, Date.now());
  }
}
