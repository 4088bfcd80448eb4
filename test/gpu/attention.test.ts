import { describe, expect, it, type TestContext } from 'vitest';
import { GpuError, type Gpu } from '../../src/gpu/device';
import { ceilDiv, type Recorder } from '../../src/gpu/kernels';
import { scratch, subgroupWorkgroupSize } from '../../src/gpu/ops/common';
import * as gpuOps from '../../src/gpu/ops/attention';
import type { AttentionVariant } from '../../src/gpu/ops/attention';
import * as ref from '../../src/ref/attention';
import { TOL, checkGradients, dot, expectClose, expectSameBits, gpuTensor, randn, read, run, testGpu, testGpuForVariant, REDUCTION_VARIANTS } from '../helpers';

// [name, B, T, H, hd]
const SHAPES: Array<[string, number, number, number, number]> = [
  ['one visible patch (cls + 1), odd head width', 1, 2, 1, 5],
  ['odd sizes, hd=16', 3, 11, 2, 16],
  ['ViT-Tiny encoder, 25% of 64 patches visible', 2, 17, 3, 64],
  ['decoder width 128, 64 patches', 2, 65, 4, 32],
  ['224-px images, 16-px patches', 1, 197, 3, 64],
  ['224-px images, 14-px patches', 1, 257, 1, 64],
  ['DMAE teacher (ViT-Small), batch 8', 8, 17, 6, 64],
  ['ViT-B, 224 px, 75% masked', 2, 50, 12, 64],
];

/** Every attention variant: the row-reduction pair and the written-out blocks on 4- or 8-lane subgroups. */
const ATTENTION_VARIANTS: readonly AttentionVariant[] = [...REDUCTION_VARIANTS, 'subgroup_quads'];

/** The test's device, or a skip that says why, when it cannot run `variant`. */
const gpuFor = (variant: AttentionVariant, ctx: TestContext): Promise<Gpu> =>
  testGpuForVariant(variant, gpuOps.attentionVariants, ctx, variant === 'subgroup_quads' ? 'subgroups of exactly 4 or 8 lanes' : undefined);

/** Reference forward and backward of one shape, with the inputs it used. */
function reference(B: number, T: number, H: number, hd: number, seed: number, qkvScale = 2) {
  const D = H * hd;
  // qkvScale 2 makes the scores spread over a few units, so the softmax rows are far from uniform.
  const qkv = randn(B * T * 3 * D, seed, qkvScale);
  const dout = randn(B * T * D, seed + 1);
  const out = new Float64Array(B * T * D), probs = new Float64Array(B * H * T * T), dqkv = new Float64Array(B * T * 3 * D);
  ref.attentionForward(out, probs, qkv, B, T, H, hd);
  ref.attentionBackward(dqkv, dout, qkv, probs, B, T, H, hd);
  return { qkv, dout, out, probs, dqkv };
}

