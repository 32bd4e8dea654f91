/**
 * The chaos network: one Linux bridge in the root namespace holding the first address of a private
 * /24 (etcd listens there), and per node a network namespace joined to the bridge by a veth pair.
 * A node process runs inside its namespace (`ip netns exec`) but shares the filesystem (and the
 * mounts, sshfs ones included: `ip netns exec` copies the mount table), so partitioning it cuts it
 * off from etcd while it keeps the database file: the split-brain case.
 *
 * Partition = the root-side veth goes down (packets vanish, TCP hangs as on a real network
 * failure); heal = it comes back up. Every name carries the harness pid, so leftovers of a run that
 * died without cleaning up are recognised (and removed) by the next run, while a concurrent run's
 * objects are left alone. The `ip` plumbing is shared with the demo (src/cluster/netns.ts).
 *
 * Everything here is synchronous on purpose: cleanup must also work from an `exit` handler.
 */
import * as netns from '../cluster/netns';

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

/** Removes namespaces and links of earlier runs whose harness process is gone. */
export function sweepStale(): string[] {
  return [...netns.removeStaleNamespaces(/^shc-(\d+)-n\d+$/), ...netns.removeStaleLinks(/^shc[vb](\d+)/)];
}

/** Picks a 10.213.x.0/24 that no interface or route uses yet. */
function pickSubnet(): string {
  const start = (process.pid % 200) + 20;
  const candidates = Array.from({ length: 200 }, (_, i) => `10.213.${((start + i) % 230) + 20}.`);
  const net = netns.firstUnusedRange(candidates);
  if (net === null) throw new Error('no free 10.213.x.0/24 subnet for the chaos network');
  return net;
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
    netns.addBridge(net.bridge, `${net.hostAddr}/24`);
    for (let i = 1; i <= count; i++) {
      const n: NodeNet = {
        index: i,
        ns: `shc-${net.tag}-n${i}`,
        hostIf: `shcv${net.tag}n${i}`,
        nsIf: `shcp${net.tag}n${i}`,
        addr: `${net.subnet}${10 + i}`,
      };
      net.nodes.push(n);
      netns.addVethNamespace({ ns: n.ns, hostIf: n.hostIf, nsIf: n.nsIf, nsCidr: `${n.addr}/24`, bridge: net.bridge });
    }
    return net;
  }

  /** argv prefix that runs a command inside node i's namespace (1-based). */
  execPrefix(i: number): string[] {
    return netns.netnsExec(this.node(i).ns);
  }

  node(i: number): NodeNet {
    const n = this.nodes[i - 1];
    if (!n) throw new Error(`no chaos node ${i}`);
    return n;
  }

  partition(i: number): void {
    netns.setLink(this.node(i).hostIf, false);
    this.partitioned.add(i);
  }

  heal(i: number): void {
    netns.setLink(this.node(i).hostIf, true);
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
    for (const n of this.nodes) netns.removeVethNamespace(n.ns, n.hostIf);
    // Namespaces created before a failure but not yet in `nodes`:
    for (const name of netns.listNamespaces()) {
      if (name.startsWith(`shc-${this.tag}-n`)) netns.removeVethNamespace(name);
    }
    netns.deleteLink(this.bridge);
  }
}
