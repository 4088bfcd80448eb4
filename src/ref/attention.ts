/** Float64 reference of shaders/attention.wgsl; same names and argument order as src/gpu/ops/attention.ts. */

type Vec = Float64Array;

/** out[B,T,D] = softmax(q·kᵀ·hd^-0.5)·v per head; probs[B,H,T,T] = the softmax (both assigned). */
export function attentionForward(out: Vec, probs: Vec, qkv: Vec, B: number, T: number, H: number, hd: number): void {
  const D = H * hd;
  const scale = hd ** -0.5;
  const q = (b: number, t: number, h: number, d: number) => qkv[(b * T + t) * 3 * D + h * hd + d];
  const k = (b: number, t: number, h: number, d: number) => qkv[(b * T + t) * 3 * D + D + h * hd + d];
  const v = (b: number, t: number, h: number, d: number) => qkv[(b * T + t) * 3 * D + 2 * D + h * hd + d];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * H + h) * T + i) * T;
        let max = -Infinity;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q(b, i, h, d) * k(b, j, h, d);
          probs[row + j] = s * scale;
          max = Math.max(max, s * scale);
        }
        let sum = 0;
        for (let j = 0; j < T; j++) {
          probs[row + j] = Math.exp(probs[row + j] - max);
          sum += probs[row + j];
        }
        for (let j = 0; j < T; j++) probs[row + j] /= sum;
        for (let d = 0; d < hd; d++) {
          let s = 0;
          for (let j = 0; j < T; j++) s += probs[row + j] * v(b, j, h, d);
          out[(b * T + i) * D + h * hd + d] = s;
        }
      }
    }
  }
}

/**
 * dqkv[B,T,3D] (assigned): dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout, where
 * dP = dout·vᵀ and dS = P ⊙ (dP − rowsum(dP ⊙ P)).
 */
export function attentionBackward(dqkv: Vec, dout: Vec, qkv: Vec, probs: Vec, B: number, T: number, H: number, hd: number): void {
  const D = H * hd;
  const scale = hd ** -0.5;
  const at = (b: number, t: number, part: number, h: number, d: number) => (b * T + t) * 3 * D + part * D + h * hd + d;
  const g = (b: number, t: number, h: number, d: number) => dout[(b * T + t) * D + h * hd + d];
  const dS = new Float64Array(T * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const P = (i: number, j: number) => probs[((b * H + h) * T + i) * T + j];
      for (let i = 0; i < T; i++) {
        let rowdot = 0;
        for (let j = 0; j < T; j++) {
          let dp = 0;
          for (let d = 0; d < hd; d++) dp += g(b, i, h, d) * qkv[at(b, j, 2, h, d)];
          dS[i * T + j] = dp;
          rowdot += dp * P(i, j);
        }
        for (let j = 0; j < T; j++) dS[i * T + j] = P(i, j) * (dS[i * T + j] - rowdot);
      }
      for (let i = 0; i < T; i++) {
        for (let d = 0; d < hd; d++) {
          let dq = 0, dk = 0, dv = 0;
          for (let m = 0; m < T; m++) {
            dq += dS[i * T + m] * qkv[at(b, m, 1, h, d)];
            dk += dS[m * T + i] * qkv[at(b, m, 0, h, d)];
            dv += P(m, i) * g(b, m, h, d);
          }
          dqkv[at(b, i, 0, h, d)] = dq * scale;
          dqkv[at(b, i, 1, h, d)] = dk * scale;
          dqkv[at(b, i, 2, h, d)] = dv;
        }
      }
    }
  }
}
