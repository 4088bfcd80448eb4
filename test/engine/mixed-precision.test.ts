/**
 * Mixed precision on real WebGPU (lavapipe has shader-f16): the whole MAE and DMAE under
 * precision 'mixed' against the float64 reference run under autocastF16 (the same products see
 * f16-rounded operands), every gradient unscaled; the loss scaler skipping overflowed steps
 * without touching the state, growing after good ones; the Trainer reporting, checkpointing and
 * refusing it where the adapter has no shader-f16.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import { maeConfig, numPatches, type MaeConfig } from '../../src/engine/config';
import { DmaeModel, dmaeStudentLayout } from '../../src/engine/dmae';
import { MaeModel, readParamMap, type Precision } from '../../src/engine/mae';
import { maeParamLayout } from '../../src/engine/params';
import { MAX_SKIPPED_IN_A_ROW, Trainer, type StepMetrics } from '../../src/engine/trainer';
import type { Gpu } from '../../src/gpu/device';
import { Recorder, type KernelSpec, type Param, type Tensor } from '../../src/gpu/kernels';
import { autocastF16 } from '../../src/ref/matmul';
import * as ref from '../../src/ref/model';
import { expectSameParams, randn, run, testGpu, TOL } from '../helpers';
import { perturbedParams, testMasking, tinyConfig, tinyTeacherConfig } from '../model-fixtures';

async function f16Gpu(ctx: TestContext): Promise<Gpu> {
  const gpu = await testGpu();
  if (!gpu.hasF16) ctx.skip(`${gpu.adapter.description} has no shader-f16`);
  return gpu;
}

/** Runs `record` and counts the dispatches of each entry point. */
async function countingRun(gpu: Gpu, record: (rec: Recorder) => void): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const rec = new (class extends Recorder {
    override dispatch(spec: KernelSpec, bindings: readonly (Tensor | undefined)[], params: readonly Param[] | null, workgroups: readonly [number, number?, number?]): void {
      counts.set(spec.entry, (counts.get(spec.entry) ?? 0) + 1);
      super.dispatch(spec, bindings, params, workgroups);
    }
  })(gpu);
  record(rec);
  await rec.submit();
  return counts;
}

/** Gradients of the scaled loss, divided by the scale: what the optimiser steps on. */
async function unscaledGrads(model: MaeModel): Promise<Map<string, Float64Array>> {
  const { scale } = await model.readLossScale();
  return new Map([...(await model.readGrads())].map(([k, v]) => [k, v.map((x) => x / scale)]));
}

/** Per tensor ‖got − want‖ / ‖want‖; the worst one, and the whole table's. */
function relativeErrors(got: Map<string, Float64Array>, want: Map<string, Float64Array>): { worst: number; worstName: string; all: number } {
  let worst = 0, worstName = '', num = 0, den = 0;
  for (const [k, w] of want) {
    const g = got.get(k)!;
    let n = 0, d = 0;
    for (let i = 0; i < w.length; i++) {
      n += (g[i] - w[i]) ** 2;
      d += w[i] ** 2;
    }
    if (d > 0 && Math.sqrt(n / d) > worst) [worst, worstName] = [Math.sqrt(n / d), k];
    num += n;
    den += d;
  }
  return { worst, worstName, all: Math.sqrt(num / den) };
}

