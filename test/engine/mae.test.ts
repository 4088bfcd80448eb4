/**
 * Golden test of the whole tiny model on real WebGPU: the loss, the prediction and EVERY
 * parameter gradient equal the float64 reference (src/ref/model.ts), then the losses of a few
 * AdamW steps track the reference's.
 */
import { describe, expect, it } from 'vitest';
import { maeConfig, numPatches, type DistillConfig, type MaeConfig } from '../../src/engine/config';
import { DmaeModel, dmaeStudentLayout } from '../../src/engine/dmae';
import { MaeModel, maeMemoryEstimate } from '../../src/engine/mae';
import { FROZEN, maeParamLayout } from '../../src/engine/params';
import type { ParamMap } from '../../src/engine/init';
import { upload } from '../../src/gpu/buffers';
import { Recorder, dispatchCache } from '../../src/gpu/kernels';
import * as refAdamw from '../../src/ref/adamw';
import * as ref from '../../src/ref/model';
import { adapterFingerprint } from '../../src/gpu/autotune';
import type { Gpu } from '../../src/gpu/device';
import { collectFamilyShapes, rememberVariant, resetVariantChoices, variantInUse } from '../../src/gpu/variant-choices';
import { expectClose, expectSameBits, expectSameParams, randn, read, run, testGpu, TOL } from '../helpers';
import { flatten, perturbedParams, testMasking, tinyConfig, tinyTeacherConfig, unflatten } from '../model-fixtures';

/**
 * The step's first backward assigns the gradients (Recorder.assignParamGrads) instead of adding
 * to zeroed ones: run it on gradients that hold NaN, and every trainable parameter's gradient must
 * come out equal to `accumulated` (the backward's onto zeros: 0 + x is x), each written whole by
 * one op; the fixed sin-cos tables (FROZEN) have no gradient, and no op may write theirs.
 */
async function expectAssignedGradients(gpu: Gpu, model: MaeModel, accumulated: ParamMap): Promise<void> {
  upload(gpu.device, model.grads.all, new Float32Array(model.layout.size).fill(NaN));
  await run(gpu, (rec) => {
    model.recordForward(rec);
    rec.assignParamGrads(() => model.recordBackward(rec));
  });
  const assigned = await model.readGrads();
  for (const [name, want] of accumulated) {
    const got = assigned.get(name)!;
    if (FROZEN.has(name)) expect(got.every(Number.isNaN), `${name}: no op writes a fixed table's gradient`).toBe(true);
    else expectClose(got, want, TOL.exact, `assigned d loss / ${name}`);
  }
}

async function goldenMae(cfg: MaeConfig, N: number, V: number, seed: number): Promise<void> {
  const gpu = await testGpu();
  const L = numPatches(cfg);
  const layout = maeParamLayout(cfg);
  const params = perturbedParams(layout, cfg, seed);
  const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, seed + 1);
  const m = testMasking(N, L, V, seed + 2);
  const want = ref.maeForwardBackward(params, cfg, imgs, m, N);

  const model = new MaeModel(gpu, cfg, N, V);
  expect(model.memoryBytes, 'the estimate before a run is what the model allocates').toBe(maeMemoryEstimate(cfg, N, V));
  model.uploadParams(params);
  model.setBatch(Float32Array.from(imgs), m);
  await run(gpu, (rec) => {
    model.recordZeroGrads(rec);
    model.recordForward(rec);
    model.recordBackward(rec);
  });
  const { loss } = await model.readLosses();
  expectClose([loss], [want.loss], TOL.reduction, 'loss');
  expectClose(await model.readPred(), want.pred, TOL.reduction, 'pred');
  const grads = await model.readGrads();
  expectSameParams(grads, want.grads, TOL.gradient, 'd loss /');
  expectSameParams(await model.readParams(), params, TOL.exact, 'parameters unchanged by forward/backward:');
  await expectAssignedGradients(gpu, model, grads);
  model.destroy();
}

