/**
 * compose/ cannot run here (no Docker), so it is checked statically: Debian's docker-compose (v1)
 * must accept the file, everything it points to in this repository must exist, and the NFS mount
 * must keep the options docs/HAZARDS.md H1-H4 require. Checks run on `docker-compose config` output, so
 * anchors, merges and `${VAR:-default}` are resolved exactly as Compose resolves them.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parse } from 'yaml';
import { WORKLOAD_SETTINGS } from '../../tools/cluster/workload-config';

const ROOT = path.resolve(__dirname, '../..');
const COMPOSE_FILE = path.join(ROOT, 'compose/docker-compose.yml');

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[] | string;
  environment?: Record<string, string | null>;
  volumes?: string[];
  healthcheck?: { test: string[] | string };
  depends_on?: Record<string, { condition: string }>;
  networks?: Record<string, { ipv4_address?: string } | null>;
}
interface ComposeConfig {
  services: Record<string, Service>;
  volumes: Record<string, { driver?: string; driver_opts?: Record<string, string> }>;
}

/** Runs `docker-compose config` with only PATH and HOME, so the defaults in the file apply. */
function composeConfig(file = COMPOSE_FILE): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('docker-compose', ['-f', file, 'config'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    timeout: 30000,
  });
  if (r.error) throw new Error(`docker-compose could not run (install Debian's docker-compose package): ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Repository paths a command argument names; dist/ files must have their TypeScript source. */
function sourceOf(arg: string): string | null {
  if (!/^(dist|build|src|tools|scripts|compose)\//.test(arg)) return null;
  const built = /^(?:dist|build\/src)\/(.+)\.js$/.exec(arg);
  if (built) return `src/${built[1]}.ts`;
  const tool = /^build\/tools\/(.+)\.js$/.exec(arg);
  return tool ? `tools/${tool[1]}.ts` : arg;
}

function commandOf(s: Service): string[] {
  return typeof s.command === 'string' ? s.command.split(/\s+/) : s.command ?? [];
}

/** Dockerfile instructions as [keyword, args], with line continuations joined. */
function dockerInstructions(text: string): Array<[string, string[]]> {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [kw, ...rest] = l.split(/\s+/);
      const body = rest.join(' ');
      const args = body.startsWith('[') ? (JSON.parse(body) as string[]) : rest;
      return [kw.toUpperCase(), args];
    });
}

describe('compose/docker-compose.yml', () => {
  let result: ReturnType<typeof composeConfig>;
  let cfg: ComposeConfig;

  beforeAll(() => {
    result = composeConfig();
    cfg = parse(result.stdout) as ComposeConfig;
  });

  it('is accepted by docker-compose config without warnings', () => {
    expect(result.stderr).not.toMatch(/WARNING|ERROR/);
    expect(result.status).toBe(0);
    expect(Object.keys(cfg.services).sort()).toEqual([
      'app1', 'app2', 'app3', 'etcd1', 'etcd2', 'etcd3', 'lb', 'monitor', 'nfs', 'serve1', 'serve2', 'serve3',
    ]);
  });

  it('builds from this repository with a Dockerfile whose COPY sources exist', () => {
    const built = Object.entries(cfg.services).filter(([, s]) => s.build);
    expect(built.map(([name]) => name).sort()).toEqual(['app1', 'app2', 'app3', 'monitor', 'serve1', 'serve2', 'serve3']);
    for (const [name, s] of built) {
      const context = s.build!.context;
      expect({ name, context: fs.existsSync(context) && fs.statSync(context).isDirectory() }).toEqual({ name, context: true });
      const dockerfile = path.resolve(context, s.build!.dockerfile ?? 'Dockerfile');
      expect({ name, dockerfile: fs.existsSync(dockerfile) }).toEqual({ name, dockerfile: true });
      for (const [kw, args] of dockerInstructions(fs.readFileSync(dockerfile, 'utf8'))) {
        if ((kw !== 'COPY' && kw !== 'ADD') || args.some((a) => a.startsWith('--from'))) continue;
        for (const src of args.filter((a) => !a.startsWith('--')).slice(0, -1)) {
          expect({ dockerfile, src, exists: fs.existsSync(path.resolve(context, src)) }).toEqual({ dockerfile, src, exists: true });
        }
      }
    }
  });

  it('runs only scripts that exist in the repository (dist/*.js built from src/*.ts)', () => {
    const referenced: string[] = [];
    const dockerfile = fs.readFileSync(path.join(ROOT, 'compose/Dockerfile'), 'utf8');
    const cmds = dockerInstructions(dockerfile).filter(([kw]) => kw === 'CMD' || kw === 'ENTRYPOINT');
    const built = Object.values(cfg.services).filter((s) => s.build);
    for (const argv of [...cmds.map(([, a]) => a), ...built.map(commandOf), ...built.map((s) => toArray(s.healthcheck?.test))]) {
      for (const arg of argv) {
        const src = sourceOf(arg);
        if (src) referenced.push(src);
      }
    }
    expect(referenced).toEqual(expect.arrayContaining(['tools/cluster/workload.ts', 'src/cli/main.ts']));
    for (const src of referenced) expect({ src, exists: fs.existsSync(path.join(ROOT, src)) }).toEqual({ src, exists: true });
    // Host bind mounts, if any, must exist too (named volumes have no path).
    for (const s of Object.values(cfg.services)) {
      for (const v of s.volumes ?? []) {
        const host = v.split(':')[0];
        if (host.startsWith('/') || host.startsWith('.')) expect({ host, exists: fs.existsSync(host) }).toEqual({ host, exists: true });
      }
    }
  });

  it('waits only on services that exist and have a healthcheck', () => {
    for (const [name, s] of Object.entries(cfg.services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        expect({ name, dep, exists: dep in cfg.services }).toEqual({ name, dep, exists: true });
        if (condition === 'service_healthy') {
          expect({ name, dep, healthcheck: Boolean(cfg.services[dep].healthcheck) }).toEqual({ name, dep, healthcheck: true });
        }
      }
    }
  });

  it('gives the workload and the monitor only settings they read, pointing at real services', () => {
    const known = new Set(WORKLOAD_SETTINGS.map((s) => s.env));
    const apps = Object.entries(cfg.services).filter(([, s]) => commandOf(s).includes('build/tools/cluster/workload.js'));
    expect(apps.map(([n]) => n).sort()).toEqual(['app1', 'app2', 'app3']);
    const nodeIds = new Set<string>();
    for (const [name, s] of apps) {
      const env = s.environment ?? {};
      for (const key of Object.keys(env).filter((k) => k.startsWith('SQLITE_HA_'))) {
        expect({ name, key, known: known.has(key) }).toEqual({ name, key, known: true });
      }
      expect(env.SQLITE_HA_DB_PATH).toMatch(/^\/shared\//);
      expect(s.volumes).toContain('shared:/shared:rw');
      nodeIds.add(String(env.SQLITE_HA_NODE_ID));
    }
    expect(nodeIds.size).toBe(apps.length);
    for (const [, s] of [...apps, ['monitor', cfg.services.monitor] as const]) {
      const env = s.environment ?? {};
      expect(env.SQLITE_HA_PREFIX).toBe('/sqlite-ha');
      for (const url of String(env.SQLITE_HA_ETCD_ENDPOINTS).split(',')) {
        const host = new URL(url).hostname;
        expect({ url, service: host in cfg.services && /etcd/.test(cfg.services[host].image ?? '') }).toEqual({ url, service: true });
      }
    }
  });

  it('puts HAProxy in front of every serve node, with health checks on GET /health', () => {
    const serveNodes = Object.entries(cfg.services).filter(([, s]) => commandOf(s).includes('serve'));
    expect(serveNodes.map(([n]) => n).sort()).toEqual(['serve1', 'serve2', 'serve3']);
    for (const [name, s] of serveNodes) {
      const argv = commandOf(s);
      const flag = (f: string) => argv[argv.indexOf(f) + 1];
      expect({ name, db: argv[argv.indexOf('serve') + 1] }).toEqual({ name, db: expect.stringMatching(/^\/shared\//) });
      expect({ name, node: flag('--node-id'), url: flag('--advertise-url') }).toEqual({ name, node: name, url: `http://${name}:8080` });
      expect(flag('--listen')).toBe('0.0.0.0:8080');
      expect(toArray(s.healthcheck?.test).join(' ')).toContain('/health');
    }
    const lb = cfg.services.lb;
    const mount = (lb.volumes ?? []).find((v) => v.endsWith('/usr/local/etc/haproxy/haproxy.cfg:ro'))!;
    const haproxy = fs.readFileSync(mount.split(':')[0], 'utf8');
    expect(haproxy).toMatch(/option httpchk GET \/health/);
    expect(haproxy).toMatch(/http-check expect status 200/);
    expect(haproxy).toMatch(/retries 0/); // Hrana requests must never be sent twice
    const servers = [...haproxy.matchAll(/^\s*server\s+(\S+)\s+(\S+):8080/gm)].map((m) => [m[1], m[2]]);
    expect(servers).toEqual(serveNodes.map(([n]) => [n, n]));
    expect(Object.keys(lb.depends_on ?? {}).sort()).toEqual(['serve1', 'serve2', 'serve3']);
  });

  it('mounts the shared database over NFSv4 with locks that cross hosts (docs/HAZARDS.md H1-H4)', () => {
    const nfsVolumes = Object.entries(cfg.volumes).filter(([, v]) => v.driver_opts?.type === 'nfs');
    expect(nfsVolumes.map(([n]) => n)).toEqual(['shared']);
    const opts = nfsVolumes[0][1].driver_opts!.o.split(',');
    expect(opts).toEqual(expect.arrayContaining(['hard', 'lookupcache=positive']));
    expect(opts.find((o) => o.startsWith('nfsvers='))).toMatch(/^nfsvers=4(\.\d)?$/);
    expect(opts.filter((o) => o === 'nolock' || o === 'soft' || o === 'nocto' || o === 'noac' || /^local_lock=(?!none$)/.test(o))).toEqual([]);
    // The daemon mounts from the host, where service names do not resolve: addr must be the NFS
    // server's fixed address on the cluster network.
    const addr = opts.find((o) => o.startsWith('addr='))!.slice('addr='.length);
    const servers = Object.entries(cfg.services).filter(([, s]) =>
      Object.values(s.networks ?? {}).some((n) => n?.ipv4_address === addr));
    expect(servers.map(([n]) => n)).toEqual(['nfs']);
  });
});

function toArray(v: string[] | string | undefined): string[] {
  return v === undefined ? [] : typeof v === 'string' ? [v] : v;
}

describe('composeConfig', () => {
  it('fails on a compose file that references an undeclared volume', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compose-test-'));
    try {
      const file = path.join(dir, 'docker-compose.yml');
      fs.writeFileSync(file, 'services:\n  a:\n    image: busybox\n    volumes: ["missing:/x"]\n');
      const r = composeConfig(file);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/missing/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
