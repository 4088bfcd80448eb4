import { describe, expect, it, type TestContext } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/loss';
import * as ref from '../../src/ref/loss';
import { patchifyTarget as gpuPatchifyTarget } from '../../src/gpu/ops/patch';
import { patchifyTarget as refPatchifyTarget } from '../../src/ref/patch';
import type { DistillVariant } from '../../src/gpu/ops/loss';
import { GpuError, type Gpu } from '../../src/gpu/device';
import { Recorder } from '../../src/gpu/kernels';
import {
  checkGradients, expectClose, expectSameBits, gpuTensor, permutation, randn, read, run, sameBits, scaledTol, testGpu, testGpuForVariant, TOL, REDUCTION_VARIANTS,
} from '../helpers';

/** MAE's mask [N·L] as f32: per image, `lenKeep` random patches visible (0), the rest masked (1). */
function makeMask(N: number, L: number, lenKeep: number, seed: number): Float64Array {
  const mask = new Float64Array(N * L).fill(1);
  for (let n = 0; n < N; n++) {
    const ids = permutation(L, seed + n);
    for (let k = 0; k < lenKeep; k++) mask[n * L + ids[k]] = 0;
  }
  return mask;
}

/** A mask with exactly one masked patch in the whole batch (Σmask = 1). */
function oneMasked(N: number, L: number, at: number): Float64Array {
  const mask = new Float64Array(N * L);
  mask[at] = 1;
  return mask;
}

// [name, N, L, P, lenKeep]. mae_patch_loss takes 64 patches (one per thread) to a workgroup: 8·64
// rows are 8 workgroups; 65535·64 + 100 rows need a second row of the 2-D grid.
const MAE_CASES: Array<[string, number, number, number, number]> = [
  ['tiny', 1, 2, 3, 1],
  ['odd', 3, 7, 13, 2],
  ['one masked patch per image', 3, 9, 5, 8],
  ['one visible patch per image (L−1 masked)', 4, 16, 48, 1],
  ['realistic 8×64 patches of 4×4×3, 75% masked (8 workgroups)', 8, 64, 48, 16],
  ['16×16×3 patches, 14×14 grid, 75% masked', 2, 196, 768, 49],
  ['odd P above a workgroup, odd rows across workgroups', 5, 29, 301, 3],
];

/**
 * The raw target [N·L, P] as an image that patchifyTarget with p = 1 turns back into it: each
 * patch is one pixel with P channels, img[N, C = P, H = 1, W = L]. So any (L, P), odd ones
 * included, can take the step's norm_pix path (patchify_target_norm).
 */
function targetAsImage(target: Float64Array, N: number, L: number, P: number): Float64Array {
  const img = new Float64Array(N * L * P);
  for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) for (let c = 0; c < P; c++) img[(n * P + c) * L + l] = target[(n * L + l) * P + c];
  return img;
}

/** The MAE loss on the GPU; with normPix the target is standardised as the step does it (patchifyTarget's normPix). */
async function maeOnGpu(gpu: Gpu, pred: Float64Array, target: Float64Array, mask: Float64Array, N: number, L: number, P: number, normPix: boolean, dloss: number) {
  const t = { pred: gpuTensor(gpu, pred), mask: gpuTensor(gpu, mask) };
  // norm_pix: the raw target goes in as an image, the standardised one comes out of patchify.
  const img = normPix ? gpuTensor(gpu, targetAsImage(target, N, L, P)) : undefined;
  const tgt = gpuTensor(gpu, normPix ? randn(N * L * P, 89) : target); // with norm_pix, "=" must overwrite
  const loss = gpuTensor(gpu, randn(2, 90)); // non-zero starts: "=" must overwrite
  const lpp = gpuTensor(gpu, randn(N * L, 91));
  const dpred = gpuTensor(gpu, randn(N * L * P, 92));
  await run(gpu, (rec) => {
    if (img) gpuPatchifyTarget(rec, tgt, img, N, P, 1, L, 1, true);
    gpuOps.maeLossForward(rec, loss, lpp, t.pred, tgt, t.mask, N, L, P);
    gpuOps.maeLossBackward(rec, dpred, t.pred, tgt, t.mask, loss, N, L, P, dloss);
  });
  return { loss: await read(gpu, loss), lpp: await read(gpu, lpp), dpred: await read(gpu, dpred), normed: await read(gpu, tgt) };
}

