/**
 * AdamW over the parameter arena and the clip coefficient (shaders/adamw.wgsl), and the global
 * gradient norm (loss.ts's generic sum). Matches torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.
 *
 * One training step: globalGradNorm → clipCoefficient (or fill clipCoef with 1 when clipping is
 * off) → adamwStep; all on the GPU, no readback. params, grads, m, v are four arenas of one
 * layout; padding between tensors is 0 in all four and stays 0. An optional lr-scale table
 * (lrScaleRanges) gives tensors their own lr, as torch's param groups (fine-tuning's layer decay).
 */
import { GpuError } from '../device';
import type { ArenaLayout } from '../buffers';
import type { Param, Recorder, Tensor } from '../kernels';
import { grid2d, scratch, zeros } from './common';
import { sumReduce, type SumVariant } from './loss';

export interface AdamwOptions {
  lr: number;
  /** 1-based step count t of this update (torch increments it before the update). */
  step: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay, applied only inside the decay ranges. */
  weightDecay?: number;
}

/** The recipe's AdamW: betas (0.9, 0.95), eps 1e-8 (torch's default), weight decay 0.05. */
export const ADAMW_DEFAULTS = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05 } as const;

/** The per-step scalars, computed in float64 exactly as torch's AdamW computes them. */
export function adamwScalars(opts: AdamwOptions): {
  decayFactor: number; oneMinusBeta1: number; beta2: number; oneMinusBeta2: number; stepSize: number; bc2Sqrt: number; eps: number;
} {
  const { lr, step } = opts;
  const { beta1, beta2, eps, weightDecay } = { ...ADAMW_DEFAULTS, ...opts };
  if (!(Number.isInteger(step) && step >= 1)) throw new GpuError(`adamw: step must be an integer ≥ 1, got ${step}`, 'validation');
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  return {
    decayFactor: 1 - lr * weightDecay,
    oneMinusBeta1: 1 - beta1,
    beta2,
    oneMinusBeta2: 1 - beta2,
    stepSize: lr / bc1,
    bc2Sqrt: Math.sqrt(bc2),
    eps,
  };
}

/**
 * The recipe's rule (MAE's "following timm: set wd as 0 for bias and norm layers", plus the
 * recipe's tokens and position embeddings): true where a parameter gets NO weight decay —
 * 1-D parameters (biases, LayerNorm weights and biases), cls_token, mask_token, pos_embed,
 * decoder_pos_embed. Without a shape, 1-D is recognised by name (`*.bias`, `*norm*.weight`).
 *
 * Note: the released MAE code (timm 0.3.2 add_weight_decay, no skip list) does decay cls_token
 * and mask_token (they are 3-D), and its position embeddings are frozen, not optimised; the
 * recipe excludes tokens, and this follows the recipe.
 */
export function noWeightDecay(name: string, shape?: readonly number[]): boolean {
  if (shape && shape.length <= 1) return true;
  if (name.endsWith('.bias')) return true;
  const leaf = name.split('.');
  const last = leaf[leaf.length - 1];
  if (['cls_token', 'mask_token', 'pos_embed', 'decoder_pos_embed'].includes(last)) return true;
  if (last === 'weight' && leaf.length >= 2 && /(^|_)norm\d*$/.test(leaf[leaf.length - 2])) return true;
  return false;
}

/** Default decay predicate: decay everything `noWeightDecay` does not exclude. */
export const decaysByRecipe = (name: string, shape?: readonly number[]): boolean => !noWeightDecay(name, shape);

/**
 * The decay table for adamwStep: sorted, disjoint element ranges [start0, end0, start1, end1, …]
 * of the layout's tensors for which `decays(name, shape)` holds (padding excluded; ranges that
 * touch are merged).
 */
export function decayRanges(layout: ArenaLayout, decays: (name: string, shape: readonly number[]) => boolean = decaysByRecipe): Uint32Array {
  const out: number[] = [];
  const entries = [...layout.entries].sort((a, b) => a.start - b.start);
  for (const e of entries) {
    if (e.length === 0 || !decays(e.name, e.shape)) continue;
    const end = e.start + e.length;
    if (out.length > 0 && out[out.length - 1] === e.start) out[out.length - 1] = end;
    else out.push(e.start, end);
  }
  return Uint32Array.from(out);
}

