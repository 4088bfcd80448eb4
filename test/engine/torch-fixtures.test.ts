/**
 * The tiny MAE and DMAE against PyTorch: test/fixtures/torch/{mae,dmae}.json were written by
 * scripts/torch-fixtures/make_fixtures.py (float64 torch, the method's reference model code)
 * from inputs.json (the same parameters, images and masking ids). No PyTorch is needed here.
 *
 *   float64 reference (src/ref/model.ts + src/ref/adamw.ts) vs torch float64: rtol 1e-9
 *   GPU model (src/engine/mae.ts, dmae.ts) vs torch: TOL.gradient
 * for the loss (and L_pix, L_dist), every parameter gradient, and the losses of 5 AdamW steps.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DistillConfig, MaeConfig } from '../../src/engine/config';
import { DmaeModel, dmaeStudentLayout } from '../../src/engine/dmae';
import type { ParamMap } from '../../src/engine/init';
import { MaeModel } from '../../src/engine/mae';
import { FROZEN, maeParamLayout } from '../../src/engine/params';
import type { ArenaLayout } from '../../src/gpu/buffers';
import { Recorder } from '../../src/gpu/kernels';
import type { Masking } from '../../src/core/masking';
import * as refAdamw from '../../src/ref/adamw';
import * as ref from '../../src/ref/model';
import { TOL, expectClose, randn, run, testGpu, type Tolerance } from '../helpers';
import { flatten, perturbedParams, testMasking, unflatten } from '../model-fixtures';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/torch');
const json = (name: string) => JSON.parse(readFileSync(join(dir, name), 'utf8'));

interface Tensors { [name: string]: { shape: number[]; data: number[] } }
interface MaskingJson { idsKeep: number[]; idsRestore: number[]; mask: number[] }
interface Optimizer { lr: number; steps: number; betas: [number, number]; eps: number; weightDecay: number; decay: string[]; frozen: string[] }
interface CaseInputs { config: MaeConfig; N: number; V: number; L: number; seed: number; imgs: number[]; maskings: MaskingJson[]; optimizer: Optimizer }
interface Inputs {
  mae: CaseInputs & { params: Tensors };
  dmae: CaseInputs & { teacherConfig: MaeConfig; distill: DistillConfig; student: Tensors; teacher: Tensors };
}
interface Fixture {
  torch: string; command: string;
  loss: number; pixLoss?: number; distillLoss?: number; pred?: number[];
  grads: Record<string, number[]>;
  stepLosses: number[]; stepPixLosses?: number[]; stepDistillLosses?: number[];
  paramsAfterSteps: Record<string, number[]>;
}

const inputs: Inputs = json('inputs.json');
const maeFix: Fixture = json('mae.json');
const dmaeFix: Fixture = json('dmae.json');

/** float64 against float64: only the order of the sums differs. */
const F64: Tolerance = { atol: 1e-13, rtol: 1e-9 };
/**
 * The key bias (rows D..2D of attn.qkv.bias) after AdamW steps. Its true gradient is exactly 0
 * (softmax over keys is invariant to q·b_k, the same for every key), so both sides' gradients
 * are rounding noise (~1e-18, checked at F64 above), and Adam divides that noise by
 * √v̂ + eps ≈ eps = 1e-8: each step moves it by ~lr·1e-10 in a noise-determined direction.
 * steps · lr · (1e-17 / 1e-8) = 5e-12 bounds it at 5 steps of lr 1e-3.
 */
const KEY_BIAS_AFTER_STEPS: Tolerance = { atol: 1e-11, rtol: 0 };

const paramMap = (t: Tensors): ParamMap => new Map(Object.entries(t).map(([k, v]) => [k, Float64Array.from(v.data)]));
const maskingOf = (m: MaskingJson): Masking => ({ idsKeep: Uint32Array.from(m.idsKeep), idsRestore: Uint32Array.from(m.idsRestore), mask: Float32Array.from(m.mask) });

/**
 * Every trained tensor equals the fixture; the fixed sin-cos tables (no gradient in torch) must
 * be exactly 0 in `grads` (`frozenZero`) or unchanged from `initial`.
 */
