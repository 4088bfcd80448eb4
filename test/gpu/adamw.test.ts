import { describe, expect, it } from 'vitest';
import { Arena, ArenaLayout, createTensor, upload } from '../../src/gpu/buffers';
import type { Gpu } from '../../src/gpu/device';
import * as gpuOps from '../../src/gpu/ops/adamw';
import * as ref from '../../src/ref/adamw';
import { TOL, expectClose, expectSameBits, gpuTensor, randn, read, rng, run, testGpu } from '../helpers';

/** An MAE parameter layout with timm names (width D, decoder width Dd, patch p×p×C, L patches). */
function maeLayout(cfg: { D: number; depth: number; Dd: number; depthD: number; p: number; C: number; L: number }): ArenaLayout {
  const { D, depth, Dd, depthD, p, C, L } = cfg;
  const layout = new ArenaLayout();
  const block = (prefix: string, W: number): void => {
    layout.add(`${prefix}.norm1.weight`, [W]);
    layout.add(`${prefix}.norm1.bias`, [W]);
    layout.add(`${prefix}.attn.qkv.weight`, [3 * W, W]);
    layout.add(`${prefix}.attn.qkv.bias`, [3 * W]);
    layout.add(`${prefix}.attn.proj.weight`, [W, W]);
    layout.add(`${prefix}.attn.proj.bias`, [W]);
    layout.add(`${prefix}.norm2.weight`, [W]);
    layout.add(`${prefix}.norm2.bias`, [W]);
    layout.add(`${prefix}.mlp.fc1.weight`, [4 * W, W]);
    layout.add(`${prefix}.mlp.fc1.bias`, [4 * W]);
    layout.add(`${prefix}.mlp.fc2.weight`, [W, 4 * W]);
    layout.add(`${prefix}.mlp.fc2.bias`, [W]);
  };
  layout.add('cls_token', [1, 1, D]);
  layout.add('pos_embed', [1, 1 + L, D]);
  layout.add('patch_embed.proj.weight', [D, C, p, p]);
  layout.add('patch_embed.proj.bias', [D]);
  for (let i = 0; i < depth; i++) block(`blocks.${i}`, D);
  layout.add('norm.weight', [D]);
  layout.add('norm.bias', [D]);
  layout.add('mask_token', [1, 1, Dd]);
  layout.add('decoder_pos_embed', [1, 1 + L, Dd]);
  layout.add('decoder_embed.weight', [Dd, D]);
  layout.add('decoder_embed.bias', [Dd]);
  for (let i = 0; i < depthD; i++) block(`decoder_blocks.${i}`, Dd);
  layout.add('decoder_norm.weight', [Dd]);
  layout.add('decoder_norm.bias', [Dd]);
  layout.add('decoder_pred.weight', [p * p * C, Dd]);
  layout.add('decoder_pred.bias', [p * p * C]);
  return layout;
}

/** Gradients with the cases that matter for eps: exact zeros and values far below eps. */
function grads(n: number, seed: number): Float64Array {
  const g = randn(n, seed);
  for (let i = 50; i < n; i += 97) g[i] = 0;
  for (let i = 13; i < n; i += 101) g[i] = Math.fround(3e-9 * (i % 2 ? 1 : -1));
  return g;
}

/** Non-negative second moments from an earlier step. */
const secondMoments = (n: number, seed: number): Float64Array => randn(n, seed, 0.01).map((x) => Math.fround(x * x));

/** Sorted, disjoint ranges touching both ends of [0, n) (n ≥ 141). */
function testRanges(n: number): Uint32Array {
  if (n < 141) throw new Error('testRanges: n too small');
  return Uint32Array.of(0, 3, Math.floor(n / 3), Math.floor(n / 2), n - 70, n);
}

interface Case {
  n: number;
  steps: number;
  /** Step count t of the first update. */
  t0?: number;
  ranges: 'all' | 'none' | 'table';
  clip: number;
  warm?: boolean;
}

