/**
 * The loss scaler's kernels on real WebGPU against the float64 reference: loss_scale_update in
 * each of its branches (good step, growth, clipping, the overflow flag, a non-finite norm),
 * AdamW's skip on clip[1], and scale_by_inplace.
 */
import { describe, expect, it } from 'vitest';
import { Arena, ArenaLayout, upload } from '../../src/gpu/buffers';
import * as gpuAdamw from '../../src/gpu/ops/adamw';
import * as gpuElementwise from '../../src/gpu/ops/elementwise';
import * as refAdamw from '../../src/ref/adamw';
import * as refElementwise from '../../src/ref/elementwise';
import { expectClose, expectSameBits, gpuTensor, randn, read, readU32, run, testGpu, TOL } from '../helpers';

interface Case {
  name: string;
  norm: number;
  state: [number, number, number, number];
  flag: number;
  maxNorm?: number;
  growthInterval: number;
}

const CASES: Case[] = [
  { name: 'a good step', norm: 2048, state: [1024, 5, 0, 2], flag: 0, growthInterval: 2000 },
  { name: 'the good step that doubles the scale', norm: 300, state: [1024, 1999, 1, 2], flag: 0, growthInterval: 2000 },
  { name: 'clipping on the unscaled norm (4 > 1)', norm: 4096, state: [1024, 0, 0, 0], flag: 0, maxNorm: 1, growthInterval: 2000 },
  { name: 'clipping inactive (0.5 < 1)', norm: 512, state: [1024, 0, 0, 0], flag: 0, maxNorm: 1, growthInterval: 2000 },
  { name: 'an f16 operand out of range', norm: 100, state: [65536, 7, 0, 3], flag: 1, growthInterval: 2000 },
  { name: 'an infinite norm', norm: Infinity, state: [65536, 7, 0, 3], flag: 0, growthInterval: 2000 },
  { name: 'a NaN norm', norm: NaN, state: [8, 1, 0, 0], flag: 0, maxNorm: 1, growthInterval: 3 },
];

describe('loss_scale_update (GPU vs float64)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const gpu = await testGpu();
      const clip = gpuTensor(gpu, Float64Array.of(0.25, 0.75)); // stale values: both are overwritten
      const norm = gpuTensor(gpu, Float64Array.of(c.norm));
      const state = gpuTensor(gpu, Float64Array.from(c.state));
      const flag = gpuTensor(gpu, Uint32Array.of(c.flag));
      await run(gpu, (rec) => gpuAdamw.lossScaleUpdate(rec, clip, norm, state, flag, c.maxNorm, c.growthInterval));
      const want = { clip: Float64Array.of(0.25, 0.75), norm: Float64Array.of(c.norm), state: Float64Array.from(c.state), flag: Uint32Array.of(c.flag) };
      refAdamw.lossScaleUpdate(want.clip, want.norm, want.state, want.flag, c.maxNorm ?? 0, c.growthInterval);
      expectClose(await read(gpu, clip), want.clip, TOL.elementwise, 'clip');
      expectClose(await read(gpu, state), want.state, TOL.exact, 'state');
      const gotNorm = (await read(gpu, norm))[0];
      if (Number.isNaN(want.norm[0])) expect(gotNorm).toBeNaN();
      else expectClose([gotNorm], want.norm, TOL.elementwise, 'unscaled norm');
      expect((await readU32(gpu, flag))[0], 'the flag is cleared for the next step').toBe(0);
      // The branch the reference took: skip exactly on overflow.
      expect(want.clip[1]).toBe(c.flag !== 0 || !Number.isFinite(c.norm) ? 1 : 0);
    });
  }

  it('refuses a one-element clip tensor and a bad growth interval', async () => {
    const gpu = await testGpu();
    const t = gpuTensor(gpu, 4);
    await run(gpu, (rec) => {
      expect(() => gpuAdamw.lossScaleUpdate(rec, gpuTensor(gpu, 1), t, t, t, undefined)).toThrow(/clipCoef needs 2 elements/);
      expect(() => gpuAdamw.lossScaleUpdate(rec, gpuTensor(gpu, 2), t, t, t, undefined, 0)).toThrow(/growthInterval 0 must be an integer ≥ 1/);
    });
  });
});

describe('AdamW and the skip flag', () => {
  const n = 1031; // the vec4 path and its scalar tail
  const opts = { lr: 1e-2, step: 3 };

  it('clip = [c, 1] leaves params, m and v untouched; [c, 0] steps as the reference; a one-element clip never skips', async () => {
    const gpu = await testGpu();
    const p = randn(n, 1), g = randn(n, 2), m = randn(n, 3, 0.1), v = randn(n, 4, 0.1).map(Math.abs);
    for (const skip of [1, 0]) {
      const [tp, tm, tv] = [gpuTensor(gpu, p), gpuTensor(gpu, m), gpuTensor(gpu, v)];
      await run(gpu, (rec) => gpuAdamw.adamwStep(rec, tp, gpuTensor(gpu, g), tm, tv, null, gpuTensor(gpu, Float64Array.of(0.5, skip)), n, opts));
      const want = { p: Float64Array.from(p), m: Float64Array.from(m), v: Float64Array.from(v) };
      refAdamw.adamwStep(want.p, g, want.m, want.v, null, Float64Array.of(0.5, skip), n, opts);
      if (skip) {
        expectSameBits(await read(gpu, tp), Float32Array.from(p), 'params (skipped)');
        expectSameBits(await read(gpu, tm), Float32Array.from(m), 'm (skipped)');
        expectSameBits(await read(gpu, tv), Float32Array.from(v), 'v (skipped)');
      } else {
        expectClose(await read(gpu, tp), want.p, TOL.elementwise, 'params');
        expect(want.p.some((x, i) => x !== p[i])).toBe(true);
      }
    }
    // A one-element clip carved from an arena whose next element is 1: arrayLength is 1, so no skip.
    const layout = new ArenaLayout();
    layout.add('clip', [1]);
    layout.add('next', [1]);
    const arena = new Arena(gpu.device, layout, 'clip-one');
    upload(gpu.device, arena.all, Float32Array.of(1, 1));
    const tp = gpuTensor(gpu, p);
    await run(gpu, (rec) => gpuAdamw.adamwStep(rec, tp, gpuTensor(gpu, g), gpuTensor(gpu, m), gpuTensor(gpu, v), null, arena.tensor('clip'), n, opts));
    const want = Float64Array.from(p);
    refAdamw.adamwStep(want, g, Float64Array.from(m), Float64Array.from(v), null, Float64Array.of(1), n, opts);
    expectClose(await read(gpu, tp), want, TOL.elementwise, 'params with a one-element clip');
    arena.destroy();
  });
});

describe('scale_by_inplace (GPU vs float64)', () => {
  it('multiplies by a scalar read from the GPU', async () => {
    const gpu = await testGpu();
    const n = 777;
    const x = randn(n, 5), by = Float64Array.of(2 ** 13);
    const t = gpuTensor(gpu, x);
    await run(gpu, (rec) => gpuElementwise.scaleBy(rec, t, gpuTensor(gpu, by), n));
    const want = Float64Array.from(x);
    refElementwise.scaleBy(want, by, n);
    expectClose(await read(gpu, t), want, TOL.exact, 'x · 2¹³ (a power of two: exact)');
  });
});
