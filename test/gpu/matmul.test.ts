import { describe, expect, it } from 'vitest';
import { Arena, ArenaLayout, upload } from '../../src/gpu/buffers';
import { GpuError } from '../../src/gpu/device';
import { Recorder, type Binding, type KernelSpec, type Param, type Tensor, type TextureCopy } from '../../src/gpu/kernels';
import * as gpuOps from '../../src/gpu/ops/matmul';
import { addInPlace, biasGeluBackward, biasGeluForward, gelu, geluGrad } from '../../src/ref/elementwise';
import * as ref from '../../src/ref/matmul';
import { TOL, checkGradients, dot, expectClose, expectSameBits, gpuTensor, matmulTol, randn, read, run, testGpu, type Tolerance } from '../helpers';

const VARIANTS = ['tiled', 'blocked', 'vec4', 'vec4_sampled'] as const;
const LAYOUTS = ['nn', 'nt', 'tn'] as const;

const SHAPES: Array<[string, number, number, number]> = [
  ['tiny', 1, 1, 1],
  ['odd', 7, 13, 5],
  ['not tile multiples', 67, 33, 19],
  // N and K multiples of 4 (what matmul_vec4 needs; the shapes above test its fallback), M odd,
  // N not a multiple of the 64 columns of a vec4 workgroup, M not a multiple of its 8 rows.
  ['vec4-aligned, odd M', 67, 36, 20],
  ['one column quad', 3, 4, 8],
  // M a multiple of 4 with K odd: matmul_vec4 runs 'tn' (it needs M, N % 4) and 'nn'/'nt' fall back.
  ['vec4 tn-aligned, odd K', 68, 36, 19],
  ['one row quad, one workgroup', 4, 8, 4],
  ['ViT-Tiny qkv, 25% visible, 4 images', 68, 576, 192],
  ['ViT-Tiny fc2', 65, 192, 768],
  ['ViT-Tiny fc1, 8 images (R = 8·17)', 136, 768, 192],
];

describe('matmul (GPU vs float64 reference)', () => {
  for (const variant of VARIANTS) {
    for (const layout of LAYOUTS) {
      for (const [name, M, N, K] of SHAPES) {
        it(`${variant} ${layout} ${name} M=${M} N=${N} K=${K}, bias and accumulate`, async () => {
          const gpu = await testGpu();
          const a = randn(M * K, 1);
          const b = randn(K * N, 2);
          const bias = randn(N, 3);
          const c0 = randn(M * N, 4);
          const want = Float64Array.from(c0);
          ref.matmul(want, a, b, bias, M, N, K, layout, true);
          const c = gpuTensor(gpu, c0);
          await run(gpu, (rec) => gpuOps.matmul(rec, c, gpuTensor(gpu, a), gpuTensor(gpu, b), gpuTensor(gpu, bias), M, N, K, layout, true, variant));
          expectClose(await read(gpu, c), want, matmulTol(K), `C (${variant} ${layout})`);

          const plain = new Float64Array(M * N);
          ref.matmul(plain, a, b, null, M, N, K, layout, false);
          const c2 = gpuTensor(gpu, c0); // non-zero start: "=" must overwrite it
          await run(gpu, (rec) => gpuOps.matmul(rec, c2, gpuTensor(gpu, a), gpuTensor(gpu, b), null, M, N, K, layout, false, variant));
          expectClose(await read(gpu, c2), plain, matmulTol(K), `C = (${variant} ${layout})`);
        });
      }
    }
  }

  for (const layout of LAYOUTS) {
    it(`is deterministic (${layout}, default variant, and vec4 with the gelu epilogue): the same inputs give bit-identical outputs`, async () => {
      const gpu = await testGpu();
      const [M, N, K] = [68, 130, 96];
      const a = gpuTensor(gpu, randn(M * K, 5));
      const b = gpuTensor(gpu, randn(K * N, 6));
      const bias = gpuTensor(gpu, randn(N, 7));
      const outs: Float32Array[][] = [];
      for (let i = 0; i < 2; i++) {
        const c = gpuTensor(gpu, M * N), c2 = gpuTensor(gpu, M * N), g = gpuTensor(gpu, M * N);
        await run(gpu, (rec) => {
          gpuOps.matmul(rec, c, a, b, null, M, N, K, layout);
          gpuOps.matmul(rec, c2, a, b, bias, M, N, K, layout, false, 'vec4', { kind: 'gelu', grad: g });
        });
        outs.push([await read(gpu, c), await read(gpu, c2), await read(gpu, g)]);
      }
      expectSameBits(outs[1][0], outs[0][0], `C (${layout})`);
      expectSameBits(outs[1][1], outs[0][1], `gelu(h) (${layout}, vec4)`);
      expectSameBits(outs[1][2], outs[0][2], `gelu'(h) (${layout}, vec4)`);
    });
  }
});

