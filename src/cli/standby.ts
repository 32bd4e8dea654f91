/**
 * `sqlite-ha standby verify|apply|compact <dir>`: offline care of a standby chain (no etcd).
 *   verify   checks every file's SHA-256 and the links of the current generation, builds the
 *            newest state into a temporary file and compares its whole-database checksum
 *   apply    brings the materialised copy <dir>/<name> to the newest txid (crash-safe)
 *   compact  folds old segments into a snapshot (the writer only does this for small databases)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DEFAULTS } from '../options';
import { materialise } from '../standby/apply';
import { Chain } from '../standby/chain';
import { compact } from '../standby/compact';
import { chainName } from '../standby/promote';

export interface StandbyCliOptions {
  json?: boolean;
  retainSegments?: number;
  retainMs?: number;
}

export function runStandby(action: 'verify' | 'apply' | 'compact', dir: string, opts: StandbyCliOptions, out: NodeJS.WritableStream): number {
  const d = path.resolve(dir);
  const chain = new Chain(d, chainName(d));
  let result: Record<string, unknown>;
  if (action === 'apply') {
    result = { ...materialise(chain), copy: path.join(d, chain.name) };
  } else if (action === 'compact') {
    const removed = compact(chain, {
      retainSegments: opts.retainSegments ?? DEFAULTS.standbyRetainSegments, retainMs: opts.retainMs ?? DEFAULTS.standbyRetainMs,
    });
    result = { removed, generation: chain.current() };
  } else {
    const gen = chain.current()!;
    const walk = chain.walk(gen);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-verify-'));
    try {
      const state = materialise(chain, { out: path.join(tmp, 'copy.db'), verifyChecksum: true });
      result = { ok: walk.unlinked.length === 0, generation: gen, segments: walk.segments.length, unlinked: walk.unlinked.map((e) => path.basename(e.file)), txid: state.txid, checksum: state.checksum };
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  out.write(opts.json ? JSON.stringify(result) + '\n' : Object.entries(result).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join('\n') + '\n');
  return result.ok === false ? 1 : 0;
}
