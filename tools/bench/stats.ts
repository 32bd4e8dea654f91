/**
 * Pure statistics for the benchmarks: quantiles (linear interpolation between closest ranks, the
 * "type 7" estimator of R and NumPy), run-to-run spread, and pair-by-pair ratios.
 */

export interface Summary {
  n: number;
  min: number;
  q1: number;
  median: number;
  q3: number;
  p99: number;
  max: number;
  mean: number;
}

/** The q-quantile (0 ≤ q ≤ 1) of the values; NaN for no values. */
export function quantile(values: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile: q must be in [0, 1], got ${q}`);
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const pos = (xs.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

export function summarize(values: readonly number[]): Summary {
  const xs = values.filter((v) => Number.isFinite(v));
  return {
    n: xs.length,
    min: xs.length ? Math.min(...xs) : NaN,
    q1: quantile(xs, 0.25),
    median: quantile(xs, 0.5),
    q3: quantile(xs, 0.75),
    p99: quantile(xs, 0.99),
    max: xs.length ? Math.max(...xs) : NaN,
    mean: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN,
  };
}

/** How a figure's spread was measured. */
export type SpreadKind = 'min-max' | 'iqr';

export interface Spread {
  kind: SpreadKind;
  low: number;
  high: number;
}

/** min–max of per-run values: the run-to-run spread of a figure measured once per run. */
export function minMax(values: readonly number[]): Spread | null {
  const xs = values.filter((v) => Number.isFinite(v));
  if (xs.length < 2) return null;
  return { kind: 'min-max', low: Math.min(...xs), high: Math.max(...xs) };
}

/** Interquartile range of samples. */
export function iqr(values: readonly number[]): Spread | null {
  const xs = values.filter((v) => Number.isFinite(v));
  if (xs.length < 2) return null;
  return { kind: 'iqr', low: quantile(xs, 0.25), high: quantile(xs, 0.75) };
}

/** Element-wise a[i] / b[i]: ratios computed pair by pair (each pair measured back to back). */
export function pairRatios(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`pairRatios: ${a.length} vs ${b.length} values`);
  return a.map((x, i) => x / b[i]);
}

/** Element-wise a[i] - b[i]. */
export function pairDiffs(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`pairDiffs: ${a.length} vs ${b.length} values`);
  return a.map((x, i) => x - b[i]);
}

/** A figure's numbers taken over runs: the median, its min–max spread, the count and the samples. */
export function overRuns(values: readonly number[]): { value: number; spread: Spread | null; n: number; samples: number[] } {
  return { value: median(values), spread: minMax(values), n: values.length, samples: [...values] };
}
