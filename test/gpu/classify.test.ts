import { describe, expect, it } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/classify';
import * as ref from '../../src/ref/classify';
import { checkGradients, dot, expectClose, expectSameBits, gpuTensor, randn, randomLabels, read, readU32, run, scaledTol, testGpu, TOL, type Tolerance } from '../helpers';



// [name, N, T, D]
const POOL: Array<[string, number, number, number]> = [
  ['tiny: one patch token', 1, 2, 1],
  ['odd', 3, 7, 13],
  ['ViT-Tiny, 64 patches + cls, batch 8', 8, 65, 192],
];

describe('pooling: mean of the patch tokens, and the cls token (GPU vs float64 reference)', () => {
  for (const [name, N, T, D] of POOL) {
    it(`${name} N=${N} T=${T} D=${D}`, async () => {
      const gpu = await testGpu();
      const x = randn(N * T * D, 1), dout = randn(N * D, 2);
      const out = new Float64Array(N * D), dx = new Float64Array(N * T * D);
      ref.meanPoolForward(out, x, N, T, D);
      ref.meanPoolBackward(dx, dout, N, T, D);
      const cls = new Float64Array(N * D);
      ref.clsPoolForward(cls, x, N, T, D);
      const gout = gpuTensor(gpu, randn(N * D, 3)), gdx = gpuTensor(gpu, randn(N * T * D, 4)); // "=" must overwrite
      const gcls = gpuTensor(gpu, randn(N * D, 5));
      await run(gpu, (rec) => {
        const gx = gpuTensor(gpu, x);
        gpuOps.meanPoolForward(rec, gout, gx, N, T, D);
        gpuOps.meanPoolBackward(rec, gdx, gpuTensor(gpu, dout), N, T, D);
        gpuOps.clsPoolForward(rec, gcls, gx, N, T, D);
      });
      expectClose(await read(gpu, gout), out, TOL.reduction, 'pooled');
      expectClose(await read(gpu, gcls), cls, TOL.exact, 'cls token');
      expectClose(await read(gpu, gdx), dx, TOL.elementwise, 'dx');
    });
  }

  it('reference gradient matches finite differences', () => {
    const [N, T, D] = [2, 4, 3];
    const x = randn(N * T * D, 5), w = randn(N * D, 6);
    const dx = new Float64Array(N * T * D);
    ref.meanPoolBackward(dx, w, N, T, D);
    checkGradients({ x }, (i) => {
      const out = new Float64Array(N * D);
      ref.meanPoolForward(out, i.x, N, T, D);
      return dot(out, w);
    }, { x: dx });
  });
});

// [name, N, K, smoothing]
const XENT: Array<[string, number, number, number]> = [
  ['tiny', 1, 2, 0],
  ['odd, smoothing 0.1', 3, 7, 0.1],
  ['batch 8, 10 classes', 8, 10, 0],
  ['more rows than threads, smoothing 0.1', 301, 13, 0.1],
  ['1000 classes', 5, 1000, 0.1],
];

describe('softmax cross-entropy (GPU vs float64 reference)', () => {
  for (const [name, N, K, eps] of XENT) {
    it(`${name} N=${N} K=${K} ε=${eps}`, async () => {
      const gpu = await testGpu();
      const logits = randn(N * K, 11, 4), labels = randomLabels(N, K, 12);
      const stats = new Float64Array(2), pred = new Uint32Array(N), dl = new Float64Array(N * K);
      ref.crossEntropyForward(stats, pred, logits, labels, N, K, eps);
      ref.crossEntropyBackward(dl, logits, labels, N, K, eps, 0.7);
      const t = { logits: gpuTensor(gpu, logits), labels: gpuTensor(gpu, labels) };
      const gstats = gpuTensor(gpu, randn(2, 13)), gpred = gpuTensor(gpu, N), gdl = gpuTensor(gpu, randn(N * K, 14));
      await run(gpu, (rec) => {
        gpuOps.crossEntropyForward(rec, gstats, gpred, t.logits, t.labels, N, K, eps);
        gpuOps.crossEntropyBackward(rec, gdl, t.logits, t.labels, N, K, eps, 0.7);
      });
      const s = await read(gpu, gstats);
      expectClose([s[0]], [stats[0]], TOL.reduction, 'loss');
      expect(s[1], 'correct count').toBe(stats[1]);
      expect(Array.from(await readU32(gpu, gpred)), 'argmax').toEqual(Array.from(pred));
      expectClose(await read(gpu, gdl), dl, scaledTol(dl, TOL.gradient), 'dlogits');
    });
  }

  it('argmax takes the first maximum on ties, and counts correct rows', async () => {
    const gpu = await testGpu();
    const logits = Float64Array.from([1, 3, 3, 0, /**/ 2, 2, 2, 2, /**/ 0, 0, 0, 5]);
    const labels = Uint32Array.from([1, 0, 2]);
    const stats = gpuTensor(gpu, 2), pred = gpuTensor(gpu, 3);
    await run(gpu, (rec) => gpuOps.crossEntropyForward(rec, stats, pred, gpuTensor(gpu, logits), gpuTensor(gpu, labels), 3, 4));
    expect(Array.from(await readU32(gpu, pred))).toEqual([1, 0, 3]);
    expect((await read(gpu, stats))[1]).toBe(2);
  });

  it('is deterministic: bit-identical loss and gradient on repeated runs', async () => {
    const gpu = await testGpu();
    const [N, K] = [517, 10];
    const logits = gpuTensor(gpu, randn(N * K, 15, 3)), labels = gpuTensor(gpu, randomLabels(N, K, 16));
    const outs: Float32Array[][] = [];
    for (let i = 0; i < 2; i++) {
      const stats = gpuTensor(gpu, 2), pred = gpuTensor(gpu, N), dl = gpuTensor(gpu, N * K);
      await run(gpu, (rec) => {
        gpuOps.crossEntropyForward(rec, stats, pred, logits, labels, N, K, 0.1);
        gpuOps.crossEntropyBackward(rec, dl, logits, labels, N, K, 0.1);
      });
      outs.push([await read(gpu, stats), await read(gpu, dl)]);
    }
    expectSameBits(outs[0][0], outs[1][0], 'loss');
    expectSameBits(outs[0][1], outs[1][1], 'dlogits');
  });

  it('reference gradient matches finite differences (with and without smoothing)', () => {
    const [N, K] = [3, 5];
    const labels = randomLabels(N, K, 17);
    for (const eps of [0, 0.1]) {
      const logits = randn(N * K, 18, 2);
      const dl = new Float64Array(N * K);
      ref.crossEntropyBackward(dl, logits, labels, N, K, eps);
      checkGradients({ logits }, (i) => {
        const s = new Float64Array(2);
        ref.crossEntropyForward(s, new Uint32Array(N), i.logits, labels, N, K, eps);
        return s[0];
      }, { logits: dl });
    }
  });

  it('loss of uniform logits is log K', () => {
    const s = new Float64Array(2);
    ref.crossEntropyForward(s, new Uint32Array(4), new Float64Array(4 * 10), randomLabels(4, 10, 1), 4, 10, 0.1);
    expect(s[0]).toBeCloseTo(Math.log(10), 12);
  });
});

