/**
 * Network-namespace plumbing shared by the demo (`--netns`) and the chaos suite: `ip` wrappers, a
 * namespace joined to the root namespace by a veth pair (optionally attached to a bridge), free
 * private ranges, and removal of what an earlier run whose process died left behind (names carry
 * the creator's pid, so a concurrent run's objects are left alone).
 *
 * Everything here is synchronous on purpose: cleanup must also work from an `exit` handler.
 * Needs root and iproute2.
 */
import { spawnSync } from 'child_process';

export interface IpResult {
  ok: boolean;
  out: string;
  err: string;
}

/** Runs `ip <args>`; never throws. */
export function ip(args: string[]): IpResult {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10000 });
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr || r.error?.message || '').trim() };
}

/** Runs `ip <args>`; throws `ip … failed: <stderr>` when it fails. Returns stdout. */
export function ipMust(args: string[]): string {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')} failed: ${r.err}`);
  return r.out;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why network namespaces cannot be made here (`what` names the feature), or null when they can. */
export function netnsUnavailable(what: string): string | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return `${what} needs root (it creates network namespaces)`;
  const r = ip(['netns', 'list']);
  if (!r.ok) return `${what} needs a working 'ip netns' (iproute2): ${r.err || 'ip not found'}`;
  return null;
}

/** Names of the network namespaces (`ip netns list`). */
export function listNamespaces(): string[] {
  return ip(['netns', 'list'])
    .out.split('\n')
    .slice(0, 10000)
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n): n is string => Boolean(n));
}

/**
 * Deletes the namespaces whose name matches `pattern` (capture group 1: the pid of the run that
 * made them) and whose process is gone. Returns the names removed.
 */
export function removeStaleNamespaces(pattern: RegExp): string[] {
  const removed: string[] = [];
  for (const name of listNamespaces()) {
    const m = pattern.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    if (ip(['netns', 'del', name]).ok) removed.push(name);
  }
  return removed;
}

/** The same for links in the root namespace (bridges, root-side veths left without a namespace). */
export function removeStaleLinks(pattern: RegExp): string[] {
  const removed: string[] = [];
  for (const line of ip(['-o', 'link', 'show']).out.split('\n')) {
    const name = /^\d+:\s+([^@:\s]+)[@:]/.exec(line)?.[1];
    const m = name ? pattern.exec(name) : null;
    if (!name || !m || pidAlive(Number(m[1]))) continue;
    if (ip(['link', 'del', name]).ok) removed.push(name);
  }
  return removed;
}

/**
 * The first of `candidates` (address prefixes such as `10.213.40.` or `10.214.`) that no IPv4
 * address or route of this host mentions yet, or null.
 */
export function firstUnusedRange(candidates: Iterable<string>): string | null {
  const used = ip(['-4', '-o', 'addr', 'show']).out + ip(['-4', 'route', 'show', 'table', 'all']).out;
  for (const c of candidates) if (!used.includes(c)) return c;
  return null;
}

/** A bridge in the root namespace holding `cidr` (e.g. 10.213.40.1/24), up. */
export function addBridge(name: string, cidr: string): void {
  ipMust(['link', 'add', name, 'type', 'bridge']);
  ipMust(['addr', 'add', cidr, 'dev', name]);
  ipMust(['link', 'set', name, 'up']);
}

export interface VethNamespace {
  /** Namespace name. */
  ns: string;
  /** Root-side end of the veth pair. */
  hostIf: string;
  /** Namespace-side end. */
  nsIf: string;
  /** Address of the namespace side, with prefix length (10.x.y.2/24). */
  nsCidr: string;
  /** Address of the root side, with prefix length (none when the root side joins a bridge). */
  hostCidr?: string;
  /** Bridge the root side joins. */
  bridge?: string;
  /** Default route inside the namespace. */
  defaultVia?: string;
}

/**
 * Creates namespace `ns` and a veth pair between it and the root namespace, both ends up (and the
 * namespace's loopback). Throws on the first failing step, leaving what it made for
 * removeVethNamespace().
 */
export function addVethNamespace(v: VethNamespace): void {
  ipMust(['netns', 'add', v.ns]);
  ipMust(['link', 'add', v.hostIf, 'type', 'veth', 'peer', 'name', v.nsIf]);
  ipMust(['link', 'set', v.nsIf, 'netns', v.ns]);
  if (v.hostCidr) ipMust(['addr', 'add', v.hostCidr, 'dev', v.hostIf]);
  if (v.bridge) ipMust(['link', 'set', v.hostIf, 'master', v.bridge]);
  ipMust(['link', 'set', v.hostIf, 'up']);
  ipMust(['-n', v.ns, 'link', 'set', 'lo', 'up']);
  ipMust(['-n', v.ns, 'addr', 'add', v.nsCidr, 'dev', v.nsIf]);
  ipMust(['-n', v.ns, 'link', 'set', v.nsIf, 'up']);
  if (v.defaultVia) ipMust(['-n', v.ns, 'route', 'add', 'default', 'via', v.defaultVia]);
}

/**
 * Deletes the namespace (which takes its veth end, and with it the pair, along) and the root-side
 * end in case the pair never moved into the namespace. Never throws.
 */
export function removeVethNamespace(ns: string, hostIf?: string): void {
  if (hostIf) ip(['link', 'del', hostIf]);
  ip(['netns', 'del', ns]);
}

/** Sets a root-namespace link up or down (down: packets vanish, TCP hangs as on a real cut). */
export function setLink(name: string, up: boolean): void {
  ipMust(['link', 'set', name, up ? 'up' : 'down']);
}

/** Deletes a root-namespace link; never throws. */
export function deleteLink(name: string): void {
  ip(['link', 'del', name]);
}

/** argv prefix that runs a command inside namespace `ns`. */
export function netnsExec(ns: string): string[] {
  return ['ip', 'netns', 'exec', ns];
}