/** Records the kernels a recording dispatches (entry points, in order) without running them. */
function dispatchedEntries(gpu: Awaited<ReturnType<typeof testGpu>>, record: (rec: Recorder) => void): string[] {
  const entries: string[] = [];
  const rec = new (class extends Recorder {
    override dispatch(spec: KernelSpec, bindings: readonly (Binding | undefined)[], params: readonly Param[] | null, workgroups: readonly [number, number?, number?]): void {
      entries.push(spec.entry);
      super.dispatch(spec, bindings, params, workgroups);
    }
    override copyToTextures(label: string, copies: readonly TextureCopy[]): void {
      entries.push(`${label} (${copies.map((c) => c.texels).join(', ')} texels)`);
      super.copyToTextures(label, copies);
    }
  })(gpu);
  record(rec);
  rec.discard();
  return entries;
}

describe('matmul_vec4: alignment and fallback', () => {
  it('vec4Aligned is layout-aware: N % 4 always, K % 4 for nn/nt, M % 4 for tn; old (N, K) callers keep the nt rule', () => {
    expect(gpuOps.vec4Aligned(36, 20)).toBe(true);
    expect(gpuOps.vec4Aligned(36, 19)).toBe(false);
    expect(gpuOps.vec4Aligned(34, 20)).toBe(false);
    for (const layout of ['nn', 'nt'] as const) {
      expect(gpuOps.vec4Aligned(36, 20, layout, 67)).toBe(true);
      expect(gpuOps.vec4Aligned(36, 19, layout, 68)).toBe(false);
    }
    expect(gpuOps.vec4Aligned(36, 19, 'tn', 68)).toBe(true);
    expect(gpuOps.vec4Aligned(36, 20, 'tn', 67)).toBe(false);
    expect(gpuOps.vec4Aligned(34, 20, 'tn', 68)).toBe(false);
    expect(gpuOps.vec4Aligned(36, 20, 'tn')).toBe(false); // tn needs M
  });

  it("dispatches matmul_vec4 when aligned (on subgroups of 8 lanes A as stored and B transposed for nt; otherwise A transposed for nn, A and B in one dispatch for nt), and falls back to 'blocked' otherwise", async () => {
    const gpu = await testGpu();
    expect(gpu.hasSubgroups).toBe(true); // lavapipe and SwiftShader both have them
    expect(gpuOps.subgroupsOfEight(gpu)).toBe(gpu.adapter.kind === 'lavapipe'); // 8 lanes; SwiftShader's are 4
    const plain = Object.create(gpu, { hasSubgroups: { value: false } }) as typeof gpu;
    expect(gpuOps.subgroupsOfEight(plain)).toBe(false);
    expect(gpuOps.subgroupsOfEight(subgroupsOf(gpu, 4))).toBe(false);
    expect(gpuOps.subgroupsOfEight(subgroupsOf(gpu, 8))).toBe(true);
    const entries = (layout: gpuOps.MatmulLayout, M: number, N: number, K: number, on = plain): string[] => {
      const [a, b, c] = [gpuTensor(gpu, M * K), gpuTensor(gpu, K * N), gpuTensor(gpu, M * N)];
      return dispatchedEntries(on, (rec) => gpuOps.matmul(rec, c, a, b, null, M, N, K, layout, false, 'vec4'));
    };
    const eight = subgroupsOf(gpu, 8);
    expect(entries('tn', 68, 36, 19, eight)).toEqual(['matmul_vec4']);
    expect(entries('nn', 67, 36, 20, eight)).toEqual(['matmul_vec4']);
    expect(entries('nt', 67, 36, 20, eight)).toEqual(['transpose_vec4', 'matmul_vec4']);
    expect(entries('nt', 68, 34, 20, eight)).toEqual(['matmul_blocked']);
    expect(entries('nn', 67, 36, 20, subgroupsOf(gpu, 4))).toEqual(['transpose_vec4', 'matmul_vec4']);
    expect(entries('tn', 68, 36, 19)).toEqual(['matmul_vec4']);
    expect(entries('tn', 67, 36, 20)).toEqual(['matmul_blocked']); // M % 4 ≠ 0
    expect(entries('tn', 68, 34, 20)).toEqual(['matmul_blocked']); // N % 4 ≠ 0
    expect(entries('nn', 67, 36, 20)).toEqual(['transpose_vec4', 'matmul_vec4']);
    expect(entries('nn', 67, 36, 19)).toEqual(['matmul_blocked']); // K % 4 ≠ 0
    expect(entries('nt', 67, 36, 20)).toEqual(['transpose_vec4_pair', 'matmul_vec4']);
    expect(entries('nt', 68, 34, 20)).toEqual(['matmul_blocked']);
  });

  it("dispatches matmul_vec4_sampled after copying its operands into textures as they are stored and transposing those not K-major (one dispatch), and falls back to vec4's rules where the textures would not fit", async () => {
    const gpu = await testGpu();
    expect(gpu.hasFloat32Filterable).toBe(true); // lavapipe and SwiftShader both have it: the variant is tested here
    const entries = (layout: gpuOps.MatmulLayout, M: number, N: number, K: number, t = [gpuTensor(gpu, M * K), gpuTensor(gpu, K * N), gpuTensor(gpu, M * N)]): string[] =>
      dispatchedEntries(gpu, (rec) => gpuOps.matmul(rec, t[2], t[0], t[1], null, M, N, K, layout, false, 'vec4_sampled'));
    const copy = (...texels: number[]) => `matmul_sampled:copy_operands (${texels.join(', ')} texels)`;
    expect(entries('tn', 68, 36, 20)).toEqual([copy(340, 180), 'matmul_vec4_sampled']); // A [K, M], B [K, N]: both K-major
    // A [M, K] copied as it is, then transposed in by pack_a; B [K, N] copied straight in
    expect(entries('nn', 68, 36, 20)).toEqual([copy(340, 180), 'pack_a', 'matmul_vec4_sampled']);
    expect(entries('nt', 68, 36, 20)).toEqual([copy(340, 180), 'pack_operands', 'matmul_vec4_sampled']); // both copied, both transposed
    expect(entries('nt', 67, 36, 20)).toEqual([copy(335, 180), 'pack_operands', 'matmul_vec4_sampled']); // any M
    expect(entries('tn', 68, 36, 19)).toEqual([copy(323, 171), 'matmul_vec4_sampled']); // any K
    expect(entries('nn', 67, 36, 19)).toEqual(['matmul_blocked']); // not vec4-aligned
    // An operand of more than 2^22 texels (its shader's f32 addressing is exact below that): vec4
    // takes the product (dry recordings: the tensors need not be that large).
    expect(gpuOps.sampledApplies(gpu, { layout: 'tn', M: 4096, N: 4, K: 4096 })).toBe(true);
    expect(gpuOps.sampledApplies(gpu, { layout: 'tn', M: 4096, N: 4, K: 4097 })).toBe(false);
    expect(entries('tn', 4096, 4, 4097, [gpuTensor(gpu, 16), gpuTensor(gpu, 16), gpuTensor(gpu, 16)])).toEqual(['matmul_vec4']);
    // The static guess: vec4_sampled on SwiftShader only, and only where it can run.
    const swiftshader = Object.create(gpu, { adapter: { value: { ...gpu.adapter, kind: 'swiftshader' } } }) as typeof gpu;
    expect(gpuOps.staticMatmulVariant(swiftshader)).toBe('vec4_sampled');
    expect(gpuOps.staticMatmulVariant(Object.create(swiftshader, { hasFloat32Filterable: { value: false } }) as typeof gpu)).toBe('vec4');
    expect(gpuOps.staticMatmulVariant(gpu)).toBe(({ hardware: 'tiled', swiftshader: 'vec4_sampled' } as Record<string, string>)[gpu.adapter.kind] ?? 'vec4');
    // Asked for on a device without float32-filterable: refused, saying what to use.
    const plain = Object.create(gpu, { hasFloat32Filterable: { value: false } }) as typeof gpu;
    expect(gpuOps.sampledApplies(plain, { layout: 'nn', M: 68, N: 36, K: 20 })).toBe(false);
    const rec = new Recorder(plain);
    expect(() => gpuOps.matmul(rec, gpuTensor(gpu, 68 * 36), gpuTensor(gpu, 68 * 20), gpuTensor(gpu, 20 * 36), null, 68, 36, 20, 'nn', false, 'vec4_sampled')).toThrow(/float32-filterable .*use vec4/);
    rec.discard();
  });

  for (const layout of LAYOUTS) {
    it(`vec4 and vec4_sampled give the same bits, with op(A)'s rows shared by subgroups and without (${layout}, bias and the gelu epilogue; operands of two sizes share the textures of a size class)`, async () => {
      const gpu = await testGpu();
      // lavapipe and SwiftShader both have subgroups: the products that share op(A)'s rows through
      // subgroupBroadcast (common/matmul_vec4_subgroups; 'nn' and 'nt' read A along K, not
      // transposed) are the default; the plain ones run on a view of the device without them.
      expect(gpu.hasSubgroups).toBe(true);
      const plain = Object.create(gpu, { hasSubgroups: { value: false } }) as typeof gpu;
      expect([gpuOps.vec4ProductShader(gpu, 'vec4'), gpuOps.vec4ProductShader(plain, 'vec4')]).toEqual(['matmul_subgroups', 'matmul']);
      expect([gpuOps.vec4ProductShader(gpu, 'vec4_sampled'), gpuOps.vec4ProductShader(plain, 'vec4_sampled')]).toEqual(['matmul_sampled_subgroups', 'matmul_sampled']);
      // Subgroups wider than a workgroup's 8 invocations (GPUs): the plain form.
      const wide = subgroupsOf(gpu, 32);
      expect(gpuOps.vec4ProductShader(wide, 'vec4')).toBe('matmul');
      // K = 6·16 (16 k per loop iteration), 5·16 + 8 (then four at a time) and, for 'tn', 5·16 + 8 + 2
      // (then the last two alone); M = 51: rows past M read clamped, as vec4's transpose writes them.
      const shapes = layout === 'tn' ? [[68, 128, 96], [52, 100, 88], [52, 100, 90]] : [[68, 128, 96], [51, 100, 88]];
      for (const [M, N, K] of shapes) {
        const a = gpuTensor(gpu, randn(M * K, 8 + M)), b = gpuTensor(gpu, randn(K * N, 9 + M)), bias = gpuTensor(gpu, randn(N, 10));
        const out = async (variant: gpuOps.MatmulVariant, on: typeof gpu): Promise<Float32Array[]> => {
          const c = gpuTensor(gpu, M * N), g = gpuTensor(gpu, M * N);
          await run(on, (rec) => gpuOps.matmul(rec, c, a, b, bias, M, N, K, layout, false, variant, { kind: 'gelu', grad: g }));
          return [await read(gpu, c), await read(gpu, g)];
        };
        const vec4 = await out('vec4', plain);
        // On lavapipe 'vec4, shared' reads 'nn' and 'nt' A along K; the 4-lane view transposes it first.
        const forms = { 'vec4, shared': await out('vec4', gpu), 'vec4, shared by 4 lanes': await out('vec4', subgroupsOf(gpu, 4)), 'vec4_sampled, shared': await out('vec4_sampled', gpu), vec4_sampled: await out('vec4_sampled', plain) };
        for (const [form, got] of Object.entries(forms)) {
          expectSameBits(got[0], vec4[0], `gelu(h) ${layout} ${M}×${N}×${K} (${form})`);
          expectSameBits(got[1], vec4[1], `gelu'(h) ${layout} ${M}×${N}×${K} (${form})`);
        }
      }
    });
  }
});

