/**
 * Patch embedding input, the pixel target and its inverse, and the fixed position embedding
 * (shaders/patch.wgsl). Images are NCHW float32; patch size p; grid gh = H/p × gw = W/p;
 * L = gh·gw patches, patch l = row·gw + col.
 */
import { GpuError } from '../device';
import type { Recorder, Tensor } from '../kernels';
import { grid2d } from './common';

export { posEmbed2d, posEmbed2dFloat64 } from '../../core/posembed';

/** Patches (one per thread) per workgroup of patchify_target_norm (the WGSL's ROW_WG). */
const ROW_WG = 64;

function checkGrid(what: string, H: number, W: number, p: number): void {
  if (H % p !== 0 || W % p !== 0) throw new GpuError(`${what}: the image ${H}×${W} is not a whole number of ${p}×${p} patches.`, 'validation');
}

/**
 * patches[N·L, C·p·p] (=): each patch flattened in the conv weight's (C, p, p) order, so the
 * patch embedding is `linearForward(rec, x, patches, w, b, N·L, C·p·p, D)` with the conv weight
 * (D, C, p, p) viewed as (D, C·p·p); its weight gradient is linearBackward's on these patches.
 */
export function patchifyConv(rec: Recorder, patches: Tensor, img: Tensor, N: number, C: number, H: number, W: number, p: number): void {
  checkGrid('patchifyConv', H, W, p);
  const L = (H / p) * (W / p);
  rec.dispatch({ shader: 'patch', entry: 'patchify_conv' }, [patches, img], [N, C, H, W, p, 0, L, 0], grid2d(N * C * H * W));
}

/**
 * target[N, L, p·p·C] (=): MAE's `patchify`, each patch as [row-in-patch][col-in-patch][channel].
 * With normPix, each patch row is standardised as MAE's norm_pix_loss in the same pass:
 * (x − mean)/sqrt(var + 1e-6), mean and unbiased variance over the row's p·p·C values (as
 * ref/loss.ts's normalizePixelTargets), so the raw target is never written. The target is data:
 * no backward.
 */
export function patchifyTarget(rec: Recorder, target: Tensor, img: Tensor, N: number, C: number, H: number, W: number, p: number, normPix = false): void {
  checkGrid('patchifyTarget', H, W, p);
  const L = (H / p) * (W / p);
  if (normPix) rec.dispatch({ shader: 'patch', entry: 'patchify_target_norm' }, [target, img], [N, C, H, W, p, 0, L, 0], grid2d(N * L, ROW_WG));
  else rec.dispatch({ shader: 'patch', entry: 'patchify_target' }, [target, img], [N, C, H, W, p, 0, L, 0], grid2d(N * C * H * W));
}

/** img[N, C, H, W] (=) from patches[N, L, p·p·C] in patchifyTarget's order (its inverse). */
export function unpatchify(rec: Recorder, img: Tensor, patches: Tensor, N: number, C: number, H: number, W: number, p: number): void {
  checkGrid('unpatchify', H, W, p);
  const L = (H / p) * (W / p);
  rec.dispatch({ shader: 'patch', entry: 'unpatchify' }, [img, patches], [N, C, H, W, p, 0, L, 0], grid2d(N * C * H * W));
}

/**
 * x[N, L, D] += pos[posStart + l·D + d], broadcast over N. Pass the slice without the cls row,
 * or the whole (1+L)·D table with posStart = D (any width; a tensor view must start 256-byte
 * aligned, the cls row need not end on such a boundary). The table is fixed, not learned: no
 * gradient, and the backward of this op is the identity (dx = dout).
 */
export function addPosEmbed(rec: Recorder, x: Tensor, pos: Tensor, N: number, L: number, D: number, posStart = 0): void {
  rec.dispatch({ shader: 'patch', entry: 'add_pos_embed' }, [x, pos], [N, 0, 0, 0, 0, D, L, posStart], grid2d(N * L * D));
}
