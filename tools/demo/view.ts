/**
 * What the demo shows while it runs. On a terminal with etcd, the `sqlite-ha monitor` live view
 * owns the screen and the demo's own timeline lines are held back and printed once it closes;
 * otherwise (no terminal, or the lockfile coordinator, which the monitor cannot watch) the demo
 * prints concise event lines. Every line also goes to logs/demo.log with its time.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { killAtExit } from './cleanup';

export type ViewMode = 'lines' | 'monitor' | 'quiet';

export class Reporter {
  private held: string[] = [];
  private monitor: ChildProcess | null = null;
  private monitorExited: Promise<void> = Promise.resolve();
  private stoppingMonitor = false;
  private readonly log: fs.WriteStream;

  constructor(
    private mode: ViewMode,
    private readonly out: NodeJS.WriteStream,
    private readonly t0: number,
    logFile: string,
  ) {
    this.log = fs.createWriteStream(logFile, { flags: 'a' });
  }

  get showingMonitor(): boolean {
    return this.mode === 'monitor';
  }

  /** Printed at once whatever the mode (the first lines, the summary). */
  print(text: string): void {
    this.out.write(text + '\n');
    this.logLine(text);
  }

  /** A moment of the timeline: printed now, or after the monitor closes, or (quiet) only logged. */
  line(text: string): void {
    const stamped = `${this.stamp()}  ${text}`;
    this.logLine(stamped);
    if (this.mode === 'lines') this.out.write(stamped + '\n');
    else if (this.mode === 'monitor') this.held.push(stamped);
  }

  /** A periodic status line: shown only as event lines, always logged. */
  progress(text: string): void {
    const stamped = `${this.stamp()}  ${text}`;
    this.logLine(stamped);
    if (this.mode === 'lines') this.out.write(stamped + '\n');
  }

  /**
   * Starts `sqlite-ha monitor` on this terminal. If it cannot start or exits early, the demo falls
   * back to event lines and says why.
   */
  startMonitor(cliJs: string, endpoints: string[], prefix: string, logDir: string): void {
    if (this.mode !== 'monitor') return;
    if (!fs.existsSync(cliJs)) {
      this.fallBack(`the monitor is not built (${cliJs} missing)`);
      return;
    }
    const errFile = path.join(logDir, 'monitor.log');
    const errFd = fs.openSync(errFile, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SQLITE_HA_')));
    // stdin stays with the demo: Ctrl-C reaches both as SIGINT; the monitor restores the screen.
    const child = spawn(process.execPath, [cliJs, 'monitor', '--endpoints', endpoints.join(','), '--prefix', prefix], {
      stdio: ['ignore', 'inherit', errFd],
      env,
    });
    fs.closeSync(errFd);
    const unregister = killAtExit('monitor', child);
    this.monitor = child;
    this.monitorExited = new Promise((resolve) => {
      child.on('error', () => undefined);
      child.on('close', (code, signal) => {
        unregister();
        this.monitor = null;
        if (!this.stoppingMonitor && this.mode === 'monitor') {
          this.fallBack(`the monitor exited early (${signal ?? `code ${code}`}; see ${errFile})`);
        }
        resolve();
      });
    });
  }

  /** A Ctrl-C reaches the monitor too: its exit is then no reason to fall back to event lines. */
  expectMonitorExit(): void {
    this.stoppingMonitor = true;
  }

  /** Stops the monitor (it leaves its screen) and prints the lines held while it ran. */
  async stopMonitor(): Promise<void> {
    const child = this.monitor;
    this.stoppingMonitor = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        this.out.write('\x1b[?25h\x1b[?1049l'); // it could not restore the screen itself
      }, 3000);
      await this.monitorExited;
      clearTimeout(timer);
    }
    if (this.mode === 'monitor') {
      this.mode = 'lines';
      if (this.held.length > 0) {
        this.out.write('What happened while the monitor was on screen:\n' + this.held.join('\n') + '\n');
      }
      this.held = [];
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.log.end(() => r()));
  }

  private fallBack(why: string): void {
    this.mode = 'lines';
    this.out.write(`${why}: showing event lines instead\n`);
    if (this.held.length > 0) this.out.write(this.held.join('\n') + '\n');
    this.held = [];
  }

  private stamp(): string {
    return `+${((Date.now() - this.t0) / 1000).toFixed(1).padStart(5)}s`;
  }

  private logLine(text: string): void {
    this.log.write(`${new Date().toISOString()} ${text}\n`);
  }
}