/** A view of the device whose subgroups have `lanes` lanes (as the shader choices see it; products run on the real ones). */
function subgroupsOf<G extends { subgroupSizes?: { min: number; max: number } }>(gpu: G, lanes: number): G {
  return Object.create(gpu, { subgroupSizes: { value: { min: lanes, max: lanes } } }) as G;
}

/** One arena holding c and the epilogue's tensor side by side (as the model's activations do). */
function arenaPair(gpu: Awaited<ReturnType<typeof testGpu>>, n: number, c0: Float64Array, aux0: Float64Array): { c: Tensor; aux: Tensor; arena: Arena } {
  const layout = new ArenaLayout();
  layout.add('c', [n]);
  layout.add('aux', [n]);
  const arena = new Arena(gpu.device, layout, 'matmul-epilogue-test');
  const c = arena.tensor('c'), aux = arena.tensor('aux');
  upload(gpu.device, c, Float32Array.from(c0));
  upload(gpu.device, aux, Float32Array.from(aux0));
  return { c, aux, arena };
}

/**
 * A bias for the GELU epilogues: bias[0] = 0 and the rest spread evenly over [−6, 6]. With row 0
 * of op(A) zero (zeroRow), row 0's pre-activations are exactly the bias, so every shape sees
 * both tails of the exact-erf GELU (Φ through erfc on either sign), its bend, and x = 0 exactly.
 */
