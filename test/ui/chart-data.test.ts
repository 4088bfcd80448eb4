/**
 * The loss chart's numbers: debiased EMA smoothing, per-run columns, several runs aligned on the
 * union of their steps (gaps as null), log-scale gaps, the series of MAE and DMAE runs, and the
 * debug summary the end-to-end tests read (a falling curve, a continued curve).
 */
import { describe, expect, it } from 'vitest';
import type { StepRecord } from '../../src/protocol/train';
import { buildChartData, emaSmooth, runColumns, seriesSignature, seriesStyle, summarizeRun } from '../../src/ui/watch/chart-data';

const rec = (step: number, loss: number, distill?: number[]): StepRecord => ({
  step, epoch: step / 10, loss: distill ? loss + distill.reduce((a, b) => a + b, 0) : loss, pix: loss, ...(distill ? { distill } : {}),
  lr: 1e-3 * step, gradNorm: 1, imagesPerSec: 100 + step, elapsedMs: step * 10,
});

describe('emaSmooth', () => {
  it('weight 0 is the identity; a constant stays constant (debiased); it follows TensorBoard’s formula', () => {
    expect(emaSmooth([3, 1, 2], 0)).toEqual([3, 1, 2]);
    for (const v of emaSmooth([5, 5, 5, 5], 0.9)) expect(v).toBeCloseTo(5, 12);
    const w = 0.6, xs = [1, 3, 2];
    let acc = 0;
    const want = xs.map((x, i) => ((acc = acc * w + (1 - w) * x), acc / (1 - w ** (i + 1))));
    const got = emaSmooth(xs, w);
    want.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 12));
    expect(got[0]).toBeCloseTo(1, 12); // the first point is the value itself, not pulled towards 0
  });

  it('nulls and non-finite values stay gaps and do not move the average', () => {
    const got = emaSmooth([2, null, NaN, 4], 0.5);
    expect(got[1]).toBeNull();
    expect(got[2]).toBeNull();
    expect(got[3]).toBeCloseTo((0.5 * 0.5 * 2 + 0.5 * 4) / (1 - 0.25), 12);
  });

  it('smooths a noisy falling curve: smaller step-to-step changes, same trend', () => {
    const xs = Array.from({ length: 200 }, (_, i) => 1 / (1 + i / 20) + 0.1 * Math.sin(i * 2.1));
    const ys = emaSmooth(xs, 0.9) as number[];
    const tv = (a: number[]) => a.slice(1).reduce((s, v, i) => s + Math.abs(v - a[i]), 0);
    expect(tv(ys)).toBeLessThan(tv(xs) / 3);
    expect(ys[199]).toBeLessThan(ys[10]);
  });
});

