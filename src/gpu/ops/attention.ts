/**
 * Multi-head self-attention core (shaders/attention.wgsl): scores, softmax and the weighted
 * sum, between the fused `qkv` Linear and the `proj` Linear.
 *
 *   qkv   [B, T, 3D]   q = [.., 0:D], k = [.., D:2D], v = [.., 2D:3D]; head h = channels h·hd..
 *   probs [B, H, T, T] softmax(q·kᵀ·hd^-0.5), saved by the forward for the backward
 *   out   [B, T, D]    heads concatenated along channels
 */
import { GpuError } from '../device';
import { ceilDiv, type Param, type Recorder, type Tensor } from '../kernels';
import { scratch } from './common';

// Must match the constants of shaders/attention.wgsl.
const WG = 64;
const ROWS = 8;
const MAX_HD = 256;
const BLOCK = 4;

function params(B: number, T: number, H: number, hd: number): Param[] {
  if (!(T >= 1 && B >= 1 && H >= 1 && hd >= 1)) throw new GpuError(`attention: bad shape B=${B} T=${T} H=${H} hd=${hd}.`, 'limits');
  if (hd > MAX_HD) throw new GpuError(`attention: head width ${hd} exceeds the kernel's maximum of ${MAX_HD}.`, 'limits');
  return [B, T, H, hd, { f32: hd ** -0.5 }, 0, 0, 0];
}

/** Workgroups of the column kernels: one thread per (block of BLOCK rows, channel) of each (b, h). */
const columnGroups = (B: number, T: number, H: number, hd: number): [number, number, number] => [ceilDiv(ceilDiv(T, BLOCK) * hd, WG), H, B];

/**
 * out[B,T,D] = softmax(q·kᵀ·hd^-0.5)·v per head (assigned); probs[B,H,T,T] = the softmax
 * (assigned), saved for the backward.
 */
export function attentionForward(rec: Recorder, out: Tensor, probs: Tensor, qkv: Tensor, B: number, T: number, H: number, hd: number): void {
  const p = params(B, T, H, hd);
  rec.dispatch({ shader: 'attention', entry: 'attention_scores' }, [probs, qkv], p, [ceilDiv(T, ROWS), H, B]);
  rec.dispatch({ shader: 'attention', entry: 'attention_weighted_sum' }, [out, probs, qkv], p, columnGroups(B, T, H, hd));
}

/**
 * dqkv[B,T,3D] (assigned, all three parts): dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout,
 * with dP = dout·vᵀ and dS = P ⊙ (dP − rowsum(dP ⊙ P)).
 */
export function attentionBackward(
  rec: Recorder, dqkv: Tensor, dout: Tensor, qkv: Tensor, probs: Tensor,
  B: number, T: number, H: number, hd: number,
): void {
  const p = params(B, T, H, hd);
  // dS [B,H,T,T] between the two dispatches: a per-device scratch, grown when too small, never per call.
  const dscores = scratch(rec.gpu.device, 'attention-dscores', B * H * T * T);
  rec.dispatch({ shader: 'attention', entry: 'attention_backward_scores' }, [dscores, dout, qkv, probs], p, [ceilDiv(T, ROWS), H, B]);
  rec.dispatch({ shader: 'attention', entry: 'attention_backward_qkv' }, [dqkv, dscores, probs, qkv, dout], p, columnGroups(B, T, H, hd));
}
