/**
 * Multi-head self-attention core (shaders/attention.wgsl): scores, softmax and the weighted
 * sum, between the fused `qkv` Linear and the `proj` Linear.
 *
 *   qkv   [B, T, 3D]   q = [.., 0:D], k = [.., D:2D], v = [.., 2D:3D]; head h = channels h·hd..
 *   probs [B, H, T, T] softmax(q·kᵀ·hd^-0.5), saved by the forward for the backward
 *   out   [B, T, D]    heads concatenated along channels
 *
 * Two variants of the four kernels, the same maths: 'workgroup' reduces a softmax row with a
 * tree in workgroup memory (any device; the GPU-shaped one); 'subgroup'
 * (shaders/attention_subgroups.wgsl), for devices with the 'subgroups' feature, reduces with
 * subgroupMax/subgroupAdd (no barrier, an online softmax), blocks KEYS keys or CH channels per
 * lane in registers and hands shared operands round with subgroupShuffle — shaped for CPU
 * adapters, which pay dearly for barriers and run every load in a loop lane by lane. The two give
 * close but not bit-identical probs and gradients: the tuner chooses one per device and shape
 * class (defaultAttentionVariant) and a device keeps it.
 */
import { GpuError, type Gpu } from '../device';
import { ceilDiv, type KernelSpec, type Param, type Recorder, type Tensor } from '../kernels';
import { chosenVariant } from '../variant-choices';
import { checkReductionVariant, floorLog2, reductionVariants, scratch, subgroupWorkgroupSize, type ReductionVariant } from './common';

// Must match the constants of shaders/attention.wgsl.
const WG = 64;
const ROWS = 8;
const MAX_HD = 256;
const BLOCK = 4;
// Must match the constants of shaders/attention_subgroups.wgsl (MAX_ROWS, MAX_KEYS = MAX_CH).
const SG_MAX_ROWS = 8;
const SG_MAX_BLOCK = 4;

/**
 * The register block for `n` items (keys, channels, rows) taken `lanes` × block at a time, block
 * ≤ `max`: the fewest steps, then the smallest block that still needs no more of them, so that
 * the last step pads least (T = 65 keys on 8 lanes: 3 keys a step, 72 slots, not 4 and 96).
 */
const blockFor = (n: number, lanes: number, max: number): number => ceilDiv(n, lanes * ceilDiv(n, lanes * max));

export type AttentionVariant = ReductionVariant;

/** The shader files whose text decides the variants' results (a tuner hashes them, imports included). */
export const ATTENTION_SHADERS: readonly string[] = ['attention', 'attention_subgroups'];

/** The variants this device can run: 'subgroup' needs the WebGPU feature 'subgroups'. */
export const attentionVariants = reductionVariants;

/**
 * The variant when the caller names none: the per-adapter tuner's choice for the shape's class
 * (⌊log₂⌋ of T, of hd and of B·H; gpu/autotune-families.ts), else 'workgroup'.
 */
export function defaultAttentionVariant(gpu: Gpu, B: number, T: number, H: number, hd: number): AttentionVariant {
  return chosenVariant(gpu, 'attention', `t${floorLog2(T)}.d${floorLog2(hd)}.bh${floorLog2(B * H)}`, { B, T, H, hd }, 'workgroup', attentionVariants(gpu));
}

function params(B: number, T: number, H: number, hd: number): Param[] {
  if (!(T >= 1 && B >= 1 && H >= 1 && hd >= 1)) throw new GpuError(`attention: bad shape B=${B} T=${T} H=${H} hd=${hd}.`, 'limits');
  if (hd > MAX_HD) throw new GpuError(`attention: head width ${hd} exceeds the kernel's maximum of ${MAX_HD}.`, 'limits');
  return [B, T, H, hd, { f32: hd ** -0.5 }, 0, 0, 0];
}

