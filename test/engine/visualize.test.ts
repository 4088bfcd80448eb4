/** The reconstruction picture: unpatchify inverts patchify, norm_pix is undone per target patch, the grid's columns. */
import { describe, expect, it } from 'vitest';
import { maeConfig, numPatches, patchDim } from '../../src/engine/config';
import { patchifyImage, predictionPixels, reconstructionGrid, unpatchify } from '../../src/engine/visualize';
import { randn } from '../helpers';

describe('reconstruction pictures', () => {
  const cfg = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 3 });
  const N = 2, L = numPatches(cfg), P = patchDim(cfg);
  const imgs = randn(N * 3 * 64, 1);

  it('unpatchify(patchify(x)) = x, in the target order [row][col][channel]', () => {
    const patches = patchifyImage(cfg, imgs, 1);
    expect(patches[1]).toBe(imgs[(1 * 3 + 1) * 64]); // patch 0, pixel (0,0), channel 1
    expect([...unpatchify(cfg, patches)]).toEqual([...imgs.subarray(3 * 64, 6 * 64)]);
  });

  it('a prediction equal to the norm_pix target reconstructs the image', () => {
    const pred = new Float32Array(N * L * P);
    for (let n = 0; n < N; n++) {
      const t = patchifyImage(cfg, imgs, n);
      for (let l = 0; l < L; l++) {
        const row = t.subarray(l * P, (l + 1) * P);
        const mean = row.reduce((a, b) => a + b, 0) / P;
        const v = row.reduce((a, b) => a + (b - mean) ** 2, 0) / (P - 1);
        for (let k = 0; k < P; k++) pred[(n * L + l) * P + k] = (row[k] - mean) / Math.sqrt(v + 1e-6);
      }
    }
    const got = predictionPixels(cfg, imgs, pred, 1);
    got.forEach((x, i) => expect(x).toBeCloseTo(imgs[3 * 64 + i], 5));
  });

  it('grid: original | masked (gray) | reconstruction | pasted, one row per image', () => {
    const raw = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { normPixLoss: false });
    const mask = Float32Array.from([1, 0, 0, 1, 0, 1, 1, 0]); // image 0: patch 0 masked, patch 1 visible
    const ones = new Float32Array(N * 64).fill(1); // normalised 1 → 0.5 + 0.25 → 191
    const pred = new Float32Array(N * L * 16).fill(-1); // → 0.25 → 64
    const g = reconstructionGrid({ cfg: raw, imgs: ones, pred, mask, mean: [0.5], std: [0.25], scale: 1 });
    expect([g.width, g.height]).toEqual([4 * 8 + 5 * 2, 2 * 8 + 3 * 2]);
    const px = (col: number, row: number, x: number, y: number) => g.data[((2 + row * 10 + y) * g.width + 2 + col * 10 + x) * 3];
    // columns at a masked (x 0) and a visible (x 4) pixel of image 0
    expect([0, 1, 2, 3].map((c) => [px(c, 0, 0, 0), px(c, 0, 4, 0)])).toEqual([[191, 191], [128, 191], [64, 64], [64, 191]]);
  });
});