function expectMatchesTorch(
  got: ParamMap, want: Record<string, number[]>, tol: Tolerance, what: string, frozen: { zero: true } | { initial: ParamMap }, keyBiasTol = tol,
): void {
  const trained = [...got.keys()].filter((k) => !FROZEN.has(k)).sort();
  expect(trained, `${what}: the trained tensors are torch's requires_grad parameters`).toEqual(Object.keys(want).sort());
  for (const name of trained) {
    const g = got.get(name)!, w = want[name];
    if (!name.endsWith('.attn.qkv.bias') || keyBiasTol === tol) {
      expectClose(g, w, tol, `${what} ${name}`);
      continue;
    }
    const W = g.length / 3; // rows q, k, v
    expectClose(g.subarray(0, W), w.slice(0, W), tol, `${what} ${name} (q)`);
    expectClose(g.subarray(W, 2 * W), w.slice(W, 2 * W), keyBiasTol, `${what} ${name} (k)`);
    expectClose(g.subarray(2 * W), w.slice(2 * W), tol, `${what} ${name} (v)`);
  }
  for (const name of [...got.keys()].filter((k) => FROZEN.has(k))) {
    expectClose(got.get(name)!, 'zero' in frozen ? new Float64Array(got.get(name)!.length) : frozen.initial.get(name)!, TOL.exact, `${what} ${name} (fixed)`);
  }
}

/** The decay table of the layout is the one torch's decay group used. */
function expectSameDecay(layout: ArenaLayout, o: Optimizer): void {
  expect(layout.entries.filter((e) => refAdamw.decaysByRecipe(e.name, e.shape)).map((e) => e.name)).toEqual(o.decay);
  expect(o.betas).toEqual([refAdamw.ADAMW_DEFAULTS.beta1, refAdamw.ADAMW_DEFAULTS.beta2]);
  expect(o.eps).toBe(refAdamw.ADAMW_DEFAULTS.eps);
  expect(o.weightDecay).toBe(refAdamw.ADAMW_DEFAULTS.weightDecay);
}

/** `steps` reference AdamW steps (torch's order: loss before each update); returns the losses and final parameters. */
function refSteps(layout: ArenaLayout, p0: ParamMap, o: Optimizer, fb: (p: ParamMap, t: number) => { loss: number; grads: ParamMap; pix?: number; distill?: number }) {
  let p = p0;
  const m = new Float64Array(layout.size), v = new Float64Array(layout.size);
  const ranges = refAdamw.decayRanges(layout);
  const losses: number[] = [], pix: number[] = [], distill: number[] = [];
  for (let t = 0; t < o.steps; t++) {
    const r = fb(p, t);
    losses.push(r.loss);
    if (r.pix !== undefined) pix.push(r.pix);
    if (r.distill !== undefined) distill.push(r.distill);
    const flat = flatten(layout, p);
    refAdamw.adamwStep(flat, flatten(layout, r.grads), m, v, ranges, Float64Array.of(1), layout.size, { lr: o.lr, step: t + 1 });
    p = unflatten(layout, flat);
  }
  return { losses, pix, distill, params: p };
}

describe('the torch fixtures', () => {
  it('were made by PyTorch from the inputs the tests use (initParams + perturbation, randn images, testMasking)', () => {
    expect(maeFix.torch).toMatch(/^\d+\.\d+/);
    expect(maeFix.command).toContain('make_fixtures.py');
    // If initParams or the perturbation changes, regenerate: see scripts/torch-fixtures/README.md.
    const { mae, dmae } = inputs;
    const same = (got: ParamMap, want: ParamMap, what: string) => {
      expect([...got.keys()]).toEqual([...want.keys()]);
      for (const [k, w] of want) expectClose(got.get(k)!, w, TOL.exact, `inputs.json is stale: ${what} ${k}`);
    };
    same(paramMap(mae.params), perturbedParams(maeParamLayout(mae.config), mae.config, mae.seed), 'MAE');
    expectClose(mae.imgs, randn(mae.imgs.length, mae.seed + 1), TOL.exact, 'MAE images');
    mae.maskings.forEach((mk, t) => expect(maskingOf(mk), `MAE masking ${t}`).toEqual(testMasking(mae.N, mae.L, mae.V, mae.seed + 2 + t)));
    same(paramMap(dmae.student), perturbedParams(dmaeStudentLayout(dmae.config, dmae.teacherConfig, dmae.distill), dmae.config, dmae.seed), 'DMAE student');
    same(paramMap(dmae.teacher), perturbedParams(maeParamLayout(dmae.teacherConfig), dmae.teacherConfig, dmae.seed + 1), 'DMAE teacher');
    expectClose(dmae.imgs, randn(dmae.imgs.length, dmae.seed + 2), TOL.exact, 'DMAE images');
    dmae.maskings.forEach((mk, t) => expect(maskingOf(mk), `DMAE masking ${t}`).toEqual(testMasking(dmae.N, dmae.L, dmae.V, dmae.seed + 3 + t)));
  });
});