/**
 * The lr-scale table for adamwStep: sorted, disjoint [start, end, bits of the f32 scale] triples
 * of the layout's tensors whose `scaleOf(name, shape)` is not 1 (touching tensors of the same
 * scale are merged). Elements outside the table keep scale 1. Fine-tuning's layer-wise lr decay
 * is one such table (src/engine/classifier.ts, layerDecayScale).
 */
export function lrScaleRanges(layout: ArenaLayout, scaleOf: (name: string, shape: readonly number[]) => number): Uint32Array {
  const out: number[] = [];
  const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
  const entries = [...layout.entries].sort((a, b) => a.start - b.start);
  for (const e of entries) {
    const s = scaleOf(e.name, e.shape);
    if (e.length === 0 || s === 1) continue;
    if (!(Number.isFinite(s) && s >= 0)) throw new GpuError(`lrScaleRanges: scale ${s} of "${e.name}" must be a finite number ≥ 0.`, 'validation');
    f[0] = s;
    const end = e.start + e.length;
    const n = out.length;
    if (n > 0 && out[n - 2] === e.start && out[n - 1] === bits[0]) out[n - 2] = end;
    else out.push(e.start, end, bits[0]);
  }
  return Uint32Array.from(out);
}

const WG = 256;
/** adamw_step_vec4: invocations per workgroup and vec4s per invocation (a block of 8192 elements; on lavapipe 8 beat 4 by ~15 %). */
const VEC4_WG = 256;
const VEC4_PER_THREAD = 8;

/**
 * 'vec4' (the default): shaders/adamw.wgsl's adamw_step_vec4 over the whole vec4s, and its scalar
 * adamw_step for the n % 4 tail; 'scalar': adamw_step alone, one element per thread. Both give
 * bit-identical parameters and moments; 'scalar' is kept to check that and to compare speeds.
 */
export type AdamwVariant = 'vec4' | 'scalar';

/**
 * One AdamW step over n elements: params, m, v updated in place (=), grads read-only and scaled
 * by clipCoef[0]. `ranges` is a u32 tensor from decayRanges (its length is 2·ranges; a tensor of
 * length 0 means no element decays); null means every element decays. `lrScales` (optional) is
 * a u32 tensor from lrScaleRanges: an element of scale s steps as with lr·s (decay included).
 * `gradNorm` (optional): also gradNorm[0] = ‖grads[0..n)‖₂ (=), the unclipped gradient's norm,
 * summed from the step's own reads of the gradients (the vec4 path's per-invocation partials,
 * then sumReduce) instead of a pass of its own before it — for a step that needs the norm only
 * as a report (no clipping, no loss scaling: clipCoef must then be [1] or [1, 0], a step that
 * is never skipped). Where the vec4 path does not cover all n, globalGradNorm runs first.
 */
export function adamwStep(
  rec: Recorder, params: Tensor, grads: Tensor, m: Tensor, v: Tensor,
  ranges: Tensor | null, clipCoef: Tensor, n: number, opts: AdamwOptions, lrScales: Tensor | null = null,
  variant: AdamwVariant = 'vec4', gradNorm?: Tensor,
): void {
  const s = adamwScalars(opts);
  const numRanges = ranges ? Math.floor(ranges.length / 2) : 0;
  const numLrRanges = lrScales ? Math.floor(lrScales.length / 3) : 0;
  const wd = opts.weightDecay ?? ADAMW_DEFAULTS.weightDecay;
  const bindings = [params, m, v, grads, ranges && ranges.length > 0 ? ranges : zeros(rec.gpu.device), clipCoef, numLrRanges > 0 ? lrScales! : scratch(rec.gpu.device, 'adamw-no-lr-scales', 3)];
  const uniforms = (first: number): Param[] => [
    n, numRanges, ranges ? 0 : 1, first,
    { f32: s.decayFactor }, { f32: s.oneMinusBeta1 }, { f32: s.beta2 }, { f32: s.oneMinusBeta2 },
    { f32: s.stepSize }, { f32: s.bc2Sqrt }, { f32: s.eps }, { f32: 0 },
    numLrRanges, { f32: opts.lr * wd }, 0, 0,
  ];
  // The vec4 path covers [0, 4⌊n/4⌋); adamw_step takes what is left from `first` on.
  const first = variant === 'vec4' ? 4 * Math.floor(n / 4) : 0;
  const fuseNorm = gradNorm !== undefined && first === n && n > 0;
  if (gradNorm && !fuseNorm) globalGradNorm(rec, gradNorm, grads, n);
  // One partial per invocation of the vec4 path's workgroups (fuseNorm), else an unused stand-in.
  const workgroups = Math.ceil(first / 4 / (VEC4_WG * VEC4_PER_THREAD));
  const partials = scratch(rec.gpu.device, fuseNorm ? 'adamw-norm-partials' : 'adamw-no-norm-partials', fuseNorm ? workgroups * VEC4_WG : 4);
  if (first > 0) {
    rec.dispatch(
      { shader: 'adamw', entry: 'adamw_step_vec4', constants: { VEC4_WG, VEC4_PER_THREAD, NORM_PARTIALS: fuseNorm ? 1 : 0 } },
      [...bindings, partials], uniforms(0), grid2d(first / 4, VEC4_WG * VEC4_PER_THREAD),
    );
  }
  if (first < n) rec.dispatch({ shader: 'adamw', entry: 'adamw_step' }, bindings, uniforms(first), grid2d(n - first, WG));
  if (fuseNorm) sumReduce(rec, gradNorm, partials, workgroups * VEC4_WG, 'sqrtsum');
}

