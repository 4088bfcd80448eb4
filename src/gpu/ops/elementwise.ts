/**
 * Element-wise ops (shaders/elementwise.wgsl): the residual add and its backward, scale and fill,
 * on flat tensors. (The exact GELU is fused into the Linear layers: matmul's gelu / gelu_grad
 * epilogues.) An output must not overlap an input (WebGPU rejects aliasing writable bindings);
 * the in-place forms are addInPlace and scale with out === x.
 */
import type { Recorder, Tensor } from '../kernels';
import { grid2d } from './common';

const WG = 256;

/** One element per thread, on a 2-D grid (grid2d) so that n may exceed 65535·WG. */
function dispatch(rec: Recorder, entry: string, bindings: Tensor[], n: number, s = 0): void {
  rec.dispatch({ shader: 'elementwise', entry }, bindings, [n, { f32: s }, 0, 0], grid2d(n, WG));
}

const sameTensor = (a: Tensor, b: Tensor): boolean => a.buffer === b.buffer && a.offset === b.offset;

/** out[n] = a + b (the residual connection). */
export function add(rec: Recorder, out: Tensor, a: Tensor, b: Tensor, n: number): void {
  dispatch(rec, 'add', [out, a, b], n);
}

/** out[n] += a (residual backward: the shortcut's gradient accumulates onto the branch's). */
export function addInPlace(rec: Recorder, out: Tensor, a: Tensor, n: number): void {
  dispatch(rec, 'add_inplace', [out, a], n);
}

/** out[n] = s·x; out may be x itself (in place). */
export function scale(rec: Recorder, out: Tensor, x: Tensor, s: number, n: number): void {
  if (sameTensor(out, x)) dispatch(rec, 'scale_inplace', [out], n, s);
  else dispatch(rec, 'scale', [out, x], n, s);
}

/** out[n] = value (e.g. zeroing a gradient arena before a step). */
export function fill(rec: Recorder, out: Tensor, value: number, n: number): void {
  dispatch(rec, 'fill', [out], n, value);
}

/** out[n] ·= by[0], in place: a scale that lives on the GPU (the loss scale, ops/adamw.ts lossScaleUpdate). */
export function scaleBy(rec: Recorder, out: Tensor, by: Tensor, n: number): void {
  dispatch(rec, 'scale_by_inplace', [out, by], n);
}
