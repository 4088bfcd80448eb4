/** Float64 reference of shaders/layernorm.wgsl; same names and argument order as src/gpu/ops/layernorm.ts. */
type Vec = Float64Array;

/** out[rows,C] = (x − mean)·rstd·weight + bias, rstd = 1/√(var + eps) (biased variance); saves mean, rstd. */
export function layernormForward(out: Vec, mean: Vec, rstd: Vec, x: Vec, weight: Vec, bias: Vec, rows: number, C: number, eps = 1e-6): void {
  for (let r = 0; r < rows; r++) {
    const base = r * C;
    let m = 0;
    for (let i = 0; i < C; i++) m += x[base + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; i++) v += (x[base + i] - m) ** 2;
    v /= C;
    const s = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < C; i++) out[base + i] = (x[base + i] - m) * s * weight[i] + bias[i];
    mean[r] = m;
    rstd[r] = s;
  }
}

/**
 * dx[rows,C] = (assigned; with accumulateDx, dx +=), dweight[C] +=, dbias[C] +=. The GPU's
 * trailing `variant` has no counterpart here: every variant computes this.
 */
export function layernormBackward(
  dx: Vec, dweight: Vec, dbias: Vec, dout: Vec, x: Vec, weight: Vec, mean: Vec, rstd: Vec, rows: number, C: number,
  accumulateDx = false,
): void {
  for (let r = 0; r < rows; r++) {
    const base = r * C;
    const m = mean[r];
    const s = rstd[r];
    // g = dout·weight is the gradient w.r.t. xhat; dx = s·(g − mean(g) − xhat·mean(g·xhat)).
    let meanG = 0;
    let meanGXhat = 0;
    for (let i = 0; i < C; i++) {
      const xhat = (x[base + i] - m) * s;
      const g = dout[base + i] * weight[i];
      meanG += g;
      meanGXhat += g * xhat;
    }
    meanG /= C;
    meanGXhat /= C;
    for (let i = 0; i < C; i++) {
      const xhat = (x[base + i] - m) * s;
      const g = dout[base + i] * weight[i];
      const d = s * (g - meanG - xhat * meanGXhat);
      dx[base + i] = accumulateDx ? dx[base + i] + d : d;
      dweight[i] += dout[base + i] * xhat;
      dbias[i] += dout[base + i];
    }
  }
}