async function gpuVsRef(gpu: Gpu, c: Case): Promise<void> {
  const { n, steps } = c;
  const t0 = c.t0 ?? 1;
  const table = c.ranges === 'table' ? testRanges(n) : c.ranges === 'none' ? new Uint32Array(0) : null;
  const p = randn(n, 1), m = c.warm ? randn(n, 2, 0.1) : new Float64Array(n), v = c.warm ? secondMoments(n, 3) : new Float64Array(n);
  const gp = gpuTensor(gpu, p), gm = gpuTensor(gpu, m), gv = gpuTensor(gpu, v), gg = gpuTensor(gpu, n);
  const gr = table ? gpuTensor(gpu, table) : null;
  const clip = Float64Array.of(Math.fround(c.clip));
  const gclip = gpuTensor(gpu, clip);
  const lr = 1e-2;
  for (let s = 0; s < steps; s++) {
    const g = grads(n, 100 + s);
    upload(gpu.device, gg, Float32Array.from(g));
    const opts = { lr, step: t0 + s, weightDecay: 0.3 }; // a large decay, so a wrong mask shows
    ref.adamwStep(p, g, m, v, table, clip, n, opts);
    await run(gpu, (rec) => gpuOps.adamwStep(rec, gp, gg, gm, gv, gr, gclip, n, opts));
  }
  const what = `n=${n} steps=${steps} t0=${t0} ranges=${c.ranges} clip=${c.clip}`;
  expectClose(await read(gpu, gm), m, TOL.elementwise, `m (${what})`);
  expectClose(await read(gpu, gv), v, TOL.elementwise, `v (${what})`);
  expectClose(await read(gpu, gp), p, TOL.elementwise, `params (${what})`);
}

describe('AdamW reference', () => {
  it('matches a hand-computed step on 3 elements (torch.optim.AdamW)', () => {
    // t = 1, lr 0.1, wd 0.05, betas (0.9, 0.95), eps 1e-8, clip 0.5, decay on elements 0 and 1 only.
    // g' = 0.5·[0.2, −0.4, 0.3] = [0.1, −0.2, 0.15]
    // m = 0.1·g' = [0.01, −0.02, 0.015];  v = 0.05·g'² = [0.0005, 0.002, 0.001125]
    // bc1 = 0.1, bc2 = 0.05: step_size = 0.1/0.1 = 1, denom = sqrt(v)/sqrt(0.05) + 1e-8 = |g'| + 1e-8
    // p0 = 1·(1 − 0.1·0.05) − 0.01/0.10000001    = 0.995 − 0.0999999900000001 = 0.8950000099999990…
    // p1 = −2·0.995       + 0.02/0.20000001       = −1.99 + 0.0999999950000002 = −1.8900000049999997…
    // p2 = 0.5 (no decay) − 0.015/0.15000001      = 0.5 − 0.0999999933333338   = 0.4000000066666662…
    const p = Float64Array.of(1, -2, 0.5);
    const g = Float64Array.of(0.2, -0.4, 0.3);
    const m = new Float64Array(3), v = new Float64Array(3);
    ref.adamwStep(p, g, m, v, Uint32Array.of(0, 2), Float64Array.of(0.5), 3, { lr: 0.1, step: 1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05 });
    const want = { p: [0.895000009999999, -1.8900000049999997, 0.4000000066666662], m: [0.01, -0.02, 0.015], v: [0.0005, 0.002, 0.001125] };
    for (let i = 0; i < 3; i++) {
      expect(p[i], `p[${i}]`).toBeCloseTo(want.p[i], 14);
      expect(m[i], `m[${i}]`).toBeCloseTo(want.m[i], 15);
      expect(v[i], `v[${i}]`).toBeCloseTo(want.v[i], 15);
    }
  });

  it('clip coefficient and norm follow clip_grad_norm_', () => {
    const norm = new Float64Array(1), coef = new Float64Array(1);
    ref.globalGradNorm(norm, Float64Array.of(3, 4), 2);
    expect(norm[0]).toBe(5);
    ref.clipCoefficient(coef, norm, 1);
    expect(coef[0]).toBeCloseTo(1 / (5 + 1e-6), 15);
    ref.clipCoefficient(coef, norm, 10);
    expect(coef[0]).toBe(1);
  });

  it('decay table follows the recipe: matrices decay; biases, norms, tokens, position embeddings do not', () => {
    const layout = maeLayout({ D: 8, depth: 1, Dd: 4, depthD: 1, p: 2, C: 3, L: 4 });
    const decayed = layout.entries.filter((e) => gpuOps.decaysByRecipe(e.name, e.shape)).map((e) => e.name);
    expect(decayed).toEqual([
      'patch_embed.proj.weight',
      'blocks.0.attn.qkv.weight', 'blocks.0.attn.proj.weight', 'blocks.0.mlp.fc1.weight', 'blocks.0.mlp.fc2.weight',
      'decoder_embed.weight',
      'decoder_blocks.0.attn.qkv.weight', 'decoder_blocks.0.attn.proj.weight', 'decoder_blocks.0.mlp.fc1.weight', 'decoder_blocks.0.mlp.fc2.weight',
      'decoder_pred.weight',
    ]);
    // By name alone (no shape) the same rule holds for the MAE names.
    for (const e of layout.entries) expect(gpuOps.noWeightDecay(e.name), e.name).toBe(gpuOps.noWeightDecay(e.name, e.shape));
    const table = gpuOps.decayRanges(layout);
    const pe = layout.get('patch_embed.proj.weight');
    expect(Array.from(table.slice(0, 2))).toEqual([pe.start, pe.start + 8 * 3 * 2 * 2]);
    expect(table.length).toBe(2 * decayed.length);
    for (let r = 2; r < table.length; r += 2) expect(table[r]).toBeGreaterThan(table[r - 1]); // sorted, disjoint
    // Tensors that touch (length a multiple of 64 elements) merge into one range.
    const l2 = new ArenaLayout();
    l2.add('a.weight', [8, 8]);
    l2.add('b.weight', [8, 8]);
    l2.add('b.bias', [8]);
    l2.add('c.weight', [3, 5]);
    expect(Array.from(gpuOps.decayRanges(l2))).toEqual([0, 128, 192, 207]);
    expect(Array.from(gpuOps.decayRanges(l2, () => false))).toEqual([]);
  });
});