describe('MAE on the GPU vs the float64 reference (loss, prediction, every gradient)', () => {
  it('C=3, norm_pix on, 2 images, 2 of 4 visible', () => goldenMae(tinyConfig(3, true), 2, 2, 11));
  it('C=3, norm_pix off, 2 images, 2 of 4 visible', () => goldenMae(tinyConfig(3, false), 2, 2, 12));
  it('C=1, norm_pix on, 3 images, one visible patch', () => goldenMae(tinyConfig(1, true), 3, 1, 13));
  it('C=1, patch 2 (L = 16), norm_pix off, 2 images, 3 visible', () => goldenMae(tinyConfig(1, false, { patchSize: 2 }), 2, 3, 14));
  it('ViT-Tiny (192 wide, 12 blocks, decoder 128×2) at 32×32×3, patch 4, 2 images, 16 of 64 visible', () =>
    goldenMae(maeConfig('vit-tiny', { imgSize: 32, patchSize: 4, inChans: 3 }), 2, 16, 15));
});

describe('MAE training steps on the GPU track the reference', () => {
  it('3 AdamW steps (lr 1e-3, recipe betas and weight decay): the losses match', async () => {
    const gpu = await testGpu();
    const cfg = tinyConfig(3, true);
    const N = 2, V = 1, L = numPatches(cfg), steps = 3, lr = 1e-3;
    const layout = maeParamLayout(cfg);
    const params0 = perturbedParams(layout, cfg, 41);
    const imgs = randn(N * 3 * 64, 42);
    const masks = Array.from({ length: steps }, (_, t) => testMasking(N, L, V, 43 + t));

    // Reference: forward/backward, then torch's AdamW over the flattened table.
    let p = params0;
    const flatM = new Float64Array(layout.size), flatV = new Float64Array(layout.size);
    const ranges = refAdamw.decayRanges(layout);
    const refLosses: number[] = [];
    for (let t = 0; t < steps; t++) {
      const r = ref.maeForwardBackward(p, cfg, imgs, masks[t], N);
      refLosses.push(r.loss);
      const flatP = flatten(layout, p);
      refAdamw.adamwStep(flatP, flatten(layout, r.grads), flatM, flatV, ranges, Float64Array.of(1), layout.size, { lr, step: t + 1 });
      p = unflatten(layout, flatP);
    }

    const model = new MaeModel(gpu, cfg, N, V);
    model.uploadParams(params0);
    const gpuLosses: number[] = [];
    for (let t = 0; t < steps; t++) {
      model.setBatch(Float32Array.from(imgs), masks[t]);
      const rec = new Recorder(gpu);
      model.recordStep(rec, { lr, step: t + 1 });
      await rec.submit();
      gpuLosses.push((await model.readLosses()).loss);
    }
    expect(refLosses[2]).not.toBeCloseTo(refLosses[0], 3); // the steps did something
    expectClose(gpuLosses, refLosses, TOL.reduction, 'loss per step');
    // Parameters after 3 steps: Adam's update is ≈ lr·sign(m/√v), so float32 rounding of a tiny
    // gradient can flip a step of size lr; allow a few lr absolute.
    expectSameParams(await model.readParams(), p, { atol: 3 * lr, rtol: 1e-3 }, 'params after 3 steps:');
    model.destroy();
  });
});

/**
 * Runs `check` with every non-matmul family's class of the DMAE step (layer norm, attention, the
 * distillation loss) on its 'subgroup' variant, as a tuner that chose them would, and checks that
 * the step dispatched them. The classes come from a dry recording of a twin model; a device
 * keeps what a class first dispatched, so the choices are cleared before and after.
 */
async function withSubgroupVariants(gpu: Gpu, cfg: MaeConfig, d: DistillConfig, N: number, V: number, check: () => Promise<void>): Promise<void> {
  resetVariantChoices();
  const twin = new DmaeModel(gpu, cfg, tinyTeacherConfig(cfg.inChans as 1 | 3), d, N, V);
  const { shapes } = collectFamilyShapes(() => {
    const rec = new Recorder(gpu);
    twin.recordStep(rec, { lr: 0, step: 1 });
    rec.discard();
  });
  twin.destroy();
  const classes = [...shapes].flatMap(([family, byClass]) => [...byClass.keys()].map((cls): [string, string] => [family, cls]));
  expect(classes.map(([f]) => f), 'the families of the step').toEqual(expect.arrayContaining(['layernorm', 'attention', 'distill']));
  try {
    for (const [family, cls] of classes) rememberVariant(adapterFingerprint(gpu), family, cls, 'subgroup');
    await check();
    for (const [family, cls] of classes) expect(variantInUse(gpu, family, cls), `${family} ${cls} dispatched`).toBe('subgroup');
  } finally {
    resetVariantChoices();
  }
}

