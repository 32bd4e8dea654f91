/**
 * The demo's timeline: start the nodes, let them write, SIGKILL the lease holder part-way
 * (failover: kill → the next acknowledged write by another node), restart it, then SIGTERM the
 * holder (graceful hand-over: its close() releases the lease → the next node writes), restart it,
 * and stop everything at the end. Every wait is bounded in time; a Ctrl-C (the abort signal)
 * jumps straight to stopping the nodes.
 */
import type { HandoverRecord } from '../../src/coordinator/etcd/keys';
import type { DemoCoordinator } from './cluster';
import { DemoNode, Fleet, WorkloadEvent, waitAll } from './nodes';
import type { Reporter } from './view';

export interface ScenarioSettings {
  nodes: number;
  durationMs: number;
  leaseTtlMs: number;
  acquireTimeoutMs: number;
  dbName: string;
}

export interface FailoverResult {
  node: string;
  pid: number | null;
  fence: number | null;
  killedAt: number;
  /** The killed node's own last word was `acquired`: it held the lease when it died. */
  wasHolder: boolean;
  /** Who held the lease next, and when (ms after the kill). */
  takeoverBy: string | null;
  takeoverFence: number | null;
  takeoverMs: number | null;
  /** Kill → first acknowledged write by another node. */
  failoverMs: number | null;
  firstWriteBy: string | null;
  /** etcd's hand-over record for the takeover: `expired` means the dead holder's lease ran out. */
  cause: HandoverRecord['cause'] | null;
  /** A real failover: the holder died and another node wrote after its lease ran out. */
  confirmed: boolean;
  restartedAs: string | null;
}

export interface HandoverResult {
  node: string;
  fence: number | null;
  signalledAt: number;
  /** SIGTERM → the node reported `released` (null: it had already passed the lease on). */
  releasedMs: number | null;
  /** SIGTERM → first acknowledged write by another node. */
  handoverMs: number | null;
  nextWriter: string | null;
  exitCode: number | null;
  /** Exited 0 without holding the lease: close() let go of it. */
  clean: boolean;
  /** etcd's record of the next acquisition: `released` is the graceful path, `expired` means close() did not let go. */
  cause: HandoverRecord['cause'] | null;
  restartedAs: string | null;
}

export interface ScenarioResult {
  startedAt: number;
  endedAt: number;
  failover: FailoverResult | null;
  failoverAttempts: FailoverResult[];
  handover: HandoverResult | null;
  interrupted: boolean;
  problems: string[];
  /** Nodes that did not stop within the grace time after SIGTERM at the end, and were SIGKILLed. */
  killedAtStop: string[];
}

const STARTUP_MS = 20000;
const PROGRESS_MS = 2000;
const FAILOVER_TRIES = 2;

