import { describe, expect, it } from 'vitest';
import { composeShader } from '../../src/gpu/kernels';
import { loadShaderSourcesFromDisk } from '../../src/gpu/shader-sources-disk';
import { createTensor } from '../../src/gpu/buffers';
import * as gpuOps from '../../src/gpu/ops/elementwise';
import { grid2d } from '../../src/gpu/ops/common';
import * as ref from '../../src/ref/elementwise';
import { biasBackward } from '../../src/ref/matmul';
import type { Gpu } from '../../src/gpu/device';
import { TOL, checkGradients, dot, expectClose, gpuTensor, randn, read, run, testGpu } from '../helpers';

const fround = (a: Float64Array): Float64Array => a.map(Math.fround);

/** Evaluates erf_f32 and erfc_f32 of shaders/common/erf.wgsl at each x, on the GPU. */
async function gpuErf(gpu: Gpu, x: Float64Array): Promise<{ erf: Float32Array; erfc: Float32Array }> {
  const code = `// #import common/erf
@group(0) @binding(0) var<storage, read_write> e: array<f32>;
@group(0) @binding(1) var<storage, read_write> ec: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= arrayLength(&x)) { return; }
  e[g.x] = erf_f32(x[g.x]);
  ec[g.x] = erfc_f32(x[g.x]);
}`;
  const { device } = gpu;
  const module = device.createShaderModule({ label: 'erf-probe', code: composeShader('probe', { ...loadShaderSourcesFromDisk(), probe: code }).code });
  const pipeline = device.createComputePipeline({ label: 'erf-probe', layout: 'auto', compute: { module, entryPoint: 'main' } });
  const n = x.length;
  const e = createTensor(device, n, 'erf'), ec = createTensor(device, n, 'erfc'), xt = gpuTensor(gpu, x);
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [e, ec, xt].map((t, i) => ({ binding: i, resource: { buffer: t.buffer, size: n * 4 } })),
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(Math.ceil(n / 64));
  pass.end();
  device.queue.submit([enc.finish()]);
  return { erf: await read(gpu, e), erfc: await read(gpu, ec) };
}

describe('erf', () => {
  it('float64 reference matches known values to 1e-15', () => {
    // Values from C's libm (correctly rounded to float64).
    const known: Array<[number, number]> = [
      [0, 0], [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527],
      [-3, -0.9999779095030014], [2.49, 0.9995707121322661], [2.5, 0.999593047982555], [3.5, 0.9999992569016276], [5, 0.9999999999984626],
    ];
    expectClose(known.map(([x]) => ref.erf(x)), known.map(([, v]) => v), { atol: 1e-15, rtol: 0 }, 'erf');
    expectClose([ref.erfc(5), ref.erfc(10)], [1.5374597944280351e-12, 2.088487583762545e-45], { atol: 0, rtol: 1e-14 }, 'erfc tail');
    expect(ref.erf(Infinity)).toBe(1);
    expect(ref.erf(-Infinity)).toBe(-1);
  });

  it('WGSL erf_f32 is within 1e-6 of erf for all x; erfc_f32 is relatively accurate in the tail', async () => {
    const gpu = await testGpu();
    const xs: number[] = [];
    for (let i = -12000; i <= 12000; i++) xs.push(i / 1000); // [-12, 12] every 0.001
    xs.push(1e-30, -1e-30, 1e-6, 0.49999997, 0.5, 40, -40);
    const x = Float64Array.from(xs, Math.fround);
    const got = await gpuErf(gpu, x);
    expectClose(got.erf, x.map(ref.erf), { atol: 1e-6, rtol: 0 }, 'erf_f32');
    // Near 0 erf ≈ 1.128·x: the series branch keeps relative accuracy there.
    const small = x.map((v, i) => (Math.abs(v) < 0.5 ? i : -1)).filter((i) => i >= 0);
    expectClose(small.map((i) => got.erf[i]), small.map((i) => ref.erf(x[i])), { atol: 0, rtol: 1e-6 }, 'erf_f32 near 0');
    // erfc in the tail down to 1e-30 (x ≤ 8), relative: float32 exp of a large argument costs a few 1e-6.
    const tail = x.map((v, i) => (v > 0 && v <= 8 ? i : -1)).filter((i) => i >= 0);
    expectClose(tail.map((i) => got.erfc[i]), tail.map((i) => ref.erfc(x[i])), { atol: 0, rtol: 2e-5 }, 'erfc_f32 tail');
  });
});

