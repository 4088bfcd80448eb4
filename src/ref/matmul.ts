/** Float64 reference of shaders/matmul.wgsl and the Linear layer; same names and argument order. */
import type { MatmulLayout } from '../gpu/ops/matmul';
export type { MatmulLayout };

type Vec = Float64Array;

/** c[M,N] (=|+=) op(a)·op(b) (+ bias[N]). */
export function matmul(c: Vec, a: Vec, b: Vec, bias: Vec | null, M: number, N: number, K: number, layout: MatmulLayout = 'nn', accumulate = false): void {
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) {
        const av = layout === 'tn' ? a[k * M + m] : a[m * K + k];
        const bv = layout === 'nt' ? b[n * K + k] : b[k * N + n];
        s += av * bv;
      }
      c[m * N + n] = accumulate ? c[m * N + n] + s : s;
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

export function linearForward(y: Vec, x: Vec, w: Vec, b: Vec | null, R: number, inF: number, outF: number): void {
  matmul(y, x, w, b, R, outF, inF, 'nt');
}

export function linearBackward(dx: Vec | null, dw: Vec, db: Vec | null, dy: Vec, x: Vec, w: Vec, R: number, inF: number, outF: number): void {
  if (dx) matmul(dx, dy, w, null, R, inF, outF, 'nn');
  matmul(dw, dy, x, null, outF, inF, R, 'tn', true);
  if (db) biasBackward(db, dy, R, outF, true);
}
