/**
 * Checkpoints: the complete training state in one safetensors file.
 *
 *   model.<name>                     parameters (timm names, F32, PyTorch layouts)
 *   optimizer.exp_avg.<name>         AdamW first moment (PyTorch's name for it)
 *   optimizer.exp_avg_sq.<name>      AdamW second moment
 *   teacher.<name>                   DMAE: the frozen teacher as the run holds it (blocks 0..kT)
 *   __metadata__.dmae_studio_checkpoint   JSON: the resolved run configuration, the trainer's
 *                                    state (optimiser steps done = the schedule position, the
 *                                    masking stream's sfc32 state, the data loader's seed/epoch/
 *                                    position, mixed precision's loss scaler), the next step's lr,
 *                                    the dataset's name and mean/std
 *   __metadata__.dmae_studio         the model description of a full export, so a checkpoint is
 *                                    also an importable model (import.ts strips `model.`)
 *
 * Moments are float32 on the GPU and stored as F32: a resumed run continues bit for bit.
 * The reader checks the metadata and every tensor's name and shape against the run's tables and
 * says what is wrong (CheckpointError), on top of the safetensors reader's own checks.
 * Pure: bytes in, bytes out (the browser stores the same bytes in OPFS/IndexedDB).
 */
import type { Gpu } from '../gpu/device';
import { validateDistill, validateMaeConfig, type MaeConfig } from '../engine/config';
import { DmaeModel, teacherLayout } from '../engine/dmae';
import type { ParamMap } from '../engine/init';
import { readParamMap, uploadParamMap } from '../engine/mae';
import { Trainer, scheduleOf, trainParamLayout, type BatchSource, type ResolvedTrainConfig, type TrainerState } from '../engine/trainer';
import { lrAt } from '../engine/schedule';
import type { ArenaLayout } from '../gpu/buffers';
import { MODEL_FORMAT, MODEL_METADATA_KEY, NAMES_NOTE, type FullModelJson } from './export';
import { readSafetensors, toFloat32, writeSafetensors, type TensorToWrite } from './safetensors';

export const CHECKPOINT_FORMAT = 'dmae-studio-checkpoint';
export const CHECKPOINT_METADATA_KEY = 'dmae_studio_checkpoint';

export class CheckpointError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'CheckpointError';
  }
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: 1;
  /** ISO time of saving. */
  savedAt: string;
  config: ResolvedTrainConfig;
  trainer: TrainerState;
  /** The schedule's position: optimiser steps done (= trainer.step) and the lr the next step uses. */
  schedule: { step: number; totalSteps: number; nextLr: number };
  /** What the data was (name, per-channel mean/std), for the user and for exports. */
  dataset?: { name: string; mean: number[]; std: number[] };
  /** Whether the teacher's tensors are in the file (DMAE). */
  hasTeacher: boolean;
  /** The front end's own JSON (the studio: run id, label, data source); kept as it is. */
  extra?: Record<string, unknown>;
}

export interface Checkpoint {
  meta: CheckpointMeta;
  params: ParamMap;
  adamM: ParamMap;
  adamV: ParamMap;
  /** DMAE: the teacher's tensors (blocks 0..kT as the run holds them). */
  teacher: ParamMap | null;
}

const tensorsOf = (prefix: string, layout: ArenaLayout, m: ParamMap, what: string): TensorToWrite[] =>
  layout.entries.map((e) => {
    const v = m.get(e.name);
    if (!v || v.length !== e.length) throw new Error(`encodeCheckpoint: ${what} "${e.name}" has ${v?.length ?? 'no'} values; the table says ${e.length}.`);
    return { name: prefix + e.name, shape: e.shape, data: v };
  });

/** The teacher table a run holds (the Trainer's DmaeModel runs to the deepest aligned block). */
const runTeacherLayout = (c: ResolvedTrainConfig): ArenaLayout | null => (c.mode === 'dmae' && c.teacher && c.distill ? teacherLayout(c.teacher, c.distill) : null);

