/** Float64 reference of shaders/matmul.wgsl and the Linear layer; same names and argument order. */
import { f16Saturate } from '../core/f16';
import { vec4Aligned, type MatmulLayout, type MatmulVariant } from '../gpu/ops/matmul';
import { gelu, geluGrad } from './elementwise';
export type { MatmulLayout };

type Vec = Float64Array;

/** As src/gpu/ops/matmul.ts's MatmulEpilogue, on Float64Arrays. */
export type MatmulEpilogue =
  | { kind: 'residual'; residual: Vec }
  | { kind: 'gelu'; grad?: Vec }
  | { kind: 'gelu_grad'; grad: Vec };

let f16Operands = false;

/**
 * The float64 twin of `Recorder.autocast('f16', …)` on a device with shader-f16 before any
 * tuning: inside `record`, the products the GPU computes as vec4_f16 (the vec4-aligned ones,
 * staticVariantFor) see their operands as matmul_f16.wgsl's packs store them (f16Saturate).
 * Everything else stays exact. The mixed-precision model's reference is the model under it.
 */
export function autocastF16<T>(record: () => T): T {
  const outer = f16Operands;
  f16Operands = true;
  try {
    return record();
  } finally {
    f16Operands = outer;
  }
}

/**
 * c[M,N] (=|+=) epilogue(op(a)·op(b) (+ bias[N])). `_variant` keeps the GPU wrapper's argument
 * order (every variant computes the same product; under autocastF16 the aligned ones round
 * their operands to f16). An epilogue with `accumulate` is an error. `biasGrad` ('tn' only):
 * biasGrad[M] += Σ_k a[k, m].
 */
export function matmul(
  c: Vec, a: Vec, b: Vec, bias: Vec | null, M: number, N: number, K: number,
  layout: MatmulLayout = 'nn', accumulate = false, _variant?: MatmulVariant, epilogue?: MatmulEpilogue, biasGrad?: Vec,
): void {
  if (epilogue && accumulate) throw new Error(`matmul: the '${epilogue.kind}' epilogue cannot be combined with accumulate`);
  if (biasGrad && (layout !== 'tn' || bias)) throw new Error(`matmul: biasGrad is for 'tn' products without a bias, got ${layout}`);
  if (biasGrad) biasBackward(biasGrad, a, K, M, true); // Σ_k a[k, m], from the exact (f32) values
  if (f16Operands && vec4Aligned(N, K, layout, M)) {
    a = a.map(f16Saturate);
    b = b.map(f16Saturate);
  }
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) {
        const av = layout === 'tn' ? a[k * M + m] : a[m * K + k];
        const bv = layout === 'nt' ? b[n * K + k] : b[k * N + n];
        s += av * bv;
      }
      const i = m * N + n;
      if (epilogue?.kind === 'residual') s += epilogue.residual[i];
      else if (epilogue?.kind === 'gelu') {
        if (epilogue.grad) epilogue.grad[i] = geluGrad(s);
        s = gelu(s);
      } else if (epilogue?.kind === 'gelu_grad') s *= epilogue.grad[i];
      c[i] = accumulate ? c[i] + s : s;
    }
  }
}

export function biasBackward(dbias: Vec, dy: Vec, M: number, N: number, accumulate = true): void {
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let m = 0; m < M; m++) s += dy[m * N + n];
    dbias[n] = accumulate ? dbias[n] + s : s;
  }
}

export function linearForward(y: Vec, x: Vec, w: Vec, b: Vec | null, R: number, inF: number, outF: number, epilogue?: MatmulEpilogue): void {
  matmul(y, x, w, b, R, outF, inF, 'nt', false, undefined, epilogue);
}

export function linearBackward(
  dx: Vec | null, dw: Vec, db: Vec | null, dy: Vec, x: Vec, w: Vec, R: number, inF: number, outF: number,
  dxEpilogue?: MatmulEpilogue,
): void {
  if (dx) matmul(dx, dy, w, null, R, inF, outF, 'nn', false, undefined, dxEpilogue);
  matmul(dw, dy, x, null, outF, inF, R, 'tn', true);
  if (db) biasBackward(db, dy, R, outF, true);
}
