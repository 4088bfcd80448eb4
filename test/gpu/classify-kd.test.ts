/**
 * Knowledge distillation's loss (shaders/classify.wgsl kd_forward / kd_backward): the GPU
 * against the float64 reference over λ ∈ {0, ½, 1}, τ ∈ {1, 4}, with and without label
 * smoothing; λ = 0 against the plain cross-entropy; known answers; determinism; and the
 * reference's gradient against finite differences.
 */
import { describe, expect, it } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/classify';
import * as ref from '../../src/ref/classify';
import { checkGradients, expectClose, expectSameBits, gpuTensor, randn, randomLabels, read, readU32, run, scaledTol, testGpu, TOL, type Tolerance } from '../helpers';



// [name, N, K, λ, τ, ε]
const KD: Array<[string, number, number, number, number, number]> = [
  ['tiny', 1, 2, 0.5, 1, 0],
  ['odd, τ 4, smoothing 0.1', 3, 7, 0.5, 4, 0.1],
  ['hard only (λ 0)', 8, 10, 0, 4, 0.1],
  ['soft only (λ 1), τ 4', 64, 10, 1, 4, 0],
  ['soft only (λ 1), τ 1', 33, 7, 1, 1, 0.1],
  ['DeiT mix, 10 classes', 64, 10, 0.5, 4, 0.1],
  ['more rows than threads', 300, 7, 0.5, 4, 0.1],
];

