/**
 * Evaluate: how good the current run's encoder is at telling the dataset's classes apart,
 * without leaving the page. Choose k-NN (seconds), the linear probe or fine-tuning, and how many
 * images (a small or quick seeded subset, or all); the worker evaluates the paused or ended run from its
 * parameters (src/engine/evaluate.ts), never changing it, with a progress bar; then the overall
 * accuracy, the per-class accuracy as bars and the confusion matrix as a heatmap
 * (EvaluationView). Results are kept with the run (src/store/runs.ts) and shown again in Runs
 * after a reload. A dataset without labels gets a plain message instead.
 *
 * For end-to-end tests: [data-testid=evaluate] data-status ('idle' | 'running' | 'done' |
 * 'failed'); controls [data-testid=eval-method], [data-testid=eval-size], [data-testid=eval-run];
 * [data-testid=eval-progress], [data-testid=eval-problem], [data-testid=eval-unlabelled];
 * the result: [data-testid=evaluation-result] (EvaluationView).
 */
import { useState } from 'react';
import type { EvalMethodSpec, EvaluateRequestSpec, EvaluateSourceSpec, EvaluationProgressSpec } from '../../protocol/train';
import { useRunsStore } from '../../store/runs';
import { useEvaluationStore, useTrainStore, type EvaluationState, type RunView } from '../../store/train';
import { EvaluationView, methodLabel } from '../watch/EvaluationView';

/** How many images an evaluation uses: seeded subsets of each split, or all of them. */
export type EvalSize = 'small' | 'quick' | 'all';
export const EVAL_SIZES: Record<Exclude<EvalSize, 'all'>, { maxTrain: number; maxVal: number }> = {
  /** Seconds for a tiny model on a software GPU. */
  small: { maxTrain: 300, maxVal: 100 },
  /** Seconds on a real GPU. */
  quick: { maxTrain: 1000, maxVal: 250 },
};

const METHODS: { id: EvalMethodSpec; label: string; hint: string }[] = [
  { id: 'knn', label: 'k-NN (fast)', hint: 'frozen features; the 20 nearest training images vote (cosine similarity)' },
  { id: 'linprobe', label: 'Linear probe', hint: 'frozen features; one linear layer trained on them (300 steps)' },
  { id: 'finetune', label: 'Fine-tune (slow)', hint: 'the whole encoder and a head trained (100 steps of 32 images), with layer-wise lr decay' },
];

/** What the worker is asked for: the method's step budget sized for a page, on the quick subset or every image. */
export function evaluationRequest(method: EvalMethodSpec, size: EvalSize): EvaluateRequestSpec {
  return {
    method, seed: 0,
    ...(size === 'all' ? {} : EVAL_SIZES[size]),
    ...(method === 'linprobe' ? { steps: 300 } : method === 'finetune' ? { steps: 100, batch: 32 } : {}),
  };
}

const PHASE: Record<EvaluationProgressSpec['phase'], string> = { features: 'features of the images', train: 'training steps', predict: 'validation images classified' };

export function EvaluationProgress({ state }: { state: EvaluationState }) {
  const p = state.progress;
  const frac = p && p.total > 0 ? p.done / p.total : 0;
  return (
    <div className="progress" data-testid="eval-progress" data-phase={p?.phase ?? ''}>
      <div className="bar" aria-hidden><div style={{ width: `${Math.round(100 * frac)}%` }} /></div>
      <div className="progress-text eval-progress-text">
        Evaluating ({methodLabel(state.request.method)}): {p ? `${p.done.toLocaleString('en')} / ${p.total.toLocaleString('en')} ${PHASE[p.phase]}` : 'waiting for the worker…'}
      </div>
    </div>
  );
}

/** Why a run cannot be evaluated now, or null. */
function blocked(run: RunView, workerReady: boolean): string | null {
  if (!workerReady) return 'The training worker is not ready (evaluation runs on this page’s GPU).';
  if (run.status === 'starting') return 'The run is starting.';
  if (['running', 'pausing', 'stopping'].includes(run.status)) return 'Pause the run (or let it finish) to evaluate its encoder as it is now.';
  if (run.status === 'error' && !run.checkpoint) return 'The run ended before anything could be kept: there is nothing to evaluate.';
  return null;
}

