/** Float64 reference of shaders/patch.wgsl; same names and argument order as src/gpu/ops/patch.ts. */
import { normalizePixelTargets } from './loss';
export { posEmbed2d, posEmbed2dFloat64 } from '../core/posembed';

type Vec = Float64Array;

/** img element of image n, channel c, patch l, pixel (i, j) inside the patch. */
function imgIndex(n: number, c: number, l: number, i: number, j: number, C: number, H: number, W: number, p: number): number {
  const gw = W / p;
  const y = Math.floor(l / gw) * p + i;
  const x = (l % gw) * p + j;
  return ((n * C + c) * H + y) * W + x;
}

/** patches[N·L, C·p·p] = each patch in the conv weight's (C, p, p) order. */
export function patchifyConv(patches: Vec, img: Vec, N: number, C: number, H: number, W: number, p: number): void {
  const L = (H / p) * (W / p);
  const K = C * p * p;
  for (let n = 0; n < N; n++)
    for (let l = 0; l < L; l++)
      for (let c = 0; c < C; c++)
        for (let i = 0; i < p; i++)
          for (let j = 0; j < p; j++) patches[(n * L + l) * K + (c * p + i) * p + j] = img[imgIndex(n, c, l, i, j, C, H, W, p)];
}

/**
 * target[N, L, p·p·C] = each patch as [row-in-patch][col-in-patch][channel] (MAE's `patchify`);
 * with normPix each row standardised as norm_pix_loss (normalizePixelTargets, in place).
 */
export function patchifyTarget(target: Vec, img: Vec, N: number, C: number, H: number, W: number, p: number, normPix = false): void {
  const L = (H / p) * (W / p);
  const K = p * p * C;
  for (let n = 0; n < N; n++)
    for (let l = 0; l < L; l++)
      for (let i = 0; i < p; i++)
        for (let j = 0; j < p; j++)
          for (let c = 0; c < C; c++) target[(n * L + l) * K + (i * p + j) * C + c] = img[imgIndex(n, c, l, i, j, C, H, W, p)];
  if (normPix) normalizePixelTargets(target, target, N * L, K); // row by row: each row is read before it is written
}

/** img[N, C, H, W] from patches[N, L, p·p·C]: the inverse of patchifyTarget. */
export function unpatchify(img: Vec, patches: Vec, N: number, C: number, H: number, W: number, p: number): void {
  const L = (H / p) * (W / p);
  const K = p * p * C;
  for (let n = 0; n < N; n++)
    for (let l = 0; l < L; l++)
      for (let i = 0; i < p; i++)
        for (let j = 0; j < p; j++)
          for (let c = 0; c < C; c++) img[imgIndex(n, c, l, i, j, C, H, W, p)] = patches[(n * L + l) * K + (i * p + j) * C + c];
}

/** x[N, L, D] += pos[posStart + l·D + d]; fixed table, so the backward is the identity. */
export function addPosEmbed(x: Vec, pos: ArrayLike<number>, N: number, L: number, D: number, posStart = 0): void {
  for (let n = 0; n < N; n++)
    for (let i = 0; i < L * D; i++) x[n * L * D + i] += pos[posStart + i];
}