async function goldenDmae(cfg: MaeConfig, d: DistillConfig, N: number, V: number, seed: number, steps = 0, lr = 1e-3): Promise<void> {
  const gpu = await testGpu();
  const tcfg = tinyTeacherConfig(cfg.inChans as 1 | 3);
  const L = numPatches(cfg);
  const layout = dmaeStudentLayout(cfg, tcfg, d);
  const student0 = perturbedParams(layout, cfg, seed);
  // A whole MAE checkpoint as the teacher: the model takes only its blocks 0..kT.
  const teacherFull = perturbedParams(maeParamLayout(tcfg), tcfg, seed + 1);
  const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, seed + 2);
  const masks = Array.from({ length: Math.max(steps, 1) }, (_, t) => testMasking(N, L, V, seed + 3 + t));

  const model = new DmaeModel(gpu, cfg, tcfg, d, N, V);
  model.uploadParams(student0);
  model.uploadTeacher(teacherFull);
  model.setBatch(Float32Array.from(imgs), masks[0]);
  const want = ref.dmaeForwardBackward(student0, cfg, teacherFull, tcfg, imgs, masks[0], N, d);
  if (steps === 0) {
    await run(gpu, (rec) => {
      model.recordZeroGrads(rec);
      model.recordForward(rec);
      model.recordBackward(rec);
    });
    const got = await model.readLosses();
    expect(want.distillLoss).toBeGreaterThan(0);
    expectClose([got.pix], [want.pixLoss], TOL.reduction, 'L_pix');
    expectClose([got.distill.reduce((a, b) => a + b, 0)], [want.distillLoss], TOL.reduction, 'L_dist');
    expectClose([got.loss], [want.loss], TOL.reduction, 'loss');
    const grads = await model.readGrads();
    expectSameParams(grads, want.grads, TOL.gradient, 'd loss /');
    await expectAssignedGradients(gpu, model, grads);
    model.destroy();
    return;
  }
  let p = student0;
  const flatM = new Float64Array(layout.size), flatV = new Float64Array(layout.size);
  const ranges = refAdamw.decayRanges(layout);
  const refLosses: number[] = [], gpuLosses: number[] = [], refDistill: number[] = [], gpuDistill: number[] = [];
  for (let t = 0; t < steps; t++) {
    const r = ref.dmaeForwardBackward(p, cfg, teacherFull, tcfg, imgs, masks[t], N, d);
    refLosses.push(r.loss);
    refDistill.push(r.distillLoss);
    const flatP = flatten(layout, p);
    refAdamw.adamwStep(flatP, flatten(layout, r.grads), flatM, flatV, ranges, Float64Array.of(1), layout.size, { lr, step: t + 1 });
    p = unflatten(layout, flatP);

    model.setBatch(Float32Array.from(imgs), masks[t]);
    const rec = new Recorder(gpu);
    model.recordStep(rec, { lr, step: t + 1 });
    await rec.submit();
    const l = await model.readLosses();
    gpuLosses.push(l.loss);
    gpuDistill.push(l.distill.reduce((a, b) => a + b, 0));
  }
  expectClose(gpuLosses, refLosses, TOL.reduction, 'DMAE loss per step');
  expectClose(gpuDistill, refDistill, TOL.reduction, 'L_dist per step');
  // See the MAE steps test: a flipped sign of a tiny gradient moves a parameter by about lr.
  expectSameParams(await model.readParams(), p, { atol: 3 * lr, rtol: 1e-3 }, 'student after steps:');
  expectSameParams(await model.readTeacher(), new Map([...teacherFull].filter(([k]) => model.teacherParams.layout.has(k))), TOL.exact, 'teacher is frozen:');
  model.destroy();
}

