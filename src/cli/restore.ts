/**
 * `sqlite-ha restore <dir> --to-txid N | --to-time T --out <file>`: point-in-time restore from a
 * standby chain, offline (no etcd). The output is a plain SQLite file at the newest position with
 * txid <= N (or committed at or before T), verified like a promotion; it is never written over.
 */
import * as path from 'path';
import { buildFromChain } from '../standby/promote';
import { UsageError } from './settings';

export interface RestoreOptions {
  toTxid?: number;
  toTime?: string;
  out: string;
  json?: boolean;
}

export function runRestore(dir: string, opts: RestoreOptions, out: NodeJS.WritableStream): number {
  if ((opts.toTxid === undefined) === (opts.toTime === undefined)) {
    throw new UsageError('restore needs exactly one of --to-txid <n> or --to-time <ISO time or ms since the epoch>');
  }
  let timeMs: number | undefined;
  if (opts.toTime !== undefined) {
    timeMs = /^\d+$/.test(opts.toTime) ? Number(opts.toTime) : Date.parse(opts.toTime);
    if (!Number.isFinite(timeMs)) throw new UsageError(`invalid --to-time ${JSON.stringify(opts.toTime)}: expected an ISO 8601 time or ms since the epoch`);
  }
  const file = path.resolve(opts.out);
  const state = buildFromChain(path.resolve(dir), file, opts.toTxid !== undefined ? { txid: opts.toTxid } : { timeMs });
  if (opts.json) out.write(JSON.stringify({ out: file, ...state }) + '\n');
  else {
    out.write(`Restored ${file} at txid ${state.txid} (fence ${state.fence}, committed ${new Date(state.timeMs).toISOString()}); ` +
      `checksum ${state.checksum} verified, integrity_check ok.\n`);
  }
  return 0;
}