export async function runScenario(
  fleet: Fleet,
  coord: DemoCoordinator,
  s: ScenarioSettings,
  report: Reporter,
  abort: AbortSignal,
): Promise<ScenarioResult> {
  const result: ScenarioResult = {
    startedAt: Date.now(), endedAt: 0, failover: null, failoverAttempts: [], handover: null,
    interrupted: false, problems: [], killedAtStop: [],
  };
  const stopWatching = watch(fleet, report);
  const progress = setInterval(() => report.progress(progressLine(fleet)), PROGRESS_MS);
  try {
    for (let slot = 1; slot <= s.nodes; slot++) fleet.start(slot);
    report.line(`started ${s.nodes} node processes (${fleet.nodes.map((n) => `${n.id} pid ${n.pid}`).join(', ')})`);

    const first = await nextEvent(fleet, (e) => e.op === 'append' && e.ok === true, STARTUP_MS, abort, () => fleet.live().length === 0);
    if (abort.aborted) return result;
    if (!first) {
      result.problems.push(`no write was acknowledged within ${STARTUP_MS / 1000} s of starting the nodes (see the node logs)`);
      return result;
    }
    report.line(`first write acknowledged: ${first.node.id} seq ${first.e.seq} (lease fence ${first.node.fence ?? '?'})`);
    // The run's clock starts at the first write: node start-up time (slow on a busy machine) is not writing time.
    const writingFrom = Date.now();

    // Failover: SIGKILL the holder part-way through, once every node is up to take over.
    if (!(await sleepUntil(writingFrom + Math.max(2000, 0.3 * s.durationMs), abort))) return result;
    await allStarted(fleet, STARTUP_MS, abort);
    for (let attempt = 1; attempt <= FAILOVER_TRIES && !abort.aborted; attempt++) {
      const f = await failover(fleet, coord, s, report, abort);
      if (!f) {
        result.problems.push('no node held the lease when the failover was due');
        break;
      }
      result.failoverAttempts.push(f);
      if (f.confirmed) {
        result.failover = f;
        break;
      }
      if (attempt < FAILOVER_TRIES) report.line('that was no failover (see above); killing the holder again');
    }
    if (abort.aborted) return result;
    if (!result.failover) result.problems.push('no failover was observed');

    // Graceful hand-over: SIGTERM the holder; close() releases the lease.
    if (!(await sleepUntil(Math.max(writingFrom + 0.6 * s.durationMs, Date.now() + 1000), abort))) return result;
    await allStarted(fleet, STARTUP_MS, abort); // the restarted node too, so the lease has somewhere to go
    result.handover = await gracefulHandover(fleet, coord, s, report, abort);
    if (abort.aborted) return result;
    if (!result.handover) result.problems.push('no node held the lease when the graceful hand-over was due');

    await sleepUntil(Math.max(writingFrom + s.durationMs, Date.now() + 1000), abort);
    return result;
  } finally {
    clearInterval(progress);
    result.interrupted = abort.aborted;
    const graceMs = abort.aborted ? 3000 : s.acquireTimeoutMs + 3000;
    report.line(`stopping ${fleet.live().length} nodes (SIGTERM: each finishes its write, closes and releases the lease)`);
    result.killedAtStop = await fleet.stopAll(graceMs);
    if (result.killedAtStop.length > 0) {
      report.line(`SIGKILLed ${result.killedAtStop.join(', ')}: not stopped within ${graceMs / 1000} s`);
    }
    report.line(`all nodes stopped; ${fleet.totalAcks()} writes acknowledged in total`);
    stopWatching();
    result.endedAt = Date.now();
  }
}

