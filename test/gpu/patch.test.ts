import { describe, expect, it } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/patch';
import { linearForward as gpuLinearForward } from '../../src/gpu/ops/matmul';
import * as ref from '../../src/ref/patch';
import { linearForward as refLinearForward } from '../../src/ref/matmul';
import { TOL, expectClose, expectSameBits, gpuTensor, randn, read, run, sameBits, testGpu } from '../helpers';

// [name, N, C, H, W, p]
const SHAPES: Array<[string, number, number, number, number, number]> = [
  ['tiny: one patch', 1, 1, 2, 2, 2],
  ['odd: rectangular 3×2 grid of 5×5', 3, 2, 15, 10, 5],
  ['odd: p = 1', 2, 3, 3, 5, 1],
  ['MNIST 28×28×1, p=4 (49 patches)', 8, 1, 28, 28, 4],
  ['CIFAR 32×32×3, p=4 (64 patches)', 8, 3, 32, 32, 4],
];

/** MAE's `patchify` written as its reshape/einsum: (N,C,h,p,w,q) → 'nchpwq->nhwpqc' → (N, h·w, p·q·C). */
function maePatchify(img: Float64Array, N: number, C: number, H: number, W: number, p: number): Float64Array {
  const h = H / p, w = W / p;
  const out = new Float64Array(N * h * w * p * p * C);
  let o = 0;
  for (let n = 0; n < N; n++)
    for (let hh = 0; hh < h; hh++)
      for (let ww = 0; ww < w; ww++)
        for (let pp = 0; pp < p; pp++)
          for (let qq = 0; qq < p; qq++)
            for (let c = 0; c < C; c++) out[o++] = img[((((n * C + c) * h + hh) * p + pp) * w + ww) * p + qq];
  return out;
}

/** A direct float64 conv2d, kernel p, stride p, weight (D, C, p, p), bias: y[N, D, gh, gw]. */
function conv2d(img: Float64Array, w: Float64Array, b: Float64Array, N: number, C: number, H: number, W: number, p: number, D: number): Float64Array {
  const gh = H / p, gw = W / p;
  const y = new Float64Array(N * D * gh * gw);
  for (let n = 0; n < N; n++)
    for (let d = 0; d < D; d++)
      for (let oy = 0; oy < gh; oy++)
        for (let ox = 0; ox < gw; ox++) {
          let s = b[d];
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < p; ky++)
              for (let kx = 0; kx < p; kx++) s += w[((d * C + c) * p + ky) * p + kx] * img[((n * C + c) * H + oy * p + ky) * W + ox * p + kx];
          y[((n * D + d) * gh + oy) * gw + ox] = s;
        }
  return y;
}

/** conv output y[N, D, gh, gw] as tokens [N, L, D] (what `flatten(2).transpose(1, 2)` gives). */
function convToTokens(y: Float64Array, N: number, D: number, L: number): Float64Array {
  const out = new Float64Array(N * L * D);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) for (let l = 0; l < L; l++) out[(n * L + l) * D + d] = y[(n * D + d) * L + l];
  return out;
}