export function encodeCheckpoint(ck: Omit<Checkpoint, 'meta'> & { meta: Omit<CheckpointMeta, 'format' | 'version' | 'hasTeacher' | 'schedule' | 'savedAt'> & { savedAt?: string } }): Uint8Array {
  const c = ck.meta.config;
  const layout = trainParamLayout(c);
  const tl = runTeacherLayout(c);
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT, version: 1, savedAt: ck.meta.savedAt ?? new Date().toISOString(), config: c, trainer: ck.meta.trainer,
    schedule: { step: ck.meta.trainer.step, totalSteps: c.totalSteps, nextLr: lrAt(ck.meta.trainer.step, scheduleOf(c)) },
    ...(ck.meta.dataset ? { dataset: ck.meta.dataset } : {}), hasTeacher: !!(tl && ck.teacher),
    ...(ck.meta.extra ? { extra: ck.meta.extra } : {}),
  };
  const model: FullModelJson = {
    format: MODEL_FORMAT, version: 1, mode: c.mode, config: c.model, teacher: c.teacher, distill: c.distill, step: ck.meta.trainer.step, names: NAMES_NOTE,
    ...(ck.meta.dataset ? { mean: ck.meta.dataset.mean, std: ck.meta.dataset.std } : {}),
  };
  const tensors = [
    ...tensorsOf('model.', layout, ck.params, 'parameter'),
    ...tensorsOf('optimizer.exp_avg.', layout, ck.adamM, 'AdamW m'),
    ...tensorsOf('optimizer.exp_avg_sq.', layout, ck.adamV, 'AdamW v'),
    ...(tl && ck.teacher ? tensorsOf('teacher.', tl, ck.teacher, 'teacher') : []),
  ];
  return writeSafetensors(tensors, { format: 'pt', [CHECKPOINT_METADATA_KEY]: JSON.stringify(meta), [MODEL_METADATA_KEY]: JSON.stringify(model) });
}

/** sfc32's words as the Rng keeps them: int32 (signed) — any 32-bit pattern, signed or not, is accepted. */
const is32 = (x: unknown) => Number.isInteger(x) && (x as number) >= -0x80000000 && (x as number) <= 0xffffffff;

/** Reads and checks a checkpoint; every problem is a CheckpointError (or SafetensorsError) naming the file. */
export function decodeCheckpoint(bytes: Uint8Array, file = 'checkpoint'): Checkpoint {
  const st = readSafetensors(bytes, { file });
  const raw = st.metadata[CHECKPOINT_METADATA_KEY];
  const fail = (p: string): never => {
    throw new CheckpointError(file, p);
  };
  if (raw === undefined) fail(`no __metadata__.${CHECKPOINT_METADATA_KEY}: not a DMAE Studio checkpoint (a model export? import it as weights instead).`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(raw!) as CheckpointMeta;
  } catch (e) {
    return fail(`the checkpoint description is not valid JSON (${(e as Error).message}).`);
  }
  if (typeof meta !== 'object' || meta === null || meta.format !== CHECKPOINT_FORMAT) fail(`the description's format is not "${CHECKPOINT_FORMAT}".`);
  if (meta.version !== 1) fail(`version ${String(meta.version)} is not supported (this studio reads version 1).`);
  const c = meta.config as ResolvedTrainConfig | undefined;
  if (typeof c !== 'object' || c === null || typeof c.model !== 'object' || c.model === null) fail('the description has no run configuration.');
  try {
    validateMaeConfig(c!.model as MaeConfig);
    if (c!.mode === 'dmae') {
      if (!c!.teacher || !c!.distill) throw new Error('a DMAE run needs its teacher configuration and distillation pairs');
      validateMaeConfig(c!.teacher);
      validateDistill(c!.model, c!.teacher, c!.distill);
    } else if (c!.mode !== 'mae') throw new Error(`mode "${String(c!.mode)}" is neither mae nor dmae`);
    for (const k of ['batch', 'accumSteps', 'visible', 'patches', 'totalSteps', 'warmupSteps', 'seed'] as const) {
      if (!Number.isInteger(c![k]) || (c![k] as number) < 0) throw new Error(`${k} ${String(c![k])} is not a whole number ≥ 0`);
    }
    for (const k of ['lr', 'minLr', 'weightDecay', 'beta1', 'beta2', 'eps', 'maskRatio'] as const) {
      if (typeof c![k] !== 'number' || !Number.isFinite(c![k])) throw new Error(`${k} ${String(c![k])} is not a finite number`);
    }
    // Absent in checkpoints written before mixed precision existed: f32.
    if (c!.precision !== undefined && c!.precision !== 'f32' && c!.precision !== 'mixed') throw new Error(`precision ${JSON.stringify(c!.precision)} is neither f32 nor mixed`);
  } catch (e) {
    fail(`the run configuration is invalid: ${(e as Error).message}`);
  }
  const t = meta.trainer;
  if (typeof t !== 'object' || t === null || !Number.isInteger(t.step) || t.step < 0 || t.step > c!.totalSteps) fail(`the trainer state's step ${String(t?.step)} is not in 0..${c!.totalSteps}.`);
  if (!Array.isArray(t.masking) || t.masking.length !== 4 || !t.masking.every(is32)) fail('the masking stream state is not four 32-bit integers.');
  const ls = t.lossScale;
  const count = (x: unknown) => Number.isInteger(x) && (x as number) >= 0;
  if (ls !== undefined && (typeof ls !== 'object' || ls === null || !(Number.isFinite(ls.scale) && ls.scale > 0) || !count(ls.goodSteps) || !count(ls.skippedSteps))) {
    fail('the loss scaler state is not { scale > 0, goodSteps ≥ 0, skippedSteps ≥ 0 }.');
  }

  const layout = trainParamLayout(c!);
  const tl = runTeacherLayout(c!);
  const problems: string[] = [];
  const take = (prefix: string, l: ArenaLayout): ParamMap => {
    const out: ParamMap = new Map();
    for (const e of l.entries) {
      const x = st.tensors.get(prefix + e.name);
      if (!x) problems.push(`missing ${prefix}${e.name}`);
      else if (x.dtype !== 'F32') problems.push(`${prefix}${e.name} is ${x.dtype}, not F32`);
      else if (x.shape.length !== e.shape.length || x.shape.some((d, i) => d !== e.shape[i])) problems.push(`${prefix}${e.name} is [${x.shape.join(', ')}], expected [${e.shape.join(', ')}]`);
      else out.set(e.name, Float64Array.from(toFloat32(x, file)));
    }
    return out;
  };
  const params = take('model.', layout), adamM = take('optimizer.exp_avg.', layout), adamV = take('optimizer.exp_avg_sq.', layout);
  const teacher = tl && meta.hasTeacher ? take('teacher.', tl) : null;
  const known = new Set([...layout.entries.flatMap((e) => ['model.', 'optimizer.exp_avg.', 'optimizer.exp_avg_sq.'].map((p) => p + e.name)), ...(teacher && tl ? tl.entries.map((e) => `teacher.${e.name}`) : [])]);
  const unexpected = [...st.tensors.keys()].filter((n) => !known.has(n));
  if (unexpected.length) problems.push(`unexpected ${unexpected.join(', ')}`);
  if (problems.length) fail(`the tensors do not match the run's tables: ${problems.join('; ')}.`);
  return { meta, params, adamM, adamV, teacher };
}