describe('add, addInPlace, scale, fill (GPU vs float64 reference)', () => {
  // One correctly rounded float32 operation per element: the result is the float64 one rounded.
  for (const n of [1, 7, 1001, 8 * 17 * 192]) {
    it(`n=${n}`, async () => {
      const gpu = await testGpu();
      const a = randn(n, 700 + n), b = randn(n, 800 + n), s = Math.fround(1 / 3);
      const sum = new Float64Array(n), acc = Float64Array.from(b), scaled = new Float64Array(n), filled = new Float64Array(n);
      ref.add(sum, a, b, n);
      ref.addInPlace(acc, a, n);
      ref.scale(scaled, a, s, n);
      ref.fill(filled, -2.5, n);
      const ta = gpuTensor(gpu, a), tb = gpuTensor(gpu, b);
      const gsum = gpuTensor(gpu, randn(n, 1)), gacc = gpuTensor(gpu, b), gscaled = gpuTensor(gpu, randn(n, 2)), gfilled = gpuTensor(gpu, randn(n, 3));
      const inPlace = gpuTensor(gpu, a);
      await run(gpu, (rec) => {
        gpuOps.add(rec, gsum, ta, tb, n);
        gpuOps.addInPlace(rec, gacc, ta, n);
        gpuOps.scale(rec, gscaled, ta, s, n);
        gpuOps.scale(rec, inPlace, inPlace, s, n);
        gpuOps.fill(rec, gfilled, -2.5, n);
      });
      expectClose(await read(gpu, gsum), fround(sum), TOL.exact, 'add');
      expectClose(await read(gpu, gacc), fround(acc), TOL.exact, 'addInPlace');
      expectClose(await read(gpu, gscaled), fround(scaled), TOL.exact, 'scale');
      expectClose(await read(gpu, inPlace), fround(scaled), TOL.exact, 'scale in place');
      expectClose(await read(gpu, gfilled), filled, TOL.exact, 'fill');
    });
  }

  it('n > 65535·256 elements (2-D grid)', async () => {
    const gpu = await testGpu();
    const n = 65535 * 256 + 1001;
    expect(grid2d(n)[1]).toBe(2);
    const a = randn(n, 901), b = randn(n, 902);
    const ta = gpuTensor(gpu, a), tb = gpuTensor(gpu, b), out = gpuTensor(gpu, n);
    await run(gpu, (rec) => {
      gpuOps.add(rec, out, ta, tb, n);
      gpuOps.addInPlace(rec, out, ta, n); // out = 2a + b
      gpuOps.scale(rec, tb, tb, 0.5, n);
    });
    const got = await read(gpu, out);
    const want = new Float64Array(n);
    for (let i = 0; i < n; i++) want[i] = Math.fround(Math.fround(a[i] + b[i]) + a[i]);
    expectClose(got, want, TOL.exact, 'add then addInPlace');
    expectClose(await read(gpu, tb), b.map((v) => v * 0.5), TOL.exact, 'scale in place');
  });

  it('binds slices of one arena as inputs and outputs of the same dispatch', async () => {
    const gpu = await testGpu();
    const n = 300, stride = 320; // 320 floats: 256-byte aligned slices
    const a = randn(n, 911), b = randn(n, 912);
    const whole = new Float64Array(3 * stride);
    whole.set(a, 0);
    whole.set(b, stride);
    const arena = gpuTensor(gpu, whole);
    const slice = (k: number) => ({ buffer: arena.buffer, offset: k * stride * 4, length: n });
    await run(gpu, (rec) => {
      gpuOps.add(rec, slice(2), slice(0), slice(1), n);
      gpuOps.addInPlace(rec, slice(1), slice(2), n); // b += a + b
    });
    const all = await read(gpu, arena);
    const sum = new Float64Array(n);
    ref.add(sum, a, b, n);
    const acc = Float64Array.from(b);
    ref.addInPlace(acc, fround(sum), n);
    expectClose(all.subarray(2 * stride, 2 * stride + n), fround(sum), TOL.exact, 'add');
    expectClose(all.subarray(stride, stride + n), fround(acc), TOL.exact, 'addInPlace');
  });
});

// The GPU's exact GELU is the matmul epilogues' (test/gpu/matmul.test.ts, against these references).
describe('element-wise references vs finite differences', () => {
  it('gelu', () => {
    const n = 40;
    const x = randn(n, 1001, 5), w = randn(n, 1002);
    const loss = (i: Record<string, Float64Array>) => {
      const y = new Float64Array(n);
      ref.geluForward(y, i.x, n);
      return dot(y, w);
    };
    const dx = new Float64Array(n);
    ref.geluBackward(dx, w, x, n);
    checkGradients({ x }, loss, { x: dx });
  });

  it('bias-gelu, with the bias gradient as Σ_rows dx', () => {
    const [rows, C] = [4, 6];
    const x = randn(rows * C, 1003, 3), bias = randn(C, 1004), w = randn(rows * C, 1005);
    const loss = (i: Record<string, Float64Array>) => {
      const y = new Float64Array(rows * C);
      ref.biasGeluForward(y, i.x, i.bias, rows, C);
      return dot(y, w);
    };
    const dx = new Float64Array(rows * C), dbias = new Float64Array(C);
    ref.biasGeluBackward(dx, w, x, bias, rows, C);
    biasBackward(dbias, dx, rows, C, true);
    checkGradients({ x, bias }, loss, { x: dx, bias: dbias });
  });

  it('add and scale', () => {
    const n = 9;
    const a = randn(n, 1006), b = randn(n, 1007), w = randn(n, 1008);
    const loss = (i: Record<string, Float64Array>) => {
      const sum = new Float64Array(n), y = new Float64Array(n);
      ref.add(sum, i.a, i.b, n);
      ref.scale(y, sum, 0.75, n);
      return dot(y, w);
    };
    // Backward of y = 0.75·(a + b): both branches receive 0.75·w (the residual's gradient flows to both).
    const g = new Float64Array(n);
    ref.scale(g, w, 0.75, n);
    const ga = Float64Array.from(g), gb = new Float64Array(n);
    ref.addInPlace(gb, g, n);
    checkGradients({ a, b }, loss, { a: ga, b: gb });
  });
});
