/**
 * Layer norm over the last axis (shaders/layernorm.wgsl): x[rows, C] → out[rows, C], saving
 * mean[rows] and rstd[rows] for the backward. The backward's parameter gradients are reduced
 * deterministically through a per-device scratch buffer (chunks of rows, then chunks in order).
 */
import { createTensor } from '../buffers';
import { ceilDiv, type Recorder, type Tensor } from '../kernels';

const WG = 64;
/** Must match ROWS_PER_CHUNK in shaders/layernorm.wgsl. */
export const LN_ROWS_PER_CHUNK = 32;
const ALIGN_ELEMS = 64; // 256-byte tensor offsets

/** One workgroup per row, the rows spilling into y past the per-dimension limit. */
function rowGroups(rec: Recorder, rows: number): [number, number] {
  const max = rec.gpu.device.limits.maxComputeWorkgroupsPerDimension;
  return rows <= max ? [rows, 1] : [max, ceilDiv(rows, max)];
}

interface Scratch {
  buffer: GPUBuffer;
  length: number;
}
const scratches = new WeakMap<GPUDevice, Scratch>();

/**
 * The backward's scratch for (rows, C): corr[rows] then partial[2, nchunks, C], one buffer per
 * device, grown when too small. The old buffer is dropped, not destroyed: commands recorded but
 * not yet submitted may still use it.
 */
function backwardScratch(device: GPUDevice, rows: number, C: number, nchunks: number): { corr: Tensor; partial: Tensor } {
  const corrLen = ceilDiv(rows, ALIGN_ELEMS) * ALIGN_ELEMS;
  const partialLen = 2 * nchunks * C;
  const need = corrLen + partialLen;
  let s = scratches.get(device);
  if (!s || s.length < need) {
    const t = createTensor(device, Math.max(need, s ? Math.ceil(s.length * 1.5) : 0), 'layernorm-backward-scratch');
    s = { buffer: t.buffer, length: t.length };
    scratches.set(device, s);
  }
  return {
    corr: { buffer: s.buffer, offset: 0, length: rows },
    partial: { buffer: s.buffer, offset: corrLen * 4, length: partialLen },
  };
}

/** out[rows,C] = (x − mean)·rstd·weight + bias; saves mean[rows], rstd[rows]. */
export function layernormForward(
  rec: Recorder, out: Tensor, mean: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
  rows: number, C: number, eps = 1e-6,
): void {
  rec.dispatch({ shader: 'layernorm', entry: 'layernorm_forward' }, [out, mean, rstd, x, weight, bias], [rows, C, { f32: eps }, 0], rowGroups(rec, rows));
}

/** dx[rows,C] = (assigned), dweight[C] +=, dbias[C] += (parameter gradients accumulate). */
export function layernormBackward(
  rec: Recorder, dx: Tensor, dweight: Tensor, dbias: Tensor,
  dout: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, rows: number, C: number,
): void {
  if (rows === 0 || C === 0) return;
  const nchunks = ceilDiv(rows, LN_ROWS_PER_CHUNK);
  const { corr, partial } = backwardScratch(rec.gpu.device, rows, C, nchunks);
  const params = [rows, C, { f32: 0 }, nchunks];
  rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_dx' }, [dx, corr, dout, x, weight, mean, rstd], params, rowGroups(rec, rows));
  rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_partial' }, [partial, dout, x, mean, rstd, corr], params, [ceilDiv(C, WG), nchunks]);
  rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_params' }, [dweight, dbias, partial], params, [ceilDiv(C, WG)]);
}