const geluBias = (N: number): Float64Array =>
  Float64Array.from({ length: N }, (_, n) => (n === 0 || N < 3 ? 0 : Math.fround(-6 + (12 * (n - 1)) / (N - 2))));

/** Zeroes row m of op(A): A is stored [M,K], or [K,M] for 'tn'. */
function zeroRow(a: Float64Array, layout: gpuOps.MatmulLayout, M: number, K: number, m = 0): void {
  for (let k = 0; k < K; k++) a[layout === 'tn' ? k * M + m : m * K + k] = 0;
}

/** The GELU inputs a test sees reach both tails (|x| ≥ 5.5), the bend near 0, and 0 exactly. */
function expectWideGeluRange(x: Float64Array, what: string): void {
  const [min, max] = x.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
  expect(min, `${what}: the negative tail`).toBeLessThanOrEqual(-5.5);
  expect(max, `${what}: the positive tail`).toBeGreaterThanOrEqual(5.5);
  expect(x.some((v) => v !== 0 && Math.abs(v) < 0.5), `${what}: the bend near 0`).toBe(true);
  expect(x.some((v) => v === 0), `${what}: x = 0 exactly`).toBe(true);
}

describe('fused epilogues (GPU vs float64 reference)', () => {
  const EPILOGUE_SHAPES: Array<[string, number, number, number]> = [
    ['odd', 7, 13, 5],
    ['vec4-aligned, odd M', 67, 36, 20],
    ['vec4 tn-aligned, odd K', 68, 36, 19],
  ];
  for (const variant of VARIANTS) {
    for (const layout of LAYOUTS) {
      for (const [name, M, N, K] of EPILOGUE_SHAPES) {
        it(`${variant} ${layout} ${name} M=${M} N=${N} K=${K}: residual, gelu (saving gelu', and frozen), gelu_grad`, async () => {
          const gpu = await testGpu();
          const a = randn(M * K, 31), b = randn(K * N, 32), bias = geluBias(N), res = randn(M * N, 34), c0 = randn(M * N, 35);
          zeroRow(a, layout, M, K); // row 0 of a·b + bias is the bias itself: see geluBias
          const h = randn(M * N, 36, 6); // a pre-activation over [−6, 6]: gelu_grad reads gelu'(h)
          h[0] = 0;
          expectWideGeluRange(h, 'gelu_grad input h');
          const slope = h.map(geluGrad);
          const [ta, tb, tbias] = [gpuTensor(gpu, a), gpuTensor(gpu, b), gpuTensor(gpu, bias)];
          const tol = matmulTol(K);

          // residual: c = a·b + bias + res, with c and res in one arena
          const want = new Float64Array(M * N);
          ref.matmul(want, a, b, bias, M, N, K, layout, false, undefined, { kind: 'residual', residual: res });
          const r = arenaPair(gpu, M * N, c0, res);
          await run(gpu, (rec) => gpuOps.matmul(rec, r.c, ta, tb, tbias, M, N, K, layout, false, variant, { kind: 'residual', residual: r.aux }));
          expectClose(await read(gpu, r.c), want, tol, `residual C (${variant} ${layout})`);
          expectClose(await read(gpu, r.aux), Float32Array.from(res), TOL.exact, `residual input untouched (${variant} ${layout})`);
          r.arena.destroy();

          // gelu: h = a·b + bias, c = gelu(h), grad = gelu'(h) (written)
          const wantH = new Float64Array(M * N), wantA = new Float64Array(M * N), wantG = new Float64Array(M * N);
          ref.matmul(wantH, a, b, bias, M, N, K, layout);
          expectWideGeluRange(wantH, 'gelu input a·b + bias');
          ref.matmul(wantA, a, b, bias, M, N, K, layout, false, undefined, { kind: 'gelu', grad: wantG });
          expectClose(wantA, wantH.map(gelu), { atol: 0, rtol: 0 }, 'reference gelu');
          expectClose(wantG, wantH.map(geluGrad), { atol: 0, rtol: 0 }, "reference gelu'");
          const g = arenaPair(gpu, M * N, c0, c0);
          await run(gpu, (rec) => gpuOps.matmul(rec, g.c, ta, tb, tbias, M, N, K, layout, false, variant, { kind: 'gelu', grad: g.aux }));
          expectClose(await read(gpu, g.aux), wantG, tol, `gelu' saved (${variant} ${layout})`);
          expectClose(await read(gpu, g.c), wantA, tol, `gelu(h) (${variant} ${layout})`);
          g.arena.destroy();

          // gelu of a frozen layer: c = gelu(h), nothing saved
          const f = gpuTensor(gpu, c0);
          await run(gpu, (rec) => gpuOps.matmul(rec, f, ta, tb, tbias, M, N, K, layout, false, variant, { kind: 'gelu' }));
          expectClose(await read(gpu, f), wantA, tol, `frozen gelu(h) (${variant} ${layout})`);

          // gelu_grad: c = (a·b) · gelu'(h), gelu'(h) read
          const wantD = new Float64Array(M * N);
          ref.matmul(wantD, a, b, null, M, N, K, layout, false, undefined, { kind: 'gelu_grad', grad: slope });
          const d = arenaPair(gpu, M * N, c0, slope);
          await run(gpu, (rec) => gpuOps.matmul(rec, d.c, ta, tb, null, M, N, K, layout, false, variant, { kind: 'gelu_grad', grad: d.aux }));
          expectClose(await read(gpu, d.c), wantD, tol, `gelu_grad C (${variant} ${layout})`);
          expectClose(await read(gpu, d.aux), Float32Array.from(slope), TOL.exact, `gelu_grad's slope untouched (${variant} ${layout})`);
          d.arena.destroy();
        });
      }
    }
  }

  it('refuses an epilogue with accumulate (GPU and reference)', async () => {
    const gpu = await testGpu();
    const [a, b, c, h] = [gpuTensor(gpu, 16), gpuTensor(gpu, 16), gpuTensor(gpu, 16), gpuTensor(gpu, 16)];
    const rec = new Recorder(gpu);
    expect(() => gpuOps.matmul(rec, c, a, b, null, 4, 4, 4, 'nn', true, 'vec4', { kind: 'gelu', grad: h })).toThrow(GpuError);
    expect(() => gpuOps.matmul(rec, c, a, b, null, 4, 4, 4, 'nn', true, 'vec4', { kind: 'gelu', grad: h })).toThrow(/cannot be combined with accumulate/);
    rec.discard();
    const z = new Float64Array(16);
    expect(() => ref.matmul(z, z, z, null, 4, 4, 4, 'nn', true, undefined, { kind: 'residual', residual: z })).toThrow(/accumulate/);
  });
});

