/**
 * The NFS client settings sqlite-ha depends on, judged from what a host can see: the mount options
 * in /proc/mounts and the effective ones plus per-operation counters in /proc/self/mountstats.
 * Pure functions over that text (docs/NFS.md explains each setting); `sqlite-ha doctor` prints
 * one verdict per setting.
 */
import type { MountInfo } from './mounts';

export type SettingVerdict = 'ok' | 'warn' | 'fail';

export interface NfsSetting {
  setting: 'hard' | 'vers' | 'actimeo' | 'lookupcache' | 'locks' | 'delegations' | 'idmapping';
  verdict: SettingVerdict;
  summary: string;
  advice: string | null;
}

export interface MountStats {
  device: string;
  mountPoint: string;
  /** The `opts:` line: effective options, including defaults (acregmin, ...). */
  options: Record<string, string | true>;
  /** Per-operation counts (first column of "per-op statistics"). */
  ops: Record<string, number>;
  leaseTimeS: number | null;
}

/** Parses /proc/self/mountstats into the NFS mounts it lists. */
export function parseMountStats(text: string): MountStats[] {
  const out: MountStats[] = [];
  let cur: MountStats | null = null;
  let inOps = false;
  for (const line of text.split('\n')) {
    const dev = /^device (\S+) mounted on (\S+) with fstype (nfs4?)\b/.exec(line);
    if (dev) {
      cur = { device: dev[1], mountPoint: dev[2].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))), options: {}, ops: {}, leaseTimeS: null };
      out.push(cur);
      inOps = false;
      continue;
    }
    if (/^device /.test(line)) {
      cur = null;
      continue;
    }
    if (!cur) continue;
    const t = line.trim();
    if (t.startsWith('opts:')) {
      for (const o of t.slice(5).trim().split(',')) {
        const i = o.indexOf('=');
        cur.options[i < 0 ? o : o.slice(0, i)] = i < 0 ? true : o.slice(i + 1);
      }
    } else if (t.startsWith('nfsv4:')) {
      const m = /lease_time=(\d+)/.exec(t);
      if (m) cur.leaseTimeS = Number(m[1]);
    } else if (t === 'per-op statistics') {
      inOps = true;
    } else if (inOps) {
      const m = /^([A-Z_]+):\s+(\d+)/.exec(t);
      if (m) cur.ops[m[1]] = Number(m[2]);
    }
  }
  return out;
}

const NOBODY_UIDS = new Set([65534, 4294967294]);

/**
 * One verdict per setting for an NFS mount. `stats` is its mountstats entry (null if unreadable);
 * `ownerUid` the database file's (or directory's) owner as this host sees it, `euid` our own.
 */
