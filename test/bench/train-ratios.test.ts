/**
 * The pieces of the train benchmark (bench/train.ts) that its ratios rest on: attention's FLOPs
 * read from a dispatch's params, the FLOP count of a dry recording (against the textbook count on
 * a tiny model, and the same dispatches as a real recording), the teacher-block sweep, the
 * least-squares line, and the targets report.
 */
import { describe, expect, it } from 'vitest';
import { numPatches, type DistillConfig } from '../../src/engine/config';
import { DmaeModel } from '../../src/engine/dmae';
import { MaeModel } from '../../src/engine/mae';
import { attentionDispatchFlops, countFlops } from '../../bench/lib';
import { TRAIN_TARGETS, fitLine, teacherBlocksSweep, trainTargets } from '../../bench/train';
import { collectMatmulShapes } from '../../src/gpu/autotune';
import { Recorder } from '../../src/gpu/kernels';
import { acquireNodeGpu } from '../../src/gpu/node-device';
import { collectFamilyShapes, variantInUse } from '../../src/gpu/variant-choices';
import { testGpu } from '../helpers';
import { tinyConfig } from '../model-fixtures';

describe('attentionDispatchFlops', () => {
  const [B, T, H, hd] = [3, 5, 2, 7];
  const p = [B, T, H, hd, { f32: hd ** -0.5 }, 0, 0, 0];
  const at = (entry: string) => attentionDispatchFlops({ shader: 'attention', entry }, p);
  it('4·B·H·T²·hd for the forward, 8·B·H·T²·hd for the backward', () => {
    expect(at('attention_scores') + at('attention_weighted_sum')).toBe(4 * B * H * T * T * hd);
    expect(at('attention_backward_scores') + at('attention_backward_qkv')).toBe(8 * B * H * T * T * hd);
  });
  it("the same for the subgroup variants (shaders/attention_subgroups.wgsl: 'subgroup' and the *_quads entry points)", () => {
    for (const entry of ['attention_scores', 'attention_weighted_sum', 'attention_backward_scores', 'attention_backward_qkv']) {
      expect(attentionDispatchFlops({ shader: 'attention_subgroups', entry, constants: { SG_WG: 8 } }, p)).toBe(at(entry));
      expect(attentionDispatchFlops({ shader: 'attention_subgroups', entry: `${entry}_quads`, constants: { SG_WG: 8, ROWS: 8 } }, p)).toBe(at(entry));
    }
  });
  it('nothing for other shaders; an unknown attention entry point throws', () => {
    expect(attentionDispatchFlops({ shader: 'matmul', entry: 'matmul_tiled' }, [4, 5, 6, 0])).toBe(0);
    expect(() => at('attention_fused')).toThrow(/attention_fused.*ATTENTION_MACS/);
  });
});

describe('countFlops (a dry recording)', () => {
  it("a MAE step: attention 12·N·T²·W per block (encoder T = 1+V, decoder T = 1+L); the teacher's forward grows by one block's count per block", async () => {
    const gpu = await testGpu();
    const cfg = tinyConfig(3, true);
    const tcfg = tinyConfig(3, true, { embedDim: 12, depth: 4, numHeads: 3 });
    const N = 2, V = 3, L = numPatches(cfg);
    const mae = new MaeModel(gpu, cfg, N, V);
    const models: DmaeModel[] = [];
    try {
      const step = countFlops(gpu, (rec) => mae.recordStep(rec, { lr: 1e-3, step: 1 }));
      const wantAttention = 12 * N * (cfg.depth * (1 + V) ** 2 * cfg.embedDim + cfg.decoderDepth * (1 + L) ** 2 * cfg.decoderEmbedDim);
      expect(step.attention).toBe(wantAttention);
      expect(step.matmul).toBeGreaterThan(0);
      expect(step.total).toBe(step.matmul + step.attention);

      // The dry recording dispatches what a real one does.
      const rec = new Recorder(gpu);
      mae.recordStep(rec, { lr: 1e-3, step: 1 });
      rec.discard();
      expect(step.dispatches).toBe(rec.dispatchCount);

      // Teacher forward through b blocks: patch embedding of the N·V visible patches, then per
      // block qkv, proj, fc1, fc2 (2·R·W·(3W + W + 2·hidden)) and attention (4·N·T²·W).
      const T = 1 + V, R = N * T, W = tcfg.embedDim, hidden = tcfg.mlpRatio * W, K = tcfg.inChans * tcfg.patchSize ** 2;
      const perBlock = 2 * R * W * (4 * W + 2 * hidden) + 4 * N * T * T * W;
      for (let b = 1; b <= tcfg.depth; b++) {
        const d: DistillConfig = { pairs: [{ studentBlock: 0, teacherBlock: b - 1 }], alpha: 1, kind: 'l1' };
        const m = new DmaeModel(gpu, cfg, tcfg, d, N, V);
        models.push(m);
        const f = countFlops(gpu, (r) => m.recordForwardTeacher(r));
        expect(f.total, `${b} blocks`).toBe(2 * N * V * K * W + b * perBlock);
      }
    } finally {
      mae.destroy();
      for (const m of models) m.destroy();
    }
  });
});