describe('fused epilogues in a ViT-Tiny MLP block (R = 8·17 rows, 192 → 768 → 192)', () => {
  const [R, W, hidden] = [8 * 17, 192, 768];
  // The float64 composite the epilogues replace (once for all variants): plain products, then the
  // element-wise reference — bias + GELU, the residual add, GELU's backward on the pre-activation.
  const data = () => {
    const x = randn(R * W, 41), x1 = randn(R * W, 42), dy = randn(R * W, 43);
    const w1 = randn(hidden * W, 44, 0.1), b1 = randn(hidden, 45, 0.5), w2 = randn(W * hidden, 46, 0.05), b2 = randn(W, 47);
    const hPre = new Float64Array(R * hidden), h = new Float64Array(R * hidden), a = new Float64Array(R * hidden);
    ref.linearForward(hPre, x, w1, null, R, W, hidden);
    for (let i = 0; i < R * hidden; i++) h[i] = hPre[i] + b1[i % hidden];
    biasGeluForward(a, hPre, b1, R, hidden);
    const out = new Float64Array(R * W);
    ref.linearForward(out, a, w2, b2, R, hidden, W);
    addInPlace(out, x1, R * W);
    const da = new Float64Array(R * hidden), dh = new Float64Array(R * hidden);
    ref.linearBackward(da, new Float64Array(W * hidden), null, dy, a, w2, R, hidden, W);
    biasGeluBackward(dh, da, hPre, b1, R, hidden);
    return { x, x1, dy, w1, b1, w2, b2, want: { slope: h.map(geluGrad), a, out, dh } };
  };
  let memo: ReturnType<typeof data> | undefined;
  const composite = (): ReturnType<typeof data> => (memo ??= data());

  it('the float64 epilogues equal the float64 composite (matmul, then the element-wise reference)', () => {
    const { x, x1, dy, w1, b1, w2, b2, want } = composite();
    const slope = new Float64Array(R * hidden), a = new Float64Array(R * hidden), out = new Float64Array(R * W), dh = new Float64Array(R * hidden);
    ref.linearForward(a, x, w1, b1, R, W, hidden, { kind: 'gelu', grad: slope });
    ref.linearForward(out, a, w2, b2, R, hidden, W, { kind: 'residual', residual: x1 });
    ref.linearBackward(dh, new Float64Array(W * hidden), null, dy, a, w2, R, hidden, W, { kind: 'gelu_grad', grad: slope });
    // Only the order of the float64 sums differs (the bias first, or after the product).
    const f64: Tolerance = { atol: 1e-12, rtol: 1e-12 };
    expectClose(slope, want.slope, f64, "gelu'(h)");
    expectClose(a, want.a, f64, 'a = gelu(h)');
    expectClose(out, want.out, f64, 'out = fc2(a) + x1');
    expectClose(dh, want.dh, f64, 'dh');
  });

  for (const variant of VARIANTS) {
    it(`${variant}: fc1 + gelu, fc2 + residual, and dh = (dY·W_fc2) ⊙ gelu'(h) match the float64 composite`, async () => {
      const gpu = await testGpu();
      const { x, x1, dy, w1, b1, w2, b2, want } = composite();
      const t = { x: gpuTensor(gpu, x), x1: gpuTensor(gpu, x1), dy: gpuTensor(gpu, dy), w1: gpuTensor(gpu, w1), b1: gpuTensor(gpu, b1), w2: gpuTensor(gpu, w2), b2: gpuTensor(gpu, b2) };
      const fused = { slope: gpuTensor(gpu, R * hidden), a: gpuTensor(gpu, R * hidden), out: gpuTensor(gpu, R * W), dh: gpuTensor(gpu, R * hidden) };
      await run(gpu, (rec) => {
        gpuOps.matmul(rec, fused.a, t.x, t.w1, t.b1, R, hidden, W, 'nt', false, variant, { kind: 'gelu', grad: fused.slope });
        gpuOps.matmul(rec, fused.out, fused.a, t.w2, t.b2, R, W, hidden, 'nt', false, variant, { kind: 'residual', residual: t.x1 });
        gpuOps.matmul(rec, fused.dh, t.dy, t.w2, null, R, hidden, W, 'nn', false, variant, { kind: 'gelu_grad', grad: fused.slope });
      });
      expectClose(await read(gpu, fused.slope), want.slope, matmulTol(W), `gelu'(h) (${variant})`);
      expectClose(await read(gpu, fused.a), want.a, matmulTol(W), `fused gelu vs matmul + biasGeluForward (${variant})`);
      expectClose(await read(gpu, fused.out), want.out, matmulTol(hidden), `fused residual vs matmul + addInPlace (${variant})`);
      expectClose(await read(gpu, fused.dh), want.dh, matmulTol(W), `fused gelu_grad vs matmul + biasGeluBackward (${variant})`);
    });
  }

  it('linearForward and linearBackward pass their epilogues on (default variant): fc1 with gelu, fc2 backward with gelu_grad on dx', async () => {
    const gpu = await testGpu();
    const x = randn(R * W, 51), w1 = randn(hidden * W, 52, 0.1), b1 = randn(hidden, 53), w2 = randn(W * hidden, 54, 0.05), dy = randn(R * W, 55);
    const slope = new Float64Array(R * hidden), a = new Float64Array(R * hidden);
    ref.linearForward(a, x, w1, b1, R, W, hidden, { kind: 'gelu', grad: slope });
    const dw0 = randn(W * hidden, 56), db0 = randn(W, 57); // parameter gradients accumulate onto what is there
    const dh = new Float64Array(R * hidden), dw2 = Float64Array.from(dw0), db2 = Float64Array.from(db0);
    ref.linearBackward(dh, dw2, db2, dy, a, w2, R, hidden, W, { kind: 'gelu_grad', grad: slope });

    const t = { x: gpuTensor(gpu, x), w1: gpuTensor(gpu, w1), b1: gpuTensor(gpu, b1), w2: gpuTensor(gpu, w2), dy: gpuTensor(gpu, dy) };
    const tslope = gpuTensor(gpu, R * hidden), ta = gpuTensor(gpu, R * hidden), tdh = gpuTensor(gpu, R * hidden), tdw = gpuTensor(gpu, dw0), tdb = gpuTensor(gpu, db0);
    await run(gpu, (rec) => {
      gpuOps.linearForward(rec, ta, t.x, t.w1, t.b1, R, W, hidden, { kind: 'gelu', grad: tslope });
      gpuOps.linearBackward(rec, tdh, tdw, tdb, t.dy, ta, t.w2, R, hidden, W, { kind: 'gelu_grad', grad: tslope });
    });
    expectClose(await read(gpu, tslope), slope, matmulTol(W), "gelu'(h)");
    expectClose(await read(gpu, ta), a, matmulTol(W), 'a = gelu(h)');
    expectClose(await read(gpu, tdh), dh, matmulTol(W), 'dh = (dy·W2) ⊙ gelu\'(h)');
    expectClose(await read(gpu, tdw), dw2, matmulTol(R), 'dW2 (+=)');
    expectClose(await read(gpu, tdb), db2, matmulTol(R), 'db2 (+=)');
  });
});

