/**
 * Real `sqlite-ha serve` processes (the built CLI, dist/cli/main.js) for the failover and security
 * tests: started on free loopback ports, their listening line parsed, killed in afterAll.
 */
import { cleanEnv, killAll, Proc, startProc, waitFor } from '../cli/helpers';
import { CLI } from '../cli/helpers';

export { killAll };

export interface ServeNode {
  proc: Proc;
  url: string;
  node: string;
}

export async function startServeNode(
  db: string, endpoints: string[], prefix: string, nodeId: string, extra: string[] = [], env: Record<string, string> = {},
): Promise<ServeNode> {
  const proc = startProc(process.execPath, [
    CLI, 'serve', db, '--endpoints', endpoints.join(','), '--prefix', prefix, '--listen', '127.0.0.1:0',
    '--node-id', nodeId, '--lease-ttl-ms', '2000', ...(extra.includes('--acquire-timeout-ms') ? [] : ['--acquire-timeout-ms', '8000']), ...extra,
  ], cleanEnv(env));
  const line = await waitFor(`${nodeId} listening`, () => {
    if (proc.child.exitCode !== null) throw new Error(`serve ${nodeId} exited ${proc.child.exitCode}: ${proc.stderr}`);
    return proc.lines.find((l) => l.includes('"listening"'));
  }, 20000);
  return { proc, url: JSON.parse(line).url, node: nodeId };
}

/** GET /health of a node; null when it does not answer. */
export async function healthOf(url: string): Promise<{ status: number; body: any } | null> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(3000) });
    return { status: res.status, body: await res.json() };
  } catch {
    return null;
  }
}
