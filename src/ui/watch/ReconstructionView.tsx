/**
 * The live MAE-style reconstruction grid: one row per fixed validation image, columns original,
 * masked input, reconstruction, reconstruction with the visible patches pasted back — drawn on a
 * canvas from the worker's `reconstruction` message (the store's run.reconstruction), with the
 * step and the validation loss, and a label over each column.
 *
 * For end-to-end tests the root (data-testid="reconstruction-view") carries data-step, data-rows,
 * data-levels (distinct grey levels per column, comma-separated) and data-nonblank ("true" when
 * the original and the reconstruction columns both have more than 8 levels) of the picture shown,
 * and data-latest-step; the canvas is data-testid="reconstruction-canvas". A slider
 * (data-testid="reconstruction-history") goes back through the run's earlier reconstructions
 * (the last 32 MiB of them); at its right end it follows the latest.
 */
import { useEffect, useRef, useState } from 'react';
import { useTrainStore, type ReconstructionView as Recon } from '../../store/train';
import { isNonBlank } from './heatmap';

export interface ReconstructionViewProps {
  /** The picture to show; default: the store's current run's latest reconstruction. */
  view?: Recon | null;
  /** CSS pixels per image pixel (default: fit the width, at most 2). */
  scale?: number;
}

/** Earlier reconstructions of the run kept for the step slider, within this many bytes of pixels. */
const HISTORY_BYTES = 32 * 2 ** 20;

export function ReconstructionView({ view: given, scale }: ReconstructionViewProps) {
  const fromStore = useTrainStore((s) => s.run?.reconstruction ?? null);
  const runId = useTrainStore((s) => s.run?.runId ?? null);
  const latest = given === undefined ? fromStore : given;
  // The run's reconstructions so far (the store keeps only the latest): a slider goes back through them.
  const history = useRef<{ runId: string | null; frames: Recon[] }>({ runId: null, frames: [] });
  const [pick, setPick] = useState<number | null>(null); // null: follow the latest
  const h = history.current;
  if (h.runId !== runId) {
    h.runId = runId;
    h.frames = [];
  }
  if (latest && h.frames[h.frames.length - 1] !== latest) {
    if (h.frames.length && h.frames[h.frames.length - 1].step === latest.step) h.frames[h.frames.length - 1] = latest;
    else h.frames.push(latest);
    let bytes = h.frames.reduce((t, f) => t + f.data.byteLength, 0);
    while (h.frames.length > 1 && bytes > HISTORY_BYTES) bytes -= h.frames.shift()!.data.byteLength;
  }
  const frames = h.frames;
  const index = pick !== null && pick < frames.length - 1 ? pick : null;
  const view = index === null ? latest : frames[index];
  useEffect(() => setPick(null), [runId]);
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const ctx = view && canvas.current?.getContext('2d');
    if (ctx && view) ctx.putImageData(new ImageData(view.data, view.width, view.height), 0, 0);
  }, [view]);
  if (!view) {
    return (
      <section className="card" data-testid="reconstruction-view" data-nonblank="false">
        <h2>Reconstructions</h2>
        <p className="muted">The reconstructions of fixed validation images appear here when a run starts.</p>
      </section>
    );
  }
  const levels = view.levels;
  const nonBlank = levels.length >= 3 && isNonBlank(levels[0]) && isNonBlank(levels[2]);
  const pct = (x: number) => `${(100 * x) / view.width}%`;
  const template = [pct(view.gap), ...view.columns.flatMap(() => [pct(view.cell), pct(view.gap)])].join(' ');
  const cssWidth = scale ? view.width * scale : undefined;
  return (
    <section className="card" data-testid="reconstruction-view" data-step={view.step} data-latest-step={latest?.step ?? view.step} data-rows={view.rows} data-levels={levels.join(',')} data-nonblank={String(nonBlank)}>
      <h2>Reconstructions <span className="badge">step {view.step}</span></h2>
      {frames.length > 1 && (
        <label style={{ display: 'flex', gap: 8, alignItems: 'center', margin: '0 0 6px' }}>
          Step
          <input
            type="range" min={0} max={frames.length - 1} value={index ?? frames.length - 1} data-testid="reconstruction-history"
            onChange={(e) => setPick(Number(e.target.value) >= frames.length - 1 ? null : Number(e.target.value))} style={{ flex: 1 }}
            aria-label="Reconstruction step"
          />
          <span className="muted" style={{ fontVariantNumeric: 'tabular-nums' }}>{index === null ? 'latest' : `${index + 1} of ${frames.length}`}</span>
        </label>
      )}
      <figure style={{ margin: 0, width: cssWidth ?? '100%', maxWidth: cssWidth ? undefined : view.width * 2 }}>
        <div style={{ display: 'grid', gridTemplateColumns: template, fontSize: '0.8em', textAlign: 'center', marginBottom: 2 }} aria-hidden="true">
          {view.columns.map((c, i) => <span key={c} style={{ gridColumn: 2 + 2 * i }} className="muted">{c}</span>)}
        </div>
        <canvas
          ref={canvas} width={view.width} height={view.height} data-testid="reconstruction-canvas" data-step={view.step}
          role="img" aria-label={`Reconstructions at step ${view.step}: ${view.rows} rows of ${view.columns.join(', ')}`}
          style={{ width: '100%', imageRendering: 'pixelated', display: 'block' }}
        />
        <figcaption className="muted" style={{ marginTop: 4 }}>
          Step {view.step} · validation loss <span data-testid="reconstruction-val-loss">{view.val.loss.toFixed(4)}</span>
          {view.val.loss !== view.val.pix && <> (pixel {view.val.pix.toFixed(4)})</>} · {view.rows} fixed validation images, the same mask every time
        </figcaption>
      </figure>
    </section>
  );
}
