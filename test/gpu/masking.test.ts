import { describe, expect, it } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/masking';
import * as ref from '../../src/ref/masking';
import { TOL, checkGradients, dot, expectClose, expectSameBits, gpuTensor, randn, read, rng, run, testGpu } from '../helpers';

/** Uniform noise in [0, 1) as float32, what torch.rand(N, L) gives. */
function noise(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r());
}

describe('randomMasking and lenKeepFor (CPU)', () => {
  it('argsorts the noise, keeps the lowest, restores with the inverse permutation', () => {
    const nz = Float32Array.from([0.5, 0.1, 0.9, 0.3, /* image 2 */ 0.2, 0.8, 0.4, 0.6]);
    const { idsKeep, idsRestore, mask } = ref.randomMasking(nz, 2, 4, 2);
    // image 1: ids_shuffle = [1, 3, 0, 2]; image 2: [0, 2, 3, 1].
    expect(Array.from(idsKeep)).toEqual([1, 3, 0, 2]);
    expect(Array.from(idsRestore)).toEqual([2, 0, 3, 1, 0, 3, 1, 2]);
    expect(Array.from(mask)).toEqual([1, 0, 1, 0, 0, 1, 0, 1]);
  });

  it('is stable on ties (the lower index first) and matches MAE on realistic shapes', () => {
    const { idsKeep, idsRestore } = ref.randomMasking(Float32Array.from([0.5, 0.5, 0.1, 0.5]), 1, 4, 4);
    expect(Array.from(idsKeep)).toEqual([2, 0, 1, 3]);
    expect(Array.from(idsRestore)).toEqual([1, 2, 0, 3]);

    for (const [N, L, V] of [[8, 64, 16], [4, 196, 9], [3, 49, 1], [2, 64, 64]]) {
      const nz = noise(N * L, N + L + V);
      const m = ref.randomMasking(nz, N, L, V);
      for (let n = 0; n < N; n++) {
        const shuffle = Array.from({ length: L }, (_, i) => i).sort((a, b) => nz[n * L + a] - nz[n * L + b]);
        expect(Array.from(m.idsKeep.subarray(n * V, (n + 1) * V))).toEqual(shuffle.slice(0, V));
        // ids_restore = argsort(ids_shuffle); mask = gather([0]*V + [1]*(L−V), ids_restore).
        const restore = Array.from({ length: L }, (_, i) => i).sort((a, b) => shuffle[a] - shuffle[b]);
        expect(Array.from(m.idsRestore.subarray(n * L, (n + 1) * L))).toEqual(restore);
        expect(Array.from(m.mask.subarray(n * L, (n + 1) * L))).toEqual(restore.map((j) => (j < V ? 0 : 1)));
      }
    }
    expect(gpuOps.randomMasking).toBe(ref.randomMasking);
  });

  it('rejects a lenKeep outside [1, L] and noise of the wrong length', () => {
    expect(() => ref.randomMasking(noise(8, 1), 2, 4, 0)).toThrow(/lenKeep/);
    expect(() => ref.randomMasking(noise(8, 1), 2, 4, 5)).toThrow(/lenKeep/);
    expect(() => ref.randomMasking(noise(7, 1), 2, 4, 2)).toThrow(/noise/);
  });

  it("lenKeepFor truncates like Python's int(L * (1 - ratio)) and keeps at least one patch", () => {
    expect(ref.lenKeepFor(196, 0.75)).toBe(49);
    expect(ref.lenKeepFor(196, 0.95)).toBe(9); // 196·(1 − 0.95) = 9.80…
    expect(ref.lenKeepFor(196, 0.98)).toBe(3); // 3.92…
    expect(ref.lenKeepFor(196, 0.9)).toBe(19); // 19.599999999999994 in float64
    expect(ref.lenKeepFor(64, 0.75)).toBe(16);
    expect(ref.lenKeepFor(49, 0.75)).toBe(12);
    expect(ref.lenKeepFor(10, 0.7)).toBe(3); // 10·0.30000000000000004
    expect(ref.lenKeepFor(64, 0)).toBe(64);
    expect(ref.lenKeepFor(64, 0.99)).toBe(1);
    expect(ref.lenKeepFor(64, 1)).toBe(1);
    expect(ref.maskRatioFor(64, 16)).toBe(0.75);
  });
});