describe('Linear layer', () => {
  const [R, inF, outF] = [37, 24, 19];

  it('forward and backward on the GPU match the reference', async () => {
    const gpu = await testGpu();
    const x = randn(R * inF, 11), w = randn(outF * inF, 12), b = randn(outF, 13), dy = randn(R * outF, 14);
    const dw0 = randn(outF * inF, 15), db0 = randn(outF, 16); // gradients accumulate onto what is there
    const y = new Float64Array(R * outF), dx = new Float64Array(R * inF), dw = Float64Array.from(dw0), db = Float64Array.from(db0);
    ref.linearForward(y, x, w, b, R, inF, outF);
    ref.linearBackward(dx, dw, db, dy, x, w, R, inF, outF);

    const t = { x: gpuTensor(gpu, x), w: gpuTensor(gpu, w), b: gpuTensor(gpu, b), dy: gpuTensor(gpu, dy) };
    const gy = gpuTensor(gpu, R * outF), gdx = gpuTensor(gpu, randn(R * inF, 17)), gdw = gpuTensor(gpu, dw0), gdb = gpuTensor(gpu, db0);
    await run(gpu, (rec) => {
      gpuOps.linearForward(rec, gy, t.x, t.w, t.b, R, inF, outF);
      gpuOps.linearBackward(rec, gdx, gdw, gdb, t.dy, t.x, t.w, R, inF, outF);
    });
    expectClose(await read(gpu, gy), y, TOL.reduction, 'y');
    expectClose(await read(gpu, gdx), dx, TOL.reduction, 'dx');
    expectClose(await read(gpu, gdw), dw, TOL.reduction, 'dw');
    expectClose(await read(gpu, gdb), db, TOL.reduction, 'db');
  });

  it('reference gradients match finite differences', () => {
    const x = randn(5 * 4, 21), w = randn(3 * 4, 22), b = randn(3, 23), dy = randn(5 * 3, 24);
    const loss = (i: Record<string, Float64Array>) => {
      const y = new Float64Array(15);
      ref.linearForward(y, i.x, i.w, i.b, 5, 4, 3);
      return dot(y, dy);
    };
    const dx = new Float64Array(20), dw = new Float64Array(12), db = new Float64Array(3);
    ref.linearBackward(dx, dw, db, dy, x, w, 5, 4, 3);
    checkGradients({ x, w, b }, loss, { x: dx, w: dw, b: db });
  });
});

