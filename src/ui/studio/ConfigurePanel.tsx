/**
 * Configure: presets and every knob of a run, each validated where it is typed (the engine's
 * own validators, sorted to the field they name: config.ts). The form lives in the URL and in
 * localStorage (state.ts). DMAE adds the teacher (a run of this studio with kept weights, or an
 * imported weights file), the teacher block kT it stops at, the student block kS, α and L1/L2.
 * Precision: f32, or mixed where the adapter has shader-f16 (otherwise offered disabled, with why).
 * Memory: the engine's plan of the run's buffers; when its largest is over what the adapter
 * allows in one (lavapipe: 128 MiB; SwiftShader in Chromium: 1 GiB), the panel says so and offers
 * the same effective batch in micro-batches that fit (gradient accumulation).
 */
import { memo, useEffect, useId, useState, type ReactNode } from 'react';
import type { ModelSpec } from '../../protocol/train';
import { useRunsStore } from '../../store/runs';
import { useStudioStore, useTrainStore, type TeacherChoice } from '../../store/train';
import {
  MIXED_PRECISION_FEATURE, PRESETS, allowsMixed, applyPreset, effectiveBatch, peakLr, patchesOf, toTrainSpec, validateConfig, visibleOf,
  type FieldKey, type PresetId, type Problems, type StudioConfig,
} from './config';
import { MaskPreview } from './MaskPreview';
import { useAdapter, useAdapterFeatures, useConfigStore } from './state';

function Field({ label, field, problems, hint, children }: { label: string; field: FieldKey; problems: Problems; hint?: ReactNode; children: (id: string, invalid: boolean) => ReactNode }) {
  const id = useId();
  const msgs = problems[field] ?? [];
  return (
    <div className={`field ${msgs.length ? 'invalid' : ''}`} data-field={field}>
      <label htmlFor={id}>{label}</label>
      {children(id, msgs.length > 0)}
      {hint && <div className="hint">{hint}</div>}
      {msgs.map((m) => (
        <div key={m} className="problem" role="alert" data-testid={`problem-${field}`}>{m}</div>
      ))}
    </div>
  );
}

type NumKey = { [K in keyof StudioConfig]: StudioConfig[K] extends number ? K : never }[keyof StudioConfig];

function Num({ k, label, problems, disabled, step, min, hint }: { k: NumKey; label: string; problems: Problems; disabled: boolean; step?: number | 'any'; min?: number; hint?: ReactNode }) {
  const value = useConfigStore((s) => s.config[k]);
  const set = useConfigStore((s) => s.set);
  return (
    <Field label={label} field={k} problems={problems} hint={hint}>
      {(id, invalid) => (
        <input
          id={id} type="number" value={Number.isFinite(value) ? value : ''} step={step ?? 1} min={min} disabled={disabled} aria-invalid={invalid}
          data-testid={`cfg-${k}`}
          onChange={(e) => set({ [k]: e.target.value === '' ? NaN : Number(e.target.value) } as Partial<StudioConfig>)}
        />
      )}
    </Field>
  );
}

/** The memory plan's line, and when the largest buffer is over the adapter's limit, why and the micro-batches that fit. */
interface Memory {
  text: string;
  tooBig?: string | null;
  fix?: { batch: number; accumSteps: number } | null;
}

const describeModel = (m: ModelSpec) => `${m.embedDim}-wide, ${m.depth} blocks, ${m.numHeads} heads, patch ${m.patchSize} on ${m.imgSize}×${m.imgSize}×${m.inChans}`;