// [name, N, C]
const BN: Array<[string, number, number]> = [
  ['tiny', 2, 1],
  ['odd', 7, 13],
  ['ViT-Tiny features, batch 256', 256, 192],
];

describe('non-affine BatchNorm1d (GPU vs float64 reference)', () => {
  for (const [name, N, C] of BN) {
    it(`${name} N=${N} C=${C}: training forward, running stats, eval, backward`, async () => {
      const gpu = await testGpu();
      // Features with a common offset per channel: the two-pass variance must keep them.
      const x = randn(N * C, 21, 2);
      for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i] + 3 + (i % C) * 0.5);
      const rm0 = randn(C, 22), rv0 = randn(C, 23).map((v) => Math.fround(1 + 0.5 * v));
      const dout = randn(N * C, 24);
      const out = new Float64Array(N * C), mean = new Float64Array(C), rstd = new Float64Array(C);
      const rm = Float64Array.from(rm0), rv = Float64Array.from(rv0);
      ref.batchnormForward(out, mean, rstd, rm, rv, x, N, C);
      const ev = new Float64Array(N * C);
      ref.batchnormEval(ev, x, rm, rv, N, C);
      const dx = new Float64Array(N * C);
      ref.batchnormBackward(dx, dout, x, mean, rstd, N, C);

      const gx = gpuTensor(gpu, x);
      const g = {
        out: gpuTensor(gpu, randn(N * C, 25)), mean: gpuTensor(gpu, C), rstd: gpuTensor(gpu, C), rm: gpuTensor(gpu, rm0), rv: gpuTensor(gpu, rv0),
        ev: gpuTensor(gpu, N * C), dx: gpuTensor(gpu, randn(N * C, 26)),
      };
      await run(gpu, (rec) => {
        gpuOps.batchnormForward(rec, g.out, g.mean, g.rstd, g.rm, g.rv, gx, N, C);
        gpuOps.batchnormEval(rec, g.ev, gx, g.rm, g.rv, N, C);
        gpuOps.batchnormBackward(rec, g.dx, gpuTensor(gpu, dout), gx, g.mean, g.rstd, N, C);
      });
      expectClose(await read(gpu, g.out), out, TOL.reduction, 'out');
      expectClose(await read(gpu, g.mean), mean, TOL.reduction, 'mean');
      expectClose(await read(gpu, g.rstd), rstd, TOL.reduction, 'rstd');
      expectClose(await read(gpu, g.rm), rm, TOL.reduction, 'running mean');
      expectClose(await read(gpu, g.rv), rv, TOL.reduction, 'running var');
      expectClose(await read(gpu, g.ev), ev, TOL.reduction, 'eval out');
      expectClose(await read(gpu, g.dx), dx, TOL.gradient, 'dx');
    });
  }

  it('reference gradient matches finite differences', () => {
    const [N, C] = [5, 3];
    const x = randn(N * C, 31, 2), w = randn(N * C, 32);
    const dx = new Float64Array(N * C), mean = new Float64Array(C), rstd = new Float64Array(C);
    ref.batchnormForward(new Float64Array(N * C), mean, rstd, new Float64Array(C), new Float64Array(C), x, N, C);
    ref.batchnormBackward(dx, w, x, mean, rstd, N, C);
    checkGradients({ x }, (i) => {
      const out = new Float64Array(N * C);
      ref.batchnormForward(out, new Float64Array(C), new Float64Array(C), new Float64Array(C), new Float64Array(C), i.x, N, C);
      return dot(out, w);
    }, { x: dx });
  });

  it('running statistics follow torch: momentum 0.1, unbiased variance', () => {
    const x = Float64Array.from([1, 2, 3, 6]); // one channel, 4 rows: mean 3, unbiased var 14/3
    const rm = Float64Array.from([0]), rv = Float64Array.from([1]);
    ref.batchnormForward(new Float64Array(4), new Float64Array(1), new Float64Array(1), rm, rv, x, 4, 1);
    expect(rm[0]).toBeCloseTo(0.3, 12);
    expect(rv[0]).toBeCloseTo(0.9 + 0.1 * (14 / 3), 12);
  });
});
