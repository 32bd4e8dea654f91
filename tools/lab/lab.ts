/**
 * The lab's machinery, scenario-agnostic: the run dir, etcd on the host loopback (one relay per VM
 * in front of it), the NFS server (ganesha on the host, or the kernel server in its own VM), the
 * client VMs with their agents, the chaos node workers inside them, and teardown on every path.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Cleanup } from '../chaos/cleanup';
import type { WorkerConfig } from '../chaos/node-worker';
import type { WorkerEvent } from '../chaos/nodes';
import { EtcdCluster, freePort } from '../cluster/etcd-process';
import { Agent, AgentEvent, clockOffset, ControlServer } from './control';
import { canConnect, Ganesha } from './ganesha';
import { buildInitramfs, findKernel } from './initramfs';
import { EtcdRelay } from './proxy';
import { parseMountStats } from '../../src/storage/nfs-settings';
import { RunState } from './state';
import { Vm } from './vm';

export type ServerKind = 'ganesha' | 'knfsd';
export type NfsVersion = '3' | '4.1';
export const NFS_VERSIONS: readonly NfsVersion[] = ['3', '4.1'];

/**
 * Timing of every node, sized for TCG on a shared 2-core host (JavaScript runs 50-100x slower
 * than on the host: loading the library takes ~30 s, the first statements of a new holder can
 * block the event loop for seconds): etcd round trips from a guest take tens of ms to seconds.
 */
export const LAB_TIMING = {
  leaseTtlMs: 30000,
  safetyMarginMs: 6000,
  rpcTimeoutMs: 15000,
  idleReleaseMs: 1000,
  acquireTimeoutMs: 90000,
  busyTimeoutMs: 60000,
};

/** Sets the run's lease TTL (before the lab starts): margin TTL/5, rpc timeout TTL/2. */
export function setLabTtl(ttlMs: number): void {
  LAB_TIMING.leaseTtlMs = ttlMs;
  LAB_TIMING.safetyMarginMs = Math.round(ttlMs / 5);
  LAB_TIMING.rpcTimeoutMs = Math.round(ttlMs / 2);
}

/** NFSv4 lease of the server (s): how long a powered-off client's opens and locks outlive it. */
export const NFS_LEASE_SECONDS = 20;

export const MOUNT_POINT = '/mnt/nfs';
export const DB_NAME = 'lab.db';

export interface LabSetup {
  server: ServerKind;
  nodes: number;
  /** Extra mount options for the clients (e.g. 'nolock'), after vers=…,hard,port=…. */
  mountOptions?: string;
  /** NFS protocol version of the client mounts (3: ganesha only, without NLM, so mounted nolock). */
  nfsVersion: NfsVersion;
  memoryMb?: number;
  log: (msg: string) => void;
  keep: boolean;
  /** ganesha Delegations on. */
  delegations?: boolean;
}

/** One side of the lab benchmark: sqlite-ha rate ÷ raw rate, and both rates. */
export interface BenchSide {
  ratio: number;
  rawPerS: number;
  haPerS: number;
}

export interface NodeState {
  index: number;
  nodeId: string;
  vm: string;
  incarnation: number;
  running: boolean;
  paused: boolean;
  leaseHeld: boolean;
  /** Host time of the last lease 'acquired' event. */
  acquiredAt: number;
  locks: string | null;
  stderrTail: string;
  exits: { code: number | null; signal: string | null }[];
}

const REPO = path.resolve(__dirname, '..', '..', '..');

export class Lab {
  readonly state: RunState;
  readonly cleanup: Cleanup;
  readonly control = new ControlServer();
  readonly vms = new Map<string, Vm>();
  readonly relays = new Map<string, EtcdRelay>();
  readonly nodes: NodeState[] = [];
  readonly prefix = `/lab-${process.pid}`;
  readonly kernel = findKernel();
  etcd: EtcdCluster | null = null;
  ganesha: Ganesha | null = null;
  nfsPort = 0;
  /** NFSv3 MOUNT service port (0 on NFSv4). */
  mntPort = 0;
  initramfs = '';
  private diskImage = '';
  private readonly listeners = new Set<(n: NodeState, e: WorkerEvent) => void>();
  /** Lease 'acquired' events: host time, node. */
  readonly acquisitions: { at: number; node: string }[] = [];
  /** Lease 'released' events (host time, node). */
  readonly releases: { at: number; node: string }[] = [];
  /** Host time and node of every acknowledged operation. */
  readonly acks: { at: number; node: string }[] = [];
  readonly log: (msg: string) => void;