describe('AdamW step (GPU vs float64 reference)', () => {
  const cases: Case[] = [
    { n: 1, steps: 1, ranges: 'all', clip: 1 },
    { n: 1, steps: 3, ranges: 'none', clip: 0.25 },
    { n: 257, steps: 1, ranges: 'table', clip: 1 },
    { n: 257, steps: 3, ranges: 'all', clip: 0.3 },
    { n: 257, steps: 2, t0: 1000, ranges: 'table', clip: 1, warm: true },
    { n: 100003, steps: 1, ranges: 'table', clip: 0.7 },
    { n: 100003, steps: 3, ranges: 'table', clip: 1 },
    { n: 100003, steps: 2, t0: 5, ranges: 'none', clip: 1, warm: true },
  ];
  for (const c of cases) {
    it(`n=${c.n}, ${c.steps} step(s) from t=${c.t0 ?? 1}${c.warm ? ' (non-zero moments)' : ''}, decay ${c.ranges}, clip ${c.clip}`, async () => {
      await gpuVsRef(await testGpu(), c);
    });
  }

  it('over a layout: padding stays exactly 0, tensors match the reference, clipping on the GPU (active and inactive)', async () => {
    const gpu = await testGpu();
    const layout = maeLayout({ D: 12, depth: 1, Dd: 8, depthD: 1, p: 2, C: 3, L: 9 });
    const n = layout.size;
    const table = gpuOps.decayRanges(layout);
    const inTensor = new Uint8Array(n);
    for (const e of layout.entries) inTensor.fill(1, e.start, e.start + e.length);
    const masked = (x: Float64Array): Float64Array => x.map((val, i) => (inTensor[i] ? val : 0));
    for (const maxNorm of [0.5, 1e9]) {
      const p = masked(randn(n, 1)), m = new Float64Array(n), v = new Float64Array(n);
      const arenas = { p: new Arena(gpu.device, layout, 'params'), g: new Arena(gpu.device, layout, 'grads'), m: new Arena(gpu.device, layout, 'm'), v: new Arena(gpu.device, layout, 'v') };
      upload(gpu.device, arenas.p.all, Float32Array.from(p));
      for (const a of [arenas.m, arenas.v, arenas.g]) upload(gpu.device, a.all, new Float32Array(n));
      const gr = gpuTensor(gpu, table), norm = gpuTensor(gpu, 1), clip = gpuTensor(gpu, 1);
      const refNorm = new Float64Array(1), refClip = new Float64Array(1);
      for (let s = 1; s <= 3; s++) {
        const g = masked(grads(n, 10 + s));
        upload(gpu.device, arenas.g.all, Float32Array.from(g));
        const opts = { lr: 1e-2, step: s };
        ref.globalGradNorm(refNorm, g, n);
        ref.clipCoefficient(refClip, refNorm, maxNorm);
        ref.adamwStep(p, g, m, v, table, refClip, n, opts);
        await run(gpu, (rec) => {
          gpuOps.globalGradNorm(rec, norm, arenas.g.all, n);
          gpuOps.clipCoefficient(rec, clip, norm, maxNorm);
          gpuOps.adamwStep(rec, arenas.p.all, arenas.g.all, arenas.m.all, arenas.v.all, gr, clip, n, opts);
        });
      }
      expectClose(await read(gpu, norm), refNorm, TOL.reduction, 'grad norm');
      expectClose(await read(gpu, clip), refClip, TOL.reduction, `clip coefficient (max norm ${maxNorm})`);
      if (maxNorm > 1e6) expect((await read(gpu, clip))[0]).toBe(1);
      else expect(refClip[0]).toBeLessThan(0.5);
      const got = { p: await read(gpu, arenas.p.all), m: await read(gpu, arenas.m.all), v: await read(gpu, arenas.v.all) };
      for (const [k, arr] of Object.entries(got)) {
        const bits = new Uint32Array(arr.buffer);
        const bad = [...bits.keys()].filter((i) => !inTensor[i] && bits[i] !== 0);
        expect(bad, `${k}: padding elements that are not +0`).toEqual([]);
      }
      expectClose(got.m, m, TOL.elementwise, 'm');
      expectClose(got.v, v, TOL.elementwise, 'v');
      expectClose(got.p, p, TOL.elementwise, 'params');
      for (const a of Object.values(arenas)) a.destroy();
    }
  });

  it('realistic: ViT-Tiny MAE arena (5.8 M elements, decoder 2×128), one step with the recipe decay table, clipping active', async () => {
    const gpu = await testGpu();
    const layout = maeLayout({ D: 192, depth: 12, Dd: 128, depthD: 2, p: 4, C: 3, L: 64 });
    const n = layout.size;
    expect(n).toBeGreaterThan(5_000_000);
    const table = gpuOps.decayRanges(layout);
    const inTensor = new Uint8Array(n);
    for (const e of layout.entries) inTensor.fill(1, e.start, e.start + e.length);
    const masked = (x: Float64Array): Float64Array => x.map((val, i) => (inTensor[i] ? val : 0));
    const p = masked(randn(n, 1, 0.05)), g = masked(grads(n, 2)), m = new Float64Array(n), v = new Float64Array(n);
    const t = { p: gpuTensor(gpu, p), g: gpuTensor(gpu, g), m: gpuTensor(gpu, n), v: gpuTensor(gpu, n), r: gpuTensor(gpu, table), norm: gpuTensor(gpu, 1), clip: gpuTensor(gpu, 1) };
    const opts = { lr: 1.5e-4 * 64 / 256, step: 1 };
    const refNorm = new Float64Array(1), refClip = new Float64Array(1);
    ref.globalGradNorm(refNorm, g, n);
    ref.clipCoefficient(refClip, refNorm, 1);
    expect(refClip[0]).toBeLessThan(0.01);
    ref.adamwStep(p, g, m, v, table, refClip, n, opts);
    await run(gpu, (rec) => {
      gpuOps.globalGradNorm(rec, t.norm, t.g, n);
      gpuOps.clipCoefficient(rec, t.clip, t.norm, 1);
      gpuOps.adamwStep(rec, t.p, t.g, t.m, t.v, t.r, t.clip, n, opts);
    });
    expectClose(await read(gpu, t.norm), refNorm, TOL.reduction, 'grad norm');
    expectClose(await read(gpu, t.m), m, TOL.elementwise, 'm');
    expectClose(await read(gpu, t.v), v, TOL.elementwise, 'v');
    expectClose(await read(gpu, t.p), p, TOL.elementwise, 'params');
    for (const x of Object.values(t)) x.buffer.destroy();
  });
});

