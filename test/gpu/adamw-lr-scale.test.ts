/** AdamW's optional per-parameter lr scale (layer-wise lr decay): table, reference, GPU. */
import { describe, expect, it } from 'vitest';
import { Arena, ArenaLayout, upload } from '../../src/gpu/buffers';
import * as gpuOps from '../../src/gpu/ops/adamw';
import * as ref from '../../src/ref/adamw';
import { TOL, expectClose, gpuTensor, randn, read, run, testGpu } from '../helpers';

function layout(): ArenaLayout {
  const l = new ArenaLayout();
  l.add('cls_token', [1, 1, 8]);
  l.add('blocks.0.attn.qkv.weight', [24, 8]);
  l.add('blocks.0.attn.qkv.bias', [24]);
  l.add('blocks.1.attn.qkv.weight', [24, 8]);
  l.add('blocks.1.attn.qkv.bias', [24]);
  l.add('head.weight', [3, 8]);
  l.add('head.bias', [3]);
  return l;
}
const SCALES: Record<string, number> = { cls_token: 0.125, 'blocks.0.attn.qkv.weight': 0.25, 'blocks.0.attn.qkv.bias': 0.25, 'blocks.1.attn.qkv.weight': 0.5, 'blocks.1.attn.qkv.bias': 0.5 };
const scaleOf = (name: string): number => SCALES[name] ?? 1;

describe('AdamW per-parameter lr scale', () => {
  it('lrScaleRanges: triples of [start, end, f32 bits], merged when touching with the same scale, scale 1 left out', () => {
    const l = layout();
    const t = gpuOps.lrScaleRanges(l, scaleOf);
    const f = new Float32Array(t.buffer);
    const e = (n: string) => l.get(n);
    // qkv.weight (192 elements) ends at a 64-aligned offset, so weight and bias touch and merge.
    expect(Array.from(t.filter((_, i) => i % 3 !== 2))).toEqual([
      e('cls_token').start, e('cls_token').start + 8,
      e('blocks.0.attn.qkv.weight').start, e('blocks.0.attn.qkv.bias').start + 24,
      e('blocks.1.attn.qkv.weight').start, e('blocks.1.attn.qkv.bias').start + 24,
    ]);
    expect([f[2], f[5], f[8]]).toEqual([0.125, 0.25, 0.5]);
    expect(gpuOps.lrScaleRanges(l, () => 1).length).toBe(0);
  });

  it('reference: a scaled element steps exactly as an unscaled AdamW with lr·s', () => {
    const l = layout();
    const n = l.size;
    const table = gpuOps.lrScaleRanges(l, scaleOf);
    const decay = gpuOps.decayRanges(l);
    const p = randn(n, 1), m = new Float64Array(n), v = new Float64Array(n);
    const g = randn(n, 2);
    const got = Float64Array.from(p);
    ref.adamwStep(got, g, m, v, decay, Float64Array.of(1), n, { lr: 1e-2, step: 1, weightDecay: 0.05 }, table);
    for (const e of l.entries) {
      const s = scaleOf(e.name);
      const pp = p.slice(e.start, e.start + e.length), mm = new Float64Array(e.length), vv = new Float64Array(e.length);
      const dr = gpuOps.decaysByRecipe(e.name, e.shape) ? null : new Uint32Array(0);
      ref.adamwStep(pp, g.slice(e.start, e.start + e.length), mm, vv, dr, Float64Array.of(1), e.length, { lr: 1e-2 * s, step: 1, weightDecay: 0.05 });
      expectClose(got.subarray(e.start, e.start + e.length), pp, { atol: 1e-15, rtol: 1e-12 }, e.name);
    }
  });

  it('GPU matches the reference over three steps (decay table and lr scales together)', async () => {
    const gpu = await testGpu();
    const l = layout();
    const n = l.size;
    const table = gpuOps.lrScaleRanges(l, scaleOf), decay = gpuOps.decayRanges(l);
    const inTensor = new Uint8Array(n);
    for (const e of l.entries) inTensor.fill(1, e.start, e.start + e.length);
    const masked = (x: Float64Array) => x.map((val, i) => (inTensor[i] ? val : 0));
    const p = masked(randn(n, 3)), m = new Float64Array(n), v = new Float64Array(n);
    const A = { p: new Arena(gpu.device, l, 'p'), g: new Arena(gpu.device, l, 'g'), m: new Arena(gpu.device, l, 'm'), v: new Arena(gpu.device, l, 'v') };
    upload(gpu.device, A.p.all, Float32Array.from(p));
    upload(gpu.device, A.m.all, new Float32Array(n));
    upload(gpu.device, A.v.all, new Float32Array(n));
    const gt = gpuTensor(gpu, table), gd = gpuTensor(gpu, decay), clip = gpuTensor(gpu, Float64Array.of(1));
    for (let s = 1; s <= 3; s++) {
      const g = masked(randn(n, 10 + s));
      upload(gpu.device, A.g.all, Float32Array.from(g));
      const opts = { lr: 3e-2, step: s, weightDecay: 0.05 };
      ref.adamwStep(p, g, m, v, decay, Float64Array.of(1), n, opts, table);
      await run(gpu, (rec) => gpuOps.adamwStep(rec, A.p.all, A.g.all, A.m.all, A.v.all, gd, clip, n, opts, gt));
    }
    expectClose(await read(gpu, A.p.all), p, TOL.elementwise, 'params');
    expectClose(await read(gpu, A.m.all), m, TOL.elementwise, 'm');
    expectClose(await read(gpu, A.v.all), v, TOL.elementwise, 'v');
    // A scale-0 tensor does not move (what a frozen part of a model needs).
    const z = gpuOps.lrScaleRanges(l, () => 0);
    const before = await read(gpu, A.p.all);
    await run(gpu, (rec) => gpuOps.adamwStep(rec, A.p.all, A.g.all, A.m.all, A.v.all, gd, clip, n, { lr: 1, step: 4 }, gpuTensor(gpu, z)));
    expect(Buffer.from((await read(gpu, A.p.all)).buffer).equals(Buffer.from(before.buffer))).toBe(true);
  });
});
