/**
 * Runs: every run of this browser (IndexedDB, src/store/runs.ts) with its configuration, final
 * numbers and whether its weights are kept; rename, delete, keep, export, use as a teacher,
 * load its configuration, and compare (the selected runs' curves are overlaid by the Watch
 * charts through `compareRunIds`; a table of their final numbers is here). A run's kept
 * evaluations show as badges and, unfolded, as pictures (EvaluationView); a run with kept
 * weights can be evaluated here (quick k-NN) after a reload.
 */
import { useState } from 'react';
import type { EvalMethodSpec } from '../../protocol/train';
import { WEIGHTS_BUDGET_BYTES, loadHistory, useRunsStore, type RunRecord } from '../../store/runs';
import { useEvaluationStore, useStudioStore, useTrainStore } from '../../store/train';
import { EvaluationView, methodLabel } from '../watch/EvaluationView';
import { EvaluationProgress, evaluationRequest } from './EvaluatePanel';
import { ExportButton } from './ExportButton';
import { useConfigStore } from './state';

const fmt = (x: number | undefined, digits = 4) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits));
const mib = (b: number) => `${(b / 2 ** 20).toFixed(b < 2 ** 20 ? 2 : 1)} MiB`;

function RunRow({ r, live }: { r: RunRecord; live: boolean }) {
  const { rename, remove, setKeep, weights } = useRunsStore.getState();
  const compare = useStudioStore((s) => s.compareRunIds);
  const setCompare = useStudioStore((s) => s.setCompareRunIds);
  const teacher = useStudioStore((s) => s.teacher);
  const setTeacher = useStudioStore((s) => s.setTeacher);
  const replaceConfig = useConfigStore((s) => s.replace);
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(r.name);
  const selected = compare.includes(r.id);
  const evaluation = useEvaluationStore((s) => s.byRun[r.id]);
  const workerReady = useTrainStore((s) => s.worker.status === 'ready');
  const workerAdapter = useTrainStore((s) => (s.worker.status === 'ready' ? s.worker.adapter.kind : null));
  // The current run's evaluation shows in Evaluate; a stored run's here.
  const isCurrent = useTrainStore((s) => s.run?.runId === r.id);
  const evals = Object.values(r.evaluations ?? {});
  const [shown, setShown] = useState<EvalMethodSpec | null>(null);
  const showing = (shown && r.evaluations?.[shown]) || null;
  const evaluateStored = async () => {
    const w = await weights(r.id);
    if (!w) return;
    const software = workerAdapter !== 'hardware';
    useEvaluationStore.getState().evaluate(r.id, evaluationRequest('knn', software ? 'small' : 'quick'), { model: w.model, params: w.params, data: r.data, step: r.step });
  };
  const status = r.status === 'running' && !live ? 'interrupted' : r.status;
  const m = r.spec.model;
  const useAsTeacher = async () => {
    const w = await weights(r.id);
    if (w) setTeacher({ label: r.name, model: w.model, source: { kind: 'params', params: w.params }, runId: r.id });
  };
  return (
    <li className={`run-row ${selected ? 'selected' : ''}`} data-testid="run-row" data-run-id={r.id} data-status={status}>
      <div className="run-head">
        <label className="compare" title="Overlay this run's curves">
          <input type="checkbox" checked={selected} data-testid="run-compare" onChange={(e) => {
            if (e.target.checked) loadHistory(r.id);
            setCompare(e.target.checked ? [...compare, r.id] : compare.filter((x) => x !== r.id));
          }} />
        </label>
        {editing ? (
          <form onSubmit={(e) => {
            e.preventDefault();
            void rename(r.id, name);
            setEditing(false);
          }}>
            <input aria-label="Run name" value={name} onChange={(e) => setName(e.target.value)} autoFocus data-testid="run-name-input" onBlur={() => {
              void rename(r.id, name);
              setEditing(false);
            }} />
          </form>
        ) : (
          <strong className="run-name" data-testid="run-name">{r.name}</strong>
        )}
        <span className={`badge status-${status}`}>{status}</span>
        {r.weightsBytes > 0 && <span className="badge weights" title="Final weights kept in this browser">weights {mib(r.weightsBytes)}</span>}
        {teacher?.runId === r.id && <span className="badge teacher">teacher</span>}
        {evals.map((e) => (
          <button key={e.method} type="button" className="link" onClick={() => setShown(shown === e.method ? null : e.method)} data-testid="run-eval-badge" data-method={e.method}
            title="Show this evaluation's pictures">
            <span className="badge eval">{methodLabel(e.method)} {(100 * e.accuracy).toFixed(1)} %</span>
          </button>
        ))}
      </div>
      <div className="muted run-facts">
        {r.spec.mode.toUpperCase()} {m.embedDim}×{m.depth} ({m.numHeads} heads), decoder {m.decoderEmbedDim}×{m.decoderDepth} · {r.dataName ?? (r.data.kind === 'builtin' ? r.data.id : 'stored dataset')} · mask {r.resolved ? r.resolved.maskRatio.toFixed(2) : r.spec.maskRatio} ·
        step {r.step} / {r.totalSteps} · loss {fmt(r.final?.loss)} (pixel {fmt(r.final?.pix)}{r.final?.distill ? `, distill ${r.final.distill.map((d) => fmt(d)).join(', ')}` : ''}) · val {fmt(r.final?.valPix)}
        {r.teacherLabel && <> · teacher {r.teacherLabel}</>}
        {r.error && <span className="problem"> · {r.error.kind}: {r.error.message}</span>}
        {r.weightsNote && <> · {r.weightsNote}</>}
      </div>
      <div className="run-actions">
        <button type="button" className="secondary small" onClick={() => setEditing(true)} data-testid="run-rename">Rename</button>
        <label className="check small" title="Always keep this run's weights (unmarked runs share a budget)">
          <input type="checkbox" checked={r.keep} onChange={(e) => void setKeep(r.id, e.target.checked)} data-testid="run-keep" /> keep weights
        </label>
        <button type="button" className="secondary small" onClick={() => replaceConfig(r.form)} title="Load this run's configuration into Configure">Load config</button>
        {r.weightsBytes > 0 && r.classes !== 0 && !live && (
          <button type="button" className="secondary small" onClick={() => void evaluateStored()} disabled={!workerReady || evaluation?.status === 'running'}
            data-testid="run-evaluate" title="k-NN accuracy of this run's encoder on a seeded subset of its dataset (1,000 training / 250 validation images; 300 / 100 on a software GPU)">Evaluate (k-NN)</button>
        )}
        {r.spec.mode === 'mae' && r.weightsBytes > 0 && (
          <button type="button" className="secondary small" onClick={() => void useAsTeacher()} data-testid="run-use-teacher">Use as teacher</button>
        )}
        <ExportButton compact load={r.weightsBytes > 0 ? async () => {
          const w = await weights(r.id);
          return w && r.resolved ? { params: w.params, config: r.resolved, step: r.step, norm: r.norm, name: r.name, nTrain: r.nTrain } : null;
        } : undefined} />
        <button type="button" className="danger small" onClick={() => void remove(r.id)} disabled={live} data-testid="run-delete" aria-label={`Delete ${r.name}`}>Delete</button>
      </div>
      {!isCurrent && evaluation?.status === 'running' && <div className="run-eval"><EvaluationProgress state={evaluation} /></div>}
      {!isCurrent && evaluation?.status === 'failed' && <p className="problem run-eval" role="alert">{evaluation.problem}</p>}
      {showing && <div className="run-eval" data-testid="run-eval-pictures"><EvaluationView result={showing} /></div>}
    </li>
  );
}