describe('patchify, patch embedding and unpatchify (GPU vs float64 reference)', () => {
  for (const [name, N, C, H, W, p] of SHAPES) {
    const L = (H / p) * (W / p);
    const K = C * p * p;
    const D = N === 8 ? 192 : 5;

    it(`${name}: N=${N} C=${C} H=${H} W=${W} p=${p}: patchifyTarget is MAE's patchify, unpatchify inverts it`, async () => {
      const gpu = await testGpu();
      const img = randn(N * C * H * W, 1);
      const target = new Float64Array(N * L * K);
      ref.patchifyTarget(target, img, N, C, H, W, p);
      expectClose(target, maePatchify(img, N, C, H, W, p), TOL.exact, 'reference patchifyTarget vs MAE patchify');
      const back = new Float64Array(img.length);
      ref.unpatchify(back, target, N, C, H, W, p);
      expectClose(back, img, TOL.exact, 'reference unpatchify(patchifyTarget(img))');

      const gImg = gpuTensor(gpu, img);
      const gTarget = gpuTensor(gpu, randn(N * L * K, 2)); // "=" must overwrite what is there
      const gBack = gpuTensor(gpu, randn(img.length, 3));
      await run(gpu, (rec) => {
        gpuOps.patchifyTarget(rec, gTarget, gImg, N, C, H, W, p);
        gpuOps.unpatchify(rec, gBack, gTarget, N, C, H, W, p);
      });
      expectClose(await read(gpu, gTarget), target, TOL.exact, 'patchifyTarget');
      expectClose(await read(gpu, gBack), img, TOL.exact, 'unpatchify(patchifyTarget(img))');

      // unpatchify alone on independent patches (a decoder's prediction).
      const pred = randn(N * L * K, 4);
      const want = new Float64Array(img.length);
      ref.unpatchify(want, pred, N, C, H, W, p);
      const gImg2 = gpuTensor(gpu, img.length);
      await run(gpu, (rec) => gpuOps.unpatchify(rec, gImg2, gpuTensor(gpu, pred), N, C, H, W, p));
      expectClose(await read(gpu, gImg2), want, TOL.exact, 'unpatchify');
    });

    it(`${name}: patchifyTarget with norm_pix standardises each patch in the same pass`, async () => {
      const gpu = await testGpu();
      // An offset per pixel, so that every patch has a mean to remove.
      const img = randn(N * C * H * W, 11, 1.5).map((v, i) => Math.fround(v + 1.5 + 0.01 * (i % 89)));
      const want = new Float64Array(N * L * K);
      ref.patchifyTarget(want, img, N, C, H, W, p, true);
      const raw = maePatchify(img, N, C, H, W, p);
      const row = raw.subarray(0, K), mean = row.reduce((a, b) => a + b, 0) / K;
      const sd = Math.sqrt(row.reduce((a, b) => a + (b - mean) ** 2, 0) / (K - 1) + 1e-6);
      expect(want[K - 1], 'reference: the first patch\'s last value, by hand').toBeCloseTo((raw[K - 1] - mean) / sd, 12);

      const gTarget = gpuTensor(gpu, randn(N * L * K, 12)); // "=" must overwrite
      await run(gpu, (rec) => gpuOps.patchifyTarget(rec, gTarget, gpuTensor(gpu, img), N, C, H, W, p, true));
      expectClose(await read(gpu, gTarget), want, TOL.reduction, 'patchifyTarget with norm_pix');
    });

    it(`${name}: patchifyConv + linearForward is the p×p stride-p conv (D=${D})`, async () => {
      const gpu = await testGpu();
      const img = randn(N * C * H * W, 5);
      const w = randn(D * K, 6); // conv weight (D, C, p, p), viewed (D, C·p·p)
      const b = randn(D, 7);
      const want = convToTokens(conv2d(img, w, b, N, C, H, W, p, D), N, D, L);

      const patches = new Float64Array(N * L * K);
      ref.patchifyConv(patches, img, N, C, H, W, p);
      const y = new Float64Array(N * L * D);
      refLinearForward(y, patches, w, b, N * L, K, D);
      expectClose(y, want, { atol: 1e-12, rtol: 1e-12 }, 'reference patchifyConv + linearForward vs conv2d');

      const gPatches = gpuTensor(gpu, randn(N * L * K, 8));
      const gy = gpuTensor(gpu, N * L * D);
      await run(gpu, (rec) => {
        gpuOps.patchifyConv(rec, gPatches, gpuTensor(gpu, img), N, C, H, W, p);
        gpuLinearForward(rec, gy, gPatches, gpuTensor(gpu, w), gpuTensor(gpu, b), N * L, K, D);
      });
      expectClose(await read(gpu, gPatches), patches, TOL.exact, 'patchifyConv');
      expectClose(await read(gpu, gy), want, TOL.reduction, 'patch embedding vs conv2d');
    });
  }

  it('patchifyConv is deterministic and its order differs from the target order (C > 1)', async () => {
    const gpu = await testGpu();
    const [N, C, H, W, p] = [2, 3, 8, 8, 4];
    const img = gpuTensor(gpu, randn(N * C * H * W, 9));
    const outs: Float32Array[] = [];
    for (let i = 0; i < 2; i++) {
      const t = gpuTensor(gpu, N * C * H * W);
      await run(gpu, (rec) => gpuOps.patchifyConv(rec, t, img, N, C, H, W, p));
      outs.push(await read(gpu, t));
    }
    expectSameBits(outs[1], outs[0], 'patchifyConv');
    const target = gpuTensor(gpu, N * C * H * W);
    await run(gpu, (rec) => gpuOps.patchifyTarget(rec, target, img, N, C, H, W, p));
    expect(sameBits(await read(gpu, target), outs[0])).toBe(false);
  });

  // [N, C, H, W, p]: P = 48 (ViT-Tiny's 4×4×3, 2×2 patches per image) and P = 147 (7×7×3: odd,
  // a multiple of no workgroup or vector width; 3×2 patches per image).
  for (const [N, C, H, W, p] of [[2, 3, 8, 8, 4], [3, 3, 21, 14, 7]]) {
    it(`patchifyTarget with norm_pix is stable for a large offset with a small spread (two-pass), P=${C * p * p}`, async () => {
      const gpu = await testGpu();
      // Large offset, small spread: E[x²] − E[x]² would lose every digit here; two passes do not.
      const img = randn(N * C * H * W, 13, 0.01).map((v) => Math.fround(v + 100));
      const want = new Float64Array(img.length);
      ref.patchifyTarget(want, img, N, C, H, W, p, true);
      const out = gpuTensor(gpu, img.length);
      await run(gpu, (rec) => gpuOps.patchifyTarget(rec, out, gpuTensor(gpu, img), N, C, H, W, p, true));
      // A float32 mean of 48 values near 100 is good to ~1e-5, i.e. a few 1e-3 of the 0.006
      // standard deviation, and every standardised value carries that; the running sum's
      // rounding grows as √P (P roundings, each relative to a total that grows with P, divided
      // by P), hence the √(P/48) (lavapipe: 2.2e-3 at P = 48, 4.5e-3 at P = 147). One pass would
      // be wrong outright: E[x²] ≈ 1e4 holds the variance 3e-5 below its float32 resolution.
      const P = C * p * p;
      expectClose(await read(gpu, out), want, { atol: 5e-3 * Math.sqrt(P / 48), rtol: 0 }, `norm_pix target with a large offset, P=${P}`);
    });
  }

  it('patchifyTarget with norm_pix: patches beyond 65535 workgroups of 64 (2-D grid), bit-identical on rerun', async () => {
    const gpu = await testGpu();
    // p = 1, C = 2: a patch is one pixel's two channels (P = 2); 2048·2049 patches need a second grid row.
    const [N, C, H, W, p] = [1, 2, 2048, 2049, 1];
    // Channel 1 at least 0.5 above channel 0: with two values a ≈ b, (a − mean)/sd is ill-conditioned
    // in float32 (one ulp of a over a tiny sd), whatever the kernel does.
    const img = randn(N * C * H * W, 14);
    const plane = H * W, spread = randn(plane, 15, 0.25);
    for (let k = 0; k < plane; k++) img[plane + k] = Math.fround(img[k] + 0.75 + spread[k]);
    const want = new Float64Array(img.length);
    ref.patchifyTarget(want, img, N, C, H, W, p, true);
    const gImg = gpuTensor(gpu, img);
    const outs = [gpuTensor(gpu, img.length), gpuTensor(gpu, img.length)];
    for (const out of outs) await run(gpu, (rec) => gpuOps.patchifyTarget(rec, out, gImg, N, C, H, W, p, true));
    const got = await read(gpu, outs[0]);
    expectClose(got, want, TOL.reduction, 'norm_pix target on a 2-D grid');
    expectSameBits(await read(gpu, outs[1]), got, 'norm_pix target on rerun');
  });

  it('rejects an image that is not a whole number of patches', async () => {
    const gpu = await testGpu();
    await expect(run(gpu, (rec) => gpuOps.patchifyConv(rec, gpuTensor(gpu, 64), gpuTensor(gpu, 64), 1, 1, 6, 6, 4))).rejects.toThrow(/not a whole number/);
  });
});

