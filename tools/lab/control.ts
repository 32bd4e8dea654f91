/**
 * The host end of the control channel. Each guest's agent (guest-agent.ts) connects out to
 * 10.0.2.2:<port> (the host's 127.0.0.1) and says hello with its VM name; the host then sends
 * requests ({id, cmd, ...}, answered by {id, ...}) and receives events from the guest's processes
 * ({ev: 'out' | 'exit', name, ...}). Newline-delimited JSON both ways.
 */
import { EventEmitter } from 'events';
import * as net from 'net';

export interface AgentEvent {
  ev: 'out' | 'exit' | 'err';
  name: string;
  line?: string;
  code?: number | null;
  signal?: string | null;
}

/** One connected guest agent. */
export class Agent extends EventEmitter {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** Host-minus-guest clock offset samples: [guest ms, offset ms, round trip ms]. */
  readonly clock: [number, number, number][] = [];
  closed = false;

  constructor(readonly vm: string, private readonly sock: net.Socket, rest: string) {
    super();
    let buf = rest;
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) this.onLine(line);
      }
    });
    const end = () => {
      if (this.closed) return;
      this.closed = true;
      for (const p of this.pending.values()) (clearTimeout(p.timer), p.reject(new Error(`agent ${vm} disconnected`)));
      this.pending.clear();
      this.emit('close');
    };
    sock.on('close', end);
    sock.on('error', end);
  }

  private onLine(line: string): void {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof msg.id === 'number') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${this.vm}: ${msg.error}`));
      else p.resolve(msg);
    } else if (msg.ev) {
      this.emit('event', msg as AgentEvent);
    }
  }

  request<T = any>(cmd: Record<string, unknown>, timeoutMs = 120000): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`agent ${this.vm} disconnected`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.vm}: ${String(cmd.cmd)} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sock.write(JSON.stringify({ id, ...cmd }) + '\n');
    });
  }

  /** Runs a command in the guest (argv, no shell); resolves with its exit code and output. */
  exec(argv: string[], timeoutMs = 120000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return this.request({ cmd: 'exec', argv, timeoutMs }, timeoutMs + 10000);
  }

  spawn(name: string, argv: string[]): Promise<{ pid: number }> {
    return this.request({ cmd: 'spawn', name, argv });
  }

  signal(name: string, sig: NodeJS.Signals): Promise<{ ok: boolean }> {
    return this.request({ cmd: 'signal', name, sig }, 30000);
  }

  /** One clock sample (NTP-style midpoint); kept in `clock`. */
  async sampleClock(): Promise<void> {
    const t0 = Date.now();
    const r = await this.request<{ now: number }>({ cmd: 'time' }, 30000);
    const t1 = Date.now();
    this.clock.push([r.now, (t0 + t1) / 2 - r.now, t1 - t0]);
  }

  /** Host time for a guest timestamp: the offset of the best (lowest round trip) nearby samples. */
  toHost(guestMs: number): number {
    return guestMs + clockOffset(this.clock, guestMs);
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Offset at guest time t: from the sample with the smallest round trip among the 5 nearest. */
export function clockOffset(samples: [number, number, number][], t: number): number {
  if (!samples.length) return 0;
  const near = samples.slice().sort((a, b) => Math.abs(a[0] - t) - Math.abs(b[0] - t)).slice(0, 5);
  return near.reduce((best, s) => (s[2] < best[2] ? s : best))[1];
}

/** Listens on 127.0.0.1 for agents; waitFor(vm) resolves when that VM's agent says hello. */
export class ControlServer {
  private readonly server: net.Server;
  private readonly agents = new Map<string, Agent>();
  private readonly waiters = new Map<string, ((a: Agent) => void)[]>();
  port = 0;

  constructor() {
    this.server = net.createServer((sock) => {
      let buf = '';
      const onData = (d: Buffer) => {
        buf += d.toString('utf8');
        const i = buf.indexOf('\n');
        if (i < 0) return;
        sock.off('data', onData);
        let hello: { hello?: string };
        try {
          hello = JSON.parse(buf.slice(0, i));
        } catch {
          sock.destroy();
          return;
        }
        if (!hello.hello) return void sock.destroy();
        const agent = new Agent(hello.hello, sock, buf.slice(i + 1));
        this.agents.get(hello.hello)?.close();
        this.agents.set(hello.hello, agent);
        for (const w of this.waiters.get(hello.hello) ?? []) w(agent);
        this.waiters.delete(hello.hello);
      };
      sock.on('data', onData);
      sock.on('error', () => undefined);
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  agent(vm: string): Agent | undefined {
    const a = this.agents.get(vm);
    return a && !a.closed ? a : undefined;
  }

  waitFor(vm: string, timeoutMs: number): Promise<Agent> {
    const a = this.agent(vm);
    if (a) return Promise.resolve(a);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`VM ${vm}: no agent within ${timeoutMs} ms`)), timeoutMs);
      const list = this.waiters.get(vm) ?? [];
      list.push((ag) => (clearTimeout(timer), resolve(ag)));
      this.waiters.set(vm, list);
    });
  }

  close(): void {
    for (const a of this.agents.values()) a.close();
    this.server.close();
  }
}
