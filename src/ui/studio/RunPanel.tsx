/**
 * Run: start, pause, resume, stop; a progress bar with the step, the epoch, images per second and
 * the time left (and, in mixed precision, the loss scale and the steps skipped so far); what the
 * worker really trains (its resolved configuration); and the run's errors, each with what to do
 * and the state it kept. The per-step numbers are written into the DOM from the metrics buffer's
 * subscription, so the page does not re-render per step.
 */
import { useEffect, useRef } from 'react';
import type { Checkpoint, ResolvedTrainSpec, StepRecord, TrainErrorKind } from '../../protocol/train';
import { requestOf, startStudioRun, useRunsStore } from '../../store/runs';
import { trainMetrics, useStudioStore, useTrainStore, type RunView } from '../../store/train';
import { dataSpecOf, hasProblems, knnOptionsOf, toTrainSpec, validateConfig } from './config';
import { CheckpointControls } from './CheckpointPanel';
import { ExportButton } from './ExportButton';
import { useAdapterFeatures, useConfigStore } from './state';

const ACTIVE = ['starting', 'running', 'pausing', 'paused', 'stopping'];

export const isActive = (run: RunView | null): boolean => !!run && ACTIVE.includes(run.status);

const ERRORS: Record<TrainErrorKind, { title: string; todo: string }> = {
  'device-lost': { title: 'The GPU device was lost', todo: 'This happens when the driver resets or the browser reclaims the GPU. Continue the run from what was kept below: a new device is acquired. If it keeps happening, close other GPU-heavy tabs or reload the page.' },
  'out-of-memory': { title: 'This run does not fit this GPU', todo: 'Use a smaller model (width, blocks), a smaller batch, or a higher mask ratio (fewer visible patches), then start again.' },
  diverged: { title: 'Training diverged (NaN or Inf in the loss)', todo: 'The weights were restored to the last good step and kept. Lower the learning rate or lengthen the warmup in Configure, then continue from the kept step (with the new settings) or start again.' },
  'invalid-config': { title: 'This configuration cannot be trained', todo: 'Fix the setting named above in Configure, then start again.' },
  data: { title: 'The dataset could not be used', todo: 'Choose another dataset, or import it again (its size and channels set the image size).' },
  busy: { title: 'A run is already active', todo: 'Stop it before starting another.' },
  'no-gpu': { title: 'No GPU for training', todo: 'This browser gives no WebGPU adapter to the worker: see the WebGPU card for where it works.' },
  internal: { title: 'Training failed', todo: 'This is a bug in the studio: the message says where. The run’s results so far are kept in Runs; reload the page and continue or start again.' },
};

function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** What the worker resolved, in words, with the numbers as data attributes for tests. */
function Resolved({ c }: { c: ResolvedTrainSpec }) {
  const pair = c.distill?.pairs[0];
  return (
    <p className="resolved" data-testid="resolved-config" data-mode={c.mode} data-visible={c.visible} data-patches={c.patches} data-mask-ratio={c.maskRatio}
      data-teacher-block={pair?.teacherBlock ?? ''} data-student-block={pair?.studentBlock ?? ''} data-lr={c.lr} data-batch={c.batch} data-accum-steps={c.accumSteps} data-precision={c.precision ?? 'f32'}>
      Training <strong>{c.mode.toUpperCase()}</strong> {c.model.embedDim}×{c.model.depth}: <strong>{c.visible} of {c.patches} patches visible</strong> (mask {c.maskRatio.toFixed(3)})
      {c.teacher && pair && <> · teacher {c.teacher.embedDim}×{c.teacher.depth} stopped at <strong>block kT = {pair.teacherBlock}</strong>, student block kS = {pair.studentBlock}, α {c.distill!.alpha}, {c.distill!.kind.toUpperCase()}</>}
      {' '}· batch {c.batch}{c.accumSteps > 1 && <> × {c.accumSteps} micro-batches</>} · peak lr {c.lr.toPrecision(3)} · {c.totalSteps} steps{c.precision === 'mixed' && <> · <strong>mixed precision</strong> (f16 matmuls, loss scaling)</>}
    </p>
  );
}

