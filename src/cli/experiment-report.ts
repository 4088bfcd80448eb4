/**
 * What the experiment command writes: statistics over seeds, Markdown tables, and plots as SVG
 * (Vega-Lite compiled and rendered headless by Vega: no browser, no canvas, no network).
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Spread {
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for one value. */
  sd: number;
  min: number;
  max: number;
  values: number[];
}

export function spread(values: readonly number[]): Spread {
  const n = values.length;
  if (n === 0) return { n, mean: NaN, sd: NaN, min: NaN, max: NaN, values: [] };
  const mean = values.reduce((s, x) => s + x, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, sd, min: Math.min(...values), max: Math.max(...values), values: [...values] };
}

/** An accuracy in [0, 1] as a percentage with one decimal. */
export const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(1) : '–');

/** "91.2 ± 0.8 (90.4, 91.3, 92.0)": mean ± sd over seeds, then each seed's value, in percent. */
export function pctSpread(s: Spread): string {
  if (s.n === 0) return '–';
  const each = s.n > 1 ? ` (${s.values.map(pct).join(', ')})` : '';
  return `${pct(s.mean)} ± ${pct(s.sd)}${each}`;
}

/**
 * How a claim "A beats B" fared over paired seeds (same seed: same data order and masks):
 * 'held' when A is ahead on every seed, 'mixed' when ahead on average only, 'did not hold' otherwise.
 */
export type Verdict = 'held' | 'mixed' | 'did not hold';

export function verdict(a: readonly number[], b: readonly number[]): { verdict: Verdict; meanGain: number; wins: number; pairs: number } {
  const pairs = Math.min(a.length, b.length);
  let wins = 0, sum = 0;
  for (let i = 0; i < pairs; i++) {
    const d = a[i] - b[i];
    sum += d;
    if (d > 0) wins++;
  }
  const meanGain = pairs > 0 ? sum / pairs : NaN;
  return { verdict: pairs > 0 && wins === pairs ? 'held' : meanGain > 0 ? 'mixed' : 'did not hold', meanGain, wins, pairs };
}

export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export const seconds = (s: number): string => (s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`);

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface Point {
  [field: string]: string | number;
}

const FONT = { config: { font: 'Helvetica, Arial, sans-serif', view: { stroke: null } } } as const;

/**
 * Per group (a row), the mean over seeds (a coloured tick) with ±sd error bars and each seed as a
 * dot, on an axis fitted to the values (differences of a point or two stay visible; `zero` for
 * times); one panel
 * per facet. rows: { [group], [facet], [value] }, with value in [0, 1] shown as % when `percent`.
 */
export function dotsWithSpread(title: string, rows: Point[], o: { group: string; facet?: string; value: string; axis: string; percent?: boolean; zero?: boolean }): TopLevelSpec {
  const x = { field: o.value, type: 'quantitative' as const, title: o.axis, scale: { zero: o.zero ?? false, nice: true }, ...(o.percent ? { axis: { format: '.1%' } } : {}) };
  const y = { field: o.group, type: 'nominal' as const, title: null, sort: null, axis: { labelLimit: 320 } };
  const layer = {
    layer: [
      { mark: { type: 'errorbar' as const, extent: 'stdev' as const, ticks: { size: 8 } as const, color: 'gray' }, encoding: { y, x } },
      { mark: { type: 'tick' as const, thickness: 3, size: 22 }, encoding: { y, x: { ...x, aggregate: 'mean' as const }, color: { field: o.group, type: 'nominal' as const, legend: null, sort: null } } },
      { mark: { type: 'point' as const, filled: true, color: 'black', size: 20, opacity: 0.8 }, encoding: { y, x } },
    ],
  };
  const size = { width: 260, height: 30 * new Set(rows.map((r) => r[o.group])).size };
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, data: { values: rows }, ...FONT };
  if (!o.facet) return { ...base, ...size, ...layer } as TopLevelSpec;
  return { ...base, facet: { column: { field: o.facet, type: 'nominal', title: null, sort: null } }, spec: { ...size, ...layer }, resolve: { scale: { x: 'independent' } } } as TopLevelSpec;
}

/** Lines of the mean over seeds against a quantitative x, sd error bars, one colour per series. */
export function linesWithSpread(title: string, rows: Point[], o: { x: string; xTitle: string; series: string; value: string; axis: string }): TopLevelSpec {
  const x = { field: o.x, type: 'quantitative' as const, title: o.xTitle, scale: { zero: false } };
  const color = { field: o.series, type: 'nominal' as const, title: null };
  const y = { field: o.value, type: 'quantitative' as const, title: o.axis, axis: { format: '.0%' } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, width: 360, height: 240, data: { values: rows }, ...FONT,
    layer: [
      { mark: { type: 'line', point: true }, encoding: { x, y: { ...y, aggregate: 'mean' }, color } },
      { mark: { type: 'errorbar', extent: 'stdev', ticks: true }, encoding: { x, y: { ...y, scale: { zero: false } }, color } },
    ],
  } as TopLevelSpec;
}
