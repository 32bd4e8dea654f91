/**
 * `--netns` (root only): every node slot gets its own network namespace joined to the root
 * namespace by a veth pair (10.<b>.<slot>.1 on the root side, .2 inside, default route via .1).
 * etcd listens on slot 1's root-side address, which every namespace reaches through its own pair
 * (the root namespace delivers packets for any of its addresses locally; no forwarding needed).
 * Names carry the demo's pid, so namespaces a killed demo left behind are found and removed.
 */
import { spawnSync } from 'child_process';
import { atExit } from './cleanup';

const NS_PREFIX = 'sqlha-demo-';

export interface NetnsSlot {
  ns: string;
  hostIf: string;
  nsIf: string;
  hostAddr: string;
  nsAddr: string;
}

function ip(args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10000 });
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr || r.error?.message || '').trim() };
}

function must(args: string[]): string {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')} failed: ${r.err}`);
  return r.out;
}

/** Why --netns cannot run here, or null when it can (root, `ip netns` usable). */
export function netnsUnavailable(): string | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return '--netns needs root (it creates network namespaces)';
  const r = ip(['netns', 'list']);
  if (!r.ok) return `--netns needs a working 'ip netns' (iproute2): ${r.err || 'ip not found'}`;
  return null;
}

/** Deletes namespaces named by earlier demo runs whose process is gone; returns how many. */
export function removeStaleNamespaces(): number {
  let removed = 0;
  for (const line of ip(['netns', 'list']).out.split('\n').slice(0, 1000)) {
    const m = new RegExp(`^(${NS_PREFIX}(\\d+)-\\d+)\\b`).exec(line.trim());
    if (!m || pidAlive(Number(m[2]))) continue;
    if (ip(['netns', 'del', m[1]]).ok) removed++;
  }
  return removed;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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
        must(['netns', 'add', slot.ns]);
        must(['link', 'add', slot.hostIf, 'type', 'veth', 'peer', 'name', slot.nsIf]);
        must(['link', 'set', slot.nsIf, 'netns', slot.ns]);
        must(['addr', 'add', `${slot.hostAddr}/24`, 'dev', slot.hostIf]);
        must(['link', 'set', slot.hostIf, 'up']);
        must(['-n', slot.ns, 'link', 'set', 'lo', 'up']);
        must(['-n', slot.ns, 'addr', 'add', `${slot.nsAddr}/24`, 'dev', slot.nsIf]);
        must(['-n', slot.ns, 'link', 'set', slot.nsIf, 'up']);
        must(['-n', slot.ns, 'route', 'add', 'default', 'via', slot.hostAddr]);
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
    for (const s of this.slots.splice(0)) {
      ip(['netns', 'del', s.ns]); // takes the inner veth end, and with it the pair, along
      ip(['link', 'del', s.hostIf]); // in case the pair never moved into the namespace
    }
    this.unregister();
  }
}

/** A 10.x.0.0/16 that no route on this host mentions yet. */
function freeSecondOctet(): number {
  const routes = ip(['-4', 'route', 'show', 'table', 'all']).out + ip(['-4', 'addr']).out;
  for (let x = 213; x < 253; x++) {
    if (!routes.includes(`10.${x}.`)) return x;
  }
  throw new Error('no free 10.x.0.0/16 range for the demo namespaces');
}