describe('countFlops fixes nothing', () => {
  it("a count made before tuning leaves the step's layer-norm and attention classes free (a real recording fixes them)", async () => {
    const gpu = await acquireNodeGpu(); // its own device: no class is fixed on it yet
    const mae = new MaeModel(gpu, tinyConfig(3, true), 2, 3);
    try {
      const step = (rec: Recorder) => mae.recordStep(rec, { lr: 1e-3, step: 1 });
      const { shapes } = collectFamilyShapes(() => collectMatmulShapes(gpu, step));
      const classes = [...shapes].flatMap(([family, byClass]) => [...byClass.keys()].map((cls) => [family, cls] as const));
      expect(classes.map(([f]) => f).sort()).toEqual(expect.arrayContaining(['attention', 'layernorm']));
      countFlops(gpu, step);
      for (const [family, cls] of classes) expect(variantInUse(gpu, family, cls), `${family} ${cls} after countFlops`).toBeUndefined();
      const rec = new Recorder(gpu);
      step(rec);
      rec.discard();
      for (const [family, cls] of classes) expect(variantInUse(gpu, family, cls), `${family} ${cls} after a real recording`).toBeDefined();
    } finally {
      mae.destroy();
      gpu.destroy();
    }
  });
});

describe('teacherBlocksSweep', () => {
  it('1, ¼, ½, ¾ and all blocks, with the stopped teacher', () => {
    expect(teacherBlocksSweep(12, 8)).toEqual([1, 3, 6, 9, 12]);
    expect(teacherBlocksSweep(12, 4)).toEqual([1, 3, 5, 6, 9, 12]);
    expect(teacherBlocksSweep(4, 2)).toEqual([1, 2, 3, 4]);
    expect(teacherBlocksSweep(1, 0)).toEqual([1]);
  });
});

describe('fitLine', () => {
  it('an exact line: its slope and intercept, R² 1, no residual', () => {
    const f = fitLine([1, 3, 6, 9, 12], [1, 3, 6, 9, 12].map((x) => 5 + 2 * x));
    expect(f.slope).toBeCloseTo(2, 12);
    expect(f.intercept).toBeCloseTo(5, 12);
    expect(f.r2).toBeCloseTo(1, 12);
    expect(f.worstRelativeResidual).toBeLessThan(1e-12);
  });
  it('a worked example: (0,1), (1,3), (2,2) → y = 1.5 + 0.5x, R² 0.25, worst residual |1 − 1.5| / 1', () => {
    const f = fitLine([0, 1, 2], [1, 3, 2]);
    expect(f.slope).toBeCloseTo(0.5, 12);
    expect(f.intercept).toBeCloseTo(1.5, 12);
    // SS_tot = 2, SS_res = 0.25 + 1 + 0.25 = 1.5
    expect(f.r2).toBeCloseTo(0.25, 12);
    expect(f.worstRelativeResidual).toBeCloseTo(0.5, 12); // residuals −0.5, 1, −0.5 over y = 1, 3, 2
  });
  it('needs two distinct x', () => {
    expect(() => fitLine([2, 2], [1, 3])).toThrow(/two needed/);
  });
});

describe('trainTargets', () => {
  const ratios = {
    'dmae_vs_mae_step_time_over_flops_m0.75': 0.8, 'dmae_vs_mae_step_time_over_flops_passmin_m0.75': 0.95,
    'dmae_vs_mae_step_time_over_flops_m0.98': 1.2, 'dmae_vs_mae_step_time_over_flops_passmin_m0.98': 1.15,
    'teacher_forward_linearity_m0.75': 0.97, 'teacher_forward_linearity_passmin_m0.75': 0.99,
    'teacher_forward_linearity_m0.98': 0.999, 'teacher_forward_linearity_passmin_m0.98': 0.98,
    'dmae_vs_kd_full_image_step_time_m0.75': 0.36, 'dmae_vs_kd_full_image_step_time_passmin_m0.75': 0.35,
  } as Record<string, number>;
  it('reads the passmin figures when asked, the medians alongside, and is met only at every ratio', () => {
    const t = trainTargets(ratios, [0.75, 0.98], true);
    expect(t.dmae_vs_mae_step_time_over_flops.perRatio['0.75']).toEqual({ measured: 0.95, measuredMedian: 0.8, met: true, metMedian: false });
    expect(t.dmae_vs_mae_step_time_over_flops.perRatio['0.98'].met).toBe(false);
    expect(t.dmae_vs_mae_step_time_over_flops.met).toBe(false);
    expect(t.teacher_forward_linearity.met).toBe(true); // 0.98 is at the threshold
    expect(t.teacher_forward_linearity.metMedian, '0.97 at 0.75 by the medians').toBe(false);
    expect(t.teacher_forward_linearity.statistic).toBe('passmin');
    expect(t.dmae_vs_kd_full_image_step_time.perRatio['0.75'].met).toBe(true);
    expect(t.dmae_vs_kd_full_image_step_time.met, 'not measured at 0.98').toBeNull();
  });
  it('the medians when there are no timestamps', () => {
    const t = trainTargets(ratios, [0.75], false);
    expect(t.teacher_forward_linearity.perRatio['0.75']).toEqual({ measured: 0.97, measuredMedian: 0.97, met: false, metMedian: false });
    expect(t.dmae_vs_kd_full_image_step_time.met).toBe(false);
    expect(t.teacher_forward_linearity.target).toContain(`${TRAIN_TARGETS.teacher_forward_linearity.min}`);
  });
});
