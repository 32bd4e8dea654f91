/**
 * `sqlite-ha status [--json]`: every database under the prefix with its holder, fence token, lease
 * TTL left, waiters in queue order, last commit and storage mode.
 */
import { ClusterView, DatabaseView, QueueEntry, readClusterState, viewToJson } from './cluster-state';
import { ConnectionSettings, createClient } from './connection';
import { duration, jsonText, printableCopy, styleFor, table } from './format';

export interface StatusOptions {
  json?: boolean;
  /** Only this database: reads `<prefix>/<db>/` alone, all that a role granted on it allows. */
  db?: string;
}

export async function runStatus(s: ConnectionSettings, opts: StatusOptions, out: NodeJS.WriteStream): Promise<number> {
  const client = createClient(s);
  try {
    const view = await readClusterState(client, s, opts.db);
    out.write(opts.json ? jsonText(viewToJson(view), 2) + '\n' : renderStatus(view, out).join('\n') + '\n');
    return 0;
  } finally {
    client.close();
  }
}

function renderStatus(raw: ClusterView, out: NodeJS.WriteStream): string[] {
  const st = styleFor(out);
  const view = printableCopy(raw); // names, nodes and keys come from etcd: never raw to the terminal
  if (view.databases.length === 0) {
    return [`no databases under ${view.prefix} (etcd revision ${view.revision})`];
  }
  const rows = view.databases.map((d) => [
    d.name,
    d.holder ? holderText(d.holder) : st.dim('(none)'),
    d.fence === null ? '-' : String(d.fence),
    ttlText(d),
    d.waiters.length ? d.waiters.map((w, i) => `${i + 1}.${w.node}`).join(' ') : '-',
    d.lastCommit ? `txid ${d.lastCommit.txid} by ${d.lastCommit.node}, ${duration(d.lastCommit.ageMs)} ago` : '-',
    d.storageMode === 'none' ? 'none (lockless)' : d.storageMode ?? '-',
    standbyText(d),
  ]);
  const moved = view.databases.filter((d) => d.promoted).map((d) =>
    st.dim(`${d.name}: promoted to ${d.promoted!.path} at epoch ${d.promoted!.epoch} (txid ${d.promoted!.txid}; acknowledged ${d.promoted!.ackedTxid})`));
  return [
    ...table(['DATABASE', 'HOLDER', 'FENCE', 'TTL LEFT', 'WAITERS', 'LAST COMMIT', 'LOCKS', 'STANDBY'], rows),
    ...moved,
    st.dim(`prefix ${view.prefix}, etcd revision ${view.revision}`),
  ];
}

/** `txid 41 (1 behind), lag 12ms, sync` or the last error's code. */
export function standbyText(d: DatabaseView): string {
  const sb = d.standby;
  if (!sb) return '-';
  const behind = sb.behindTxids === null ? '' : ` (${sb.behindTxids} behind)`;
  const err = sb.lastError ? `, ERROR ${sb.lastError.code}` : '';
  return `txid ${sb.txid ?? '-'}${behind}, lag ${duration(sb.lagMs)}${sb.lagging ? ' LAGGING' : ''}, ${sb.mode}${err}`;
}

function holderText(h: QueueEntry): string {
  return h.pid !== null && !h.node.includes(String(h.pid)) ? `${h.node} (pid ${h.pid})` : h.node;
}

function ttlText(d: DatabaseView): string {
  if (!d.holder) return '-';
  if (d.ttlLeftMs === null) return 'expired';
  return `${duration(d.ttlLeftMs)} of ${duration(d.holder.leaseTtlMs)}`;
}
