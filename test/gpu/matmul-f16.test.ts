/**
 * The mixed-precision matmul (shaders/matmul_f16.wgsl): vec4_f16 against float64 on f16-rounded
 * operands (what it computes, up to f32 summation: the f32 tolerance), and against the unrounded
 * product within f16's rounding bound; the packs' overflow flag; autocast. Needs `shader-f16`
 * (lavapipe has it); on an adapter without it the tests say so and skip.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import { f16round, f16Saturate, F16_MAX } from '../../src/core/f16';
import type { Gpu } from '../../src/gpu/device';
import { Recorder } from '../../src/gpu/kernels';
import * as gpuOps from '../../src/gpu/ops/matmul';
import * as ref from '../../src/ref/matmul';
import { expectClose, expectSameBits, gpuTensor, matmulTol, randn, read, readU32, run, testGpu } from '../helpers';

const LAYOUTS = ['nn', 'nt', 'tn'] as const;
const SHAPES: Array<[string, number, number, number]> = [
  ['one column quad', 3, 4, 8],
  ['vec4-aligned, odd M', 67, 36, 20], // 'tn' needs M % 4: that case is the next shape
  ['tn-aligned', 68, 36, 20],
  ['ViT-Tiny fc1, 8 images (R = 8·17)', 136, 768, 192],
];

async function f16Gpu(ctx: TestContext): Promise<Gpu> {
  const gpu = await testGpu();
  if (!gpu.hasF16) ctx.skip(`${gpu.adapter.description} has no shader-f16`);
  return gpu;
}

const rounded = (x: Float64Array): Float64Array => x.map(f16Saturate);

describe('f16round (float64 model of f32 → f16)', () => {
  it('rounds to 11 significant bits, ties to even, keeps subnormals, overflows past 65504', () => {
    expect(f16round(1 / 3)).toBe(0.333251953125);
    expect(f16round(2049)).toBe(2048); // tie between 2048 and 2050: the even significand
    expect(f16round(2051)).toBe(2052);
    expect(f16round(65504)).toBe(65504);
    expect(f16round(65519)).toBe(65504);
    expect(f16round(65520)).toBe(Infinity); // the tie with 2¹⁶ rounds to the (infinite) even one
    expect(f16round(-1e6)).toBe(-Infinity);
    expect(f16round(2 ** -24)).toBe(2 ** -24); // the smallest subnormal
    expect(f16round(2 ** -25)).toBe(0); // a tie with 0: even
    expect(f16round(3 * 2 ** -25)).toBe(2 ** -23);
    expect(f16round(2 ** -14 + 2 ** -25)).toBe(2 ** -14); // the smallest normal's step is 2⁻²⁴
    expect(f16Saturate(1e9)).toBe(F16_MAX);
    expect(f16Saturate(-Infinity)).toBe(-F16_MAX);
  });
});

describe('matmul vec4_f16 and tiled_f16 (GPU vs float64)', () => {
  for (const variant of gpuOps.F16_VARIANTS) {
    for (const layout of LAYOUTS) {
      for (const [name, M, N, K] of SHAPES) {
        if (!gpuOps.vec4Aligned(N, K, layout, M)) continue;
        it(`${variant} ${layout} ${name} M=${M} N=${N} K=${K}: bias and accumulate, and every epilogue`, async (ctx) => {
          const gpu = await f16Gpu(ctx);
          const a = randn(M * K, 1), b = randn(K * N, 2), bias = randn(N, 3), c0 = randn(M * N, 4), aux = randn(M * N, 5, 3);
          const [ta, tb, tbias] = [gpuTensor(gpu, a), gpuTensor(gpu, b), gpuTensor(gpu, bias)];
          const [ah, bh] = [rounded(a), rounded(b)];
          const tol = matmulTol(K);

          // C += a·b + bias: exact against the f16-rounded operands (f32 summation), close to the unrounded ones.
          const want = Float64Array.from(c0);
          ref.matmul(want, ah, bh, bias, M, N, K, layout, true);
          const c = gpuTensor(gpu, c0);
          await run(gpu, (rec) => gpuOps.matmul(rec, c, ta, tb, tbias, M, N, K, layout, true, variant));
          const got = await read(gpu, c);
          expectClose(got, want, tol, `C += (${layout}, rounded operands)`);
          const exact = Float64Array.from(c0);
          ref.matmul(exact, a, b, bias, M, N, K, layout, true);
          // Each operand is off by at most 2⁻¹¹ relative: |Δ(a·b)| ≤ (2·2⁻¹¹ + 2⁻²²)·Σ|a||b|.
          const absProduct = new Float64Array(M * N);
          ref.matmul(absProduct, a.map(Math.abs), b.map(Math.abs), null, M, N, K, layout, false);
          const worst = Math.max(...Array.from(got, (g, i) => Math.abs(g - exact[i]) / (2 * 2 ** -11 * absProduct[i] + tol.atol + tol.rtol * Math.abs(exact[i]))));
          expect(worst, 'error vs the unrounded product, over its f16 bound').toBeLessThanOrEqual(1);
          expect(Math.max(...Array.from(got, (g, i) => Math.abs(g - exact[i]))), 'the operands were rounded: not the f32 product').toBeGreaterThan(0);

          for (const kind of ['residual', 'gelu', 'gelu_grad'] as const) {
            const wantE = new Float64Array(M * N), wantAux = Float64Array.from(aux);
            const epi = kind === 'residual' ? { kind, residual: wantAux } : { kind, grad: wantAux };
            ref.matmul(wantE, ah, bh, kind === 'gelu_grad' ? null : bias, M, N, K, layout, false, undefined, epi);
            const ce = gpuTensor(gpu, c0), te = gpuTensor(gpu, aux);
            const gpuEpi = kind === 'residual' ? { kind, residual: te } : { kind, grad: te };
            await run(gpu, (rec) => gpuOps.matmul(rec, ce, ta, tb, kind === 'gelu_grad' ? null : tbias, M, N, K, layout, false, variant, gpuEpi));
            expectClose(await read(gpu, ce), wantE, tol, `${kind} C (${layout})`);
            expectClose(await read(gpu, te), wantAux, tol, `${kind} aux (${layout})`);
          }
          expect((await readU32(gpu, gpuOps.f16OverflowFlag(gpu.device)))[0], 'no operand was out of range').toBe(0);
        });
      }
    }
  }

  it("biasGrad with the f16 variants sums dY's f32 values (bias_backward after the product)", async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const [M, N, K] = [68, 36, 20];
    const a = randn(K * M, 21), b = randn(K * N, 22), db0 = randn(M, 23);
    for (const variant of gpuOps.F16_VARIANTS) {
      const wantDb = Float64Array.from(db0);
      ref.biasBackward(wantDb, a, K, M, true);
      const db = gpuTensor(gpu, db0);
      await run(gpu, (rec) => gpuOps.matmul(rec, gpuTensor(gpu, M * N), gpuTensor(gpu, a), gpuTensor(gpu, b), null, M, N, K, 'tn', true, variant, undefined, db));
      expectClose(await read(gpu, db), wantDb, matmulTol(K), `db (${variant}): f32, not f16-rounded`);
    }
  });

  it('vec4_f16 gives the same bits with Aᵀ shared by subgroups (matmul_f16_subgroups) and without', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    expect(gpu.hasSubgroups).toBe(true); // lavapipe: the shared form is the default
    const plain = Object.create(gpu, { hasSubgroups: { value: false } }) as Gpu;
    expect([gpuOps.vec4ProductShader(gpu, 'vec4_f16'), gpuOps.vec4ProductShader(plain, 'vec4_f16')]).toEqual(['matmul_f16_subgroups', 'matmul_f16']);
    const [N, K] = [100, 88];
    for (const layout of LAYOUTS) {
      const M = layout === 'tn' ? 52 : 51; // 'tn' reads Aᵀ as given, in quads along M
      const [ta, tb, tbias] = [gpuTensor(gpu, randn(M * K, 31)), gpuTensor(gpu, randn(K * N, 32)), gpuTensor(gpu, randn(N, 33))];
      const out = async (on: Gpu): Promise<Float32Array> => {
        const c = gpuTensor(gpu, M * N);
        await run(on, (rec) => gpuOps.matmul(rec, c, ta, tb, tbias, M, N, K, layout, false, 'vec4_f16'));
        return read(gpu, c);
      };
      expectSameBits(await out(gpu), await out(plain), `C (${layout})`);
    }
  });

  it("an operand outside f16's range (1e5, inf, NaN) sets the overflow flag; in range it stays clear", async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const [M, N, K] = [8, 8, 8];
    const flag = gpuOps.f16OverflowFlag(gpu.device);
    const product = async (a: Float64Array, layout: gpuOps.MatmulLayout, operand: 'a' | 'b') => {
      await run(gpu, (rec) => rec.clear(flag));
      const x = randn(M * K, 7);
      const c = gpuTensor(gpu, M * N);
      const [ta, tb] = operand === 'a' ? [gpuTensor(gpu, a), gpuTensor(gpu, x)] : [gpuTensor(gpu, x), gpuTensor(gpu, a)];
      await run(gpu, (rec) => gpuOps.matmul(rec, c, ta, tb, null, M, N, K, layout, false, 'vec4_f16'));
      return { flag: (await readU32(gpu, flag))[0], c: await read(gpu, c) };
    };
    for (const layout of LAYOUTS) {
      for (const operand of ['a', 'b'] as const) {
        const a = randn(M * K, 8);
        expect((await product(a, layout, operand)).flag, `${layout} ${operand} in range`).toBe(0);
        a[37] = 65504; // the largest f16 is in range
        expect((await product(a, layout, operand)).flag, `${layout} ${operand} at 65504`).toBe(0);
        for (const bad of [1e5, -Infinity, NaN]) {
          a[37] = bad;
          const r = await product(a, layout, operand);
          expect(r.flag, `${layout} ${operand} holding ${bad}`).toBe(1);
          if (bad === 1e5) expect(r.c.every(Number.isFinite), 'clamped to ±65504, not inf').toBe(true);
        }
      }
    }
  });

  it('refuses unaligned shapes and adapters without shader-f16 with a message', async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const t = gpuTensor(gpu, 64);
    const rec = new Recorder(gpu);
    expect(() => gpuOps.matmul(rec, t, t, gpuTensor(gpu, 64), null, 3, 5, 4, 'nn', false, 'vec4_f16')).toThrow(/vec4_f16 variant needs .*multiples of 4; got nn 3×5×4/);
    const noF16 = { ...gpu, hasF16: false } as Gpu;
    expect(gpuOps.f16Applies(noF16, { layout: 'nn', M: 4, N: 4, K: 4, f16: true })).toBe(false);
    expect(gpuOps.f16Applies(gpu, { layout: 'nn', M: 4, N: 4, K: 4, f16: true })).toBe(true);
    expect(gpuOps.f16Applies(gpu, { layout: 'nn', M: 4, N: 4, K: 4 })).toBe(false);
    rec.discard();
  });

  it("autocast('f16') makes the f16 twin of the static guess the choice of aligned products, and restores f32 after", async (ctx) => {
    const gpu = await f16Gpu(ctx);
    const rec = new Recorder(gpu);
    const shape = { layout: 'nt' as const, M: 68, N: 36, K: 20 };
    expect(rec.matmulPrecision).toBe('f32');
    rec.autocast('f16', () => {
      expect(rec.matmulPrecision).toBe('f16');
      expect(gpuOps.staticVariantFor(gpu, { ...shape, f16: true })).toBe(gpu.adapter.kind === 'hardware' ? 'tiled_f16' : 'vec4_f16');
      expect(gpuOps.staticVariantFor({ ...gpu, adapter: { ...gpu.adapter, kind: 'hardware' } } as Gpu, { ...shape, f16: true })).toBe('tiled_f16');
      expect(gpuOps.staticVariantFor(gpu, { ...shape, K: 19, f16: true })).toBe(gpuOps.staticMatmulVariant(gpu));
      rec.autocast('f32', () => expect(rec.matmulPrecision).toBe('f32'));
      expect(rec.matmulPrecision).toBe('f16');
    });
    expect(rec.matmulPrecision).toBe('f32');
    rec.discard();
  });
});