describe('the float64 reference equals PyTorch (float64, rtol 1e-9)', () => {
  const { mae, dmae } = inputs;

  it('MAE: loss, prediction, every gradient; 5 AdamW steps: losses and final parameters', () => {
    const params = paramMap(mae.params), imgs = Float64Array.from(mae.imgs);
    const r = ref.maeForwardBackward(params, mae.config, imgs, maskingOf(mae.maskings[0]), mae.N);
    expectClose([r.loss], [maeFix.loss], F64, 'MAE loss');
    expectClose(r.pred, maeFix.pred!, F64, 'MAE pred');
    expectMatchesTorch(r.grads, maeFix.grads, F64, 'MAE d loss /', { zero: true });

    const layout = maeParamLayout(mae.config);
    expectSameDecay(layout, mae.optimizer);
    const s = refSteps(layout, params, mae.optimizer, (p, t) => ref.maeForwardBackward(p, mae.config, imgs, maskingOf(mae.maskings[t]), mae.N));
    expectClose(s.losses, maeFix.stepLosses, F64, 'MAE loss per AdamW step');
    expectMatchesTorch(s.params, maeFix.paramsAfterSteps, F64, 'MAE parameters after the steps:', { initial: params }, KEY_BIAS_AFTER_STEPS);
  });

  it('DMAE (teacher blocks 0..kT, L1, α = 1): L_pix, L_dist, loss, every student and head gradient; 5 AdamW steps', () => {
    const student = paramMap(dmae.student), teacher = paramMap(dmae.teacher), imgs = Float64Array.from(dmae.imgs);
    const fb = (p: ParamMap, t: number) => {
      const r = ref.dmaeForwardBackward(p, dmae.config, teacher, dmae.teacherConfig, imgs, maskingOf(dmae.maskings[t]), dmae.N, dmae.distill);
      return { ...r, pix: r.pixLoss, distill: r.distillLoss };
    };
    const r = fb(student, 0);
    expectClose([r.pixLoss], [dmaeFix.pixLoss!], F64, 'L_pix');
    expectClose([r.distillLoss], [dmaeFix.distillLoss!], F64, 'L_dist');
    expectClose([r.loss], [dmaeFix.loss], F64, 'DMAE loss');
    expectMatchesTorch(r.grads, dmaeFix.grads, F64, 'DMAE d loss /', { zero: true });

    const layout = dmaeStudentLayout(dmae.config, dmae.teacherConfig, dmae.distill);
    expectSameDecay(layout, dmae.optimizer);
    const s = refSteps(layout, student, dmae.optimizer, fb);
    expectClose(s.losses, dmaeFix.stepLosses, F64, 'DMAE loss per AdamW step');
    expectClose(s.pix, dmaeFix.stepPixLosses!, F64, 'L_pix per AdamW step');
    expectClose(s.distill, dmaeFix.stepDistillLosses!, F64, 'L_dist per AdamW step');
    expectMatchesTorch(s.params, dmaeFix.paramsAfterSteps, F64, 'DMAE student after the steps:', { initial: student }, KEY_BIAS_AFTER_STEPS);
  });
});

