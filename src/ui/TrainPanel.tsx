/**
 * A minimal training panel: a tiny MAE on a built-in dataset, trained in the training worker.
 * Start / pause / resume / stop, the live step and loss, the latest reconstruction of the fixed
 * validation images. The step and loss are written to the DOM from the metrics buffer's
 * subscription, not through React state, so nothing re-renders per step. (The full studio —
 * every knob, curves, runs, DMAE — is built on the same store and protocol.)
 */
import { useEffect, useRef, useState, type CSSProperties } from 'react';
import type { TrainSpec } from '../protocol/train';
import { startTrainWorker, trainMetrics, useTrainStore, type ReconstructionView } from '../store/train';

/** The built-ins' geometry (what the model is built for). */
const DATASETS = {
  mnist: { label: 'MNIST (28×28 gray)', imgSize: 28, inChans: 1 },
  shapes: { label: 'Shapes (32×32 colour, generated)', imgSize: 32, inChans: 3 },
} as const;
type DatasetId = keyof typeof DATASETS;

/** The tiny preset: a 32-wide, 2-block ViT with a 1-block decoder; trains in seconds even on a software GPU. */
function tinySpec(dataset: DatasetId, patchSize: number, maskRatio: number, steps: number): TrainSpec {
  const { imgSize, inChans } = DATASETS[dataset];
  return {
    mode: 'mae',
    model: { imgSize, patchSize, inChans, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, normPixLoss: true },
    maskRatio, batch: 8, lr: 2e-3, warmupSteps: Math.round(0.05 * steps), totalSteps: steps, seed: 0,
  };
}

const row: CSSProperties = { display: 'flex', flexWrap: 'wrap', gap: '10px 18px', alignItems: 'center', margin: '8px 0' };
const input: CSSProperties = { width: '5.5em', marginLeft: 6, font: 'inherit' };