function TeacherPicker({ config, disabled, problems }: { config: StudioConfig; disabled: boolean; problems: Problems }) {
  const teacher = useStudioStore((s) => s.teacher);
  const setTeacher = useStudioStore((s) => s.setTeacher);
  const runs = useRunsStore((s) => s.runs);
  const weights = useRunsStore((s) => s.weights);
  const set = useConfigStore((s) => s.set);
  const [importState, setImportState] = useState<{ error: string | null }>({ error: null });
  const candidates = runs.filter((r) => r.spec.mode === 'mae' && r.weightsBytes > 0 && r.status !== 'running');

  const choose = async (runId: string) => {
    if (!runId) return setTeacher(null);
    const r = runs.find((x) => x.id === runId);
    const w = await weights(runId);
    if (!r || !w) {
      setImportState({ error: `The weights of "${r?.name ?? runId}" are no longer stored: train the teacher again, or import a weights file.` });
      return;
    }
    setImportState({ error: null });
    const choice: TeacherChoice = { label: r.name, model: w.model, source: { kind: 'params', params: w.params }, runId };
    setTeacher(choice);
    if (config.teacherBlock >= w.model.depth) set({ teacherBlock: Math.max(0, Math.round(0.75 * w.model.depth) - 1) });
  };

  return (
    <div className="teacher-picker" data-testid="teacher-picker">
      <Field label="Teacher" field="teacher" problems={problems} hint={teacher ? <span data-testid="teacher-model">{describeModel(teacher.model)}</span> : 'A frozen MAE, larger than the student: train, pick or import one in the Teacher panel.'}>
        {(fid) => (
          <select id={fid} data-testid="teacher-select" disabled={disabled} value={teacher?.runId ?? (teacher ? '__file' : '')} onChange={(e) => void choose(e.target.value)}>
            <option value="">— choose a teacher —</option>
            {candidates.map((r) => (
              <option key={r.id} value={r.id}>{`${r.name} (MAE ${r.spec.model.embedDim}×${r.spec.model.depth}, step ${r.step})`}</option>
            ))}
            {teacher && !teacher.runId && <option value="__file">{teacher.label} (imported)</option>}
          </select>
        )}
      </Field>
      {importState.error && <p className="problem" role="alert">{importState.error}</p>}
    </div>
  );
}

const ACTIVE = ['starting', 'running', 'pausing', 'paused', 'stopping'];

/** f32, or mixed precision where the adapter allows it (else offered disabled, with why). */
function PrecisionField({ config, problems, mixedOk }: { config: StudioConfig; problems: Problems; mixedOk: boolean | null }) {
  const set = useConfigStore((s) => s.set);
  const precision = config.precision ?? 'f32';
  const hint = mixedOk === false
    ? <span data-testid="precision-note">mixed is off: this adapter has no {MIXED_PRECISION_FEATURE}</span>
    : precision === 'mixed'
      ? <span data-testid="precision-note">f16 matmul operands, f32 accumulation and weights; the loss scale adapts to f16’s range</span>
      : <span data-testid="precision-note">f32 throughout</span>;
  return (
    <Field label="Precision" field="precision" problems={problems} hint={hint}>
      {(id, invalid) => (
        <select id={id} data-testid="cfg-precision" value={precision} aria-invalid={invalid} onChange={(e) => set({ precision: e.target.value as 'f32' | 'mixed' })}>
          <option value="f32">f32</option>
          <option value="mixed" disabled={mixedOk === false} data-testid="cfg-precision-mixed">mixed (f16 matmuls, loss scaling)</option>
        </select>
      )}
    </Field>
  );
}

/**
 * The panel. While a run is active one native <fieldset disabled> locks every control, so that
 * starting and ending a run re-renders nothing inside the form (the page's work stays small).
 */
export function ConfigurePanel({ nTrain, datasetName }: { nTrain?: number; datasetName: string }) {
  const locked = useTrainStore((s) => !!s.run && ACTIVE.includes(s.run.status));
  return (
    <section className="card configure" data-testid="configure">
      <h2>Configure {locked && <span className="badge">locked while a run is active</span>}</h2>
      <fieldset className="lock" disabled={locked}>
        <ConfigureForm nTrain={nTrain} datasetName={datasetName} />
      </fieldset>
    </section>
  );
}

