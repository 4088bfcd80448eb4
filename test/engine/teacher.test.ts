/**
 * Stopping the teacher early (recipe §2: the teacher runs blocks 0..kT only) changes nothing
 * but the cost: a teacher of depth 4 stopped at kT = 1 and the same teacher run through all 4
 * blocks (DmaeOptions.teacherRunThrough) give bit-identical T_kT, distillation loss, gradients
 * and AdamW update, and the full run records more dispatches (the timing is in bench/train.ts).
 */
import { describe, expect, it } from 'vitest';
import { numPatches, type DistillConfig } from '../../src/engine/config';
import { DmaeModel, dmaeStudentLayout } from '../../src/engine/dmae';
import { addBlockActs, blockActs, recordBlockBackward, recordBlockForward } from '../../src/engine/mae';
import { maeParamLayout } from '../../src/engine/params';
import { Arena, ArenaLayout } from '../../src/gpu/buffers';
import type { Gpu } from '../../src/gpu/device';
import { Recorder } from '../../src/gpu/kernels';
import * as ref from '../../src/ref/model';
import { TOL, expectClose, expectSameBits, randn, read, testGpu } from '../helpers';
import { perturbedParams, testMasking, tinyConfig } from '../model-fixtures';

const cfg = tinyConfig(3, true);
/** A tiny teacher of depth 4 (width 12, 3 heads). */
const tcfg = tinyConfig(3, true, { embedDim: 12, depth: 4, numHeads: 3 });
const d: DistillConfig = { pairs: [{ studentBlock: 1, teacherBlock: 1 }], alpha: 1, kind: 'l1' };
const N = 2, V = 2, L = numPatches(cfg);
const student = perturbedParams(dmaeStudentLayout(cfg, tcfg, d), cfg, 71);
const teacher = perturbedParams(maeParamLayout(tcfg), tcfg, 72); // a whole MAE checkpoint
const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, 73);
const masking = testMasking(N, L, V, 74);

function makeModel(gpu: Gpu, teacherRunThrough?: number): DmaeModel {
  const model = new DmaeModel(gpu, cfg, tcfg, d, N, V, teacherRunThrough === undefined ? {} : { teacherRunThrough });
  model.uploadParams(student);
  model.uploadTeacher(teacher);
  model.setBatch(Float32Array.from(imgs), masking);
  return model;
}

/** Records with `body`, submits, waits; returns the dispatch count. */
async function counted(gpu: Gpu, body: (rec: Recorder) => void): Promise<number> {
  const rec = new Recorder(gpu);
  body(rec);
  await rec.submit();
  return rec.dispatchCount;
}

describe('a teacher stopped at kT vs the same teacher run through all its blocks', () => {
  it('same T_kT, L_dist, gradients and update, bit for bit; the full run does more work', async () => {
    const gpu = await testGpu();
    const partial = makeModel(gpu); // stops at teacherStopBlock(d) = 1
    const full = makeModel(gpu, tcfg.depth - 1); // runs blocks 0..3, distils from block 1
    expect(partial.teacherStop).toBe(1);
    expect(full.teacherStop).toBe(3);
    expect(full.teacherParams.layout.size, 'the full teacher holds all its blocks').toBeGreaterThan(partial.teacherParams.layout.size);

    const forwardBackward = (m: DmaeModel) => (rec: Recorder) => {
      m.recordZeroGrads(rec);
      m.recordForward(rec);
      m.recordBackward(rec);
    };
    const nPartial = await counted(gpu, forwardBackward(partial));
    const nFull = await counted(gpu, forwardBackward(full));

    // The loss and everything downstream of T_kT: the same bits.
    expectSameBits(await read(gpu, full.teacherFeature(1)), await read(gpu, partial.teacherFeature(1)), 'T_kT');
    const lossP = await partial.readLosses(), lossF = await full.readLosses();
    expect(lossP.distill[0]).toBeGreaterThan(0);
    expectSameBits(await read(gpu, full.io.tensor('loss.distill.0')), await read(gpu, partial.io.tensor('loss.distill.0')), 'L_dist');
    expectSameBits(await read(gpu, full.io.tensor('loss.pix')), await read(gpu, partial.io.tensor('loss.pix')), 'L_pix');
    expectSameBits(await read(gpu, full.grads.all), await read(gpu, partial.grads.all), 'student and head gradients');
    // And both are the float64 reference's (which stops at kT), to the golden test's tolerance.
    const want = ref.dmaeForwardBackward(student, cfg, teacher, tcfg, imgs, masking, N, d);
    expectClose([lossF.distill[0]], [want.distillLoss], TOL.reduction, 'L_dist (full teacher) vs reference');
    expectClose([lossF.loss], [want.loss], TOL.reduction, 'loss (full teacher) vs reference');

    // The full run really ran blocks 2 and 3: block 3's output lands in the second residual
    // buffer (block 0 → xa, 1 → feat.1, 2 → xa, 3 → xb), which the partial run never writes.
    const xbFull = await read(gpu, full.teacherActs.tensor('xb')), xbPartial = await read(gpu, partial.teacherActs.tensor('xb'));
    expect(xbFull.some((v) => v !== 0), 'block 3 output written by the full teacher').toBe(true);
    expect(xbPartial.every((v) => v === 0), 'the stopped teacher never reaches block 2').toBe(true);

    // Work: the teacher's forward alone, and the whole forward/backward.
    const tPartial = await counted(gpu, (rec) => partial.recordForwardTeacher(rec));
    const tFull = await counted(gpu, (rec) => full.recordForwardTeacher(rec));
    // The full teacher runs exactly two blocks more (4 vs 2), each the same work; how many
    // dispatches a block and the embedding take depends on the matmul variant (vec4 adds transposes).
    const perBlock = (tFull - tPartial) / 2;
    expect(Number.isInteger(perBlock), 'the two extra blocks dispatch the same').toBe(true);
    expect(perBlock, 'dispatches of one teacher block').toBeGreaterThanOrEqual(8);
    // What is left of either run once its blocks are taken away (the same for both, by perBlock's
    // definition): the embedding of the visible patches (linear, + cls and pos) — a few dispatches.
    const embedding = tPartial - 2 * perBlock;
    expect(embedding, 'embedding of the visible patches (linear, + cls and pos)').toBeGreaterThanOrEqual(2);
    expect(embedding, 'embedding of the visible patches (linear, + cls and pos)').toBeLessThanOrEqual(6);
    expect(nFull - nPartial, 'the step differs by the teacher blocks after kT only').toBe(tFull - tPartial);

    // A whole training step (AdamW included) from the same state: the same new parameters.
    for (const m of [partial, full]) {
      m.uploadParams(student);
      m.resetOptimizer();
      await counted(gpu, (rec) => m.recordStep(rec, { lr: 1e-3, step: 1 }));
    }
    expectSameBits(await read(gpu, full.params.all), await read(gpu, partial.params.all), 'student after one AdamW step');
    partial.destroy();
    full.destroy();
  });

  it('teacherRunThrough must lie between kT and the last block', async () => {
    const gpu = await testGpu();
    expect(() => new DmaeModel(gpu, cfg, tcfg, d, N, V, { teacherRunThrough: 0 })).toThrow(/teacherRunThrough = 0 must be an integer in \[1, 3\]/);
    expect(() => new DmaeModel(gpu, cfg, tcfg, d, N, V, { teacherRunThrough: 4 })).toThrow(/teacherRunThrough = 4/);
  });
});