describe.each(ATTENTION_VARIANTS)("attention, '%s' variant (GPU vs float64 reference)", (variant) => {
  for (const [name, B, T, H, hd] of SHAPES) {
    it(`${name}: B=${B} T=${T} H=${H} hd=${hd}, forward and backward`, async (ctx) => {
      const gpu = await gpuFor(variant, ctx);
      const D = H * hd;
      const want = reference(B, T, H, hd, 100 + T);
      const qkv = gpuTensor(gpu, want.qkv), dout = gpuTensor(gpu, want.dout);
      // Outputs start as garbage: every element must be assigned.
      const out = gpuTensor(gpu, randn(B * T * D, 7, 50)), probs = gpuTensor(gpu, randn(B * H * T * T, 8, 50));
      const dqkv = gpuTensor(gpu, randn(B * T * 3 * D, 9, 50));
      await run(gpu, (rec) => gpuOps.attentionForward(rec, out, probs, qkv, B, T, H, hd, variant));
      expectClose(await read(gpu, probs), want.probs, TOL.reduction, `probs (${variant})`);
      expectClose(await read(gpu, out), want.out, TOL.reduction, `out (${variant})`);
      // The backward reads the GPU's own probs, as in training.
      await run(gpu, (rec) => gpuOps.attentionBackward(rec, dqkv, dout, qkv, probs, B, T, H, hd, variant));
      expectClose(await read(gpu, dqkv), want.dqkv, TOL.gradient, `dqkv (${variant})`);
    });
  }

  it('is numerically stable: huge logits give the reference softmax, not NaN', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    const [B, T, H, hd] = [2, 6, 2, 4];
    // Scores of several thousand: exp() without the row max subtracted overflows float32.
    const want = reference(B, T, H, hd, 31, 60);
    const out = gpuTensor(gpu, B * T * H * hd), probs = gpuTensor(gpu, B * H * T * T);
    await run(gpu, (rec) => gpuOps.attentionForward(rec, out, probs, gpuTensor(gpu, want.qkv), B, T, H, hd, variant));
    expectClose(await read(gpu, probs), want.probs, TOL.reduction, 'probs (huge logits)');
    // out = Σ P·v with |v| up to 60: the absolute tolerance scales with the values.
    expectClose(await read(gpu, out), want.out, { atol: TOL.reduction.atol * 60, rtol: TOL.reduction.rtol }, 'out (huge logits)');
  });

  it('grows its scratch inside one submission: a small then a large backward in one recorder', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    const small = [2, 5, 2, 8] as const, large = [2, 40, 3, 24] as const;
    const ws = reference(...small, 41), wl = reference(...large, 42);
    const t = (w: typeof ws) => ({ qkv: gpuTensor(gpu, w.qkv), dout: gpuTensor(gpu, w.dout), probs: gpuTensor(gpu, w.probs), dqkv: gpuTensor(gpu, w.qkv.length) });
    const s = t(ws), l = t(wl);
    await run(gpu, (rec) => {
      gpuOps.attentionBackward(rec, s.dqkv, s.dout, s.qkv, s.probs, ...small, variant);
      gpuOps.attentionBackward(rec, l.dqkv, l.dout, l.qkv, l.probs, ...large, variant);
      gpuOps.attentionBackward(rec, s.dqkv, s.dout, s.qkv, s.probs, ...small, variant); // the smaller one again, on the grown scratch
    });
    expectClose(await read(gpu, s.dqkv), ws.dqkv, TOL.gradient, 'dqkv (small)');
    expectClose(await read(gpu, l.dqkv), wl.dqkv, TOL.gradient, 'dqkv (large)');
  });

  it('is deterministic: the same inputs give bit-identical outputs', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    for (const [B, T, H, hd] of [[2, 65, 4, 32], [3, 17, 3, 64]]) {
      const D = H * hd;
      const qkv = gpuTensor(gpu, randn(B * T * 3 * D, 51, 2)), dout = gpuTensor(gpu, randn(B * T * D, 52));
      const outs: Float32Array[][] = [];
      for (let rep = 0; rep < 2; rep++) {
        const out = gpuTensor(gpu, B * T * D), probs = gpuTensor(gpu, B * H * T * T), dqkv = gpuTensor(gpu, B * T * 3 * D);
        await run(gpu, (rec) => {
          gpuOps.attentionForward(rec, out, probs, qkv, B, T, H, hd, variant);
          gpuOps.attentionBackward(rec, dqkv, dout, qkv, probs, B, T, H, hd, variant);
        });
        outs.push([await read(gpu, out), await read(gpu, probs), await read(gpu, dqkv)]);
      }
      ['out', 'probs', 'dqkv'].forEach((what, i) => expectSameBits(outs[1][i], outs[0][i], `${what} (${variant}, T=${T})`));
    }
  });
});