describe('addPosEmbed (GPU vs float64 reference)', () => {
  // [name, N, L, D, posStart, table]
  const cases: Array<[string, number, number, number, number, Float64Array]> = [
    ['tiny', 1, 1, 4, 0, randn(4, 12)],
    ['odd, cls row skipped at an unaligned offset', 3, 7, 12, 12, randn(8 * 12, 13)],
    ['ViT-Tiny encoder, 64 patches, cls row skipped', 8, 64, 192, 192, Float64Array.from(ref.posEmbed2d(192, 8))],
    ['decoder, 1+64 tokens, cls row (zeros) included', 8, 65, 128, 0, Float64Array.from(ref.posEmbed2d(128, 8))],
  ];
  for (const [name, N, L, D, posStart, pos] of cases) {
    it(`${name}: N=${N} L=${L} D=${D} posStart=${posStart}`, async () => {
      const gpu = await testGpu();
      const x = randn(N * L * D, 11);
      const want = Float64Array.from(x);
      ref.addPosEmbed(want, pos, N, L, D, posStart);
      const gx = gpuTensor(gpu, x);
      await run(gpu, (rec) => gpuOps.addPosEmbed(rec, gx, gpuTensor(gpu, pos), N, L, D, posStart));
      expectClose(await read(gpu, gx), want, TOL.elementwise, 'x + pos');
    });
  }
});

