/**
 * The DMAE teacher: train one here (a larger MAE on the configured dataset), pick one from the
 * runs list (an ended MAE run whose weights are kept), or import a weights file (safetensors,
 * src/io/import.ts); then "Distil from it" makes it the teacher (useStudioStore.teacher) and
 * switches the configuration to DMAE. Shows the teacher's size and the aligned blocks kS → kT.
 *
 * A teacher trained here is chosen automatically when its run ends (done, or stopped with its
 * weights). The teacher's weights travel as `{ kind: 'params' }` (a copy of its final
 * parameters), so it works after the worker forgot the run and after a reload (from the list).
 */
import { useEffect, useState, type CSSProperties } from 'react';
import type { ModelSpec, ParamsPayload, TensorEntry } from '../../protocol/train';
import { startStudioRun, useRunsStore } from '../../store/runs';
import { useStudioStore, useTrainStore, type TeacherChoice } from '../../store/train';
import { dataSpecOf, toTrainSpec, type StudioConfig } from '../studio/config';
import { useConfigStore } from '../studio/state';
import { alignmentText, describeTeacher, encoderParamCount, teacherModelFor } from './teacher';

export { encoderParamCount, teacherModelFor };

export interface TeacherPanelProps {
  /** Called after "Distil from it" set the teacher (default: the configuration's mode becomes DMAE, kT kept in the teacher's range). */
  onDistill?: (t: TeacherChoice) => void;
}

const row: CSSProperties = { display: 'flex', flexWrap: 'wrap', gap: '8px 14px', alignItems: 'center', margin: '8px 0' };

/** A ParamMap (float64, from an import) as a float32 ParamsPayload. */
function payloadOf(params: Map<string, Float64Array>): ParamsPayload {
  let total = 0;
  for (const v of params.values()) total += v.length;
  const flat = new Float32Array(total);
  const tensors: TensorEntry[] = [];
  let at = 0;
  for (const [name, v] of params) {
    flat.set(v, at);
    tensors.push({ name, shape: [v.length], offset: at * 4, length: v.length });
    at += v.length;
  }
  return { tensors, buffer: flat.buffer };
}

