/**
 * The training-step benchmark: one whole step (zero grads, forward, backward, AdamW: one submit)
 * of the MAE and of the DMAE at several mask ratios, and what stopping the teacher at block kT
 * saves against running all its blocks.
 *
 *   MAE                 ViT-Tiny (192 wide, 12 blocks, 3 heads; decoder 128 × 2, 4 heads), 32×32×3, p = 4 (L = 64)
 *   DMAE                the same student + a frozen ViT-Small teacher (384 wide, 12 blocks, 6 heads)
 *                       stopped at ¾ depth (teacherStopBlock(defaultDistillConfig(12, 12)) = block 8),
 *                       L1 distillation of student block 8 ↔ teacher block 8, α = 1
 *   DMAE, full teacher  the same, but the teacher runs all 12 blocks (DmaeOptions.teacherRunThrough
 *                       = 11) and still distils from block 8: the same loss, more work
 *   KD, full image      the baseline DMAE is compared with: the student as a classifier (every
 *                       patch, fc_norm, head) trained on the soft labels of a fine-tuned teacher
 *                       classifier that runs all its blocks on the full image (Classifier with
 *                       `distill`, one submit: teacher forward, logits copy, student step)
 *
 * Per mask ratio (visible V = lenKeepFor(64, r)) the five contenders (the three steps, and the
 * teacher's forward alone, stopped and full) are timed interleaved (bench/lib.ts). Weights are the
 * recipe's random initialisation (timing does not depend on their values); images are seeded
 * noise. Before timing, the stopped and the full teacher's DMAE take one step from the same state
 * and their losses are compared bit for bit. Results: bench/results/train.json (bench/README.md).
 */
import { defaultDistillConfig, maeConfig, numPatches, teacherStopBlock, type MaeConfig } from '../src/engine/config';
import { Classifier, initFinetuneParams, recordTeacherLogits } from '../src/engine/classifier';
import { DmaeModel, dmaeStudentLayout } from '../src/engine/dmae';
import { initParams } from '../src/engine/init';
import { MaeModel } from '../src/engine/mae';
import { maeParamLayout } from '../src/engine/params';
import { readback } from '../src/gpu/buffers';
import { Recorder } from '../src/gpu/kernels';
import { lenKeepFor, randomMasking } from '../src/gpu/ops/masking';
import { GpuTimer } from '../src/gpu/timing';
import { commonFields, openBench, ourContender, randn, rng, round, timeInterleaved, writeResults, type BenchContext, type Contender, type Timing } from './lib';

export interface TrainOptions {
  reps: number;
  /** Repetitions of the teacher-forward pair (it is short). */
  teacherReps: number;
  warmup: number;
  batch: number;
  ratios: number[];
  out: string;
  /**
   * Other sizes than ViT-Tiny ← ViT-Small at 32×32×3 (the experiment command's cost job times
   * its own student and teacher this way); names are what the JSON calls them.
   */
  models?: { student: MaeConfig; teacher: MaeConfig; studentName: string; teacherName: string };
}

const GEOMETRY = { imgSize: 32, patchSize: 4, inChans: 3 } as const;
/** The step's optimiser settings (the recipe's betas and weight decay are AdamW's defaults). */
const STEP_OPTS = { lr: 1.5e-4, step: 1 };

/** A Recorder that counts its compute passes, to size the timestamp query set. */
class CountingRecorder extends Recorder {
  passes = 0;
  override dispatch(...args: Parameters<Recorder['dispatch']>): void {
    this.passes++;
    super.dispatch(...args);
  }
}

/**
 * A timer whose every pass has its own label (its index in the submission), so that `read()`
 * gives each pass's time rather than sums by kernel name.
 */
class PassTimer extends GpuTimer {
  private next = 0;
  override writes(label: string): GPUComputePassTimestampWrites | undefined {
    return super.writes(`${String(this.next++).padStart(5, '0')} ${label}`);
  }
  override async read(): Promise<Map<string, number>> {
    this.next = 0;
    return super.read();
  }
}