// The subgroup kernels at workgroup sizes the wrapper does not pick on this device, dispatched
// directly as the wrapper would with another SG_WG: several subgroups per workgroup (only the one
// holding invocation 0 takes the keys; the column kernels split channels by invocation index), or
// one subgroup with idle lanes — neither is the "fast" case, whose shuffles need the workgroup to
// be exactly one subgroup. Also every KEYS and CH the wrapper can choose, and ROWS up to the most
// (32: T = 33 in a block of 32 rows and one of 1).
describe('attention subgroup kernels at other workgroup sizes and blockings', () => {
  for (const [sgWg, KEYS, CH, ROWS] of [[4, 1, 1, 8], [16, 2, 3, 5], [64, 4, 4, 8], [256, 3, 2, 7], [0, 1, 1, 1], [0, 2, 2, 6], [0, 3, 3, 8], [0, 4, 4, 3], [0, 3, 4, 16], [0, 3, 3, 22], [0, 4, 4, 32]]) {
    it(`SG_WG=${sgWg || "the adapter's"} KEYS=${KEYS} CH=${CH} ROWS=${ROWS}: forward and backward vs float64`, async (ctx) => {
      const gpu = await gpuFor('subgroup', ctx);
      const wg = sgWg || subgroupWorkgroupSize(gpu);
      for (const [B, T, H, hd, seed] of [[1, 2, 1, 5, 1], [2, 11, 2, 16, 2], [2, 33, 3, 40, 3]]) {
        const D = H * hd;
        const want = reference(B, T, H, hd, 300 + seed);
        const qkv = gpuTensor(gpu, want.qkv), dout = gpuTensor(gpu, want.dout);
        const out = gpuTensor(gpu, randn(B * T * D, 7, 50)), probs = gpuTensor(gpu, randn(B * H * T * T, 8, 50));
        const dqkv = gpuTensor(gpu, randn(B * T * 3 * D, 9, 50));
        const spec = (entry: string) => ({ shader: 'attention_subgroups', entry, constants: { SG_WG: wg, KEYS, CH, ROWS } });
        const params = [B, T, H, hd, { f32: hd ** -0.5 }, 0, 0, 0];
        await run(gpu, (rec) => {
          const ds = scratch(gpu.device, 'attention-dscores', B * H * T * T);
          rec.dispatch(spec('attention_scores'), [probs, qkv], params, [ceilDiv(T, ROWS), H, B]);
          rec.dispatch(spec('attention_weighted_sum'), [out, probs, qkv], params, [ceilDiv(T, ROWS), H, B]);
          rec.dispatch(spec('attention_backward_scores'), [ds, dout, qkv, probs], params, [ceilDiv(T, ROWS), H, B]);
          rec.dispatch(spec('attention_backward_qkv'), [dqkv, ds, probs, qkv, dout], params, [ceilDiv(T, ROWS), H, B]);
        });
        const what = ` (SG_WG=${wg}, KEYS=${KEYS}, CH=${CH}, ROWS=${ROWS}, B=${B} T=${T} H=${H} hd=${hd})`;
        expectClose(await read(gpu, probs), want.probs, TOL.reduction, `probs${what}`);
        expectClose(await read(gpu, out), want.out, TOL.reduction, `out${what}`);
        expectClose(await read(gpu, dqkv), want.dqkv, TOL.gradient, `dqkv${what}`);
      }
    });
  }
});

// The *_quads entry points at every row block the wrapper could choose (whole blocks of eight, a
// last block cut short by T, a workgroup of one block) and head widths of one and several
// channel steps; only on the adapter's own subgroup size, the one they are picked for.
describe("attention 'subgroup_quads' kernels at other row blocks", () => {
  for (const ROWS of [8, 16, 24, 32]) {
    it(`ROWS=${ROWS}: forward and backward vs float64`, async (ctx) => {
      const gpu = await gpuFor('subgroup_quads', ctx);
      for (const [B, T, H, hd, seed] of [[1, 2, 1, 4, 1], [2, 11, 2, 16, 2], [2, 33, 3, 40, 3], [1, 9, 1, 12, 4]]) {
        const D = H * hd;
        const want = reference(B, T, H, hd, 400 + seed);
        const qkv = gpuTensor(gpu, want.qkv), dout = gpuTensor(gpu, want.dout);
        const out = gpuTensor(gpu, randn(B * T * D, 7, 50)), probs = gpuTensor(gpu, randn(B * H * T * T, 8, 50));
        const dqkv = gpuTensor(gpu, randn(B * T * 3 * D, 9, 50));
        const spec = (entry: string) => ({ shader: 'attention_subgroups', entry: `${entry}_quads`, constants: { SG_WG: subgroupWorkgroupSize(gpu), ROWS } });
        const params = [B, T, H, hd, { f32: hd ** -0.5 }, 0, 0, 0];
        const groups: [number, number, number] = [ceilDiv(T, ROWS), H, B];
        await run(gpu, (rec) => {
          const ds = scratch(gpu.device, 'attention-dscores', B * H * T * T);
          rec.dispatch(spec('attention_scores'), [probs, qkv], params, groups);
          rec.dispatch(spec('attention_weighted_sum'), [out, probs, qkv], params, groups);
          rec.dispatch(spec('attention_backward_scores'), [ds, dout, qkv, probs], params, groups);
          rec.dispatch(spec('attention_backward_qkv'), [dqkv, ds, probs, qkv, dout], params, groups);
        });
        const what = ` (ROWS=${ROWS}, B=${B} T=${T} H=${H} hd=${hd})`;
        expectClose(await read(gpu, probs), want.probs, TOL.reduction, `probs${what}`);
        expectClose(await read(gpu, out), want.out, TOL.reduction, `out${what}`);
        expectClose(await read(gpu, dqkv), want.dqkv, TOL.gradient, `dqkv${what}`);
      }
    });
  }
});

