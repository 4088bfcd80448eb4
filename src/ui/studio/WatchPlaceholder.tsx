/**
 * Stand-ins for the Watch components (src/ui/watch/, built alongside): the latest loss as text
 * and the latest reconstruction, until the charts and views are mounted in their place.
 */
import { useEffect, useRef } from 'react';
import { trainMetrics, useTrainStore, type ReconstructionView } from '../../store/train';

export function ReconstructionCanvas({ view }: { view: ReconstructionView }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const ctx = canvas.current?.getContext('2d');
    if (ctx) ctx.putImageData(new ImageData(view.data, view.width, view.height), 0, 0);
  }, [view]);
  return (
    <figure className="recon">
      <canvas ref={canvas} width={view.width} height={view.height} data-testid="train-reconstruction" data-step={view.step} />
      <figcaption className="muted">Step {view.step}: {view.columns.join(' · ')} — validation pixel loss {view.val.pix.toFixed(4)}</figcaption>
    </figure>
  );
}

export function WatchPlaceholder() {
  const run = useTrainStore((s) => s.run);
  const loss = useRef<HTMLSpanElement>(null);
  const runId = run?.runId;
  useEffect(() => {
    if (!runId) return;
    const show = () => {
      const all = trainMetrics.records(runId);
      const last = all[all.length - 1];
      if (loss.current && last) loss.current.textContent = `loss ${all[0].loss.toFixed(4)} → ${last.loss.toFixed(4)} (pixel ${last.pix.toFixed(4)}${last.distill ? `, distillation ${last.distill.map((d) => d.toFixed(4)).join(', ')}` : ''})`;
    };
    show();
    return trainMetrics.subscribe((id) => id === runId && show());
  }, [runId]);
  return (
    <section className="card watch" data-testid="watch">
      <h2>Watch</h2>
      {!run && <p className="muted">Start a run to watch its loss curves and reconstructions here.</p>}
      {run && <p className="muted"><span ref={loss}>waiting for the first step…</span></p>}
      {run?.reconstruction && <ReconstructionCanvas view={run.reconstruction} />}
    </section>
  );
}
