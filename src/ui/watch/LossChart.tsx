/**
 * Live loss curves (uPlot): total, pixel and distillation losses in the main plot (and the
 * validation pixel loss at each reconstruction of this page's runs, dotted), learning rate
 * and throughput in a second plot under it (cursor synced). Smoothing (EMA slider), log scale,
 * zoom (drag across a plot; double-click or "Reset zoom" to undo), several runs overlaid.
 *
 * Per-step records never pass through React state: the chart subscribes to `trainMetrics` and
 * sets uPlot's data at most once per batch of records, in a task of its own; React renders only
 * when the controls or the list of runs change. The plots are rebuilt only when their series
 * change (a run added, the first distillation loss of a DMAE run, the log toggle).
 *
 * For end-to-end tests the root element (data-testid="loss-chart") carries, updated in the same
 * task, the first run's raw numbers: data-run-id, data-points, data-first-step, data-last-step,
 * data-first-loss, data-last-loss, data-head-loss / data-tail-loss (mean total loss of the first /
 * last fifth of the steps), data-last-distill (Σ distill of the last step, DMAE, else ""),
 * data-contiguous ("true" when the steps are 1, 2, 3… without gaps or repeats), data-runs
 * (runs drawn) and data-series (lines drawn).
 */
import { useEffect, useMemo, useRef, useState, type CSSProperties } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useRunsStore } from '../../store/runs';
import { trainMetrics, useStudioStore, useTrainStore, type RunView } from '../../store/train';
import { buildChartData, seriesSignature, seriesStyle, summarizeRun, type ChartData, type ChartRun } from './chart-data';

export interface LossChartProps {
  /**
   * Runs to draw, first the one the debug attributes describe. Default: the store's current run,
   * then `useStudioStore.compareRunIds` (their records must be in `trainMetrics` under those ids).
   */
  runIds?: readonly string[];
  /** Legend names by run id (default: the runs list's names, else the id). */
  labels?: Readonly<Record<string, string>>;
  /** Height of the loss plot in CSS pixels (the rate plot is 55 % of it, at least 150). Default 260. */
  height?: number;
}

const controls: CSSProperties = { display: 'flex', flexWrap: 'wrap', gap: '6px 16px', alignItems: 'center', margin: '4px 0 8px' };
/** Whole steps on the x axis. */
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000, 100000, 200000, 500000, 1e6];
/** The learning-rate and throughput plot's height: enough for a few ticks. */
const rateHeight = (h: number) => Math.max(150, Math.round(h * 0.55));
const fmt = (v: number | null) => (v === null ? '' : String(v));

function axisValues(_u: uPlot, vals: number[]): string[] {
  return vals.map((v) => (v === null || v === undefined ? '' : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(4))));
}

/** Validation pixel losses of this page's runs, one point per reconstruction (the store keeps only the latest picture). */
const valHistory = new Map<string, { step: number; pix: number }[]>();
let recordingVal = false;

function recordVal(run: RunView | null): void {
  const r = run?.reconstruction;
  if (!run || !r) return;
  let list = valHistory.get(run.runId);
  if (!list) valHistory.set(run.runId, (list = []));
  const last = list[list.length - 1];
  if (last && last.step >= r.step) {
    if (last.step === r.step) last.pix = r.val.pix; // asked again at the same step (while paused)
    return;
  }
  list.push({ step: r.step, pix: r.val.pix });
}

/** Starts recording validation points (once per page, whichever chart mounts first). */
function ensureValRecording(): void {
  if (recordingVal) return;
  recordingVal = true;
  recordVal(useTrainStore.getState().run);
  useTrainStore.subscribe((s, prev) => {
    if (s.run?.reconstruction !== prev.run?.reconstruction) recordVal(s.run);
  });
}