describe('KMajorWeights (transpose_weights: many weights made K-major in one dispatch)', () => {
  it('copies Wᵀ of each named weight whose sizes are multiples of 4, bit for bit, across tile edges, and the forward on a copy is the same product', async () => {
    const gpu = await testGpu();
    const layout = new ArenaLayout();
    // 36×100 and 68×44 end mid-tile (tiles are 32×32); a conv-shaped weight is [out, in…]; the
    // 1-D, unnamed and 6×8 (6 % 4 ≠ 0) entries are not copied.
    const shapes: Record<string, number[]> = { 'a.weight': [36, 100], 'norm.weight': [36], 'b.weight': [4, 4], 'c.weight': [6, 8], 'conv.weight': [68, 3, 4, 4], 'skip.weight': [8, 8], 'd.weight': [68, 44] };
    for (const [name, shape] of Object.entries(shapes)) layout.add(name, shape);
    const params = new Arena(gpu.device, layout, 'params');
    const values = Float32Array.from(randn(layout.size, 31));
    upload(gpu.device, params.all, values);
    const copies = new gpuOps.KMajorWeights(gpu.device, params, (n) => n !== 'skip.weight', 'kmajor');
    expect(copies.arena.layout.entries.map((e) => [e.name, e.shape])).toEqual([['a.weight', [100, 36]], ['b.weight', [4, 4]], ['conv.weight', [48, 68]], ['d.weight', [44, 68]]]);
    await run(gpu, (rec) => copies.record(rec));
    for (const e of copies.arena.layout.entries) {
      const [inF, out] = e.shape, at = layout.get(e.name).start;
      const want = new Float32Array(inF * out);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) want[i * out + o] = values[at + o * inF + i];
      expectSameBits(await read(gpu, copies.weight(e.name)!), want, `${e.name}ᵀ`);
    }
    expect(copies.weight('c.weight')).toBeUndefined();
    // linearForward on the copy ('nn') and on W ('nt'): the same bits.
    const R = 21, x = gpuTensor(gpu, randn(R * 44, 32)), b = gpuTensor(gpu, randn(68, 33));
    const yT = gpuTensor(gpu, R * 68), y = gpuTensor(gpu, R * 68);
    await run(gpu, (rec) => {
      gpuOps.linearForward(rec, yT, x, params.tensor('d.weight'), b, R, 44, 68, undefined, copies.weight('d.weight'));
      gpuOps.linearForward(rec, y, x, params.tensor('d.weight'), b, R, 44, 68);
    });
    expectSameBits(await read(gpu, yT), await read(gpu, y), 'x·Wᵀ on the copy');
    copies.destroy();
    params.destroy();
  });
});

