/**
 * `npm run bench -- gpu`: the GPU benchmark as one command, sized to the adapter.
 *
 *   (a) the matmul tuner's table (src/gpu/autotune.ts): every Linear product of MAE and DMAE
 *       training steps of ViT-Tiny, -Small and -Base students at 224×224 (p = 16, L = 196, V = 49
 *       at mask 0.75) and 32×32 (p = 4, L = 64, V = 16), every applicable variant verified and
 *       timed on each shape (GFLOP/s), and the variant the tuner keeps per shape class;
 *   (b) whole training steps (forward, backward, grad norm, AdamW; one submit) with
 *       the tuned variants: MAE, and DMAE with a frozen teacher one size up (Tiny ← Small,
 *       Small ← Base, Base ← Large) stopped at ¾ depth; images/s, the step's matrix-product
 *       FLOPs (the Linear layers' and attention's q·kᵀ, P·v and their backward, as MFU counts
 *       them; the Linear-only figure beside), and its matmul rate against the best rate of the
 *       table ("step efficiency"). A step's time is its whole submission's GPU time, timed as the
 *       engine runs it (Recorder's 'submission' span); where it goes comes from a profile run
 *       beside it, each dispatch timed in its own pass, whose sum is larger (profiledMs);
 *   (c) where the adapter has shader-f16: the same steps under mixed precision (f16 matmul
 *       operands where the tuner finds them faster, loss scaling), their products in the table as
 *       '.h' classes with the f16 variants timed beside the f32 variants, and each step's f32/mixed time ratio.
 *
 * Sized to the adapter: on a hardware GPU all of it, at batches that fit its buffer limits (and a
 * memory budget), in a few minutes; on a CPU adapter (lavapipe, SwiftShader) only ViT-Tiny at
 * 32×32 with a small batch and fewer repetitions; what is skipped is listed in the JSON with the
 * reason. Results: bench/results/gpu-<adapterKind>.json (bench/README.md).
 */
import { lenKeepFor, randomMasking } from '../src/core/masking';
import { posEmbed2d } from '../src/core/posembed';
import { defaultDistillConfig, maeConfig, numPatches, teacherStopBlock, type EncoderPreset, type MaeConfig } from '../src/engine/config';
import { DmaeModel } from '../src/engine/dmae';
import { MaeModel, type Precision } from '../src/engine/mae';
import { planExceedsLimits } from '../src/engine/run';
import { formatBytes, resolveTrainConfig, trainMemoryPlan } from '../src/engine/trainer';
import { mulberry32 } from '../src/core/random';
import { createTensor, upload, type Arena } from '../src/gpu/buffers';
import {
  isMatmulProduct, MATMUL_VARIANTS, shapeClass, summarizeTuning, tuneMatmul, type MatmulShape, type MatmulUse, type TuneReport,
} from '../src/gpu/autotune';
import { openDevice } from '../src/gpu/device';
import { findNodeAdapter } from '../src/gpu/node-device';
import type { Recorder } from '../src/gpu/kernels';
import { matmul, type MatmulLayout, type MatmulVariant } from '../src/gpu/ops/matmul';
import { loadShaderSourcesFromDisk } from '../src/gpu/shader-sources-disk';
import { GpuTimer } from '../src/gpu/timing';
import { tuneFamilies, type FamilyShape } from '../src/gpu/autotune-families';
import { CountingRecorder, commonFields, countFlops, kernelProfile, median, ourContender, round, timeInterleaved, writeResults, type BenchContext, type Contender, type Flops, type KernelTime, type Timing } from './lib';

export interface GpuBenchOptions {
  /** 'auto': by the adapter's kind; 'gpu' / 'cpu' force a plan. */
  plan: 'auto' | 'gpu' | 'cpu';
  /** Timed step repetitions (default: 5). */
  reps?: number;
  /** The batch every run starts from, instead of the plan's (TARGET_BATCH); still halved to fit. */
  batch?: number;
  /** Timed runs per variant and shape in the tuner's table (default: 3 on a GPU, 5 on a CPU adapter, whose timings are noisier). */
  tuneReps?: number;
  /** Only runs whose name contains one of these (comma-separated), e.g. 'vit-tiny@32'. */
  only?: string;
  /** Seconds after which no further step run starts (default 240). */
  budgetS: number;
  /** The largest memory one run may plan, GiB (default 24 on a GPU). */
  memoryGiB?: number;
  /** Print the plan (runs, batches, what is skipped) and stop. */
  dry: boolean;
  out?: string;
}

const GEOMETRIES = [
  { name: '32', imgSize: 32, patchSize: 4, inChans: 3 },
  { name: '224', imgSize: 224, patchSize: 16, inChans: 3 },
] as const;
type Geometry = (typeof GEOMETRIES)[number];
const STUDENTS: EncoderPreset[] = ['vit-tiny', 'vit-small', 'vit-base'];
const TEACHER_OF: Record<string, EncoderPreset> = { 'vit-tiny': 'vit-small', 'vit-small': 'vit-base', 'vit-base': 'vit-large' };
const MASK_RATIO = 0.75;
/** The batch each run starts from; halved until it fits the adapter's limits and the memory budget. */
const TARGET_BATCH = { gpu: { '32': 256, '224': 64 }, cpu: { '32': 16, '224': 2 } } as const;
const STEP_OPTS = { lr: 1.5e-4, step: 1 };