export function LossChart({ runIds, labels, height = 260 }: LossChartProps) {
  const currentRunId = useTrainStore((s) => s.run?.runId ?? null);
  const compareRunIds = useStudioStore((s) => s.compareRunIds);
  const ids = useMemo(() => {
    const list = runIds ? [...runIds] : [...(currentRunId ? [currentRunId] : []), ...compareRunIds];
    return [...new Set(list)];
  }, [runIds, currentRunId, compareRunIds]);
  const idsKey = ids.join('\n');
  const runs = useRunsStore((s) => s.runs);
  const labelsKey = useMemo(() => {
    const names: Record<string, string> = {};
    for (const id of ids) names[id] = labels?.[id] ?? runs.find((r) => r.id === id)?.name ?? id;
    return JSON.stringify(names);
  }, [ids, labels, runs]);

  const [smoothing, setSmoothing] = useState(0.6);
  const [log, setLog] = useState(false);
  const [zoomed, setZoomed] = useState(false);

  const root = useRef<HTMLDivElement>(null);
  const lossBox = useRef<HTMLDivElement>(null);
  const rateBox = useRef<HTMLDivElement>(null);
  const empty = useRef<HTMLParagraphElement>(null);
  const resetZoom = useRef<() => void>(() => {});
  // Smoothing and the log toggle redraw the same plots (no new effect): read through refs.
  const settings = useRef({ smoothing, log });
  const redraw = useRef<() => void>(() => {});
  // The rate plot of the runs shown before (see the effect's cleanup), until drawRate replaces it.
  const retiringRate = useRef<uPlot | null>(null);
  useEffect(() => {
    settings.current = { smoothing, log };
    redraw.current();
  }, [smoothing, log]);

  useEffect(() => {
    const runIdList = idsKey ? idsKey.split('\n') : [];
    const names: Record<string, string> = JSON.parse(labelsKey);
    const plots: { loss: uPlot | null; rate: uPlot | null } = { loss: null, rate: null };
    // Each plot is rebuilt only when its own series change (else its data are set): the log
    // toggle or a first validation point rebuilds the loss plot and leaves the rate plot drawn.
    const signature = { loss: '', rate: '' };
    let zoom: { min: number; max: number } | null = null;
    // Pending draws (timer ids, 0: none). Each plot draws in a task of its own, not in an animation
    // frame: a frame's task already lays out, paints and commits the page's canvases (15–25 ms of
    // CPU on a software canvas), and uPlot's redraw (10–15 ms) on top of that made the page's
    // longest tasks. The canvas shows the new drawing at the next frame either way.
    let drawTimer = 0;
    let rateTimer = 0;
    let disposed = false;
    let last: { loss: ChartData; rate: ChartData } | null = null;
    const syncKey = `dmae-chart-${Math.random().toString(36).slice(2)}`;
    setZoomed(false); // new plots start unzoomed

    const width = () => Math.max(240, Math.floor(lossBox.current?.clientWidth || root.current?.clientWidth || 600));

    const applyZoom = () => {
      for (const u of [plots.loss, plots.rate]) {
        if (!u) continue;
        if (zoom) u.setScale('x', zoom);
      }
    };
    const unzoom = () => {
      zoom = null;
      setZoomed(false);
      if (!last) return;
      plots.loss?.setData(last.loss.data as uPlot.AlignedData, true);
      plots.rate?.setData(last.rate.data as uPlot.AlignedData, true);
    };
    resetZoom.current = unzoom;

    const make = (box: HTMLDivElement, d: ChartData, which: 'loss' | 'rate'): uPlot => {
      const runs = runIdList.length;
      const series: uPlot.Series[] = [
        { label: 'step' },
        ...d.series.map((s) => {
          const st = seriesStyle(s, runs);
          return {
            label: s.label, stroke: st.stroke, width: st.width, ...(st.dash ? { dash: st.dash } : {}), spanGaps: true,
            ...(s.metric === 'val' ? { points: { show: true, size: 6, fill: st.stroke } } : {}),
            scale: which === 'rate' && s.metric === 'imagesPerSec' ? 'ips' : 'y',
            value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : v.toPrecision(4)),
          } satisfies uPlot.Series;
        }),
      ];
      const axes: uPlot.Axis[] = [
        { label: 'step', incrs: STEP_INCRS },
        { label: which === 'loss' ? 'loss' : 'learning rate', scale: 'y', values: axisValues, size: 64 },
      ];
      if (which === 'rate') axes.push({ label: 'images/s', scale: 'ips', side: 1, grid: { show: false }, values: axisValues, size: 56 });
      const opts: uPlot.Options = {
        width: width(),
        height: which === 'loss' ? height : rateHeight(height),
        series,
        axes,
        scales: { x: { time: false }, y: which === 'loss' && settings.current.log ? { distr: 3, log: 10 } : {}, ...(which === 'rate' ? { ips: {} } : {}) },
        legend: { show: true, live: true },
        cursor: { sync: { key: syncKey }, drag: { x: true, y: false, setScale: false } },
        hooks: {
          setSelect: [
            (u) => {
              const sel = u.select;
              if (sel.width < 3) return;
              const min = u.posToVal(sel.left, 'x'), max = u.posToVal(sel.left + sel.width, 'x');
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              if (!(max > min)) return;
              zoom = { min, max };
              setZoomed(true);
              applyZoom();
            },
          ],
        },
      };
      const u = new uPlot(opts, d.data as uPlot.AlignedData, box);
      u.over.addEventListener('dblclick', unzoom);
      return u;
    };

    // The rate plot is built or updated in the task after the loss plot's: both in one task were the
    // page's longest tasks (about 70 ms of CPU to build them, 45–60 ms to redraw them, on a
    // software canvas; the studio asks for no task over 50 ms). A plot being replaced stays
    // drawn until its successor is built in the same task: no frame shows an empty chart.
    const drawRate = () => {
      rateTimer = 0;
      if (disposed || !last) return;
      const sig = seriesSignature(last.rate);
      if (plots.rate && sig === signature.rate) plots.rate.setData(last.rate.data as uPlot.AlignedData, zoom === null);
      else if (rateBox.current) {
        plots.rate?.destroy();
        retiringRate.current?.destroy();
        retiringRate.current = null;
        signature.rate = sig;
        plots.rate = make(rateBox.current, last.rate, 'rate');
        applyZoom();
      }
    };
    const draw = () => {
      drawTimer = 0;
      if (disposed) return;
      const runs: ChartRun[] = runIdList.map((runId) => ({ runId, label: names[runId] ?? runId, records: trainMetrics.records(runId), val: valHistory.get(runId) }));
      const { smoothing, log } = settings.current;
      const loss = buildChartData(runs, 'loss', { smoothing, log });
      const rate = buildChartData(runs, 'rate', { smoothing, log: false });
      last = { loss, rate };
      const sig = seriesSignature(loss, String(log));
      if (sig !== signature.loss || !plots.loss) {
        plots.loss?.destroy();
        plots.loss = null;
        signature.loss = sig;
        if (lossBox.current) {
          plots.loss = make(lossBox.current, loss, 'loss');
          applyZoom();
        }
      } else {
        plots.loss.setData(loss.data as uPlot.AlignedData, zoom === null);
      }
      if (!rateTimer) rateTimer = window.setTimeout(drawRate);
      // The debug summary of the first run (raw values).
      const el = root.current;
      if (el) {
        const s = summarizeRun(runIdList.length ? trainMetrics.records(runIdList[0]) : []);
        const attrs: Record<string, string> = {
          'data-run-id': runIdList[0] ?? '', 'data-points': String(s.points), 'data-first-step': fmt(s.firstStep), 'data-last-step': fmt(s.lastStep),
          'data-first-loss': fmt(s.firstLoss), 'data-last-loss': fmt(s.lastLoss), 'data-head-loss': fmt(s.headMean), 'data-tail-loss': fmt(s.tailMean),
          'data-last-distill': fmt(s.lastDistill), 'data-contiguous': String(s.contiguous), 'data-runs': String(runIdList.length), 'data-series': String(loss.series.length + rate.series.length),
        };
        for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      }
      if (empty.current) empty.current.hidden = loss.data[0].length > 0;
    };
    const schedule = () => {
      if (!drawTimer && !disposed) drawTimer = window.setTimeout(draw);
    };
    redraw.current = schedule;
    const want = new Set(runIdList);
    const unsubscribe = trainMetrics.subscribe((runId) => {
      if (want.has(runId)) schedule();
    });
    ensureValRecording();
    const unsubscribeVal = useTrainStore.subscribe((s, prev) => {
      if (s.run && want.has(s.run.runId) && s.run.reconstruction !== prev.run?.reconstruction) schedule();
    });
    const resize = new ResizeObserver(() => {
      const w = width();
      plots.loss?.setSize({ width: w, height });
      plots.rate?.setSize({ width: w, height: rateHeight(height) });
    });
    if (lossBox.current) resize.observe(lossBox.current);
    draw();
    return () => {
      disposed = true;
      redraw.current = () => {};
      clearTimeout(drawTimer);
      clearTimeout(rateTimer);
      unsubscribe();
      unsubscribeVal();
      resize.disconnect();
      plots.loss?.destroy();
      // The next runs' rate plot is built a task after their loss plot: this one stays drawn
      // until then (drawRate destroys it), so the box is never empty; unmounted, it goes in a second.
      const old = plots.rate;
      if (old) {
        retiringRate.current?.destroy();
        retiringRate.current = old;
        setTimeout(() => {
          if (retiringRate.current !== old) return;
          old.destroy();
          retiringRate.current = null;
        }, 1000);
      }
    };
  }, [idsKey, labelsKey, height]);

  return (
    <section className="card loss-chart" data-testid="loss-chart" ref={root}>
      <h2>Loss curves</h2>
      <div style={controls}>
        <label>
          Smoothing{' '}
          <input type="range" min={0} max={0.99} step={0.01} value={smoothing} onChange={(e) => setSmoothing(Number(e.target.value))} data-testid="loss-chart-smoothing" aria-label="Smoothing (EMA weight)" />{' '}
          <span style={{ fontVariantNumeric: 'tabular-nums' }}>{smoothing.toFixed(2)}</span>
        </label>
        <label>
          <input type="checkbox" checked={log} onChange={(e) => setLog(e.target.checked)} data-testid="loss-chart-log" /> Log scale
        </label>
        <button type="button" disabled={!zoomed} onClick={() => resetZoom.current()} data-testid="loss-chart-reset-zoom">Reset zoom</button>
        <span className="muted">Drag across a plot to zoom; double-click to reset.{ids.length > 1 ? ` ${ids.length} runs overlaid.` : ''}</span>
      </div>
      <p className="muted" ref={empty}>{ids.length ? 'No steps yet.' : 'Start a run (or choose runs to compare) to see its curves.'}</p>
      <div ref={lossBox} data-testid="loss-chart-loss" />
      <div ref={rateBox} data-testid="loss-chart-rate" />
    </section>
  );
}