describe('attention variants', () => {
  it("lists 'subgroup' exactly when the device has subgroups, and refuses it clearly without", async () => {
    const gpu = await testGpu();
    const sizes = gpu.subgroupSizes;
    const quads = gpu.hasSubgroups && sizes !== undefined && sizes.min === sizes.max && [4, 8].includes(sizes.max);
    expect(gpuOps.attentionVariants(gpu)).toEqual(gpu.hasSubgroups ? ['workgroup', 'subgroup', ...(quads ? ['subgroup_quads'] : [])] : ['workgroup']);
    const bare = Object.create(gpu, { hasSubgroups: { value: false } }) as Gpu;
    expect(gpuOps.attentionVariants(bare)).toEqual(['workgroup']);
    expect(gpuOps.defaultAttentionVariant(bare, 8, 17, 3, 64)).toBe('workgroup');
    const rec = { gpu: bare } as unknown as Recorder; // refused before anything is recorded
    const t = gpuTensor(gpu, 64);
    const fwd = () => gpuOps.attentionForward(rec, t, t, t, 1, 2, 1, 4, 'subgroup');
    const bwd = () => gpuOps.attentionBackward(rec, t, t, t, t, 1, 2, 1, 4, 'subgroup');
    for (const f of [fwd, bwd]) {
      expect(f).toThrow(GpuError);
      expect(f).toThrow(/'subgroup' needs the WebGPU feature 'subgroups'.*use 'workgroup'/);
    }
    expect(() => gpuOps.attentionForward(rec, t, t, t, 1, 2, 1, 4, 'tiled' as AttentionVariant)).toThrow(/Unknown attention variant 'tiled'/);
  });

  it("lists 'subgroup_quads' only with subgroups of exactly 4 or 8 lanes, and refuses it clearly elsewhere", async () => {
    const gpu = await testGpu();
    const t = gpuTensor(gpu, 64);
    for (const [hasSubgroups, subgroupSizes, listed] of [
      [true, { min: 4, max: 4 }, true], [true, { min: 8, max: 8 }, true], [true, { min: 8, max: 32 }, false],
      [true, { min: 32, max: 32 }, false], [true, undefined, false], [false, { min: 8, max: 8 }, false],
    ] as const) {
      const dev = Object.create(gpu, { hasSubgroups: { value: hasSubgroups }, subgroupSizes: { value: subgroupSizes } }) as Gpu;
      expect(gpuOps.attentionVariants(dev).includes('subgroup_quads'), JSON.stringify({ hasSubgroups, subgroupSizes })).toBe(listed);
      if (listed) continue;
      const rec = { gpu: dev } as unknown as Recorder; // refused before anything is recorded
      const f = () => gpuOps.attentionForward(rec, t, t, t, 1, 2, 1, 4, 'subgroup_quads');
      expect(f).toThrow(GpuError);
      expect(f).toThrow(/'subgroup_quads' needs subgroups of exactly 4 or 8 lanes.*use 'subgroup' or 'workgroup'/);
    }
  });

  it("'subgroup_quads' with a head width that is not whole quads runs the 'subgroup' kernels (the same bits)", async (ctx) => {
    const gpu = await gpuFor('subgroup_quads', ctx);
    const [B, T, H, hd] = [2, 11, 2, 6];
    const want = reference(B, T, H, hd, 88);
    const qkv = gpuTensor(gpu, want.qkv), dout = gpuTensor(gpu, want.dout);
    const got: Record<string, Float32Array[]> = {};
    for (const v of ['subgroup', 'subgroup_quads'] as const) {
      const out = gpuTensor(gpu, B * T * H * hd), probs = gpuTensor(gpu, B * H * T * T), dqkv = gpuTensor(gpu, B * T * 3 * H * hd);
      await run(gpu, (rec) => {
        gpuOps.attentionForward(rec, out, probs, qkv, B, T, H, hd, v);
        gpuOps.attentionBackward(rec, dqkv, dout, qkv, probs, B, T, H, hd, v);
      });
      got[v] = [await read(gpu, out), await read(gpu, probs), await read(gpu, dqkv)];
    }
    ['out', 'probs', 'dqkv'].forEach((what, i) => expectSameBits(got.subgroup_quads[i], got.subgroup[i], what));
  });

  it("'subgroup' runs where listed, and its workgroup size is the adapter's subgroup size", async (ctx) => {
    const gpu = await gpuFor('subgroup', ctx);
    const info = (gpu.device as { adapterInfo?: { subgroupMaxSize?: number } }).adapterInfo;
    expect(subgroupWorkgroupSize(gpu)).toBe(info?.subgroupMaxSize ?? 32);
  });

  it('the variants agree closely on a training shape (each within the float64 tolerance)', async (ctx) => {
    const gpu = await gpuFor('subgroup', ctx);
    const [B, T, H, hd] = [4, 17, 3, 64];
    const want = reference(B, T, H, hd, 77);
    const qkv = gpuTensor(gpu, want.qkv), dout = gpuTensor(gpu, want.dout);
    const got: Record<string, Float32Array> = {};
    for (const v of ATTENTION_VARIANTS.filter((x) => gpuOps.attentionVariants(gpu).includes(x))) {
      const out = gpuTensor(gpu, B * T * H * hd), probs = gpuTensor(gpu, B * H * T * T), dqkv = gpuTensor(gpu, B * T * 3 * H * hd);
      await run(gpu, (rec) => {
        gpuOps.attentionForward(rec, out, probs, qkv, B, T, H, hd, v);
        gpuOps.attentionBackward(rec, dqkv, dout, qkv, probs, B, T, H, hd, v);
      });
      got[v] = await read(gpu, dqkv);
    }
    expectClose(got.subgroup, Float64Array.from(got.workgroup), TOL.gradient, 'dqkv: subgroup vs workgroup');
    if (got.subgroup_quads) expectClose(got.subgroup_quads, Float64Array.from(got.workgroup), TOL.gradient, 'dqkv: subgroup_quads vs workgroup');
  });
});

describe('attention reference gradients', () => {
  for (const [B, T, H, hd] of [[1, 2, 1, 5], [2, 3, 2, 3], [1, 5, 3, 2]]) {
    it(`match finite differences of Σ out·w: B=${B} T=${T} H=${H} hd=${hd}`, () => {
      const D = H * hd;
      const qkv = randn(B * T * 3 * D, 61 + T, 1.5), w = randn(B * T * D, 62 + T);
      const loss = (i: Record<string, Float64Array>) => {
        const out = new Float64Array(B * T * D);
        ref.attentionForward(out, new Float64Array(B * H * T * T), i.qkv, B, T, H, hd);
        return dot(out, w);
      };
      const out = new Float64Array(B * T * D), probs = new Float64Array(B * H * T * T), dqkv = new Float64Array(B * T * 3 * D);
      ref.attentionForward(out, probs, qkv, B, T, H, hd);
      ref.attentionBackward(dqkv, w, qkv, probs, B, T, H, hd);
      checkGradients({ qkv }, loss, { qkv: dqkv }, { maxPerInput: 200 });
    });
  }
});
