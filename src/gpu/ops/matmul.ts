/**
 * Matmul and the Linear layer built on it (shaders/matmul.wgsl).
 * Shapes are row-major; a Linear weight is PyTorch's (out, in).
 */
import { tunedMatmulVariant } from '../autotune';
import type { Gpu } from '../device';
import { ceilDiv, type Recorder, type Tensor } from '../kernels';
import { zeros } from './common';

/** 'nn': A[M,K]·B[K,N]; 'nt': A[M,K]·B[N,K]ᵀ; 'tn': A[K,M]ᵀ·B[K,N]. */
export type MatmulLayout = 'nn' | 'nt' | 'tn';
export type MatmulVariant = 'tiled' | 'blocked' | 'vec4';

/** Columns per workgroup of matmul_vec4 is 4·LANES; rows per workgroup is 8. */
const VEC4_LANES = 16;
const VEC4_ROWS = 8;

/** matmul_vec4 reads B and writes C in vec4s along N and reads A along K in vec4s. */
export const vec4Aligned = (N: number, K: number): boolean => N % 4 === 0 && K % 4 === 0;

/**
 * The static guess for an adapter. The kernel lab (bench/results/kernels.json) measures all
 * three: on CPU-emulated adapters, where barriers are costly, vec4 is fastest (tiled runs at
 * 0.39× of it on lavapipe); on real GPUs shared-memory tiling is the classic winner.
 */
export function staticMatmulVariant(gpu: Gpu): MatmulVariant {
  return gpu.adapter.kind === 'hardware' ? 'tiled' : 'vec4';
}

/**
 * The variant for a product when the caller does not choose one. Given the product's shape:
 * the per-adapter tuner's choice for its shape class once tuned (gpu/autotune.ts: timed before
 * recording, never here; fixed per device from the first ask), else the static guess.
 * Without a shape: the static guess.
 */
export function defaultMatmulVariant(gpu: Gpu, layout?: MatmulLayout, M?: number, N?: number, K?: number): MatmulVariant {
  if (layout === undefined || M === undefined || N === undefined || K === undefined) return staticMatmulVariant(gpu);
  return tunedMatmulVariant(gpu, { layout, M, N, K });
}

/** c[M,N] (=|+=) op(a)·op(b) (+ bias[N]). 'vec4' falls back to 'blocked' unless N and K are multiples of 4. */
export function matmul(
  rec: Recorder, c: Tensor, a: Tensor, b: Tensor, bias: Tensor | null,
  M: number, N: number, K: number,
  layout: MatmulLayout = 'nn', accumulate = false, variant: MatmulVariant = defaultMatmulVariant(rec.gpu, layout, M, N, K),
): void {
  const constants = {
    TRANS_A: layout === 'tn' ? 1 : 0,
    TRANS_B: layout === 'nt' ? 1 : 0,
    HAS_BIAS: bias ? 1 : 0,
    ACCUMULATE: accumulate ? 1 : 0,
  };
  const v = variant === 'vec4' && !vec4Aligned(N, K) ? 'blocked' : variant;
  const bindings = [c, a, b, bias ?? zeros(rec.gpu.device)];
  if (v === 'vec4') {
    const groups: [number, number] = [ceilDiv(N, 4 * VEC4_LANES), ceilDiv(M, VEC4_ROWS)];
    rec.dispatch({ shader: 'matmul', entry: 'matmul_vec4', constants: { ...constants, LANES: VEC4_LANES } }, bindings, [M, N, K, 0], groups);
    return;
  }
  const groups: [number, number] = [ceilDiv(N, 64), ceilDiv(M, 64)];
  rec.dispatch({ shader: 'matmul', entry: `matmul_${v}`, constants }, bindings, [M, N, K, 0], groups);
}

/** dbias[N] (=|+=) Σ_m dy[m, n]. */
export function biasBackward(rec: Recorder, dbias: Tensor, dy: Tensor, M: number, N: number, accumulate = true): void {
  rec.dispatch({ shader: 'matmul', entry: 'bias_backward', constants: { ACCUMULATE: accumulate ? 1 : 0 } }, [dbias, dy], [M, N, 0, 0], [ceilDiv(N, 64)]);
}

/** y[R,out] = x[R,in] · wᵀ + b, w (out,in). */
export function linearForward(rec: Recorder, y: Tensor, x: Tensor, w: Tensor, b: Tensor | null, R: number, inF: number, outF: number): void {
  matmul(rec, y, x, w, b, R, outF, inF, 'nt');
}

/**
 * dx[R,in] = dy·w (assigned; pass dx = null to skip), dw += dyᵀ·x, db += Σ_rows dy.
 * Parameter gradients accumulate, activation gradients assign.
 */
export function linearBackward(
  rec: Recorder, dx: Tensor | null, dw: Tensor, db: Tensor | null,
  dy: Tensor, x: Tensor, w: Tensor, R: number, inF: number, outF: number,
): void {
  if (dx) matmul(rec, dx, dy, w, null, R, inF, outF, 'nn');
  matmul(rec, dw, dy, x, null, outF, inF, R, 'tn', true);
  if (db) biasBackward(rec, db, dy, R, outF, true);
}
