/**
 * `sqlite-ha history`: recent hand-overs with their latency and cause, newest first. Each holder
 * writes one HandoverRecord per acquisition (`<prefix>/<db>/history/<fence>`, the last 100 kept);
 * a holder that noticed it lost its lease leaves a `lease-lost` event, shown here as cause `lost`.
 */
import type { HandoverRecord } from '../coordinator/etcd/keys';
import { Keys, EventRecord, parseJson, prefixEnd } from '../coordinator/etcd/keys';
import { classify } from './cluster-state';
import { ConnectionSettings, createClient, withDeadline } from './connection';
import { dateTime, duration, jsonText, printableCopy, styleFor, table } from './format';

export interface HistoryOptions {
  db?: string;
  limit: number;
  json?: boolean;
}

export interface HistoryRow {
  db: string;
  time: number;
  fence: number;
  node: string;
  previousNode: string | null;
  cause: HandoverRecord['cause'] | 'lost';
  waitedMs: number | null;
  handoverMs: number | null;
  detail: string | null;
}

async function readHistory(s: ConnectionSettings, opts: HistoryOptions): Promise<HistoryRow[]> {
  const client = createClient(s);
  try {
    const from = opts.db ? new Keys(s.prefix, opts.db).root + '/' : s.prefix + '/';
    const res = await withDeadline(s, `reading history under ${from}`, () =>
      client.kv.range({ key: Buffer.from(from), range_end: prefixEnd(from) }),
    );
    const rows: HistoryRow[] = [];
    for (const kv of res.kvs) {
      const c = classify(s.prefix, kv.key.toString());
      if (!c) continue;
      if (c.kind === 'history') {
        const h = parseJson<HandoverRecord>(kv.value);
        if (!h || typeof h.fence !== 'number') continue;
        rows.push({
          db: c.db, time: h.time, fence: h.fence, node: h.node, previousNode: h.previousNode ?? null, cause: h.cause,
          waitedMs: numOrNull(h.waitedMs), handoverMs: numOrNull(h.handoverMs), detail: null,
        });
      } else if (c.kind === 'event' && kv.key.toString().endsWith('/lease-lost')) {
        const e = parseJson<EventRecord>(kv.value);
        if (!e || typeof e.time !== 'number') continue;
        rows.push({
          db: c.db, time: e.time, fence: e.fence, node: e.node, previousNode: null, cause: 'lost',
          waitedMs: null, handoverMs: null, detail: e.detail ?? null,
        });
      }
    }
    rows.sort((a, b) => b.time - a.time || b.fence - a.fence);
    return rows.slice(0, opts.limit);
  } finally {
    client.close();
  }
}

export async function runHistory(s: ConnectionSettings, opts: HistoryOptions, out: NodeJS.WriteStream): Promise<number> {
  const rows = await readHistory(s, opts);
  if (opts.json) {
    out.write(jsonText(rows.map((r) => ({ ...r, time: new Date(r.time).toISOString() })), 2) + '\n');
    return 0;
  }
  if (rows.length === 0) {
    out.write(`no hand-overs recorded under ${opts.db ? `${s.prefix}/${opts.db}` : s.prefix}\n`);
    return 0;
  }
  const st = styleFor(out);
  const shown = printableCopy(rows); // nodes and names come from etcd: never raw to the terminal
  const lines = table(
    ['TIME', 'DATABASE', 'FENCE', 'NODE', 'PREVIOUS', 'CAUSE', 'WAITED', 'HAND-OVER'],
    shown.map((r) => [
      dateTime(r.time),
      r.db,
      String(r.fence),
      r.node,
      r.previousNode ?? '-',
      r.cause === 'expired' || r.cause === 'lost' ? st.yellow(r.cause) : r.cause,
      duration(r.waitedMs),
      duration(r.handoverMs),
    ]),
  );
  out.write(lines.join('\n') + '\n');
  return 0;
}

function numOrNull(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