async function goldenMixedMae(ctx: TestContext, cfg: MaeConfig, N: number, V: number, seed: number, worstRelative: number): Promise<void> {
  const gpu = await f16Gpu(ctx);
  const L = numPatches(cfg);
  const params = perturbedParams(maeParamLayout(cfg), cfg, seed);
  const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, seed + 1);
  const m = testMasking(N, L, V, seed + 2);
  const wantMixed = autocastF16(() => ref.maeForwardBackward(params, cfg, imgs, m, N));
  const wantExact = ref.maeForwardBackward(params, cfg, imgs, m, N);

  const model = new MaeModel(gpu, cfg, N, V, undefined, {}, { precision: 'mixed', initLossScale: 2 ** 10 });
  model.uploadParams(params);
  model.setBatch(Float32Array.from(imgs), m);
  const counts = await countingRun(gpu, (rec) => {
    model.recordZeroGrads(rec);
    model.recordForward(rec);
    model.recordBackward(rec);
  });
  expect(counts.get('matmul_vec4_f16') ?? 0, 'the products ran on f16 operands').toBeGreaterThan(0);
  expect(counts.get('scale_by_inplace'), 'the loss gradient was scaled once').toBe(1);
  const { loss } = await model.readLosses();
  expect(Math.abs(loss - wantMixed.loss) / wantMixed.loss, 'loss vs the f16-operand reference').toBeLessThan(TOL.reduction.rtol);
  const grads = await unscaledGrads(model);
  // The reference rounds each operand from its float64 value, the GPU from its f32 one: an operand
  // near a rounding boundary lands one f16 step (2⁻¹¹) apart, and these flips compound through the
  // blocks, so the two agree to f16's precision per tensor, not f32's. They still agree better than
  // the GPU agrees with the exact reference: the reference models what the GPU rounds.
  const toMixed = relativeErrors(grads, wantMixed.grads), toExact = relativeErrors(grads, wantExact.grads);
  expect(toMixed.worst, `worst tensor vs the f16-operand reference: ${toMixed.worstName}`).toBeLessThan(worstRelative);
  expect(toMixed.all, 'all gradients: closer to the f16-operand reference than to the exact one').toBeLessThan(0.6 * toExact.all);
  // And the rounding is real: f32 would agree with the exact reference to ~1e-5.
  expect(toExact.all, 'mixed gradients differ from the exact ones by f16 rounding').toBeGreaterThan(1e-4);
  expect(toExact.worst, `but within it: ${toExact.worstName}`).toBeLessThan(2e-2);
  expect((await model.readLossScale()).scale, 'no optimiser step: the scale is unchanged').toBe(2 ** 10);
  model.destroy();
}

describe('precision "mixed" vs the float64 reference with f16 matmul operands', () => {
  it('tiny MAE, C=3, norm_pix on, 2 images, 2 of 4 visible', (ctx) => goldenMixedMae(ctx, tinyConfig(3, true), 2, 2, 61, 2e-3));
  it('ViT-Tiny (192 wide, 12 blocks, decoder 128×2) at 32×32×3, 2 images, 16 of 64 visible', (ctx) =>
    goldenMixedMae(ctx, maeConfig('vit-tiny', { imgSize: 32, patchSize: 4, inChans: 3 }), 2, 16, 62, 3e-3));

  it('tiny DMAE (teacher run to kT on f16 operands too, the distillation gradient scaled)', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const cfg = tinyConfig(3, true), tcfg = tinyTeacherConfig(3);
    const d = { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' as const };
    const N = 2, V = 2, L = numPatches(cfg);
    const student = perturbedParams(dmaeStudentLayout(cfg, tcfg, d), cfg, 71);
    const teacher = perturbedParams(maeParamLayout(tcfg), tcfg, 72);
    const imgs = randn(N * 3 * 64, 73);
    const m = testMasking(N, L, V, 74);
    const want = autocastF16(() => ref.dmaeForwardBackward(student, cfg, teacher, tcfg, imgs, m, N, d));
    const model = new DmaeModel(gpu, cfg, tcfg, d, N, V, { precision: 'mixed', initLossScale: 2 ** 12 });
    model.uploadParams(student);
    model.uploadTeacher(teacher);
    model.setBatch(Float32Array.from(imgs), m);
    const counts = await countingRun(gpu, (rec) => {
      model.recordZeroGrads(rec);
      model.recordForward(rec);
      model.recordBackward(rec);
    });
    expect(counts.get('scale_by_inplace'), 'the pixel and the distillation gradients were scaled').toBe(2);
    const losses = await model.readLosses();
    expect(Math.abs(losses.loss - want.loss) / want.loss).toBeLessThan(TOL.reduction.rtol);
    const err = relativeErrors(await unscaledGrads(model), want.grads);
    expect(err.worst, `worst tensor vs the f16-operand reference: ${err.worstName}`).toBeLessThan(2e-3);
    model.destroy();
  });
});