  constructor(readonly setup: LabSetup) {
    this.log = setup.log;
    this.cleanup = new Cleanup(this.log);
    this.cleanup.install();
    const swept = RunState.sweep();
    if (swept.pids.length || swept.dirs.length) {
      this.log(`removed leftovers of killed runs: ${swept.pids.length} processes, ${swept.dirs.join(' ') || 'no dirs'}`);
    }
    this.state = RunState.create();
    this.cleanup.add('run dir', () => {
      if (this.setup.keep) fs.writeFileSync(path.join(this.state.dir, 'KEEP'), '');
      else this.state.remove();
    });
    this.cleanup.add('processes', () => this.state.killAll());
    this.cleanup.add('relays and control', () => {
      for (const r of this.relays.values()) r.close();
      this.control.close();
    });
    fs.mkdirSync(path.join(this.state.dir, 'history'));
  }

  get dir(): string {
    return this.state.dir;
  }

  /** Everything up to the first write: initramfs, etcd, NFS server, client VMs with mounts. */
  async start(): Promise<void> {
    const t0 = Date.now();
    this.initramfs = buildInitramfs(this.dir, this.kernel.version);
    this.log(`initramfs built from ${this.kernel.image} + busybox (${Math.round(fs.statSync(this.initramfs).size / 1024)} KiB)`);
    await this.control.listen();
    fs.mkdirSync(path.join(this.dir, 'etcd'));
    this.etcd = await EtcdCluster.start({ members: 1, dir: path.join(this.dir, 'etcd'), host: '127.0.0.1' });
    this.state.track('etcd', this.etcd.members[0].process!.pid!, path.join(this.dir, 'etcd'));
    this.log(`etcd ${this.etcd.endpoints[0]} (guests reach it through one relay each at 10.0.2.2)`);
    if (this.setup.server === 'ganesha') {
      this.nfsPort = await freePort();
      const nfsv3 = this.setup.nfsVersion === '3';
      if (nfsv3) this.mntPort = await freePort();
      this.ganesha = new Ganesha(this.state, {
        dir: path.join(this.dir, 'ganesha'), port: this.nfsPort, leaseSeconds: NFS_LEASE_SECONDS, delegations: this.setup.delegations,
        nfsv3, mntPort: this.mntPort,
      });
      await this.ganesha.start();
      this.log(`nfs-ganesha on 127.0.0.1:${this.nfsPort}${nfsv3 ? ` (NFSv3 too, MOUNT on ${this.mntPort})` : ''}, export ${this.ganesha.exportDir}`);
    } else {
      await this.startKnfsd();
    }
    await Promise.all(Array.from({ length: this.setup.nodes }, (_, i) => this.bootClient(i + 1)));
    this.log(`${this.setup.nodes} client VMs up with ${MOUNT_POINT} mounted (${Math.round((Date.now() - t0) / 1000)} s)`);
  }