interface Run {
  /** 'vit-tiny@32' */
  name: string;
  student: EncoderPreset;
  teacher: EncoderPreset;
  geometry: Geometry;
  batch: number;
  /** Why the batch is below the target, when it is. */
  batchNote?: string;
  visible: number;
  /** The steps that fit (MAE alone when the DMAE's teacher does not). */
  modes: ('mae' | 'dmae')[];
}

interface Skipped {
  what: string;
  reason: string;
}

const cfgOf = (preset: EncoderPreset, g: Geometry): MaeConfig => maeConfig(preset, { imgSize: g.imgSize, patchSize: g.patchSize, inChans: g.inChans });

/** The largest batch ≤ target (halving) whose MAE and DMAE both fit the limits and the budget, with the reason it is smaller. */
function fitBatch(student: MaeConfig, teacher: MaeConfig, target: number, limits: Record<string, number>, budgetBytes: number, modes: readonly ('mae' | 'dmae')[]): { batch: number; note?: string } | { batch: 0; note: string } {
  let note: string | undefined;
  let last = 'does not fit';
  for (let batch = target; batch >= 1; batch = Math.floor(batch / 2)) {
    let why: string | null = null;
    for (const mode of modes) {
      const rc = resolveTrainConfig({ mode, model: student, teacher: mode === 'dmae' ? teacher : undefined, batch, maskRatio: MASK_RATIO, lr: STEP_OPTS.lr, totalSteps: 1, seed: 1, nanGuard: 'stop' });
      const plan = trainMemoryPlan(rc);
      why = planExceedsLimits(plan, limits);
      if (!why && plan.totalBytes > budgetBytes) why = `${mode.toUpperCase()} plans ${formatBytes(plan.totalBytes)}, over the ${formatBytes(budgetBytes)} budget`;
      if (why) {
        why = `${mode.toUpperCase()} at batch ${batch}: ${why.split('. ')[0]}`;
        break;
      }
    }
    if (!why) return { batch, note };
    note ??= why; // the target's reason, for a smaller batch that fits
    last = why; // batch 1's, when none fits
  }
  return { batch: 0, note: last };
}

/** The recipe's initialisation rules with a fast seeded stream, straight into the arena (timing does not depend on the values); returns them. */
function fillParams(gpu: BenchContext['gpu'], arena: Arena, grid: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const flat = new Float32Array(arena.layout.size);
  for (const e of arena.layout.entries) {
    const t = flat.subarray(e.start, e.start + e.length);
    const name = e.name;
    if (name === 'pos_embed' || name === 'decoder_pos_embed') t.set(posEmbed2d(e.shape[2], grid, true));
    else if (name === 'cls_token' || name === 'mask_token') for (let i = 0; i < t.length; i++) t[i] = 0.02 * (2 * u() - 1);
    else if (/(^|\.)(norm\d*|decoder_norm|norm)\.weight$/.test(name)) t.fill(1);
    else if (name.endsWith('.weight') && e.shape.length >= 2) {
      const bound = Math.sqrt(6 / (e.length / e.shape[0] + e.shape[0]));
      for (let i = 0; i < t.length; i++) t[i] = (2 * u() - 1) * bound;
    }
    // biases and layer-norm biases stay 0
  }
  upload(gpu.device, arena.all, flat);
  return flat;
}

/** Seeded images in [-1, 1) and a seeded masking. */
function batchData(run: Run): { imgs: Float32Array; masking: ReturnType<typeof randomMasking> } {
  const g = run.geometry, N = run.batch, L = (g.imgSize / g.patchSize) ** 2;
  const u = mulberry32(3);
  const imgs = new Float32Array(N * g.inChans * g.imgSize ** 2);
  for (let i = 0; i < imgs.length; i++) imgs[i] = 2 * u() - 1;
  const noise = new Float32Array(N * L);
  for (let i = 0; i < noise.length; i++) noise[i] = u();
  return { imgs, masking: randomMasking(noise, N, L, run.visible) };
}

type StepModel = MaeModel | DmaeModel;

/** The run's MAE or DMAE; `weights` false for a model that is only dry-recorded (its products listed). */
function buildModel(gpu: BenchContext['gpu'], run: Run, mode: 'mae' | 'dmae', precision: Precision, weights = true): StepModel {
  const g = run.geometry, grid = g.imgSize / g.patchSize;
  const student = cfgOf(run.student, g);
  if (mode === 'mae') {
    const m = new MaeModel(gpu, student, run.batch, run.visible, undefined, {}, { precision });
    if (weights) fillParams(gpu, m.params, grid, 1);
    return m;
  }
  const teacher = cfgOf(run.teacher, g);
  const m = new DmaeModel(gpu, student, teacher, defaultDistillConfig(student.depth, teacher.depth), run.batch, run.visible, { precision });
  if (weights) {
    fillParams(gpu, m.params, grid, 1);
    // Through uploadTeacher, which also writes the teacher's K-major weight copies its forward multiplies.
    const t = fillParams(gpu, m.teacherParams, grid, 2);
    m.uploadTeacher(new Map(m.teacherParams.layout.entries.map((e) => [e.name, Float64Array.from(t.subarray(e.start, e.start + e.length))])));
  }
  return m;
}