/** Mixed precision's live numbers: the loss scale after this step and the steps skipped so far (f16 overflows); null for f32. */
export function lossScaleText(r: StepRecord): string | null {
  if (r.lossScale === undefined) return null;
  const n = r.skippedSteps ?? 0;
  return `loss scale ${r.lossScale} · ${n} step${n === 1 ? '' : 's'} skipped`;
}

function Progress({ run }: { run: RunView }) {
  const bar = useRef<HTMLDivElement>(null);
  const text = useRef<HTMLSpanElement>(null);
  const step = useRef<HTMLSpanElement>(null);
  const scale = useRef<HTMLSpanElement>(null);
  const total = run.request.config.totalSteps;
  const mixed = run.request.config.precision === 'mixed';
  const runId = run.runId;
  useEffect(() => {
    let last = 0;
    const show = () => {
      const latest = trainMetrics.latest(runId);
      const s = latest?.step ?? run.step;
      if (step.current) step.current.textContent = String(s);
      if (bar.current) bar.current.style.width = `${Math.min(100, (100 * s) / total)}%`;
      if (!latest || !text.current) return;
      // Time left from the recent pace (pauses excluded: elapsedMs is training time).
      const all = trainMetrics.records(runId);
      const back = all[Math.max(0, all.length - 21)];
      const msPerStep = latest.step > back.step ? (latest.elapsedMs - back.elapsedMs) / (latest.step - back.step) : latest.elapsedMs / Math.max(1, latest.step);
      text.current.textContent = `epoch ${latest.epoch.toFixed(2)} · ${latest.imagesPerSec.toFixed(latest.imagesPerSec < 100 ? 1 : 0)} images/s · loss ${latest.loss.toFixed(4)} · ${formatDuration(latest.elapsedMs)} elapsed · ETA ${formatDuration((total - s) * msPerStep)}`;
      const scaleText = lossScaleText(latest);
      if (scale.current && scaleText) {
        scale.current.textContent = ` · ${scaleText}`;
        scale.current.dataset.lossScale = String(latest.lossScale);
        scale.current.dataset.skipped = String(latest.skippedSteps ?? 0);
      }
      last = performance.now();
    };
    show();
    void last;
    return trainMetrics.subscribe((id) => id === runId && show());
  }, [runId, total, run.step]);
  return (
    <div className="progress" data-testid="train-progress">
      <div className="bar" aria-hidden><div ref={bar} /></div>
      <div className="progress-text">
        Step <span data-testid="train-step" ref={step}>{run.step}</span> / {total} · <span ref={text} data-testid="train-rates">waiting for the first step…</span>
        {mixed && <span ref={scale} data-testid="train-loss-scale" />}
      </div>
    </div>
  );
}

function RunError({ run, onContinue, canContinue }: { run: RunView; onContinue: (ck: Checkpoint) => void; canContinue: boolean }) {
  const e = run.error!;
  const info = ERRORS[e.kind] ?? ERRORS.internal;
  const ck = run.checkpoint;
  return (
    <div className="card error run-error" data-testid="train-error" role="alert" data-kind={e.kind}>
      <strong>{info.title}</strong>
      <p>{e.message}</p>
      <p className="todo"><em>What to do:</em> {info.todo}</p>
      {ck && e.kind !== 'invalid-config' && (
        <p>
          Kept: the run at step {ck.step} (its weights, optimiser state and curves; also in Runs).{' '}
          <button type="button" onClick={() => onContinue(ck)} disabled={!canContinue} data-testid="continue-run">Continue from step {ck.step}</button>
        </p>
      )}
    </div>
  );
}

