/**
 * Decides from /proc/mounts whether SQLite's POSIX file locks reach other hosts for a path
 * (docs/HAZARDS.md H2-H5). Local filesystems and NFS with the lock protocol: yes. FUSE (sshfs, ...), NFS
 * mounted `nolock` or with `local_lock=posix|all`: no.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface MountInfo {
  device: string;
  mountPoint: string;
  fsType: string;
  options: string[];
}

export interface LockVerdict {
  mount: MountInfo;
  trusted: boolean;
  /** Why, naming the filesystem type or the mount option that decided it. */
  reason: string;
  /** What to do when not trusted. */
  advice: string | null;
}

/** Parses /proc/mounts text (octal escapes such as \040 for spaces are decoded). */
export function parseMounts(text: string): MountInfo[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    out.push({ device: unescape(f[0]), mountPoint: unescape(f[1]), fsType: f[2], options: f[3].split(',') });
  }
  return out;
}

/** The mount that holds `target`: the longest mount point that is a prefix of its real path. */
export function mountFor(target: string, mounts: MountInfo[]): MountInfo {
  let best: MountInfo | null = null;
  for (const m of mounts) {
    const mp = m.mountPoint;
    const inside = target === mp || target.startsWith(mp.endsWith('/') ? mp : mp + '/');
    // Later lines win ties: the last mount on a point hides earlier ones.
    if (inside && (!best || mp.length >= best.mountPoint.length)) best = m;
  }
  return best ?? { device: 'unknown', mountPoint: '/', fsType: 'unknown', options: [] };
}

const LOCAL_FS = new Set([
  'ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'zfs', 'tmpfs', 'overlay', 'f2fs', 'jfs', 'reiserfs',
  'ramfs', 'vfat', 'exfat', 'ntfs', 'ntfs3', 'bcachefs',
]);

export function judgeMount(mount: MountInfo): LockVerdict {
  const t = mount.fsType;
  const where = `${mount.mountPoint} (${t} from ${mount.device})`;
  if (t === 'nfs' || t === 'nfs4') {
    if (mount.options.includes('nolock')) {
      return untrusted(mount, `${where} is mounted with 'nolock': POSIX locks stay on this host`,
        "remount without 'nolock' (and with the lock service running for NFSv3)");
    }
    const ll = mount.options.find((o) => o.startsWith('local_lock='));
    if (ll && (ll === 'local_lock=posix' || ll === 'local_lock=all')) {
      return untrusted(mount, `${where} is mounted with '${ll}': POSIX locks stay on this host`,
        "remount with 'local_lock=none'");
    }
    return { mount, trusted: true, reason: `${where}: NFS with network locks`, advice: null };
  }
  if (t.startsWith('fuse')) {
    return untrusted(mount, `${where} is a FUSE filesystem: its locks do not reach other hosts`,
      "use NFS with locking, or the lockless mode (locks: 'none', with the etcd coordinator)");
  }
  if (t === 'cifs' || t === 'smb3' || t === '9p' || t === 'ceph' || t === 'glusterfs') {
    return untrusted(mount, `${where}: ${t} lock semantics are not verified for SQLite`,
      "use NFS with locking, or set locks: 'trusted' if you have verified cross-host POSIX locks");
  }
  if (LOCAL_FS.has(t)) return { mount, trusted: true, reason: `${where}: local filesystem`, advice: null };
  return untrusted(mount, `${where}: unknown filesystem type '${t}'`,
    "set locks: 'trusted' only if POSIX locks on it are known to cross hosts");
}

/** Verdict for the directory that holds `file` (the file itself may not exist yet). */
export function lockVerdictFor(file: string, mountsText?: string): LockVerdict {
  const dir = fs.realpathSync(path.dirname(path.resolve(file)));
  const text = mountsText ?? fs.readFileSync('/proc/mounts', 'utf8');
  return judgeMount(mountFor(path.join(dir, path.basename(file)), parseMounts(text)));
}

function untrusted(mount: MountInfo, reason: string, advice: string): LockVerdict {
  return { mount, trusted: false, reason, advice };
}