/** f32 values in [-0.5, 0.5) from a multiplicative hash: cheap for arenas of many millions. */
function hashed(n: number, mult: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.imul(i + 1, mult) >>> 0) / 4294967296 - 0.5;
  return out;
}

describe('AdamW step on a 2-D dispatch grid', () => {
  it('n beyond 65535 workgroups of 256: every element is updated, checked in chunks against the reference', async () => {
    const gpu = await testGpu();
    const n = 65535 * 256 + 4099; // 2 rows of workgroups; the last row is partial
    const table = Uint32Array.of(5, 1000, 16_000_000, n - 100);
    const p0 = hashed(n, 0x9e3779b1), g0 = hashed(n, 0x85ebca6b);
    const t = { p: createTensor(gpu.device, n, 'p', p0), g: createTensor(gpu.device, n, 'g', g0), m: createTensor(gpu.device, n, 'm'), v: createTensor(gpu.device, n, 'v'), r: gpuTensor(gpu, table), clip: gpuTensor(gpu, Float64Array.of(1)) };
    const opts = { lr: 1e-2, step: 1, weightDecay: 0.3 };
    await run(gpu, (rec) => gpuOps.adamwStep(rec, t.p, t.g, t.m, t.v, t.r, t.clip, n, opts));
    const got = { p: await read(gpu, t.p), m: await read(gpu, t.m), v: await read(gpu, t.v) };
    const CHUNK = 1 << 20;
    for (let a = 0; a < n; a += CHUNK) {
      const b = Math.min(n, a + CHUNK);
      const local: number[] = []; // the table's ranges inside [a, b), shifted to the chunk
      for (let r = 0; r < table.length; r += 2) {
        const s = Math.max(a, table[r]), e = Math.min(b, table[r + 1]);
        if (s < e) local.push(s - a, e - a);
      }
      const p = Float64Array.from(p0.subarray(a, b)), m = new Float64Array(b - a), v = new Float64Array(b - a);
      ref.adamwStep(p, Float64Array.from(g0.subarray(a, b)), m, v, Uint32Array.from(local), Float64Array.of(1), b - a, opts);
      expectClose(got.m.subarray(a, b), m, TOL.elementwise, `m [${a}, ${b})`);
      expectClose(got.v.subarray(a, b), v, TOL.elementwise, `v [${a}, ${b})`);
      expectClose(got.p.subarray(a, b), p, TOL.elementwise, `params [${a}, ${b})`);
    }
    for (const x of Object.values(t)) x.buffer.destroy();
  });
});

