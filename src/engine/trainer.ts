/**
 * The training loop: MAE pretraining or DMAE distillation on a MaeModel/DmaeModel, with the
 * recipe's optimiser (AdamW, betas (0.9, 0.95), weight decay 0.05 on matrices, lr = base_lr ·
 * batch / 256, per-step warmup and cosine: schedule.ts). Knows nothing of Node or the browser:
 * it takes a Gpu and a batch source, and runs in a Web Worker as in a Node command.
 *
 * One optimiser step = one submit (or, when k micro-batches need more than a Recorder's 4096
 * dispatches, as many micro-batches per submit as fit):
 *   [guard: copy params, m, v → backup slot t mod 2]
 *   for each of k micro-batches: (copy its inputs into place,) forward, backward (the first
 *   assigns the gradients, so no pass zeroes them; the others accumulate +=), copy its losses
 *   into the readback slot;
 *   [k > 1: grads ·= 1/k — MAE's `loss /= accum_iter`, applied once to the sum]
 *   grad norm, (clip,) AdamW; copy the grad norm into the readback slot.
 * The readback slot is mapped right after the submit and read one step late: while the GPU runs
 * step t, the CPU prepares step t+1's batch and only then waits for step t−1's numbers.
 *
 * Randomness, all seeded from `seed`: the initial parameters (initParams(layout, grid, seed)),
 * the masking noise (MaskingSampler: its own sfc32 stream, state saveable), and the data order
 * and augmentation (the batch source's own seed and state). Same seed, same adapter: the same
 * bits (the kernels reduce in a fixed order).
 *
 * NaN/Inf guard. A step is bad when its pixel loss, a distillation loss or the gradient norm is
 * not finite. Choice: back up before every step on the GPU, rather than validate the loss before
 * AdamW (that would need a CPU round trip inside every step, i.e. two submits and no pipelining).
 * Each step first copies params, m and v (and the loss scaler's four numbers) into backup slot
 * t mod 2; when step t is found bad (at
 * most one step later, while step t+1 may already have run), the trainer restores slot t mod 2 —
 * the state before the bad step, i.e. the output of the last good step — and the CPU state from
 * before step t (masking stream, loader position, step count), and stops, naming the step and the
 * loss. Cost: six parameter-sized copy-only buffers and four buffer copies per step (`nanGuard:
 * 'stop'` drops them and only stops).
 */
import { Rng, hashInts } from '../data/rng';
import { randomMasking, lenKeepFor, type Masking } from '../core/masking';
import { tuneKernelsForRecording } from '../gpu/autotune-families';
import { ArenaLayout, upload } from '../gpu/buffers';
import { GpuError, type Gpu } from '../gpu/device';
import { Recorder, type Tensor } from '../gpu/kernels';
import { ADAMW_DEFAULTS } from '../gpu/ops/adamw';
import { scale } from '../gpu/ops/elementwise';
import { defaultDistillConfig, numPatches, validateDistill, validateMaeConfig, type DistillConfig, type MaeConfig } from './config';
import { DmaeModel, dmaeActivationExtension, dmaeStudentLayout, teacherActivationLayout, teacherKMajorLayout, teacherLayout } from './dmae';
import { initParams, type ParamMap } from './init';
import { MaeModel, maeActivationLayouts, precisionProblem, type LossScaleState, type Precision } from './mae';
import { maeParamLayout } from './params';
import { lrAt, scaledLr, validateSchedule, type LrSchedule } from './schedule';

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