const shapeId = (s: MatmulShape): string => `${s.layout} ${s.M}×${s.N}×${s.K}${s.f16 ? ' f16' : ''}`;

/** A step of a run: its name ('mae_vit-tiny@32', 'mixed_mae_vit-tiny@32'), mode and precision. */
interface StepSpec {
  name: string;
  run: Run;
  mode: 'mae' | 'dmae';
  precision: Precision;
}

interface StepFigure {
  name: string;
  what: 'mae_step' | 'dmae_step';
  precision: Precision;
  student: EncoderPreset;
  teacher?: { preset: EncoderPreset; stopBlock: number; depth: number };
  image: string;
  patchSize: number;
  patches: number;
  visible: number;
  batch: number;
  batchNote?: string;
  passes: number;
  /** Matmul dispatches of the step by variant (what the tuner's choices made of them). */
  matmulDispatches: Record<string, number>;
  loss: number;
  /** 2·M·N·K summed over every matmul dispatch of the step (the Linear layers, forward and backward). */
  matmulFlops: number;
  /** Attention's products, q·kᵀ and P·v and their four backward products (lib.ts attentionDispatchFlops). */
  attentionFlops: number;
  /** The step's matrix-product FLOPs: matmulFlops + attentionFlops (as MFU counts them). */
  flops: number;
  /** The whole submission's GPU time (timed: 'submission'), as the engine runs the step. */
  medianMs: number;
  minMs: number;
  samplesMs: number[];
  wallMedianMs: number;
  /** GPU timestamps only: the profile's time, the sum of the dispatches each timed in its own pass (median over reps). */
  profiledMs?: number;
  imagesPerSecond: number;
  /** flops / step time: the step's achieved matmul rate. */
  stepMatmulGflops: number;
  /** The best matmul rate timed interleaved with this step (roofProbe): the efficiencies' denominator. */
  roof: BestRate;
  /** stepMatmulGflops / roof.gflops. */
  stepEfficiency: number;
  /**
   * The same by the fastest repetitions: flops over minMs against the best of the roof products'
   * fastest runs (roofByMinimum). A shared host's bursts only ever slow a run, so the minima move
   * less between runs than the medians; read the two side by side (as train's pass minima).
   */
  stepEfficiencyByMinimum: number;
  roofByMinimum: BestRate;
  /** The same with the Linear layers' FLOPs only (matmulFlops / step time / roof): the figure before attention was counted. */
  stepEfficiencyLinearOnly: number;
  /** GPU timestamps only, from the profile: the matmul passes' own time (median over reps), their share of the profile, their rate (matmulFlops over it) and its fraction of the best. */
  matmulMs?: number;
  matmulShareOfStep?: number;
  matmulPassGflops?: number;
  matmulPassEfficiency?: number;
  /** GPU timestamps only: where the step's time goes, per kernel (lib.ts kernelProfile, shares of profiledMs), slowest first. */
  kernels?: KernelTime[];
}