describe('global gradient norm', () => {
  for (const n of [1, 257, 100003, 1_000_003]) {
    it(`n=${n} matches the reference`, async () => {
      const gpu = await testGpu();
      const g = randn(n, n);
      const want = new Float64Array(1);
      ref.globalGradNorm(want, g, n);
      const out = gpuTensor(gpu, 1);
      await run(gpu, (rec) => gpuOps.globalGradNorm(rec, out, gpuTensor(gpu, g), n));
      expectClose(await read(gpu, out), want, TOL.reduction, `‖g‖ (n=${n})`);
    });
  }

  it('is deterministic: the same inputs give bit-identical norms and AdamW updates', async () => {
    const gpu = await testGpu();
    const n = 700_001; // more than 256·256 elements: each thread of the first pass loops
    const g = gpuTensor(gpu, randn(n, 7));
    const p0 = Float32Array.from(randn(n, 8));
    const outs: Float32Array[] = [];
    for (let i = 0; i < 2; i++) {
      const norm = gpuTensor(gpu, 1), clip = gpuTensor(gpu, 1), p = gpuTensor(gpu, n), m = gpuTensor(gpu, n), v = gpuTensor(gpu, n);
      upload(gpu.device, p, p0);
      await run(gpu, (rec) => {
        gpuOps.globalGradNorm(rec, norm, g, n);
        gpuOps.clipCoefficient(rec, clip, norm, 100);
        gpuOps.adamwStep(rec, p, g, m, v, null, clip, n, { lr: 1e-3, step: 1 });
      });
      outs.push(await read(gpu, norm), await read(gpu, p));
    }
    expectSameBits(outs[2], outs[0], 'norm');
    expectSameBits(outs[3], outs[1], 'params');
  });
});

