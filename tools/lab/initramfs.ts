/**
 * The guests' initramfs, built at run time from installed packages (nothing binary is committed):
 * busybox-static, the virtio/9p modules of the kernel we boot, and an /init that mounts the host
 * root read-only over virtio-9p, the run directory read-write at the same path as on the host,
 * configures user-mode networking and chroots into the host root to run the VM's boot script.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/** The newest installed Debian kernel: its image and its version (= its /lib/modules dir). */
export function findKernel(): { image: string; version: string } {
  const images = fs.readdirSync('/boot').filter((f) => /^vmlinuz-/.test(f)).sort();
  if (!images.length) throw new Error('no /boot/vmlinuz-*: install linux-image-amd64 (npm run setup)');
  const image = images[images.length - 1];
  return { image: path.join('/boot', image), version: image.slice('vmlinuz-'.length) };
}

/** Modules the initramfs loads, dependencies first, from the kernel's modules.dep. */
export function moduleClosure(depText: string, wanted: string[]): string[] {
  const deps = new Map<string, string[]>();
  for (const line of depText.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    deps.set(line.slice(0, i), line.slice(i + 1).trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map<string, string>();
  for (const k of deps.keys()) byName.set(path.basename(k).replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_'), k);
  const out: string[] = [];
  const visit = (mod: string) => {
    if (out.includes(mod)) return;
    // modules.dep lists a module's dependencies in load-after order: the last has no dependants.
    for (const d of (deps.get(mod) ?? []).slice().reverse()) visit(d);
    out.push(mod);
  };
  for (const w of wanted) {
    const mod = byName.get(w.replace(/-/g, '_'));
    if (mod) visit(mod); // absent: built into the kernel
  }
  return out;
}

/** Modules needed before the chroot; everything later comes from the host's /lib/modules. */
const EARLY_MODULES = ['virtio_pci', 'virtio_net', '9pnet_virtio', '9p'];

const INIT = `#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /host
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules.list); do $B insmod /modules/$m || echo "lab-init: insmod $m failed"; done
arg() { for w in $($B cat /proc/cmdline); do case "$w" in $1=*) echo "\${w#*=}";; esac; done; }
RUN=$(arg lab.run); VM=$(arg lab.vm); IP=$(arg lab.ip)
$B ip link set lo up
$B ip link set eth0 up
$B ip addr add \${IP:-10.0.2.15}/24 dev eth0
$B ip route add default via 10.0.2.2
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host || { echo "lab-init: host root mount failed"; $B poweroff -f; }
$B mount -t proc proc /host/proc
$B mount -t sysfs sys /host/sys
$B mount -t devtmpfs dev /host/dev
$B mkdir -p /host/dev/pts /host/dev/shm
$B mount -t devpts devpts /host/dev/pts
$B mount -t tmpfs tmpfs /host/dev/shm
$B mount -t tmpfs tmpfs /host/tmp
$B mount -t tmpfs tmpfs /host/run
$B mount -t tmpfs tmpfs /host/var/lib/nfs
$B mount -t tmpfs tmpfs /host/mnt
ROOT=$(arg lab.root)
$B mkdir -p /host$ROOT
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose proj /host$ROOT || { echo "lab-init: project mount failed"; $B poweroff -f; }
$B mkdir -p /host$RUN
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none run /host$RUN || { echo "lab-init: run dir mount failed"; $B poweroff -f; }
$B hostname "$VM"
echo "lab-init: $VM up, running $RUN/$VM/boot.sh"
$B chroot /host /bin/sh "$RUN/$VM/boot.sh" > "/host$RUN/$VM/boot.log" 2>&1
echo "lab-init: boot script ended ($?)"
$B sync
$B poweroff -f
`;

/** Writes dir/initramfs.cpio (uncompressed newc, which the kernel accepts) and returns its path. */
export function buildInitramfs(dir: string, kernelVersion: string): string {
  const root = path.join(dir, 'initramfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'modules'), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  fs.symlinkSync('busybox', path.join(root, 'bin', 'sh'));
  const modDir = path.join('/lib/modules', kernelVersion);
  const mods = moduleClosure(fs.readFileSync(path.join(modDir, 'modules.dep'), 'utf8'), EARLY_MODULES);
  const names: string[] = [];
  for (const m of mods) {
    const src = path.join(modDir, m);
    let name = path.basename(m);
    if (/\.ko\.xz$/.test(name)) {
      const r = spawnSync('xz', ['-dc', src], { maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(`xz -dc ${src} failed`);
      name = name.replace(/\.xz$/, '');
      fs.writeFileSync(path.join(root, 'modules', name), r.stdout);
    } else if (/\.ko\.zst$/.test(name)) {
      const r = spawnSync('zstd', ['-dc', src], { maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(`zstd -dc ${src} failed`);
      name = name.replace(/\.zst$/, '');
      fs.writeFileSync(path.join(root, 'modules', name), r.stdout);
    } else {
      fs.copyFileSync(src, path.join(root, 'modules', name));
    }
    names.push(name);
  }
  fs.writeFileSync(path.join(root, 'modules.list'), names.join('\n') + '\n');
  fs.writeFileSync(path.join(root, 'init'), INIT, { mode: 0o755 });
  const out = path.join(dir, 'initramfs.cpio');
  // busybox cpio reads the file list from stdin, relative to the cwd.
  const list = spawnSync('/bin/busybox', ['find', '.'], { cwd: root, encoding: 'utf8' });
  const r = spawnSync('/bin/busybox', ['cpio', '-o', '-H', 'newc'], { cwd: root, input: list.stdout, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`busybox cpio failed: ${r.stderr}`);
  fs.writeFileSync(out, r.stdout);
  fs.rmSync(root, { recursive: true, force: true });
  return out;
}