export async function runGpuBench(opts: GpuBenchOptions): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  const log = (s: string): void => console.log(s);
  const elapsed = (): number => (performance.now() - t0) / 1000;

  // The adapter's own buffer limits, not WebGPU's defaults: the real sizes need big activations.
  const adapter = await findNodeAdapter();
  const adapterLimits = adapter.limits as unknown as Record<string, number>;
  const gpu = await openDevice(adapter, loadShaderSourcesFromDisk(), {
    maxBufferSize: adapterLimits.maxBufferSize,
    maxStorageBufferBindingSize: adapterLimits.maxStorageBufferBindingSize,
  });
  const kind = gpu.adapter.kind;
  const plan: 'gpu' | 'cpu' = opts.plan === 'auto' ? (kind === 'hardware' ? 'gpu' : 'cpu') : opts.plan;
  const reps = opts.reps ?? 5;
  const tuneReps = opts.tuneReps ?? (plan === 'gpu' ? 3 : 5);
  const memoryBudget = (opts.memoryGiB ?? (plan === 'gpu' ? 24 : 2)) * 2 ** 30;
  const limits = gpu.device.limits as unknown as Record<string, number>;
  const limitsReport = Object.fromEntries(['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupsPerDimension'].map((k) => [k, limits[k]]));
  const planReason = plan === 'gpu'
    ? `${kind} adapter${opts.plan === 'gpu' ? ' (plan forced)' : ''}: every student at both image sizes`
    : `${kind} adapter${opts.plan === 'cpu' ? ' (plan forced)' : ''}: the GPU is emulated on the CPU, so only ViT-Tiny at 32×32, batch ${opts.batch ?? TARGET_BATCH.cpu['32']}, ${reps} repetitions`;
  log(`adapter: ${gpu.adapter.description} (${kind}); plan: ${planReason}`);
  log(`limits ${JSON.stringify(limitsReport)}; memory budget per run ${formatBytes(memoryBudget)}; step reps ${reps}, tuner reps ${tuneReps}`);

  // ---- The runs and what is skipped -------------------------------------------------------------
  const runs: Run[] = [];
  const skipped: Skipped[] = [];
  const only = opts.only?.split(',').map((s) => s.trim()).filter(Boolean);
  for (const g of GEOMETRIES) {
    for (const s of STUDENTS) {
      const name = `${s}@${g.name}`;
      const teacher = TEACHER_OF[s];
      if (only && !only.some((o) => name.includes(o))) {
        skipped.push({ what: name, reason: `not selected by --only ${opts.only}` });
        continue;
      }
      if (plan === 'cpu' && !(s === 'vit-tiny' && g.name === '32')) {
        skipped.push({ what: name, reason: `${kind} emulates the GPU on the CPU: a ${s} step at ${g.imgSize}×${g.imgSize} (and its tuner shapes) would take minutes here; run \`npm run bench -- gpu\` on a hardware adapter` });
        continue;
      }
      const target = opts.batch ?? TARGET_BATCH[plan][g.name];
      let modes: Run['modes'] = ['mae', 'dmae'];
      let fit = fitBatch(cfgOf(s, g), cfgOf(teacher, g), target, limits, memoryBudget, modes);
      if (fit.batch === 0) {
        const both = fit.note;
        fit = fitBatch(cfgOf(s, g), cfgOf(teacher, g), target, limits, memoryBudget, (modes = ['mae']));
        if (fit.batch === 0) {
          skipped.push({ what: name, reason: `does not fit this adapter even at batch 1: ${fit.note}` });
          continue;
        }
        skipped.push({ what: `dmae_${name}`, reason: `does not fit this adapter even at batch 1: ${both}` });
      }
      runs.push({ name, student: s, teacher, geometry: g, batch: fit.batch, batchNote: fit.note && `batch ${fit.batch} instead of ${target}: ${fit.note}`, visible: lenKeepFor((g.imgSize / g.patchSize) ** 2, MASK_RATIO), modes });
    }
  }
  const precisions: Precision[] = gpu.hasF16 ? ['f32', 'mixed'] : ['f32'];
  if (!gpu.hasF16) skipped.push({ what: 'mixed-precision steps', reason: `${gpu.adapter.description} has no shader-f16` });
  const stepSpecs: StepSpec[] = runs.flatMap((run) => run.modes.flatMap((mode) => precisions.map((precision) => ({
    name: `${precision === 'mixed' ? 'mixed_' : ''}${mode}_${run.name}`, run, mode, precision,
  }))));
  for (const r of runs) log(`run ${r.name.padEnd(16)} ${r.modes.join('+').padEnd(8)} teacher ${r.teacher.padEnd(9)} batch ${String(r.batch).padStart(3)}, ${r.visible} of ${numPatches(cfgOf(r.student, r.geometry))} visible${r.batchNote ? ` (${r.batchNote})` : ''}`);
  for (const s of skipped) log(`skip ${s.what}: ${s.reason}`);

  // ---- (a) The products of every step, then the tuner's table -----------------------------------
  const flopsByStep = new Map<string, Flops>(); // FLOPs, matmul products and family shapes of each step (one dry recording)
  const familyShapes = new Map<string, Map<string, FamilyShape>>(); // layer norm, attention: one shape per class (the largest)
  for (const spec of stepSpecs) {
    const m = buildModel(gpu, spec.run, spec.mode, spec.precision, false);
    try {
      const flops = countFlops(gpu, (rec) => m.recordStep(rec, STEP_OPTS));
      flopsByStep.set(spec.name, flops);
      for (const [family, classes] of flops.familyShapes) {
        const into = familyShapes.get(family) ?? new Map<string, FamilyShape>();
        familyShapes.set(family, into);
        for (const [cls, shape] of classes) {
          const size = (x: FamilyShape) => Object.values(x).reduce((a, b) => a * b, 1);
          if (!into.has(cls) || size(shape) > size(into.get(cls)!)) into.set(cls, shape);
        }
      }
    } finally {
      m.destroy();
    }
  }
  const shapes = new Map<string, MatmulShape>();
  const usesByStep = new Map([...flopsByStep].map(([name, f]) => [name, f.uses]));
  for (const uses of usesByStep.values()) for (const u of uses) shapes.set(shapeId(u), { layout: u.layout, M: u.M, N: u.N, K: u.K, f16: !!u.f16 });
  log(`(a) tuner table: ${shapes.size} distinct products in ${new Set([...shapes.values()].map(shapeClass)).size} shape classes`);
  if (opts.dry) {
    log('dry run: nothing timed, nothing written');
    gpu.destroy();
    return;
  }
  // Every shape, every variant timed (no pruning), choices replaced and persisted: a deliberate retune.
  const tune: TuneReport = await tuneMatmul(gpu, [...shapes.values()], { force: true, measureAll: true, pruneFactor: Infinity, reps: tuneReps });
  const table = tableRows(tune, usesByStep);
  for (const row of table) {
    const g = MATMUL_VARIANTS.map((v) => `${v} ${row.medianGflops[v] === undefined ? (row.failures[v] ? 'FAILED' : '—') : row.medianGflops[v]!.toFixed(1)}`.padEnd(15)).join(' ');
    log(`  ${row.shape.padEnd(22)} ${g} GFLOP/s  best ${row.best ?? '—'}, class ${row.class} → ${row.chosen}`);
  }
  log(summarizeTuning(tune));
  // The other kernel families (layer norm, attention): every variant verified and timed per class, replaced and persisted.
  const families = await tuneFamilies(gpu, familyShapes, { force: true, reps: tuneReps + 1 });
  for (const c of families.classes) log(`  ${c.family} ${c.cls.padEnd(14)} ${JSON.stringify(c.shape)} ${Object.entries(c.ms).map(([v, ms]) => `${v} ${ms} ms`).join(', ')} → ${c.chosen}`);
  // The best rate is a median's, not a fastest run's: lavapipe's timestamps tick about every 0.5 ms,
  // so the fastest of a few runs of a 1–2 ms product can overstate its rate by a third.
  const timer = GpuTimer.available(gpu.device) ? new GpuTimer(gpu.device, 2048) : undefined;
  const ctx: BenchContext = { gpu, timer, method: timer ? 'gpu-timestamp' : 'wall-clock', warmup: 0, reps };
  // The roof of the step efficiencies: f32 steps against the best f32 rate, mixed steps against the
  // best of any variant. The highest of ~80 noisy medians overstates it, so the table's top
  // BEST_CONFIRM products are timed again, BEST_CONFIRM_REPS times each, interleaved: the best of those medians.
  const best = await confirmedBest(ctx, table.filter((row) => !row.f16));
  const bestF16 = gpu.hasF16 ? await confirmedBest(ctx, table.filter((row) => row.f16)) : best;
  const bestMixed = bestF16.gflops > best.gflops ? bestF16 : best;
  log(`best matmul rate (re-timed top ${BEST_CONFIRM}, ${BEST_CONFIRM_REPS} runs each, median): ${best.gflops} GFLOP/s (${best.variant} on ${best.shape}; table ${best.tableGflops})` +
    (gpu.hasF16 ? `; with f16 operands allowed: ${bestMixed.gflops} GFLOP/s (${bestMixed.variant} on ${bestMixed.shape})` : ''));

  // ---- (b) Whole training steps ---------------------------------------------------------------
  const steps: StepFigure[] = [];
  const failures: Skipped[] = [];
  // The precisions of one run and mode are timed interleaved, so their ratio comes from one run.
  const groups = new Map<string, StepSpec[]>();
  for (const spec of stepSpecs) groups.set(`${spec.mode}_${spec.run.name}`, [...(groups.get(`${spec.mode}_${spec.run.name}`) ?? []), spec]);
  for (const group of groups.values()) {
    if (elapsed() > opts.budgetS) {
      for (const { name } of group) {
        skipped.push({ what: name, reason: `time budget: ${opts.budgetS} s spent before it started` });
        log(`skip ${name}: time budget`);
      }
      continue;
    }
    interface Prepared { spec: StepSpec; model: StepModel; counter: CountingRecorder; loss: number; passNs: Map<string, number>[] }
    const prepared: Prepared[] = [];
    try {
      for (const spec of group) {
        try {
          gpu.device.pushErrorScope('out-of-memory');
          const model = buildModel(gpu, spec.run, spec.mode, spec.precision);
          const oom = await gpu.device.popErrorScope();
          if (oom) {
            model.destroy();
            throw new Error(`out of GPU memory building the model: ${oom.message}`);
          }
          const p: Prepared = { spec, model, counter: new CountingRecorder(gpu, undefined, 'count'), loss: NaN, passNs: [] };
          prepared.push(p);
          const { imgs, masking } = batchData(spec.run);
          model.setBatch(imgs, masking);
          // One checked step: compiles the pipelines, counts the passes, and the loss must be finite.
          model.recordStep(p.counter, STEP_OPTS);
          await p.counter.submit();
          p.loss = (await model.readLosses()).loss;
          if (!Number.isFinite(p.loss)) throw new Error(`the step's loss is ${p.loss}`);
          if (timer && p.counter.timedSpans > timer.capacity) throw new Error(`${p.counter.timedSpans} timed passes, more than the timer's ${timer.capacity}`);
        } catch (e) {
          failures.push({ what: spec.name, reason: (e as Error).message });
          log(`(b) ${spec.name}: FAILED: ${(e as Error).message}`);
          const i = prepared.findIndex((x) => x.spec === spec);
          if (i >= 0) prepared.splice(i, 1)[0].model.destroy();
        }
      }
      // Each step twice, interleaved: as the engine runs it (the step's time), and profiled (a pass per dispatch).
      const contenders = prepared.flatMap((p) => [
        ourContender(ctx, p.spec.name, (rec) => p.model.recordStep(rec, STEP_OPTS), undefined, { timed: 'submission' }),
        ...(timer ? [ourContender(ctx, profileName(p.spec.name), (rec) => p.model.recordStep(rec, STEP_OPTS), (byPass) => p.passNs.push(byPass))] : []),
      ]);
      // The roof's products run interleaved with the steps, so that a machine whose speed drifts
      // (a shared host) moves both alike: each step's efficiency is against the roof of its own run.
      const probes = [roofProbe(ctx, table.filter((row) => !row.f16), 'roof'), ...(prepared.some((p) => p.spec.precision === 'mixed') ? [roofProbe(ctx, table.filter((row) => row.f16), 'roof-f16')] : [])];
      let timings: Map<string, Timing>;
      try {
        // One untimed round first: the first repetitions after a model is built ran up to 1.8× slower.
        timings = await timeInterleaved({ ...ctx, warmup: 1 }, [...contenders, ...probes.flatMap((p) => p.contenders)]);
      } finally {
        probes.forEach((p) => p.destroy());
      }
      const roofOf = (precision: string, stat: 'medianMs' | 'minMs'): BestRate => {
        const f32 = probes[0].rate(timings, stat), f16 = precision === 'mixed' ? probes[1]?.rate(timings, stat) : undefined;
        return f16 && f16.gflops > f32.gflops ? f16 : f32;
      };
      for (const { spec, counter, loss, passNs } of prepared) {
        const { run: r, mode, precision, name } = spec;
        const roof = roofOf(precision, 'medianMs'), roofByMinimum = roofOf(precision, 'minMs');
        const t = timings.get(name)!;
        const { matmul: matmulFlops, attention: attentionFlops, total: flops } = flopsByStep.get(name)!;
        const stepMatmulGflops = flops / (t.medianMs * 1e6);
        const f: StepFigure = {
          name, what: `${mode}_step`, precision, student: r.student,
          ...(mode === 'dmae' ? { teacher: { preset: r.teacher, stopBlock: teacherStopBlock(defaultDistillConfig(cfgOf(r.student, r.geometry).depth, cfgOf(r.teacher, r.geometry).depth)), depth: cfgOf(r.teacher, r.geometry).depth } } : {}),
          image: `${r.geometry.imgSize}×${r.geometry.imgSize}×${r.geometry.inChans}`, patchSize: r.geometry.patchSize, patches: numPatches(cfgOf(r.student, r.geometry)),
          visible: r.visible, batch: r.batch, ...(r.batchNote ? { batchNote: r.batchNote } : {}), passes: counter.dispatchCount,
          matmulDispatches: Object.fromEntries([...counter.matmulEntries].map(([e, n]) => [e.replace('matmul_', ''), n])),
          loss: round(loss), matmulFlops, attentionFlops, flops, medianMs: t.medianMs, minMs: t.minMs, samplesMs: t.samplesMs, wallMedianMs: t.wallMedianMs,
          imagesPerSecond: round((r.batch * 1000) / t.medianMs), stepMatmulGflops: round(stepMatmulGflops), roof, stepEfficiency: round(stepMatmulGflops / roof.gflops, 3),
          stepEfficiencyByMinimum: round(flops / (t.minMs * 1e6) / roofByMinimum.gflops, 3), roofByMinimum,
          stepEfficiencyLinearOnly: round(matmulFlops / (t.medianMs * 1e6) / roof.gflops, 3),
        };
        if (timer && passNs.length > 0) {
          // A product's pass, by its label `shader:entry` (Recorder.dispatch's default).
          const isMatmul = (label: string): boolean => {
            const [shader, entry = ''] = label.split(':');
            return isMatmulProduct(shader, entry);
          };
          const mm = median(passNs.map((byPass) => [...byPass].reduce((ns, [label, v]) => (isMatmul(label) ? ns + v : ns), 0))) / 1e6;
          const profiled = timings.get(profileName(name))!.medianMs;
          f.profiledMs = profiled;
          f.matmulMs = round(mm);
          f.matmulShareOfStep = round(mm / profiled, 3);
          f.matmulPassGflops = round(matmulFlops / (mm * 1e6));
          f.matmulPassEfficiency = round(matmulFlops / (mm * 1e6) / roof.gflops, 3);
          f.kernels = kernelProfile(passNs, profiled);
        }
        steps.push(f);
        if (f.kernels) log(`    ${name} by kernel: ${f.kernels.slice(0, 6).map((k) => `${k.kernel} ${(100 * k.shareOfStep).toFixed(1)} %`).join(', ')}`);
        log(`(b) ${name.padEnd(22)} batch ${String(r.batch).padStart(3)}  ${t.medianMs.toFixed(1).padStart(8)} ms  ${String(f.imagesPerSecond).padStart(7)} img/s  matmul ${(flops / 1e9).toFixed(1)} GFLOP (attention ${(attentionFlops / 1e9).toFixed(2)}) → ${f.stepMatmulGflops} GFLOP/s over the step = ${(100 * f.stepEfficiency).toFixed(1)} % of the best (${roof.gflops} GFLOP/s, timed with it; by the minima ${(100 * f.stepEfficiencyByMinimum).toFixed(1)} %)` +
          (f.matmulPassGflops !== undefined ? `; profiled ${f.profiledMs} ms, its matmul passes ${f.matmulMs} ms (${(100 * f.matmulShareOfStep!).toFixed(0)} %) at ${f.matmulPassGflops} GFLOP/s = ${(100 * f.matmulPassEfficiency!).toFixed(1)} %` : ''));
      }
    } catch (e) {
      for (const { spec } of prepared) failures.push({ what: spec.name, reason: (e as Error).message });
      log(`(b) ${group.map((g) => g.name).join(', ')}: FAILED: ${(e as Error).message}`);
    } finally {
      for (const p of prepared) p.model.destroy();
    }
  }

  const body = {
    ...(await commonFields(ctx, started)),
    plan: {
      kind: plan, reason: planReason, stepReps: reps, tunerReps: tuneReps, budgetSeconds: opts.budgetS, memoryBudgetBytes: memoryBudget, limits: limitsReport,
      maskRatio: MASK_RATIO,
      geometries: GEOMETRIES.map((g) => ({ image: `${g.imgSize}×${g.imgSize}×${g.inChans}`, patchSize: g.patchSize, patches: (g.imgSize / g.patchSize) ** 2, visible: lenKeepFor((g.imgSize / g.patchSize) ** 2, MASK_RATIO) })),
      runs: runs.map((r) => ({ name: r.name, steps: r.modes, student: r.student, teacher: r.teacher, batch: r.batch, batchNote: r.batchNote })),
      step: `forward, backward (assigning the gradients: no zeroing pass), global grad norm, AdamW (lr ${STEP_OPTS.lr}, no clipping): one command buffer, one submit; DMAE: frozen teacher one size up stopped at ¾ depth (teacherStopBlock(defaultDistillConfig)), L1, α = 1`,
      weights: 'the recipe initialisation rules with a seeded fast stream (xavier-uniform Linears, LN 1/0, sin-cos tables); images seeded uniform in [-1, 1); timing does not depend on the values',
    },
    skipped,
    failures,
    tuner: {
      method: tune.method, fingerprint: tune.fingerprint, store: tune.store, seconds: round(tune.seconds, 3), runs: tune.runs, warnings: tune.warnings,
      description: 'every applicable variant verified (float64 product: small odd shape in full, sampled elements of each shape) then timed on every shape, interleaved; GFLOP/s from the fastest run; a class goes to the variant with the least total time over its shapes',
      classes: tune.classes.map((c) => ({ key: c.key, chosen: c.chosen, source: c.source, shapes: c.shapes.length })),
    },
    kernelFamilies: {
      method: families.method, seconds: round(families.seconds, 3), warnings: families.warnings,
      description: 'per family and shape class (its largest shape over the runs): every variant the device runs checked against float64, then timed interleaved; ms = the fastest run; the class goes to the fastest verified variant',
      classes: families.classes.map((c) => ({ family: c.family, class: c.cls, shape: c.shape, ms: c.ms, failures: c.failures, chosen: c.chosen })),
    },
    matmulTable: table,
    bestMatmul: best,
    ...(gpu.hasF16 ? { bestMatmulWithF16: bestMixed } : {}),
    steps,
    summary: {
      seconds: round(elapsed(), 3),
      stepsTimed: steps.length,
      images_per_second: Object.fromEntries(steps.map((s) => [s.name, s.imagesPerSecond])),
      step_efficiency: Object.fromEntries(steps.map((s) => [s.name, s.stepEfficiency])),
      step_efficiency_by_minimum: Object.fromEntries(steps.map((s) => [s.name, s.stepEfficiencyByMinimum])),
      step_efficiency_linear_only: Object.fromEntries(steps.map((s) => [s.name, s.stepEfficiencyLinearOnly])),
      // f32 step time / mixed step time, per step timed both ways (> 1: mixed precision is faster here).
      mixed_speedup: Object.fromEntries(steps.filter((s) => s.precision === 'mixed').flatMap((s) => {
        const f32 = steps.find((x) => x.precision === 'f32' && `mixed_${x.name}` === s.name);
        return f32 ? [[f32.name, round(f32.medianMs / s.medianMs, 3)]] : [];
      })),
      chosenVariants: Object.fromEntries(MATMUL_VARIANTS.map((v) => [v, tune.classes.filter((c) => c.chosen === v).length])),
    },
  };
  const path = writeResults(opts.out ?? `gpu-${kind}`, body);
  log(`wrote ${path} in ${body.summary.seconds} s`);
  const errors = gpu.takeUncapturedErrors();
  if (errors.length) log(`uncaptured GPU errors: ${errors.join('; ')}`);
  timer?.destroy();
  gpu.destroy();
  if (errors.length || failures.length) process.exitCode = 1;
}