function maeOnRef(pred: Float64Array, target: Float64Array, mask: Float64Array, N: number, L: number, P: number, normPix: boolean, dloss: number) {
  let tgt = target;
  if (normPix) {
    tgt = new Float64Array(N * L * P);
    ref.normalizePixelTargets(tgt, target, N * L, P);
  }
  const loss = new Float64Array(2), lpp = new Float64Array(N * L), dpred = new Float64Array(N * L * P);
  ref.maeLossForward(loss, lpp, pred, tgt, mask, N, L, P);
  ref.maeLossBackward(dpred, pred, tgt, mask, loss, N, L, P, dloss);
  return { loss, lpp, dpred, normed: tgt };
}

/** Checks a GPU MAE loss run against the reference: per-patch loss, (loss, Σmask), dpred. */
function expectMaeClose(got: Awaited<ReturnType<typeof maeOnGpu>>, want: ReturnType<typeof maeOnRef>, what: string): void {
  expectClose(got.lpp, want.lpp, TOL.reduction, `${what}: loss per patch`);
  expectClose(got.loss.subarray(0, 1), want.loss.subarray(0, 1), TOL.reduction, `${what}: loss`);
  expect(got.loss[1], `${what}: Σmask (a sum of 0s and 1s, exact in float32)`).toBe(want.loss[1]);
  expectClose(got.dpred, want.dpred, scaledTol(want.dpred, TOL.gradient), `${what}: dpred`);
}