describe('knowledge-distillation cross-entropy (GPU vs float64 reference)', () => {
  for (const [name, N, K, lam, tau, eps] of KD) {
    it(`${name} N=${N} K=${K} λ=${lam} τ=${tau} ε=${eps}`, async () => {
      const gpu = await testGpu();
      // Logits spread like a trained classifier's (±6), the teacher's sharper (±8).
      const logits = randn(N * K, 41, 6), teacher = randn(N * K, 42, 8), labels = randomLabels(N, K, 43);
      const o = { softWeight: lam, temperature: tau, smoothing: eps };
      const stats = new Float64Array(2), pred = new Uint32Array(N), dl = new Float64Array(N * K);
      ref.kdCrossEntropyForward(stats, pred, logits, teacher, labels, N, K, o);
      ref.kdCrossEntropyBackward(dl, logits, teacher, labels, N, K, o, 0.7);
      const t = { logits: gpuTensor(gpu, logits), teacher: gpuTensor(gpu, teacher), labels: gpuTensor(gpu, labels) };
      const gstats = gpuTensor(gpu, randn(2, 44)), gpred = gpuTensor(gpu, N), gdl = gpuTensor(gpu, randn(N * K, 45)); // "=" must overwrite
      await run(gpu, (rec) => {
        gpuOps.kdCrossEntropyForward(rec, gstats, gpred, t.logits, t.teacher, t.labels, N, K, o);
        gpuOps.kdCrossEntropyBackward(rec, gdl, t.logits, t.teacher, t.labels, N, K, o, 0.7);
      });
      const s = await read(gpu, gstats);
      expectClose([s[0]], [stats[0]], TOL.reduction, 'loss');
      expect(s[1], 'correct count').toBe(stats[1]);
      expect(Array.from(await readU32(gpu, gpred)), 'argmax').toEqual(Array.from(pred));
      expectClose(await read(gpu, gdl), dl, scaledTol(dl, TOL.gradient), 'dlogits');
    });
  }

  it('λ = 0 is the plain cross-entropy: bit for bit in the reference, within tolerance on the GPU', async () => {
    const gpu = await testGpu();
    const [N, K, eps] = [37, 7, 0.1];
    const logits = randn(N * K, 51, 5), teacher = randn(N * K, 52, 5), labels = randomLabels(N, K, 53);
    const o = { softWeight: 0, temperature: 4, smoothing: eps };
    const a = new Float64Array(2), b = new Float64Array(2), da = new Float64Array(N * K), db = new Float64Array(N * K);
    const pa = new Uint32Array(N), pb = new Uint32Array(N);
    ref.kdCrossEntropyForward(a, pa, logits, teacher, labels, N, K, o);
    ref.crossEntropyForward(b, pb, logits, labels, N, K, eps);
    ref.kdCrossEntropyBackward(da, logits, teacher, labels, N, K, o);
    ref.crossEntropyBackward(db, logits, labels, N, K, eps);
    expect(a).toEqual(b);
    expect(pa).toEqual(pb);
    expect(da).toEqual(db);

    const t = { logits: gpuTensor(gpu, logits), teacher: gpuTensor(gpu, teacher), labels: gpuTensor(gpu, labels) };
    const g = { ka: gpuTensor(gpu, 2), kb: gpuTensor(gpu, 2), pa: gpuTensor(gpu, N), pb: gpuTensor(gpu, N), da: gpuTensor(gpu, N * K), db: gpuTensor(gpu, N * K) };
    await run(gpu, (rec) => {
      gpuOps.kdCrossEntropyForward(rec, g.ka, g.pa, t.logits, t.teacher, t.labels, N, K, o);
      gpuOps.crossEntropyForward(rec, g.kb, g.pb, t.logits, t.labels, N, K, eps);
      gpuOps.kdCrossEntropyBackward(rec, g.da, t.logits, t.teacher, t.labels, N, K, o);
      gpuOps.crossEntropyBackward(rec, g.db, t.logits, t.labels, N, K, eps);
    });
    const kb = await read(gpu, g.kb), db32 = await read(gpu, g.db);
    expectClose(await read(gpu, g.ka), kb, TOL.elementwise, 'λ = 0 loss vs cross-entropy');
    expect(Array.from(await readU32(gpu, g.pa))).toEqual(Array.from(await readU32(gpu, g.pb)));
    expectClose(await read(gpu, g.da), db32, scaledTol(db32, TOL.elementwise), 'λ = 0 dlogits vs cross-entropy');
  });

  it('known answers: a student equal to its teacher has KL 0 and no soft gradient; a 2-class KL by hand', async () => {
    const gpu = await testGpu();
    const [N, K] = [5, 7];
    const z = randn(N * K, 61, 4), labels = randomLabels(N, K, 62);
    const o = { softWeight: 1, temperature: 4 };
    const stats = gpuTensor(gpu, 2), dl = gpuTensor(gpu, N * K);
    const gz = gpuTensor(gpu, z), gt = gpuTensor(gpu, z);
    await run(gpu, (rec) => {
      gpuOps.kdCrossEntropyForward(rec, stats, gpuTensor(gpu, N), gz, gt, gpuTensor(gpu, labels), N, K, o);
      gpuOps.kdCrossEntropyBackward(rec, dl, gz, gt, gpuTensor(gpu, labels), N, K, o);
    });
    expect(Math.abs((await read(gpu, stats))[0])).toBeLessThan(1e-5);
    expectClose(await read(gpu, dl), new Float64Array(N * K), { atol: 1e-7, rtol: 0 }, 'dlogits of a student that matches');

    // τ = 2, teacher (0, 2ln3) → p_t = (1/(1+3), 3/(1+3)) = (¼, ¾) at τ 2; student (0, 0) → p_s = (½, ½).
    // KL = ¼·ln(½) + ¾·ln(3/2); the loss is τ²·KL = 4·KL.
    const s = new Float64Array(2);
    ref.kdCrossEntropyForward(s, new Uint32Array(1), Float64Array.of(0, 0), Float64Array.of(0, 2 * Math.log(3)), Uint32Array.of(0), 1, 2, { softWeight: 1, temperature: 2 });
    expect(s[0]).toBeCloseTo(4 * (0.25 * Math.log(0.5) + 0.75 * Math.log(1.5)), 12);
  });

  it('is deterministic: bit-identical loss and gradient on repeated runs', async () => {
    const gpu = await testGpu();
    const [N, K] = [301, 10];
    const o = { softWeight: 0.5, temperature: 4, smoothing: 0.1 };
    const logits = gpuTensor(gpu, randn(N * K, 71, 5)), teacher = gpuTensor(gpu, randn(N * K, 72, 5)), labels = gpuTensor(gpu, randomLabels(N, K, 73));
    const outs: Float32Array[][] = [];
    for (let i = 0; i < 2; i++) {
      const stats = gpuTensor(gpu, 2), pred = gpuTensor(gpu, N), dl = gpuTensor(gpu, N * K);
      await run(gpu, (rec) => {
        gpuOps.kdCrossEntropyForward(rec, stats, pred, logits, teacher, labels, N, K, o);
        gpuOps.kdCrossEntropyBackward(rec, dl, logits, teacher, labels, N, K, o);
      });
      outs.push([await read(gpu, stats), await read(gpu, dl)]);
    }
    expectSameBits(outs[0][0], outs[1][0], 'loss');
    expectSameBits(outs[0][1], outs[1][1], 'dlogits');
  });

  it('refuses a soft weight outside [0, 1] and a temperature ≤ 0', async () => {
    const gpu = await testGpu();
    const t = gpuTensor(gpu, 4);
    await run(gpu, (rec) => {
      expect(() => gpuOps.kdCrossEntropyForward(rec, t, t, t, t, t, 1, 2, { softWeight: 1.5, temperature: 1 })).toThrow(/soft weight 1.5/);
      expect(() => gpuOps.kdCrossEntropyBackward(rec, t, t, t, t, 1, 2, { softWeight: 0.5, temperature: 0 })).toThrow(/temperature 0/);
    });
  });
});

describe('knowledge-distillation cross-entropy: reference gradient vs finite differences', () => {
  const [N, K] = [3, 5];
  for (const lam of [0, 0.5, 1]) {
    for (const tau of [1, 4]) {
      for (const eps of [0, 0.1]) {
        it(`λ=${lam} τ=${tau} ε=${eps}`, () => {
          const labels = randomLabels(N, K, 81);
          const logits = randn(N * K, 82, 3), teacher = randn(N * K, 83, 3);
          const o = { softWeight: lam, temperature: tau, smoothing: eps };
          const dl = new Float64Array(N * K);
          ref.kdCrossEntropyBackward(dl, logits, teacher, labels, N, K, o);
          checkGradients({ logits }, (i) => {
            const s = new Float64Array(2);
            ref.kdCrossEntropyForward(s, new Uint32Array(N), i.logits, teacher, labels, N, K, o);
            return s[0];
          }, { logits: dl });
        });
      }
    }
  }
});
