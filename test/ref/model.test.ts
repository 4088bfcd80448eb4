/**
 * The float64 reference of the whole MAE and DMAE against finite differences: the loss's
 * gradient w.r.t. a sample of every trainable tensor of the parameter table.
 */
import { describe, expect, it } from 'vitest';
import { numPatches } from '../../src/engine/config';
import type { ParamMap } from '../../src/engine/init';
import { FROZEN, addEncoderParams, addProjectionParams, maeParamLayout } from '../../src/engine/params';
import { ArenaLayout } from '../../src/gpu/buffers';
import * as ref from '../../src/ref/model';
import { checkGradients, randn } from '../helpers';
import { perturbedParams, testMasking, tinyConfig, tinyTeacherConfig } from '../model-fixtures';

const masking = testMasking;

/** FD over every trainable tensor; `loss` must read the tensors of `params` (mutated in place). */
function checkAll(params: ParamMap, grads: ParamMap, loss: () => number, skip: (name: string) => boolean = () => false): void {
  const inputs: Record<string, Float64Array> = {};
  const analytic: Record<string, Float64Array> = {};
  for (const [name, t] of params) {
    if (FROZEN.has(name) || skip(name)) continue;
    inputs[name] = t;
    analytic[name] = grads.get(name)!;
  }
  checkGradients(inputs, () => loss(), analytic, { maxPerInput: 12, tol: { atol: 1e-8, rtol: 1e-5 } });
}

describe('reference MAE: whole-model gradients vs finite differences', () => {
  for (const [C, normPix, V] of [[3, true, 2], [3, false, 2], [1, true, 1], [1, false, 3]] as const) {
    it(`C=${C} norm_pix=${normPix} visible=${V} of 4`, () => {
      const cfg = tinyConfig(C, normPix);
      const N = 2, L = numPatches(cfg);
      const params = perturbedParams(maeParamLayout(cfg), cfg, 7 + C);
      const imgs = randn(N * C * 8 * 8, 3);
      const m = masking(N, L, V, 5);
      const { loss, grads } = ref.maeForwardBackward(params, cfg, imgs, m, N);
      expect(loss).toBeCloseTo(ref.maeLoss(params, cfg, imgs, m, N), 12);
      for (const name of FROZEN) expect(grads.get(name)!.every((g) => g === 0), `${name} is frozen`).toBe(true);
      checkAll(params, grads, () => ref.maeLoss(params, cfg, imgs, m, N));
    });
  }
});

describe('reference DMAE: student gradients through the distillation term', () => {
  for (const kind of ['l1', 'l2'] as const) {
    it(`${kind}, teacher width 12 depth 3 stopped at block 1, student block 0, α = 0.7`, () => {
      const cfg = tinyConfig(3, true);
      const tcfg = tinyTeacherConfig(3);
      const d: ref.DistillConfig = { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 0.7, kind };
      const N = 2, L = numPatches(cfg);
      const slayout = maeParamLayout(cfg);
      addProjectionParams(slayout, cfg.embedDim, tcfg.embedDim, d.pairs.length);
      const tlayout = new ArenaLayout();
      addEncoderParams(tlayout, tcfg, ref.teacherStopBlock(d));
      const student = perturbedParams(slayout, cfg, 21);
      const teacher = perturbedParams(tlayout, tcfg, 22);
      const imgs = randn(N * 3 * 8 * 8, 4);
      const m = masking(N, L, 2, 6);
      const res = ref.dmaeForwardBackward(student, cfg, teacher, tcfg, imgs, m, N, d);
      expect(res.distillLoss).toBeGreaterThan(0);
      expect(res.loss).toBeCloseTo(res.pixLoss + 0.7 * res.distillLoss, 12);
      // The heads' gradients come only from L_dist, block 0's partly: both must be right.
      checkAll(student, res.grads, () => ref.dmaeLoss(student, cfg, teacher, tcfg, imgs, m, N, d));
    });
  }

  it('a teacher stopped at kT gives the same features as the full teacher', () => {
    const tcfg = tinyTeacherConfig(3);
    const full = perturbedParams(maeParamLayout(tcfg), tcfg, 31);
    const m = masking(2, 4, 2, 8);
    const imgs = randn(2 * 3 * 64, 9);
    const partial = ref.forwardEncoder(full, tcfg, imgs, m.idsKeep, 2, { featureBlocks: [1], stopAfterBlock: 1 });
    const whole = ref.forwardEncoder(full, tcfg, imgs, m.idsKeep, 2, { featureBlocks: [1] });
    expect(partial.latent).toBeNull();
    expect(partial.features.get(1)).toEqual(whole.features.get(1));
  });
});
