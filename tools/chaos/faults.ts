/**
 * Faults: a schedule drawn from the seed (which faults, in what order, how long each lasts, how
 * long the quiet gap before it), and the runner that injects and undoes them one at a time.
 *
 *   kill       kill-holder       SIGKILL the lease holder; restart it (new incarnation) after holdMs
 *              kill-mid-commit   make a node run the large transaction (SIGUSR2) and SIGKILL it
 *                                inside it: in the body or right after it, i.e. during COMMIT
 *   pause      pause-holder      SIGSTOP the holder past its TTL, then SIGCONT
 *              pause-mid-txn     SIGSTOP a node inside the large transaction past its TTL, SIGCONT
 *   partition  partition-holder  cut the holder off from etcd (it keeps the file), then heal
 *              partition-node    the same for a node picked by the seed
 *   etcd       etcd-kill-leader  SIGKILL the etcd leader, restart it with its data after holdMs
 *              etcd-pause-member SIGSTOP an etcd member (leader or follower), then SIGCONT
 *              etcd-restart-tls  SIGKILL a member (leader or follower) of the mutual-TLS cluster,
 *                                issue it a new server certificate (new key, same CA), restart it
 *   storage    stale-mover       SIGKILL the holder (an unclean hand-over), then SIGSTOP its successor
 *                                in the middle of its takeover (lockless: waiting out the old lease or
 *                                moving the file) past its own TTL; a third node takes over; SIGCONT
 *              mount-missing     restart a node on the path its mount point has when the filesystem
 *                                is not mounted (an empty directory): open() must refuse, creating nothing
 *              mixed-mounts      restart a node in the other storage mode (as if it mounted the export
 *                                with other lock options): open() must refuse it
 *
 * Targets that depend on the run (who holds the lease, who leads etcd) are looked up at injection
 * time; everything else is fixed by the seed. Every fault is undone before the next one starts and
 * undoAll() puts everything back at the end.
 */
import * as fs from 'fs';
import type { ChaosEtcd } from './cluster';
import type { ChaosNetwork } from './netns';
import type { WorkerConfig } from './node-worker';
import type { NodeManager } from './nodes';
import { Prng } from './prng';

export const FAULT_KINDS = ['kill', 'pause', 'partition', 'etcd', 'storage'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const FAULT_TYPES = {
  kill: ['kill-holder', 'kill-mid-commit'],
  pause: ['pause-holder', 'pause-mid-txn'],
  partition: ['partition-holder', 'partition-node'],
  etcd: ['etcd-kill-leader', 'etcd-pause-member', 'etcd-restart-tls'],
  storage: ['stale-mover', 'mount-missing', 'mixed-mounts'],
} as const;
export type FaultType = (typeof FAULT_TYPES)[FaultKind][number];

export interface PlannedFault {
  index: number;
  kind: FaultKind;
  type: FaultType;
  /** Quiet time before the fault. */
  gapMs: number;
  /** How long the fault lasts before it is undone. */
  holdMs: number;
  /** kill-mid-commit: wait this long after the trigger event before SIGKILL. */
  delayMs: number;
  /** kill-mid-commit: kill after bulk-begin (body) or after bulk-end (COMMIT under way). */
  phase: 'body' | 'commit';
  /** etcd-pause-member, etcd-restart-tls: the leader, or a follower. */
  leader: boolean;
  /** Picks a node or member when the target is not "the holder"/"the leader", or none exists. */
  roll: number;
}

export interface FaultRecord {
  index: number;
  kind: FaultKind;
  type: FaultType;
  target: string;
  detail: string;
  /** Wall-clock ms when the fault took effect, and when it was undone. */
  injectAt: number;
  healAt: number;
  /** First write acknowledged after healAt, as seen live (null: none within the recovery bound). */
  ackAfterHealAt: number | null;
  /** Set when the fault could not be injected as planned (it still counts only if injected). */
  error?: string;
  injected: boolean;
  /** kill-mid-commit / pause-mid-txn: the operation running the large transaction. */
  opId?: string;
}

export function parseFaultKinds(spec: string): FaultKind[] {
  const out: FaultKind[] = [];
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (raw === 'none') continue;
    if (!(FAULT_KINDS as readonly string[]).includes(raw)) {
      throw new Error(`unknown fault kind '${raw}'; expected a comma list of ${FAULT_KINDS.join(', ')} (or none)`);
    }
    if (!out.includes(raw as FaultKind)) out.push(raw as FaultKind);
  }
  return out;
}