/** ourContender, keeping each repetition's per-pass nanoseconds in `perPass` (for the sum of per-pass minima). */
function stepContender(ctx: BenchContext, name: string, record: (rec: Recorder) => void, perPass: Map<string, number[][]>): Contender {
  perPass.set(name, []);
  return ourContender(ctx, name, record, (byPass) =>
    perPass.get(name)!.push([...byPass.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, ns]) => ns)),
  );
}

/**
 * Σ over passes of the pass's minimum time over the last `reps` repetitions: load from other
 * processes stretches some passes of some repetitions, and the per-pass minimum drops most of it.
 */
function passMinimaSumMs(samples: number[][], reps: number): number | undefined {
  const last = samples.slice(-reps);
  if (last.length === 0 || last.some((s) => s.length !== last[0].length)) return undefined;
  let ns = 0;
  for (let i = 0; i < last[0].length; i++) ns += Math.min(...last.map((s) => s[i]));
  return round(ns / 1e6);
}

async function countPasses(ctx: BenchContext, record: (rec: Recorder) => void): Promise<number> {
  const rec = new CountingRecorder(ctx.gpu);
  record(rec);
  await rec.submit();
  return rec.passes;
}

interface StepResult extends Timing {
  name: string;
  what: 'mae_step' | 'dmae_step' | 'dmae_full_teacher_step' | 'kd_full_image_step' | 'teacher_forward_partial' | 'teacher_forward_full';
  maskRatio: number;
  visible: number;
  batch: number;
  /** Compute passes (dispatches) in one repetition. */
  passes: number;
  /**
   * GPU timestamps only: Σ over passes of each pass's minimum over the repetitions, an estimate
   * of the time without other load (each repetition records the same passes in the same order).
   */
  passMinSumMs?: number;
  /** batch / median time. */
  imagesPerSecond: number;
  /** batch / median wall-clock time. */
  wallImagesPerSecond: number;
}