const BEST_CONFIRM = 8;
const BEST_CONFIRM_REPS = 15;
/** Products per timed submission of a roof probe (timed whole, as a step's are): its time is per product. */
const ROOF_REPEAT = 4;
/** The profiled twin of a step's contender. */
const profileName = (step: string): string => `${step} (profile)`;

interface BestRate {
  /** GFLOP/s of the median (or the fastest) of the re-timed products' runs, the highest over them. */
  gflops: number;
  variant?: MatmulVariant;
  shape?: string;
  /** The same product's median rate in the table. */
  tableGflops?: number;
}

/**
 * The top BEST_CONFIRM rows of `rows` by median rate, each with its fastest variant, as contenders
 * named `<tag> <shape> <variant>`: timed beside whatever else is interleaved with them, `rate` is
 * the best of their medians (or of their fastest runs).
 */
function roofProbe(
  ctx: BenchContext, rows: readonly TableRow[], tag: string,
): { contenders: Contender[]; rate: (t: Map<string, Timing>, stat?: 'medianMs' | 'minMs') => BestRate; destroy: () => void } {
  const top = rows.flatMap((row) => (row.best ? [{ row, variant: row.best, table: row.medianGflops[row.best]! }] : []))
    .sort((p, q) => q.table - p.table).slice(0, BEST_CONFIRM);
  const u = mulberry32(7);
  const random = (n: number) => Float32Array.from({ length: n }, () => 2 * u() - 1); // inside f16's range
  const dev = ctx.gpu.device;
  const name = (row: TableRow, variant: MatmulVariant) => `${tag} ${row.shape} ${variant}`;
  const made = top.map(({ row, variant }) => {
    const a = createTensor(dev, row.M * row.K, 'best-a', random(row.M * row.K));
    const b = createTensor(dev, row.K * row.N, 'best-b', random(row.K * row.N));
    const c = createTensor(dev, row.M * row.N, 'best-c');
    // f16 rows are recorded under autocast, as the steps record them (their variant is named anyway).
    const record = (rec: Recorder) => void rec.autocast(row.f16 ? 'f16' : 'f32', () => matmul(rec, c, a, b, null, row.M, row.N, row.K, row.layout as MatmulLayout, false, variant));
    // ROOF_REPEAT products back to back in one submission, timed whole: as the step's products run.
    return { tensors: [a, b, c], contender: ourContender(ctx, name(row, variant), record, undefined, { timed: 'submission', repeat: ROOF_REPEAT }) };
  });
  return {
    contenders: made.map((m) => m.contender),
    rate: (t, stat = 'medianMs') => top.reduce<BestRate>((b, { row, variant, table }) => {
      const gflops = round((2 * row.M * row.N * row.K) / (t.get(name(row, variant))![stat] * 1e6), 4);
      return gflops > b.gflops ? { gflops, variant, shape: row.shape, tableGflops: table } : b;
    }, { gflops: 0 }),
    destroy: () => made.forEach((m) => m.tensors.forEach((x) => x.buffer.destroy())),
  };
}