/**
 * Sorted, disjoint [start, end) ranges inside [0, n) with random gaps and lengths up to `maxLen`
 * (so boundaries fall anywhere inside a vec4 and a block, and short ranges share a vec4),
 * flattened with `per` u32s a range; `extra(r)` fills the u32s after start and end.
 */
function randomRanges(n: number, seed: number, maxLen: number, per = 2, extra: (r: () => number) => number[] = () => []): Uint32Array {
  const r = rng(seed);
  const out: number[] = [];
  let at = Math.floor(r() * Math.min(maxLen, 7));
  while (at < n) {
    const end = Math.min(n, at + 1 + Math.floor(r() * maxLen));
    out.push(at, end, ...extra(r).slice(0, per - 2));
    at = end + 1 + Math.floor(r() * maxLen);
  }
  return Uint32Array.from(out);
}

/** lr-scale triples with f32 scales in (0, 1]. */
const randomLrScales = (n: number, seed: number, maxLen: number): Uint32Array => {
  const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
  return randomRanges(n, seed, maxLen, 3, (r) => {
    f[0] = Math.fround(0.65 ** Math.floor(1 + r() * 12));
    return [bits[0]];
  });
};

describe('AdamW reporting the gradient norm from its own reads (adamwStep gradNorm)', () => {
  // n = 4·k: the vec4 path covers all of it and sums the norm on the way; n % 4 ≠ 0: the norm
  // pass runs first. Either way the update is the one without a norm, bit for bit.
  for (const n of [4, 1024, 5_796_992, 4099, 65_537]) {
    it(`n=${n}: params, m and v bit-identical to a step without it; the norm matches the reference`, async () => {
      const gpu = await testGpu();
      const g = grads(n, 71), p0 = randn(n, 72), m0 = randn(n, 73).map((x) => Math.abs(x) * 1e-2), v0 = randn(n, 74).map((x) => x * x * 1e-3);
      const opts = { lr: 1e-2, step: 3 };
      const want = new Float64Array(1);
      ref.globalGradNorm(want, g, n);
      const outs: Float32Array[][] = [];
      const norm = gpuTensor(gpu, Float64Array.of(NaN));
      for (const fused of [false, true]) {
        const [tp, tg, tm, tv] = [p0, g, m0, v0].map((x) => gpuTensor(gpu, x));
        await run(gpu, (rec) => gpuOps.adamwStep(rec, tp, tg, tm, tv, null, gpuTensor(gpu, Float64Array.of(1)), n, opts, null, 'vec4', fused ? norm : undefined));
        outs.push([await read(gpu, tp), await read(gpu, tm), await read(gpu, tv)]);
      }
      ['params', 'm', 'v'].forEach((k, i) => expectSameBits(outs[1][i], outs[0][i], `${k} with the norm reported`));
      expectClose(await read(gpu, norm), want, TOL.reduction, 'gradient norm');
    });
  }

  it('a non-finite gradient gives a non-finite norm (what the NaN guard reads)', async () => {
    const gpu = await testGpu();
    const n = 4096;
    const g = grads(n, 75);
    g[1234] = NaN;
    const norm = gpuTensor(gpu, 1);
    await run(gpu, (rec) => gpuOps.adamwStep(rec, gpuTensor(gpu, n), gpuTensor(gpu, g), gpuTensor(gpu, n), gpuTensor(gpu, n), null, gpuTensor(gpu, Float64Array.of(1)), n, { lr: 1e-3, step: 1 }, null, 'vec4', norm));
    expect(Number.isFinite((await read(gpu, norm))[0])).toBe(false);
  });
});