/** One SIGKILL of the holder, measured; restarts the killed node in its slot. */
async function failover(
  fleet: Fleet, coord: DemoCoordinator, s: ScenarioSettings, report: Reporter, abort: AbortSignal,
): Promise<FailoverResult | null> {
  const caught = await catchHolder(fleet, coord, s, abort);
  if (!caught) return null;
  const { node, fence } = caught;
  // Frozen since caught.frozenAt: to the cluster it died then.
  const killedAt = caught.frozenAt;
  node.signal('SIGKILL');
  // Registered in the same tick as the kill: no event can slip in between.
  const writeWait = nextEvent(
    fleet, (e, n) => n !== node && e.op === 'append' && e.ok === true && e.at >= killedAt,
    s.leaseTtlMs * 3 + s.acquireTimeoutMs + 5000, abort,
  );
  report.line(
    `SIGKILL ${node.id} (pid ${node.pid}): ${caught.how} it holds the write lease (fence ${fence ?? '?'})` +
      ' — the others must wait for its lease to run out',
  );
  const write = await writeWait;
  await waitAll([node], 5000); // its last output, to know what it said before dying
  const takeover = fleet.acquisitions().find((a) => a.node !== node.id && a.at >= killedAt) ?? null;
  const record = takeover ? await coord.handoverRecord(s.dbName, takeover.fence) : null;
  const wasHolder = node.lastLease === 'acquired';
  const f: FailoverResult = {
    node: node.id, pid: node.pid, fence, killedAt, wasHolder,
    takeoverBy: takeover?.node ?? null,
    takeoverFence: takeover?.fence ?? null,
    takeoverMs: takeover ? Math.max(0, takeover.at - killedAt) : null,
    failoverMs: write ? Math.max(0, write.e.at - killedAt) : null,
    firstWriteBy: write?.node.id ?? null,
    cause: record?.cause ?? null,
    confirmed: false,
    restartedAs: null,
  };
  // With etcd the hand-over record says how the lease changed hands; without, the nodes' own words.
  f.confirmed = wasHolder && write !== null && (coord.kind === 'lockfile' || record === null || record.cause === 'expired');
  if (write) {
    report.line(
      (takeover ? `${takeover.node} took the lease over ${sec(f.takeoverMs)} after the kill (fence ${takeover.fence}` +
        `${record ? `, etcd: previous lease ${record.cause}` : ''}); ` : '') +
        `first write acknowledged by another node (${write.node.id}) ${sec(f.failoverMs)} after the kill`,
    );
  } else {
    report.line(`no other node wrote within ${((s.leaseTtlMs * 3 + s.acquireTimeoutMs + 5000) / 1000).toFixed(0)} s of the kill`);
  }
  if (!wasHolder) report.line(`${node.id} had already let go of the lease when it died (last word: ${node.lastLease ?? 'none'})`);
  else if (record && record.cause !== 'expired') report.line(`etcd recorded the takeover as ${record.cause}, not expired`);
  if (!abort.aborted) {
    const again = fleet.restart(node);
    f.restartedAs = again.id;
    report.line(`${node.id} restarted as ${again.id} (pid ${again.pid}; a new process, so a new node id)`);
  }
  return f;
}

/** SIGTERM the holder and measure until another node writes; restarts it in its slot. */
async function gracefulHandover(
  fleet: Fleet, coord: DemoCoordinator, s: ScenarioSettings, report: Reporter, abort: AbortSignal,
): Promise<HandoverResult | null> {
  const caught = await catchHolder(fleet, coord, s, abort);
  if (!caught) return null;
  const { node, fence } = caught;
  const signalledAt = caught.frozenAt;
  node.signal('SIGTERM'); // delivered when it continues
  node.signal('SIGCONT');
  const writeWait = nextEvent(
    fleet, (e, n) => n !== node && e.op === 'append' && e.ok === true && e.at >= signalledAt,
    s.acquireTimeoutMs + 5000, abort,
  );
  const releaseWait = nextEvent(fleet, (e, n) => n === node && e.op === 'lease' && e.event === 'released', s.acquireTimeoutMs + 5000, abort, () => !node.running);
  report.line(
    `SIGTERM ${node.id} (pid ${node.pid}): ${caught.how} it holds the lease (fence ${fence ?? '?'}); ` +
      'it finishes its write and close() releases the lease',
  );
  const [write, released] = await Promise.all([writeWait, releaseWait]);
  await waitAll([node], s.acquireTimeoutMs + s.leaseTtlMs + 6000);
  const next = fleet.acquisitions().find((a) => a.node !== node.id && a.at >= signalledAt) ?? null;
  const record = next ? await coord.handoverRecord(s.dbName, next.fence) : null;
  const h: HandoverResult = {
    node: node.id, fence, signalledAt,
    releasedMs: released ? Math.max(0, released.e.at - signalledAt) : null,
    handoverMs: write ? Math.max(0, write.e.at - signalledAt) : null,
    nextWriter: write?.node.id ?? null,
    exitCode: node.exit?.code ?? null,
    clean: node.exit?.code === 0 && node.lastLease !== 'acquired' && node.lastLease !== 'lost',
    cause: record?.cause ?? null,
    restartedAs: null,
  };
  report.line(
    `${node.id} ${h.releasedMs !== null ? `released the lease ${sec(h.releasedMs)} after SIGTERM` : 'had passed the lease on already'}` +
      `, exit code ${h.exitCode ?? 'none'}; ` +
      (write ? `${write.node.id} wrote ${sec(h.handoverMs)} after the SIGTERM` : 'no other node wrote afterwards') +
      (record ? ` (etcd: previous lease ${record.cause})` : ''),
  );
  if (gracefulExpired(h)) {
    report.line(`${node.id} did not release the lease on close(): the next node waited for it to expire`);
  } else if (!h.clean) {
    report.line(`${node.id} exited without reporting the release (its last lease event: ${node.lastLease ?? 'none'})`);
  }
  if (!abort.aborted) {
    const again = fleet.restart(node);
    h.restartedAs = again.id;
    report.line(`${node.id} restarted as ${again.id} (pid ${again.pid})`);
  }
  return h;
}

