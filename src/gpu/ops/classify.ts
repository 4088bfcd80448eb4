/**
 * The classification heads of evaluation (shaders/classify.wgsl): global average pooling of the
 * patch tokens, softmax cross-entropy with label smoothing fused with its batch mean (and the
 * argmax and correct count), its knowledge-distillation variant (soft labels of a teacher's
 * logits at a temperature), and MAE's linear-probe BatchNorm1d(affine=False, eps=1e-6).
 *
 * Every output is assigned (=): none of these has a parameter. Every sum has a fixed order, so
 * the same inputs give the same bits. Labels are u32 tensors; the callers check their range.
 */
import { GpuError } from '../device';
import type { Recorder, Tensor } from '../kernels';
import { grid2d } from './common';

const EW_WG = 256;
const XENT_WG = 256;

/** MAE's linear-probe BatchNorm: eps 1e-6 (its BatchNorm1d(affine=False, eps=1e-6)), torch's momentum 0.1. */
export const BN_EPS = 1e-6;
export const BN_MOMENTUM = 0.1;

type FloatParams = { eps?: number; momentum?: number; smoothing?: number; scale?: number; softWeight?: number; temperature?: number };
// Every field of the WGSL Params struct, always (a uniform slot is reused between dispatches).
const params = (N: number, T: number, C: number, f: FloatParams = {}) => [
  N, T, C, 0, { f32: f.eps ?? 0 }, { f32: f.momentum ?? 0 }, { f32: f.smoothing ?? 0 }, { f32: f.scale ?? 0 },
  { f32: f.softWeight ?? 0 }, { f32: f.temperature ?? 1 }, 0, 0,
];

/** out[N, D] (=) = mean over the patch tokens t = 1..T−1 of x[N, T, D] (cls, token 0, excluded). T ≥ 2. */
export function meanPoolForward(rec: Recorder, out: Tensor, x: Tensor, N: number, T: number, D: number): void {
  if (T < 2) throw new GpuError(`meanPoolForward: T = ${T} tokens leaves no patch token to pool.`, 'validation');
  rec.dispatch({ shader: 'classify', entry: 'mean_pool_forward' }, [out, x], params(N, T, D), grid2d(N * D, EW_WG));
}

/** out[N, D] (=) = x[n, 0] of x[N, T, D]: the cls token of each image. */
export function clsPoolForward(rec: Recorder, out: Tensor, x: Tensor, N: number, T: number, D: number): void {
  rec.dispatch({ shader: 'classify', entry: 'cls_pool_forward' }, [out, x], params(N, T, D), grid2d(N * D, EW_WG));
}

/** dx[N, T, D] (=): 0 at the cls token, dout[n]/(T−1) at every patch token. */
export function meanPoolBackward(rec: Recorder, dx: Tensor, dout: Tensor, N: number, T: number, D: number): void {
  rec.dispatch({ shader: 'classify', entry: 'mean_pool_backward' }, [dx, dout], params(N, T, D), grid2d(N * T * D, EW_WG));
}

/**
 * Softmax cross-entropy over logits[N, K] with integer labels[N] (u32) and label smoothing ε
 * (targets (1−ε)·onehot + ε/K, torch's CrossEntropyLoss(label_smoothing=ε)), reduced to its
 * batch mean in one workgroup: stats[0] = loss (=), stats[1] = rows whose argmax equals the
 * label (=, a float count); pred[N] (u32, =) the argmax of each row (first maximum on ties).
 */
export function crossEntropyForward(rec: Recorder, stats: Tensor, pred: Tensor, logits: Tensor, labels: Tensor, N: number, K: number, smoothing = 0): void {
  rec.dispatch({ shader: 'classify', entry: 'xent_forward', constants: { REDUCE_WG: XENT_WG } }, [stats, pred, logits, labels], params(N, 0, K, { smoothing }), [1]);
}

/** dlogits[N, K] (=) = dloss/N · (softmax(logits) − targets); dloss is the upstream gradient of the mean loss. */
export function crossEntropyBackward(rec: Recorder, dlogits: Tensor, logits: Tensor, labels: Tensor, N: number, K: number, smoothing = 0, dloss = 1): void {
  rec.dispatch({ shader: 'classify', entry: 'xent_backward' }, [dlogits, logits, labels], params(N, 0, K, { smoothing, scale: dloss / N }), grid2d(N, EW_WG));
}