/**
 * out[0] = ‖grads[0..n)‖₂ (=), on the GPU in a fixed order: loss.ts's generic deterministic sum
 * of squares (per-workgroup partials, then one workgroup) with the square root in its last pass.
 * A gradient arena (n ≥ 65536) takes the vec4 first pass; `variant` forces one (see SumVariant).
 */
export function globalGradNorm(rec: Recorder, out: Tensor, grads: Tensor, n: number, variant: SumVariant = 'auto'): void {
  sumReduce(rec, out, grads, n, 'norm', 1, variant);
}

/** clipCoef[0] = min(1, maxNorm / (norm[0] + 1e-6)) (=), torch.nn.utils.clip_grad_norm_'s rule. */
export function clipCoefficient(rec: Recorder, clipCoef: Tensor, norm: Tensor, maxNorm: number): void {
  const params = [0, 0, 0, 0, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: maxNorm }];
  rec.dispatch({ shader: 'adamw', entry: 'clip_coefficient' }, [clipCoef, norm], params, [1]);
}

/**
 * Dynamic loss scaling (mixed precision): GradScaler's defaults, backoff ½ on an overflow and
 * growth 2 after this many good steps in a row; the first scale is 2¹⁶.
 */
export const LOSS_SCALE_DEFAULTS = { initScale: 2 ** 16, growthInterval: 2000 } as const;

/**
 * After globalGradNorm of the gradients of the scaled loss: norm[0] becomes the true gradient's
 * norm; clipCoef = [clip coefficient / scale, 0], or [0, 1] on an overflow (an f16 operand out of
 * range, `overflow` ≠ 0, or a non-finite norm), which makes adamwStep skip the step and sets norm[0] to NaN; `state` =
 * [scale, good steps, skipped (0/1), steps skipped so far] is updated in place and `overflow`
 * cleared. maxNorm undefined: no clipping. See shaders/adamw.wgsl, loss_scale_update.
 */
export function lossScaleUpdate(
  rec: Recorder, clipCoef: Tensor, norm: Tensor, state: Tensor, overflow: Tensor, maxNorm: number | undefined, growthInterval: number = LOSS_SCALE_DEFAULTS.growthInterval,
): void {
  if (clipCoef.length < 2) throw new GpuError(`lossScaleUpdate: clipCoef needs 2 elements (coefficient, skip), got ${clipCoef.length}.`, 'validation');
  if (!(Number.isInteger(growthInterval) && growthInterval >= 1)) throw new GpuError(`lossScaleUpdate: growthInterval ${growthInterval} must be an integer ≥ 1.`, 'validation');
  const params = [0, 0, 0, 0, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: 0 }, { f32: maxNorm ?? 0 }, 0, { f32: 0 }, growthInterval, 0];
  rec.dispatch({ shader: 'adamw', entry: 'loss_scale_update' }, [clipCoef, norm, state, overflow], params, [1]);
}
