/**
 * Figures, targets and verdicts; the terminal table; the JSON results document. Pure except for
 * writeResults(), which writes tools/bench/results/<timestamp>.json.
 */
import * as fs from 'fs';
import * as path from 'path';
import { overRuns, type Spread } from './stats';

export interface Target {
  op: '>=' | '<=';
  value: number;
}

/** SKIP: the figure could not be measured here (a tool is missing); its value is NaN (null in the JSON). */
export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'SKIP';

export interface Figure {
  /** Benchmark group: writes, reads, contention, failover, graceful, scaling, sshfs, etcd. */
  bench: string;
  /** Stable identifier, e.g. writes.seq.1row.ratio. */
  id: string;
  label: string;
  unit: string;
  /** The headline number: a median over runs, or a percentile over samples. */
  value: number;
  /** Run-to-run spread (min–max over runs) or the IQR of the samples; null with a single run. */
  spread: Spread | null;
  /** Number of runs or samples the value comes from. */
  n: number;
  target: Target | null;
  verdict: Verdict;
  /** Per-run (or per-sample) values behind the figure. */
  samples: number[];
  note?: string;
}

/** What a benchmark gives figure(): a Figure before its verdict, the target optional. */
export interface FigureInput extends Omit<Figure, 'target' | 'verdict'> {
  target?: Target | null;
}

export function verdictFor(value: number, target: Target | null | undefined): Verdict {
  if (!target) return 'INFO';
  if (!Number.isFinite(value)) return 'MISS';
  return (target.op === '>=' ? value >= target.value : value <= target.value) ? 'PASS' : 'MISS';
}

export function figure(f: FigureInput): Figure {
  const target = f.target ?? null;
  return {
    bench: f.bench, id: f.id, label: f.label, unit: f.unit, value: f.value, spread: f.spread, n: f.n,
    target, verdict: verdictFor(f.value, target), samples: f.samples, ...(f.note ? { note: f.note } : {}),
  };
}

/** A figure whose headline is the median of per-run values, with their min–max spread. */
export function runsFigure(
  bench: string, id: string, label: string, unit: string, perRun: readonly number[],
  extra: { target?: Target; note?: string } = {},
): Figure {
  return figure({ bench, id, label, unit, ...overRuns(perRun), ...extra });
}

/** A figure that was not measured: no number, the reason in its note, verdict SKIP. */
export function skippedFigure(bench: string, id: string, label: string, unit: string, target: Target | null, reason: string): Figure {
  return { ...figure({ bench, id, label, unit, value: NaN, spread: null, n: 0, samples: [], target, note: reason }), verdict: 'SKIP' };
}

/** A readable number: 3 significant digits below 1000, whole numbers above. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.1) return v.toFixed(2);
  if (a === 0) return '0';
  return v.toPrecision(2);
}

function fmtUnit(v: number, unit: string): string {
  if (unit === '%') return `${fmt(v)}%`;
  if (unit === 'x') return `${fmt(v)}×`;
  return unit ? `${fmt(v)} ${unit}` : fmt(v);
}

export function fmtSpread(s: Spread | null): string {
  if (!s) return '—';
  return `${s.kind === 'iqr' ? 'IQR ' : ''}${fmt(s.low)}–${fmt(s.high)}`;
}

export function fmtTarget(f: Figure): string {
  if (!f.target) return '';
  return `${f.target.op === '>=' ? '≥' : '≤'} ${fmtUnit(f.target.value, f.unit)}`;
}

const BENCH_TITLES: Record<string, string> = {
  etcd: 'etcd round trips (for converting latencies)',
  writes: '1. single writer holding the lease (sqlite-ha ÷ raw better-sqlite3, pair by pair)',
  reads: '2. reads (sqlite-ha ÷ raw, pair by pair; linearizable read cost)',
  contention: '3. three writer processes contending',
  failover: '4. crash failover (SIGKILL of the holder → first commit by another process)',
  graceful: '5. graceful hand-over on close()',
  scaling: '6. read scaling: reader processes against one writer',
  sshfs: "7. lockless mode on sshfs (one export, two mounts): locks 'none' vs 'trusted' vs raw, same mount, one run",
  serve: '8. sqlite-ha serve through @libsql/client over loopback, vs raw better-sqlite3 and the in-process handle',
  dqlite: '1b. sqlite-ha vs dqlite (Debian go-dqlite dqlite-demo, 3 nodes on loopback), sequential writes, pair by pair',
  standby: '9. standby copy: async and sync vs no standby vs raw (rotated rounds), async lag, promotion of a large database',
};

/** The terminal table: one section per benchmark, each figure with spread, target and verdict. */
export function formatTable(figures: readonly Figure[]): string {
  const head = ['figure', 'value', 'spread', 'n', 'target', ''];
  const lines: string[] = [];
  const groups = [...new Set(figures.map((f) => f.bench))];
  const rows = figures.map((f) => [
    f.label, f.verdict === 'SKIP' ? 'skipped' : fmtUnit(f.value, f.unit), fmtSpread(f.spread), String(f.n), fmtTarget(f),
    f.verdict === 'INFO' ? '' : f.verdict,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 1 || i === 2 || i === 3 ? c.padStart(width[i]) : c.padEnd(width[i]))).join('  ').trimEnd();
  lines.push(line(head));
  lines.push(width.map((w) => '─'.repeat(w)).join('  '));
  for (const g of groups) {
    lines.push(`${BENCH_TITLES[g] ?? g}`);
    figures.forEach((f, i) => {
      if (f.bench !== g) return;
      lines.push(line(rows[i].map((c, j) => (j === 0 ? `  ${c}` : c))));
      if (f.note) lines.push(`      ${f.note}`);
    });
  }
  const pass = figures.filter((f) => f.verdict === 'PASS').length;
  const miss = figures.filter((f) => f.verdict === 'MISS');
  lines.push('');
  const skip = figures.filter((f) => f.verdict === 'SKIP');
  lines.push(
    `targets: ${pass} PASS, ${miss.length} MISS${miss.length ? ` (${miss.map((f) => f.id).join(', ')})` : ''}` +
      (skip.length ? `, ${skip.length} SKIP (${skip.map((f) => f.id).join(', ')})` : ''),
  );
  lines.push('spread: min–max over runs unless marked IQR (interquartile range of the samples); n = runs or samples');
  return lines.join('\n');
}

export interface ResultsDocument {
  tool: 'sqlite-ha bench';
  version: 1;
  startedAt: string;
  finishedAt: string;
  mode: 'quick' | 'full';
  only: string[] | null;
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  figures: Figure[];
  /** Benchmarks that failed to run, with the error. */
  errors: { bench: string; message: string }[];
}

/** Writes the document as tools/bench/results/<timestamp>.json (or under dir); returns the path. */
export function writeResults(doc: ResultsDocument, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = doc.startedAt.replace(/[:.]/g, '-');
  const file = path.join(dir, `${stamp}.json`);
  fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  return file;
}
