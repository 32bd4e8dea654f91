/**
 * One QEMU TCG virtual machine: Debian's kernel, the run-time initramfs, the host root read-only
 * and the run dir read-write over virtio-9p, user-mode networking (10.0.2.2 = host loopback).
 * The guest runs <run>/<name>/boot.sh in a chroot of the host root; its console goes to
 * <run>/<name>/console.log. hardStop() is a power cut (SIGKILL of QEMU); pause() freezes the
 * whole machine (SIGSTOP of QEMU), clocks included.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { RunState } from './state';

/** The checkout the lab runs from (build/tools/lab → the repository root). */
const PROJECT_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface VmOptions {
  name: string;
  runDir: string;
  kernel: string;
  initramfs: string;
  memoryMb: number;
  bootScript: string;
  /** hostfwd rules, e.g. 'tcp:127.0.0.1:5000-:2049'. */
  hostfwd?: string[];
  /** Raw disk images attached as virtio block devices (/dev/vda, ...). */
  disks?: string[];
}

export class Vm {
  readonly dir: string;
  private proc: ChildProcess | null = null;
  private exitPromise: Promise<void> | null = null;

  constructor(private readonly state: RunState, readonly opts: VmOptions) {
    this.dir = path.join(opts.runDir, opts.name);
    fs.mkdirSync(this.dir, { recursive: true });
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Resolves when QEMU has exited (the guest powered off, or was killed). */
  get exited(): Promise<void> {
    return this.exitPromise ?? Promise.resolve();
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  start(): void {
    const o = this.opts;
    fs.writeFileSync(path.join(this.dir, 'boot.sh'), o.bootScript);
    const netdev = ['user', 'id=n0', ...(o.hostfwd ?? []).map((f) => `hostfwd=${f}`)].join(',');
    const args = [
      '-accel', 'tcg', '-m', String(o.memoryMb), '-smp', '1', '-display', 'none', '-no-reboot', '-nodefaults',
      '-name', `sqlite-ha-lab-${o.name}`,
      '-kernel', o.kernel, '-initrd', o.initramfs,
      '-append', `console=ttyS0 panic=-1 quiet lab.run=${o.runDir} lab.vm=${o.name} lab.root=${PROJECT_ROOT}`,
      '-virtfs', 'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
      '-virtfs', `local,path=${o.runDir},mount_tag=run,security_model=none,multidevs=remap`,
      // The project again, on its own: the guest puts tmpfs on /tmp, /run and /mnt, which would
      // hide a checkout that lives under one of them (CI clones anywhere).
      '-virtfs', `local,path=${PROJECT_ROOT},mount_tag=proj,security_model=none,readonly=on,multidevs=remap`,
      '-netdev', netdev, '-device', 'virtio-net-pci,netdev=n0',
      '-serial', `file:${path.join(this.dir, 'console.log')}`, '-monitor', 'none',
    ];
    for (const d of o.disks ?? []) args.push('-drive', `file=${d},format=raw,if=virtio,cache=none`);
    const log = fs.openSync(path.join(this.dir, 'qemu.log'), 'a');
    this.proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.proc.on('error', () => undefined);
    const p = this.proc;
    this.exitPromise = new Promise((r) => p.once('exit', () => r()));
    // The run dir is in QEMU's command line: the marker that it is ours.
    this.state.track(`vm-${o.name}`, p.pid!, `path=${o.runDir}`);
  }

  /** Power cut: SIGKILL of QEMU; the guest gets no chance to flush or unlock anything. */
  async hardStop(): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    p.kill('SIGCONT');
    p.kill('SIGKILL');
    await this.exitPromise;
    this.state.untrack(`vm-${this.opts.name}`);
  }

  /** Waits up to timeoutMs for the guest to power itself off, then cuts the power. */
  async shutdown(timeoutMs: number): Promise<void> {
    if (!this.running) return;
    await Promise.race([this.exitPromise, sleep(timeoutMs)]);
    await this.hardStop();
  }

  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  consoleTail(lines = 15): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'console.log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