// [name, N, L, V, D]
const SHAPES: Array<[string, number, number, number, number]> = [
  ['tiny', 1, 1, 1, 1],
  ['odd', 3, 7, 3, 5],
  ['odd, nothing masked', 2, 13, 13, 33],
  ['ViT-Tiny encoder, 25% visible', 8, 64, 16, 192],
  ['one visible patch', 8, 64, 1, 192],
  ['MNIST 49 patches', 4, 49, 12, 192],
  ['decoder width 128', 8, 64, 16, 128],
];

describe('masking kernels (GPU vs float64 reference)', () => {
  for (const [name, N, L, V, D] of SHAPES) {
    const { idsKeep, idsRestore } = ref.randomMasking(noise(N * L, 7 * N + L + V + D), N, L, V);

    it(`${name}: gatherVisible forward and backward, N=${N} L=${L} V=${V} D=${D}`, async () => {
      const gpu = await testGpu();
      const x = randn(N * L * D, 1), cls = randn(D, 2), dout = randn(N * (1 + V) * D, 3), dcls0 = randn(D, 4);
      const out = new Float64Array(N * (1 + V) * D), dx = new Float64Array(N * L * D), dcls = Float64Array.from(dcls0);
      ref.gatherVisible(out, x, cls, idsKeep, N, L, V, D);
      ref.gatherVisibleBackward(dx, dcls, dout, idsKeep, N, L, V, D);

      const gIds = gpuTensor(gpu, idsKeep);
      const gOut = gpuTensor(gpu, randn(out.length, 5)); // "=" must overwrite what is there
      const gDx = gpuTensor(gpu, randn(dx.length, 6));
      const gDcls = gpuTensor(gpu, dcls0); // "+=" accumulates onto it
      await run(gpu, (rec) => {
        gpuOps.gatherVisible(rec, gOut, gpuTensor(gpu, x), gpuTensor(gpu, cls), gIds, N, L, V, D);
        gpuOps.gatherVisibleBackward(rec, gDx, gDcls, gpuTensor(gpu, dout), gIds, N, L, V, D);
      });
      expectClose(await read(gpu, gOut), out, TOL.exact, 'gatherVisible out');
      expectClose(await read(gpu, gDx), dx, TOL.exact, 'gatherVisibleBackward dx');
      expectClose(await read(gpu, gDcls), dcls, TOL.reduction, 'gatherVisibleBackward dcls');
    });

    it(`${name}: gatherPatches, embedVisible forward and backward, N=${N} L=${L} V=${V} D=${D}`, async () => {
      const gpu = await testGpu();
      const K = 5; // patch values: any width, odd on purpose
      const patches = randn(N * L * K, 51), x = randn(N * V * D, 52), cls = randn(D, 53), pos = randn((1 + L) * D, 54);
      const dout = randn(N * (1 + V) * D, 55), dcls0 = randn(D, 56);
      const pv = new Float64Array(N * V * K), out = new Float64Array(N * (1 + V) * D), dx = new Float64Array(N * V * D), dcls = Float64Array.from(dcls0);
      ref.gatherPatches(pv, patches, idsKeep, N, L, V, K);
      ref.embedVisible(out, x, cls, idsKeep, pos, N, L, V, D);
      ref.embedVisibleBackward(dx, dcls, dout, N, L, V, D);

      const gIds = gpuTensor(gpu, idsKeep);
      const gPv = gpuTensor(gpu, randn(pv.length, 57)), gOut = gpuTensor(gpu, randn(out.length, 58)), gDx = gpuTensor(gpu, randn(dx.length, 59));
      const gDcls = gpuTensor(gpu, dcls0);
      await run(gpu, (rec) => {
        gpuOps.gatherPatches(rec, gPv, gpuTensor(gpu, patches), gIds, N, L, V, K);
        gpuOps.embedVisible(rec, gOut, gpuTensor(gpu, x), gpuTensor(gpu, cls), gIds, gpuTensor(gpu, pos), N, L, V, D);
        gpuOps.embedVisibleBackward(rec, gDx, gDcls, gpuTensor(gpu, dout), N, L, V, D);
      });
      expectClose(await read(gpu, gPv), pv, TOL.exact, 'gatherPatches out');
      expectClose(await read(gpu, gOut), out, TOL.elementwise, 'embedVisible out');
      expectClose(await read(gpu, gDx), dx, TOL.exact, 'embedVisibleBackward dx');
      expectClose(await read(gpu, gDcls), dcls, TOL.reduction, 'embedVisibleBackward dcls');
    });

    it(`${name}: dropCls and padCls (the decoder prediction's cls row), N=${N} T=${L} D=${D}`, async () => {
      const gpu = await testGpu();
      const x = randn(N * (1 + L) * D, 71), dout = randn(N * L * D, 72);
      const out = new Float64Array(N * L * D), dx = new Float64Array(N * (1 + L) * D);
      ref.dropCls(out, x, N, L, D);
      ref.padCls(dx, dout, N, L, D);
      const gOut = gpuTensor(gpu, randn(out.length, 73)), gDx = gpuTensor(gpu, randn(dx.length, 74)); // "=" overwrites, row 0 included
      await run(gpu, (rec) => {
        gpuOps.dropCls(rec, gOut, gpuTensor(gpu, x), N, L, D);
        gpuOps.padCls(rec, gDx, gpuTensor(gpu, dout), N, L, D);
      });
      expectClose(await read(gpu, gOut), out, TOL.exact, 'dropCls out');
      expectClose(await read(gpu, gDx), dx, TOL.exact, 'padCls dx');
    });

    it(`${name}: insertMaskTokens forward and backward, N=${N} L=${L} V=${V} D=${D}`, async () => {
      const gpu = await testGpu();
      const x = randn(N * (1 + V) * D, 11), maskToken = randn(D, 12), dout = randn(N * (1 + L) * D, 13), dm0 = randn(D, 14);
      const out = new Float64Array(N * (1 + L) * D), dx = new Float64Array(N * (1 + V) * D), dm = Float64Array.from(dm0);
      ref.insertMaskTokens(out, x, maskToken, idsRestore, N, L, V, D);
      ref.insertMaskTokensBackward(dx, dm, dout, idsRestore, N, L, V, D);

      const gIds = gpuTensor(gpu, idsRestore);
      const gOut = gpuTensor(gpu, randn(out.length, 15));
      const gDx = gpuTensor(gpu, randn(dx.length, 16));
      const gDm = gpuTensor(gpu, dm0);
      await run(gpu, (rec) => {
        gpuOps.insertMaskTokens(rec, gOut, gpuTensor(gpu, x), gpuTensor(gpu, maskToken), gIds, N, L, V, D);
        gpuOps.insertMaskTokensBackward(rec, gDx, gDm, gpuTensor(gpu, dout), gIds, N, L, V, D);
      });
      expectClose(await read(gpu, gOut), out, TOL.exact, 'insertMaskTokens out');
      expectClose(await read(gpu, gDx), dx, TOL.exact, 'insertMaskTokensBackward dx');
      expectClose(await read(gpu, gDm), dm, TOL.reduction, 'insertMaskTokensBackward dmaskToken');
    });
  }

  // A step's first backward: the cls and mask-token gradients are assigned over what they held.
  it('inside Recorder.assignParamGrads: dcls = and dmaskToken = (garbage before, the sums onto zeros after)', async () => {
    const gpu = await testGpu();
    const [N, L, V, D] = [3, 16, 5, 12];
    const { idsKeep, idsRestore } = ref.randomMasking(noise(N * L, 31), N, L, V);
    const doutEnc = randn(N * (1 + V) * D, 32), doutDec = randn(N * (1 + L) * D, 33);
    const want = { enc: new Float64Array(D), vis: new Float64Array(D), mask: new Float64Array(D) };
    ref.embedVisibleBackward(new Float64Array(N * V * D), want.enc, doutEnc, N, L, V, D);
    ref.gatherVisibleBackward(new Float64Array(N * L * D), want.vis, doutEnc, idsKeep, N, L, V, D);
    ref.insertMaskTokensBackward(new Float64Array(N * (1 + V) * D), want.mask, doutDec, idsRestore, N, L, V, D);
    const got = { enc: gpuTensor(gpu, randn(D, 34)), vis: gpuTensor(gpu, randn(D, 35)), mask: gpuTensor(gpu, randn(D, 36)) };
    const gEnc = gpuTensor(gpu, doutEnc), gDec = gpuTensor(gpu, doutDec);
    await run(gpu, (rec) => rec.assignParamGrads(() => {
      gpuOps.embedVisibleBackward(rec, gpuTensor(gpu, N * V * D), got.enc, gEnc, N, L, V, D);
      gpuOps.gatherVisibleBackward(rec, gpuTensor(gpu, N * L * D), got.vis, gEnc, gpuTensor(gpu, idsKeep), N, L, V, D);
      gpuOps.insertMaskTokensBackward(rec, gpuTensor(gpu, N * (1 + V) * D), got.mask, gDec, gpuTensor(gpu, idsRestore), N, L, V, D);
    }));
    expectClose(await read(gpu, got.enc), want.enc, TOL.reduction, 'embedVisibleBackward dcls');
    expectClose(await read(gpu, got.vis), want.vis, TOL.reduction, 'gatherVisibleBackward dcls');
    expectClose(await read(gpu, got.mask), want.mask, TOL.reduction, 'insertMaskTokensBackward dmaskToken');
  });

  it('is deterministic: the same inputs give bit-identical gradients', async () => {
    const gpu = await testGpu();
    const [N, L, V, D] = [8, 64, 16, 128];
    const { idsKeep, idsRestore } = ref.randomMasking(noise(N * L, 99), N, L, V);
    const doutDec = gpuTensor(gpu, randn(N * (1 + L) * D, 21));
    const doutEnc = gpuTensor(gpu, randn(N * (1 + V) * D, 22));
    const gKeep = gpuTensor(gpu, idsKeep), gRestore = gpuTensor(gpu, idsRestore);
    const outs: Float32Array[][] = [];
    for (let i = 0; i < 2; i++) {
      const dm = gpuTensor(gpu, D), dxDec = gpuTensor(gpu, N * (1 + V) * D), dcls = gpuTensor(gpu, D), dxEnc = gpuTensor(gpu, N * L * D);
      await run(gpu, (rec) => {
        gpuOps.insertMaskTokensBackward(rec, dxDec, dm, doutDec, gRestore, N, L, V, D);
        gpuOps.gatherVisibleBackward(rec, dxEnc, dcls, doutEnc, gKeep, N, L, V, D);
      });
      outs.push([await read(gpu, dm), await read(gpu, dxDec), await read(gpu, dcls), await read(gpu, dxEnc)]);
    }
    outs[0].forEach((a, k) => expectSameBits(outs[1][k], a, `output ${k}`));
  });
});