export function judgeNfsSettings(mount: MountInfo, stats: MountStats | null, ownerUid: number | null, euid: number | null): NfsSetting[] {
  const opt = (k: string): string | true | undefined => {
    const fromStats = stats?.options[k];
    if (fromStats !== undefined) return fromStats;
    const o = mount.options.find((x) => x === k || x.startsWith(`${k}=`));
    return o === undefined ? undefined : o.includes('=') ? o.slice(o.indexOf('=') + 1) : true;
  };
  const out: NfsSetting[] = [];
  out.push(opt('soft') || opt('softerr')
    ? { setting: 'hard', verdict: 'fail', summary: "mounted 'soft': a slow server becomes an I/O error mid-COMMIT", advice: "mount with 'hard'" }
    : { setting: 'hard', verdict: 'ok', summary: "'hard': requests are retried, never failed, while the server is away", advice: null });
  const vers = String(opt('vers') ?? (mount.fsType === 'nfs4' ? '4' : '3'));
  const ll = opt('local_lock');
  const localLocks = Boolean(opt('nolock')) || ll === 'posix' || ll === 'all';
  const v4 = /^4(\.[12])?$/.test(vers);
  out.push(v4
    ? { setting: 'vers', verdict: vers === '4' || vers === '4.0' ? 'warn' : 'ok', summary: `NFS version ${vers}`, advice: vers === '4' || vers === '4.0' ? 'use vers=4.1 or 4.2 (sessions: exactly-once semantics for retried requests)' : null }
    : {
      setting: 'vers', verdict: 'warn',
      summary: `NFS version ${vers}: no sessions (a retried request may run twice)${localLocks ? '' : ', locks go through the separate NLM/statd services'}`,
      advice: 'use vers=4.1 or 4.2',
    });
  const ac = ['acregmin', 'acregmax', 'acdirmin', 'acdirmax'].map((k) => Number(opt(k) ?? NaN));
  if (opt('nocto')) {
    // What keeps SQLite fresh then is that the Linux client drops the file's cached attributes and
    // pages whenever a lock is taken, local (nolock) ones too: measured in the lab, not promised
    // by other clients.
    out.push({
      setting: 'actimeo', verdict: 'warn',
      summary: `'nocto': reopening the file does not revalidate it (attribute cache up to ${Number.isFinite(ac[1]) ? ac[1] : '?'} s); only SQLite's locks make the client drop cached pages`,
      advice: "mount without 'nocto' (close-to-open revalidation)",
    });
  } else if (opt('noac')) out.push({ setting: 'actimeo', verdict: 'ok', summary: "'noac': no attribute caching (slowest, strictest)", advice: null });
  else if (ac.every(Number.isFinite)) {
    out.push({
      setting: 'actimeo', verdict: 'ok',
      summary: `attribute cache ${ac[0]}-${ac[1]} s (files), ${ac[2]}-${ac[3]} s (dirs): sqlite-ha does not depend on it (locks and reopening revalidate)`,
      advice: null,
    });
  } else out.push({ setting: 'actimeo', verdict: 'ok', summary: 'attribute cache: kernel defaults (3-60 s files, 30-60 s dirs)', advice: null });
  const lc = opt('lookupcache');
  out.push(lc === 'none' || lc === 'pos' || lc === 'positive'
    ? { setting: 'lookupcache', verdict: 'ok', summary: `lookupcache=${lc}: a journal another host deleted or created is seen at once`, advice: null }
    : { setting: 'lookupcache', verdict: 'warn', summary: 'lookupcache=all (default): a negative lookup of the journal may be cached for up to acdirmax', advice: "mount with 'lookupcache=positive' so a hot journal left by another host is always found" });
  out.push(localLocks
    ? { setting: 'locks', verdict: 'warn', summary: `${opt('nolock') ? 'nolock' : `local_lock=${ll}`}: POSIX locks stay on this host (sqlite-ha runs lockless)`, advice: "remount with 'local_lock=none' to let SQLite's locks cross hosts" }
    : { setting: 'locks', verdict: 'ok', summary: 'local_lock=none: POSIX locks reach the server and every host', advice: null });
  const deleg = stats?.ops.DELEGRETURN ?? null;
  out.push(!v4
    ? { setting: 'delegations', verdict: 'ok', summary: `NFS version ${vers} has no delegations`, advice: null }
    : deleg === null
    ? { setting: 'delegations', verdict: 'ok', summary: 'delegations: not visible (no mountstats)', advice: null }
    : deleg > 0
      ? { setting: 'delegations', verdict: 'warn', summary: `the server hands out delegations (${deleg} returned so far)`, advice: 'safe only while every host reaches the server; turn them off on the server (ganesha Delegations = false, knfsd: fs.leases-enable = 0) if hosts can be cut off' }
      : { setting: 'delegations', verdict: 'ok', summary: 'no delegation returned so far (none handed out)', advice: null });
  if (ownerUid !== null && NOBODY_UIDS.has(ownerUid) && euid === 0) {
    out.push({
      setting: 'idmapping', verdict: 'warn',
      summary: v4
        ? `the file is owned by uid ${ownerUid} (nobody) as this host sees it: NFSv4 owner names are not mapped`
        : `the file is owned by uid ${ownerUid} (nobody): NFSv3 sends numeric ids, so the server squashes root`,
      advice: !v4 ? "export with no_root_squash (knfsd) or Squash = No_Root_Squash (ganesha), or run as a user the server maps" : "run nfsidmap/idmapd with one domain on server and clients, or make the server send numeric ids (ganesha: Only_Numeric_Owners = true); SQLite running as root chowns its journal to the owner it sees",
    });
  } else {
    out.push({ setting: 'idmapping', verdict: 'ok', summary: ownerUid === null ? 'owner not checked' : `owner uid ${ownerUid} maps to a real user`, advice: null });
  }
  return out;
}