export async function runTrain(opts: TrainOptions): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  const log = (s: string): void => console.log(s);
  const ctx = await openBench(opts);
  // A whole step is several hundred passes: the shared timer's 512 would silently stop counting.
  if (ctx.timer) ctx.timer = new PassTimer(ctx.gpu.device, 2048);
  const N = opts.batch;
  const student = opts.models?.student ?? maeConfig('vit-tiny', GEOMETRY);
  const teacher = opts.models?.teacher ?? maeConfig('vit-small', GEOMETRY);
  const [studentName, teacherName] = opts.models ? [opts.models.studentName, opts.models.teacherName] : ['vit-tiny', 'vit-small'];
  const geometry = { imgSize: student.imgSize, patchSize: student.patchSize, inChans: student.inChans };
  const distill = defaultDistillConfig(student.depth, teacher.depth);
  const kT = teacherStopBlock(distill);
  const L = numPatches(student);
  const grid = geometry.imgSize / geometry.patchSize;
  log(`adapter: ${ctx.gpu.adapter.description}; timing: ${ctx.method}, ${opts.warmup} warm-up + ${opts.reps} reps, median; batch ${N}`);
  log(`student ${studentName}, teacher ${teacherName} stopped at block ${kT} of 0..${teacher.depth - 1}; pairs ${JSON.stringify(distill.pairs)}`);

  // Random initialisation (recipe §1), seeded; the teacher is a whole MAE checkpoint of its own.
  const maeParams = initParams(maeParamLayout(student), grid, 1);
  const dmaeParams = initParams(dmaeStudentLayout(student, teacher, distill), grid, 1);
  const teacherParams = initParams(maeParamLayout(teacher), grid, 2);
  const imgs = Float32Array.from(randn(N * geometry.inChans * geometry.imgSize ** 2, 3));
  const noise = rng(4);

  // The KD baseline does not mask: one student/teacher pair serves every ratio (timed with each).
  const KD_CLASSES = 10;
  const kdStudent = new Classifier(ctx.gpu, student, { mode: 'finetune', numClasses: KD_CLASSES, batch: N, distill: { temperature: 4, softWeight: 0.5 } });
  const kdTeacher = new Classifier(ctx.gpu, teacher, { mode: 'finetune', numClasses: KD_CLASSES, batch: N });
  kdStudent.uploadParams(initFinetuneParams(student, KD_CLASSES, null, 1));
  kdTeacher.uploadParams(initFinetuneParams(teacher, KD_CLASSES, null, 2));
  const labels = Array.from({ length: N }, (_, i) => i % KD_CLASSES);
  kdStudent.setBatch(imgs, labels, N);
  kdTeacher.setBatch(imgs, labels, N);
  const kdStep = (rec: Recorder) => {
    recordTeacherLogits(rec, kdStudent, kdTeacher, N);
    kdStudent.recordTrainStep(rec, STEP_OPTS);
  };

  const results: StepResult[] = [];
  const checks: { maskRatio: number; fullTeacherSameLoss: boolean; loss: number; distill: number; pix: number }[] = [];
  for (const r of opts.ratios) {
    const V = lenKeepFor(L, r);
    const masking = randomMasking(Float32Array.from({ length: N * L }, () => noise()), N, L, V);
    log(`mask ratio ${r}: ${V} of ${L} visible`);
    const mae = new MaeModel(ctx.gpu, student, N, V);
    const dmae = new DmaeModel(ctx.gpu, student, teacher, distill, N, V);
    const dmaeFull = new DmaeModel(ctx.gpu, student, teacher, distill, N, V, { teacherRunThrough: teacher.depth - 1 });
    mae.uploadParams(maeParams);
    mae.setBatch(imgs, masking);
    for (const m of [dmae, dmaeFull]) {
      m.uploadParams(dmaeParams);
      m.uploadTeacher(teacherParams);
      m.setBatch(imgs, masking);
    }
    try {
      // One step each, from the same state: compiles the pipelines, grows the scratch, counts
      // the passes, and checks that the full teacher gives the same loss as the stopped one.
      const passes = {
        mae_step: await countPasses(ctx, (rec) => mae.recordStep(rec, STEP_OPTS)),
        dmae_step: await countPasses(ctx, (rec) => dmae.recordStep(rec, STEP_OPTS)),
        dmae_full_teacher_step: await countPasses(ctx, (rec) => dmaeFull.recordStep(rec, STEP_OPTS)),
        kd_full_image_step: await countPasses(ctx, kdStep),
        teacher_forward_partial: await countPasses(ctx, (rec) => dmae.recordForwardTeacher(rec)),
        teacher_forward_full: await countPasses(ctx, (rec) => dmaeFull.recordForwardTeacher(rec)),
      };
      const io = async (m: DmaeModel) => readback(ctx.gpu.device, m.io.all);
      const [a, b] = [await io(dmae), await io(dmaeFull)];
      const same = a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
      const losses = await dmae.readLosses();
      checks.push({ maskRatio: r, fullTeacherSameLoss: same, loss: losses.loss, distill: losses.distill[0], pix: losses.pix });
      log(`  passes ${JSON.stringify(passes)}; full teacher same losses: ${same}; loss ${losses.loss.toFixed(4)} (pix ${losses.pix.toFixed(4)}, distill ${losses.distill[0].toFixed(4)})`);
      const most = Math.max(...Object.values(passes));
      if (ctx.timer && most > ctx.timer.capacity) throw new Error(`a step has ${most} passes, more than the timer's ${ctx.timer.capacity}`);

      // The teacher's forward alone reads the student's patches, which the steps above left in place.
      const perPass = new Map<string, number[][]>();
      const steps = [
        stepContender(ctx, 'mae_step', (rec) => mae.recordStep(rec, STEP_OPTS), perPass),
        stepContender(ctx, 'dmae_step', (rec) => dmae.recordStep(rec, STEP_OPTS), perPass),
        stepContender(ctx, 'dmae_full_teacher_step', (rec) => dmaeFull.recordStep(rec, STEP_OPTS), perPass),
        stepContender(ctx, 'kd_full_image_step', kdStep, perPass),
      ];
      // The teacher's forward alone is short and its ratio is the point of stopping early:
      // more repetitions, still interleaved stopped/full.
      const teacherPair = [
        stepContender(ctx, 'teacher_forward_partial', (rec) => dmae.recordForwardTeacher(rec), perPass),
        stepContender(ctx, 'teacher_forward_full', (rec) => dmaeFull.recordForwardTeacher(rec), perPass),
      ];
      const timings = new Map([...(await timeInterleaved(ctx, steps)), ...(await timeInterleaved({ ...ctx, reps: opts.teacherReps }, teacherPair))]);
      const contenders = [...steps, ...teacherPair];
      for (const c of contenders) {
        const t = timings.get(c.name)!;
        const what = c.name as StepResult['what'];
        results.push({
          name: `${what}_m${r}`, what, maskRatio: r, visible: V, batch: N, passes: passes[what], ...t,
          passMinSumMs: passMinimaSumMs(perPass.get(c.name)!, what.startsWith('teacher') ? opts.teacherReps : opts.reps),
          imagesPerSecond: round((N * 1000) / t.medianMs), wallImagesPerSecond: round((N * 1000) / t.wallMedianMs),
        });
        const pm = results[results.length - 1].passMinSumMs;
        log(`  ${c.name.padEnd(24)} ${t.medianMs.toFixed(1).padStart(8)} ms (wall ${t.wallMedianMs.toFixed(1)} ms${pm === undefined ? '' : `, Σ pass minima ${pm.toFixed(1)} ms`})  ${round((N * 1000) / t.medianMs)} img/s`);
      }
    } finally {
      mae.destroy();
      dmae.destroy();
      dmaeFull.destroy();
    }
  }

  const at = (what: StepResult['what'], r: number) => results.find((x) => x.what === what && x.maskRatio === r)!;
  const ratios: Record<string, number> = {};
  const imagesPerSecond: Record<string, number> = {};
  for (const r of opts.ratios) {
    const mae = at('mae_step', r), dmae = at('dmae_step', r), full = at('dmae_full_teacher_step', r), kd = at('kd_full_image_step', r);
    const tp = at('teacher_forward_partial', r), tf = at('teacher_forward_full', r);
    ratios[`dmae_vs_mae_step_time_m${r}`] = round(dmae.medianMs / mae.medianMs);
    ratios[`dmae_vs_mae_step_time_wallclock_m${r}`] = round(dmae.wallMedianMs / mae.wallMedianMs);
    passMinRatio(ratios, `dmae_vs_mae_step_time_passmin_m${r}`, dmae, mae);
    ratios[`partial_vs_full_teacher_forward_time_m${r}`] = round(tp.medianMs / tf.medianMs);
    passMinRatio(ratios, `partial_vs_full_teacher_forward_time_passmin_m${r}`, tp, tf);
    // What the work predicts: the FLOPs of the stopped teacher's forward over the full one's.
    ratios[`partial_vs_full_teacher_forward_flops_m${r}`] = round(teacherForwardFlops(teacher, N, tp.visible, kT + 1) / teacherForwardFlops(teacher, N, tp.visible, teacher.depth));
    ratios[`partial_vs_full_teacher_dmae_step_time_m${r}`] = round(dmae.medianMs / full.medianMs);
    passMinRatio(ratios, `partial_vs_full_teacher_dmae_step_time_passmin_m${r}`, dmae, full);
    ratios[`partial_vs_full_teacher_dmae_step_time_wallclock_m${r}`] = round(dmae.wallMedianMs / full.wallMedianMs);
    // DMAE against the baseline it replaces (the issue's target: at most 0.35).
    ratios[`dmae_vs_kd_full_image_step_time_m${r}`] = round(dmae.medianMs / kd.medianMs);
    passMinRatio(ratios, `dmae_vs_kd_full_image_step_time_passmin_m${r}`, dmae, kd);
    imagesPerSecond[`kd_full_image_m${r}`] = kd.imagesPerSecond;
    imagesPerSecond[`mae_m${r}`] = mae.imagesPerSecond;
    imagesPerSecond[`dmae_m${r}`] = dmae.imagesPerSecond;
    imagesPerSecond[`dmae_full_teacher_m${r}`] = full.imagesPerSecond;
  }
  const body = {
    ...(await commonFields(ctx, started)),
    setup: {
      batch: N,
      image: `${geometry.imgSize}×${geometry.imgSize}×${geometry.inChans}`,
      patchSize: geometry.patchSize,
      patches: L,
      student: describe(student, studentName),
      teacher: { ...describe(teacher, teacherName), stopBlock: kT, blocksRun: kT + 1, fullBlocksRun: teacher.depth },
      distill,
      maskRatios: opts.ratios.map((r) => ({ maskRatio: r, visible: lenKeepFor(L, r) })),
      step: `zero grads, forward, backward, global grad norm, AdamW (lr ${STEP_OPTS.lr}, no clipping): one command buffer, one submit`,
      weights: 'random (the recipe initialisation, seeded); images are seeded uniform noise in [-1, 1); timing does not depend on the values',
      kdFullImage: `kd_full_image_step: the student as a classifier (all ${L} patches, fc_norm, ${KD_CLASSES}-way head) trained on the soft labels (τ 4, λ 0.5) of the teacher as a fine-tuned classifier run through all ${teacher.depth} blocks on the full image; one submit`,
      teacherForward: "teacher_forward_*: the teacher's forward alone (patch embedding, position embedding, gather of the visible tokens, its blocks) in its own submission, on the student's patches",
      teacherForwardReps: opts.teacherReps,
      warmupNote: 'before timing, every contender ran once untimed (that run compiled the pipelines, grew the scratch, counted the passes and checked the losses); timing.warmup counts extra untimed rounds',
    },
    checks: { fullTeacherSameLoss: checks.every((c) => c.fullTeacherSameLoss), perRatio: checks },
    summary: { seconds: round((performance.now() - t0) / 1000, 3) },
    images_per_second: imagesPerSecond,
    ratios,
    figures: results,
  };
  kdStudent.destroy();
  kdTeacher.destroy();
  const path = writeResults(opts.out, body);
  log(`ratios ${JSON.stringify(ratios, null, 1)}`);
  log(`wrote ${path} in ${body.summary.seconds} s`);
  const errors = ctx.gpu.takeUncapturedErrors();
  if (errors.length) log(`uncaptured GPU errors: ${errors.join('; ')}`);
  ctx.timer?.destroy();
  ctx.gpu.destroy();
  if (errors.length || !body.checks.fullTeacherSameLoss) process.exitCode = 1;
}

