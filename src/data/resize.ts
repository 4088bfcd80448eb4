/**
 * Resampling of CHW uint8 images: an antialiased bilinear (triangle) filter whose support
 * widens with the downscale factor, as PIL's BILINEAR resize and torchvision's
 * `antialias=True` do, so shrinking a 512² photo to 32² averages instead of aliasing.
 * Separable: rows first, then columns; weights are normalised to sum to 1.
 */

export interface Rect {
  /** Left, top, width, height in source pixels (may be fractional; clipped to the source). */
  x: number;
  y: number;
  w: number;
  h: number;
}

interface AxisWeights {
  /** First source index of each output pixel's taps. */
  first: Int32Array;
  /** Number of taps of each output pixel. */
  taps: Int32Array;
  /** [out·maxTaps] weights. */
  weights: Float32Array;
  maxTaps: number;
}

/** Weights mapping source pixels [start, start+len) (clipped to [0, size)) onto `out` pixels. */
function axisWeights(start: number, len: number, size: number, out: number): AxisWeights {
  const scale = len / out;
  const support = Math.max(scale, 1);
  const lo = Math.max(0, Math.floor(start));
  const hi = Math.min(size, Math.ceil(start + len));
  const maxTaps = Math.ceil(support) * 2 + 2;
  const first = new Int32Array(out);
  const taps = new Int32Array(out);
  const weights = new Float32Array(out * maxTaps);
  for (let o = 0; o < out; o++) {
    const center = start + (o + 0.5) * scale;
    let a = Math.max(lo, Math.floor(center - support));
    let b = Math.min(hi, Math.ceil(center + support));
    if (b <= a) {
      // Degenerate crop (narrower than a pixel): take the nearest source pixel.
      a = Math.min(hi - 1, Math.max(lo, Math.floor(center)));
      b = a + 1;
    }
    let sum = 0;
    const n = Math.min(b - a, maxTaps);
    for (let k = 0; k < n; k++) {
      const t = (a + k + 0.5 - center) / support;
      const w = Math.max(0, 1 - Math.abs(t));
      weights[o * maxTaps + k] = w;
      sum += w;
    }
    if (sum <= 0) {
      const nearest = Math.min(n - 1, Math.max(0, Math.floor(center) - a));
      weights[o * maxTaps + nearest] = 1;
      sum = 1;
    }
    for (let k = 0; k < n; k++) weights[o * maxTaps + k] /= sum;
    first[o] = a;
    taps[o] = n;
  }
  return { first, taps, weights, maxTaps };
}

/**
 * Resample `crop` of each of C planes of `src` (C·srcH·srcW, starting at srcOffset) to
 * outH×outW, writing C·outH·outW float values in [0, 255] to `out` at outOffset.
 * `flip` mirrors the output horizontally.
 */
export function resampleCHW(
  out: Float32Array,
  outOffset: number,
  src: Uint8Array,
  srcOffset: number,
  C: number,
  srcH: number,
  srcW: number,
  crop: Rect,
  outH: number,
  outW: number,
  flip = false,
): void {
  const identity = !flip && crop.x === 0 && crop.y === 0 && crop.w === srcW && crop.h === srcH && outW === srcW && outH === srcH;
  if (identity) {
    for (let i = 0, n = C * srcH * srcW; i < n; i++) out[outOffset + i] = src[srcOffset + i];
    return;
  }
  const ax = axisWeights(crop.x, crop.w, srcW, outW);
  const ay = axisWeights(crop.y, crop.h, srcH, outH);
  // Rows that any output row reads.
  let rowLo = srcH;
  let rowHi = 0;
  for (let o = 0; o < outH; o++) {
    rowLo = Math.min(rowLo, ay.first[o]);
    rowHi = Math.max(rowHi, ay.first[o] + ay.taps[o]);
  }
  const rows = rowHi - rowLo;
  const tmp = new Float32Array(rows * outW);
  for (let c = 0; c < C; c++) {
    const plane = srcOffset + c * srcH * srcW;
    for (let r = 0; r < rows; r++) {
      const rowBase = plane + (rowLo + r) * srcW;
      for (let ox = 0; ox < outW; ox++) {
        const f = ax.first[ox];
        const wb = ox * ax.maxTaps;
        let acc = 0;
        for (let k = 0, n = ax.taps[ox]; k < n; k++) acc += ax.weights[wb + k] * src[rowBase + f + k];
        tmp[r * outW + (flip ? outW - 1 - ox : ox)] = acc;
      }
    }
    const outPlane = outOffset + c * outH * outW;
    for (let oy = 0; oy < outH; oy++) {
      const f = ay.first[oy] - rowLo;
      const wb = oy * ay.maxTaps;
      const n = ay.taps[oy];
      for (let ox = 0; ox < outW; ox++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += ay.weights[wb + k] * tmp[(f + k) * outW + ox];
        out[outPlane + oy * outW + ox] = acc;
      }
    }
  }
}

/** The centred crop of a srcW×srcH image with the aspect ratio of outW×outH ("cover" fit). */
export function coverCrop(srcH: number, srcW: number, outH: number, outW: number): Rect {
  const target = outW / outH;
  const aspect = srcW / srcH;
  if (Math.abs(aspect - target) < 1e-9) return { x: 0, y: 0, w: srcW, h: srcH };
  if (aspect > target) {
    const w = srcH * target;
    return { x: (srcW - w) / 2, y: 0, w, h: srcH };
  }
  const h = srcW / target;
  return { x: 0, y: (srcH - h) / 2, w: srcW, h };
}

/** Resize CHW uint8 to outH×outW uint8 ('cover': centred crop to the target aspect, then resample). */
export function resizeCHW(src: Uint8Array, C: number, srcH: number, srcW: number, outH: number, outW: number, fit: 'cover' | 'stretch' = 'cover'): Uint8Array {
  if (srcH === outH && srcW === outW) return src.slice(0, C * srcH * srcW);
  const crop = fit === 'cover' ? coverCrop(srcH, srcW, outH, outW) : { x: 0, y: 0, w: srcW, h: srcH };
  const tmp = new Float32Array(C * outH * outW);
  resampleCHW(tmp, 0, src, 0, C, srcH, srcW, crop, outH, outW);
  const out = new Uint8Array(tmp.length);
  for (let i = 0; i < tmp.length; i++) out[i] = Math.min(255, Math.max(0, Math.round(tmp[i])));
  return out;
}
