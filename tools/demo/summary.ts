/**
 * The demo's verdict: every write a node acknowledged must be in the database exactly once
 * (read back read-only with better-sqlite3 after every node stopped), `PRAGMA integrity_check`
 * must say ok, and a failover must have happened. Also what the user wants to know: hand-overs,
 * failover and graceful hand-over times, reads, and where the database and logs are.
 */
import Database from 'better-sqlite3';
import { Fleet, netNamespaceOf } from './nodes';
import type { ScenarioResult } from './scenario';
import { gracefulExpired, sec } from './scenario';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DemoSummary {
  ok: boolean;
  interrupted: boolean;
  coordinator: { kind: 'etcd' | 'lockfile'; endpoints: string[]; note: string };
  netns: boolean;
  nodes: number;
  durationMs: number;
  writes: {
    acknowledged: number;
    perNode: Record<string, number>;
    found: number;
    missing: { node: string; seq: number }[];
    duplicated: { node: string; seq: number; copies: number }[];
    /** Rows whose acknowledgment never arrived (in flight when a node was killed or stopped). */
    unacknowledgedRows: number;
    rowsInDatabase: number;
    failed: Record<string, number>;
  };
  reads: { ok: number; failed: number; stale: number };
  handovers: number;
  failover: ScenarioResult['failover'];
  failoverAttempts: number;
  gracefulHandover: ScenarioResult['handover'];
  integrityCheck: string;
  database: string;
  workDir: string;
  logs: string;
  etcdLogs: string | null;
  kept: boolean;
  problems: string[];
  /** Worth knowing, but not part of the verdict (e.g. a graceful hand-over that waited for expiry). */
  warnings: string[];
  checks: Check[];
}

interface DbReadback {
  rows: Map<string, number>;
  total: number;
  integrity: string;
  error: string | null;
}

/** Reads every (node, seq) and the integrity check, read-only; a missing table reads as empty. */
export function readDatabase(dbPath: string): DbReadback {
  const out: DbReadback = { rows: new Map(), total: 0, integrity: 'not run', error: null };
  let db: Database.Database | null = null;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").get();
    if (hasTable) {
      const rows = db.prepare('SELECT node, seq, count(*) AS copies FROM events GROUP BY node, seq').all() as {
        node: string; seq: number; copies: number;
      }[];
      for (const r of rows) {
        out.rows.set(key(r.node, r.seq), r.copies);
        out.total += r.copies;
      }
    }
    const result = db.pragma('integrity_check') as { integrity_check: string }[];
    out.integrity = result.map((r) => r.integrity_check).join('; ');
  } catch (err) {
    out.error = (err as Error).message;
  } finally {
    db?.close();
  }
  return out;
}

function key(node: string, seq: number): string {
  return `${node}\u0000${seq}`;
}

export interface SummaryInput {
  fleet: Fleet;
  scenario: ScenarioResult;
  coordinator: { kind: 'etcd' | 'lockfile'; endpoints: string[]; note: string };
  netns: boolean;
  nodes: number;
  dbPath: string;
  workDir: string;
  logDir: string;
  etcdLogDir: string | null;
  kept: boolean;
}