/** Rough length of a fault including the gap and recovery, for fitting a schedule into the run. */
export function estimateMs(f: PlannedFault, ttlMs: number): number {
  const recovery = f.kind === 'kill' || f.type === 'stale-mover' ? ttlMs + 1000 : 1000;
  // stale-mover first waits for the dead holder's lease to expire; the refusal faults start the
  // node twice (refused, then normal) and wait for each.
  const before = f.type === 'stale-mover' ? ttlMs + 500 : f.type === 'mount-missing' || f.type === 'mixed-mounts' ? 2500 : 0;
  return f.gapMs + before + f.holdMs + recovery;
}

/**
 * The schedule: each enabled kind once first (in a seeded order), then seeded picks, until the
 * estimated time fills durationMs. Variants of a kind take turns, starting at a seeded one.
 */
export function planSchedule(seed: number, kinds: FaultKind[], durationMs: number, ttlMs: number): PlannedFault[] {
  const prng = Prng.derive(seed, 'faults');
  const plan: PlannedFault[] = [];
  if (kinds.length === 0) return plan;
  const variantTurn = new Map<FaultKind, FaultType[]>();
  for (const k of kinds) variantTurn.set(k, prng.shuffle(FAULT_TYPES[k] as readonly FaultType[]));
  const order = prng.shuffle(kinds);
  let total = 0;
  for (let i = 0; i < 200; i++) {
    const kind = i < order.length ? order[i] : prng.pick(kinds);
    const turn = variantTurn.get(kind)!;
    const type = turn.shift()!;
    turn.push(type);
    const f: PlannedFault = {
      index: i + 1,
      kind,
      type,
      gapMs: prng.int(800, 1800),
      holdMs: holdFor(type, ttlMs, prng),
      phase: prng.chance(0.5) ? 'body' : 'commit',
      delayMs: 0,
      leader: prng.chance(0.5),
      roll: prng.next(),
    };
    // The body of the large transaction takes ~100 ms, its COMMIT ~80 ms (4,000 rows of 1 KiB):
    // kill somewhere in the body, or within a few ms of COMMIT starting.
    f.delayMs = f.phase === 'body' ? prng.int(0, 60) : prng.int(0, 5);
    const est = estimateMs(f, ttlMs);
    if (i >= order.length && total + est > durationMs) break;
    plan.push(f);
    total += est;
  }
  return plan;
}

function holdFor(type: FaultType, ttlMs: number, prng: Prng): number {
  switch (type) {
    case 'kill-holder':
    case 'kill-mid-commit':
      return prng.int(300, 1200); // node down until restarted
    case 'pause-holder':
    case 'pause-mid-txn':
      return ttlMs + prng.int(800, 2000); // beyond the TTL: someone else takes over
    case 'partition-holder':
    case 'partition-node':
      return ttlMs + prng.int(1000, 2500);
    case 'etcd-kill-leader':
      return prng.int(1200, 2500);
    case 'etcd-pause-member':
      return prng.int(1500, 3000);
    case 'etcd-restart-tls':
      return prng.int(800, 2000); // down, then back with a rotated certificate
    case 'stale-mover':
      return 2 * ttlMs + prng.int(1000, 2500); // the successor's own lease runs out, a third node waits it out
    case 'mount-missing':
    case 'mixed-mounts':
      return prng.int(300, 800); // how long the refused node stays down
  }
}

/** What the storage faults need to know about where the database lives. */
export interface StorageFaultContext {
  /** The storage mode every node runs in. */
  locks: 'trusted' | 'none';
  /** Node i's database path when its filesystem is not mounted (an empty directory stands in). */
  unmountedPath(i: number): string;
}

export interface FaultContext {
  nodes: NodeManager;
  storage: StorageFaultContext;
  net: ChaosNetwork;
  etcd: ChaosEtcd;
  log: (msg: string) => void;
  /** How long to wait for a write to succeed after a fault is undone. */
  recoveryBoundMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

export class FaultRunner {
  readonly records: FaultRecord[] = [];
  /** Faults of the plan that did not fit in the time left. */
  skipped: PlannedFault[] = [];
  private pausedMembers = new Set<number>();
  private killedMembers = new Set<number>();

  constructor(private readonly ctx: FaultContext) {}