describe('buildChartData', () => {
  it('one MAE run: x = its steps; pixel only in the loss plot (total = pixel); lr raw, throughput smoothed', () => {
    const recs = [1, 2, 3, 4].map((s) => rec(s, 1 / s));
    const d = buildChartData([{ runId: 'a', label: 'A', records: recs }], 'loss', { smoothing: 0, log: false });
    expect(d.data[0]).toEqual([1, 2, 3, 4]);
    expect(d.series.map((s) => s.label)).toEqual(['pixel']);
    expect(d.data[1]).toEqual([1, 1 / 2, 1 / 3, 1 / 4]);
    const r = buildChartData([{ runId: 'a', label: 'A', records: recs }], 'rate', { smoothing: 0.9, log: false });
    expect(r.series.map((s) => s.metric)).toEqual(['lr', 'imagesPerSec']);
    expect(r.data[1]).toEqual(recs.map((x) => x.lr)); // never smoothed
    expect(r.data[2]).not.toEqual(recs.map((x) => x.imagesPerSec));
  });

  it('one DMAE run with two pairs: total, pixel, distill 0, distill 1, their sum', () => {
    const recs = [1, 2, 3].map((s) => rec(s, 1, [0.5 / s, 0.25]));
    const d = buildChartData([{ runId: 'd', label: 'D', records: recs }], 'loss', { smoothing: 0, log: false });
    expect(d.series.map((s) => s.label)).toEqual(['total', 'pixel', 'distill 0', 'distill 1', 'distill Σ']);
    expect(d.data[1]).toEqual(recs.map((r) => r.loss));
    expect(d.data[3]).toEqual([0.5, 0.25, 0.5 / 3]);
    expect(d.data[5]).toEqual([0.75, 0.5, 0.5 / 3 + 0.25]);
    const colours = new Set(d.series.map((s) => seriesStyle(s, 1).stroke));
    expect(colours.size, 'one colour per line of one run').toBe(5);
    expect(runColumns(recs).distill).toHaveLength(2);
  });

  it('several runs: aligned on the union of steps, null where a run has no step, labelled by run', () => {
    const a = [1, 2, 3].map((s) => rec(s, s));
    const b = [2, 4].map((s) => rec(s, 10 * s, [1]));
    const d = buildChartData([{ runId: 'a', label: 'A', records: a }, { runId: 'b', label: 'B', records: b }], 'loss', { smoothing: 0, log: false });
    expect(d.data[0]).toEqual([1, 2, 3, 4]);
    expect(d.series.map((s) => s.label)).toEqual(['A: pixel', 'B: total', 'B: pixel', 'B: distill']);
    expect(d.data[1]).toEqual([1, 2, 3, null]);
    expect(d.data[3]).toEqual([null, 20, null, 40]);
    for (const col of d.data) expect(col).toHaveLength(4);
    // Colours per run, dashes per metric.
    expect(seriesStyle(d.series[0], 2).stroke).not.toBe(seriesStyle(d.series[2], 2).stroke);
    expect(seriesStyle(d.series[1], 2).stroke).toBe(seriesStyle(d.series[2], 2).stroke);
    expect(seriesStyle(d.series[1], 2).dash).not.toEqual(seriesStyle(d.series[2], 2).dash);
  });

  it('validation points: on the union of steps (step 0 included), after the run’s losses, drawn only in the loss plot', () => {
    const recs = [1, 2, 3, 4].map((s) => rec(s, 1 / s));
    const runs = [{ runId: 'a', label: 'A', records: recs, val: [{ step: 0, pix: 1.5 }, { step: 2, pix: 0.6 }, { step: 4, pix: 0.3 }] }];
    const d = buildChartData(runs, 'loss', { smoothing: 0.5, log: false });
    expect(d.data[0]).toEqual([0, 1, 2, 3, 4]);
    expect(d.series.map((s) => s.label)).toEqual(['pixel', 'validation (pixel)']);
    expect(d.data[2]).toEqual([1.5, null, 0.6, null, 0.3]); // never smoothed
    expect(d.data[1][0]).toBeNull();
    const rate = buildChartData(runs, 'rate', { smoothing: 0, log: false });
    expect(rate.data[0], 'the same steps as the loss plot').toEqual([0, 1, 2, 3, 4]);
    expect(rate.series.map((s) => s.metric)).toEqual(['lr', 'imagesPerSec']);
  });

  it('log scale turns values ≤ 0 into gaps; the signature changes with the series, not the values', () => {
    const recs = [rec(1, 0), rec(2, -1), rec(3, 0.5)];
    const d = buildChartData([{ runId: 'a', label: 'A', records: recs }], 'loss', { smoothing: 0, log: true });
    expect(d.data[1]).toEqual([null, null, 0.5]);
    const more = buildChartData([{ runId: 'a', label: 'A', records: [...recs, rec(4, 0.2)] }], 'loss', { smoothing: 0, log: true });
    expect(seriesSignature(more)).toBe(seriesSignature(d));
    const dmae = buildChartData([{ runId: 'a', label: 'A', records: [rec(1, 1, [0.1])] }], 'loss', { smoothing: 0, log: true });
    expect(seriesSignature(dmae)).not.toBe(seriesSignature(d));
  });

  it('no runs, or a run without steps: empty columns', () => {
    expect(buildChartData([], 'loss', { smoothing: 0.5, log: false }).data).toEqual([[]]);
    expect(buildChartData([{ runId: 'a', label: 'A', records: [] }], 'loss', { smoothing: 0.5, log: false }).data).toEqual([[], []]);
  });
});

describe('summarizeRun (the chart’s data-* attributes)', () => {
  it('a falling curve: tail mean below head mean; contiguous steps', () => {
    const recs = Array.from({ length: 50 }, (_, i) => rec(i + 1, 1 / (1 + i)));
    const s = summarizeRun(recs);
    expect(s).toMatchObject({ points: 50, firstStep: 1, lastStep: 50, firstLoss: 1, lastLoss: 1 / 50, contiguous: true, lastDistill: null });
    expect(s.tailMean!).toBeLessThan(s.headMean!);
  });

  it('a gap or a repeated step is not contiguous; DMAE reports Σ distill of the last step', () => {
    expect(summarizeRun([rec(1, 1), rec(2, 1), rec(4, 1)]).contiguous).toBe(false);
    expect(summarizeRun([rec(1, 1), rec(2, 1), rec(2, 1)]).contiguous).toBe(false);
    expect(summarizeRun([rec(1, 1, [0.25, 0.5])]).lastDistill).toBe(0.75);
    expect(summarizeRun([])).toMatchObject({ points: 0, firstLoss: null, lastLoss: null, contiguous: true });
  });
});
