/** Float64 reference of shaders/classify.wgsl; same names and argument order as src/gpu/ops/classify.ts. */
import { BN_EPS, BN_MOMENTUM, type KdOptions } from '../gpu/ops/classify';
export { BN_EPS, BN_MOMENTUM, type KdOptions };

type Vec = Float64Array;

/** out[N, D] = mean over t = 1..T−1 of x[N, T, D]. */
export function meanPoolForward(out: Vec, x: Vec, N: number, T: number, D: number): void {
  for (let n = 0; n < N; n++) {
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let t = 1; t < T; t++) s += x[(n * T + t) * D + d];
      out[n * D + d] = s / (T - 1);
    }
  }
}

/** out[N, D] = x[n, 0]. */
export function clsPoolForward(out: Vec, x: Vec, N: number, T: number, D: number): void {
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) out[n * D + d] = x[n * T * D + d];
}

/** dx[N, T, D] = 0 at t = 0, dout[n]/(T−1) elsewhere. */
export function meanPoolBackward(dx: Vec, dout: Vec, N: number, T: number, D: number): void {
  for (let n = 0; n < N; n++) {
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) dx[(n * T + t) * D + d] = t === 0 ? 0 : dout[n * D + d] / (T - 1);
    }
  }
}

/** log Σ_k exp(z_k) of row r, shifted by its max; and the row's argmax (first maximum). */
function rowLse(z: Vec, base: number, K: number): { lse: number; argmax: number } {
  let m = z[base], am = 0;
  for (let k = 1; k < K; k++) if (z[base + k] > m) [m, am] = [z[base + k], k];
  let s = 0;
  for (let k = 0; k < K; k++) s += Math.exp(z[base + k] - m);
  return { lse: m + Math.log(s), argmax: am };
}

/** Row r's cross-entropy with label smoothing ε against `label`, and the row's argmax. */
function rowCrossEntropy(z: Vec, base: number, K: number, label: number, eps: number): { ce: number; argmax: number } {
  const { lse, argmax } = rowLse(z, base, K);
  let meanNll = 0;
  for (let k = 0; k < K; k++) meanNll += lse - z[base + k];
  return { ce: (1 - eps) * (lse - z[base + label]) + (eps * meanNll) / K, argmax };
}

/** stats[0] = mean cross-entropy with smoothing ε; stats[1] = #(argmax = label); pred[N] = argmax. */
export function crossEntropyForward(stats: Vec, pred: Uint32Array, logits: Vec, labels: Uint32Array, N: number, K: number, smoothing = 0): void {
  let loss = 0, correct = 0;
  for (let r = 0; r < N; r++) {
    const { ce, argmax } = rowCrossEntropy(logits, r * K, K, labels[r], smoothing);
    loss += ce;
    pred[r] = argmax;
    if (argmax === labels[r]) correct++;
  }
  stats[0] = loss / N;
  stats[1] = correct;
}

/** dlogits[N, K] = dloss/N · (softmax − ((1−ε)·onehot + ε/K)). */
export function crossEntropyBackward(dlogits: Vec, logits: Vec, labels: Uint32Array, N: number, K: number, smoothing = 0, dloss = 1): void {
  for (let r = 0; r < N; r++) {
    const base = r * K;
    const { lse } = rowLse(logits, base, K);
    for (let k = 0; k < K; k++) {
      const q = smoothing / K + (k === labels[r] ? 1 - smoothing : 0);
      dlogits[base + k] = (dloss / N) * (Math.exp(logits[base + k] - lse) - q);
    }
  }
}

/** log Σ_k exp(z_k/τ) of row r minus max(z)/τ (the shifted log-normaliser of z/τ), and max z. */
function rowLseT(z: Vec, base: number, K: number, tau: number): { lse: number; max: number } {
  let m = z[base];
  for (let k = 1; k < K; k++) m = Math.max(m, z[base + k]);
  let s = 0;
  for (let k = 0; k < K; k++) s += Math.exp((z[base + k] - m) / tau);
  return { lse: Math.log(s), max: m };
}

/**
 * stats[0] = mean over rows of (1−λ)·CE_ε(logits, label) + λ·τ²·KL(softmax(t/τ) ‖ softmax(s/τ));
 * stats[1] = #(student argmax = label); pred[N] = the student's argmax. The hard term is
 * computed exactly as crossEntropyForward's, so λ = 0 gives its result bit for bit.
 */