export interface TrainConfig {
  mode: 'mae' | 'dmae';
  /** The model (student, for DMAE); `normPixLoss` is in it. */
  model: MaeConfig;
  /** DMAE: the teacher's configuration (its weights go to the Trainer's constructor). */
  teacher?: MaeConfig;
  /** DMAE: aligned pairs, α, L1/L2; default defaultDistillConfig(student depth, teacher depth). */
  distill?: DistillConfig;
  /** Fraction of patches masked (default 0.75); visible = int(L·(1 − ratio)) as the reference truncates. */
  maskRatio?: number;
  /** Visible patches per image; overrides maskRatio. */
  visible?: number;
  /** Images per forward (micro-batch). */
  batch: number;
  /** Micro-batches per optimiser step (gradient accumulation, MAE's accum_iter); default 1. */
  accumSteps?: number;
  /** Absolute peak lr; when absent, baseLr · batch · accumSteps / 256. */
  lr?: number;
  /** Default 1.5e-4 (MAE's --blr). */
  baseLr?: number;
  /** Floor of the cosine; default 0. */
  minLr?: number;
  /** Optimiser steps of linear warmup; default 0. */
  warmupSteps?: number;
  /** Optimiser steps of the whole schedule. */
  totalSteps: number;
  /** Defaults: the recipe's AdamW (0.05, 0.9, 0.95, 1e-8). */
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Clip the global gradient norm (after accumulation) to this; default no clipping. */
  clipGrad?: number;
  seed: number;
  /** 'restore' (default): back up before each step and restore on NaN/Inf. 'stop': stop only. */
  nanGuard?: 'restore' | 'stop';
  /**
   * 'f32' (default), or 'mixed': matmuls may take f16 operands (where the adapter has
   * shader-f16 and the tuner finds them faster) with dynamic loss scaling (MaeModelOptions).
   */
  precision?: Precision;
}

/** A TrainConfig with every default filled in and checked. */
export interface ResolvedTrainConfig extends Required<Omit<TrainConfig, 'teacher' | 'distill' | 'lr' | 'baseLr' | 'clipGrad' | 'maskRatio'>> {
  teacher: MaeConfig | null;
  distill: DistillConfig | null;
  /** The peak lr after scaling. */
  lr: number;
  baseLr: number | null;
  clipGrad: number | null;
  maskRatio: number;
  /** L patches, and V = visible of them. */
  patches: number;
}

export function resolveTrainConfig(c: TrainConfig): ResolvedTrainConfig {
  validateMaeConfig(c.model);
  const problems: string[] = [];
  const L = numPatches(c.model);
  const accumSteps = c.accumSteps ?? 1;
  if (!(Number.isInteger(c.batch) && c.batch >= 1)) problems.push(`batch ${c.batch} must be a positive integer`);
  if (!(Number.isInteger(accumSteps) && accumSteps >= 1)) problems.push(`accumulation steps ${accumSteps} must be a positive integer`);
  if (!Number.isInteger(c.seed)) problems.push(`seed ${c.seed} must be an integer`);
  const maskRatio = c.maskRatio ?? 0.75;
  if (c.visible === undefined && !(maskRatio >= 0 && maskRatio < 1)) problems.push(`mask ratio ${maskRatio} must be in [0, 1)`);
  const visible = c.visible ?? lenKeepFor(L, maskRatio);
  if (!(Number.isInteger(visible) && visible >= 1 && visible <= L)) problems.push(`visible patches ${visible} must be an integer in [1, ${L}]`);
  if (c.clipGrad !== undefined && !(c.clipGrad > 0)) problems.push(`gradient clip ${c.clipGrad} must be > 0`);
  if (c.precision !== undefined && c.precision !== 'f32' && c.precision !== 'mixed') problems.push(`precision "${String(c.precision)}" must be "f32" or "mixed"`);
  let teacher: MaeConfig | null = null, distill: DistillConfig | null = null;
  if (c.mode === 'dmae') {
    if (!c.teacher) problems.push('DMAE needs a teacher configuration');
    else {
      validateMaeConfig(c.teacher);
      teacher = c.teacher;
      distill = c.distill ?? defaultDistillConfig(c.model.depth, c.teacher.depth);
      validateDistill(c.model, teacher, distill);
    }
  } else if (c.mode !== 'mae') problems.push(`mode "${String(c.mode)}" must be "mae" or "dmae"`);
  if (problems.length > 0) throw new Error(`Invalid training configuration: ${problems.join('; ')}.`);
  const lr = scaledLr({ lr: c.lr, baseLr: c.baseLr, effectiveBatch: c.batch * accumSteps });
  const r: ResolvedTrainConfig = {
    mode: c.mode, model: c.model, teacher, distill,
    maskRatio: c.visible !== undefined ? 1 - visible / L : maskRatio, visible, patches: L,
    batch: c.batch, accumSteps,
    lr, baseLr: c.lr !== undefined ? null : (c.baseLr ?? 1.5e-4), minLr: c.minLr ?? 0,
    warmupSteps: c.warmupSteps ?? 0, totalSteps: c.totalSteps,
    weightDecay: c.weightDecay ?? ADAMW_DEFAULTS.weightDecay, beta1: c.beta1 ?? ADAMW_DEFAULTS.beta1,
    beta2: c.beta2 ?? ADAMW_DEFAULTS.beta2, eps: c.eps ?? ADAMW_DEFAULTS.eps,
    clipGrad: c.clipGrad ?? null, seed: c.seed, nanGuard: c.nanGuard ?? 'restore', precision: c.precision ?? 'f32',
  };
  validateSchedule(scheduleOf(r));
  return r;
}

