/**
 * Layer norm over the last axis (shaders/layernorm.wgsl): x[rows, C] → out[rows, C], saving
 * mean[rows] and rstd[rows] for the backward. The backward's parameter gradients are reduced
 * deterministically through a per-device scratch buffer (chunks of rows, then chunks in order).
 *
 * Two variants of the row kernels (forward, backward_dx), the same maths: 'workgroup' reduces a
 * row with a tree in workgroup memory (any device); 'subgroup' (shaders/layernorm_subgroups.wgsl)
 * with subgroupAdd, no barrier, for devices with the 'subgroups' feature (CPU adapters pay dearly
 * for barriers); it reads rows of C % 4 == 0 as vec4s (the forward several rows per workgroup), and
 * its backward takes a chunk of rows per workgroup and sums their dweight/dbias
 * partials in the same dispatch as their dx (two reads of dout and x instead of three). The two give
 * close but not bit-identical results: choose one per device and keep it (a run stays reproducible).
 */
import type { Gpu } from '../device';
import { ceilDiv, type KernelSpec, type Recorder, type Tensor } from '../kernels';
import { chosenVariant } from '../variant-choices';
import { checkReductionVariant, floorLog2, grid2d, reductionVariants, scratch, subgroupWorkgroupSize, type ReductionVariant } from './common';

/** Threads per workgroup: the row kernels' REDUCE_WG (one workgroup per row) and the per-channel kernels'. */
const WG = 64;
/** Must match ROWS_PER_CHUNK in shaders/common/layernorm_rows.wgsl. */
export const LN_ROWS_PER_CHUNK = 32;

export type LayernormVariant = ReductionVariant;

/** The shader files whose text decides the variants' results (a tuner hashes them, imports included). */
export const LAYERNORM_SHADERS: readonly string[] = ['layernorm', 'layernorm_subgroups'];

/** The variants this device can run: 'subgroup' needs the WebGPU feature 'subgroups'. */
export const layernormVariants = reductionVariants;

/**
 * The variant when the caller names none: the per-adapter tuner's choice for the shape's class
 * (⌊log₂⌋ of rows and of C; gpu/autotune-families.ts), else 'workgroup'.
 */
export function defaultLayernormVariant(gpu: Gpu, rows: number, C: number): LayernormVariant {
  return chosenVariant(gpu, 'layernorm', `r${floorLog2(rows)}.c${floorLog2(C)}`, { rows, C }, 'workgroup', layernormVariants(gpu));
}

function rowKernel(gpu: Gpu, entry: string, variant: LayernormVariant, constants: Record<string, number> = {}): KernelSpec {
  if (variant === 'workgroup') return { shader: 'layernorm', entry, constants: { REDUCE_WG: WG, ...constants } };
  checkReductionVariant(gpu, variant, 'layer norm');
  return { shader: 'layernorm_subgroups', entry, constants: { SG_WG: subgroupWorkgroupSize(gpu), ...constants } };
}

/** Rows per workgroup of the subgroup variant's layernorm_forward_vec4 (its ROWS_PER_WORKGROUP). */
const LN_FORWARD_ROWS = 4;

/**
 * out[rows,C] = (x − mean)·rstd·weight + bias; saves mean[rows], rstd[rows]. The subgroup variant
 * reads rows of C % 4 == 0 as vec4s, LN_FORWARD_ROWS rows per workgroup (layernorm_forward_vec4).
 */
export function layernormForward(
  rec: Recorder, out: Tensor, mean: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
  rows: number, C: number, eps = 1e-6, variant: LayernormVariant = defaultLayernormVariant(rec.gpu, rows, C),
): void {
  const bindings = [out, mean, rstd, x, weight, bias];
  const params = [rows, C, { f32: eps }, 0];
  if (variant === 'subgroup' && C % 4 === 0) {
    const spec = rowKernel(rec.gpu, 'layernorm_forward_vec4', variant, { ROWS_PER_WORKGROUP: LN_FORWARD_ROWS });
    rec.dispatch(spec, bindings, params, grid2d(ceilDiv(rows, LN_FORWARD_ROWS), 1));
  } else rec.dispatch(rowKernel(rec.gpu, 'layernorm_forward', variant), bindings, params, grid2d(rows, 1));
}

/**
 * dx[rows,C] = (assigned; with accumulateDx, dx +=), dweight[C] +=, dbias[C] += (parameter
 * gradients accumulate; inside Recorder.assignParamGrads they are assigned). accumulateDx adds the norm's input gradient onto what dx holds — the
 * residual stream's `dres += dx_norm`, one dispatch instead of a scratch dx and an addInPlace.
 */
export function layernormBackward(
  rec: Recorder, dx: Tensor, dweight: Tensor, dbias: Tensor,
  dout: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, rows: number, C: number,
  accumulateDx = false, variant: LayernormVariant = defaultLayernormVariant(rec.gpu, rows, C),
): void {
  const constants = { ACCUMULATE_DX: accumulateDx ? 1 : 0 };
  const subgroupEntry = C % 4 === 0 ? 'layernorm_backward_dx_partial_vec4' : 'layernorm_backward_dx_partial';
  const dxSpec = rowKernel(rec.gpu, variant === 'subgroup' ? subgroupEntry : 'layernorm_backward_dx', variant, constants);
  if (rows === 0 || C === 0) return;
  const nchunks = ceilDiv(rows, LN_ROWS_PER_CHUNK);
  // Per-device scratch, grown when too small: partial[2, nchunks, C] (sums over chunks of rows), and for
  // 'workgroup' corr[rows], which its dx kernel hands to backward_partial.
  const partial = scratch(rec.gpu.device, 'layernorm-partial', 2 * nchunks * C);
  const params = [rows, C, { f32: 0 }, nchunks];
  if (variant === 'subgroup') {
    // One dispatch: each chunk's dx and its partial sums (layernorm_backward_dx_partial, in vec4s where C % 4 == 0).
    rec.dispatch(dxSpec, [dx, partial, dout, x, weight, mean, rstd], params, grid2d(nchunks, 1));
  } else {
    const corr = scratch(rec.gpu.device, 'layernorm-corr', rows);
    rec.dispatch(dxSpec, [dx, corr, dout, x, weight, mean, rstd], params, grid2d(rows, 1));
    rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_partial' }, [partial, dout, x, mean, rstd, corr], params, [ceilDiv(C, WG), nchunks]);
  }
  const paramsSpec = { shader: 'layernorm', entry: 'layernorm_backward_params', constants: { ACCUMULATE_PARAMS: rec.accumulatesParamGrads ? 1 : 0 } };
  rec.dispatch(paramsSpec, [dweight, dbias, partial], params, [ceilDiv(C, WG)]);
}