describe('DMAE on the GPU vs the float64 reference (losses, every student and head gradient)', () => {
  it('L1, α = 1, student block 0 ↔ teacher block 1 (teacher stops at 1 of 3), 2 of 4 visible', () =>
    goldenDmae(tinyConfig(3, true), { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' }, 2, 2, 51));
  it('L2, α = 0.5, two pairs (1↔1, 0↔2), norm_pix off, one visible patch', () =>
    goldenDmae(tinyConfig(1, false), { pairs: [{ studentBlock: 1, teacherBlock: 1 }, { studentBlock: 0, teacherBlock: 2 }], alpha: 0.5, kind: 'l2' }, 2, 1, 52));
  it('3 AdamW steps: the losses and L_dist track the reference, the teacher stays frozen', () =>
    goldenDmae(tinyConfig(3, true), { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' }, 2, 2, 53, 3));
  it("with the 'subgroup' variants of layer norm, attention and the distillation loss, as a tuner may choose them: L1 and L2", async (ctx) => {
    const gpu = await testGpu();
    if (!gpu.hasSubgroups) ctx.skip(`the 'subgroup' variants need the 'subgroups' feature, which ${gpu.adapter.description} lacks`);
    const cases: Array<[MaeConfig, DistillConfig, number, number, number]> = [
      [tinyConfig(3, true), { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' }, 2, 2, 54],
      [tinyConfig(1, false), { pairs: [{ studentBlock: 1, teacherBlock: 1 }, { studentBlock: 0, teacherBlock: 2 }], alpha: 0.5, kind: 'l2' }, 2, 1, 55],
    ];
    for (const [cfg, d, N, V, seed] of cases) await withSubgroupVariants(gpu, cfg, d, N, V, () => goldenDmae(cfg, d, N, V, seed));
  });
});

describe('the step loop', () => {
  it('a repeated DMAE step creates no GPU objects, is one submission in one compute pass, and is bit-for-bit deterministic', async () => {
    const gpu = await testGpu();
    const cfg = tinyConfig(3, true);
    const d: DistillConfig = { pairs: [{ studentBlock: 1, teacherBlock: 1 }], alpha: 1, kind: 'l1' };
    const tcfg = tinyTeacherConfig(3);
    const N = 2, V = 2;
    const model = new DmaeModel(gpu, cfg, tcfg, d, N, V);
    const student = perturbedParams(dmaeStudentLayout(cfg, tcfg, d), cfg, 61);
    model.uploadTeacher(perturbedParams(maeParamLayout(tcfg), tcfg, 62));
    model.setBatch(Float32Array.from(randn(N * 3 * 64, 63)), testMasking(N, numPatches(cfg), V, 64));
    expect(model.memoryBytes).toBeGreaterThan(0);
    let passes = 0;
    const step = async () => {
      model.uploadParams(student);
      model.resetOptimizer();
      const rec = new Recorder(gpu);
      model.recordStep(rec, { lr: 1e-3, step: 1 });
      await rec.submit();
      passes = rec.passCount;
    };
    await step(); // the first step grows the kernels' per-device scratch and builds pipelines
    const grads1 = await read(gpu, model.grads.all), params1 = await read(gpu, model.params.all);
    const groups = dispatchCache(gpu.device).bindGroupCount;
    // Count, during the repeated step, every call that creates a GPU object or submits work (the
    // real device's methods are wrapped, and still run).
    const device = gpu.device as unknown as Record<string, (...args: unknown[]) => unknown>;
    const queue = gpu.device.queue as unknown as Record<string, (...args: unknown[]) => unknown>;
    const watched: [Record<string, (...args: unknown[]) => unknown>, string][] = [
      ...['createBuffer', 'createBindGroup', 'createComputePipeline', 'createComputePipelineAsync', 'createShaderModule', 'createBindGroupLayout', 'createQuerySet'].map((m) => [device, m] as [typeof device, string]),
      [queue, 'submit'],
    ];
    const calls = new Map<string, number>();
    const originals = watched.map(([o, m]) => o[m]);
    watched.forEach(([o, m], i) => {
      const original = originals[i].bind(o);
      o[m] = (...args: unknown[]) => {
        calls.set(m, (calls.get(m) ?? 0) + 1);
        return original(...args);
      };
    });
    try {
      await step();
    } finally {
      watched.forEach(([o, m], i) => (o[m] = originals[i]));
    }
    expect(Object.fromEntries(calls), 'GPU objects created and submissions made by a repeated step').toEqual({ submit: 1 });
    expect(dispatchCache(gpu.device).bindGroupCount, 'bind groups after a repeated step').toBe(groups);
    // No clear zeroes the gradients (the backward assigns them): every dispatch shares one pass.
    expect(passes, 'compute passes of one step').toBe(1);
    expectSameBits(await read(gpu, model.grads.all), grads1, 'gradients of a repeated step');
    expectSameBits(await read(gpu, model.params.all), params1, 'parameters after a repeated step');
    model.destroy();
  });
});
