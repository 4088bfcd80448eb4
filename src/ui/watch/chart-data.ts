/**
 * The numbers behind the loss chart, apart from uPlot and React so that Node tests them: EMA
 * smoothing, per-run metric columns, several runs aligned on one step axis, and the read-only
 * summary the chart writes to its DOM for end-to-end tests.
 *
 * uPlot wants "aligned data": one x array and, per series, one y array of the same length with
 * null where a series has no value. Runs overlaid for comparison have different steps, so their
 * columns are joined on the union of their steps.
 */
import type { KnnPoint, StepRecord } from '../../protocol/train';

/**
 * TensorBoard's smoothing: an exponential moving average with weight w in [0, 1), debiased
 * (divided by 1 − w^k) so that the first points are not pulled towards zero. Nulls (and
 * non-finite values) are kept as null and do not advance the average.
 */
export function emaSmooth(values: readonly (number | null)[], weight: number): (number | null)[] {
  if (!(weight > 0)) return values.map((v) => (v === null || !Number.isFinite(v) ? null : v));
  const w = Math.min(weight, 0.999);
  const out: (number | null)[] = new Array(values.length);
  let acc = 0, k = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      out[i] = null;
      continue;
    }
    acc = acc * w + (1 - w) * v;
    k++;
    out[i] = acc / (1 - w ** k);
  }
  return out;
}

/** The metrics a run's chart can show, each a column over its steps. */
export type MetricKey = 'loss' | 'pix' | 'distill' | 'distillSum' | 'val' | 'lr' | 'imagesPerSec';

export interface RunColumns {
  steps: number[];
  loss: number[];
  pix: number[];
  /** One column per aligned pair (empty for MAE). */
  distill: number[][];
  lr: number[];
  imagesPerSec: number[];
}

/** A run's records as columns (records are in step order, as the worker sends them). */
export function runColumns(records: readonly StepRecord[]): RunColumns {
  const pairs = records.reduce((m, r) => Math.max(m, r.distill?.length ?? 0), 0);
  const c: RunColumns = { steps: [], loss: [], pix: [], distill: Array.from({ length: pairs }, () => []), lr: [], imagesPerSec: [] };
  for (const r of records) {
    c.steps.push(r.step);
    c.loss.push(r.loss);
    c.pix.push(r.pix);
    for (let k = 0; k < pairs; k++) c.distill[k].push(r.distill?.[k] ?? NaN);
    c.lr.push(r.lr);
    c.imagesPerSec.push(r.imagesPerSec);
  }
  return c;
}

export interface ChartRun {
  runId: string;
  /** Shown in the legend when several runs are drawn. */
  label: string;
  records: readonly StepRecord[];
  /** Validation pixel losses at the reconstruction steps (the fixed validation batch), drawn as points. */
  val?: readonly { step: number; pix: number }[];
}

/** One drawn line. */
export interface SeriesMeta {
  runId: string;
  /** Index of the run in the list (its colour when several runs are drawn). */
  run: number;
  metric: MetricKey;
  /** The aligned pair, for 'distill'. */
  pair?: number;
  label: string;
}

export interface ChartData {
  /** x = steps, then one y column per series. */
  data: [number[], ...(number | null)[][]];
  series: SeriesMeta[];
}

export interface BuildOptions {
  /** EMA weight in [0, 1); 0: raw. */
  smoothing: number;
  /** Values ≤ 0 become gaps (a log axis cannot show them). */
  log: boolean;
}

const METRIC_LABEL: Record<MetricKey, string> = { loss: 'total', pix: 'pixel', distill: 'distill', distillSum: 'distill Σ', val: 'validation (pixel)', lr: 'learning rate', imagesPerSec: 'images/s' };

/** The series of one run in a chart of `group`: losses (total only when it differs from pixel, i.e. DMAE; each pair's distillation loss, and their sum when there are several), or lr and throughput. */
function runSeries(c: RunColumns, group: 'loss' | 'rate'): { metric: MetricKey; pair?: number; values: number[] }[] {
  if (group === 'rate') return [{ metric: 'lr', values: c.lr }, { metric: 'imagesPerSec', values: c.imagesPerSec }];
  const out: { metric: MetricKey; pair?: number; values: number[] }[] = [];
  if (c.distill.length > 0) out.push({ metric: 'loss', values: c.loss });
  out.push({ metric: 'pix', values: c.pix });
  c.distill.forEach((values, pair) => out.push({ metric: 'distill', pair, values }));
  // Several aligned pairs: their sum too (before α), the distillation loss as a whole.
  if (c.distill.length > 1) out.push({ metric: 'distillSum', values: c.steps.map((_, i) => c.distill.reduce((s, col) => s + col[i], 0)) });
  return out;
}

/**
 * The aligned data of a chart: the losses ('loss') or the learning rate and throughput ('rate')
 * of every run, smoothed (the learning rate never: it is a schedule, not a noisy measure).
 */