/** The graceful hand-over fell back to lease expiry (etcd's record says so; lockfile: the node never let go). */
export function gracefulExpired(h: HandoverResult): boolean {
  return h.cause !== null ? h.cause === 'expired' : !h.clean;
}

/**
 * Catches the lease holder: picks a candidate, freezes it with SIGSTOP (so it cannot let go while
 * being checked), and asks etcd whether it holds the lease (lockfile: its own output, read to the
 * end). A node that does not hold it is let go (SIGCONT) and the next acquisition is tried. The
 * caller SIGKILLs the frozen holder, or sends SIGTERM and SIGCONT.
 */
async function catchHolder(
  fleet: Fleet, coord: DemoCoordinator, s: ScenarioSettings, abort: AbortSignal,
): Promise<{ node: DemoNode; fence: number | null; frozenAt: number; how: string } | null> {
  const deadline = Date.now() + 10000;
  for (let attempt = 0; attempt < 20 && Date.now() < deadline && !abort.aborted; attempt++) {
    const candidate = await pickHolder(fleet, abort, attempt === 0);
    if (!candidate) return null;
    const node = candidate.node;
    node.signal('SIGSTOP');
    const frozenAt = Date.now();
    const etcdSays = await coord.currentHolder(s.dbName);
    if (etcdSays !== undefined) {
      if (etcdSays?.node === node.id) return { node, fence: etcdSays.fence, frozenAt, how: 'etcd confirms' };
    } else {
      await new Promise((r) => setTimeout(r, 100)); // the frozen node's last lines arrive
      if (node.running && node.lastLease === 'acquired') return { node, fence: node.fence, frozenAt, how: 'its own output says' };
    }
    node.signal('SIGCONT');
  }
  return null;
}

/**
 * The node to signal. A steady holder (lockfile, or a lone writer) is taken at once; while the
 * lease moves between nodes after nearly every write (etcd), the demo waits for a fresh
 * acquisition and acts on it within milliseconds, so it hits the node that holds the lease now.
 */
async function pickHolder(fleet: Fleet, abort: AbortSignal, steadyOk: boolean): Promise<{ node: DemoNode; fence: number | null } | null> {
  const steady = fleet.holder();
  if (steadyOk && steady && Date.now() - steady.holdingSince >= 300) return { node: steady, fence: steady.fence };
  const fresh = await nextEvent(
    fleet, (e, n) => e.op === 'lease' && e.event === 'acquired' && n.running && n.holding && Date.now() - e.at <= 150,
    3000, abort,
  );
  if (fresh) return { node: fresh.node, fence: fresh.node.fence };
  const any = fleet.holder();
  return any ? { node: any, fence: any.fence } : null;
}

