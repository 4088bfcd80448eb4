/**
 * Element-wise ops (shaders/elementwise.wgsl): exact GELU (alone and fused with a bias), the
 * residual add and its backward, scale and fill. Tensors are flat; bias-GELU sees [rows, C].
 * An output must not overlap an input (WebGPU rejects aliasing writable bindings); the in-place
 * forms are addInPlace and scale with out === x.
 */
import type { Recorder, Tensor } from '../kernels';
import { grid2d } from './common';

const WG = 256;

/** One element per thread, on a 2-D grid (grid2d) so that n may exceed 65535·WG. */
function dispatch(rec: Recorder, entry: string, bindings: Tensor[], n: number, C = 1, s = 0): void {
  rec.dispatch({ shader: 'elementwise', entry }, bindings, [n, C, { f32: s }, 0], grid2d(n, WG));
}

const sameTensor = (a: Tensor, b: Tensor): boolean => a.buffer === b.buffer && a.offset === b.offset;

/** out[n] = gelu(x) = x·Φ(x) (exact erf). */
export function geluForward(rec: Recorder, out: Tensor, x: Tensor, n: number): void {
  dispatch(rec, 'gelu_forward', [out, x], n);
}

/** dx[n] = gelu'(x)·dout (assigned). */
export function geluBackward(rec: Recorder, dx: Tensor, dout: Tensor, x: Tensor, n: number): void {
  dispatch(rec, 'gelu_backward', [dx, dout, x], n);
}

/** out[rows,C] = gelu(x + bias[c]): the bias add of the preceding Linear fused in. */
export function biasGeluForward(rec: Recorder, out: Tensor, x: Tensor, bias: Tensor, rows: number, C: number): void {
  dispatch(rec, 'bias_gelu_forward', [out, x, bias], rows * C, C);
}

/** dx[rows,C] = gelu'(x + bias[c])·dout (assigned); the bias gradient is then matmul's biasBackward on dx. */
export function biasGeluBackward(rec: Recorder, dx: Tensor, dout: Tensor, x: Tensor, bias: Tensor, rows: number, C: number): void {
  dispatch(rec, 'bias_gelu_backward', [dx, dout, x, bias], rows * C, C);
}

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
  if (sameTensor(out, x)) dispatch(rec, 'scale_inplace', [out], n, 1, s);
  else dispatch(rec, 'scale', [out, x], n, 1, s);
}

/** out[n] = value (e.g. zeroing a gradient arena before a step). */
export function fill(rec: Recorder, out: Tensor, value: number, n: number): void {
  dispatch(rec, 'fill', [out], n, 1, value);
}