describe('MAE masked MSE (GPU vs float64 reference)', () => {
  for (const normPix of [false, true]) {
    for (const [name, N, L, P, lenKeep] of MAE_CASES) {
      it(`${name} N=${N} L=${L} P=${P} keep=${lenKeep}${normPix ? ', norm_pix' : ''}`, async () => {
        const gpu = await testGpu();
        // Pixels in [0, 3) with an offset per patch, so norm_pix has a mean to remove.
        const target = randn(N * L * P, 1, 1.5).map((v, i) => Math.fround(v + 1.5 + 0.01 * Math.floor(i / P)));
        const pred = randn(N * L * P, 2);
        const mask = makeMask(N, L, lenKeep, 3);
        const dloss = 0.7;
        const got = await maeOnGpu(gpu, pred, target, mask, N, L, P, normPix, dloss);
        const want = maeOnRef(pred, target, mask, N, L, P, normPix, dloss);
        if (normPix) expectClose(got.normed, want.normed, TOL.reduction, 'norm_pix targets');
        expectMaeClose(got, want, name);
      });
    }
  }

  it('one masked patch in the whole batch (Σmask = 1), in the last of 8 workgroups', async () => {
    const gpu = await testGpu();
    const [N, L, P] = [8, 64, 48];
    const target = randn(N * L * P, 4), pred = randn(N * L * P, 5);
    const mask = oneMasked(N, L, N * L - 3);
    const got = await maeOnGpu(gpu, pred, target, mask, N, L, P, false, 1);
    const want = maeOnRef(pred, target, mask, N, L, P, false, 1);
    expectMaeClose(got, want, 'one masked patch');
    expect(got.dpred.filter((v) => v !== 0).length, 'only the masked patch has a gradient').toBeLessThanOrEqual(P);
  });

  it('rows beyond 65535 workgroups of 64 patches (2-D grid), P = 1', async () => {
    const gpu = await testGpu();
    const [N, L, P] = [1, 65535 * 64 + 100, 1];
    const target = randn(N * L * P, 6), pred = randn(N * L * P, 7);
    const mask = Float64Array.from(randn(N * L, 8), (v) => (v > -0.5 ? 1 : 0)); // about 75% masked
    mask[N * L - 1] = 1; // the last patch, on the grid's second row, counts
    pred[N * L - 1] = 2000; // and dominates the sum: a partial lost from the grid's second row would show
    const got = await maeOnGpu(gpu, pred, target, mask, N, L, P, false, 1);
    const want = maeOnRef(pred, target, mask, N, L, P, false, 1);
    expectMaeClose(got, want, '4.2 M patches');
  });

  it('Σmask = 0 (nothing masked) gives NaN loss and NaN gradients, as PyTorch', async () => {
    const gpu = await testGpu();
    const [N, L, P] = [2, 16, 12];
    const target = randn(N * L * P, 9), pred = randn(N * L * P, 10), mask = new Float64Array(N * L);
    const got = await maeOnGpu(gpu, pred, target, mask, N, L, P, false, 1);
    const want = maeOnRef(pred, target, mask, N, L, P, false, 1);
    expect(Number.isNaN(want.loss[0]) && want.dpred.every(Number.isNaN), 'reference: 0/0').toBe(true);
    expect(got.loss[1]).toBe(0);
    expect(Number.isNaN(got.loss[0]), `loss ${got.loss[0]}`).toBe(true);
    expect(got.dpred.every(Number.isNaN), 'dpred all NaN').toBe(true);
    expectClose(got.lpp, want.lpp, TOL.reduction, 'loss per patch (still defined)');
  });

  it('rejects a loss view of one element (the backward needs Σmask in element 1)', async () => {
    const gpu = await testGpu();
    const t = gpuTensor(gpu, 64);
    await expect(run(gpu, (rec) => gpuOps.maeLossForward(rec, gpuTensor(gpu, 1), t, t, gpuTensor(gpu, 64), gpuTensor(gpu, 8), 1, 8, 8))).rejects.toThrow(/needs 2 elements/);
  });

  it('the masked loss ignores visible (kept) patches: changing pred there changes neither loss nor gradient', async () => {
    const gpu = await testGpu();
    const [N, L, P] = [3, 16, 12];
    const target = randn(N * L * P, 11), pred = randn(N * L * P, 12), mask = makeMask(N, L, 4, 13);
    const pred2 = Float64Array.from(pred);
    const junk = randn(N * L * P, 14, 50);
    for (let i = 0; i < pred2.length; i++) if (mask[Math.floor(i / P)] === 0) pred2[i] = junk[i];
    const a = await maeOnGpu(gpu, pred, target, mask, N, L, P, true, 1);
    const b = await maeOnGpu(gpu, pred2, target, mask, N, L, P, true, 1);
    expectSameBits(b.loss, a.loss, 'loss');
    // Values, not bits: mask 0 times a negative difference is −0, which is still no gradient.
    expect(a.dpred.every((v, i) => v === b.dpred[i]), 'dpred unchanged').toBe(true);
    for (let i = 0; i < pred.length; i++) if (mask[Math.floor(i / P)] === 0) expect(a.dpred[i] === 0, `dpred[${i}] at a kept patch`).toBe(true);
    expect(sameBits(a.lpp, b.lpp)).toBe(false); // the per-patch map does see them
  });
});

// [name, N, C, H, W, p]: images, as the step sees them.
const STEP_CASES: Array<[string, number, number, number, number, number]> = [
  ['tiny: one 4×4 image, 4 patches of 2×2', 1, 1, 4, 4, 2],
  ['odd: 3 images 2×15×10, 6 patches of 5×5×2', 3, 2, 15, 10, 5],
  ['ViT-Tiny: 8 CIFAR images, 64 patches of 4×4×3', 8, 3, 32, 32, 4],
];