export const scheduleOf = (c: ResolvedTrainConfig): LrSchedule => ({ lr: c.lr, minLr: c.minLr, warmupSteps: c.warmupSteps, totalSteps: c.totalSteps });

/** The student's parameter table of a run (MAE's, plus the projection heads for DMAE). */
export function trainParamLayout(c: ResolvedTrainConfig): ArenaLayout {
  return c.mode === 'dmae' ? dmaeStudentLayout(c.model, c.teacher!, c.distill!) : maeParamLayout(c.model);
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

export interface MemoryPlan {
  /** Every GPU buffer the run allocates, by role, in bytes. */
  parts: Record<string, number>;
  /** The model's arenas (MaeModel.memoryBytes). */
  modelBytes: number;
  totalBytes: number;
  /** The largest single buffer: what maxBufferSize and maxStorageBufferBindingSize must allow. */
  largestBufferBytes: number;
}

/** What a run will allocate, before any GPU work (kernel scratch, a few KiB, not counted). */
export function trainMemoryPlan(c: ResolvedTrainConfig): MemoryPlan {
  const N = c.batch, V = c.visible;
  const layout = trainParamLayout(c);
  const parts: Record<string, number> = {};
  const bytes = (l: ArenaLayout) => Math.max(l.bytes, 256);
  const ext = c.mode === 'dmae' ? dmaeActivationExtension(c.model, c.teacher!, c.distill!, N, V) : {};
  const { acts, dacts, io } = maeActivationLayouts(c.model, N, V, ext);
  for (const role of ['params', 'grads', 'adamw-m', 'adamw-v']) parts[role] = bytes(layout);
  parts.activations = bytes(acts);
  parts['activation-grads'] = bytes(dacts);
  parts.io = bytes(io);
  if (c.mode === 'dmae') {
    parts['teacher-params'] = bytes(teacherLayout(c.teacher!, c.distill!));
    parts['teacher-activations'] = bytes(teacherActivationLayout(c.teacher!, c.distill!, N, V));
    parts['teacher-weights-kmajor'] = bytes(teacherKMajorLayout(c.teacher!, c.distill!));
  }
  // The model's own sum uses the layouts' bytes (not the 256-byte minimum buffer); keep it comparable.
  const modelBytes = 4 * layout.bytes + acts.bytes + dacts.bytes + io.bytes + (c.mode === 'dmae' ? parts['teacher-params'] + parts['teacher-activations'] + parts['teacher-weights-kmajor'] : 0);
  if (c.nanGuard === 'restore') parts['nan-guard-backups'] = 6 * bytes(layout);
  if (c.accumSteps > 1) parts['micro-batch-inputs'] = bytes(inputLayout(c.model, N, V, c.accumSteps));
  const largestBufferBytes = Math.max(...Object.entries(parts).map(([k, b]) => (k === 'nan-guard-backups' ? b / 6 : b)));
  const totalBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  return { parts, modelBytes, totalBytes, largestBufferBytes };
}

/** The per-micro-batch inputs of an accumulated step, uploaded together and copied into place in order. */
function inputLayout(cfg: MaeConfig, N: number, V: number, k: number): ArenaLayout {
  const l = new ArenaLayout(), L = numPatches(cfg);
  for (let j = 0; j < k; j++) {
    l.add(`imgs.${j}`, [N, cfg.inChans, cfg.imgSize, cfg.imgSize]);
    l.add(`idsKeep.${j}`, [N, V]);
    l.add(`idsRestore.${j}`, [N, L]);
    l.add(`mask.${j}`, [N, L]);
  }
  return l;
}

export const formatBytes = (b: number): string =>
  b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`;

// ---------------------------------------------------------------------------------------------
// Masking noise
// ---------------------------------------------------------------------------------------------

export type RngState = [number, number, number, number];

/**
 * MAE's random_masking with the noise from a seeded sfc32 stream of its own (independent of
 * the data stream), drawn per micro-batch: noise[N·L] uniform in [0, 1) with 24 bits (exact in float32).
 */
export class MaskingSampler {
  private rng: Rng;

  constructor(seed: number | RngState) {
    this.rng = typeof seed === 'number' ? new Rng(hashInts(seed, 0x6d61736b /* "mask" */)) : new Rng(seed);
  }

  get state(): RngState {
    return this.rng.state;
  }

  set state(s: RngState) {
    this.rng = new Rng(s);
  }

  noise(N: number, L: number): Float32Array {
    const out = new Float32Array(N * L);
    for (let i = 0; i < out.length; i++) out[i] = (this.rng.nextU32() >>> 8) / 16777216;
    return out;
  }

  next(N: number, L: number, V: number): Masking {
    return randomMasking(this.noise(N, L), N, L, V);
  }
}

// ---------------------------------------------------------------------------------------------
// The trainer
// ---------------------------------------------------------------------------------------------

/** Where batches come from: a DataLoader (or its prefetcher) fits; `x` is [batch·C·S·S] NCHW. */
export interface BatchSource {
  next(): { x: Float32Array; size: number } | Promise<{ x: Float32Array; size: number }>;
  getState?(): unknown;
  setState?(state: unknown): void;
}

export interface StepMetrics {
  /** The optimiser step just taken, 1-based (AdamW's t); its lr is lrAt(step − 1). */
  step: number;
  /** pix + α·Σ distill, averaged over the micro-batches. */
  loss: number;
  pix: number;
  /** DMAE: L_dist per aligned pair (before α), averaged over the micro-batches. */
  distill?: number[];
  lr: number;
  /** ‖g‖₂ of the (accumulated, averaged) gradient before clipping (not finite on a skipped step). */
  gradNorm: number;
  /**
   * Mixed precision: the loss scale after this step, whether the step was skipped (an f16
   * overflow), and the steps skipped so far in the run (a resumed run's earlier ones included).
   */
  lossScale?: number;
  skipped?: boolean;
  skippedSteps?: number;
  /** Images (batch · accumSteps) per second over this step's wall time. */
  imagesPerSec: number;
  /** Wall time since train() started, ms. */
  elapsedMs: number;
}

export interface Divergence {
  /** The bad optimiser step, 1-based; the state is restored to before it (step − 1 steps done). */
  step: number;
  /** Which number was not finite ('lossScale': mixed precision overflowed f16 step after step). */
  which: 'pix' | 'distill' | 'gradNorm' | 'lossScale';
  value: number;
  /** Whether the parameters and moments were restored to before the bad step. */
  restored: boolean;
  message: string;
}

export interface TrainResult {
  status: 'done' | 'stopped' | 'diverged';
  /** Optimiser steps done (after a restore: the steps before the bad one). */
  step: number;
  divergence?: Divergence;
}

/** What a checkpoint saves besides the GPU arenas: the step count and every random stream's position. */
export interface TrainerState {
  step: number;
  masking: RngState;
  /** The batch source's own state (e.g. a LoaderState), when it has one. */
  source?: unknown;
  /** Mixed precision: the loss scaler's state. */
  lossScale?: LossScaleState;
}

interface CpuSnapshot {
  masking: RngState;
  source?: unknown;
}

interface Pending {
  t: number;
  lr: number;
  slot: GPUBuffer;
  mapped: Promise<void>;
  before: CpuSnapshot;
}

/** kernels.ts's UNIFORM_SLOTS: dispatches with parameters one Recorder can hold. */
const MAX_DISPATCHES_PER_SUBMIT = 4096;

/** Floats per readback slot: k·(1 + pairs) losses, the gradient norm, then the loss scaler's state (4). */
const slotFloats = (k: number, pairs: number): number => k * (1 + pairs) + 1 + 4;

/**
 * Mixed precision: this many skipped steps in a row (the scale halved each time) mean the
 * overflow is not the gradients' (the forward's activations leave f16's range): stop and say so.
 */
export const MAX_SKIPPED_IN_A_ROW = 24;

export class Trainer {
  readonly config: ResolvedTrainConfig;
  readonly model: MaeModel;
  private readonly sampler: MaskingSampler;
  private readonly pairs: number;
  private readonly readSlots: GPUBuffer[];
  /** Per step parity: parameters, moments and the loss scaler's state before the step (the NaN guard's). */
  private readonly backups: { params: GPUBuffer; m: GPUBuffer; v: GPUBuffer; lossScale: GPUBuffer }[] = [];
  private readonly inputs: { buffer: GPUBuffer; layout: ArenaLayout } | null = null;
  private steps = 0;
  /** Mixed precision: the loss scaler's state as last read back (a step late; exact once train() returns). */
  private lossScale: LossScaleState | null = null;
  private skippedInARow = 0;

  /**
   * `initialParams` default: initParams(layout, grid, seed) (the recipe's init). DMAE needs
   * `teacherParams`: a map holding at least the teacher's tensors up to its last aligned block.
   */
  constructor(
    readonly gpu: Gpu, config: TrainConfig | ResolvedTrainConfig, readonly source: BatchSource,
    opts: { initialParams?: ParamMap; teacherParams?: ParamMap } = {},
  ) {
    // A resolved configuration from a checkpoint written before mixed precision has none: f32.
    const c = (this.config = 'patches' in config ? { ...config, precision: config.precision ?? 'f32' } : resolveTrainConfig(config));
    const dev = gpu.device;
    const problem = precisionProblem(gpu, c.precision);
    if (problem) throw new GpuError(`Trainer: ${problem}.`, 'validation');
    if (c.mode === 'dmae') {
      if (!opts.teacherParams) throw new Error('Trainer: DMAE needs the teacher\'s parameters (teacherParams).');
      const m = new DmaeModel(gpu, c.model, c.teacher!, c.distill!, c.batch, c.visible, { precision: c.precision });
      m.uploadTeacher(opts.teacherParams);
      this.model = m;
      this.pairs = c.distill!.pairs.length;
    } else {
      this.model = new MaeModel(gpu, c.model, c.batch, c.visible, undefined, {}, { precision: c.precision });
      this.pairs = 0;
    }
    this.model.uploadParams(opts.initialParams ?? initParams(this.model.layout, c.model.imgSize / c.model.patchSize, c.seed));
    this.sampler = new MaskingSampler(c.seed);
    const slotBytes = Math.ceil((slotFloats(c.accumSteps, this.pairs) * 4) / 16) * 16;
    this.readSlots = [0, 1].map((i) => dev.createBuffer({ label: `metrics-readback-${i}`, size: slotBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));
    if (c.nanGuard === 'restore') {
      const size = Math.max(this.model.layout.bytes, 256);
      const make = (label: string) => dev.createBuffer({ label, size, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      const lossScale = (i: number) => dev.createBuffer({ label: `backup-loss-scale-${i}`, size: 16, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      for (let i = 0; i < 2; i++) this.backups.push({ params: make(`backup-params-${i}`), m: make(`backup-adamw-m-${i}`), v: make(`backup-adamw-v-${i}`), lossScale: lossScale(i) });
    }
    if (c.accumSteps > 1) {
      const layout = inputLayout(c.model, c.batch, c.visible, c.accumSteps);
      this.inputs = { layout, buffer: dev.createBuffer({ label: 'micro-batch-inputs', size: Math.max(layout.bytes, 256), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }) };
    }
  }

  /** Optimiser steps done. */
  get step(): number {
    return this.steps;
  }

  /** The lr of optimiser step `t` (0-based). */
  lrAt(t: number): number {
    return lrAt(t, scheduleOf(this.config));
  }

  get isDmae(): boolean {
    return this.config.mode === 'dmae';
  }

  getState(): TrainerState {
    const s: TrainerState = { step: this.steps, masking: this.sampler.state };
    if (this.source.getState) s.source = this.source.getState();
    if (this.lossScale) s.lossScale = { ...this.lossScale };
    return s;
  }

  /** Restores the CPU side (the GPU arenas are the checkpoint's: upload params and moments separately). */
  setState(s: TrainerState): void {
    if (!(Number.isInteger(s.step) && s.step >= 0)) throw new Error(`Trainer.setState: step ${s.step} must be an integer ≥ 0.`);
    this.steps = s.step;
    this.sampler.state = s.masking;
    if (s.source !== undefined && this.source.setState) this.source.setState(s.source);
    if (s.lossScale && this.config.precision === 'mixed') {
      this.model.setLossScale(s.lossScale);
      this.lossScale = { ...s.lossScale };
    }
    this.skippedInARow = 0;
  }

  private snapshot(): CpuSnapshot {
    return { masking: this.sampler.state, source: this.source.getState?.() };
  }

  private async nextBatch(): Promise<Float32Array> {
    const b = await this.source.next();
    const c = this.config, want = c.batch * c.model.inChans * c.model.imgSize ** 2;
    if (b.size !== c.batch || b.x.length < want) {
      throw new Error(`Trainer: the batch source gave ${b.size} images (${b.x.length} values); the run needs ${c.batch} of ${c.model.inChans}×${c.model.imgSize}×${c.model.imgSize} (${want} values). Use a loader with dropLast and the model's resolution and channels.`);
    }
    return b.x.length === want ? b.x : b.x.subarray(0, want);
  }

  private tensorOf(buffer: GPUBuffer, offsetFloats: number, length: number): Tensor {
    return { buffer, offset: offsetFloats * 4, length };
  }

  /** Records and submits optimiser step t; returns what finishing it needs. */
  private async submitStep(t: number): Promise<Pending> {
    const c = this.config, model = this.model, k = c.accumSteps, L = c.patches;
    const before = this.snapshot();
    const dev = this.gpu.device;
    let rec = new Recorder(this.gpu);
    const size = model.layout.size;
    const perSubmit = this.microBatchesPerSubmit();
    if (this.backups.length > 0) {
      const b = this.backups[t % 2];
      rec.copy(model.params.all, this.tensorOf(b.params, 0, size));
      rec.copy(model.adamM.all, this.tensorOf(b.m, 0, size));
      rec.copy(model.adamV.all, this.tensorOf(b.v, 0, size));
      rec.copy(model.io.tensor('lossScale'), this.tensorOf(b.lossScale, 0, 4));
    }
    const slot = this.readSlots[t % 2];
    // No zeroing pass: the first micro-batch's backward assigns the gradients, the others add to them.
    for (let j = 0; j < k; j++) {
      if (j > 0 && j % perSubmit === 0) {
        rec.submitNoWait(); // too many dispatches for one Recorder: the step continues in the next submit
        rec = new Recorder(this.gpu);
      }
      // Uploaded at once: a prefetching source may reuse the batch's array two batches later.
      const imgs = await this.nextBatch();
      const masking = this.sampler.next(c.batch, L, c.visible);
      if (!this.inputs) model.setBatch(imgs, masking);
      else {
        // All k uploads land before this submit runs, so each micro-batch has its own slot, copied into place in order.
        const { buffer, layout } = this.inputs;
        const put = (name: string, data: Float32Array | Uint32Array) => {
          const e = layout.get(`${name}.${j}`);
          const src = this.tensorOf(buffer, e.start, e.length);
          upload(dev, src, data);
          rec.copy(src, model.acts.tensor(name));
        };
        put('imgs', imgs);
        put('idsKeep', masking.idsKeep);
        put('idsRestore', masking.idsRestore);
        put('mask', masking.mask);
      }
      model.recordForward(rec);
      if (j === 0) rec.assignParamGrads(() => model.recordBackward(rec));
      else model.recordBackward(rec);
      const base = j * (1 + this.pairs);
      rec.copy(model.io.tensor('loss.pix'), this.tensorOf(slot, base, 1));
      for (let p = 0; p < this.pairs; p++) rec.copy(model.io.tensor(`loss.distill.${p}`), this.tensorOf(slot, base + 1 + p, 1));
    }
    // MAE divides each micro-batch's loss by accum_iter; the sum of gradients scaled once is the same mean.
    if (k > 1) scale(rec, model.grads.all, model.grads.all, 1 / k, size);
    const lr = this.lrAt(t);
    model.recordOptimizer(rec, {
      lr, step: t + 1, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weightDecay,
      ...(c.clipGrad !== null ? { clipGrad: c.clipGrad } : {}),
    });
    rec.copy(model.io.tensor('gradNorm'), this.tensorOf(slot, k * (1 + this.pairs), 1));
    rec.copy(model.io.tensor('lossScale'), this.tensorOf(slot, k * (1 + this.pairs) + 1, 4));
    rec.submitNoWait();
    const mapped = slot.mapAsync(GPUMapMode.READ);
    return { t, lr, slot, mapped, before };
  }

  /** Times the kernel variants for this model's step on this adapter (gpu/autotune*.ts), once, before anything is recorded. */
  private tuned?: Promise<unknown>;
  private tuneKernels = (): Promise<unknown> => (this.tuned ??= tuneKernelsForRecording(this.gpu, (rec) => this.model.recordStep(rec, { lr: 0, step: 1 })));

  private perSubmit = 0;

  /**
   * Micro-batches that fit one submission: a Recorder has MAX_DISPATCHES_PER_SUBMIT uniform slots.
   * Counted once by recording one micro-batch's forward and backward into a recorder that never submits.
   */
  protected microBatchesPerSubmit(): number {
    if (this.perSubmit === 0) {
      let n = 0;
      const counter = new (class extends Recorder {
        override dispatch(): void {
          n++;
        }
      })(this.gpu, undefined, 'count');
      this.model.recordForward(counter);
      this.model.recordBackward(counter);
      counter.discard();
      this.perSubmit = Math.max(1, Math.floor((MAX_DISPATCHES_PER_SUBMIT - 64) / Math.max(1, n)));
    }
    return this.perSubmit;
  }

  /** Reads a finished step's numbers (and releases its readback slot). */
  private async readStep(p: Pending): Promise<{ pix: number; distill: number[]; gradNorm: number; lossScale: LossScaleState; skipped: boolean }> {
    await p.mapped;
    const f = new Float32Array(p.slot.getMappedRange().slice(0));
    p.slot.unmap();
    const k = this.config.accumSteps, P = this.pairs;
    let pix = 0;
    const distill = new Array<number>(P).fill(0);
    for (let j = 0; j < k; j++) {
      pix += f[j * (1 + P)] / k;
      for (let q = 0; q < P; q++) distill[q] += f[j * (1 + P) + 1 + q] / k;
    }
    const at = k * (1 + P) + 1;
    return { pix, distill, gradNorm: f[k * (1 + P)], lossScale: { scale: f[at], goodSteps: f[at + 1], skippedSteps: f[at + 3] }, skipped: f[at + 2] !== 0 };
  }

  private async restore(p: Pending): Promise<boolean> {
    if (this.backups.length === 0) return false; // nanGuard 'stop': nothing to roll back to
    {
      const b = this.backups[p.t % 2], size = this.model.layout.size;
      const rec = new Recorder(this.gpu, undefined, 'nan-guard-restore');
      rec.copy(this.tensorOf(b.params, 0, size), this.model.params.all);
      rec.copy(this.tensorOf(b.m, 0, size), this.model.adamM.all);
      rec.copy(this.tensorOf(b.v, 0, size), this.model.adamV.all);
      rec.copy(this.tensorOf(b.lossScale, 0, 4), this.model.io.tensor('lossScale'));
      await rec.submit();
    }
    if (this.config.precision === 'mixed') {
      const { scale, goodSteps, skippedSteps } = await this.model.readLossScale();
      this.lossScale = { scale, goodSteps, skippedSteps };
    }
    this.skippedInARow = 0;
    this.sampler.state = p.before.masking;
    if (p.before.source !== undefined && this.source.setState) this.source.setState(p.before.source);
    this.steps = p.t;
    return true;
  }

  /**
   * Trains until `until` optimiser steps are done (default the schedule's total), `shouldStop()`
   * says so (checked before each step), or a loss goes non-finite. `onMetrics` sees every step
   * in order. Returns with the GPU idle and nothing in flight.
   */
  async train(opts: { until?: number; onMetrics?: (m: StepMetrics) => void | Promise<void>; shouldStop?: () => boolean } = {}): Promise<TrainResult> {
    await this.tuneKernels();
    const until = opts.until ?? this.config.totalSteps;
    const start = performance.now();
    let last = start;
    const imagesPerStep = this.config.batch * this.config.accumSteps;
    const alpha = this.config.distill?.alpha ?? 0;
    const inFlight: Pending[] = [];
    let firstChecked = false;
    let divergence: Divergence | undefined;
    let stopped = false;

    const finish = async (p: Pending): Promise<boolean> => {
      const r = await this.readStep(p);
      if (!firstChecked) {
        await this.gpu.kernels.checkCompiled(); // a shader compile error surfaces here, named
        firstChecked = true;
      }
      const now = performance.now();
      const mixed = this.config.precision === 'mixed';
      // Mixed precision: a skipped step (an f16 overflow) changed nothing and is expected now and then.
      if (mixed) this.skippedInARow = r.skipped ? this.skippedInARow + 1 : 0;
      const bad: [Divergence['which'], number] | null = !Number.isFinite(r.pix) ? ['pix', r.pix]
        : r.distill.some((d) => !Number.isFinite(d)) ? ['distill', r.distill.find((d) => !Number.isFinite(d))!]
          : !Number.isFinite(r.gradNorm) && !(mixed && r.skipped) ? ['gradNorm', r.gradNorm]
            : this.skippedInARow >= MAX_SKIPPED_IN_A_ROW ? ['lossScale', r.lossScale.scale] : null;
      if (bad) {
        // Let anything submitted after the bad step finish (its readback is dropped), then roll back.
        for (const q of inFlight) await this.readStep(q).catch(() => undefined);
        inFlight.length = 0;
        const restored = await this.restore(p);
        const name = bad[0] === 'pix' ? 'the pixel loss' : bad[0] === 'distill' ? 'the distillation loss' : 'the gradient norm';
        const what = bad[0] === 'lossScale'
          ? `${MAX_SKIPPED_IN_A_ROW} steps in a row overflowed f16 under mixed precision (loss scale now ${bad[1]}): the activations, not the gradients, leave f16's range. `
          : `${name} is ${bad[1]}. `;
        divergence = {
          step: p.t + 1, which: bad[0], value: bad[1], restored,
          message: `Training diverged at step ${p.t + 1} (lr ${p.lr.toExponential(3)}): ${what}` +
            (restored ? `Parameters and optimiser state are restored to the end of step ${p.t}.` : 'The state was not restored (nanGuard "stop").') +
            (bad[0] === 'lossScale' ? ' Train with precision "f32", or lower the learning rate.' : ' Lower the learning rate, lengthen the warmup, or clip the gradient.'),
        };
        return false;
      }
      const m: StepMetrics = {
        step: p.t + 1, loss: r.pix + alpha * r.distill.reduce((a, b) => a + b, 0), pix: r.pix, lr: p.lr, gradNorm: r.gradNorm,
        imagesPerSec: imagesPerStep / Math.max(1e-9, (now - last) / 1000), elapsedMs: now - start,
      };
      if (this.pairs > 0) m.distill = r.distill;
      if (mixed) {
        m.lossScale = r.lossScale.scale;
        m.skipped = r.skipped;
        m.skippedSteps = r.lossScale.skippedSteps;
        this.lossScale = r.lossScale;
      }
      last = now;
      await opts.onMetrics?.(m);
      return true;
    };

    try {
      while (this.steps < until) {
        if (opts.shouldStop?.()) {
          stopped = true;
          break;
        }
        const p = await this.submitStep(this.steps);
        this.steps++;
        inFlight.push(p);
        // Read step t−1 while step t runs.
        if (inFlight.length > 1 && !(await finish(inFlight.shift()!))) break;
      }
      while (inFlight.length > 0 && !divergence) {
        if (!(await finish(inFlight.shift()!))) break;
      }
    } finally {
      // On an exception, leave no slot mapped.
      for (const q of inFlight) await this.readStep(q).catch(() => undefined);
    }
    if (divergence) return { status: 'diverged', step: this.steps, divergence };
    return { status: stopped ? 'stopped' : 'done', step: this.steps };
  }

  /**
   * The forward alone on `imgs` [batch·C·S·S] with `masking` (for reconstructions): the
   * prediction [batch, L, P] and the losses. Call between train() calls; changes no parameter.
   */
  async reconstruct(imgs: Float32Array, masking: Masking): Promise<{ pred: Float32Array; pix: number; loss: number }> {
    await this.tuneKernels();
    this.model.setBatch(imgs, masking);
    const rec = new Recorder(this.gpu, undefined, 'reconstruct');
    this.model.recordForward(rec);
    await rec.submit();
    const losses = await this.model.readLosses();
    return { pred: await this.model.readPred(), pix: losses.pix, loss: losses.loss };
  }

  readParams(): Promise<ParamMap> {
    return this.model.readParams();
  }

  destroy(): void {
    this.model.destroy();
    for (const s of this.readSlots) s.destroy();
    for (const b of this.backups) for (const x of [b.params, b.m, b.v, b.lossScale]) x.destroy();
    this.inputs?.buffer.destroy();
  }
}