  private async startKnfsd(): Promise<void> {
    this.nfsPort = await freePort();
    this.diskImage = path.join(this.dir, 'knfsd-disk.img');
    fs.writeFileSync(this.diskImage, '');
    fs.truncateSync(this.diskImage, 256 << 20);
    const mk = spawnSync('mkfs.ext4', ['-F', '-q', '-E', 'root_owner=0:0', this.diskImage], { encoding: 'utf8' });
    if (mk.status !== 0) throw new Error(`mkfs.ext4 failed: ${mk.stderr}`);
    const setup = [
      'modprobe virtio_blk', 'modprobe ext4', 'modprobe nfsd',
      'mkdir -p /mnt/export && mount -t ext4 /dev/vda /mnt/export',
      'mount -t nfsd nfsd /proc/fs/nfsd',
      `echo ${NFS_LEASE_SECONDS} > /proc/fs/nfsd/nfsv4leasetime; echo ${NFS_LEASE_SECONDS} > /proc/fs/nfsd/nfsv4gracetime; true`,
      'mkdir -p /var/lib/nfs/v4recovery /var/lib/nfs/rpc_pipefs && touch /var/lib/nfs/etab /var/lib/nfs/rmtab',
      'exportfs -o rw,sync,insecure,no_root_squash,no_subtree_check,fsid=0 "*:/mnt/export"',
      'rpc.mountd -N 2 -N 3',
      'rpc.nfsd -N 3 -V 4 8',
    ];
    await this.bootVm('nfsd', setup, {
      hostfwd: [`tcp:127.0.0.1:${this.nfsPort}-:2049`], disks: [this.diskImage],
    });
    if (!(await canConnect(this.nfsPort))) throw new Error('knfsd VM: hostfwd port does not accept');
    this.log(`kernel NFS server VM up, reachable at 10.0.2.2:${this.nfsPort} (hostfwd), export on an ext4 image`);
  }

  /** The export's NFSv4 path: ganesha's Pseudo path; knfsd exports with fsid=0, i.e. as the pseudo root. */
  get exportPath(): string {
    return this.setup.server === 'knfsd' ? '/' : '/export';
  }

  /** Mount options of the client VMs. */
  get mountOptions(): string {
    // NFSv3 without rpcbind in the guest: the ports are given, and without NLM (no rpc.statd in
    // the guest, none on the server) locks can only be local: nolock.
    const base = this.setup.nfsVersion === '3'
      ? ['vers=3', 'hard', 'nolock', 'proto=tcp', `port=${this.nfsPort}`, `mountport=${this.mntPort}`, 'mountproto=tcp']
      : ['vers=4.1', 'hard', `port=${this.nfsPort}`];
    return [...base, ...(this.setup.mountOptions ? [this.setup.mountOptions] : [])].join(',');
  }

  get fsType(): 'nfs' | 'nfs4' {
    return this.setup.nfsVersion === '3' ? 'nfs' : 'nfs4';
  }

  /** The client VM's mount command (boot, remount). */
  private mountCommand(): string {
    return `mount -t ${this.fsType} -o ${this.mountOptions} 10.0.2.2:${this.exportPath} ${MOUNT_POINT}`;
  }

  /**
   * Unmounts and mounts the export again in a client VM (no process of its own may have a file
   * open there): the client gives back its delegations and forgets the file, like a fresh client.
   */
  async remount(vm: string): Promise<void> {
    await this.guestExec(vm, ['/bin/sh', '-c', `umount ${MOUNT_POINT} && ${this.mountCommand()}`], 60000);
  }

  private async bootClient(i: number): Promise<void> {
    const vm = `c${i}`;
    const relay = new EtcdRelay({ host: '127.0.0.1', port: Number(new URL(this.etcd!.endpoints[0]).port) });
    await relay.listen();
    this.relays.set(vm, relay);
    await this.bootVm(vm, [
      this.setup.nfsVersion === '3' ? 'modprobe nfsv3' : 'modprobe nfsv4',
      `mkdir -p ${MOUNT_POINT}`,
      this.mountCommand(),
    ]);
    this.nodes.push({
      index: i, nodeId: `n${i}`, vm, incarnation: 0, running: false, paused: false, leaseHeld: false, acquiredAt: 0,
      locks: null, stderrTail: '', exits: [],
    });
    this.nodes.sort((a, b) => a.index - b.index);
  }