describe('AdamW vec4 path: bit-identical to the scalar entry point', () => {
  const SENTINEL = 12345.5; // beyond n: must stay untouched

  async function compareVariants(gpu: Gpu, n: number, table: Uint32Array | null, lrTable: Uint32Array | null, what: string, steps = 2): Promise<void> {
    const len = n + 5;
    const withSentinels = (x: Float64Array): Float64Array => { const y = new Float64Array(len).fill(SENTINEL); y.set(x); return y; };
    const p = withSentinels(randn(n, 1)), m = withSentinels(randn(n, 2, 0.1)), v = withSentinels(secondMoments(n, 3));
    const sets = (['vec4', 'scalar'] as const).map((variant) => ({ variant, p: gpuTensor(gpu, p), m: gpuTensor(gpu, m), v: gpuTensor(gpu, v) }));
    const gg = gpuTensor(gpu, len);
    const gr = table ? gpuTensor(gpu, table.length ? table : Uint32Array.of(0)) : null;
    const grEmpty = table && table.length === 0 ? { ...gr!, length: 0 } : gr; // a table of length 0: nothing decays
    const gl = lrTable && lrTable.length ? gpuTensor(gpu, lrTable) : null;
    const clip = gpuTensor(gpu, Float64Array.of(Math.fround(0.7)));
    for (let s = 0; s < steps; s++) {
      upload(gpu.device, gg, Float32Array.from(withSentinels(grads(n, 200 + s))));
      const opts = { lr: 3e-3, step: 7 + s, weightDecay: 0.3 };
      await run(gpu, (rec) => {
        for (const t of sets) gpuOps.adamwStep(rec, t.p, gg, t.m, t.v, grEmpty, clip, n, opts, gl, t.variant);
      });
    }
    const [a, b] = sets;
    for (const k of ['p', 'm', 'v'] as const) {
      const got = await read(gpu, a[k]), want = await read(gpu, b[k]);
      expectSameBits(got, want, `${k}, vec4 vs scalar (${what})`);
      expect(Array.from(got.subarray(n)), `${k}: elements past n`).toEqual(new Array(5).fill(SENTINEL));
      if (n > 0) expect(got[n - 1], `${k}[n − 1] was updated`).not.toBe(k === 'p' ? Math.fround(p[n - 1]) : k === 'm' ? Math.fround(m[n - 1]) : Math.fround(v[n - 1]));
    }
    for (const t of sets) for (const x of [t.p, t.m, t.v]) x.buffer.destroy();
  }

  // Lengths around the vec4 width and the vec4 path's block (2048 vec4s = 8192 elements).
  for (const n of [1, 2, 3, 4, 5, 7, 8, 257, 4097, 8191, 8192, 8193, 16_387, 100_003]) {
    it(`n=${n}: odd decay ranges and lr scales, decay everywhere, decay nowhere`, async () => {
      const gpu = await testGpu();
      const maxLen = Math.max(2, Math.floor(n / 5));
      await compareVariants(gpu, n, randomRanges(n, n, maxLen), randomLrScales(n, n + 1, maxLen), 'odd ranges + lr scales');
      await compareVariants(gpu, n, randomRanges(n, n + 2, maxLen), null, 'odd ranges');
      await compareVariants(gpu, n, null, randomLrScales(n, n + 3, maxLen), 'decay all + lr scales');
      await compareVariants(gpu, n, new Uint32Array(0), null, 'no decay');
    });
  }

  it('many short ranges in one block (lengths and gaps 1–3) and a table over several blocks', async () => {
    const gpu = await testGpu();
    await compareVariants(gpu, 10_001, randomRanges(10_001, 5, 3), randomLrScales(10_001, 6, 3), 'short ranges');
    await compareVariants(gpu, 262_147, randomRanges(262_147, 7, 700), randomLrScales(262_147, 8, 5000), 'several blocks');
  });

  it('an MAE layout with the recipe decay table and a layer-decay lr table', async () => {
    const gpu = await testGpu();
    const layout = maeLayout({ D: 192, depth: 2, Dd: 128, depthD: 1, p: 4, C: 3, L: 64 });
    const depthOf = (name: string): number => (name.startsWith('blocks.') ? 1 + Number(name.split('.')[1]) : name.startsWith('decoder') || name === 'mask_token' || name === 'norm.weight' || name === 'norm.bias' ? 3 : 0);
    const lrTable = gpuOps.lrScaleRanges(layout, (name) => 0.75 ** (3 - depthOf(name)));
    expect(lrTable.length).toBeGreaterThan(3);
    await compareVariants(gpu, layout.size, gpuOps.decayRanges(layout), lrTable, 'MAE layout', 1);
  });
});