export function buildChartData(runs: readonly ChartRun[], group: 'loss' | 'rate', opts: BuildOptions): ChartData {
  const cols = runs.map((r) => runColumns(r.records));
  // The union of the steps (one run: its own steps, as they are).
  // Validation steps join the x axis of both plots (so that they share their step range), their points only the loss plot.
  const vals = runs.map((r) => r.val ?? []);
  let x: number[];
  if (cols.length === 1 && vals[0].length === 0) x = cols[0].steps.slice();
  else {
    const all = new Set<number>();
    for (const c of cols) for (const s of c.steps) all.add(s);
    for (const v of vals) for (const p of v) all.add(p.step);
    x = [...all].sort((a, b) => a - b);
  }
  const at = new Map<number, number>();
  x.forEach((s, i) => at.set(s, i));
  const series: SeriesMeta[] = [];
  const ys: (number | null)[][] = [];
  cols.forEach((c, run) => {
    for (const s of runSeries(c, group)) {
      const smooth = s.metric === 'lr' ? 0 : opts.smoothing;
      let v = emaSmooth(s.values, smooth);
      if (opts.log) v = v.map((y) => (y !== null && y > 0 ? y : null));
      const col: (number | null)[] = new Array(x.length).fill(null);
      c.steps.forEach((step, i) => (col[at.get(step)!] = v[i]));
      const name = s.metric === 'distill' ? (c.distill.length > 1 ? `distill ${s.pair}` : 'distill') : METRIC_LABEL[s.metric];
      series.push({ runId: runs[run].runId, run, metric: s.metric, ...(s.pair !== undefined ? { pair: s.pair } : {}), label: runs.length > 1 ? `${runs[run].label}: ${name}` : name });
      ys.push(col);
    }
    if (group === 'loss' && vals[run].length > 0) {
      const col: (number | null)[] = new Array(x.length).fill(null);
      for (const p of vals[run]) col[at.get(p.step)!] = opts.log && !(p.pix > 0) ? null : p.pix;
      series.push({ runId: runs[run].runId, run, metric: 'val', label: runs.length > 1 ? `${runs[run].label}: ${METRIC_LABEL.val}` : METRIC_LABEL.val });
      ys.push(col);
    }
  });
  return { data: [x, ...ys], series };
}

/** A chart's shape: when it changes, the plot is rebuilt (otherwise only its data is set). */
export const seriesSignature = (d: ChartData, extra = ''): string => `${extra}|${d.series.map((s) => `${s.runId}:${s.metric}:${s.pair ?? ''}`).join(',')}`;

/** What the chart reports of a run for tests (data-* attributes): raw values, not smoothed. */
export interface RunSummary {
  points: number;
  firstStep: number | null;
  lastStep: number | null;
  firstLoss: number | null;
  lastLoss: number | null;
  /** Mean total loss of the first and the last fifth of the steps (at least one step each). */
  headMean: number | null;
  tailMean: number | null;
  /** Σ distill of the last step (DMAE), else null. */
  lastDistill: number | null;
  /** Steps are consecutive integers without gaps or repeats (a paused and resumed run continues its curve). */
  contiguous: boolean;
}

export function summarizeRun(records: readonly StepRecord[]): RunSummary {
  const n = records.length;
  const mean = (rs: readonly StepRecord[]) => (rs.length ? rs.reduce((s, r) => s + r.loss, 0) / rs.length : null);
  const fifth = Math.max(1, Math.floor(n / 5));
  let contiguous = true;
  for (let i = 1; i < n; i++) if (records[i].step !== records[i - 1].step + 1) contiguous = false;
  const last = records[n - 1];
  return {
    points: n,
    firstStep: n ? records[0].step : null,
    lastStep: n ? last.step : null,
    firstLoss: n ? records[0].loss : null,
    lastLoss: n ? last.loss : null,
    headMean: mean(records.slice(0, fifth)),
    tailMean: mean(records.slice(n - fifth)),
    lastDistill: last?.distill ? last.distill.reduce((a, b) => a + b, 0) : null,
    contiguous,
  };
}

/** Colours of runs (or of metrics, when one run is drawn): distinct on a light or a dark page. */
export const PALETTE = ['#2f6fdf', '#e0582b', '#1f9e6e', '#a347c9', '#c9a227', '#d1367a', '#3aa6b9', '#7a7a7a'];

/** A series' colour and dash: one run → a colour per metric; several → a colour per run, a dash per metric. */
export function seriesStyle(s: SeriesMeta, runs: number): { stroke: string; dash?: number[]; width: number } {
  const metricIndex = s.metric === 'loss' ? 0 : s.metric === 'pix' ? 1 : s.metric === 'distill' ? 3 + (s.pair ?? 0) : s.metric === 'distillSum' ? 2 : s.metric === 'val' ? 5 : s.metric === 'lr' ? 0 : 1;
  if (s.metric === 'val') return { stroke: PALETTE[runs <= 1 ? metricIndex : s.run % PALETTE.length], dash: [2, 4], width: 1.5 };
  if (runs <= 1) return { stroke: PALETTE[metricIndex % PALETTE.length], width: s.metric === 'loss' ? 2 : 1.5 };
  const dashes: (number[] | undefined)[] = [undefined, [6, 3], [2, 3], [8, 3, 2, 3]];
  return { stroke: PALETTE[s.run % PALETTE.length], dash: dashes[metricIndex % dashes.length], width: 1.5 };
}

/** The k-NN monitor's chart (KnnChart): one x axis (the union of the runs' steps) and one accuracy column per run, null where a run has no point. */
export function knnChartData(runs: readonly { runId: string; points: readonly KnnPoint[] }[]): [number[], ...(number | null)[][]] {
  const steps = [...new Set(runs.flatMap((r) => r.points.map((p) => p.step)))].sort((a, b) => a - b);
  const at = new Map(steps.map((s, i) => [s, i]));
  return [steps, ...runs.map((r) => {
    const col: (number | null)[] = new Array(steps.length).fill(null);
    for (const p of r.points) col[at.get(p.step)!] = p.accuracy;
    return col;
  })];
}