describe("masking reference against MAE's formulation", () => {
  it("gatherVisible is gather(x, ids_keep) with cls prepended; insertMaskTokens is MAE's unshuffle", () => {
    const [N, L, V, D] = [3, 10, 4, 6];
    const { idsKeep, idsRestore, mask } = ref.randomMasking(noise(N * L, 31), N, L, V);
    const x = randn(N * L * D, 32), cls = randn(D, 33), mt = randn(D, 34);
    const enc = new Float64Array(N * (1 + V) * D);
    ref.gatherVisible(enc, x, cls, idsKeep, N, L, V, D);
    const dec = new Float64Array(N * (1 + L) * D);
    ref.insertMaskTokens(dec, enc, mt, idsRestore, N, L, V, D);
    for (let n = 0; n < N; n++) {
      for (let d = 0; d < D; d++) expect(dec[n * (1 + L) * D + d]).toBe(cls[d]);
      // MAE: x_ = cat([x[:, 1:], mask_tokens]); x_ = gather(x_, 1, ids_restore) → back in patch order.
      for (let l = 0; l < L; l++)
        for (let d = 0; d < D; d++) {
          const want = mask[n * L + l] === 0 ? x[(n * L + l) * D + d] : mt[d];
          expect(dec[(n * (1 + L) + 1 + l) * D + d]).toBe(want);
        }
    }
  });
});

