/**
 * The Trainer on real WebGPU: five AdamW steps of the tiny MAE and DMAE (with the lr schedule,
 * and with gradient accumulation and clipping) equal the float64 reference; the loss falls on the
 * procedural dataset; the NaN guard stops at the bad step and restores the last good state; the
 * same seed reproduces bit for bit, another seed does not; a run resumed from getState() and the
 * arenas continues exactly.
 */
import { describe, expect, it } from 'vitest';
import { numPatches, type DistillConfig, type MaeConfig } from '../../src/engine/config';
import { maeConfig } from '../../src/engine/config';
import type { ParamMap } from '../../src/engine/init';
import { dmaeStudentLayout } from '../../src/engine/dmae';
import { readParamMap, uploadParamMap } from '../../src/engine/mae';
import { maeParamLayout } from '../../src/engine/params';
import { lrAt } from '../../src/engine/schedule';
import { MaskingSampler, Trainer, resolveTrainConfig, trainMemoryPlan, type BatchSource, type StepMetrics, type TrainConfig } from '../../src/engine/trainer';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import type { ArenaLayout } from '../../src/gpu/buffers';
import * as refAdamw from '../../src/ref/adamw';
import * as ref from '../../src/ref/model';
import { expectClose, expectSameBits, expectSameParams, randn, testGpu, TOL } from '../helpers';
import { flatten, perturbedParams, tinyConfig, tinyTeacherConfig, unflatten } from '../model-fixtures';

/** A batch source of fresh random images (seeded by call count), with a saveable position. */
class RandomImages implements BatchSource {
  calls = 0;
  constructor(readonly n: number, readonly seed: number) {}
  next() {
    return { x: Float32Array.from(randn(this.n, this.seed + 1000 * this.calls++)), size: 0 };
  }
  getState() {
    return this.calls;
  }
  setState(s: unknown) {
    this.calls = s as number;
  }
}
const source = (cfg: MaeConfig, N: number, seed: number): RandomImages & { next(): { x: Float32Array; size: number } } => {
  const s = new RandomImages(N * cfg.inChans * cfg.imgSize ** 2, seed);
  const next = s.next.bind(s);
  s.next = () => ({ ...next(), size: N });
  return s;
};

async function collect(t: Trainer, until?: number): Promise<StepMetrics[]> {
  const out: StepMetrics[] = [];
  const r = await t.train({ until, onMetrics: (m) => void out.push(m) });
  expect(r.status, r.divergence?.message).toBe('done');
  return out;
}

/**
 * The reference side of a run: the same images, the same masking stream, the same schedule,
 * gradients averaged over k micro-batches, clipped like torch, torch's AdamW.
 */
function referenceRun(
  c: TrainConfig, layout: ArenaLayout, params0: ParamMap, steps: number,
  fwdBwd: (p: ParamMap, imgs: Float64Array, m: ReturnType<MaskingSampler['next']>) => { loss: number; grads: ParamMap; distillLoss?: number },
): { losses: number[]; distill: number[]; gradNorms: number[]; params: ParamMap } {
  const rc = resolveTrainConfig(c);
  const src = source(c.model, c.batch, 7);
  const sampler = new MaskingSampler(c.seed);
  const k = rc.accumSteps, L = numPatches(c.model);
  let p = params0;
  const flatM = new Float64Array(layout.size), flatV = new Float64Array(layout.size);
  const ranges = refAdamw.decayRanges(layout);
  const losses: number[] = [], distill: number[] = [], gradNorms: number[] = [];
  for (let t = 0; t < steps; t++) {
    const g = new Float64Array(layout.size);
    let loss = 0, dist = 0;
    for (let j = 0; j < k; j++) {
      const imgs = Float64Array.from(src.next().x);
      const r = fwdBwd(p, imgs, sampler.next(c.batch, L, rc.visible));
      loss += r.loss / k;
      dist += (r.distillLoss ?? 0) / k;
      const fg = flatten(layout, r.grads);
      for (let i = 0; i < g.length; i++) g[i] += fg[i];
    }
    for (let i = 0; i < g.length; i++) g[i] /= k;
    losses.push(loss);
    distill.push(dist);
    const clip = Float64Array.of(1);
    const norm = new Float64Array(1);
    refAdamw.globalGradNorm(norm, g, layout.size);
    gradNorms.push(norm[0]);
    if (rc.clipGrad !== null) refAdamw.clipCoefficient(clip, norm, rc.clipGrad);
    const flatP = flatten(layout, p);
    refAdamw.adamwStep(flatP, g, flatM, flatV, ranges, clip, layout.size, { lr: lrAt(t, { lr: rc.lr, minLr: rc.minLr, warmupSteps: rc.warmupSteps, totalSteps: rc.totalSteps }), step: t + 1 });
    p = unflatten(layout, flatP);
  }
  return { losses, distill, gradNorms, params: p };
}