/** The trainer's complete state (call between train() calls: nothing in flight). */
export async function captureCheckpoint(trainer: Trainer, dataset?: CheckpointMeta['dataset']): Promise<Uint8Array> {
  const m = trainer.model;
  const gpu = trainer.gpu;
  const [params, adamM, adamV] = await Promise.all([m.params, m.adamM, m.adamV].map((a) => readParamMap(gpu, a)));
  const teacher = m instanceof DmaeModel ? await m.readTeacher() : null;
  return encodeCheckpoint({ meta: { config: trainer.config, trainer: trainer.getState(), dataset }, params, adamM, adamV, teacher });
}

/** Puts a checkpoint's arenas and CPU state into a trainer built with the same configuration. */
export function restoreCheckpoint(trainer: Trainer, ck: Checkpoint): void {
  const m = trainer.model;
  uploadParamMap(trainer.gpu, m.params, ck.params);
  uploadParamMap(trainer.gpu, m.adamM, ck.adamM);
  uploadParamMap(trainer.gpu, m.adamV, ck.adamV);
  trainer.setState(ck.meta.trainer);
}

/**
 * A Trainer that continues the checkpointed run: same configuration, its teacher (from the
 * checkpoint, or `teacherParams` when the checkpoint was saved without it), its arenas and state.
 */
export function resumeTrainer(gpu: Gpu, ck: Checkpoint, source: BatchSource, teacherParams?: ParamMap): Trainer {
  const teacher = ck.teacher ?? teacherParams;
  if (ck.meta.config.mode === 'dmae' && !teacher) throw new Error('This DMAE checkpoint holds no teacher; give the teacher\'s weights to resume it.');
  const trainer = new Trainer(gpu, ck.meta.config, source, { initialParams: ck.params, teacherParams: teacher ?? undefined });
  restoreCheckpoint(trainer, ck);
  return trainer;
}