  private async bootVm(name: string, setup: string[], extra: { hostfwd?: string[]; disks?: string[] } = {}): Promise<Agent> {
    const dir = path.join(this.dir, name);
    fs.mkdirSync(dir, { recursive: true });
    const agentCfg = path.join(dir, 'agent.json');
    fs.writeFileSync(agentCfg, JSON.stringify({ vm: name, host: '10.0.2.2', port: this.control.port, setup }));
    const vm = new Vm(this.state, {
      name, runDir: this.dir, kernel: this.kernel.image, initramfs: this.initramfs, memoryMb: this.setup.memoryMb ?? 768,
      bootScript: `exec node ${path.join(REPO, 'build/tools/lab/guest-agent.js')} ${agentCfg}\n`,
      ...extra,
    });
    this.vms.set(name, vm);
    vm.start();
    let agent: Agent;
    try {
      // A guest whose setup failed powers off: fail at once instead of waiting out the timeout.
      agent = await Promise.race([
        this.control.waitFor(name, 300000),
        vm.exited.then(() => sleep(1000)).then(() => this.control.agent(name) ?? Promise.reject(new Error(`VM ${name} powered off before its agent connected`))),
      ]);
    } catch (err) {
      throw new Error(`${(err as Error).message}; console:\n${vm.consoleTail()}\nboot log:\n${readTail(path.join(dir, 'boot.log'))}`);
    }
    agent.on('event', (e: AgentEvent) => this.onAgentEvent(name, e));
    for (let k = 0; k < 3; k++) await agent.sampleClock();
    return agent;
  }

  agent(vm: string): Agent {
    const a = this.control.agent(vm);
    if (!a) throw new Error(`VM ${vm} has no agent (stopped?)`);
    return a;
  }

  node(nodeId: string): NodeState {
    const n = this.nodes.find((x) => x.nodeId === nodeId);
    if (!n) throw new Error(`no node ${nodeId}`);
    return n;
  }

  historyFile(n: NodeState): string {
    return path.join(this.dir, 'history', `${n.nodeId}.jsonl`);
  }

  get dbPathInGuest(): string {
    return `${MOUNT_POINT}/${DB_NAME}`;
  }

  guestEndpoints(vm: string): string[] {
    return [`http://10.0.2.2:${this.relays.get(vm)!.port}`];
  }

  /** Starts (a new incarnation of) a node's worker inside its VM. */
  async startWorker(n: NodeState, cfg: Partial<WorkerConfig> & Pick<WorkerConfig, 'bank' | 'seed' | 'maxRunMs'>): Promise<void> {
    const agent = this.agent(n.vm);
    n.incarnation++;
    const full: WorkerConfig = {
      db: this.dbPathInGuest,
      endpoints: this.guestEndpoints(n.vm),
      prefix: this.prefix,
      nodeId: n.nodeId,
      incarnation: n.incarnation,
      historyFile: this.historyFile(n),
      locks: 'auto',
      ...LAB_TIMING,
      thinkMs: 50,
      bulkRows: 3000,
      padBytes: 1024,
      maxOps: 100000,
      parentPid: await this.agentPid(agent),
      ...cfg,
    };
    await agent.spawn('worker', ['node', path.join(REPO, 'build/tools/chaos/node-worker.js'), JSON.stringify(full)]);
    n.running = true;
  }

  private async agentPid(agent: Agent): Promise<number> {
    const r = await agent.exec(['/bin/sh', '-c', 'echo $PPID']);
    return Number(r.stdout.trim());
  }