function CompareTable({ runs }: { runs: RunRecord[] }) {
  return (
    <table className="compare-table" data-testid="compare-table">
      <thead>
        <tr><th>run</th><th>mode</th><th>model</th><th>mask</th><th>steps</th><th>loss</th><th>pixel</th><th>distill</th><th>val pixel</th><th>images/s</th></tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id}>
            <td>{r.name}</td>
            <td>{r.spec.mode.toUpperCase()}</td>
            <td>{r.spec.model.embedDim}×{r.spec.model.depth}</td>
            <td>{r.resolved ? r.resolved.maskRatio.toFixed(2) : '—'}</td>
            <td>{r.step}</td>
            <td>{fmt(r.final?.loss)}</td>
            <td>{fmt(r.final?.pix)}</td>
            <td>{r.final?.distill ? fmt(r.final.distill[0]) : '—'}</td>
            <td>{fmt(r.final?.valPix)}</td>
            <td>{r.final ? r.final.imagesPerSec.toFixed(1) : '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function RunsPanel() {
  const runs = useRunsStore((s) => s.runs);
  const loaded = useRunsStore((s) => s.loaded);
  const storageError = useRunsStore((s) => s.storageError);
  const compare = useStudioStore((s) => s.compareRunIds);
  const liveId = useTrainStore((s) => (s.run && ['starting', 'running', 'pausing', 'paused', 'stopping'].includes(s.run.status) ? s.run.runId : null));
  const compared = runs.filter((r) => compare.includes(r.id));
  return (
    <section className="card runs" data-testid="runs">
      <h2>Runs <span className="badge">{runs.length}</span></h2>
      <p className="muted">
        Kept in this browser across reloads: configuration, curves and final numbers. Final weights are kept for runs marked “keep weights”, and for the most
        recent other runs up to {WEIGHTS_BUDGET_BYTES / 2 ** 20} MiB together; older runs keep their curves only. Tick runs to compare them.
      </p>
      {storageError && <p className="verdict fail" role="alert">{storageError}</p>}
      {loaded && runs.length === 0 && <p className="muted">No runs yet.</p>}
      <ul className="run-list">
        {runs.map((r) => <RunRow key={r.id} r={r} live={r.id === liveId} />)}
      </ul>
      {compared.length > 0 && <CompareTable runs={compared} />}
    </section>
  );
}