describe("the teacher's Linear weights, K-major once", () => {
  it('hold Wᵀ of the patch embedding and every block Linear up to the stop block, and the frozen forward transposes none of them', async () => {
    const gpu = await testGpu();
    const model = makeModel(gpu);
    const copies = model.teacherWeightsT.arena;
    const names = copies.layout.entries.map((e) => e.name);
    expect(names).toEqual(['patch_embed.proj.weight', ...[0, 1].flatMap((i) => ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2'].map((l) => `blocks.${i}.${l}.weight`))]);
    for (const e of copies.layout.entries) {
      const [inF, out] = e.shape;
      const w = await read(gpu, model.teacherParams.tensor(e.name)), wT = await read(gpu, copies.tensor(e.name));
      const want = new Float32Array(inF * out);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) want[i * out + o] = w[o * inF + i];
      expectSameBits(wT, want, `${e.name}ᵀ`);
    }
    // The teacher's products read their weights as stored ('nn'): none is an 'nt' product, nothing is transposed.
    const recorded: string[] = [];
    const rec = new (class extends Recorder {
      override dispatch(...args: Parameters<Recorder['dispatch']>): void {
        const c = args[0].constants ?? {};
        recorded.push(args[0].entry.startsWith('matmul_') ? (c.TRANS_A ? 'tn' : c.TRANS_B ? 'nt' : 'nn') : args[0].entry);
        super.dispatch(...args);
      }
    })(gpu);
    model.recordForwardEncoder(rec);
    const before = recorded.length;
    model.recordForwardTeacher(rec);
    rec.discard();
    const teacher = recorded.slice(before);
    expect(teacher.filter((l) => l === 'nn')).toHaveLength(9); // the patch embedding, 4 Linears × blocks 0..1
    expect(teacher.filter((l) => l === 'nt' || l.startsWith('transpose'))).toEqual([]);
    model.destroy();
  });
});

describe('a frozen block keeps nothing for a backward', () => {
  it("its workspace has no geluGrad (the teacher's arena is smaller by it); its backward, and a trainable forward on it, refuse", async () => {
    const gpu = await testGpu();
    const [N, T, W, heads, hidden] = [2, 5, 8, 2, 32];
    const frozen = new ArenaLayout(), trainable = new ArenaLayout();
    addBlockActs(frozen, 'blk', N, T, W, heads, hidden, true);
    addBlockActs(trainable, 'blk', N, T, W, heads, hidden);
    expect(frozen.has('blk.geluGrad')).toBe(false);
    expect(trainable.has('blk.geluGrad')).toBe(true);
    expect(trainable.size - frozen.size).toBe(N * T * hidden);
    const arena = new Arena(gpu.device, frozen, 'frozen-block');
    try {
      const A = blockActs(arena, 'blk');
      expect(A.geluGrad).toBeUndefined();
      const t = arena.tensor('blk.ln1');
      const rec = new Recorder(gpu);
      expect(() => recordBlockBackward(rec, { dres: t, dln: t, dattn: t, dqkv: t, dh: t }, () => t, () => t, A, t, { N, T, W, heads, hidden })).toThrow(/frozen.*no backward/);
      expect(() => recordBlockForward(rec, t, A, () => t, t, { N, T, W, heads, hidden })).toThrow(/needs geluGrad/);
      rec.discard();
    } finally {
      arena.destroy();
    }
  });
});
