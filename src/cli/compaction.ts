/**
 * doctor's view of etcd's history compaction and space. Commit records and lockless reads write to
 * etcd constantly, so a cluster without auto-compaction grows until it hits its space quota and
 * refuses every write (the NOSPACE alarm). etcd 3.4 does not tell a client whether
 * --auto-compaction-retention is set; what a client can see is the compact revision (found here
 * by bisecting ranges at old revisions: below it etcd answers "required revision has been
 * compacted"), the current revision, the backend size and the alarms. So: never compacted while
 * already past `warnRevisions` means auto-compaction is off (or its retention is longer than the
 * cluster has existed); a young cluster cannot be judged.
 */
import type { Etcd3 } from 'etcd3';
import type { Finding } from './doctor';

/** What doctor reports about compaction and space. */
export interface CompactionState {
  revision: number;
  /** 0: never compacted. */
  compactRevision: number;
  dbSizeBytes: number;
  dbSizeInUseBytes: number | null;
  alarms: string[];
}

/** Reads the revisions, the backend size and the alarms; `key` is any key the user may read. */
export async function readCompactionState(client: Etcd3, key: string): Promise<CompactionState> {
  const st = await client.maintenance.status();
  const head = await client.kv.range({ key: Buffer.from(key), limit: 1, keys_only: true });
  const revision = Number(head.header.revision);
  const readable = async (rev: number): Promise<boolean> => {
    try {
      await client.kv.range({ key: Buffer.from(key), limit: 1, keys_only: true, revision: String(rev) });
      return true;
    } catch (err) {
      if (/compacted/i.test(String((err as Error)?.message))) return false;
      throw err;
    }
  };
  // The oldest readable revision is the compact revision (etcd keeps it); 1 readable: never compacted.
  let compactRevision = 0;
  if (revision > 1 && !(await readable(1))) {
    let lo = 1; // not readable
    let hi = revision; // readable
    for (let i = 0; i < 64 && hi - lo > 1; i++) {
      const mid = Math.floor((lo + hi) / 2);
      if (await readable(mid)) hi = mid;
      else lo = mid;
    }
    compactRevision = hi;
  }
  let alarms: string[] = [];
  try {
    const res = await client.maintenance.alarm({ action: 'Get', memberID: '0', alarm: 'None' });
    alarms = (res.alarms ?? []).map((a) => String(a.alarm)).filter((a) => a !== 'None' && a !== '0');
  } catch {
    alarms = []; // a non-root user may not list alarms; the size still tells
  }
  const inUse = (st as { dbSizeInUse?: string }).dbSizeInUse;
  return {
    revision,
    compactRevision,
    dbSizeBytes: Number(st.dbSize),
    dbSizeInUseBytes: inUse === undefined ? null : Number(inUse),
    alarms,
  };
}

/** etcd's default backend quota (--quota-backend-bytes): 2 GiB. */
const DEFAULT_QUOTA_BYTES = 2 * 1024 ** 3;

/** doctor's verdict on compaction and space, honest about what a client cannot see. */
export function compactionFinding(c: CompactionState, warnRevisions: number): Finding {
  const mb = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MB`;
  const size = `backend ${mb(c.dbSizeBytes)}${c.dbSizeInUseBytes !== null ? ` (${mb(c.dbSizeInUseBytes)} in use)` : ''}`;
  const data = { ...c, warnRevisions };
  if (c.alarms.includes('NOSPACE')) {
    return {
      check: 'compaction', verdict: 'fail', data,
      summary: `etcd raised the NOSPACE alarm (${size}): it refuses every write, so no node can take or keep a lease`,
      advice: 'compact, defragment and disarm (etcdctl compact, etcdctl defrag, etcdctl alarm disarm), then turn auto-compaction on (docs/SECURITY.md)',
    };
  }
  const nearQuota = c.dbSizeBytes > 0.8 * DEFAULT_QUOTA_BYTES;
  const quotaAdvice = nearQuota
    ? `; the backend is above 80% of etcd's default 2 GiB quota: defragment (etcdctl defrag) or raise --quota-backend-bytes`
    : '';
  if (c.compactRevision === 0) {
    if (c.revision >= warnRevisions) {
      return {
        check: 'compaction', verdict: 'warn', data,
        summary: `etcd was never compacted and is at revision ${c.revision}, ${size}: auto-compaction looks off ` +
          '(or its retention is longer than this cluster has existed); commit records and lockless reads keep adding history',
        advice: 'start etcd with --auto-compaction-retention (e.g. 1 for one hour, periodic mode), see docs/SECURITY.md' + quotaAdvice,
      };
    }
    return {
      check: 'compaction', verdict: nearQuota ? 'warn' : 'ok', data,
      summary: `etcd not compacted yet, at revision ${c.revision} (${size}): too young to tell whether auto-compaction is on`,
      advice: nearQuota ? quotaAdvice.slice(2) : null,
    };
  }
  return {
    check: 'compaction', verdict: nearQuota ? 'warn' : 'ok', data,
    summary: `etcd compacted up to revision ${c.compactRevision} of ${c.revision} (${c.revision - c.compactRevision} revisions of history kept), ${size}`,
    advice: nearQuota ? quotaAdvice.slice(2) : null,
  };
}