/**
 * The four kernels of a variant and their workgroup grids: rowGroups for the row kernels (scores,
 * backward_scores), columnGroups for the column kernels (weighted_sum, backward_qkv).
 */
interface Kernels {
  scores: KernelSpec;
  weightedSum: KernelSpec;
  backwardScores: KernelSpec;
  backwardQkv: KernelSpec;
  rowGroups: [number, number, number];
  columnGroups: [number, number, number];
}

function kernels(gpu: Gpu, variant: AttentionVariant, B: number, T: number, H: number, hd: number): Kernels {
  if (variant === 'workgroup') {
    const k = (entry: string): KernelSpec => ({ shader: 'attention', entry });
    return {
      scores: k('attention_scores'), weightedSum: k('attention_weighted_sum'),
      backwardScores: k('attention_backward_scores'), backwardQkv: k('attention_backward_qkv'),
      // Column kernels: one thread per (block of BLOCK rows, channel) of each (b, h).
      rowGroups: [ceilDiv(T, ROWS), H, B], columnGroups: [ceilDiv(ceilDiv(T, BLOCK) * hd, WG), H, B],
    };
  }
  checkReductionVariant(gpu, variant, 'attention');
  const sg = subgroupWorkgroupSize(gpu);
  // Register blocking: up to 4 keys (channels) per lane per step and 8 query rows per workgroup,
  // each as small as its number of steps allows (blockFor).
  const rows = blockFor(T, 1, SG_MAX_ROWS);
  const constants = { SG_WG: sg, ROWS: rows, KEYS: blockFor(T, sg, SG_MAX_BLOCK), CH: blockFor(hd, sg, SG_MAX_BLOCK) };
  const k = (entry: string): KernelSpec => ({ shader: 'attention_subgroups', entry, constants });
  // Every kernel takes ROWS query rows per workgroup of each (b, h).
  const groups: [number, number, number] = [ceilDiv(T, rows), H, B];
  return {
    scores: k('attention_scores'), weightedSum: k('attention_weighted_sum'),
    backwardScores: k('attention_backward_scores'), backwardQkv: k('attention_backward_qkv'),
    rowGroups: groups, columnGroups: groups,
  };
}

/**
 * out[B,T,D] = softmax(q·kᵀ·hd^-0.5)·v per head (assigned); probs[B,H,T,T] = the softmax
 * (assigned), saved for the backward.
 */
export function attentionForward(
  rec: Recorder, out: Tensor, probs: Tensor, qkv: Tensor, B: number, T: number, H: number, hd: number,
  variant: AttentionVariant = defaultAttentionVariant(rec.gpu, B, T, H, hd),
): void {
  const k = kernels(rec.gpu, variant, B, T, H, hd);
  const p = params(B, T, H, hd);
  rec.dispatch(k.scores, [probs, qkv], p, k.rowGroups);
  rec.dispatch(k.weightedSum, [out, probs, qkv], p, k.columnGroups);
}

/**
 * dqkv[B,T,3D] (assigned, all three parts): dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout,
 * with dP = dout·vᵀ and dS = P ⊙ (dP − rowsum(dP ⊙ P)).
 */
export function attentionBackward(
  rec: Recorder, dqkv: Tensor, dout: Tensor, qkv: Tensor, probs: Tensor,
  B: number, T: number, H: number, hd: number,
  variant: AttentionVariant = defaultAttentionVariant(rec.gpu, B, T, H, hd),
): void {
  const k = kernels(rec.gpu, variant, B, T, H, hd);
  const p = params(B, T, H, hd);
  // dS [B,H,T,T] between the two dispatches: a per-device scratch, grown when too small, never per call.
  const dscores = scratch(rec.gpu.device, 'attention-dscores', B * H * T * T);
  rec.dispatch(k.backwardScores, [dscores, dout, qkv, probs], p, k.rowGroups);
  rec.dispatch(k.backwardQkv, [dqkv, dscores, probs, qkv, dout], p, k.columnGroups);
}