describe('the loss scaler in training steps', () => {
  const cfg = tinyConfig(3, true);
  const N = 2, V = 2;
  const setup = (gpu: Gpu, opts: { initLossScale?: number; lossScaleGrowthInterval?: number; precision?: Precision } = {}) => {
    const model = new MaeModel(gpu, cfg, N, V, undefined, {}, { precision: 'mixed', ...opts });
    model.uploadParams(perturbedParams(model.layout, cfg, 81));
    model.setBatch(Float32Array.from(randn(N * 3 * 64, 82)), testMasking(N, numPatches(cfg), V, 83));
    return model;
  };
  const step = (gpu: Gpu, model: MaeModel, t: number) => run(gpu, (rec) => model.recordStep(rec, { lr: 1e-3, step: t }));

  it('an overflowing scale skips the step (parameters and moments keep their bits) and halves, then steps resume', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    // 2⁴⁰ times the loss gradient leaves f16's range at once; 2⁻¹⁶ of it (≈ 2²⁴) still does.
    const model = setup(gpu, { initLossScale: 2 ** 40 });
    const before = { p: await model.readParams(), m: await readParamMap(gpu, model.adamM), v: await readParamMap(gpu, model.adamV) };
    await step(gpu, model, 1);
    let s = await model.readLossScale();
    expect(s).toMatchObject({ scale: 2 ** 39, goodSteps: 0, skippedSteps: 1, skipped: true });
    expectSameParams(await model.readParams(), before.p, TOL.exact, 'params after a skipped step:');
    expectSameParams(await readParamMap(gpu, model.adamM), before.m, TOL.exact, 'AdamW m after a skipped step:');
    expectSameParams(await readParamMap(gpu, model.adamV), before.v, TOL.exact, 'AdamW v after a skipped step:');
    expect((await model.readLosses()).gradNorm, 'an overflowed step has no norm').toBeNaN();
    let t = 1;
    while (s.skipped && t < 40) {
      await step(gpu, model, ++t);
      s = await model.readLossScale();
    }
    expect(s.skipped, 'the scale came down to a workable one').toBe(false);
    expect(s.scale).toBe(2 ** (40 - s.skippedSteps));
    expect(s.skippedSteps).toBeGreaterThan(5);
    const { gradNorm } = await model.readLosses();
    expect(Number.isFinite(gradNorm) && gradNorm > 0).toBe(true);
    const after = await model.readParams();
    expect([...after].some(([k, v]) => v.some((x, i) => x !== before.p.get(k)![i])), 'the good step moved the parameters').toBe(true);
    model.destroy();
  });

  it('the unscaled gradient norm and the step match an f32 model; the scale doubles after growthInterval good steps', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const mixed = setup(gpu, { initLossScale: 2 ** 8, lossScaleGrowthInterval: 2 });
    const plain = setup(gpu, { precision: 'f32' });
    for (const t of [1, 2, 3]) {
      await step(gpu, mixed, t);
      await step(gpu, plain, t);
      const [a, b] = [await mixed.readLosses(), await plain.readLosses()];
      // f16 operands: the norm agrees to f16's precision, not f32's.
      expect(Math.abs(a.gradNorm - b.gradNorm) / b.gradNorm, `gradient norm, step ${t}`).toBeLessThan(2e-2);
    }
    // Good steps 1, 2 → ×2 (good count back to 0), 3 → count 1.
    expect(await mixed.readLossScale()).toMatchObject({ scale: 2 ** 9, goodSteps: 1, skippedSteps: 0, skipped: false });
    // AdamW's step is ≈ lr·sign(m/√v): the two models stay within a few lr of each other.
    expectSameParams(await mixed.readParams(), await plain.readParams(), { atol: 3e-3, rtol: 1e-3 }, 'mixed vs f32 params after 3 steps:');
    plain.destroy();
    mixed.destroy();
  });
});

