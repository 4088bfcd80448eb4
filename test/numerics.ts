/**
 * Test and benchmark data and tolerances, free of vitest so that bench/ can use them too:
 * deterministic random data and the named tolerance presets.
 */
import { mulberry32 } from '../src/core/random';

/** The seeded uniform stream of all test data. */
export const rng = mulberry32;

/** `n` values uniform in [-scale, scale), as float64 holding exactly float32-representable numbers. */
export function randn(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround((2 * r() - 1) * scale);
  return out;
}

/** A random permutation of 0..n-1. */
export function permutation(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** Named tolerances: |got − ref| ≤ atol + rtol·|ref|. Loosening one in a test needs a comment saying why. */
export const TOL = {
  /** Copies, gathers, scatters: the same bits. */
  exact: { atol: 0, rtol: 0 },
  /** One float32 operation per element, or a short chain (GELU, residual, normalisation). */
  elementwise: { atol: 1e-6, rtol: 2e-5 },
  /** Sums of up to a few thousand float32 terms (matmul, reductions, softmax, layer norm). */
  reduction: { atol: 2e-5, rtol: 2e-4 },
  /** Gradients through several reductions (attention and layer-norm backward, losses). */
  gradient: { atol: 5e-5, rtol: 1e-3 },
} satisfies Record<string, Tolerance>;

/** A matmul's tolerance: sums of K float32 products, so TOL.reduction with atol grown as √K. */
export const matmulTol = (K: number): Tolerance => ({ atol: TOL.reduction.atol * Math.sqrt(K), rtol: TOL.reduction.rtol });