export function RunPanel({ canStart: workerReady }: { canStart: boolean }) {
  const run = useTrainStore((s) => s.run);
  const worker = useTrainStore((s) => s.worker);
  const workerError = useTrainStore((s) => s.workerError);
  const config = useConfigStore((s) => s.config);
  const teacher = useStudioStore((s) => s.teacher);
  const features = useAdapterFeatures();
  const { pause, resume, stop } = useTrainStore.getState();
  const active = isActive(run);
  const problems = validateConfig(config, config.mode === 'dmae' ? teacher?.model ?? null : null, features);
  const invalid = hasProblems(problems);
  const canStart = workerReady && worker.status === 'ready' && !active && !invalid;

  const startRun = () => {
    const steps = config.totalSteps;
    const dmae = config.mode === 'dmae' && teacher;
    startStudioRun(
      {
        config: toTrainSpec(config, dmae ? teacher.model : null), data: dataSpecOf(config),
        ...(dmae ? { teacher: teacher.source } : {}),
        options: {
          reconEvery: Math.max(1, Math.round(steps / 10)), reconCount: Math.min(6, config.batch),
          // A small model's snapshot (kept for a lost device) is a cheap readback: take one often.
          ...(config.embedDim * config.depth <= 512 ? { snapshotEvery: 5 } : {}),
          ...knnOptionsOf(config),
        },
      },
      config, { teacherLabel: dmae ? teacher.label : undefined },
    );
  };

  const continueRun = (ck: Checkpoint) => {
    if (!run) return;
    const req = requestOf(run.runId);
    if (!req) return;
    // After a divergence the user is told to lower the lr: continue with the form's optimiser
    // settings (the model must stay the checkpoint's; the worker refuses one that does not fit).
    const request = run.error?.kind === 'diverged' && !invalid
      ? { ...req.request, config: toTrainSpec(config, req.request.config.teacher ?? null) }
      : req.request;
    const name = useRunsStore.getState().runs.find((r) => r.id === run.runId)?.name ?? req.name ?? 'run';
    startStudioRun({ ...request, resume: ck }, request === req.request ? req.form : config, { teacherLabel: req.teacherLabel, name: `${name.replace(/ \(continued\)$/, '')} (continued)` });
  };

  const started = run?.started;
  const runName = useRunsStore((s) => (run ? s.runs.find((r) => r.id === run.runId)?.name : undefined));
  return (
    <section className="card run" data-testid="run">
      <h2>
        Run {run && <span className={`badge status-${run.status}`} data-testid="train-status">{run.status}</span>}
      </h2>
      <div className="controls">
        <button type="button" disabled={!canStart} onClick={startRun} data-testid="start">Start</button>
        <button type="button" disabled={run?.status !== 'running'} onClick={pause} data-testid="pause">Pause</button>
        <button type="button" disabled={run?.status !== 'paused'} onClick={resume} data-testid="resume">Resume</button>
        <button type="button" disabled={!active || run?.status === 'stopping'} onClick={stop} data-testid="stop">Stop</button>
        <ExportButton source={run && !active && run.checkpoint ? {
          params: run.checkpoint.params, config: run.checkpoint.config, step: run.checkpoint.step,
          norm: started ? { mean: started.data.mean, std: started.data.std } : undefined, name: runName ?? run.runId, nTrain: started?.data.train,
        } : null} />
      </div>
      <CheckpointControls />
      {invalid && !active && <p className="muted" data-testid="start-blocked">Start is off until the configuration’s problems (marked in Configure) are fixed.</p>}
      {!workerReady && <p className="muted" data-testid="run-needs-webgpu">Training needs WebGPU in this browser (see above); configuring, datasets and the runs list work without it.</p>}
      {worker.status === 'starting' && <p className="muted">Starting the training worker…</p>}
      {worker.status === 'unavailable' && <p className="verdict fail" role="alert">Training is unavailable: {worker.message}</p>}
      {run && <Progress key={run.runId} run={run} />}
      {started && <Resolved c={started.config} />}
      {started && (
        <p className="muted" data-testid="run-facts">
          {started.data.name}: {started.data.train.toLocaleString('en')} training images ({started.data.C}×{started.data.H}×{started.data.W}) · {(started.memory.totalBytes / 2 ** 20).toFixed(1)} MiB of GPU buffers · {started.adapter.description}
        </p>
      )}
      {run?.error && <RunError run={run} onContinue={continueRun} canContinue={worker.status === 'ready' || worker.status === 'off'} />}
      {run?.result && (
        <p className="verdict pass" data-testid="run-result">
          {run.result.reason === 'done' ? 'Done' : 'Stopped'} at step {run.result.step} after {formatDuration(run.result.elapsedMs)} of training; kept in Runs.
        </p>
      )}
      {workerError && <p className="verdict fail" role="alert" data-testid="worker-error">{workerError}</p>}
    </section>
  );
}
