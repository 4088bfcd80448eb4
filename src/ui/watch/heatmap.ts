/**
 * Pictures of attention and reconstructions as RGBA bytes, apart from the canvas so that Node
 * tests them: a perceptual colour map, the cls token's attention drawn over its image, the whole
 * [T, T] matrix, and the "is this picture blank?" threshold the end-to-end tests rely on (the
 * worker counts the levels: gridColumnLevels in src/engine/visualize.ts).
 */

/** Viridis at 9 stops (matplotlib's values), interpolated linearly: dark purple (0) → yellow (1). */
const VIRIDIS: readonly [number, number, number][] = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

/** The colour of t in [0, 1] (clamped; NaN is the lowest colour). */
export function colormap(t: number): [number, number, number] {
  const x = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  const f = x * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(f)), u = f - i;
  const a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return [Math.round(a[0] + (b[0] - a[0]) * u), Math.round(a[1] + (b[1] - a[1]) * u), Math.round(a[2] + (b[2] - a[2]) * u)];
}

/**
 * The cls attention over the image: every pixel of patch p takes colormap(cls[p] / max), blended
 * over the image with weight `alpha`; patches not in the sequence (masked) stay the image, darkened.
 * image: RGBA [size·size·4]; cls: [grid·grid]; present[p]: the patch was a token.
 */
export function clsOverlay(image: Uint8ClampedArray | Uint8Array, size: number, cls: ArrayLike<number>, grid: number, present: ArrayLike<boolean>, alpha = 0.6): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(size * size * 4);
  let max = 0;
  for (let p = 0; p < grid * grid; p++) if (present[p] && cls[p] > max) max = cls[p];
  const patch = size / grid;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const p = Math.floor(y / patch) * grid + Math.floor(x / patch), at = 4 * (y * size + x);
      if (!present[p]) {
        for (let c = 0; c < 3; c++) out[at + c] = Math.round(image[at + c] * 0.35);
      } else {
        const col = colormap(max > 0 ? cls[p] / max : 0);
        for (let c = 0; c < 3; c++) out[at + c] = Math.round((1 - alpha) * image[at + c] + alpha * col[c]);
      }
      out[at + 3] = 255;
    }
  }
  return out;
}

/** The [T, T] matrix as RGBA [T·T·4], each row scaled by its own maximum (rows are distributions). */
export function matrixImage(matrix: ArrayLike<number>, T: number): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(T * T * 4);
  for (let i = 0; i < T; i++) {
    let max = 0;
    for (let j = 0; j < T; j++) max = Math.max(max, matrix[i * T + j]);
    for (let j = 0; j < T; j++) {
      const c = colormap(max > 0 ? matrix[i * T + j] / max : 0), at = 4 * (i * T + j);
      out[at] = c[0];
      out[at + 1] = c[1];
      out[at + 2] = c[2];
      out[at + 3] = 255;
    }
  }
  return out;
}

/** The largest |Σ_j row_i − 1| of a [T, T] matrix (0 for a row-stochastic one). */
export function rowSumError(matrix: ArrayLike<number>, T: number): number {
  let worst = 0;
  for (let i = 0; i < T; i++) {
    let s = 0;
    for (let j = 0; j < T; j++) s += matrix[i * T + j];
    worst = Math.max(worst, Math.abs(s - 1));
  }
  return worst;
}

/** A picture is "not blank" when it has more than `min` distinct levels (a blank or flat one has one or two). */
export const isNonBlank = (levels: number, min = 8): boolean => levels > min;