  /** Runs the plan until endAt; a fault starts only if it (with its recovery) should end by endAt. */
  async run(plan: PlannedFault[], endAt: number, ttlMs: number): Promise<FaultRecord[]> {
    for (let k = 0; k < plan.length; k++) {
      const f = plan[k];
      if (Date.now() + estimateMs(f, ttlMs) > endAt) {
        this.skipped = plan.slice(k);
        break;
      }
      await sleep(f.gapMs);
      // A node that died on its own is restarted so the workload continues (it is logged).
      this.ctx.nodes.reviveAll();
      const rec = await this.inject(f, ttlMs);
      this.records.push(rec);
      this.ctx.log(
        `fault ${f.index} ${f.type} → ${rec.target}${rec.injected ? '' : ' (NOT injected)'}: ${rec.detail}` +
          (rec.error ? ` [${rec.error}]` : ''),
      );
      rec.ackAfterHealAt = await this.ctx.nodes.waitAckAfter(rec.healAt, this.ctx.recoveryBoundMs);
      if (rec.ackAfterHealAt === null) this.ctx.log(`fault ${f.index}: no write succeeded within ${this.ctx.recoveryBoundMs} ms of healing`);
    }
    return this.records;
  }

  /** The node to hit: the lease holder per etcd (looked for up to 1.5 s), else one picked by roll. */
  private async holderOrPick(roll: number): Promise<{ index: number; holder: boolean }> {
    const { nodes, etcd } = this.ctx;
    const until = Date.now() + 1500;
    for (let tries = 0; tries < 30 && Date.now() < until; tries++) {
      const h = await etcd.holder();
      if (h) {
        const idx = nodes.byPid(h.pid) ?? nodes.byNodeId(h.node);
        if (idx !== null && nodes.isAlive(idx) && !nodes.node(idx).paused) return { index: idx, holder: true };
      }
      await sleep(50);
    }
    return { index: this.pick(roll), holder: false };
  }

  private pick(roll: number): number {
    const alive = this.ctx.nodes.nodes.filter((n) => this.ctx.nodes.isAlive(n.index)).map((n) => n.index);
    const from = alive.length > 0 ? alive : this.ctx.nodes.nodes.map((n) => n.index);
    return from[Math.min(from.length - 1, Math.floor(roll * from.length))];
  }