export function buildSummary(input: SummaryInput): DemoSummary {
  const { fleet, scenario } = input;
  const readback = readDatabase(input.dbPath);
  const perNode: Record<string, number> = {};
  const failed: Record<string, number> = {};
  const reads = { ok: 0, failed: 0, stale: 0 };
  const missing: { node: string; seq: number }[] = [];
  const duplicated: { node: string; seq: number; copies: number }[] = [];
  let acknowledged = 0;
  let found = 0;
  const ackedKeys = new Set<string>();
  for (const n of fleet.nodes) {
    perNode[n.id] = n.ackCount;
    for (const [code, count] of n.failures) failed[code] = (failed[code] ?? 0) + count;
    reads.ok += n.reads.ok;
    reads.failed += n.reads.failed;
    reads.stale += n.reads.stale;
    for (const seq of n.acks.keys()) {
      acknowledged++;
      ackedKeys.add(key(n.id, seq));
      const copies = readback.rows.get(key(n.id, seq)) ?? 0;
      if (copies === 1) found++;
      else if (copies === 0) missing.push({ node: n.id, seq });
      else duplicated.push({ node: n.id, seq, copies });
    }
  }
  let unacknowledgedRows = 0;
  for (const [k, copies] of readback.rows) if (!ackedKeys.has(k)) unacknowledgedRows += copies;

  const integrityOk = readback.error === null && readback.integrity === 'ok';
  const f = scenario.failover;
  const checks: Check[] = [
    {
      name: 'every acknowledged write is in the database exactly once',
      ok: readback.error === null && acknowledged > 0 && found === acknowledged,
      detail: readback.error
        ? `could not read the database: ${readback.error}`
        : acknowledged === 0
          ? 'no write was acknowledged'
          : `${found} of ${acknowledged} found` +
            (missing.length ? `; missing: ${missing.slice(0, 5).map((m) => `${m.node}#${m.seq}`).join(', ')}` : '') +
            (duplicated.length ? `; duplicated: ${duplicated.slice(0, 5).map((d) => `${d.node}#${d.seq}×${d.copies}`).join(', ')}` : ''),
    },
    {
      name: 'PRAGMA integrity_check',
      ok: integrityOk,
      detail: readback.error ? `not run: ${readback.error}` : readback.integrity,
    },
    {
      name: 'a failover happened (the holder was killed and another node wrote)',
      ok: f !== null,
      detail: f
        ? `${f.node} killed while holding fence ${f.fence ?? '?'}; ${f.firstWriteBy} wrote ${sec(f.failoverMs)} later`
        : scenario.failoverAttempts.length
          ? `${scenario.failoverAttempts.length} kill(s), none confirmed as a failover`
          : 'no kill was made',
    },
    {
      name: 'linearizable reads never missed an acknowledged write',
      ok: reads.stale === 0,
      detail: `${reads.ok} reads ok, ${reads.stale} stale, ${reads.failed} failed`,
    },
  ];
  if (input.netns) {
    const own = netNamespaceOf('self');
    const seen = fleet.nodes.filter((n) => n.netNamespace !== null);
    const isolated = seen.filter((n) => n.netNamespace !== own);
    const perSlot = new Map<number, Set<string>>();
    for (const n of isolated) perSlot.set(n.slot, (perSlot.get(n.slot) ?? new Set()).add(n.netNamespace!));
    const distinct = new Set(isolated.map((n) => n.netNamespace)).size;
    checks.push({
      name: 'every node ran in its own network namespace',
      ok: seen.length > 0 && isolated.length === seen.length && perSlot.size === input.nodes &&
        [...perSlot.values()].every((set) => set.size === 1) && distinct === input.nodes,
      detail: `${isolated.length} of ${seen.length} node processes (checked /proc/<pid>/ns/net) outside the demo's ` +
        `namespace, ${distinct} namespaces for ${input.nodes} slots`,
    });
  }
  if (scenario.interrupted) checks.push({ name: 'ran to the end', ok: false, detail: 'interrupted' });
  const warnings: string[] = [];
  const h = scenario.handover;
  if (h && gracefulExpired(h)) {
    warnings.push(
      `graceful hand-over: ${h.node} did not release the lease on close() (exit code ${h.exitCode}` +
        `${h.cause ? `, etcd: lease ${h.cause}` : ''}); the next node wrote only after ${sec(h.handoverMs)}`,
    );
  } else if (h && !h.clean) {
    warnings.push(`graceful hand-over: ${h.node} exited (code ${h.exitCode}) without reporting that it released the lease`);
  }
  if (scenario.killedAtStop.length) {
    warnings.push(
      `not stopped in time after SIGTERM, so SIGKILLed: ${scenario.killedAtStop.join(', ')}` +
        (scenario.interrupted && input.coordinator.kind === 'etcd' ? ' (a Ctrl-C stops etcd too, so nodes cannot release their leases)' : ''),
    );
  }
  const ok = checks.every((c) => c.ok);
  return {
    ok,
    interrupted: scenario.interrupted,
    coordinator: input.coordinator,
    netns: input.netns,
    nodes: input.nodes,
    durationMs: scenario.endedAt - scenario.startedAt,
    writes: {
      acknowledged, perNode, found, missing, duplicated, unacknowledgedRows,
      rowsInDatabase: readback.total, failed,
    },
    reads,
    handovers: fleet.handovers(),
    failover: f,
    failoverAttempts: scenario.failoverAttempts.length,
    gracefulHandover: scenario.handover,
    integrityCheck: readback.error ? `error: ${readback.error}` : readback.integrity,
    database: input.dbPath,
    workDir: input.workDir,
    logs: input.logDir,
    etcdLogs: input.etcdLogDir,
    kept: input.kept,
    problems: scenario.problems,
    warnings,
    checks,
  };
}

/** The summary as the user reads it. */
export function renderSummary(s: DemoSummary): string {
  const mark = (ok: boolean) => (ok ? 'ok' : 'FAILED');
  const perNode = Object.entries(s.writes.perNode).map(([n, c]) => `${n} ${c}`).join(', ');
  const failedTotal = Object.values(s.writes.failed).reduce((a, b) => a + b, 0);
  const lines: string[] = [];
  lines.push('');
  lines.push(`Summary (${s.coordinator.kind === 'etcd' ? `etcd, ${s.coordinator.endpoints.length} members` : 'lockfile coordinator, no etcd'}` +
    `; ${s.nodes} nodes${s.netns ? ', each in its own network namespace' : ''}; ran ${(s.durationMs / 1000).toFixed(1)} s` +
    `${s.interrupted ? '; INTERRUPTED' : ''})`);
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(22)} ${text}`);
  row('writes acknowledged', `${s.writes.acknowledged} (${perNode})`);
  row('found in the database', `${s.writes.found} of ${s.writes.acknowledged}, each exactly once: ${mark(s.checks[0].ok)}` +
    (s.checks[0].ok ? '' : ` (${s.checks[0].detail})`));
  row('rows without an ack', s.writes.unacknowledgedRows === 0 ? '0'
    : `${s.writes.unacknowledgedRows} (committed, but the node was killed before it could say so; allowed)`);
  if (failedTotal > 0) {
    row('writes not done', `${failedTotal} (${Object.entries(s.writes.failed).map(([c, n]) => `${c} ${n}`).join(', ')}; nothing was written)`);
  }
  row('reads', `${s.reads.ok} linearizable count(*) reads ok, ${s.reads.stale} stale${s.reads.stale ? ' (FAILED: a read missed an acknowledged write)' : ''}, ${s.reads.failed} failed`);
  row('hand-overs', `${s.handovers} (the lease moved between nodes${s.coordinator.kind === 'etcd' ? '; a holder passes it on as soon as another node waits' : ''})`);
  const f = s.failover;
  row('failover', f
    ? `SIGKILL ${f.node} (holder, fence ${f.fence ?? '?'}) -> ${f.takeoverBy ?? '?'} held the lease after ${sec(f.takeoverMs)}` +
      `, first write by another node after ${sec(f.failoverMs)}${f.cause ? ` (etcd: lease ${f.cause})` : ''}: ok`
    : `FAILED (${s.checks[2].detail})`);
  const h = s.gracefulHandover;
  const released = h && !gracefulExpired(h);
  row('graceful hand-over', h
    ? `SIGTERM ${h.node} (holder, fence ${h.fence ?? '?'}) -> ` +
      (released
        ? `the lease was released${h.releasedMs !== null ? ` after ${sec(h.releasedMs)}` : ''}`
        : 'the lease was NOT released (it expired)') +
      `, ${h.nextWriter ?? 'nobody'} wrote after ${sec(h.handoverMs)}`
    : 'not done');
  row('integrity_check', s.checks[1].ok ? 'ok' : `FAILED: ${s.integrityCheck}`);
  for (const c of s.checks.slice(4)) row('check', `${c.name}: ${c.ok ? 'ok' : 'FAILED'} (${c.detail})`);
  for (const p of s.problems) row('problem', p);
  for (const w of s.warnings) row('warning', w);
  row('work dir', `${s.workDir}${s.kept ? ' (kept)' : ' (removed at exit; --keep keeps it)'}`);
  row('database', s.database);
  row('logs', `${s.logs}/ (node-*.jsonl: every node event; demo.log: this timeline)${s.etcdLogs ? `, etcd: ${s.etcdLogs}/m*.log` : ''}`);
  lines.push('');
  lines.push(s.ok
    ? `PASS: every acknowledged write is in the database, integrity ok, failover in ${sec(f?.failoverMs ?? null)}.`
    : `FAIL: ${s.checks.filter((c) => !c.ok).map((c) => `${c.name} (${c.detail})`).join('; ')}`);
  return lines.join('\n');
}