describe('embedding only the visible patches (reference)', () => {
  it('gives the tokens of embedding every patch, adding pos and gathering: linear, then addPosEmbed, then gatherVisible', () => {
    const [N, L, V, K, D] = [3, 9, 4, 5, 6];
    const { idsKeep } = ref.randomMasking(noise(N * L, 61), N, L, V);
    const patches = randn(N * L * K, 62), W = randn(D * K, 63), b = randn(D, 64), cls = randn(D, 65);
    const pos = randn((1 + L) * D, 66);
    for (let d = 0; d < D; d++) pos[d] = 0; // the sin-cos table's cls row
    const embed = (rows: Float64Array, R: number) => {
      const y = new Float64Array(R * D);
      for (let r = 0; r < R; r++) for (let o = 0; o < D; o++) { let s = b[o]; for (let k = 0; k < K; k++) s += rows[r * K + k] * W[o * K + k]; y[r * D + o] = s; }
      return y;
    };
    const all = embed(patches, N * L); // the old path
    for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) for (let d = 0; d < D; d++) all[(n * L + l) * D + d] += pos[(1 + l) * D + d];
    const want = new Float64Array(N * (1 + V) * D);
    ref.gatherVisible(want, all, cls, idsKeep, N, L, V, D);
    const pv = new Float64Array(N * V * K), got = new Float64Array(N * (1 + V) * D);
    ref.gatherPatches(pv, patches, idsKeep, N, L, V, K);
    ref.embedVisible(got, embed(pv, N * V), cls, idsKeep, pos, N, L, V, D);
    expect(Array.from(got)).toEqual(Array.from(want));
  });
});