/** Knowledge distillation's mix: λ = softWeight ∈ [0, 1] on the soft term, temperature τ > 0. */
export interface KdOptions {
  softWeight: number;
  temperature: number;
  /** Label smoothing ε of the hard term (default 0). */
  smoothing?: number;
}

function checkKd(what: string, o: KdOptions): void {
  if (!(o.softWeight >= 0 && o.softWeight <= 1)) throw new GpuError(`${what}: soft weight ${o.softWeight} must lie in [0, 1].`, 'validation');
  if (!(o.temperature > 0 && Number.isFinite(o.temperature))) throw new GpuError(`${what}: temperature ${o.temperature} must be a positive number.`, 'validation');
}

/**
 * Knowledge distillation (Hinton et al. 2015) from a frozen teacher's logits: per row
 * (1−λ)·CE_ε(logits, label) + λ·τ²·KL(softmax(teacher/τ) ‖ softmax(logits/τ)), reduced to its
 * batch mean in one workgroup: stats[0] = loss (=), stats[1] = rows whose student argmax equals
 * the label (=); pred[N] (u32, =) the student's argmax. λ = 0 is crossEntropyForward.
 */
export function kdCrossEntropyForward(rec: Recorder, stats: Tensor, pred: Tensor, logits: Tensor, teacherLogits: Tensor, labels: Tensor, N: number, K: number, o: KdOptions): void {
  checkKd('kdCrossEntropyForward', o);
  rec.dispatch({ shader: 'classify', entry: 'kd_forward', constants: { REDUCE_WG: XENT_WG } }, [stats, pred, logits, teacherLogits, labels],
    params(N, 0, K, { smoothing: o.smoothing ?? 0, softWeight: o.softWeight, temperature: o.temperature }), [1]);
}

/**
 * dlogits[N, K] (=) = dloss/N · ((1−λ)·(softmax(logits) − targets) + λ·τ·(softmax(logits/τ) −
 * softmax(teacher/τ))); the teacher gets no gradient.
 */
export function kdCrossEntropyBackward(rec: Recorder, dlogits: Tensor, logits: Tensor, teacherLogits: Tensor, labels: Tensor, N: number, K: number, o: KdOptions, dloss = 1): void {
  checkKd('kdCrossEntropyBackward', o);
  rec.dispatch({ shader: 'classify', entry: 'kd_backward' }, [dlogits, logits, teacherLogits, labels],
    params(N, 0, K, { smoothing: o.smoothing ?? 0, softWeight: o.softWeight, temperature: o.temperature, scale: dloss / N }), grid2d(N, EW_WG));
}

/**
 * Non-affine BatchNorm1d in training mode over x[N, C]: out (=) = (x − mean)·rstd with the
 * batch's mean and biased variance; saves mean[C], rstd[C] (=); updates runningMean and
 * runningVar in place with `momentum` (torch's rule: the unbiased variance). N ≥ 2 (torch
 * refuses one row in training mode).
 */
export function batchnormForward(
  rec: Recorder, out: Tensor, mean: Tensor, rstd: Tensor, runningMean: Tensor, runningVar: Tensor, x: Tensor,
  N: number, C: number, eps = BN_EPS, momentum = BN_MOMENTUM,
): void {
  if (N < 2) throw new GpuError(`batchnormForward: training-mode BatchNorm needs at least 2 rows (got ${N}).`, 'validation');
  rec.dispatch({ shader: 'classify', entry: 'bn_forward_train' }, [out, mean, rstd, runningMean, runningVar, x], params(N, 0, C, { eps, momentum }), grid2d(C, EW_WG));
}

/** Evaluation mode: out[N, C] (=) = (x − runningMean)/√(runningVar + eps). */
export function batchnormEval(rec: Recorder, out: Tensor, x: Tensor, runningMean: Tensor, runningVar: Tensor, N: number, C: number, eps = BN_EPS): void {
  rec.dispatch({ shader: 'classify', entry: 'bn_forward_eval' }, [out, x, runningMean, runningVar], params(N, 0, C, { eps }), grid2d(N * C, EW_WG));
}

/** dx[N, C] (=) = rstd·(dout − mean_n dout − x̂·mean_n(dout·x̂)), through the batch statistics. */
export function batchnormBackward(rec: Recorder, dx: Tensor, dout: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, N: number, C: number): void {
  rec.dispatch({ shader: 'classify', entry: 'bn_backward' }, [dx, dout, x, mean, rstd], params(N, 0, C), grid2d(C, EW_WG));
}
