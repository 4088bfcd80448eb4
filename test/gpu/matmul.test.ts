import { describe, expect, it } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/matmul';
import * as ref from '../../src/ref/matmul';
import { TOL, checkGradients, dot, expectClose, gpuTensor, randn, read, run, testGpu } from '../helpers';

const SHAPES: Array<[string, number, number, number]> = [
  ['tiny', 1, 1, 1],
  ['odd', 7, 13, 5],
  ['not tile multiples', 67, 33, 19],
  // N and K multiples of 4 (what matmul_vec4 needs; the shapes above test its fallback), M odd,
  // N not a multiple of the 64 columns of a vec4 workgroup, M not a multiple of its 8 rows.
  ['vec4-aligned, odd M', 67, 36, 20],
  ['one column quad', 3, 4, 8],
  ['ViT-Tiny qkv, 25% visible, 4 images', 68, 576, 192],
  ['ViT-Tiny fc2', 65, 192, 768],
];

describe('matmul (GPU vs float64 reference)', () => {
  for (const variant of ['tiled', 'blocked', 'vec4'] as const) {
    for (const layout of ['nn', 'nt', 'tn'] as const) {
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
          expectClose(await read(gpu, c), want, { atol: TOL.reduction.atol * Math.sqrt(K), rtol: TOL.reduction.rtol }, `C (${variant} ${layout})`);

          const plain = new Float64Array(M * N);
          ref.matmul(plain, a, b, null, M, N, K, layout, false);
          const c2 = gpuTensor(gpu, c0); // non-zero start: "=" must overwrite it
          await run(gpu, (rec) => gpuOps.matmul(rec, c2, gpuTensor(gpu, a), gpuTensor(gpu, b), null, M, N, K, layout, false, variant));
          expectClose(await read(gpu, c2), plain, { atol: TOL.reduction.atol * Math.sqrt(K), rtol: TOL.reduction.rtol }, `C = (${variant} ${layout})`);
        });
      }
    }
  }

  it('is deterministic: the same inputs give bit-identical outputs', async () => {
    const gpu = await testGpu();
    const [M, N, K] = [67, 130, 96];
    const a = gpuTensor(gpu, randn(M * K, 5));
    const b = gpuTensor(gpu, randn(K * N, 6));
    const outs: Float32Array[] = [];
    for (let i = 0; i < 2; i++) {
      const c = gpuTensor(gpu, M * N);
      await run(gpu, (rec) => gpuOps.matmul(rec, c, a, b, null, M, N, K, 'nt'));
      outs.push(await read(gpu, c));
    }
    expect(Buffer.from(outs[0].buffer).equals(Buffer.from(outs[1].buffer))).toBe(true);
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
