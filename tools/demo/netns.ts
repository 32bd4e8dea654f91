/**
 * `--netns` (root only): every node slot gets its own network namespace joined to the root
 * namespace by a veth pair (10.<b>.<slot>.1 on the root side, .2 inside, default route via .1).
 * etcd listens on slot 1's root-side address, which every namespace reaches through its own pair
 * (the root namespace delivers packets for any of its addresses locally; no forwarding needed).
 * Names carry the demo's pid, so namespaces a killed demo left behind are found and removed.
 * The `ip` plumbing is shared with the chaos suite (src/cluster/netns.ts).
 */
import * as netns from '../cluster/netns';
import { atExit } from './cleanup';

const NS_PREFIX = 'sqlha-demo-';

export interface NetnsSlot {
  ns: string;
  hostIf: string;
  nsIf: string;
  hostAddr: string;
  nsAddr: string;
}

/** Why --netns cannot run here, or null when it can (root, `ip netns` usable). */
export function netnsUnavailable(): string | null {
  return netns.netnsUnavailable('--netns');
}

/** Deletes namespaces named by earlier demo runs whose process is gone; returns how many. */
export function removeStaleNamespaces(): number {
  return netns.removeStaleNamespaces(new RegExp(`^${NS_PREFIX}(\\d+)-\\d+$`)).length;
}

export class NetnsSet {
  readonly slots: NetnsSlot[] = [];
  private unregister: () => void;

  private constructor() {
    this.unregister = atExit('network namespaces', () => this.removeAll());
  }

  /** Creates `count` namespaces with their veth pairs; removes what it made if a step fails. */
  static create(count: number): NetnsSet {
    const set = new NetnsSet();
    const octet = freeSecondOctet();
    const tag = process.pid % 100000;
    try {
      for (let i = 1; i <= count; i++) {
        const slot: NetnsSlot = {
          ns: `${NS_PREFIX}${process.pid}-${i}`,
          hostIf: `sqd${tag}h${i}`,
          nsIf: `sqd${tag}n${i}`,
          hostAddr: `10.${octet}.${i}.1`,
          nsAddr: `10.${octet}.${i}.2`,
        };
        set.slots.push(slot);
        netns.addVethNamespace({
          ns: slot.ns, hostIf: slot.hostIf, nsIf: slot.nsIf,
          hostCidr: `${slot.hostAddr}/24`, nsCidr: `${slot.nsAddr}/24`, defaultVia: slot.hostAddr,
        });
      }
    } catch (err) {
      set.removeAll();
      throw err;
    }
    return set;
  }

  /** The address etcd listens on: the root side of slot 1's pair. */
  get etcdHost(): string {
    return this.slots[0].hostAddr;
  }

  /** The namespace of a 1-based node slot. */
  nsOf(slot: number): string {
    return this.slots[slot - 1].ns;
  }

  /** Deletes every namespace and veth pair this set made (idempotent, synchronous). */
  removeAll(): void {
    for (const s of this.slots.splice(0)) netns.removeVethNamespace(s.ns, s.hostIf);
    this.unregister();
  }
}

/** A 10.x.0.0/16 that no route or address on this host mentions yet. */
function freeSecondOctet(): number {
  const range = netns.firstUnusedRange(Array.from({ length: 40 }, (_, k) => `10.${213 + k}.`));
  if (range === null) throw new Error('no free 10.x.0.0/16 range for the demo namespaces');
  return Number(range.split('.')[1]);
}