describe('the MAE loss as the step records it (patchifyTarget with norm_pix, maeLossForward, maeLossBackward)', () => {
  for (const normPix of [false, true]) {
    for (const [name, N, C, H, W, p] of STEP_CASES) {
      it(`${name}${normPix ? ', norm_pix' : ''}: 4 dispatches, GPU vs float64`, async () => {
        const gpu = await testGpu();
        const L = (H / p) * (W / p), P = p * p * C;
        const img = randn(N * C * H * W, 81, 1.5).map((v, i) => Math.fround(v + 1.5 + 0.01 * (i % 97)));
        const pred = randn(N * L * P, 82), mask = makeMask(N, L, Math.max(1, L >> 2), 83);
        const t = { img: gpuTensor(gpu, img), pred: gpuTensor(gpu, pred), mask: gpuTensor(gpu, mask), target: gpuTensor(gpu, randn(N * L * P, 84)) };
        const loss = gpuTensor(gpu, randn(2, 85)), lpp = gpuTensor(gpu, N * L), dpred = gpuTensor(gpu, N * L * P);
        const rec = new Recorder(gpu);
        gpuPatchifyTarget(rec, t.target, t.img, N, C, H, W, p, normPix);
        gpuOps.maeLossForward(rec, loss, lpp, t.pred, t.target, t.mask, N, L, P);
        gpuOps.maeLossBackward(rec, dpred, t.pred, t.target, t.mask, loss, N, L, P, 1);
        await rec.submit();
        // Before the fusion: patchify, normalise, per-patch loss, reduce; mask sum (2), backward.
        expect(rec.dispatchCount, 'dispatches of the loss, forward and backward').toBe(4);

        const target = new Float64Array(N * L * P);
        refPatchifyTarget(target, img, N, C, H, W, p, normPix);
        const want = maeOnRef(pred, target, mask, N, L, P, false, 1);
        expectClose(await read(gpu, t.target), target, normPix ? TOL.reduction : TOL.exact, 'target');
        expectMaeClose({ loss: await read(gpu, loss), lpp: await read(gpu, lpp), dpred: await read(gpu, dpred), normed: new Float32Array() }, want, name);
      });
    }
  }
});

// [name, R, C]
// [name, R, C]. The subgroup variant reads rows as vec4s (C % 4 == 0) and takes 4 rows to a
// workgroup: R = 7 and 5 leave its last workgroup partial.
const DISTILL_CASES: Array<[string, number, number]> = [
  ['tiny', 1, 1],
  ['odd', 7, 13],
  ['odd rows, C a multiple of 4', 7, 12],
  ['one visible patch, 4 images (R = 4·2)', 8, 192],
  ['realistic: 8 images × (1 + 16) tokens, teacher width 384', 8 * 17, 384],
  ['wide odd rows', 5, 1001],
  ['wide rows', 5, 1000],
];

/** The test's device, or a skip that says why, when it cannot run `variant`. */
const gpuForDistill = (variant: DistillVariant, ctx: TestContext): Promise<Gpu> => testGpuForVariant(variant, (gpu) => gpuOps.distillVariants(gpu), ctx);

async function distillOnGpu(
  gpu: Gpu, teacher: Float64Array, student: Float64Array, R: number, C: number, kind: ref.DistillKind, dloss: number,
  variant: DistillVariant = 'workgroup',
) {
  const loss = gpuTensor(gpu, randn(1, 93));
  const ds = gpuTensor(gpu, randn(R * C, 94));
  const t = gpuTensor(gpu, teacher), s = gpuTensor(gpu, student);
  await run(gpu, (rec) => {
    gpuOps.distillLossForward(rec, loss, t, s, R, C, kind, variant);
    gpuOps.distillLossBackward(rec, ds, t, s, R, C, kind, dloss, variant);
  });
  return { loss: await read(gpu, loss), dstudent: await read(gpu, ds) };
}