  on(fn: (n: NodeState, e: WorkerEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves with the first matching worker event (host time in `at`), or null after timeoutMs. */
  waitEvent(pred: (n: NodeState, e: WorkerEvent) => boolean, timeoutMs: number): Promise<{ node: NodeState; e: WorkerEvent } | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => (off(), resolve(null)), timeoutMs);
      const off = this.on((n, e) => {
        if (pred(n, e)) {
          clearTimeout(timer);
          off();
          resolve({ node: n, e });
        }
      });
    });
  }

  private onAgentEvent(vm: string, e: AgentEvent): void {
    const n = this.nodes.find((x) => x.vm === vm);
    if (!n || e.name !== 'worker') return;
    if (e.ev === 'err') {
      n.stderrTail = (n.stderrTail + (e.line ?? '')).slice(-4000);
      fs.appendFileSync(path.join(this.dir, vm, 'worker.err'), e.line ?? '');
      return;
    }
    if (e.ev === 'exit') {
      n.running = false;
      n.leaseHeld = false;
      n.exits.push({ code: e.code ?? null, signal: e.signal ?? null });
      for (const l of this.listeners) l(n, { ev: 'exit', at: Date.now(), code: e.code, signal: e.signal });
      return;
    }
    let ev: WorkerEvent;
    try {
      ev = JSON.parse(e.line ?? '');
    } catch {
      return;
    }
    fs.appendFileSync(path.join(this.dir, vm, 'worker.events'), (e.line ?? '') + '\n');
    const agent = this.control.agent(vm);
    if (typeof ev.at === 'number' && agent) ev.at = agent.toHost(ev.at);
    if (ev.ev === 'ready') n.locks = String(ev.locks);
    if (ev.ev === 'lease') {
      n.leaseHeld = ev.event === 'acquired';
      if (ev.event === 'released') this.releases.push({ at: ev.at ?? Date.now(), node: n.nodeId });
      if (n.leaseHeld) {
        n.acquiredAt = ev.at ?? Date.now();
        this.acquisitions.push({ at: n.acquiredAt, node: n.nodeId });
      }
    }
    if (ev.ev === 'ack') this.acks.push({ at: ev.at ?? Date.now(), node: n.nodeId });
    for (const l of this.listeners) l(n, ev);
  }

  /** Runs the lab benchmark's measuring side (tools/lab/guest-bench.ts) in one client VM. */
  async benchInGuest(vm: string, trialMs: number, pairs: number): Promise<{ writes: BenchSide; reads: BenchSide; locks: string }> {
    const out = await this.guestExec(vm, ['node', path.join(REPO, 'build/tools/lab/guest-bench.js'), JSON.stringify({
      dir: MOUNT_POINT, endpoints: this.guestEndpoints(vm), prefix: `${this.prefix}-bench`, trialMs, pairs, ...LAB_TIMING,
    })], 4 * pairs * trialMs + 300000);
    return JSON.parse(out.trim().split('\n').pop()!);
  }

  holder(): NodeState | null {
    return this.nodes.find((n) => n.leaseHeld && n.running && !n.paused) ?? null;
  }

  async signalWorker(n: NodeState, sig: NodeJS.Signals): Promise<void> {
    await this.agent(n.vm).signal('worker', sig);
    if (sig === 'SIGSTOP') n.paused = true;
    if (sig === 'SIGCONT') n.paused = false;
  }

  /** SIGKILL the worker and wait for its exit event. */
  async killWorker(n: NodeState): Promise<void> {
    const exited = this.waitEvent((x, e) => x === n && e.ev === 'exit', 60000);
    await this.signalWorker(n, 'SIGKILL');
    await exited;
    n.paused = false;
  }

  /** SIGTERM every running worker (they finish the operation in flight and close), then SIGKILL. */
  async stopWorkers(graceMs: number): Promise<void> {
    await Promise.all(this.nodes.filter((n) => n.running && this.control.agent(n.vm)).map((n) => this.stopWorker(n, graceMs)));
  }

  /** SIGTERM one worker (it finishes the operation in flight and closes); SIGKILL after graceMs. */
  async stopWorker(n: NodeState, graceMs: number): Promise<void> {
    if (!n.running) return;
    const exited = this.waitEvent((x, e) => x === n && e.ev === 'exit', graceMs);
    if (n.paused) await this.signalWorker(n, 'SIGCONT').catch(() => undefined);
    await this.signalWorker(n, 'SIGTERM').catch(() => undefined);
    if (!(await exited) && n.running) await this.killWorker(n).catch(() => undefined);
  }

  /** Power cut of a client VM; its agent and worker are gone with it. */
  async hardStopVm(vm: string): Promise<void> {
    await this.vms.get(vm)!.hardStop();
    const n = this.nodes.find((x) => x.vm === vm);
    if (n) {
      n.running = false;
      n.leaseHeld = false;
    }
  }

  /** Clock samples from every live agent (for the history's host-time conversion). */
  async sampleClocks(): Promise<void> {
    await Promise.all([...this.vms.keys()].map(async (vm) => {
      const a = this.control.agent(vm);
      if (a) await a.sampleClock().catch(() => undefined);
    }));
  }

  /** Largest |host - guest| clock offset seen, and the worst round trip of the samples used. */
  clockSummary(): { maxOffsetMs: number; maxRttMs: number } {
    let maxOffsetMs = 0;
    let maxRttMs = 0;
    for (const vm of this.vms.keys()) {
      for (const [, off, rtt] of this.control.agent(vm)?.clock ?? []) {
        maxOffsetMs = Math.max(maxOffsetMs, Math.abs(off));
        maxRttMs = Math.max(maxRttMs, rtt);
      }
    }
    return { maxOffsetMs: Math.round(maxOffsetMs), maxRttMs: Math.round(maxRttMs) };
  }

  /** Converts every history line's guest times to host time (in place, before checking). */
  convertHistories(): void {
    for (const n of this.nodes) {
      const f = this.historyFile(n);
      if (!fs.existsSync(f)) continue;
      const agent = this.control.agent(n.vm);
      const samples = agent?.clock ?? this.savedClocks.get(n.vm) ?? [];
      const lines = fs.readFileSync(f, 'utf8').split('\n').map((l) => {
        if (!l.trim()) return l;
        try {
          const o = JSON.parse(l);
          if (typeof o.call === 'number') o.call = Math.round(o.call + clockOffset(samples, o.call));
          if (typeof o.ret === 'number') o.ret = Math.round(o.ret + clockOffset(samples, o.ret));
          return JSON.stringify(o);
        } catch {
          return l;
        }
      });
      fs.writeFileSync(f, lines.join('\n'));
    }
  }

  /** Clock samples of VMs that are gone (hard-stopped), kept for the conversion. */
  readonly savedClocks = new Map<string, [number, number, number][]>();

  saveClock(vm: string): void {
    const a = this.control.agent(vm);
    if (a) this.savedClocks.set(vm, a.clock.slice());
  }

  /** Runs a command in a guest; throws with its output unless it exits 0. */
  async guestExec(vm: string, argv: string[], timeoutMs = 120000): Promise<string> {
    const r = await this.agent(vm).exec(argv, timeoutMs);
    if (r.code !== 0) throw new Error(`${vm}: ${argv.join(' ')} exited ${r.code}: ${r.stderr.slice(0, 500)}`);
    return r.stdout;
  }

  /** The final database file, readable on the host: ganesha's export, or dumped from the knfsd image. */
  async finalDbFile(): Promise<string> {
    if (this.ganesha) return path.join(this.ganesha.exportDir, DB_NAME);
    const nfsd = this.vms.get('nfsd');
    if (nfsd) {
      await this.control.agent('nfsd')?.exec(['/bin/sh', '-c', 'rpc.nfsd 0; exportfs -ua; sync; umount /mnt/export'], 60000).catch(() => undefined);
      await nfsd.hardStop();
    }
    // The umount can fail (nfsd still holds the file: e.g. a remounted client's old state), and
    // debugfs does not replay ext4's journal: without this the dump can show a size from before
    // the last commits (seen: header 22 pages, file 21). e2fsck replays it (exit 1: fixed, fine).
    spawnSync('e2fsck', ['-fy', this.diskImage], { encoding: 'utf8' });
    const out = path.join(this.dir, 'final');
    fs.mkdirSync(out, { recursive: true });
    for (const f of [DB_NAME, `${DB_NAME}-journal`]) {
      spawnSync('debugfs', ['-R', `dump /${f} ${path.join(out, f)}`, this.diskImage], { encoding: 'utf8' });
    }
    return path.join(out, DB_NAME);
  }

  /**
   * Per-client NFS operation counts for the mount (from /proc/self/mountstats): DELEGRETURN shows
   * whether the server handed out delegations, LOCK/OPEN/GETATTR how the client revalidated.
   */
  async nfsOpCounts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    await Promise.all(this.nodes.map(async (n) => {
      if (!this.control.agent(n.vm)) return;
      const text = await this.guestExec(n.vm, ['cat', '/proc/self/mountstats'], 30000).catch(() => '');
      fs.writeFileSync(path.join(this.dir, n.vm, 'mountstats.txt'), text); // kept with --keep: the evidence behind the counts
      const m = parseMountStats(text).find((x) => x.mountPoint === MOUNT_POINT);
      if (!m) return;
      const keep = ['OPEN', 'OPEN_NOATTR', 'CLOSE', 'LOCK', 'LOCKU', 'GETATTR', 'READ', 'WRITE', 'COMMIT', 'DELEGRETURN', 'SETATTR'];
      out[n.vm] = Object.fromEntries(keep.map((k) => [k, m.ops[k] ?? 0]));
    }));
    return out;
  }

  /**
   * BEGIN EXCLUSIVE held in the first client VM, tried with busy_timeout 0 in the second, then
   * tried again after the release (tools/lab/guest-lock.ts, plain better-sqlite3).
   */
  async lockProbe(): Promise<{ holder: string; other: string; whileHeld: string; afterRelease: string }> {
    const [a, b] = this.nodes;
    const marker = path.join(this.dir, 'lock-probe.marker');
    const script = path.join(REPO, 'build/tools/lab/guest-lock.js');
    const timeoutMs = 240000;
    const run = (vm: string, mode: string) =>
      this.guestExec(vm, ['node', script, mode, this.dbPathInGuest, marker, String(timeoutMs)], timeoutMs + 30000)
        .then((out) => JSON.parse(out.trim().split('\n').pop()!));
    const [, tried] = await Promise.all([run(a.vm, 'hold'), run(b.vm, 'try')]);
    return { holder: a.vm, other: b.vm, whileHeld: tried.whileHeld, afterRelease: tried.afterRelease };
  }

  /**
   * Does this mount serve a stale view? A file written in the first client VM and read there
   * (cached), rewritten (same size) in the second, then read again in the first: plainly, and
   * under a (local, with nolock) flock (util-linux), which the Linux client treats as a cache coherency point.
   */
  async cacheProbe(): Promise<{ before: string; plainRead: string; underLock: string }> {
    const [a, b] = this.nodes;
    const f = `${MOUNT_POINT}/cache-probe.txt`;
    const sh = (vm: string, cmd: string) => this.guestExec(vm, ['/bin/sh', '-c', cmd], 60000).then((o) => o.trim());
    const before = await sh(a.vm, `printf old-view > ${f}; cat ${f}`);
    await sh(b.vm, `cat ${f} >/dev/null; printf new-view > ${f}`);
    const plainRead = await sh(a.vm, `cat ${f}`);
    const underLock = await sh(a.vm, `flock -s ${f} cat ${f}`);
    return { before, plainRead, underLock };
  }

  /** `sqlite-ha doctor --json` on the database in a client VM (a real NFS mount), parsed. */
  async doctorInGuest(vm: string): Promise<{ check: string; verdict: string; summary: string }[]> {
    const r = await this.agent(vm).exec([
      'node', path.join(REPO, 'build/src/cli/main.js'), '--endpoints', this.guestEndpoints(vm).join(','), '--prefix', this.prefix,
      'doctor', '--json', '--fsync-samples', '5',
      '--lease-ttl-ms', String(LAB_TIMING.leaseTtlMs), '--safety-margin-ms', String(LAB_TIMING.safetyMarginMs), this.dbPathInGuest,
    ], 180000);
    const report = JSON.parse(r.stdout) as { findings: { check: string; verdict: string; summary: string }[] };
    return report.findings.map((f) => ({ check: f.check, verdict: f.verdict, summary: f.summary }));
  }

  /** Unmounts in the clients, powers every VM off, stops servers and etcd. */
  async shutdown(): Promise<void> {
    await Promise.all([...this.vms.entries()].filter(([n]) => n !== 'nfsd').map(async ([name, vm]) => {
      const a = this.control.agent(name);
      if (a) await a.exec(['/bin/sh', '-c', `umount -f ${MOUNT_POINT}; /bin/busybox poweroff -f`], 20000).catch(() => undefined);
      await vm.shutdown(5000);
    }));
    await this.vms.get('nfsd')?.hardStop();
    await this.ganesha?.kill();
    await this.etcd?.stop({ keepData: true }).catch(() => undefined);
  }

  /** Teardown now (also runs on exit and on signals). */
  finish(): void {
    this.cleanup.runAll();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function readTail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(none)';
  }
}