describe('the GPU model equals PyTorch (TOL.gradient)', () => {
  const { mae, dmae } = inputs;
  // Parameters after the steps: Adam's update is about lr·sign(m/√v), so float32 rounding of a
  // tiny gradient can flip a step of size lr (as in mae.test.ts); allow a few lr absolute.
  const afterSteps = (lr: number): Tolerance => ({ atol: 3 * lr, rtol: 1e-3 });

  it('MAE: loss, prediction, every gradient; 5 AdamW steps: losses and final parameters', async () => {
    const gpu = await testGpu();
    const params = paramMap(mae.params), imgs = Float32Array.from(mae.imgs), o = mae.optimizer;
    const model = new MaeModel(gpu, mae.config, mae.N, mae.V);
    model.uploadParams(params);
    model.setBatch(imgs, maskingOf(mae.maskings[0]));
    await run(gpu, (rec) => {
      model.recordZeroGrads(rec);
      model.recordForward(rec);
      model.recordBackward(rec);
    });
    expectClose([(await model.readLosses()).loss], [maeFix.loss], TOL.gradient, 'MAE loss');
    expectClose(await model.readPred(), maeFix.pred!, TOL.gradient, 'MAE pred');
    expectMatchesTorch(await model.readGrads(), maeFix.grads, TOL.gradient, 'MAE d loss /', { zero: true });

    model.uploadParams(params);
    model.resetOptimizer();
    const losses: number[] = [];
    for (let t = 0; t < o.steps; t++) {
      model.setBatch(imgs, maskingOf(mae.maskings[t]));
      const rec = new Recorder(gpu);
      model.recordStep(rec, { lr: o.lr, step: t + 1 });
      await rec.submit();
      losses.push((await model.readLosses()).loss);
    }
    expectClose(losses, maeFix.stepLosses, TOL.gradient, 'MAE loss per AdamW step');
    expectMatchesTorch(await model.readParams(), maeFix.paramsAfterSteps, afterSteps(o.lr), 'MAE parameters after the steps:', { initial: params });
    model.destroy();
  });

  it('DMAE: L_pix, L_dist, loss, every student and head gradient; 5 AdamW steps', async () => {
    const gpu = await testGpu();
    const student = paramMap(dmae.student), imgs = Float32Array.from(dmae.imgs), o = dmae.optimizer;
    const model = new DmaeModel(gpu, dmae.config, dmae.teacherConfig, dmae.distill, dmae.N, dmae.V);
    model.uploadParams(student);
    model.uploadTeacher(paramMap(dmae.teacher));
    model.setBatch(imgs, maskingOf(dmae.maskings[0]));
    await run(gpu, (rec) => {
      model.recordZeroGrads(rec);
      model.recordForward(rec);
      model.recordBackward(rec);
    });
    const l = await model.readLosses();
    expectClose([l.pix], [dmaeFix.pixLoss!], TOL.gradient, 'L_pix');
    expectClose([l.distill.reduce((a, b) => a + b, 0)], [dmaeFix.distillLoss!], TOL.gradient, 'L_dist');
    expectClose([l.loss], [dmaeFix.loss], TOL.gradient, 'DMAE loss');
    expectMatchesTorch(await model.readGrads(), dmaeFix.grads, TOL.gradient, 'DMAE d loss /', { zero: true });

    model.uploadParams(student);
    model.resetOptimizer();
    const losses: number[] = [], distill: number[] = [];
    for (let t = 0; t < o.steps; t++) {
      model.setBatch(imgs, maskingOf(dmae.maskings[t]));
      const rec = new Recorder(gpu);
      model.recordStep(rec, { lr: o.lr, step: t + 1 });
      await rec.submit();
      const s = await model.readLosses();
      losses.push(s.loss);
      distill.push(s.distill.reduce((a, b) => a + b, 0));
    }
    expectClose(losses, dmaeFix.stepLosses, TOL.gradient, 'DMAE loss per AdamW step');
    expectClose(distill, dmaeFix.stepDistillLosses!, TOL.gradient, 'L_dist per AdamW step');
    expectMatchesTorch(await model.readParams(), dmaeFix.paramsAfterSteps, afterSteps(o.lr), 'DMAE student after the steps:', { initial: student });
    model.destroy();
  });
});