describe.each(REDUCTION_VARIANTS)('DMAE distillation loss, %s variant (GPU vs float64 reference)', (variant) => {
  for (const kind of ['l1', 'l2'] as const) {
    for (const [name, R, C] of DISTILL_CASES.filter(([, , C]) => variant === 'workgroup' || C % 4 === 0)) {
      it(`${kind} ${name} R=${R} C=${C}`, async (ctx) => {
        const gpu = await gpuForDistill(variant, ctx);
        const teacher = randn(R * C, 21, 3);
        const student = randn(R * C, 22);
        if (R >= 7) {
          // Edge rows: a zero teacher row (normalises to 0), a zero student row (clamped norm,
          // gradient g/eps), and a student row equal to the teacher's (t̂ − ŝ = 0: sign(0) = 0).
          teacher.fill(0, 0, C);
          student.fill(0, 2 * C, 3 * C);
          student.set(teacher.subarray(4 * C, 5 * C), 4 * C);
        }
        const dloss = 1.3;
        const got = await distillOnGpu(gpu, teacher, student, R, C, kind, dloss, variant);
        const loss = new Float64Array(1), ds = new Float64Array(R * C);
        ref.distillLossForward(loss, teacher, student, R, C, kind);
        ref.distillLossBackward(ds, teacher, student, R, C, kind, dloss);
        expectClose(got.loss, loss, TOL.reduction, `${kind} loss`);
        if (R >= 7) {
          // The zero-norm student row's gradient is 1e12 times the others: compare rows apart.
          const zr = [2 * C, 3 * C];
          expectClose(got.dstudent.subarray(...zr), ds.subarray(...zr), scaledTol(ds.subarray(...zr), TOL.gradient), `${kind} dstudent, zero row`);
          const rest = (a: ArrayLike<number>) => Float64Array.from([...Array.from(a).slice(0, zr[0]), ...Array.from(a).slice(zr[1])]);
          expectClose(rest(got.dstudent), rest(ds), scaledTol(rest(ds), TOL.gradient), `${kind} dstudent`);
          if (kind === 'l1') expect(Array.from(got.dstudent.subarray(4 * C, 5 * C)).every((v) => v === 0), 'sign(0) = 0: no gradient where ŝ = t̂').toBe(true);
        } else {
          expectClose(got.dstudent, ds, scaledTol(ds, TOL.gradient), `${kind} dstudent`);
        }
      });
    }
  }
});

describe('distillation loss variants', () => {
  it("lists 'subgroup' where the device has subgroups and C % 4 == 0, and refuses it clearly elsewhere", async () => {
    const gpu = await testGpu();
    const both = gpu.hasSubgroups ? ['workgroup', 'subgroup'] : ['workgroup'];
    expect(gpuOps.distillVariants(gpu)).toEqual(both);
    expect(gpuOps.distillVariants(gpu, 384)).toEqual(both);
    expect(gpuOps.distillVariants(gpu, 13)).toEqual(['workgroup']);
    const bare = Object.create(gpu, { hasSubgroups: { value: false } }) as Gpu;
    expect(gpuOps.distillVariants(bare, 384)).toEqual(['workgroup']);
    const t = gpuTensor(gpu, 64);
    const cases: Array<[Gpu, number, RegExp]> = [
      [bare, 8, /'subgroup' needs the WebGPU feature 'subgroups'.*use 'workgroup'/],
      [gpu, 13, /reads rows as vec4s and needs C % 4 == 0 \(C = 13\); use 'workgroup'/],
    ];
    for (const [g, C, message] of cases) {
      const rec = { gpu: g } as unknown as Recorder; // refused before anything is recorded
      for (const f of [() => gpuOps.distillLossForward(rec, t, t, t, 2, C, 'l1', 'subgroup'), () => gpuOps.distillLossBackward(rec, t, t, t, 2, C, 'l1', 1, 'subgroup')]) {
        expect(f).toThrow(GpuError);
        expect(f).toThrow(message);
      }
    }
  });

  it("'subgroup': rows past 65535 workgroups spill into a second grid row (4·65535 + 5 rows)", async (ctx) => {
    const gpu = await gpuForDistill('subgroup', ctx);
    const [R, C] = [4 * 65535 + 5, 4];
    const teacher = randn(R * C, 25, 2), student = randn(R * C, 26);
    const got = await distillOnGpu(gpu, teacher, student, R, C, 'l1', 1, 'subgroup');
    const loss = new Float64Array(1), ds = new Float64Array(R * C);
    ref.distillLossForward(loss, teacher, student, R, C, 'l1');
    ref.distillLossBackward(ds, teacher, student, R, C, 'l1', 1);
    // The mean of 1M terms: sums of ~√R roundings.
    expectClose(got.loss, loss, { atol: TOL.reduction.atol * Math.sqrt(R), rtol: TOL.reduction.rtol }, 'loss');
    expectClose(got.dstudent, ds, scaledTol(ds, TOL.gradient), 'dstudent, the last rows included');
  });
});