/** roofProbe timed alone, BEST_CONFIRM_REPS times each. */
async function confirmedBest(ctx: BenchContext, rows: readonly TableRow[]): Promise<BestRate> {
  const probe = roofProbe(ctx, rows, 'best');
  try {
    return probe.rate(await timeInterleaved({ ...ctx, warmup: 1, reps: BEST_CONFIRM_REPS }, probe.contenders));
  } finally {
    probe.destroy();
  }
}

interface TableRow {
  shape: string;
  layout: string;
  /** A product of a mixed-precision step (its class weighs the f16 variants too). */
  f16: boolean;
  M: number;
  N: number;
  K: number;
  class: string;
  /** Steps that dispatch this product, with how many times per step. */
  usedBy: Record<string, number>;
  /** From the fastest run. */
  gflops: Partial<Record<MatmulVariant, number>>;
  /** From the median run: what bestMatmul and the step efficiencies use. */
  medianGflops: Partial<Record<MatmulVariant, number>>;
  medianMs: Partial<Record<MatmulVariant, number>>;
  failures: Partial<Record<MatmulVariant, string>>;
  /** Fastest variant on this shape. */
  best?: MatmulVariant;
  /** The class's choice (over all its shapes). */
  chosen: MatmulVariant;
}

function tableRows(tune: TuneReport, usesByStep: Map<string, MatmulUse[]>): TableRow[] {
  const rows: TableRow[] = [];
  for (const c of tune.classes) {
    for (const s of c.shapes) {
      const id = shapeId(s);
      const ts = c.timings.filter((t) => shapeId(t.shape) === id);
      const gflops: TableRow['gflops'] = {}, medianGflops: TableRow['medianGflops'] = {}, ms: TableRow['medianMs'] = {}, failures: TableRow['failures'] = {};
      for (const t of ts) {
        if (t.gflops !== undefined) gflops[t.variant] = t.gflops;
        if (t.medianMs !== undefined) {
          ms[t.variant] = round(t.medianMs);
          if (t.medianMs > 0) medianGflops[t.variant] = round((2 * s.M * s.N * s.K) / (t.medianMs * 1e6), 4);
        }
        if (t.failure) failures[t.variant] = t.failure;
      }
      const best = (Object.entries(medianGflops) as [MatmulVariant, number][]).sort((p, q) => q[1] - p[1])[0]?.[0];
      const usedBy: Record<string, number> = {};
      for (const [step, uses] of usesByStep) for (const u of uses) if (shapeId(u) === id) usedBy[step] = u.count;
      rows.push({ shape: id, layout: s.layout, f16: !!s.f16, M: s.M, N: s.N, K: s.K, class: c.key, usedBy, gflops, medianGflops, medianMs: ms, failures, best, chosen: c.chosen });
    }
  }
  return rows.sort((p, q) => (p.class < q.class ? -1 : p.class > q.class ? 1 : 2 * p.M * p.N * p.K - 2 * q.M * q.N * q.K));
}