  private async inject(f: PlannedFault, ttlMs: number): Promise<FaultRecord> {
    const { nodes, net, etcd } = this.ctx;
    const rec: FaultRecord = {
      index: f.index, kind: f.kind, type: f.type, target: '', detail: '', injectAt: 0, healAt: 0,
      ackAfterHealAt: null, injected: false,
    };
    try {
      switch (f.type) {
        case 'kill-holder': {
          const t = await this.holderOrPick(f.roll);
          rec.target = nodes.node(t.index).nodeId;
          rec.injectAt = Date.now();
          await nodes.kill(t.index);
          rec.injected = true;
          rec.detail = `SIGKILL ${t.holder ? 'lease holder' : 'node (no holder found)'} pid ${nodes.node(t.index).pid}, restart after ${f.holdMs} ms`;
          await sleep(f.holdMs);
          nodes.start(t.index);
          rec.healAt = Date.now();
          break;
        }
        case 'kill-mid-commit':
        case 'pause-mid-txn': {
          const t = await this.holderOrPick(f.roll);
          const n = nodes.node(t.index);
          rec.target = n.nodeId;
          const trigger = f.type === 'pause-mid-txn' || f.phase === 'body' ? 'bulk-begin' : 'bulk-end';
          const seen = nodes.waitEvent(t.index, (e) => e.ev === trigger, 10000);
          nodes.signal(t.index, 'SIGUSR2');
          const ev = await seen;
          if (ev) rec.opId = String(ev.event.id);
          if (f.type === 'kill-mid-commit') {
            if (ev && f.delayMs > 0) await sleep(f.delayMs);
            rec.injectAt = Date.now();
            await nodes.kill(t.index);
            rec.injected = true;
            rec.detail = ev
              ? `SIGKILL ${f.delayMs} ms after ${trigger} of ${String(ev.event.id)} (${f.phase === 'body' ? 'in the transaction body' : 'during COMMIT'}), restart after ${f.holdMs} ms`
              : `large transaction not seen within 10 s; SIGKILL anyway, restart after ${f.holdMs} ms`;
            await sleep(f.holdMs);
            nodes.start(t.index);
          } else {
            rec.injectAt = Date.now();
            nodes.signal(t.index, 'SIGSTOP');
            rec.injected = true;
            rec.detail = ev
              ? `SIGSTOP inside the large transaction ${String(ev.event.id)} for ${f.holdMs} ms (TTL ${ttlMs} ms)`
              : `large transaction not seen within 10 s; SIGSTOP anyway for ${f.holdMs} ms`;
            await sleep(f.holdMs);
            nodes.signal(t.index, 'SIGCONT');
          }
          rec.healAt = Date.now();
          break;
        }
        case 'pause-holder': {
          const t = await this.holderOrPick(f.roll);
          rec.target = nodes.node(t.index).nodeId;
          rec.injectAt = Date.now();
          nodes.signal(t.index, 'SIGSTOP');
          rec.injected = true;
          rec.detail = `SIGSTOP ${t.holder ? 'lease holder' : 'node (no holder found)'} for ${f.holdMs} ms (TTL ${ttlMs} ms)`;
          await sleep(f.holdMs);
          nodes.signal(t.index, 'SIGCONT');
          rec.healAt = Date.now();
          break;
        }
        case 'partition-holder':
        case 'partition-node': {
          const t = f.type === 'partition-holder' ? await this.holderOrPick(f.roll) : { index: this.pick(f.roll), holder: false };
          rec.target = nodes.node(t.index).nodeId;
          rec.injectAt = Date.now();
          net.partition(t.index);
          rec.injected = true;
          rec.detail = `cut ${t.holder ? 'the lease holder' : 'a node'} off from etcd (it keeps the file) for ${f.holdMs} ms`;
          await sleep(f.holdMs);
          net.heal(t.index);
          rec.healAt = Date.now();
          break;
        }
        case 'etcd-kill-leader': {
          const leader = await this.findLeader();
          const m = leader ?? Math.floor(f.roll * etcd.size);
          rec.target = `etcd ${etcd.cluster.members[m].name}`;
          rec.injectAt = Date.now();
          this.killedMembers.add(m);
          await etcd.kill(m);
          rec.injected = true;
          rec.detail = `SIGKILL ${leader !== null ? 'the leader' : 'a member (no leader found)'}, restart after ${f.holdMs} ms`;
          await sleep(f.holdMs);
          await etcd.restart(m);
          this.killedMembers.delete(m);
          rec.healAt = Date.now();
          break;
        }
        case 'etcd-restart-tls': {
          const { member: m, leader } = await this.pickMember(f);
          rec.target = `etcd ${etcd.cluster.members[m].name}`;
          const before = await etcd.presentedSerial(m);
          rec.injectAt = Date.now();
          this.killedMembers.add(m);
          await etcd.kill(m);
          rec.injected = true;
          await sleep(f.holdMs);
          await etcd.restartWithNewCertificate(m);
          this.killedMembers.delete(m);
          rec.healAt = Date.now();
          const after = await etcd.presentedSerial(m);
          rec.detail = `SIGKILL ${m === leader ? 'the leader' : 'a follower'}, down ${f.holdMs} ms, restarted with a new ` +
            `TLS server certificate (serial ${before ?? '?'} -> ${after ?? '?'})`;
          if (!before || !after || before === after) rec.error = `certificate rotation not confirmed (serial ${before} -> ${after})`;
          break;
        }
        case 'etcd-pause-member': {
          const { member: m, leader } = await this.pickMember(f);
          rec.target = `etcd ${etcd.cluster.members[m].name}`;
          rec.injectAt = Date.now();
          this.pausedMembers.add(m);
          etcd.signal(m, 'SIGSTOP');
          rec.injected = true;
          rec.detail = `SIGSTOP ${m === leader ? 'the leader' : 'a follower'} for ${f.holdMs} ms`;
          await sleep(f.holdMs);
          etcd.signal(m, 'SIGCONT');
          this.pausedMembers.delete(m);
          rec.healAt = Date.now();
          break;
        }
        case 'stale-mover': {
          const t = await this.holderOrPick(f.roll);
          const old = nodes.node(t.index);
          await nodes.kill(t.index);
          // The successor holds once the dead lease expires (≤ TTL); catch it inside its takeover.
          let succ: number | null = null;
          const until = Date.now() + 2 * ttlMs + 3000;
          while (succ === null && Date.now() < until) {
            const h = await this.ctx.etcd.holder();
            const idx = h ? nodes.byPid(h.pid) ?? nodes.byNodeId(h.node) : null;
            if (idx !== null && idx !== t.index && nodes.isAlive(idx)) succ = idx;
            else await sleep(20);
          }
          nodes.start(t.index);
          if (succ === null) {
            rec.target = old.nodeId;
            rec.detail = `SIGKILL ${old.nodeId}; no successor took the lease within ${2 * ttlMs + 3000} ms: not injected`;
            rec.injectAt = rec.healAt = Date.now();
            break;
          }
          rec.target = nodes.node(succ).nodeId;
          rec.injectAt = Date.now();
          nodes.signal(succ, 'SIGSTOP');
          rec.injected = true;
          rec.detail = `SIGKILL holder ${old.nodeId}, then SIGSTOP its successor mid-takeover for ${f.holdMs} ms (TTL ${ttlMs} ms)`;
          await sleep(f.holdMs);
          nodes.signal(succ, 'SIGCONT');
          rec.healAt = Date.now();
          break;
        }
        case 'mount-missing':
        case 'mixed-mounts': {
          const i = this.pick(f.roll);
          const n = nodes.node(i);
          rec.target = n.nodeId;
          await nodes.kill(i);
          const other: 'trusted' | 'none' = this.ctx.storage.locks === 'none' ? 'trusted' : 'none';
          const override: Partial<WorkerConfig> = f.type === 'mount-missing'
            ? { db: this.ctx.storage.unmountedPath(i), expectLocks: undefined }
            : { locks: other, expectLocks: other };
          rec.injectAt = Date.now();
          nodes.start(i, override, true);
          rec.injected = true;
          const refused = await nodes.waitEvent(i, (e) => e.ev === 'fatal' || e.ev === 'ready', 20000);
          const want = f.type === 'mount-missing' ? 'SQLITE_HA_DATABASE_IDENTITY' : 'SQLITE_HA_MIXED_MODES';
          const what = f.type === 'mount-missing' ? `on ${override.db} (no filesystem mounted)` : `with locks: '${other}'`;
          if (refused?.event.ev === 'fatal' && refused.event.code === want) {
            rec.detail = `restarted ${n.nodeId} ${what}: refused (${want}); back to normal after ${f.holdMs} ms`;
          } else {
            rec.error = `restarted ${n.nodeId} ${what}: expected ${want}, got ${refused ? `${refused.event.ev} ${String(refused.event.code ?? '')} ${String(refused.event.message ?? '')}` : 'nothing within 20 s'}`;
          }
          if (f.type === 'mount-missing' && fs.existsSync(override.db as string)) {
            rec.error = `${rec.error ? `${rec.error}; ` : ''}open() created ${override.db} although etcd records the database`;
          }
          await nodes.kill(i);
          await sleep(f.holdMs);
          const back = nodes.waitEvent(i, (e) => e.ev === 'ready' || e.ev === 'fatal', 20000);
          nodes.start(i);
          await back; // running again (or its failure logged) before the next fault or the stop
          rec.healAt = Date.now();
          break;
        }
      }
    } catch (err) {
      rec.error = (err as Error).message.slice(0, 500);
      if (!rec.injectAt) rec.injectAt = Date.now();
      await this.undoAll();
      rec.healAt = Date.now();
    }
    return rec;
  }

  /** The leader when the fault asks for it and there is one, else another member by the roll. */
  private async pickMember(f: PlannedFault): Promise<{ member: number; leader: number | null }> {
    const leader = await this.findLeader();
    if (f.leader && leader !== null) return { member: leader, leader };
    const others = this.ctx.etcd.cluster.members.map((_, i) => i).filter((i) => i !== leader);
    return { member: others[Math.min(others.length - 1, Math.floor(f.roll * others.length))], leader };
  }

  private async findLeader(): Promise<number | null> {
    for (let tries = 0; tries < 10; tries++) {
      const l = await this.ctx.etcd.leader();
      if (l !== null) return l;
      await sleep(200);
    }
    return null;
  }

  /** Undoes whatever is still in effect: partitions, paused or dead nodes and etcd members. */
  async undoAll(): Promise<void> {
    const { nodes, net, etcd } = this.ctx;
    net.healAll();
    for (const m of this.pausedMembers) etcd.signal(m, 'SIGCONT');
    this.pausedMembers.clear();
    for (const m of [...this.killedMembers]) {
      await etcd.restart(m);
      this.killedMembers.delete(m);
    }
    nodes.reviveAll();
  }
}
