import { describe, expect, it } from 'vitest';
import { Arena, ArenaLayout, upload } from '../../src/gpu/buffers';
import * as gpuOps from '../../src/gpu/ops/layernorm';
import * as ref from '../../src/ref/layernorm';
import type { Gpu } from '../../src/gpu/device';
import { TOL, checkGradients, dot, expectClose, expectSameBits, gpuTensor, randn, read, run, testGpu } from '../helpers';

// [name, rows, C]
const SHAPES: Array<[string, number, number]> = [
  ['tiny', 1, 1],
  ['one channel', 5, 1],
  ['odd', 7, 13],
  ['C not a multiple of the workgroup', 3, 67],
  ['rows not a multiple of the row chunk', 37, 200],
  ['ViT-Tiny encoder, one visible patch, batch 8', 8 * 2, 192],
  ['ViT-Tiny encoder, 1+16 tokens, batch 8', 8 * 17, 192],
  ['decoder, 1+64 tokens, width 128, batch 8', 8 * 65, 128],
  ['width 768', 33, 768],
];

interface Case {
  x: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  dout: Float64Array;
  dweight0: Float64Array;
  dbias0: Float64Array;
}

function makeCase(rows: number, C: number, seed: number, offset = 0, noise = 1): Case {
  const x = randn(rows * C, seed, noise).map((v) => Math.fround(v + offset));
  const weight = randn(C, seed + 1).map((v) => Math.fround(1 + 0.5 * v));
  return {
    x, weight,
    bias: randn(C, seed + 2),
    dout: randn(rows * C, seed + 3),
    dweight0: randn(C, seed + 4), // parameter gradients accumulate onto what is there
    dbias0: randn(C, seed + 5),
  };
}

function reference(k: Case, rows: number, C: number) {
  const out = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
  ref.layernormForward(out, mean, rstd, k.x, k.weight, k.bias, rows, C);
  const dx = new Float64Array(rows * C), dweight = Float64Array.from(k.dweight0), dbias = Float64Array.from(k.dbias0);
  ref.layernormBackward(dx, dweight, dbias, k.dout, k.x, k.weight, mean, rstd, rows, C);
  return { out, mean, rstd, dx, dweight, dbias };
}

/** Forward then backward on the GPU, the backward fed the GPU's own saved mean and rstd. */
async function onGpu(gpu: Gpu, k: Case, rows: number, C: number) {
  const t = {
    x: gpuTensor(gpu, k.x), weight: gpuTensor(gpu, k.weight), bias: gpuTensor(gpu, k.bias), dout: gpuTensor(gpu, k.dout),
    out: gpuTensor(gpu, randn(rows * C, 91)), mean: gpuTensor(gpu, rows), rstd: gpuTensor(gpu, rows),
    dx: gpuTensor(gpu, randn(rows * C, 92)), // non-zero start: "=" must overwrite it
    dweight: gpuTensor(gpu, k.dweight0), dbias: gpuTensor(gpu, k.dbias0),
  };
  await run(gpu, (rec) => {
    gpuOps.layernormForward(rec, t.out, t.mean, t.rstd, t.x, t.weight, t.bias, rows, C);
    gpuOps.layernormBackward(rec, t.dx, t.dweight, t.dbias, t.dout, t.x, t.weight, t.mean, t.rstd, rows, C);
  });
  return {
    out: await read(gpu, t.out), mean: await read(gpu, t.mean), rstd: await read(gpu, t.rstd),
    dx: await read(gpu, t.dx), dweight: await read(gpu, t.dweight), dbias: await read(gpu, t.dbias),
  };
}