export function TrainPanel() {
  useEffect(() => startTrainWorker(), []);
  const worker = useTrainStore((s) => s.worker);
  const run = useTrainStore((s) => s.run);
  const workerError = useTrainStore((s) => s.workerError);
  const { start, pause, resume, stop } = useTrainStore.getState();
  const [dataset, setDataset] = useState<DatasetId>('mnist');
  const [patchSize, setPatchSize] = useState(4);
  const [maskRatio, setMaskRatio] = useState(0.75);
  const [steps, setSteps] = useState(40);

  const stepEl = useRef<HTMLSpanElement>(null);
  const lossEl = useRef<HTMLSpanElement>(null);
  const firstLossEl = useRef<HTMLSpanElement>(null);
  const runId = run?.runId;
  useEffect(() => {
    if (!runId) return;
    const show = () => {
      const all = trainMetrics.records(runId);
      const last = all[all.length - 1];
      if (stepEl.current) stepEl.current.textContent = last ? String(last.step) : '0';
      if (lossEl.current) lossEl.current.textContent = last ? last.loss.toFixed(4) : '—';
      if (firstLossEl.current) firstLossEl.current.textContent = all.length > 0 ? all[0].loss.toFixed(4) : '—';
    };
    show();
    return trainMetrics.subscribe((id) => id === runId && show());
  }, [runId]);

  const active = run !== null && ['starting', 'running', 'pausing', 'paused', 'stopping'].includes(run.status);
  const canStart = worker.status === 'ready' && !active;
  const total = run?.request.config.totalSteps;
  const started = run?.started;

  return (
    <section className="card" data-testid="train">
      <h2>
        Train a tiny MAE{' '}
        {run && <span className="badge" data-testid="train-status">{run.status}</span>}
      </h2>
      <p className="note">
        A 32-wide, 2-block ViT masked autoencoder, trained here in a Web Worker on this page’s GPU. The pictures show fixed validation images:
        original, masked input, reconstruction, and reconstruction with the visible patches pasted back.
      </p>
      <div style={row}>
        <label>
          Dataset
          <select value={dataset} onChange={(e) => setDataset(e.target.value as DatasetId)} disabled={active} style={{ marginLeft: 6, font: 'inherit' }}>
            {Object.entries(DATASETS).map(([id, d]) => <option key={id} value={id}>{d.label}</option>)}
          </select>
        </label>
        <label>
          Patch size
          <input type="number" min={1} max={32} value={patchSize} onChange={(e) => setPatchSize(Number(e.target.value))} disabled={active} style={input} />
        </label>
        <label>
          Mask ratio
          <input type="number" min={0} max={0.98} step={0.05} value={maskRatio} onChange={(e) => setMaskRatio(Number(e.target.value))} disabled={active} style={input} />
        </label>
        <label>
          Steps
          <input type="number" min={1} max={100000} value={steps} onChange={(e) => setSteps(Number(e.target.value))} disabled={active} style={input} />
        </label>
      </div>
      <div style={row}>
        <button type="button" disabled={!canStart} onClick={() => start({
          config: tinySpec(dataset, patchSize, maskRatio, steps), data: { kind: 'builtin', id: dataset },
          options: { reconEvery: Math.max(1, Math.round(steps / 4)), reconCount: 4, snapshotEvery: 5 },
        })}>Start</button>
        <button type="button" disabled={run?.status !== 'running'} onClick={pause}>Pause</button>
        <button type="button" disabled={run?.status !== 'paused'} onClick={resume}>Resume</button>
        <button type="button" disabled={!active || run?.status === 'stopping'} onClick={stop}>Stop</button>
      </div>
      {worker.status === 'starting' && <p className="muted">Starting the training worker…</p>}
      {worker.status === 'unavailable' && <p className="verdict fail" role="alert">Training is unavailable: {worker.message}</p>}
      {run && (
        <p data-testid="train-progress" style={{ fontVariantNumeric: 'tabular-nums' }}>
          Step <span data-testid="train-step" ref={stepEl}>{run.step}</span>{total ? ` / ${total}` : ''} · loss{' '}
          <span data-testid="train-loss" ref={lossEl}>—</span> (first <span data-testid="train-first-loss" ref={firstLossEl}>—</span>)
          {started && <span className="muted"> · {started.config.visible} of {started.config.patches} patches visible · {started.data.name}</span>}
        </p>
      )}
      {run?.error && (
        <div className="card error" data-testid="train-error" role="alert">
          <strong>{ERROR_TITLE[run.error.kind]}</strong>
          <p style={{ margin: '6px 0 0' }}>{run.error.message}</p>
        </div>
      )}
      {workerError && <p className="verdict fail" role="alert">{workerError}</p>}
      {run?.reconstruction && <Reconstruction view={run.reconstruction} />}
    </section>
  );
}

const ERROR_TITLE: Record<string, string> = {
  'device-lost': 'The GPU device was lost',
  'out-of-memory': 'This run does not fit this GPU',
  diverged: 'Training diverged',
  'invalid-config': 'This configuration cannot be trained',
  data: 'The dataset could not be used',
  busy: 'A run is already active',
  'no-gpu': 'No GPU for training',
  internal: 'Training failed',
};

function Reconstruction({ view }: { view: ReconstructionView }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const ctx = canvas.current?.getContext('2d');
    if (ctx) ctx.putImageData(new ImageData(view.data, view.width, view.height), 0, 0);
  }, [view]);
  return (
    <figure style={{ margin: '10px 0 0' }}>
      <canvas ref={canvas} width={view.width} height={view.height} data-testid="train-reconstruction" data-step={view.step} style={{ maxWidth: '100%', imageRendering: 'pixelated' }} />
      <figcaption className="muted">
        Step {view.step}: {view.columns.join(' · ')} — validation loss {view.val.pix.toFixed(4)}
      </figcaption>
    </figure>
  );
}