const ConfigureForm = memo(function ConfigureForm({ nTrain, datasetName }: { nTrain?: number; datasetName: string }) {
  const locked = false; // the enclosing fieldset locks the controls
  const config = useConfigStore((s) => s.config);
  const set = useConfigStore((s) => s.set);
  const replace = useConfigStore((s) => s.replace);
  const teacher = useStudioStore((s) => s.teacher);
  const features = useAdapterFeatures();
  const problems = validateConfig(config, config.mode === 'dmae' ? teacher?.model ?? null : null, features);
  const L = patchesOf(config), V = visibleOf(config);
  const limits = useAdapter()?.limits ?? null;
  const [memory, setMemory] = useState<Memory>({ text: '' });
  const batchPerStep = effectiveBatch(config);
  const epochs = nTrain ? (config.totalSteps * batchPerStep) / nTrain : undefined;

  // The GPU memory the run will need (the engine's plan), loaded lazily so the page itself stays
  // small; against the adapter's one-buffer limit, with the micro-batches that would fit.
  useEffect(() => {
    let live = true;
    const t = setTimeout(() => {
      void Promise.all([import('../../engine/trainer'), import('../../engine/run')]).then(([{ resolveTrainConfig, trainMemoryPlan, formatBytes }, { microBatchesThatFit, planExceedsLimits }]) => {
        try {
          const teacherModel = config.mode === 'dmae' ? teacher?.model : null;
          const planOf = (c: StudioConfig) => trainMemoryPlan(resolveTrainConfig(toTrainSpec(c, teacherModel)));
          if (config.mode === 'dmae' && !teacherModel) return live && setMemory({ text: '' });
          const plan = planOf(config);
          const text = `${formatBytes(plan.totalBytes)} of GPU buffers (largest ${formatBytes(plan.largestBufferBytes)})`;
          const tooBig = limits ? planExceedsLimits(plan, limits) : null;
          const fix = tooBig ? microBatchesThatFit(config.batch, config.accumSteps ?? 1, (batch, accumSteps) => !planExceedsLimits(planOf({ ...config, batch, accumSteps }), limits!)) : null;
          if (live) setMemory({ text, tooBig, fix });
        } catch {
          if (live) setMemory({ text: '' });
        }
      }).catch(() => undefined);
    }, 150);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [config, teacher, limits]);

  const dmae = config.mode === 'dmae';
  const fixedGeometry = config.dataset !== 'builtin:shapes';
  const tDepth = teacher?.model.depth ?? 0;

  return (
    <>
      <div className="presets" role="group" aria-label="Presets">
        {(Object.keys(PRESETS) as PresetId[]).map((id) => (
          <button key={id} type="button" className={`preset ${config.preset === id ? 'active' : ''}`} disabled={locked} title={PRESETS[id].description}
            data-testid={`preset-${id}`} onClick={() => replace(applyPreset(id, config))}>
            {PRESETS[id].label}
          </button>
        ))}
      </div>
      <p className="muted preset-note">{PRESETS[config.preset]?.description}</p>

      <fieldset>
        <legend>Mode and data</legend>
        <div className="grid">
          <Field label="Mode" field="mode" problems={problems}>
            {(id) => (
              <select id={id} data-testid="cfg-mode" value={config.mode} onChange={(e) => set({ mode: e.target.value as 'mae' | 'dmae' })}>
                <option value="mae">MAE pretraining</option>
                <option value="dmae">DMAE distillation</option>
              </select>
            )}
          </Field>
          <div className="field">
            <span className="label">Dataset</span>
            <div className="value" data-testid="cfg-dataset">{datasetName}</div>
            <div className="hint">Choose or import one in Datasets.</div>
          </div>
          <Num k="imgSize" label="Image size" problems={problems} disabled={locked || fixedGeometry} hint={fixedGeometry ? 'the dataset’s' : undefined} />
          <Num k="patchSize" label="Patch size" problems={problems} disabled={locked} hint={L > 0 ? `${Math.sqrt(L)}×${Math.sqrt(L)} = ${L} patches` : undefined} />
          <div className="field">
            <span className="label">Channels</span>
            <div className="value">{config.inChans === 1 ? '1 (gray)' : '3 (RGB)'}</div>
          </div>
        </div>
      </fieldset>

      <fieldset>
        <legend>Masking</legend>
        <div className="masking">
          <div>
            <Field label="Mask ratio" field="maskRatio" problems={problems}>
              {(id) => (
                <div className="slider">
                  <input id={id} type="range" min={0} max={0.98} step={0.01} value={config.maskRatio} data-testid="cfg-maskRatio"
                    onChange={(e) => set({ maskRatio: Number(e.target.value) })} />
                  <output data-testid="mask-ratio-value">{config.maskRatio.toFixed(2)}</output>
                </div>
              )}
            </Field>
            <p className="visible-count" data-testid="visible-count">
              <strong>{V}</strong> of {L} patches visible to the encoder
            </p>
            <label className="check">
              <input type="checkbox" checked={config.normPixLoss} onChange={(e) => set({ normPixLoss: e.target.checked })} data-testid="cfg-normPix" /> normalise each target patch (norm_pix_loss)
            </label>
          </div>
          <MaskPreview config={config} />
        </div>
      </fieldset>

      <fieldset>
        <legend>{dmae ? 'Student' : 'Encoder'} and decoder</legend>
        <div className="grid">
          <Num k="embedDim" label="Width" problems={problems} disabled={locked} />
          <Num k="depth" label="Blocks" problems={problems} disabled={locked} />
          <Num k="numHeads" label="Heads" problems={problems} disabled={locked} />
          <Num k="decoderEmbedDim" label="Decoder width" problems={problems} disabled={locked} />
          <Num k="decoderDepth" label="Decoder blocks" problems={problems} disabled={locked} />
          <Num k="decoderNumHeads" label="Decoder heads" problems={problems} disabled={locked} />
        </div>
      </fieldset>

      {dmae && (
        <fieldset data-testid="distill-settings">
          <legend>Distillation</legend>
          <TeacherPicker config={config} disabled={locked} problems={problems} />
          <div className="grid">
            <Field label="Teacher depth kT" field="teacherBlock" problems={problems} hint={tDepth ? `the teacher runs blocks 0…${config.teacherBlock} of ${tDepth} (0-based) and stops` : 'choose a teacher first'}>
              {(id) => (
                <select id={id} data-testid="cfg-teacherBlock" value={config.teacherBlock} onChange={(e) => set({ teacherBlock: Number(e.target.value) })}>
                  {Array.from({ length: Math.max(tDepth, config.teacherBlock + 1) }, (_, k) => (
                    <option key={k} value={k}>{`block ${k}${k >= tDepth ? ' (not in this teacher)' : ''}`}</option>
                  ))}
                </select>
              )}
            </Field>
            <Field label="Student block kS" field="studentBlock" problems={problems} hint="its output is projected to the teacher’s width">
              {(id) => (
                <select id={id} data-testid="cfg-studentBlock" value={config.studentBlock} onChange={(e) => set({ studentBlock: Number(e.target.value) })}>
                  {Array.from({ length: Math.max(config.depth || 0, config.studentBlock + 1) }, (_, k) => (
                    <option key={k} value={k}>{`block ${k}${k >= config.depth ? ' (not in this student)' : ''}`}</option>
                  ))}
                </select>
              )}
            </Field>
            <Num k="alpha" label="α (distillation weight)" problems={problems} disabled={locked} step="any" min={0} />
            <Field label="Feature loss" field="distillKind" problems={problems}>
              {(id) => (
                <select id={id} data-testid="cfg-distillKind" value={config.distillKind} onChange={(e) => set({ distillKind: e.target.value as 'l1' | 'l2' })}>
                  <option value="l1">L1 (the recipe’s)</option>
                  <option value="l2">L2 (MSE)</option>
                </select>
              )}
            </Field>
          </div>
        </fieldset>
      )}

      <fieldset>
        <legend>Optimisation</legend>
        <div className="grid">
          <Num k="batch" label="Batch" problems={problems} disabled={locked} min={1} />
          <Num k="accumSteps" label="Micro-batches" problems={problems} disabled={locked} min={1}
            hint={config.accumSteps > 1
              ? `a step sums the gradients of ${config.accumSteps} batches of ${config.batch}: effective batch ${batchPerStep}`
              : '1 = none; more give a larger effective batch in the same GPU memory (MAE’s accum_iter)'} />
          <Field label="Learning rate" field="lr" problems={problems} hint={config.lrMode === 'blr' ? `peak ${peakLr(config).toExponential(2)} = blr · ${batchPerStep} / 256` : 'peak, after warmup; cosine to 0'}>
            {(id, invalid) => (
              <div className="lr">
                <select aria-label="Learning rate kind" value={config.lrMode} onChange={(e) => set({ lrMode: e.target.value as 'lr' | 'blr' })} data-testid="cfg-lrMode">
                  <option value="lr">lr</option>
                  <option value="blr">base lr</option>
                </select>
                <input id={id} type="number" step="any" value={Number.isFinite(config.lr) ? config.lr : ''} aria-invalid={invalid} data-testid="cfg-lr"
                  onChange={(e) => set({ lr: e.target.value === '' ? NaN : Number(e.target.value) })} />
              </div>
            )}
          </Field>
          <Num k="warmupSteps" label="Warmup steps" problems={problems} disabled={locked} min={0} />
          <Num k="totalSteps" label="Steps" problems={problems} disabled={locked} min={1}
            hint={epochs !== undefined ? (
              <span>
                = {epochs < 10 ? epochs.toFixed(2) : epochs.toFixed(0)} epochs of {nTrain!.toLocaleString('en')}{' '}
                <button type="button" className="link" disabled={locked} onClick={() => set({ totalSteps: Math.max(1, Math.ceil(nTrain! / batchPerStep)) })}>set 1 epoch</button>
              </span>
            ) : undefined} />
          <Num k="weightDecay" label="Weight decay" problems={problems} disabled={locked} step="any" min={0} />
          <Num k="seed" label="Seed" problems={problems} disabled={locked} />
          <PrecisionField config={config} problems={problems} mixedOk={allowsMixed(features)} />
        </div>
      </fieldset>

      <fieldset>
        <legend>Monitoring</legend>
        <div className="grid">
          <Num k="knnEvery" label="k-NN every N steps" problems={problems} disabled={locked} min={0}
            hint={config.knnEvery > 0 ? `the encoder’s k-NN accuracy every ${config.knnEvery} steps, next to the loss curves; training is unchanged` : '0 = off; a labelled dataset’s k-NN accuracy during training'} />
          {config.knnEvery > 0 && (
            <Num k="knnImages" label="k-NN bank images" problems={problems} disabled={locked} min={20}
              hint={`${config.knnImages} training images vote for ${Math.max(10, Math.round(config.knnImages / 4))} validation images (fixed by the seed); fewer is faster on a software GPU`} />
          )}
        </div>
      </fieldset>
      {problems.general?.map((m) => <p key={m} className="problem" role="alert">{m}</p>)}
      <p className="muted" data-testid="memory-plan">{memory.text && `Needs about ${memory.text}.`}</p>
      {memory.tooBig && (
        <p className="problem" role="alert" data-testid="memory-too-big">
          {memory.tooBig}{' '}
          {memory.fix && (
            <button type="button" className="link" disabled={locked} data-testid="fix-micro-batches" onClick={() => set(memory.fix!)}>
              Train batch {memory.fix.batch} × {memory.fix.accumSteps} micro-batches (the same {batchPerStep} images a step)
            </button>
          )}
        </p>
      )}
    </>
  );
});