describe('generic deterministic sum (sumReduce)', () => {
  for (const n of [1, 777, 2048, 300_001]) {
    for (const op of ['sum', 'sumsq'] as const) {
      it(`${op} n=${n}`, async () => {
        const gpu = await testGpu();
        const x = randn(n, 31);
        const out = gpuTensor(gpu, randn(2, 32));
        await run(gpu, (rec) => gpuOps.sumReduce(rec, out, gpuTensor(gpu, x), n, op, 0.5));
        const want = new Float64Array(1);
        ref.sumReduce(want, x, n, op, 0.5);
        // A float32 sum of n terms of size ~1 carries ~sqrt(n) roundings of the running total.
        expectClose((await read(gpu, out)).subarray(0, 1), want, { atol: TOL.reduction.atol * Math.sqrt(n), rtol: TOL.reduction.rtol }, `${op} of ${n}`);
      });
    }
  }

  it('the vec4 first pass (big sums): sum, sumsq and norm of 300 001 elements, lanes past n ignored, bit-identical on rerun', async () => {
    const gpu = await testGpu();
    const n = 300_001;
    const x = randn(n, 34);
    const padded = new Float64Array(n + 3).fill(1e30); // a view of 4⌈n/4⌉ elements: the last vec4 reaches past n
    padded.set(x);
    const xt = gpuTensor(gpu, padded);
    for (const op of ['sum', 'sumsq', 'norm'] as const) {
      const outs = [gpuTensor(gpu, 1), gpuTensor(gpu, 1)];
      for (const out of outs) await run(gpu, (rec) => gpuOps.sumReduce(rec, out, xt, n, op, 0.5, 'vec4'));
      const want = new Float64Array(1);
      ref.sumReduce(want, x, n, op, 0.5);
      const got = await read(gpu, outs[0]);
      // As above: ~sqrt(n) roundings of the running totals.
      expectClose(got, want, { atol: TOL.reduction.atol * Math.sqrt(n), rtol: TOL.reduction.rtol }, `${op} of ${n} (vec4)`);
      expectSameBits(await read(gpu, outs[1]), got, `${op} (vec4) on rerun`);
    }
  });

  it('writes into a view at an offset (one slot of a stats tensor)', async () => {
    const gpu = await testGpu();
    const x = randn(1000, 33);
    const stats = gpuTensor(gpu, new Float64Array(128).fill(7));
    const slot = { buffer: stats.buffer, offset: 256, length: 1 };
    await run(gpu, (rec) => gpuOps.sumReduce(rec, slot, gpuTensor(gpu, x), 1000, 'sum', 1 / 1000));
    const got = await read(gpu, stats);
    const want = new Float64Array(1);
    ref.sumReduce(want, x, 1000, 'sum', 1 / 1000);
    expectClose(got.subarray(64, 65), want, TOL.reduction, 'mean in slot 64');
    expect(got[63]).toBe(7);
    expect(got[65]).toBe(7);
  });
});