/** Prints what needs no prompting: lost leases, failed opens, nodes that died on their own. */
function watch(fleet: Fleet, report: Reporter): () => void {
  const onEvent = (e: WorkloadEvent, n: DemoNode) => {
    if (e.op === 'lease' && e.event === 'lost') report.line(`${n.id} lost the lease: ${e.code} ${e.message ?? ''}`.trim());
    if (e.op === 'open' && e.ok === false) report.line(`${n.id} could not open the database: ${e.code} ${e.message ?? ''}`);
    if (e.op === 'count' && e.code === 'WORKLOAD_STALE_READ') report.line(`${n.id} STALE READ: ${e.message}`);
  };
  const onExit = (n: DemoNode) => {
    if (!n.signalled) report.line(`${n.id} exited on its own (${n.exit?.signal ?? `code ${n.exit?.code}`}); see ${n.stderrFile}`);
  };
  const onSpawnError = (err: Error, n: DemoNode) => report.line(`${n.id} could not start: ${err.message}`);
  fleet.on('event', onEvent);
  fleet.on('exit', onExit);
  fleet.on('spawn-error', onSpawnError);
  return () => {
    fleet.off('event', onEvent);
    fleet.off('exit', onExit);
    fleet.off('spawn-error', onSpawnError);
  };
}

function progressLine(fleet: Fleet): string {
  const starting = fleet.live().filter((n) => !n.started).length;
  if (fleet.totalAcks() === 0) {
    return `waiting for the first write (${fleet.live().length - starting} of ${fleet.live().length} node processes up)`;
  }
  const per = fleet.nodes.filter((n) => n.running || n.ackCount > 0).map((n) => `${n.id} ${n.ackCount}`).join(', ');
  const holder = fleet.holder();
  const failed = fleet.nodes.reduce((sum, n) => sum + [...n.failures.values()].reduce((a, b) => a + b, 0), 0);
  return `${fleet.totalAcks()} writes acknowledged (${per}); ` +
    `lease: ${holder ? `${holder.id}, fence ${holder.fence}` : 'free'}; ${fleet.handovers()} hand-overs` +
    (failed > 0 ? `; ${failed} write${failed === 1 ? '' : 's'} not done (e.g. lease wait timed out)` : '');
}

/**
 * The first event matching pred from now on, or null after ms, on abort, or when `giveUp` turns
 * true (checked on every event and exit).
 */
export function nextEvent(
  fleet: Fleet,
  pred: (e: WorkloadEvent, n: DemoNode) => boolean,
  ms: number,
  abort: AbortSignal,
  giveUp: () => boolean = () => false,
): Promise<{ e: WorkloadEvent; node: DemoNode } | null> {
  return new Promise((resolve) => {
    const finish = (v: { e: WorkloadEvent; node: DemoNode } | null) => {
      clearTimeout(timer);
      fleet.off('event', onEvent);
      fleet.off('exit', onExit);
      abort.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const onEvent = (e: WorkloadEvent, n: DemoNode) => {
      if (pred(e, n)) finish({ e, node: n });
      else if (giveUp()) finish(null);
    };
    const onExit = () => {
      if (giveUp()) finish(null);
    };
    const onAbort = () => finish(null);
    const timer = setTimeout(() => finish(null), ms);
    fleet.on('event', onEvent);
    fleet.on('exit', onExit);
    abort.addEventListener('abort', onAbort);
    if (abort.aborted) finish(null);
  });
}

/** Waits (at most ms) until every running node process has reported `start`. */
async function allStarted(fleet: Fleet, ms: number, abort: AbortSignal): Promise<void> {
  const pending = () => fleet.live().some((n) => !n.started);
  if (!pending()) return;
  await nextEvent(fleet, () => !pending(), ms, abort, () => !pending());
}

/** Sleeps until the wall-clock time `at`; false when aborted first. */
function sleepUntil(at: number, abort: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (abort.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      abort.removeEventListener('abort', onAbort);
      resolve(true);
    }, Math.max(0, at - Date.now()));
    abort.addEventListener('abort', onAbort, { once: true });
  });
}

export function sec(ms: number | null): string {
  return ms === null ? '-' : `${(ms / 1000).toFixed(2)} s`;
}
