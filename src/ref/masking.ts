/** Float64 reference of shaders/masking.wgsl; same names and argument order as src/gpu/ops/masking.ts. */
export { randomMasking, lenKeepFor, maskRatioFor, type Masking } from '../core/masking';

type Vec = Float64Array;
type Ids = Uint32Array;

/** out[N, 1+V, D] = cls ++ x[n, idsKeep[n, j]] for j < V, x[N, L, D]. */
export function gatherVisible(out: Vec, x: Vec, cls: Vec, idsKeep: Ids, N: number, L: number, V: number, D: number): void {
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) out[n * (1 + V) * D + d] = cls[d];
    for (let j = 0; j < V; j++) {
      const l = idsKeep[n * V + j];
      for (let d = 0; d < D; d++) out[(n * (1 + V) + 1 + j) * D + d] = x[(n * L + l) * D + d];
    }
  }
}

/** dx[N, L, D] = dout's visible rows at their patches, 0 elsewhere; dcls[D] += Σ_n dout[n, 0]. */
export function gatherVisibleBackward(dx: Vec | null, dcls: Vec, dout: Vec, idsKeep: Ids, N: number, L: number, V: number, D: number): void {
  if (dx) {
    dx.fill(0, 0, N * L * D);
    for (let n = 0; n < N; n++)
      for (let j = 0; j < V; j++) {
        const l = idsKeep[n * V + j];
        for (let d = 0; d < D; d++) dx[(n * L + l) * D + d] = dout[(n * (1 + V) + 1 + j) * D + d];
      }
  }
  for (let d = 0; d < D; d++) {
    let s = 0;
    for (let n = 0; n < N; n++) s += dout[n * (1 + V) * D + d];
    dcls[d] += s;
  }
}

/** out[N, 1+L, D]: row 0 = x[n, 0]; row 1+l = x[n, 1+j] if j = idsRestore[n, l] < V, else maskToken. */
export function insertMaskTokens(out: Vec, x: Vec, maskToken: Vec, idsRestore: Ids, N: number, L: number, V: number, D: number): void {
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) out[n * (1 + L) * D + d] = x[n * (1 + V) * D + d];
    for (let l = 0; l < L; l++) {
      const j = idsRestore[n * L + l];
      for (let d = 0; d < D; d++) out[(n * (1 + L) + 1 + l) * D + d] = j < V ? x[(n * (1 + V) + 1 + j) * D + d] : maskToken[d];
    }
  }
}

/** dx[N, 1+V, D] = dout's cls and kept rows in shuffled order; dmaskToken[D] += Σ masked rows of dout. */
export function insertMaskTokensBackward(dx: Vec, dmaskToken: Vec, dout: Vec, idsRestore: Ids, N: number, L: number, V: number, D: number): void {
  const s = new Float64Array(D);
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) dx[n * (1 + V) * D + d] = dout[n * (1 + L) * D + d];
    for (let l = 0; l < L; l++) {
      const j = idsRestore[n * L + l];
      for (let d = 0; d < D; d++) {
        const g = dout[(n * (1 + L) + 1 + l) * D + d];
        if (j < V) dx[(n * (1 + V) + 1 + j) * D + d] = g;
        else s[d] += g;
      }
    }
  }
  for (let d = 0; d < D; d++) dmaskToken[d] += s[d];
}

/** out[N, V, D] = x[n, idsKeep[n, j]], x[N, L, D]. */
export function gatherPatches(out: Vec, x: Vec, idsKeep: Ids, N: number, L: number, V: number, D: number): void {
  for (let n = 0; n < N; n++)
    for (let j = 0; j < V; j++) {
      const l = idsKeep[n * V + j];
      for (let d = 0; d < D; d++) out[(n * V + j) * D + d] = x[(n * L + l) * D + d];
    }
}

/** out[N, 1+V, D]: row 0 = cls; row 1+j = x[n, j] + pos[1 + idsKeep[n, j]], x[N, V, D], pos[1+L, D]. */
export function embedVisible(out: Vec, x: Vec, cls: Vec, idsKeep: Ids, pos: Vec, N: number, L: number, V: number, D: number): void {
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) out[n * (1 + V) * D + d] = cls[d];
    for (let j = 0; j < V; j++) {
      const l = idsKeep[n * V + j];
      for (let d = 0; d < D; d++) out[(n * (1 + V) + 1 + j) * D + d] = x[(n * V + j) * D + d] + pos[(1 + l) * D + d];
    }
  }
}

/** dx[N, V, D] = dout[n, 1+j]; dcls[D] += Σ_n dout[n, 0]. */
export function embedVisibleBackward(dx: Vec, dcls: Vec, dout: Vec, N: number, L: number, V: number, D: number): void {
  for (let n = 0; n < N; n++)
    for (let j = 0; j < V; j++)
      for (let d = 0; d < D; d++) dx[(n * V + j) * D + d] = dout[(n * (1 + V) + 1 + j) * D + d];
  for (let d = 0; d < D; d++) {
    let s = 0;
    for (let n = 0; n < N; n++) s += dout[n * (1 + V) * D + d];
    dcls[d] += s;
  }
}

/** out[N, T, D] = x[n, 1+t] of x[N, 1+T, D]. */
export function dropCls(out: Vec, x: Vec, N: number, T: number, D: number): void {
  for (let n = 0; n < N; n++)
    for (let t = 0; t < T; t++)
      for (let d = 0; d < D; d++) out[(n * T + t) * D + d] = x[(n * (1 + T) + 1 + t) * D + d];
}

/** dx[N, 1+T, D]: row 0 = 0, row 1+t = dout[n, t]. */
export function padCls(dx: Vec, dout: Vec, N: number, T: number, D: number): void {
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) dx[n * (1 + T) * D + d] = 0;
    for (let t = 0; t < T; t++)
      for (let d = 0; d < D; d++) dx[(n * (1 + T) + 1 + t) * D + d] = dout[(n * T + t) * D + d];
  }
}
