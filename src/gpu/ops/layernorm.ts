/**
 * Layer norm over the last axis (shaders/layernorm.wgsl): x[rows, C] → out[rows, C], saving
 * mean[rows] and rstd[rows] for the backward. The backward's parameter gradients are reduced
 * deterministically through a per-device scratch buffer (chunks of rows, then chunks in order).
 */
import { ceilDiv, type KernelSpec, type Recorder, type Tensor } from '../kernels';
import { grid2d, scratch } from './common';

/** Threads per workgroup: the row kernels' REDUCE_WG (one workgroup per row) and the per-channel kernels'. */
const WG = 64;
/** Must match ROWS_PER_CHUNK in shaders/layernorm.wgsl. */
export const LN_ROWS_PER_CHUNK = 32;

const rowKernel = (entry: string): KernelSpec => ({ shader: 'layernorm', entry, constants: { REDUCE_WG: WG } });

/** out[rows,C] = (x − mean)·rstd·weight + bias; saves mean[rows], rstd[rows]. */
export function layernormForward(
  rec: Recorder, out: Tensor, mean: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
  rows: number, C: number, eps = 1e-6,
): void {
  rec.dispatch(rowKernel('layernorm_forward'), [out, mean, rstd, x, weight, bias], [rows, C, { f32: eps }, 0], grid2d(rows, 1));
}

/** dx[rows,C] = (assigned), dweight[C] +=, dbias[C] += (parameter gradients accumulate). */
export function layernormBackward(
  rec: Recorder, dx: Tensor, dweight: Tensor, dbias: Tensor,
  dout: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, rows: number, C: number,
): void {
  if (rows === 0 || C === 0) return;
  const nchunks = ceilDiv(rows, LN_ROWS_PER_CHUNK);
  // Per-device scratch, grown when too small: corr[rows] and partial[2, nchunks, C] (sums over chunks of rows).
  const corr = scratch(rec.gpu.device, 'layernorm-corr', rows);
  const partial = scratch(rec.gpu.device, 'layernorm-partial', 2 * nchunks * C);
  const params = [rows, C, { f32: 0 }, nchunks];
  rec.dispatch(rowKernel('layernorm_backward_dx'), [dx, corr, dout, x, weight, mean, rstd], params, grid2d(rows, 1));
  rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_partial' }, [partial, dout, x, mean, rstd, corr], params, [ceilDiv(C, WG), nchunks]);
  rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_params' }, [dweight, dbias, partial], params, [ceilDiv(C, WG)]);
}