describe('Trainer with precision "mixed"', () => {
  const cfg = tinyConfig(3, true);
  const source = (seed: number) => {
    let i = 0;
    return { next: () => ({ x: Float32Array.from(randn(4 * 3 * 64, seed + i++)), size: 4 }) };
  };
  const config = { mode: 'mae' as const, model: cfg, batch: 4, visible: 2, lr: 1e-3, totalSteps: 6, seed: 5 };

  it('reports the loss scale per step, keeps it in its state, and follows the f32 run closely', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const runOf = async (precision: Precision) => {
      const t = new Trainer(gpu, { ...config, precision }, source(90));
      const metrics: StepMetrics[] = [];
      expect((await t.train({ onMetrics: (m) => void metrics.push(m) })).status).toBe('done');
      return { t, metrics };
    };
    const f32 = await runOf('f32');
    const mixed = await runOf('mixed');
    expect(f32.metrics.every((m) => m.lossScale === undefined && m.skipped === undefined)).toBe(true);
    expect(mixed.metrics.every((m) => m.lossScale === 2 ** 16 && m.skipped === false && m.skippedSteps === 0)).toBe(true);
    mixed.metrics.forEach((m, i) => expect(Math.abs(m.loss - f32.metrics[i].loss) / f32.metrics[i].loss, `loss at step ${i + 1}`).toBeLessThan(2e-2));
    const state = mixed.t.getState();
    expect(state.lossScale).toEqual({ scale: 2 ** 16, goodSteps: 6, skippedSteps: 0 });
    expect(f32.t.getState().lossScale).toBeUndefined();
    // Restored into another trainer's model.
    const again = new Trainer(gpu, { ...config, precision: 'mixed' }, source(90));
    again.setState({ ...state, lossScale: { scale: 2 ** 5, goodSteps: 3, skippedSteps: 2 } });
    expect(await again.model.readLossScale()).toEqual({ scale: 2 ** 5, goodSteps: 3, skippedSteps: 2, skipped: false });
    for (const t of [f32.t, mixed.t, again]) t.destroy();
  });

  it('with gradient accumulation, and for DMAE: the mixed run follows the f32 one', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const tcfg = tinyTeacherConfig(3);
    const teacherParams = perturbedParams(maeParamLayout(tcfg), tcfg, 95);
    const runs = {
      'MAE, 2 micro-batches per step': { ...config, accumSteps: 2 },
      DMAE: { ...config, mode: 'dmae' as const, teacher: tcfg, distill: { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' as const } },
    };
    for (const [what, c] of Object.entries(runs)) {
      const losses: Record<string, StepMetrics[]> = {};
      for (const precision of ['f32', 'mixed'] as const) {
        const t = new Trainer(gpu, { ...c, precision }, source(96), { teacherParams });
        const m: StepMetrics[] = [];
        expect((await t.train({ onMetrics: (x) => void m.push(x) })).status, `${what} ${precision}`).toBe('done');
        losses[precision] = m;
        t.destroy();
      }
      expect(losses.mixed.every((m) => m.skipped === false && Number.isFinite(m.gradNorm)), what).toBe(true);
      losses.mixed.forEach((m, i) => {
        const f = losses.f32[i];
        expect(Math.abs(m.loss - f.loss) / f.loss, `${what}: loss at step ${i + 1}`).toBeLessThan(2e-2);
        expect(Math.abs(m.gradNorm - f.gradNorm) / f.gradNorm, `${what}: gradient norm at step ${i + 1}`).toBeLessThan(5e-2);
        if (f.distill) expect(Math.abs(m.distill![0] - f.distill[0]) / f.distill[0], `${what}: distillation loss at step ${i + 1}`).toBeLessThan(2e-2);
      });
    }
  });

  it('stops with a message when the forward itself leaves f16 (every step skipped), state restored', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    // Pixels of 10⁶: the patch embedding's operand is out of f16's range whatever the scale.
    const huge = { next: () => ({ x: new Float32Array(4 * 3 * 64).fill(1e6).map((x, i) => (i % 7 === 0 ? -x : x)), size: 4 }) };
    const t = new Trainer(gpu, { ...config, precision: 'mixed', totalSteps: MAX_SKIPPED_IN_A_ROW + 5 }, huge);
    const before = await t.readParams();
    const r = await t.train();
    expect(r.status).toBe('diverged');
    expect(r.divergence?.which).toBe('lossScale');
    expect(r.divergence?.message).toMatch(new RegExp(`${MAX_SKIPPED_IN_A_ROW} steps in a row overflowed f16 .* Train with precision "f32"`));
    expectSameParams(await t.readParams(), before, TOL.exact, 'nothing was ever stepped:');
    // The loss scaler is rolled back with the parameters: to the end of the step before the bad one.
    const ls = await t.model.readLossScale();
    expect(ls).toMatchObject({ skippedSteps: MAX_SKIPPED_IN_A_ROW - 1, scale: 2 ** (16 - (MAX_SKIPPED_IN_A_ROW - 1)) });
    expect(t.getState().lossScale).toEqual({ scale: ls.scale, goodSteps: ls.goodSteps, skippedSteps: ls.skippedSteps });
    t.destroy();
  });

  it('refuses mixed precision on an adapter without shader-f16, and an unknown precision, with messages', async () => {
    const gpu = await testGpu();
    const noF16 = { ...gpu, hasF16: false, adapter: { ...gpu.adapter, description: 'an adapter without f16' }, device: gpu.device } as Gpu;
    expect(() => new Trainer(noF16, { ...config, precision: 'mixed' }, source(1))).toThrow(/mixed precision needs the adapter's shader-f16 feature, which an adapter without f16 lacks; train with precision "f32"/);
    expect(() => new Trainer(gpu, { ...config, precision: 'f8' as Precision }, source(1))).toThrow(/precision "f8" must be "f32" or "mixed"/);
  });
});
