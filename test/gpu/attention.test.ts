import { describe, expect, it } from 'vitest';
import * as gpuOps from '../../src/gpu/ops/attention';
import * as ref from '../../src/ref/attention';
import { TOL, checkGradients, dot, expectClose, expectSameBits, gpuTensor, randn, read, run, testGpu } from '../helpers';

// [name, B, T, H, hd]
const SHAPES: Array<[string, number, number, number, number]> = [
  ['one visible patch (cls + 1), odd head width', 1, 2, 1, 5],
  ['odd sizes, hd=16', 3, 11, 2, 16],
  ['ViT-Tiny encoder, 25% of 64 patches visible', 2, 17, 3, 64],
  ['decoder width 128, 64 patches', 2, 65, 4, 32],
  ['224-px images, 16-px patches', 1, 197, 3, 64],
  ['224-px images, 14-px patches', 1, 257, 1, 64],
];

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

describe('attention (GPU vs float64 reference)', () => {
  for (const [name, B, T, H, hd] of SHAPES) {
    it(`${name}: B=${B} T=${T} H=${H} hd=${hd}, forward and backward`, async () => {
      const gpu = await testGpu();
      const D = H * hd;
      const want = reference(B, T, H, hd, 100 + T);
      const qkv = gpuTensor(gpu, want.qkv), dout = gpuTensor(gpu, want.dout);
      // Outputs start as garbage: every element must be assigned.
      const out = gpuTensor(gpu, randn(B * T * D, 7, 50)), probs = gpuTensor(gpu, randn(B * H * T * T, 8, 50));
      const dqkv = gpuTensor(gpu, randn(B * T * 3 * D, 9, 50));
      await run(gpu, (rec) => gpuOps.attentionForward(rec, out, probs, qkv, B, T, H, hd));
      expectClose(await read(gpu, probs), want.probs, TOL.reduction, 'probs');
      expectClose(await read(gpu, out), want.out, TOL.reduction, 'out');
      // The backward reads the GPU's own probs, as in training.
      await run(gpu, (rec) => gpuOps.attentionBackward(rec, dqkv, dout, qkv, probs, B, T, H, hd));
      expectClose(await read(gpu, dqkv), want.dqkv, TOL.gradient, 'dqkv');
    });
  }

  it('is numerically stable: huge logits give the reference softmax, not NaN', async () => {
    const gpu = await testGpu();
    const [B, T, H, hd] = [2, 6, 2, 4];
    // Scores of several thousand: exp() without the row max subtracted overflows float32.
    const want = reference(B, T, H, hd, 31, 60);
    const out = gpuTensor(gpu, B * T * H * hd), probs = gpuTensor(gpu, B * H * T * T);
    await run(gpu, (rec) => gpuOps.attentionForward(rec, out, probs, gpuTensor(gpu, want.qkv), B, T, H, hd));
    expectClose(await read(gpu, probs), want.probs, TOL.reduction, 'probs (huge logits)');
    // out = Σ P·v with |v| up to 60: the absolute tolerance scales with the values.
    expectClose(await read(gpu, out), want.out, { atol: TOL.reduction.atol * 60, rtol: TOL.reduction.rtol }, 'out (huge logits)');
  });

  it('grows its scratch inside one submission: a small then a large backward in one recorder', async () => {
    const gpu = await testGpu();
    const small = [2, 5, 2, 8] as const, large = [2, 40, 3, 24] as const;
    const ws = reference(...small, 41), wl = reference(...large, 42);
    const t = (w: typeof ws) => ({ qkv: gpuTensor(gpu, w.qkv), dout: gpuTensor(gpu, w.dout), probs: gpuTensor(gpu, w.probs), dqkv: gpuTensor(gpu, w.qkv.length) });
    const s = t(ws), l = t(wl);
    await run(gpu, (rec) => {
      gpuOps.attentionBackward(rec, s.dqkv, s.dout, s.qkv, s.probs, ...small);
      gpuOps.attentionBackward(rec, l.dqkv, l.dout, l.qkv, l.probs, ...large);
      gpuOps.attentionBackward(rec, s.dqkv, s.dout, s.qkv, s.probs, ...small); // the smaller one again, on the grown scratch
    });
    expectClose(await read(gpu, s.dqkv), ws.dqkv, TOL.gradient, 'dqkv (small)');
    expectClose(await read(gpu, l.dqkv), wl.dqkv, TOL.gradient, 'dqkv (large)');
  });

  it('is deterministic: the same inputs give bit-identical outputs', async () => {
    const gpu = await testGpu();
    const [B, T, H, hd] = [2, 65, 4, 32];
    const D = H * hd;
    const qkv = gpuTensor(gpu, randn(B * T * 3 * D, 51, 2)), dout = gpuTensor(gpu, randn(B * T * D, 52));
    const outs: Float32Array[][] = [];
    for (let rep = 0; rep < 2; rep++) {
      const out = gpuTensor(gpu, B * T * D), probs = gpuTensor(gpu, B * H * T * T), dqkv = gpuTensor(gpu, B * T * 3 * D);
      await run(gpu, (rec) => {
        gpuOps.attentionForward(rec, out, probs, qkv, B, T, H, hd);
        gpuOps.attentionBackward(rec, dqkv, dout, qkv, probs, B, T, H, hd);
      });
      outs.push([await read(gpu, out), await read(gpu, probs), await read(gpu, dqkv)]);
    }
    ['out', 'probs', 'dqkv'].forEach((what, i) => expectSameBits(outs[1][i], outs[0][i], what));
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
