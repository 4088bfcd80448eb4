/**
 * Float64 reference of shaders/adamw.wgsl: torch.optim.AdamW (decoupled decay, torch's bias
 * correction form) and torch.nn.utils.clip_grad_norm_'s norm and coefficient. Same names and
 * argument order as src/gpu/ops/adamw.ts (whose trailing `variant` arguments choose a kernel,
 * not a result, and have no counterpart here).
 */
import { ADAMW_DEFAULTS, adamwScalars, type AdamwOptions } from '../gpu/ops/adamw';
import { sumReduce } from './loss';
export { ADAMW_DEFAULTS, decayRanges, decaysByRecipe, lrScaleRanges, noWeightDecay, type AdamwOptions } from '../gpu/ops/adamw';

type Vec = Float64Array;

/**
 * One AdamW step over n elements; params, m, v updated in place, grads scaled by clipCoef[0].
 * `ranges` = [start0, end0, …] of the elements that decay; null: every element decays.
 * `lrScales` = [start, end, f32 bits of s] triples (lrScaleRanges): those elements step with lr·s.
 */
export function adamwStep(params: Vec, grads: Vec, m: Vec, v: Vec, ranges: Uint32Array | null, clipCoef: Vec, n: number, opts: AdamwOptions, lrScales: Uint32Array | null = null): void {
  const s = adamwScalars(opts);
  // Per-element lr scale from [start, end, f32 bits] triples (1 elsewhere), as on the GPU.
  const scale = new Float64Array(n).fill(1);
  const hasScales = lrScales !== null && lrScales.length >= 3;
  if (hasScales) {
    const f = new Float32Array(lrScales.buffer, lrScales.byteOffset, lrScales.length);
    for (let r = 0; r + 2 < lrScales.length; r += 3) scale.fill(f[r + 2], lrScales[r], Math.min(lrScales[r + 1], n));
  }
  const lrWd = opts.lr * (opts.weightDecay ?? ADAMW_DEFAULTS.weightDecay);
  const decay = new Uint8Array(n);
  if (ranges === null) decay.fill(1);
  else for (let r = 0; r + 1 < ranges.length; r += 2) decay.fill(1, ranges[r], Math.min(ranges[r + 1], n));
  if (clipCoef.length > 1 && clipCoef[1] !== 0) return; // the loss scaler skips this step
  const c = clipCoef[0];
  for (let i = 0; i < n; i++) {
    const g = grads[i] * c;
    if (decay[i]) params[i] *= hasScales ? 1 - lrWd * scale[i] : s.decayFactor; // param.mul_(1 - lr * weight_decay)
    m[i] = m[i] + s.oneMinusBeta1 * (g - m[i]); // exp_avg.lerp_(grad, 1 - beta1)
    v[i] = v[i] * s.beta2 + s.oneMinusBeta2 * g * g; // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const denom = Math.sqrt(v[i]) / s.bc2Sqrt + s.eps; // (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    params[i] -= s.stepSize * scale[i] * (m[i] / denom); // param.addcdiv_(exp_avg, denom, value=-step_size)
  }
}

/** out[0] = ‖grads[0..n)‖₂: the generic sum's 'norm', as on the GPU. */
export function globalGradNorm(out: Vec, grads: Vec, n: number): void {
  sumReduce(out, grads, n, 'norm');
}

/** clipCoef[0] = min(1, maxNorm / (norm[0] + 1e-6)). */
export function clipCoefficient(clipCoef: Vec, norm: Vec, maxNorm: number): void {
  clipCoef[0] = Math.min(1, maxNorm / (norm[0] + 1e-6));
}

/**
 * The loss scaler after the norm of the scaled loss's gradients (see shaders/adamw.wgsl,
 * loss_scale_update): norm[0] /= scale; on overflow (flag[0] ≠ 0 or the norm not finite) clip =
 * [0, 1] (skip), norm[0] = NaN, scale ·= ½; else clip = [c / scale, 0] and, after growthInterval good steps, scale
 * ·= 2. state = [scale, good steps, skipped (0/1), steps skipped so far]; the flag is cleared.
 * maxNorm 0: no clipping.
 */
export function lossScaleUpdate(clipCoef: Vec, norm: Vec, state: Vec, overflow: Uint32Array, maxNorm: number, growthInterval: number): void {
  const scale = state[0];
  const n = norm[0] / scale;
  norm[0] = n;
  if (overflow[0] !== 0 || !Number.isFinite(n)) {
    norm[0] = NaN;
    clipCoef[0] = 0;
    clipCoef[1] = 1;
    state[0] = scale / 2;
    state[1] = 0;
    state[2] = 1;
    state[3] += 1;
  } else {
    const c = maxNorm > 0 ? Math.min(1, maxNorm / (n + 1e-6)) : 1;
    clipCoef[0] = c / scale;
    clipCoef[1] = 0;
    const good = state[1] + 1;
    if (good >= growthInterval) {
      state[0] = scale * 2;
      state[1] = 0;
    } else state[1] = good;
    state[2] = 0;
  }
  overflow[0] = 0;
}