describe('global gradient norm: the vec4 first pass', () => {
  // Views longer than n (sentinels of 1e30 past n, which must not count) and exactly 4⌈n/4⌉.
  for (const [n, extra] of [[65_536, 0], [100_003, 1], [1_000_001, 3], [5_800_000, 8]] as const) {
    it(`n=${n} (view of n + ${extra}) matches the reference, forced and by default`, async () => {
      const gpu = await testGpu();
      const g = randn(n, n + 9, 0.01);
      const padded = new Float64Array(n + extra).fill(1e30);
      padded.set(g);
      const x = gpuTensor(gpu, padded);
      const want = new Float64Array(1);
      ref.globalGradNorm(want, g, n);
      const outs = { vec4: gpuTensor(gpu, 1), auto: gpuTensor(gpu, 1), scalar: gpuTensor(gpu, 1) };
      await run(gpu, (rec) => {
        for (const [variant, out] of Object.entries(outs)) gpuOps.globalGradNorm(rec, out, x, n, variant as 'vec4' | 'auto' | 'scalar');
      });
      const got = { vec4: await read(gpu, outs.vec4), auto: await read(gpu, outs.auto), scalar: await read(gpu, outs.scalar) };
      expectClose(got.vec4, want, TOL.reduction, `‖g‖ vec4 (n=${n})`);
      expectClose(got.scalar, want, TOL.reduction, `‖g‖ scalar (n=${n})`);
      expectSameBits(got.auto, got.vec4, 'the default takes the vec4 pass for a view of 4⌈n/4⌉ elements');
    });
  }

  it('takes the scalar pass where the view ends at an odd n, and refuses a forced vec4 pass there', async () => {
    const gpu = await testGpu();
    const n = 100_003;
    const x = gpuTensor(gpu, randn(n, 3, 0.01));
    const outs = { auto: gpuTensor(gpu, 1), scalar: gpuTensor(gpu, 1) };
    await run(gpu, (rec) => {
      gpuOps.globalGradNorm(rec, outs.auto, x, n);
      gpuOps.globalGradNorm(rec, outs.scalar, x, n, 'scalar');
      expect(() => gpuOps.globalGradNorm(rec, outs.auto, x, n, 'vec4')).toThrow(/needs a view of 100004 elements/);
    });
    expectSameBits(await read(gpu, outs.auto), await read(gpu, outs.scalar), 'auto on an odd-length view');
  });

  it('is deterministic: bit-identical norms on rerun', async () => {
    const gpu = await testGpu();
    const n = 700_000;
    const x = gpuTensor(gpu, randn(n, 17));
    const a = gpuTensor(gpu, 1), b = gpuTensor(gpu, 1);
    await run(gpu, (rec) => gpuOps.globalGradNorm(rec, a, x, n, 'vec4'));
    await run(gpu, (rec) => gpuOps.globalGradNorm(rec, b, x, n, 'vec4'));
    expectSameBits(await read(gpu, b), await read(gpu, a), 'vec4 norm');
  });
});