describe("the bias gradient inside the 'tn' product (biasGrad)", () => {
  const shapes: Array<[string, number, number, number]> = [
    ['vec4-aligned (dW of ViT-Tiny fc1, R = 136)', 768, 192, 136],
    ['M not a multiple of 4: blocked, then bias_backward', 67, 36, 20],
    ['one row quad', 4, 8, 5],
  ];
  for (const variant of ['vec4', 'vec4_sampled', 'blocked', 'tiled'] as const) {
    for (const [name, M, N, K] of shapes) {
      // accumulate: onto what dW and db hold; else (a step's first backward) both are assigned,
      // over garbage, as the reference's sums onto zeros.
      for (const accumulate of [true, false]) {
        const how = accumulate ? 'dW += dYᵀ·X and db += Σ dY' : 'dW = dYᵀ·X and db = Σ dY over garbage';
        it(`${variant} ${name} M=${M} N=${N} K=${K}: ${how}, db bit-identical to bias_backward`, async () => {
          const gpu = await testGpu();
          const a = randn(K * M, 51), b = randn(K * N, 52), c0 = randn(M * N, 53), db0 = randn(M, 54);
          const want = accumulate ? { c: Float64Array.from(c0), db: Float64Array.from(db0) } : { c: new Float64Array(M * N), db: new Float64Array(M) };
          const wantDb = Float64Array.from(want.db);
          ref.matmul(want.c, a, b, null, M, N, K, 'tn', true, undefined, undefined, want.db);
          ref.biasBackward(wantDb, a, K, M, true);
          expectClose(want.db, wantDb, TOL.exact, 'the reference: biasGrad is biasBackward');
          const [ta, c, db] = [gpuTensor(gpu, a), gpuTensor(gpu, c0), gpuTensor(gpu, db0)];
          await run(gpu, (rec) => gpuOps.matmul(rec, c, ta, gpuTensor(gpu, b), null, M, N, K, 'tn', accumulate, variant, undefined, db));
          expectClose(await read(gpu, c), want.c, matmulTol(K), `dW (${variant})`);
          expectClose(await read(gpu, db), want.db, matmulTol(K), `db (${variant})`);
          const separate = gpuTensor(gpu, db0);
          await run(gpu, (rec) => gpuOps.biasBackward(rec, separate, ta, K, M, accumulate));
          expectSameBits(await read(gpu, db), await read(gpu, separate), `db (${variant}) vs bias_backward`);
        });
      }
    }
  }

  it("is refused outside 'tn', and with a bias", async () => {
    const gpu = await testGpu();
    const t = gpuTensor(gpu, 64);
    const rec = new Recorder(gpu);
    expect(() => gpuOps.matmul(rec, gpuTensor(gpu, 16), t, gpuTensor(gpu, 16), null, 4, 4, 4, 'nn', false, 'vec4', undefined, gpuTensor(gpu, 4))).toThrow(/biasGrad is for 'tn' products/);
    expect(() => gpuOps.matmul(rec, gpuTensor(gpu, 16), t, gpuTensor(gpu, 16), gpuTensor(gpu, 4), 4, 4, 4, 'tn', false, 'vec4', undefined, gpuTensor(gpu, 4))).toThrow(/with a bias/);
    rec.discard();
  });
});