describe('masking reference gradients (finite differences)', () => {
  const [N, L, V, D] = [2, 5, 2, 3];
  const { idsKeep, idsRestore } = ref.randomMasking(noise(N * L, 41), N, L, V);

  it('gatherVisibleBackward', () => {
    const x = randn(N * L * D, 42), cls = randn(D, 43), w = randn(N * (1 + V) * D, 44);
    const loss = (i: Record<string, Float64Array>) => {
      const out = new Float64Array(N * (1 + V) * D);
      ref.gatherVisible(out, i.x, i.cls, idsKeep, N, L, V, D);
      return dot(out, w);
    };
    const dx = randn(N * L * D, 45), dcls = new Float64Array(D); // dx is assigned, garbage must go
    ref.gatherVisibleBackward(dx, dcls, w, idsKeep, N, L, V, D);
    checkGradients({ x, cls }, loss, { x: dx, cls: dcls });
  });

  it('embedVisibleBackward', () => {
    const x = randn(N * V * D, 71), cls = randn(D, 72), pos = randn((1 + L) * D, 73), w = randn(N * (1 + V) * D, 74);
    const loss = (i: Record<string, Float64Array>) => {
      const out = new Float64Array(N * (1 + V) * D);
      ref.embedVisible(out, i.x, i.cls, idsKeep, pos, N, L, V, D);
      return dot(out, w);
    };
    const dx = randn(N * V * D, 75), dcls = new Float64Array(D);
    ref.embedVisibleBackward(dx, dcls, w, N, L, V, D);
    checkGradients({ x, cls }, loss, { x: dx, cls: dcls });
  });

  it('insertMaskTokensBackward', () => {
    const x = randn(N * (1 + V) * D, 46), maskToken = randn(D, 47), w = randn(N * (1 + L) * D, 48);
    const loss = (i: Record<string, Float64Array>) => {
      const out = new Float64Array(N * (1 + L) * D);
      ref.insertMaskTokens(out, i.x, i.maskToken, idsRestore, N, L, V, D);
      return dot(out, w);
    };
    const dx = randn(N * (1 + V) * D, 49), dm = new Float64Array(D);
    ref.insertMaskTokensBackward(dx, dm, w, idsRestore, N, L, V, D);
    checkGradients({ x, maskToken }, loss, { x: dx, maskToken: dm });
  });
});
