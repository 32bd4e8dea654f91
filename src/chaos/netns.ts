/**
 * The chaos network: one Linux bridge in the root namespace holding the first address of a private
 * /24 (etcd listens there), and per node a network namespace joined to the bridge by a veth pair.
 * A node process runs inside its namespace (`ip netns exec`) but shares the filesystem, so
 * partitioning it cuts it off from etcd while it keeps the database file: the split-brain case.
 *
 * Partition = the root-side veth goes down (packets vanish, TCP hangs as on a real network
 * failure); heal = it comes back up. Every name carries the harness pid, so leftovers of a run that
 * died without cleaning up are recognised (and removed) by the next run, while a concurrent run's
 * objects are left alone.
 *
 * Everything here is synchronous on purpose: cleanup must also work from an `exit` handler.
 */
import { spawnSync } from 'child_process';

export interface NodeNet {
  index: number;
  /** Network namespace name. */
  ns: string;
  /** Root-side veth (attached to the bridge; down = partitioned). */
  hostIf: string;
  /** Namespace-side veth. */
  nsIf: string;
  addr: string;
}

function ip(args: string[], allowFail = false): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0 && !allowFail) {
    throw new Error(`ip ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
  }
  return r.stdout ?? '';
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes namespaces and links of earlier runs whose harness process is gone. */
export function sweepStale(): string[] {
  const removed: string[] = [];
  for (const line of ip(['netns', 'list'], true).split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    const m = /^shc-(\d+)-n\d+$/.exec(name ?? '');
    if (m && !pidAlive(Number(m[1]))) {
      ip(['netns', 'del', name], true);
      removed.push(name);
    }
  }
  for (const line of ip(['-o', 'link', 'show'], true).split('\n')) {
    const m = /^\d+:\s+(shc[vb](\d+)\w*)[@:]/.exec(line);
    if (m && !pidAlive(Number(m[2]))) {
      ip(['link', 'del', m[1]], true);
      removed.push(m[1]);
    }
  }
  return removed;
}

/** Picks a 10.213.x.0/24 that no interface or route uses yet. */
function pickSubnet(): string {
  const used = ip(['-4', '-o', 'addr', 'show'], true) + ip(['-4', 'route', 'show', 'table', 'all'], true);
  const start = (process.pid % 200) + 20;
  for (let i = 0; i < 200; i++) {
    const x = ((start + i) % 230) + 20;
    const net = `10.213.${x}.`;
    if (!used.includes(net)) return net;
  }
  throw new Error('no free 10.213.x.0/24 subnet for the chaos network');
}

export class ChaosNetwork {
  readonly bridge: string;
  readonly hostAddr: string;
  readonly nodes: NodeNet[] = [];
  private readonly partitioned = new Set<number>();
  private destroyed = false;

  private constructor(readonly tag: string, private readonly subnet: string) {
    this.bridge = `shcb${tag}`;
    this.hostAddr = `${subnet}1`;
  }

  /**
   * Creates the bridge and `count` namespaces. The caller registers destroy() for cleanup before
   * calling this; a failure half-way leaves destroy() able to remove whatever was made.
   */
  static create(count: number, onCreated: (net: ChaosNetwork) => void): ChaosNetwork {
    if (count < 1 || count > 9) throw new Error('1 to 9 nodes');
    const net = new ChaosNetwork(String(process.pid), pickSubnet());
    onCreated(net);
    ip(['link', 'add', net.bridge, 'type', 'bridge']);
    ip(['addr', 'add', `${net.hostAddr}/24`, 'dev', net.bridge]);
    ip(['link', 'set', net.bridge, 'up']);
    for (let i = 1; i <= count; i++) {
      const n: NodeNet = {
        index: i,
        ns: `shc-${net.tag}-n${i}`,
        hostIf: `shcv${net.tag}n${i}`,
        nsIf: `shcp${net.tag}n${i}`,
        addr: `${net.subnet}${10 + i}`,
      };
      net.nodes.push(n);
      ip(['netns', 'add', n.ns]);
      ip(['link', 'add', n.hostIf, 'type', 'veth', 'peer', 'name', n.nsIf]);
      ip(['link', 'set', n.nsIf, 'netns', n.ns]);
      ip(['-n', n.ns, 'addr', 'add', `${n.addr}/24`, 'dev', n.nsIf]);
      ip(['-n', n.ns, 'link', 'set', n.nsIf, 'up']);
      ip(['-n', n.ns, 'link', 'set', 'lo', 'up']);
      ip(['link', 'set', n.hostIf, 'master', net.bridge]);
      ip(['link', 'set', n.hostIf, 'up']);
    }
    return net;
  }

  /** argv prefix that runs a command inside node i's namespace (1-based). */
  execPrefix(i: number): string[] {
    return ['ip', 'netns', 'exec', this.node(i).ns];
  }

  node(i: number): NodeNet {
    const n = this.nodes[i - 1];
    if (!n) throw new Error(`no chaos node ${i}`);
    return n;
  }

  partition(i: number): void {
    ip(['link', 'set', this.node(i).hostIf, 'down']);
    this.partitioned.add(i);
  }

  heal(i: number): void {
    ip(['link', 'set', this.node(i).hostIf, 'up']);
    this.partitioned.delete(i);
  }

  isPartitioned(i: number): boolean {
    return this.partitioned.has(i);
  }

  healAll(): void {
    for (const i of [...this.partitioned]) this.heal(i);
  }

  /** Idempotent; never throws. Deleting a namespace deletes its veth end and so the pair. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const n of this.nodes) {
      ip(['link', 'del', n.hostIf], true);
      ip(['netns', 'del', n.ns], true);
    }
    // Namespaces created before a failure but not yet in `nodes`:
    for (const line of ip(['netns', 'list'], true).split('\n')) {
      const name = line.trim().split(/\s+/)[0];
      if (name?.startsWith(`shc-${this.tag}-n`)) ip(['netns', 'del', name], true);
    }
    ip(['link', 'del', this.bridge], true);
  }
}