describe('posEmbed2d (recipe §4, MAE get_2d_sincos_pos_embed)', () => {
  it('D=192 on an 8×8 grid matches values printed by MAE\'s numpy code', () => {
    const pe = ref.posEmbed2d(192, 8);
    expect(pe.length).toBe(65 * 192);
    // [row, col, channel, value] from MAE's get_2d_sincos_pos_embed(192, 8, cls_token=True).astype(float32).
    const fixture: Array<[number, number, number, number]> = [
      [3, 5, 0, -0.9589242935180664], [3, 5, 1, -0.8335087895393372], [3, 5, 17, 0.190389946103096],
      [3, 5, 47, 0.0006057638092897832], [3, 5, 48, 0.28366219997406006], [3, 5, 49, -0.5525062084197998],
      [3, 5, 95, 0.9999998211860657], [3, 5, 96, 0.14112000167369843], [3, 5, 97, 0.6173582077026367],
      [3, 5, 143, 0.0003634582972154021], [3, 5, 144, -0.9899924993515015], [3, 5, 191, 0.9999999403953552],
      [7, 7, 0, 0.6569865942001343], [7, 7, 49, 0.8750022053718567], [7, 7, 96, 0.6569865942001343],
      [0, 1, 0, 0.8414709568023682], [0, 1, 1, 0.7348219752311707], [0, 1, 48, 0.5403022766113281],
      [0, 1, 96, 0], [0, 1, 144, 1], [0, 1, 191, 1],
    ];
    for (const [r, c, ch, v] of fixture) expect(pe[(1 + r * 8 + c) * 192 + ch], `row ${r} col ${c} channel ${ch}`).toBe(v);
    const pe128 = ref.posEmbed2d(128, 8);
    expect(pe128[(1 + 2 * 8 + 6) * 128 + 5]).toBe(0.9890720844268799);
    expect(pe128[(1 + 2 * 8 + 6) * 128 + 64 + 33]).toBe(0.07094825059175491);
  });

  it('follows the formula: columns in the first half, rows in the second, sin then cos', () => {
    const D = 192, g = 8, q = D / 4;
    const pe = ref.posEmbed2dFloat64(D, g);
    const omega = (k: number) => Math.pow(10000, -k / q);
    for (const [h, w] of [[0, 0], [3, 5], [5, 3], [7, 1]]) {
      const row = (1 + h * g + w) * D;
      for (const k of [0, 1, 2, 23, 47]) {
        expect(pe[row + k]).toBeCloseTo(Math.sin(w * omega(k)), 14);
        expect(pe[row + q + k]).toBeCloseTo(Math.cos(w * omega(k)), 14);
        expect(pe[row + 2 * q + k]).toBeCloseTo(Math.sin(h * omega(k)), 14);
        expect(pe[row + 3 * q + k]).toBeCloseTo(Math.cos(h * omega(k)), 14);
      }
    }
    // Hand values: ω_0 = 1, so channel 0 of patch (row 3, col 5) is sin 5 and channel D/2 is sin 3.
    expect(pe[(1 + 3 * 8 + 5) * D]).toBeCloseTo(-0.958924274663138, 15);
    expect(pe[(1 + 3 * 8 + 5) * D + 96]).toBeCloseTo(0.141120008059867, 15);
    // ω_1 = 10000^(-1/48) = 0.825404185268018; cos(5·ω_1) in channel 48 + 1.
    expect(pe[(1 + 3 * 8 + 5) * D + 49]).toBeCloseTo(Math.cos(5 * 0.825404185268018), 14);
  });

  it("equals a literal port of MAE's get_2d_sincos_pos_embed (meshgrid(w, h), w first)", () => {
    const port = (embedDim: number, gridSize: number): Float64Array => {
      const oneD = (dim: number, pos: number[]): number[][] => {
        const omega = Array.from({ length: dim / 2 }, (_, k) => 1 / 10000 ** (k / (dim / 2)));
        return pos.map((m) => [...omega.map((o) => Math.sin(m * o)), ...omega.map((o) => Math.cos(m * o))]);
      };
      // np.meshgrid(grid_w, grid_h): grid[0][i][j] = w_j, grid[1][i][j] = h_i; reshape(-1) is row-major.
      const g0: number[] = [], g1: number[] = [];
      for (let i = 0; i < gridSize; i++) for (let j = 0; j < gridSize; j++) { g0.push(j); g1.push(i); }
      const embH = oneD(embedDim / 2, g0); // MAE calls it emb_h, but grid[0] holds the column
      const embW = oneD(embedDim / 2, g1);
      const rows = [new Array(embedDim).fill(0), ...embH.map((r, i) => [...r, ...embW[i]])];
      return Float64Array.from(rows.flat());
    };
    for (const [D, g] of [[192, 8], [128, 8], [16, 3], [4, 1], [192, 7]]) {
      expectClose(ref.posEmbed2dFloat64(D, g), port(D, g), TOL.exact, `posEmbed2d(${D}, ${g})`);
      expectClose(ref.posEmbed2d(D, g), Float32Array.from(port(D, g)), TOL.exact, `posEmbed2d(${D}, ${g}) float32`);
    }
  });

  it('has a zero cls row, drops it on request, and handles rectangular grids', () => {
    const D = 8;
    const withCls = ref.posEmbed2d(D, [2, 3]);
    const without = ref.posEmbed2d(D, [2, 3], false);
    expect(withCls.length).toBe(7 * D);
    expect(Array.from(withCls.subarray(0, D))).toEqual(new Array(D).fill(0));
    expect(Array.from(without)).toEqual(Array.from(withCls.subarray(D)));
    // patch l = 1·3 + 2 (row 1, col 2): channel 0 = sin(col), channel D/2 = sin(row).
    expect(without[5 * D]).toBe(Math.fround(Math.sin(2)));
    expect(without[5 * D + D / 2]).toBe(Math.fround(Math.sin(1)));
    expect(gpuOps.posEmbed2d).toBe(ref.posEmbed2d);
    expect(() => ref.posEmbed2d(6, 2)).toThrow(/multiple of 4/);
  });
});