describe('determinism', () => {
  it('MAE loss (norm_pix), distillation losses, their gradients and sumReduce are bit-identical on rerun', async () => {
    const gpu = await testGpu();
    const [N, L, P] = [8, 64, 48];
    const target = randn(N * L * P, 41), pred = randn(N * L * P, 42), mask = makeMask(N, L, 16, 43);
    const [R, C] = [8 * 17, 384];
    const teacher = randn(R * C, 44), student = randn(R * C, 45);
    const big = gpuTensor(gpu, randn(300_001, 46));
    const variants = gpuOps.distillVariants(gpu, C);
    const runs = [];
    for (let k = 0; k < 2; k++) {
      const mae = await maeOnGpu(gpu, pred, target, mask, N, L, P, true, 1);
      const distill = [];
      for (const v of variants) distill.push({ l1: await distillOnGpu(gpu, teacher, student, R, C, 'l1', 1, v), l2: await distillOnGpu(gpu, teacher, student, R, C, 'l2', 1, v) });
      const s = gpuTensor(gpu, 1);
      await run(gpu, (rec) => gpuOps.sumReduce(rec, s, big, 300_001, 'sumsq'));
      runs.push({ mae, distill, s: await read(gpu, s) });
    }
    const [a, b] = runs;
    expectSameBits(b.mae.loss, a.mae.loss, 'MAE (loss, Σmask)');
    expectSameBits(b.mae.lpp, a.mae.lpp, 'MAE loss per patch');
    expectSameBits(b.mae.dpred, a.mae.dpred, 'MAE dpred');
    variants.forEach((v, i) => {
      expectSameBits(b.distill[i].l1.loss, a.distill[i].l1.loss, `L1 distill loss (${v})`);
      expectSameBits(b.distill[i].l1.dstudent, a.distill[i].l1.dstudent, `L1 dstudent (${v})`);
      expectSameBits(b.distill[i].l2.loss, a.distill[i].l2.loss, `L2 distill loss (${v})`);
      expectSameBits(b.distill[i].l2.dstudent, a.distill[i].l2.dstudent, `L2 dstudent (${v})`);
    });
    expectSameBits(b.s, a.s, 'sumReduce');
  });
});

describe('reference gradients vs finite differences', () => {
  it('MAE masked MSE: d loss / d pred (norm_pix target, extreme masks)', () => {
    for (const lenKeep of [1, 4]) {
      const [N, L, P] = [2, 5, 3];
      const target = new Float64Array(N * L * P);
      ref.normalizePixelTargets(target, randn(N * L * P, 51), N * L, P);
      const pred = randn(N * L * P, 52), mask = makeMask(N, L, lenKeep, 53);
      const dloss = 0.7;
      const f = (i: Record<string, Float64Array>) => {
        const loss = new Float64Array(2);
        ref.maeLossForward(loss, new Float64Array(N * L), i.pred, target, mask, N, L, P);
        return dloss * loss[0];
      };
      const loss = new Float64Array(2);
      ref.maeLossForward(loss, new Float64Array(N * L), pred, target, mask, N, L, P);
      const dpred = new Float64Array(N * L * P);
      ref.maeLossBackward(dpred, pred, target, mask, loss, N, L, P, dloss);
      checkGradients({ pred }, f, { pred: dpred });
    }
  });

  for (const kind of ['l1', 'l2'] as const) {
    it(`distillation ${kind}: d loss / d student`, () => {
      const [R, C] = [4, 6];
      const teacher = randn(R * C, 61, 2), student = randn(R * C, 62);
      // L1 has a kink where t̂ = ŝ: keep every element well away from it, so h = 1e-6 never crosses it.
      const t = new Float64Array(R * C), s = new Float64Array(R * C);
      for (let r = 0; r < R; r++) {
        const nt = Math.hypot(...teacher.subarray(r * C, (r + 1) * C)), ns = Math.hypot(...student.subarray(r * C, (r + 1) * C));
        for (let c = 0; c < C; c++) [t[r * C + c], s[r * C + c]] = [teacher[r * C + c] / nt, student[r * C + c] / ns];
      }
      expect(Math.min(...t.map((v, i) => Math.abs(v - s[i])))).toBeGreaterThan(1e-3);
      const dloss = 1.3;
      const f = (i: Record<string, Float64Array>) => {
        const loss = new Float64Array(1);
        ref.distillLossForward(loss, teacher, i.student, R, C, kind);
        return dloss * loss[0];
      };
      const ds = new Float64Array(R * C);
      ref.distillLossBackward(ds, teacher, student, R, C, kind, dloss);
      checkGradients({ student }, f, { student: ds });
    });
  }
});