describe('layernorm (GPU vs float64 reference)', () => {
  SHAPES.forEach(([name, rows, C], s) => {
    it(`${name}: rows=${rows} C=${C}, forward and backward`, async () => {
      const gpu = await testGpu();
      const k = makeCase(rows, C, 100 + 10 * s);
      const want = reference(k, rows, C);
      const got = await onGpu(gpu, k, rows, C);
      expectClose(got.out, want.out, TOL.reduction, 'out');
      expectClose(got.mean, want.mean, TOL.reduction, 'mean');
      expectClose(got.rstd, want.rstd, TOL.reduction, 'rstd');
      expectClose(got.dx, want.dx, TOL.gradient, 'dx');
      // dweight and dbias sum over rows; atol grows like √rows for a sum of random-sign terms.
      const sumTol = { atol: TOL.gradient.atol * Math.sqrt(rows), rtol: TOL.gradient.rtol };
      expectClose(got.dweight, want.dweight, sumTol, 'dweight');
      expectClose(got.dbias, want.dbias, sumTol, 'dbias');
    });
  });

  // A large common offset: one ulp of 1000 in float32 (6e-5) is 0.1% of σ ≈ 0.058, so any
  // E[x²] − E[x]² or unshifted sum is visibly wrong here, and so is a backward that trusts the
  // float32-rounded saved mean.
  for (const [rows, C] of [[16, 192], [9, 768]]) {
    it(`rows with a large common offset (x = 1000 + 0.1·noise): rows=${rows} C=${C}`, async () => {
      const gpu = await testGpu();
      const k = makeCase(rows, C, 7 + C, 1000, 0.1);
      const want = reference(k, rows, C);
      const got = await onGpu(gpu, k, rows, C);
      expectClose(got.out, want.out, TOL.reduction, 'out (offset rows)');
      expectClose(got.mean, want.mean, TOL.reduction, 'mean (offset rows)');
      expectClose(got.rstd, want.rstd, TOL.reduction, 'rstd (offset rows)');
      // dx is rstd ≈ 17 times larger than with unit variance; rtol stays the preset's.
      expectClose(got.dx, want.dx, { atol: TOL.gradient.atol * 17, rtol: TOL.gradient.rtol }, 'dx (offset rows)');
      const sumTol = { atol: TOL.gradient.atol * Math.sqrt(rows), rtol: TOL.gradient.rtol };
      expectClose(got.dweight, want.dweight, sumTol, 'dweight (offset rows)');
      expectClose(got.dbias, want.dbias, sumTol, 'dbias (offset rows)');
    });
  }

  it('rows beyond 65535 workgroups (2-D grid)', async () => {
    const gpu = await testGpu();
    const [rows, C] = [65_600, 3];
    const k = makeCase(rows, C, 55);
    const want = reference(k, rows, C);
    const got = await onGpu(gpu, k, rows, C);
    expectClose(got.out, want.out, TOL.reduction, 'out');
    expectClose(got.dx, want.dx, TOL.gradient, 'dx');
    // 65600 rows: the sum's rounding grows with its length, √rows of the per-term tolerance.
    const sumTol = { atol: TOL.gradient.atol * Math.sqrt(rows), rtol: TOL.gradient.rtol };
    expectClose(got.dweight, want.dweight, sumTol, 'dweight');
    expectClose(got.dbias, want.dbias, sumTol, 'dbias');
  });

  it('is deterministic: the same inputs give bit-identical outputs', async () => {
    const gpu = await testGpu();
    const [rows, C] = [8 * 65, 128];
    const k = makeCase(rows, C, 31);
    const a = await onGpu(gpu, k, rows, C);
    const b = await onGpu(gpu, k, rows, C);
    for (const key of ['out', 'mean', 'rstd', 'dx', 'dweight', 'dbias'] as const) {
      expectSameBits(b[key], a[key], key);
    }
  });

  it('binds slices of one arena as inputs and outputs of the same dispatch', async () => {
    const gpu = await testGpu();
    const [rows, C] = [17, 40];
    const k = makeCase(rows, C, 61);
    const want = reference(k, rows, C);
    const acts = new ArenaLayout();
    for (const [name, n] of [['x', rows * C], ['out', rows * C], ['mean', rows], ['rstd', rows], ['dout', rows * C], ['dx', rows * C]] as const) acts.add(name, [n]);
    const params = new ArenaLayout();
    params.add('weight', [C]);
    params.add('bias', [C]);
    params.add('dweight', [C]);
    params.add('dbias', [C]);
    const A = new Arena(gpu.device, acts, 'activations');
    const P = new Arena(gpu.device, params, 'params');
    upload(gpu.device, A.tensor('x'), Float32Array.from(k.x));
    upload(gpu.device, A.tensor('dout'), Float32Array.from(k.dout));
    upload(gpu.device, P.tensor('weight'), Float32Array.from(k.weight));
    upload(gpu.device, P.tensor('bias'), Float32Array.from(k.bias));
    upload(gpu.device, P.tensor('dweight'), Float32Array.from(k.dweight0));
    upload(gpu.device, P.tensor('dbias'), Float32Array.from(k.dbias0));
    const a = (n: string) => A.tensor(n), p = (n: string) => P.tensor(n);
    await run(gpu, (rec) => {
      gpuOps.layernormForward(rec, a('out'), a('mean'), a('rstd'), a('x'), p('weight'), p('bias'), rows, C);
      gpuOps.layernormBackward(rec, a('dx'), p('dweight'), p('dbias'), a('dout'), a('x'), p('weight'), a('mean'), a('rstd'), rows, C);
    });
    expectClose(await read(gpu, a('out')), want.out, TOL.reduction, 'out');
    expectClose(await read(gpu, a('dx')), want.dx, TOL.gradient, 'dx');
    expectClose(await read(gpu, p('dweight')), want.dweight, TOL.gradient, 'dweight');
    expectClose(await read(gpu, p('dbias')), want.dbias, TOL.gradient, 'dbias');
    A.destroy();
    P.destroy();
  });
});

describe('layernorm reference vs finite differences', () => {
  for (const [rows, C, offset] of [[3, 7, 0], [2, 5, 10]]) {
    it(`rows=${rows} C=${C} offset=${offset}`, () => {
      const x = randn(rows * C, 41 + C).map((v) => v + offset);
      const weight = randn(C, 42), bias = randn(C, 43), w = randn(rows * C, 44);
      const loss = (i: Record<string, Float64Array>) => {
        const out = new Float64Array(rows * C);
        ref.layernormForward(out, new Float64Array(rows), new Float64Array(rows), i.x, i.weight, i.bias, rows, C);
        return dot(out, w);
      };
      const out = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
      ref.layernormForward(out, mean, rstd, x, weight, bias, rows, C);
      const dx = new Float64Array(rows * C), dweight = new Float64Array(C), dbias = new Float64Array(C);
      ref.layernormBackward(dx, dweight, dbias, w, x, weight, mean, rstd, rows, C);
      checkGradients({ x, weight, bias }, loss, { x: dx, weight: dweight, bias: dbias });
    });
  }
});
