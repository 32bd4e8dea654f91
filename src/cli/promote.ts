/**
 * `sqlite-ha promote <db> --from <dir> --to <new-path>`: the primary's storage is lost; make the
 * standby the primary. In order:
 *   1. record the promotion in etcd (`<db>/promoted`: new path, epoch = that write's revision),
 *      so from now on no node acquires the lease for the old path (DatabaseMovedError);
 *   2. revoke every lease queued on or holding the lock, so a still-running old holder loses it;
 *   3. wait out the longest lease TTL: by then no old holder can start a commit (commit deadline),
 *      and whatever it committed before is flushed to the standby if its volume still answered;
 *   4. verify the chain (SHA-256 per file, links, the whole-database checksum, integrity_check)
 *      and build the new primary at the newest txid; raise its fence and epoch to the promotion's;
 *   5. publish a commit record at that txid and epoch (so new holders do not wait for txids that
 *      were lost) and the info record with the new path;
 *   6. print the txid reached and how many acknowledged writes (etcd's commit record) it lacks.
 */
import * as path from 'path';
import { buildFromChain, fenceFile } from '../standby/promote';
import { CommitRecord, DatabaseInfo, Keys, LockRecord, parseJson, prefixEnd, PromotionRecord } from '../coordinator/etcd/keys';
import { ConnectionSettings, UsageError, createClient, withDeadline } from './connection';

export interface PromoteOptions {
  from: string;
  to: string;
  json?: boolean;
  /** Lease TTL to wait out when etcd has no record of it. */
  waitMs?: number;
}

export interface PromoteResult {
  db: string;
  path: string;
  epoch: number;
  txid: number;
  ackedTxid: number;
  /** Acknowledged commits (txids) not in the standby: lost. */
  lostWrites: number;
  revokedLeases: number;
  waitedMs: number;
  checksum: string;
  elapsedMs: number;
}

export async function runPromote(s: ConnectionSettings, db: string, opts: PromoteOptions, out: NodeJS.WritableStream): Promise<number> {
  if (!opts.from || !opts.to) throw new UsageError('promote needs --from <standby dir> and --to <new primary path>');
  const started = Date.now();
  const to = path.resolve(opts.to);
  const keys = new Keys(s.prefix, db);
  const client = createClient(s);
  try {
    const [commitRes, infoRes, lockRes] = await withDeadline(s, 'reading the database records', () => Promise.all([
      client.kv.range({ key: Buffer.from(keys.commit) }),
      client.kv.range({ key: Buffer.from(keys.info) }),
      client.kv.range({ key: Buffer.from(keys.lockPrefix), range_end: prefixEnd(keys.lockPrefix) }),
    ]));
    const info = parseJson<DatabaseInfo>(infoRes.kvs[0]?.value);
    // 1. The promotion record; its revision is the new epoch, above every lease granted so far.
    const record: PromotionRecord = {
      path: to, previousPath: info?.path ?? null, epoch: 0, txid: 0,
      ackedTxid: parseJson<CommitRecord>(commitRes.kvs[0]?.value)?.txid ?? 0,
      standbyDir: path.resolve(opts.from), time: Date.now(),
    };
    const put = await withDeadline(s, 'recording the promotion', () =>
      client.kv.put({ key: Buffer.from(keys.promoted), value: Buffer.from(JSON.stringify(record)) }));
    const epoch = Number(put.header.revision);
    // 2. Every lease on the lock: the holder and anyone queued (they were queued for the old path).
    let revoked = 0;
    let ttlMs = info?.leaseTtlMs ?? opts.waitMs ?? 5000;
    for (const kv of lockRes.kvs) {
      ttlMs = Math.max(ttlMs, parseJson<LockRecord>(kv.value)?.ttlMs ?? 0);
      if (kv.lease === '0') continue;
      await withDeadline(s, 'revoking a lease', () => client.leaseClient.leaseRevoke({ ID: kv.lease })).then(
        () => revoked++, () => undefined, // already gone
      );
    }
    // 3. No old holder can start a commit past its last keep-alive + TTL.
    const waitedMs = ttlMs + 500;
    await new Promise((r) => setTimeout(r, waitedMs));
    // The old holder's final commits may have been acknowledged meanwhile: read the record again.
    const after = await withDeadline(s, 'reading the commit record', () => client.kv.range({ key: Buffer.from(keys.commit) }));
    const ackedTxid = Math.max(record.ackedTxid, parseJson<CommitRecord>(after.kvs[0]?.value)?.txid ?? 0);
    // 4. The new primary.
    const state = buildFromChain(path.resolve(opts.from), to);
    fenceFile(to, epoch);
    // 5. Records for the nodes that open the new path.
    const final: PromotionRecord = { ...record, epoch, txid: state.txid, ackedTxid, time: Date.now() };
    const commit: CommitRecord = { txid: state.txid, fence: epoch, node: 'sqlite-ha promote', time: Date.now(), epoch };
    const newInfo: DatabaseInfo | null = info ? { ...info, path: to, node: 'sqlite-ha promote' } : null;
    await withDeadline(s, 'publishing the promotion', () => client.kv.txn({
      compare: [],
      success: [
        { request_put: { key: Buffer.from(keys.promoted), value: Buffer.from(JSON.stringify(final)) } },
        { request_put: { key: Buffer.from(keys.commit), value: Buffer.from(JSON.stringify(commit)) } },
        ...(newInfo ? [{ request_put: { key: Buffer.from(keys.info), value: Buffer.from(JSON.stringify(newInfo)) } }] : []),
      ],
      failure: [],
    }));
    const result: PromoteResult = {
      db, path: to, epoch, txid: state.txid, ackedTxid, lostWrites: Math.max(0, ackedTxid - state.txid),
      revokedLeases: revoked, waitedMs, checksum: state.checksum, elapsedMs: Date.now() - started,
    };
    if (opts.json) {
      out.write(JSON.stringify(result) + '\n');
    } else {
      out.write(
        `Promoted ${db} to ${to} at epoch ${epoch}: standby txid ${state.txid} reached (chain and checksum ${state.checksum} verified, integrity_check ok).\n` +
          `Last acknowledged commit in etcd: txid ${ackedTxid}: ` +
          (result.lostWrites === 0 ? 'every acknowledged write is in the new primary.\n'
            : `${result.lostWrites} acknowledged write(s) (txids ${state.txid + 1}..${ackedTxid}) are NOT in the new primary.\n`) +
          `Revoked ${revoked} lease(s); nodes still opening ${record.previousPath ?? 'the old path'} now get DatabaseMovedError and must reopen ${to}.\n`,
      );
    }
    return 0;
  } finally {
    client.close();
  }
}
