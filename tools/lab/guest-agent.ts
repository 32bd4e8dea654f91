/**
 * Runs inside a lab VM (chrooted into the host root): mounts what agent.json asks for, connects to
 * the host's control server at 10.0.2.2 and serves its requests: exec a command, spawn a named
 * long-running process (its stdout lines and exit become events), signal it, report the clock.
 * Exits when the connection drops for good; bounded retries everywhere.
 *
 *   node build/tools/lab/guest-agent.js <run dir>/<vm>/agent.json
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';

export interface AgentConfig {
  vm: string;
  host: string;
  port: number;
  /** Shell commands run once before connecting (modprobe, mount); each must exit 0. */
  setup: string[];
}

function main(): void {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as AgentConfig;
  for (const cmd of cfg.setup) {
    let ok = false;
    for (let i = 0; i < 30 && !ok; i++) {
      const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', timeout: 120000 });
      ok = r.status === 0;
      if (!ok) {
        process.stderr.write(`agent ${cfg.vm}: '${cmd}' failed (${r.status}): ${r.stderr}\n`);
        spawnSync('sleep', ['2']);
      }
    }
    if (!ok) process.exit(2);
  }
  const procs = new Map<string, ChildProcess>();
  const sock = net.connect({ host: cfg.host, port: cfg.port });
  const send = (obj: unknown): void => void sock.write(JSON.stringify(obj) + "\n");
  sock.on('connect', () => send({ hello: cfg.vm }));
  sock.on('error', (e) => {
    process.stderr.write(`agent ${cfg.vm}: control connection: ${e.message}\n`);
    process.exit(3);
  });
  sock.on('close', () => {
    for (const p of procs.values()) p.kill('SIGKILL');
    process.exit(0);
  });
  let buf = '';
  sock.on('data', (d) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) handle(JSON.parse(line));
    }
  });

  function handle(req: any): void {
    const reply = (obj: Record<string, unknown>): void => send({ id: req.id, ...obj });
    try {
      switch (req.cmd) {
        case 'time':
          return reply({ now: Date.now() });
        case 'exec': {
          const child = spawn(req.argv[0], req.argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          child.stdout!.on('data', (d) => (stdout += d));
          child.stderr!.on('data', (d) => (stderr += d));
          const timer = setTimeout(() => child.kill('SIGKILL'), req.timeoutMs ?? 120000);
          child.on('error', (e) => (clearTimeout(timer), reply({ code: null, stdout, stderr: stderr + e.message })));
          child.on('close', (code) => (clearTimeout(timer), reply({ code, stdout, stderr })));
          return;
        }
        case 'spawn': {
          const child = spawn(req.argv[0], req.argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
          procs.set(req.name, child);
          let out = '';
          child.stdout!.on('data', (d) => {
            out += d;
            let j: number;
            while ((j = out.indexOf('\n')) >= 0) {
              send({ ev: 'out', name: req.name, line: out.slice(0, j) });
              out = out.slice(j + 1);
            }
          });
          child.stderr!.on('data', (d) => send({ ev: 'err', name: req.name, line: String(d).slice(0, 4000) }));
          child.on('exit', (code, signal) => {
            if (procs.get(req.name) === child) procs.delete(req.name);
            send({ ev: 'exit', name: req.name, code, signal });
          });
          child.on('error', (e) => send({ ev: 'err', name: req.name, line: e.message }));
          return reply({ pid: child.pid ?? -1 });
        }
        case 'signal': {
          const p = procs.get(req.name);
          return reply({ ok: p ? p.kill(req.sig) : false });
        }
        default:
          return reply({ error: `unknown command ${req.cmd}` });
      }
    } catch (err) {
      reply({ error: (err as Error).message });
    }
  }
}

if (require.main === module) main();
