/**
 * "Shapes": a procedural, labelled, seeded dataset at any resolution, in gray or RGB — for
 * smoke tests and for RGB models without any download. Each image is one class drawn in a
 * random colour on a random background (with a little pixel noise): a shape (circle, square,
 * triangle, ring, cross) at a random place, size and rotation, or a texture filling the image
 * (stripes, checker) at a random period and angle. The two colours differ in luma by at least
 * 0.3, so the gray version stays legible. Sample i depends only on (seed, i); its class is i mod 7.
 */
import { makeDataset, validationCount, type ImageDataset } from './dataset';
import { LUMA } from './dataset';
import { DatasetError } from './errors';
import { hashInts, Rng } from './rng';

export const SHAPE_CLASSES = ['circle', 'square', 'triangle', 'ring', 'cross', 'stripes', 'checker'] as const;

export interface ShapesOptions {
  /** Samples (default 2000). */
  n?: number;
  /** Square side in pixels (default 32). */
  size?: number;
  /** 1 or 3 (default 3). */
  channels?: 1 | 3;
  seed?: number;
  /** Validation fraction (default 0.1): the last samples. */
  valFraction?: number;
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const m = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][((i % 6) + 6) % 6];
  return [m[0], m[1], m[2]];
}

const luma = (c: [number, number, number]) => LUMA[0] * c[0] + LUMA[1] * c[1] + LUMA[2] * c[2];

/** Coverage test of class k at (u, v) in [-0.5, 0.5]² around the shape's own frame. */
function inside(k: number, x: number, y: number, r: number, period: number): boolean {
  switch (SHAPE_CLASSES[k]) {
    case 'circle':
      return x * x + y * y <= r * r;
    case 'square':
      return Math.abs(x) <= r * 0.82 && Math.abs(y) <= r * 0.82;
    case 'triangle': {
      // Equilateral, centroid at the origin, circumradius r.
      const a = y + r * 0.5;
      const b = -0.866 * x - 0.5 * y + r * 0.5;
      const c = 0.866 * x - 0.5 * y + r * 0.5;
      return a >= 0 && b >= 0 && c >= 0;
    }
    case 'ring': {
      const d = x * x + y * y;
      return d <= r * r && d >= r * r * 0.36;
    }
    case 'cross':
      return (Math.abs(x) <= r * 0.28 && Math.abs(y) <= r) || (Math.abs(y) <= r * 0.28 && Math.abs(x) <= r);
    case 'stripes':
      return ((Math.floor(x / period) % 2) + 2) % 2 === 0;
    default: // checker
      return (((Math.floor(x / period) + Math.floor(y / period)) % 2) + 2) % 2 === 0;
  }
}

export function makeShapesDataset(opts: ShapesOptions = {}): ImageDataset {
  const N = opts.n ?? 2000;
  const S = opts.size ?? 32;
  const C = opts.channels ?? 3;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(N) || N < 1 || N > 1_000_000) throw new DatasetError('shapes', 'unsupported', `n = ${N} must be a whole number of samples from 1 to 1,000,000.`);
  if (!Number.isInteger(S) || S < 4 || S > 1024) throw new DatasetError('shapes', 'unsupported', `size = ${S} must be whole pixels from 4 to 1024.`);
  if (C !== 1 && C !== 3) throw new DatasetError('shapes', 'unsupported', `channels = ${C} must be 1 or 3.`);
  if (N * C * S * S > 2 ** 30) throw new DatasetError('shapes', 'too-large', `${N} images of ${C}×${S}×${S} would take more than 1 GiB.`);
  const K = SHAPE_CLASSES.length;
  const HW = S * S;
  const images = new Uint8Array(N * C * HW);
  const labels = new Int32Array(N);
  const SS = 2; // 2×2 supersampling for anti-aliased edges
  for (let n = 0; n < N; n++) {
    const rng = new Rng(hashInts(seed, n));
    const k = n % K; // balanced classes
    labels[n] = k;
    let fg: [number, number, number];
    let bg: [number, number, number];
    do {
      fg = hsvToRgb(rng.float(), rng.uniform(0.3, 1), rng.uniform(0.2, 1));
      bg = hsvToRgb(rng.float(), rng.uniform(0, 0.8), rng.uniform(0.05, 1));
    } while (Math.abs(luma(fg) - luma(bg)) < 0.3);
    const texture = SHAPE_CLASSES[k] === 'stripes' || SHAPE_CLASSES[k] === 'checker';
    const cx = texture ? 0 : rng.uniform(-0.15, 0.15);
    const cy = texture ? 0 : rng.uniform(-0.15, 0.15);
    const r = rng.uniform(0.2, 0.33);
    const theta = rng.uniform(0, 2 * Math.PI);
    const period = rng.uniform(Math.max(0.06, 2.5 / S), 0.2);
    const cos = Math.cos(theta);
    const sin = Math.sin(theta);
    const noise = rng.uniform(0, 0.04);
    const base = n * C * HW;
    for (let py = 0; py < S; py++) {
      for (let px = 0; px < S; px++) {
        let cover = 0;
        for (let sy = 0; sy < SS; sy++) {
          for (let sx = 0; sx < SS; sx++) {
            const u = (px + (sx + 0.5) / SS) / S - 0.5 - cx;
            const v = (py + (sy + 0.5) / SS) / S - 0.5 - cy;
            if (inside(k, cos * u + sin * v, -sin * u + cos * v, r, period)) cover++;
          }
        }
        const a = cover / (SS * SS);
        const jitter = (rng.float() - 0.5) * 2 * noise;
        const i = py * S + px;
        if (C === 3) {
          for (let c = 0; c < 3; c++) images[base + c * HW + i] = Math.round(255 * Math.min(1, Math.max(0, bg[c] + a * (fg[c] - bg[c]) + jitter)));
        } else {
          images[base + i] = Math.round(255 * Math.min(1, Math.max(0, luma(bg) + a * (luma(fg) - luma(bg)) + jitter)));
        }
      }
    }
  }
  const nVal = validationCount(N, opts.valFraction ?? 0.1);
  return makeDataset({
    name: `Shapes ${S}×${S}${C === 1 ? ' gray' : ''}`,
    source: 'builtin:shapes',
    images,
    labels,
    classNames: [...SHAPE_CLASSES],
    N,
    C,
    H: S,
    W: S,
    nTrain: N - nVal,
  });
}