describe('Trainer: five AdamW steps through the schedule equal the float64 reference', () => {
  const steps = 5, lr = 1e-3;

  it('tiny MAE (norm_pix, 2 of 4 visible), warmup 2 of 5 then cosine', async () => {
    const gpu = await testGpu();
    const cfg = tinyConfig(3, true);
    const c: TrainConfig = { mode: 'mae', model: cfg, batch: 2, visible: 2, lr, warmupSteps: 2, totalSteps: steps, seed: 3 };
    const layout = maeParamLayout(cfg);
    const params0 = perturbedParams(layout, cfg, 71);
    const want = referenceRun(c, layout, params0, steps, (p, imgs, m) => ref.maeForwardBackward(p, cfg, imgs, m, c.batch));
    const trainer = new Trainer(gpu, c, source(cfg, c.batch, 7), { initialParams: params0 });
    const got = await collect(trainer);
    expect(got.map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    [0, 5e-4, 1e-3, 7.5e-4, 2.5e-4].forEach((x, i) => expect(got[i].lr, `lr of step ${i + 1}`).toBeCloseTo(x, 15));
    expect(Math.abs(want.losses[4] - want.losses[0])).toBeGreaterThan(1e-3); // the steps did something
    expectClose(got.map((m) => m.loss), want.losses, TOL.reduction, 'MAE loss per step');
    expectClose(got.map((m) => m.gradNorm), want.gradNorms, TOL.gradient, 'gradient norm per step');
    // Adam's update is ≈ lr·sign(m/√v): a float32-flipped tiny gradient moves a parameter by ~lr (see mae.test.ts).
    expectSameParams(await trainer.readParams(), want.params, { atol: 3 * lr, rtol: 1e-3 }, 'params after 5 steps:');
    trainer.destroy();
  });

  it('tiny DMAE (L1, student block 0 ↔ teacher block 1): losses and L_dist per step', async () => {
    const gpu = await testGpu();
    const cfg = tinyConfig(3, true), tcfg = tinyTeacherConfig(3);
    const d: DistillConfig = { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' };
    const c: TrainConfig = { mode: 'dmae', model: cfg, teacher: tcfg, distill: d, batch: 2, visible: 2, lr, warmupSteps: 1, totalSteps: steps, seed: 4 };
    const layout = dmaeStudentLayout(cfg, tcfg, d);
    const student0 = perturbedParams(layout, cfg, 81);
    const teacher = perturbedParams(maeParamLayout(tcfg), tcfg, 82);
    const want = referenceRun(c, layout, student0, steps, (p, imgs, m) => ref.dmaeForwardBackward(p, cfg, teacher, tcfg, imgs, m, c.batch, d));
    const trainer = new Trainer(gpu, c, source(cfg, c.batch, 7), { initialParams: student0, teacherParams: teacher });
    const got = await collect(trainer);
    expect(want.distill.every((x) => x > 0)).toBe(true);
    expectClose(got.map((m) => m.loss), want.losses, TOL.reduction, 'DMAE loss per step');
    expectClose(got.map((m) => m.distill![0]), want.distill, TOL.reduction, 'L_dist per step');
    expectSameParams(await trainer.readParams(), want.params, { atol: 3 * lr, rtol: 1e-3 }, 'student after 5 steps:');
    trainer.destroy();
  });

  it('gradient accumulation (3 micro-batches of 2) with clipping at 0.5: the mean gradient, clipped, as the reference', async () => {
    const gpu = await testGpu();
    const cfg = tinyConfig(1, false);
    const c: TrainConfig = { mode: 'mae', model: cfg, batch: 2, accumSteps: 3, maskRatio: 0.5, lr, warmupSteps: 0, totalSteps: steps, clipGrad: 0.5, seed: 5 };
    const layout = maeParamLayout(cfg);
    const params0 = perturbedParams(layout, cfg, 91);
    const want = referenceRun(c, layout, params0, steps, (p, imgs, m) => ref.maeForwardBackward(p, cfg, imgs, m, c.batch));
    const trainer = new Trainer(gpu, c, source(cfg, c.batch, 7), { initialParams: params0 });
    const got = await collect(trainer);
    expect(got[0].gradNorm, 'clipping is active in this test').toBeGreaterThan(0.5);
    expectClose(got.map((m) => m.loss), want.losses, TOL.reduction, 'accumulated loss per step');
    // Adam (and a clip that is always active) hardly sees a constant gradient scale: the norm checks the 1/k.
    expectClose(got.map((m) => m.gradNorm), want.gradNorms, TOL.gradient, 'norm of the averaged gradient per step');
    expectSameParams(await trainer.readParams(), want.params, { atol: 3 * lr, rtol: 1e-3 }, 'params after 5 accumulated steps:');
    trainer.destroy();

    // The same step split over several submits (what a step too big for one Recorder does): the same bits.
    class OnePerSubmit extends Trainer {
      protected override microBatchesPerSubmit(): number {
        return 2;
      }
    }
    const split = new OnePerSubmit(gpu, c, source(cfg, c.batch, 7), { initialParams: params0 });
    expectSameBits(Float32Array.from((await collect(split)).map((m) => m.loss)), Float32Array.from(got.map((m) => m.loss)), 'losses with 2 micro-batches per submit');
    split.destroy();
  });
});

describe('Trainer on the procedural dataset', () => {
  const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
  const shapes = makeShapesDataset({ n: 240, size: 16, channels: 1, seed: 1 });
  const loader = (seed: number) => new DataLoader(shapes, { split: 'train', batchSize: 8, seed });
  const run = (seed: number, over: Partial<TrainConfig> = {}): TrainConfig => ({ mode: 'mae', model: cfg, batch: 8, maskRatio: 0.75, lr: 2e-3, warmupSteps: 5, totalSteps: 50, seed, ...over });

  it('the memory plan before a run is what the model allocates (MAE and DMAE)', async () => {
    const gpu = await testGpu();
    const mae = new Trainer(gpu, run(1), loader(1));
    expect(trainMemoryPlan(mae.config).modelBytes).toBe(mae.model.memoryBytes);
    mae.destroy();
    const tcfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 }, { embedDim: 48, depth: 3, numHeads: 3 });
    const c = run(1, { mode: 'dmae', teacher: tcfg, accumSteps: 2 });
    const dmae = new Trainer(gpu, c, loader(1), { teacherParams: perturbedParams(maeParamLayout(tcfg), tcfg, 1) });
    const plan = trainMemoryPlan(dmae.config);
    expect(plan.modelBytes).toBe(dmae.model.memoryBytes);
    expect(plan.parts['nan-guard-backups']).toBe(6 * dmae.model.layout.bytes);
    expect(plan.totalBytes).toBeGreaterThan(plan.modelBytes);
    dmae.destroy();
  });

  it('the pixel loss falls over 50 steps (tiny MAE, 16×16 gray shapes, batch 8)', async () => {
    const gpu = await testGpu();
    const trainer = new Trainer(gpu, run(11), loader(11));
    const m = await collect(trainer);
    expect(m).toHaveLength(50);
    const mean = (xs: StepMetrics[]) => xs.reduce((a, b) => a + b.pix, 0) / xs.length;
    const first = mean(m.slice(0, 5)), last = mean(m.slice(-10));
    expect(last, `loss of the first 5 steps ${first.toFixed(4)}, of the last 10 ${last.toFixed(4)}`).toBeLessThan(0.8 * first);
    expect(m.every((x) => x.imagesPerSec > 0 && Number.isFinite(x.gradNorm))).toBe(true);
    trainer.destroy();
  });

  it('same seed: bit-identical losses; another seed: different losses', async () => {
    const gpu = await testGpu();
    const losses = async (seed: number) => {
      const t = new Trainer(gpu, run(seed, { totalSteps: 6 }), loader(seed));
      const m = await collect(t);
      t.destroy();
      return Float32Array.from(m.map((x) => x.loss));
    };
    const a = await losses(21), b = await losses(21), c = await losses(22);
    expectSameBits(b, a, 'losses of two runs with seed 21');
    expect([...c].some((x, i) => x !== a[i]), 'seed 22 differs from seed 21').toBe(true);
  });

  it('a run resumed from getState() and the arenas continues bit for bit', async () => {
    const gpu = await testGpu();
    const c = run(31, { totalSteps: 6 });
    const whole = new Trainer(gpu, c, loader(31));
    const all = await collect(whole);
    whole.destroy();

    const first = new Trainer(gpu, c, loader(31));
    await collect(first, 3);
    const state = first.getState();
    expect(state.step).toBe(3);
    const saved = await Promise.all([first.model.params, first.model.adamM, first.model.adamV].map((a) => readParamMap(gpu, a)));
    first.destroy();

    const resumed = new Trainer(gpu, c, loader(999)); // a different loader seed: setState must override it
    resumed.setState(JSON.parse(JSON.stringify(state)));
    [resumed.model.params, resumed.model.adamM, resumed.model.adamV].forEach((a, i) => uploadParamMap(gpu, a, saved[i]));
    const rest = await collect(resumed);
    expect(rest.map((m) => m.step)).toEqual([4, 5, 6]);
    expectSameBits(Float32Array.from(rest.map((m) => m.loss)), Float32Array.from(all.slice(3).map((m) => m.loss)), 'losses of steps 4–6');
    resumed.destroy();
  });

  it('NaN guard: lr 1e6 stops at the bad step, names the loss, and restores the state before it', async () => {
    const gpu = await testGpu();
    const c = run(41, { lr: 1e6, warmupSteps: 0, totalSteps: 30 });
    const t = new Trainer(gpu, c, loader(41));
    const seen: StepMetrics[] = [];
    const r = await t.train({ onMetrics: (m) => void seen.push(m) });
    expect(r.status).toBe('diverged');
    const d = r.divergence!;
    expect(d.restored).toBe(true);
    expect(Number.isFinite(d.value)).toBe(false);
    expect(d.message).toContain(`step ${d.step}`);
    expect(d.message).toMatch(/pixel loss|gradient norm/);
    expect(r.step).toBe(d.step - 1);
    expect(t.step).toBe(d.step - 1);
    expect(seen.map((m) => m.step), 'every good step was reported, the bad one was not').toEqual(Array.from({ length: d.step - 1 }, (_, i) => i + 1));
    const restored = await t.readParams();
    expect(t.getState().source, 'the loader is back to before the bad step').toEqual({ seed: 41, epoch: 0, position: 8 * (d.step - 1) });

    // The last good state is exactly what a same-seed run has after d.step − 1 steps.
    const clean = new Trainer(gpu, c, loader(41));
    if (d.step > 1) await collect(clean, d.step - 1);
    const want = await clean.readParams();
    for (const [name, w] of want) {
      expect([...restored.get(name)!].every(Number.isFinite), `${name} is finite`).toBe(true);
      expectSameBits(Float32Array.from(restored.get(name)!), Float32Array.from(w), `restored ${name}`);
    }
    expectSameBits(await (async () => Float32Array.from(flatten(t.model.layout, await readParamMap(gpu, t.model.adamV))))(),
      Float32Array.from(flatten(clean.model.layout, await readParamMap(gpu, clean.model.adamV))), 'restored AdamW v');
    clean.destroy();
    t.destroy();
  });
});