export function kdCrossEntropyForward(stats: Vec, pred: Uint32Array, logits: Vec, teacherLogits: Vec, labels: Uint32Array, N: number, K: number, o: KdOptions): void {
  const eps = o.smoothing ?? 0, lam = o.softWeight, tau = o.temperature;
  let loss = 0, correct = 0;
  for (let r = 0; r < N; r++) {
    const base = r * K;
    const { ce, argmax } = rowCrossEntropy(logits, base, K, labels[r], eps);
    const s = rowLseT(logits, base, K, tau), t = rowLseT(teacherLogits, base, K, tau);
    let kl = 0;
    for (let k = 0; k < K; k++) {
      const logPt = (teacherLogits[base + k] - t.max) / tau - t.lse;
      const logPs = (logits[base + k] - s.max) / tau - s.lse;
      kl += Math.exp(logPt) * (logPt - logPs);
    }
    loss += (1 - lam) * ce + lam * tau * tau * kl;
    pred[r] = argmax;
    if (argmax === labels[r]) correct++;
  }
  stats[0] = loss / N;
  stats[1] = correct;
}

/** dlogits[N, K] = dloss/N · ((1−λ)·(softmax(s) − q) + λ·τ·(softmax(s/τ) − softmax(t/τ))). */
export function kdCrossEntropyBackward(dlogits: Vec, logits: Vec, teacherLogits: Vec, labels: Uint32Array, N: number, K: number, o: KdOptions, dloss = 1): void {
  const eps = o.smoothing ?? 0, lam = o.softWeight, tau = o.temperature;
  for (let r = 0; r < N; r++) {
    const base = r * K;
    const { lse } = rowLse(logits, base, K);
    const s = rowLseT(logits, base, K, tau), t = rowLseT(teacherLogits, base, K, tau);
    for (let k = 0; k < K; k++) {
      const q = eps / K + (k === labels[r] ? 1 - eps : 0);
      const hard = Math.exp(logits[base + k] - lse) - q;
      const soft = Math.exp((logits[base + k] - s.max) / tau - s.lse) - Math.exp((teacherLogits[base + k] - t.max) / tau - t.lse);
      dlogits[base + k] = (dloss / N) * ((1 - lam) * hard + lam * tau * soft);
    }
  }
}

/** Training-mode non-affine BatchNorm1d; saves mean, rstd; updates the running statistics in place. */
export function batchnormForward(
  out: Vec, mean: Vec, rstd: Vec, runningMean: Vec, runningVar: Vec, x: Vec, N: number, C: number, eps = BN_EPS, momentum = BN_MOMENTUM,
): void {
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let n = 0; n < N; n++) s += x[n * C + c];
    const m = s / N;
    let q = 0;
    for (let n = 0; n < N; n++) q += (x[n * C + c] - m) ** 2;
    const r = 1 / Math.sqrt(q / N + eps);
    for (let n = 0; n < N; n++) out[n * C + c] = (x[n * C + c] - m) * r;
    mean[c] = m;
    rstd[c] = r;
    runningMean[c] = (1 - momentum) * runningMean[c] + momentum * m;
    runningVar[c] = (1 - momentum) * runningVar[c] + (momentum * q) / (N - 1);
  }
}

/** Evaluation mode: out = (x − runningMean)/√(runningVar + eps). */
export function batchnormEval(out: Vec, x: Vec, runningMean: Vec, runningVar: Vec, N: number, C: number, eps = BN_EPS): void {
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) out[n * C + c] = (x[n * C + c] - runningMean[c]) / Math.sqrt(runningVar[c] + eps);
}

/** dx = rstd·(dout − mean_n dout − x̂·mean_n(dout·x̂)). */
export function batchnormBackward(dx: Vec, dout: Vec, x: Vec, mean: Vec, rstd: Vec, N: number, C: number): void {
  for (let c = 0; c < C; c++) {
    let sg = 0, sgx = 0;
    for (let n = 0; n < N; n++) {
      sg += dout[n * C + c];
      sgx += dout[n * C + c] * (x[n * C + c] - mean[c]) * rstd[c];
    }
    for (let n = 0; n < N; n++) {
      const xh = (x[n * C + c] - mean[c]) * rstd[c];
      dx[n * C + c] = rstd[c] * (dout[n * C + c] - sg / N - (xh * sgx) / N);
    }
  }
}