/**
 * Multiply-add FLOPs (2 per MAC) of the teacher's forward through `blocks` blocks on N images of
 * V visible patches: the patch embedding over all L patches, then per block the four Linear
 * layers (24·R·W²) and attention's two products (4·N·T²·W). The element-wise work is left out.
 */
export function teacherForwardFlops(c: MaeConfig, N: number, V: number, blocks: number): number {
  const W = c.embedDim, T = 1 + V, R = N * T, L = numPatches(c), K = c.inChans * c.patchSize ** 2;
  const perBlock = 2 * R * W * (3 * W + W + 2 * c.mlpRatio * W) + 4 * N * T * T * W;
  return 2 * N * L * K * W + blocks * perBlock;
}

/** ratios[key] = passMinSumMs(a) / passMinSumMs(b), where both have one (GPU timestamps). */
function passMinRatio(ratios: Record<string, number>, key: string, a: StepResult, b: StepResult): void {
  if (a.passMinSumMs !== undefined && b.passMinSumMs !== undefined) ratios[key] = round(a.passMinSumMs / b.passMinSumMs);
}

function describe(c: MaeConfig, preset: string) {
  return { preset, embedDim: c.embedDim, depth: c.depth, numHeads: c.numHeads, mlpRatio: c.mlpRatio, decoderEmbedDim: c.decoderEmbedDim, decoderDepth: c.decoderDepth, decoderNumHeads: c.decoderNumHeads, normPixLoss: c.normPixLoss };
}