export function EvaluatePanel() {
  const run = useTrainStore((s) => s.run);
  const workerReady = useTrainStore((s) => s.worker.status === 'ready');
  const software = useTrainStore((s) => s.worker.status === 'ready' && s.worker.adapter.kind !== 'hardware');
  const state = useEvaluationStore((s) => (run ? s.byRun[run.runId] : undefined));
  const stored = useRunsStore((s) => (run ? s.runs.find((r) => r.id === run.runId)?.evaluations : undefined));
  const [method, setMethod] = useState<EvalMethodSpec>('knn');
  const [chosenSize, setSize] = useState<EvalSize | null>(null);
  // A software GPU (SwiftShader, lavapipe) starts with the small subset: seconds instead of a minute.
  const size: EvalSize = chosenSize ?? (software ? 'small' : 'quick');

  if (!run?.started) {
    return (
      <section className="card evaluate" data-testid="evaluate" data-status="idle">
        <h2>Evaluate</h2>
        <p className="muted">Train a run, then pause it or let it finish to measure here how well its encoder separates the dataset’s classes (k-NN, linear probe or fine-tuning): accuracy, accuracy per class and a confusion matrix.</p>
      </section>
    );
  }
  const unlabelled = run.started.data.classes === 0;
  const why = blocked(run, workerReady);
  const running = state?.status === 'running';
  const result = state?.status === 'done' ? state.result : state?.status === 'running' ? undefined : stored?.[method] ?? (stored ? Object.values(stored)[0] : undefined);

  const evaluate = () => {
    const ended = ['done', 'stopped', 'error'].includes(run.status);
    const ck = run.checkpoint;
    // An ended run may have left the worker (it keeps the last few): its weights go along.
    const source: EvaluateSourceSpec | undefined = ended && ck ? { model: ck.config.model, params: ck.params, data: ck.data, step: ck.step } : undefined;
    useEvaluationStore.getState().evaluate(run.runId, evaluationRequest(method, size), source);
  };

  return (
    <section className="card evaluate" data-testid="evaluate" data-status={state?.status ?? 'idle'}>
      <h2>Evaluate {run.started && <span className="badge">{run.started.data.name}</span>}</h2>
      {unlabelled ? (
        <p className="problem-box" data-testid="eval-unlabelled">
          {run.started.data.name} has no labels, so there is no accuracy to measure: evaluation needs a labelled dataset (MNIST, Shapes, or an import with class
          folders, IDX labels or CIFAR). The run’s weights can still be exported or used as a teacher.
        </p>
      ) : (
        <>
          <div className="controls eval-controls">
            <label className="check">
              Method{' '}
              <select value={method} onChange={(e) => setMethod(e.target.value as EvalMethodSpec)} disabled={running} data-testid="eval-method">
                {METHODS.map((m) => <option key={m.id} value={m.id} title={m.hint}>{m.label}</option>)}
              </select>
            </label>
            <label className="check">
              Images{' '}
              <select value={size} onChange={(e) => setSize(e.target.value as EvalSize)} disabled={running} data-testid="eval-size">
                <option value="small">{`${EVAL_SIZES.small.maxTrain} training / ${EVAL_SIZES.small.maxVal} validation (small)`}</option>
                <option value="quick">{`${EVAL_SIZES.quick.maxTrain.toLocaleString('en')} training / ${EVAL_SIZES.quick.maxVal} validation (quick)`}</option>
                <option value="all">{`all (${run.started.data.train.toLocaleString('en')} / ${run.started.data.val.toLocaleString('en')})`}</option>
              </select>
            </label>
            <button type="button" onClick={evaluate} disabled={!!why || running} data-testid="eval-run">{running ? 'Evaluating…' : 'Run evaluation'}</button>
          </div>
          <p className="muted eval-hint">{METHODS.find((m) => m.id === method)!.hint}. The run itself is not changed.</p>
          {why && <p className="muted" data-testid="eval-blocked">{why}</p>}
        </>
      )}
      {running && <EvaluationProgress state={state} />}
      {state?.status === 'failed' && <p className="verdict fail" role="alert" data-testid="eval-problem">{state.problem}</p>}
      {result && <EvaluationView result={result} />}
    </section>
  );
}
