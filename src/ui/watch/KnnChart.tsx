/**
 * The live k-NN monitor's curve (uPlot): k-NN accuracy of the encoder on a fixed subset of the
 * dataset against the step, for the current run (RunOptions.knnEvery) and the runs overlaid
 * from Runs, next to the loss curves. Points arrive in `knnMetrics` (src/store/train.ts), outside
 * React, like the losses; the chart is hidden while no run drawn has any point and the current run
 * does not monitor.
 *
 * For end-to-end tests: [data-testid=knn-chart] data-run-id, data-points, data-last-step,
 * data-last-accuracy (of the first run drawn).
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useRunsStore } from '../../store/runs';
import { knnMetrics, useStudioStore, useTrainStore } from '../../store/train';
import { PALETTE, knnChartData } from './chart-data';

export function KnnChart({ height = 180 }: { height?: number }) {
  const current = useTrainStore((s) => s.run);
  const currentId = current?.runId ?? null;
  const monitoring = (current?.request.options?.knnEvery ?? 0) > 0;
  const problem = current?.knnProblem;
  const compare = useStudioStore((s) => s.compareRunIds);
  const runs = useRunsStore((s) => s.runs);
  const ids = useMemo(() => [...new Set([...(currentId ? [currentId] : []), ...compare])], [currentId, compare]);
  const idsKey = ids.join('\n');
  const names = useMemo(() => JSON.stringify(Object.fromEntries(ids.map((id) => [id, runs.find((r) => r.id === id)?.name ?? id]))), [ids, runs]);
  const [hasPoints, setHasPoints] = useState(false);
  const root = useRef<HTMLElement>(null);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const list = idsKey ? idsKey.split('\n') : [];
    const label: Record<string, string> = JSON.parse(names);
    let plot: uPlot | null = null, signature = '', drawTimer = 0, disposed = false;
    const draw = () => {
      drawTimer = 0;
      if (disposed) return;
      const drawn = list.filter((id) => knnMetrics.records(id).length > 0);
      setHasPoints(drawn.length > 0);
      const data = knnChartData(drawn.map((runId) => ({ runId, points: knnMetrics.records(runId) })));
      const sig = drawn.join(',');
      if (box.current && (sig !== signature || !plot)) {
        plot?.destroy();
        plot = null;
        signature = sig;
        if (drawn.length > 0) {
          plot = new uPlot({
            width: Math.max(240, Math.floor(box.current.clientWidth || 600)), height,
            series: [{ label: 'step' }, ...drawn.map((id, i) => ({
              label: drawn.length > 1 ? `${label[id] ?? id}: k-NN` : 'k-NN accuracy', stroke: PALETTE[(drawn.length > 1 ? i : 2) % PALETTE.length], width: 2, spanGaps: true,
              points: { show: true, size: 5 }, value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : `${(100 * v).toFixed(1)} %`),
            }))],
            axes: [{ label: 'step' }, { label: 'k-NN accuracy', values: (_u, vals) => vals.map((v) => `${Math.round(100 * v)} %`), size: 56 }],
            scales: { x: { time: false }, y: { range: (_u, min, max) => [Math.max(0, Math.min(min, 0.9) - 0.05), Math.min(1, Math.max(max, 0.1) + 0.05)] } },
            legend: { show: true, live: true },
          }, data as uPlot.AlignedData, box.current);
        }
      } else plot?.setData(data as uPlot.AlignedData);
      const el = root.current;
      if (el) {
        const first = list.length ? knnMetrics.records(list[0]) : [];
        const last = first[first.length - 1];
        el.setAttribute('data-run-id', list[0] ?? '');
        el.setAttribute('data-points', String(first.length));
        el.setAttribute('data-last-step', last ? String(last.step) : '');
        el.setAttribute('data-last-accuracy', last ? String(last.accuracy) : '');
      }
    };
    const want = new Set(list);
    const unsubscribe = knnMetrics.subscribe((id) => {
      if (want.has(id) && !drawTimer && !disposed) drawTimer = window.setTimeout(draw); // its own task, as LossChart's
    });
    const resize = new ResizeObserver(() => plot?.setSize({ width: Math.max(240, Math.floor(box.current?.clientWidth || 600)), height }));
    if (box.current) resize.observe(box.current);
    draw();
    return () => {
      disposed = true;
      clearTimeout(drawTimer);
      unsubscribe();
      resize.disconnect();
      plot?.destroy();
    };
  }, [idsKey, names, height]);

  const show = hasPoints || monitoring;
  return (
    <section className="card knn-chart" data-testid="knn-chart" ref={root} hidden={!show}>
      <h2>k-NN accuracy</h2>
      <p className="muted">
        The encoder’s k-NN accuracy during pretraining: the 20 nearest of a fixed bank of training images vote for each of a fixed set of validation images
        {current?.request.options?.knnEvery ? ` (every ${current.request.options.knnEvery} steps)` : ''}. Training is not changed by it.
      </p>
      {problem && <p className="problem" role="alert" data-testid="knn-problem">{problem}</p>}
      {!hasPoints && !problem && <p className="muted">Waiting for the first point…</p>}
      <div ref={box} data-testid="knn-chart-plot" />
    </section>
  );
}
