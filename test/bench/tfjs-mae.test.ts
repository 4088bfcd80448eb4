/**
 * The TensorFlow.js peer's MAE step (bench/tfjs-mae.ts) computes the same function as ours: on
 * tfjs's CPU backend (float32), its loss and the gradients of several tensors equal the float64
 * reference (src/ref/model.ts) on the same parameters, images and masking ids, and one AdamW step
 * moves the parameters as the reference's AdamW does.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { maeConfig, numPatches, type MaeConfig } from '../../src/engine/config';
import { maeParamLayout } from '../../src/engine/params';
import * as refAdamw from '../../src/ref/adamw';
import * as ref from '../../src/ref/model';
import { TfjsMae } from '../../bench/tfjs-mae';
import { TOL, expectClose, randn, type Tolerance } from '../helpers';
import { perturbedParams, testMasking, tinyConfig } from '../model-fixtures';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

/** A mean-reduced loss's gradients are O(1/count): atol scaled by the largest |reference|, as scaledTol does, but never below the preset's. */
const scaled = (tol: Tolerance, want: Float64Array): Tolerance => ({ atol: tol.atol * Math.max(1, want.reduce((m, x) => Math.max(m, Math.abs(x)), 0)), rtol: tol.rtol });

const CHECKED = [
  'patch_embed.proj.weight', 'cls_token', 'blocks.0.attn.qkv.weight', 'blocks.0.norm1.weight', 'blocks.1.mlp.fc1.bias',
  'norm.bias', 'decoder_embed.weight', 'mask_token', 'decoder_blocks.0.attn.proj.weight', 'decoder_pred.weight', 'decoder_pred.bias',
];

async function sameAsReference(cfg: MaeConfig, N: number, V: number, seed: number): Promise<void> {
  const L = numPatches(cfg);
  const params = perturbedParams(maeParamLayout(cfg), cfg, seed);
  const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, seed + 1);
  const masking = testMasking(N, L, V, seed + 2);
  const want = ref.maeForwardBackward(params, cfg, imgs, masking, N);

  const model = new TfjsMae(tf, cfg, N, V, params);
  try {
    model.setBatch(imgs, masking);
    const { value, grads } = model.lossAndGrads();
    expectClose([(await value.data())[0]], [want.loss], TOL.reduction, 'tfjs MAE loss vs float64 reference');
    for (const name of CHECKED) {
      const g = grads.get(name);
      expect(g, `a gradient for ${name}`).toBeDefined();
      const w = want.grads.get(name)!;
      expectClose(await g!.data(), w, scaled(TOL.gradient, w), `tfjs d loss / ${name}`);
    }
    value.dispose();
    for (const g of grads.values()) g.dispose();
  } finally {
    model.dispose();
  }
}

describe('tfjs MAE step (CPU backend) vs the float64 reference', () => {
  it('tiny, C=3, norm_pix on, 2 images, 2 of 4 visible', () => sameAsReference(tinyConfig(3, true), 2, 2, 21));
  it('tiny, C=1, norm_pix off, 3 images, one visible patch', () => sameAsReference(tinyConfig(1, false), 3, 1, 22));
  it('16×16×3, patch 4 (L = 16), width 32, 2 blocks, decoder 32×1, 2 images, 4 of 16 visible', () =>
    sameAsReference(maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 }), 2, 4, 23));

  it('one AdamW step (decoupled decay on the recipe tensors) moves the parameters as the reference does', async () => {
    const cfg = tinyConfig(3, true);
    const N = 2, V = 1, L = numPatches(cfg), lr = 0.05; // large enough that the decay (lr·wd·p) is far above the tolerance
    const layout = maeParamLayout(cfg);
    const params = perturbedParams(layout, cfg, 31);
    const imgs = randn(N * 3 * 64, 32);
    const masking = testMasking(N, L, V, 33);
    const { grads } = ref.maeForwardBackward(params, cfg, imgs, masking, N);
    // Reference: torch's AdamW, step 1, per tensor (decay where the recipe decays).
    const want = new Map<string, Float64Array>();
    for (const e of layout.entries) {
      const p = Float64Array.from(params.get(e.name)!);
      const n = p.length;
      refAdamw.adamwStep(p, grads.get(e.name)!, new Float64Array(n), new Float64Array(n), refAdamw.noWeightDecay(e.name, e.shape) ? new Uint32Array(0) : null, Float64Array.of(1), n, { lr, step: 1 });
      want.set(e.name, p);
    }
    const model = new TfjsMae(tf, cfg, N, V, params, { lr });
    try {
      model.setBatch(imgs, masking);
      const loss = model.step();
      loss.dispose();
      const got = await model.readParams();
      for (const name of ['blocks.0.attn.qkv.weight', 'blocks.0.norm1.bias', 'decoder_pred.weight', 'mask_token', 'patch_embed.proj.weight']) {
        expectClose(got.get(name)!, want.get(name)!, TOL.reduction, `after one step: ${name}`);
      }
      // The fixed position tables are not trained.
      expect(got.has('pos_embed')).toBe(false);
    } finally {
      model.dispose();
    }
  });
});