export function TeacherPanel({ onDistill }: TeacherPanelProps) {
  const teacher = useStudioStore((s) => s.teacher);
  const setTeacher = useStudioStore((s) => s.setTeacher);
  const config = useConfigStore((s) => s.config);
  const run = useTrainStore((s) => s.run);
  const worker = useTrainStore((s) => s.worker);
  const runs = useRunsStore((s) => s.runs);
  const [trainingRunId, setTrainingRunId] = useState<string | null>(null);
  const [pick, setPick] = useState('');
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);

  const active = !!run && ['starting', 'running', 'pausing', 'paused', 'stopping'].includes(run.status);
  const student: ModelSpec = toTrainSpec(config).model;
  const proposed = teacherModelFor(student);

  // The teacher run trained here ends: it becomes the teacher.
  useEffect(() => {
    if (!trainingRunId || !run || run.runId !== trainingRunId) return;
    if (!['done', 'stopped', 'error'].includes(run.status)) return;
    setTrainingRunId(null);
    const ck = run.checkpoint;
    if (!ck || !run.started || run.status === 'error') {
      setMessage({ ok: false, text: `The teacher run ended without weights to distil from${run.error ? `: ${run.error.message}` : ''}.` });
      return;
    }
    const m = run.started.config.model;
    setTeacher({ label: `Teacher run ${run.runId} (MAE ${m.embedDim}×${m.depth}, step ${ck.step})`, model: m, source: { kind: 'params', params: ck.params }, runId: run.runId });
    setMessage({ ok: true, text: `Trained for ${ck.step} steps; it is now the teacher.` });
  }, [run, trainingRunId, setTeacher]);

  const trainTeacher = () => {
    const form: StudioConfig = { ...config, mode: 'mae', embedDim: proposed.embedDim, depth: proposed.depth, numHeads: proposed.numHeads };
    const steps = form.totalSteps;
    const id = startStudioRun(
      { config: toTrainSpec(form), data: dataSpecOf(form), options: { reconEvery: Math.max(1, Math.round(steps / 10)), reconCount: Math.min(6, form.batch), ...(form.embedDim * form.depth <= 512 ? { snapshotEvery: 5 } : {}) } },
      form, { name: `Teacher MAE ${form.embedDim}×${form.depth}` },
    );
    setTrainingRunId(id);
    setMessage(null);
  };

  const candidates = runs.filter((r) => r.spec.mode === 'mae' && r.weightsBytes > 0 && (r.status === 'done' || r.status === 'stopped'));
  const choose = async (id: string) => {
    setPick(id);
    if (!id) return;
    const r = candidates.find((c) => c.id === id);
    const w = await useRunsStore.getState().weights(id);
    if (!r || !w) return setMessage({ ok: false, text: 'That run\'s weights are no longer kept.' });
    setTeacher({ label: `${r.name} (MAE ${w.model.embedDim}×${w.model.depth})`, model: w.model, source: { kind: 'params', params: w.params }, runId: id });
    setMessage({ ok: true, text: `${r.name} is now the teacher.` });
  };

  const importFile = async (file: File | undefined) => {
    if (!file) return;
    try {
      const { importTeacher } = await import('../../io/import');
      const { params, config: c, report } = importTeacher(new Uint8Array(await file.arrayBuffer()), { file: file.name });
      const model: ModelSpec = { ...student, ...c };
      setTeacher({ label: `${file.name} (${c.embedDim}×${c.depth})`, model, source: { kind: 'params', params: payloadOf(params) } });
      setMessage({ ok: true, text: `Imported ${file.name}${report.notes.length ? `: ${report.notes.join(' ')}` : ''}` });
    } catch (e) {
      setMessage({ ok: false, text: `${file.name} could not be imported: ${(e as Error).message}` });
    }
  };

  const distil = () => {
    if (!teacher) return;
    if (onDistill) onDistill(teacher);
    else {
      const depth = teacher.model.depth;
      const kT = config.teacherBlock >= 0 && config.teacherBlock < depth ? config.teacherBlock : Math.max(0, Math.round(0.75 * depth) - 1);
      useConfigStore.getState().set({ mode: 'dmae', teacherBlock: kT, studentBlock: Math.min(config.studentBlock, config.depth - 1) });
    }
    setMessage({ ok: true, text: `The next run distils from ${teacher.label}.` });
  };

  const geometryMismatch = teacher && (['imgSize', 'patchSize', 'inChans'] as const).filter((k) => teacher.model[k] !== student[k]);
  const kT = config.teacherBlock, kS = config.studentBlock;
  return (
    <section className="card" data-testid="teacher-panel" data-teacher={teacher?.label ?? ''} data-teacher-run={teacher?.runId ?? ''} data-training-run={trainingRunId ?? ''}>
      <h2>Teacher</h2>
      <p className="note">DMAE distils a student from a frozen, larger MAE: train one here, take one from the runs list, or import its weights.</p>
      <div style={row}>
        <button type="button" onClick={trainTeacher} disabled={active || worker.status !== 'ready'} data-testid="teacher-train">
          Train a teacher ({proposed.embedDim}-wide, {proposed.depth} blocks)
        </button>
        <span className="muted">{config.totalSteps} steps on the configured dataset{trainingRunId ? ' — training…' : ''}</span>
      </div>
      <div style={row}>
        <label>
          From a run
          <select value={pick} onChange={(e) => void choose(e.target.value)} style={{ marginLeft: 6, font: 'inherit' }} data-testid="teacher-pick">
            <option value="">{candidates.length ? 'choose a MAE run…' : 'no ended MAE run with weights'}</option>
            {candidates.map((r) => <option key={r.id} value={r.id}>{r.name} ({r.spec.model.embedDim}×{r.spec.model.depth}, step {r.step})</option>)}
          </select>
        </label>
        <label>
          Import weights (.safetensors){' '}
          <input type="file" accept=".safetensors" onChange={(e) => void importFile(e.target.files?.[0])} data-testid="teacher-import" />
        </label>
      </div>
      {teacher ? (
        <div data-testid="teacher-choice">
          <p style={{ margin: '6px 0' }}><strong>{teacher.label}</strong></p>
          <p className="muted" style={{ margin: '2px 0' }} data-testid="teacher-size">{describeTeacher(teacher.model)}</p>
          <p className="muted" style={{ margin: '2px 0' }} data-testid="teacher-kt">
            {alignmentText(kS, kT, teacher.model.depth)}
          </p>
          {geometryMismatch && geometryMismatch.length > 0 && (
            <p className="verdict fail" role="alert">The teacher's {geometryMismatch.join(', ')} differ from the configuration's: it must see the same patches.</p>
          )}
          <div style={row}>
            <button type="button" onClick={distil} disabled={active} data-testid="teacher-distill">Distil from it</button>
            <button type="button" onClick={() => setTeacher(null)} data-testid="teacher-clear">Clear</button>
          </div>
        </div>
      ) : (
        <p className="muted">No teacher chosen.</p>
      )}
      {message && <p className={message.ok ? 'muted' : 'verdict fail'} role={message.ok ? undefined : 'alert'} data-testid="teacher-message">{message.text}</p>}
    </section>
  );
}
