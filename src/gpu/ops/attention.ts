/**
 * Multi-head self-attention core (shaders/attention.wgsl): scores, softmax and the weighted
 * sum, between the fused `qkv` Linear and the `proj` Linear.
 *
 *   qkv   [B, T, 3D]   q = [.., 0:D], k = [.., D:2D], v = [.., 2D:3D]; head h = channels h·hd..
 *   probs [B, H, T, T] softmax(q·kᵀ·hd^-0.5), saved by the forward for the backward
 *   out   [B, T, D]    heads concatenated along channels
 *
 * Three variants of the four kernels, the same maths: 'workgroup' reduces a softmax row with a
 * tree in workgroup memory (any device; the GPU-shaped one); 'subgroup'
 * (shaders/attention_subgroups.wgsl), for devices with the 'subgroups' feature, reduces with
 * subgroupMax/subgroupAdd (no barrier, an online softmax), blocks KEYS keys or CH channels per
 * lane in registers and hands shared operands round with subgroupShuffle — shaped for CPU
 * adapters, which pay dearly for barriers and run every load in a loop lane by lane;
 * 'subgroup_quads' (the same file's *_quads entry points), where subgroups have exactly 4 or 8
 * lanes, writes its register blocks out (eight rows × four keys or channels per lane, in named
 * vec4s) and reads channels four at a time — SwiftShader keeps arrays indexed by loop counters in
 * memory, and there it runs the four kernels 2.6× faster (bench/README.md); with hd % 4 ≠ 0 it runs
 * the 'subgroup' kernels. The variants give close but not bit-identical probs and gradients: the
 * tuner chooses one per device and shape class (defaultAttentionVariant) and a device keeps it.
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
// Must match the constants of shaders/attention_subgroups.wgsl (MAX_KEYS = MAX_CH).
const SG_MAX_BLOCK = 4;
// Query rows per workgroup of the subgroup variant, at most (≤ the shader's MAX_ROWS): more rows
// share each key's (value's) loads, until the lane's accumulators spill. On lavapipe and
// SwiftShader 32 (T = 65: 22 rows, T = 17: all 17) beat 16 and 8 for every kernel, whose blocks
// are ROWS × KEYS (CH) accumulators: 1.2× (lavapipe) and 1.24× (SwiftShader) faster than at 8
// rows, the same bits. (backward_qkv, while it kept dq, dk and dv live at once, was best at 16 rows;
// working one output at a time it ran 1.26–1.39× faster at 32 on lavapipe, the same bits.)
const SG_ROWS = 32;
// Query rows per workgroup of 'subgroup_quads' (blocks of eight): the most workgroups, and no row
// computed twice; a block's keys are loaded again for each block either way.
const QUADS_ROWS = 8;

/**
 * The register block for `n` items (keys, channels, rows) taken `lanes` × block at a time, block
 * ≤ `max`: the fewest steps, then the smallest block that still needs no more of them, so that
 * the last step pads least (T = 65 keys on 8 lanes: 3 keys a step, 72 slots, not 4 and 96).
 */
const blockFor = (n: number, lanes: number, max: number): number => ceilDiv(n, lanes * ceilDiv(n, lanes * max));

export type AttentionVariant = ReductionVariant | 'subgroup_quads';

/** The shader files whose text decides the variants' results (a tuner hashes them, imports included). */
export const ATTENTION_SHADERS: readonly string[] = ['attention', 'attention_subgroups'];

/** Whether the device's subgroups all have exactly 4 or 8 lanes, as 'subgroup_quads' needs (it shares values from lanes 0..7). */
function quadsFit(gpu: Gpu): boolean {
  const sizes = gpu.subgroupSizes;
  return gpu.hasSubgroups && sizes !== undefined && sizes.min === sizes.max && (sizes.max === 4 || sizes.max === 8);
}

/**
 * The variants this device can run: 'subgroup' needs the WebGPU feature 'subgroups';
 * 'subgroup_quads' also subgroups of exactly 4 or 8 lanes (SwiftShader, lavapipe).
 */
export function attentionVariants(gpu: Gpu): AttentionVariant[] {
  return [...reductionVariants(gpu), ...(quadsFit(gpu) ? (['subgroup_quads'] as const) : [])];
}

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

/** One kernel of a variant and its workgroup grid. */
interface Kernel {
  spec: KernelSpec;
  groups: [number, number, number];
}

/** The four kernels of a variant. */
interface Kernels {
  scores: Kernel;
  weightedSum: Kernel;
  backwardScores: Kernel;
  backwardQkv: Kernel;
}

function kernels(gpu: Gpu, variant: AttentionVariant, B: number, T: number, H: number, hd: number): Kernels {
  if (variant === 'workgroup') {
    // Row kernels (scores, backward_scores): a workgroup per ROWS rows; column kernels: one
    // thread per (block of BLOCK rows, channel) of each (b, h).
    const rowKernel = (entry: string): Kernel => ({ spec: { shader: 'attention', entry }, groups: [ceilDiv(T, ROWS), H, B] });
    const columnKernel = (entry: string): Kernel => ({ spec: { shader: 'attention', entry }, groups: [ceilDiv(ceilDiv(T, BLOCK) * hd, WG), H, B] });
    return {
      scores: rowKernel('attention_scores'), weightedSum: columnKernel('attention_weighted_sum'),
      backwardScores: rowKernel('attention_backward_scores'), backwardQkv: columnKernel('attention_backward_qkv'),
    };
  }
  if (variant === 'subgroup_quads') {
    if (!quadsFit(gpu)) {
      throw new GpuError(
        `The attention variant 'subgroup_quads' needs subgroups of exactly 4 or 8 lanes, which this device (${gpu.adapter.description}) ` +
          `does not have; use 'subgroup' or 'workgroup' (attentionVariants(gpu) lists the variants a device can run).`,
        'limits',
      );
    }
    if (hd % 4 === 0) {
      // Eight rows a block, QUADS_ROWS rows (whole blocks) a workgroup; keys and channels are four a lane.
      const quads = (entry: string): Kernel => ({
        spec: { shader: 'attention_subgroups', entry: `${entry}_quads`, constants: { SG_WG: subgroupWorkgroupSize(gpu), ROWS: QUADS_ROWS } },
        groups: [ceilDiv(T, QUADS_ROWS), H, B],
      });
      return {
        scores: quads('attention_scores'), weightedSum: quads('attention_weighted_sum'),
        backwardScores: quads('attention_backward_scores'), backwardQkv: quads('attention_backward_qkv'),
      };
    }
  }
  // 'subgroup_quads' with channels not in whole quads runs the 'subgroup' kernels.
  const reduction: ReductionVariant = variant === 'subgroup_quads' ? 'subgroup' : variant;
  checkReductionVariant(gpu, reduction, 'attention');
  const sg = subgroupWorkgroupSize(gpu);
  // Register blocking: up to 4 keys (channels) per lane per step and up to `maxRows` query rows
  // per workgroup of each (b, h), each as small as its number of steps allows (blockFor).
  const kernel = (entry: string, maxRows: number): Kernel => {
    const rows = blockFor(T, 1, maxRows);
    const constants = { SG_WG: sg, ROWS: rows, KEYS: blockFor(T, sg, SG_MAX_BLOCK), CH: blockFor(hd, sg, SG_MAX_BLOCK) };
    return { spec: { shader: 'attention_subgroups', entry, constants }, groups: [ceilDiv(T, rows), H, B] };
  };
  return {
    scores: kernel('attention_scores', SG_ROWS), weightedSum: kernel('attention_weighted_sum', SG_ROWS),
    backwardScores: kernel('attention_backward_scores', SG_ROWS), backwardQkv: kernel('attention_backward_qkv', SG_ROWS),
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
  rec.dispatch(k.scores.spec, [probs, qkv], p, k.scores.groups);
  rec.dispatch(k.weightedSum.spec, [out, probs, qkv], p, k.weightedSum.groups);
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
  rec.dispatch(k.backwardScores.spec, [dscores, dout, qkv, probs], p, k.backwardScores.groups);
  rec.dispatch(k.backwardQkv.spec, [dqkv, dscores, probs, qkv, dout], p, k.backwardQkv.groups);
}
