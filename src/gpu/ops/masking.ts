/**
 * MAE's masking (shaders/masking.wgsl): the encoder keeps the visible tokens and prepends cls;
 * the decoder appends mask tokens and unshuffles. The random masking itself is drawn on the
 * CPU (src/core/masking.ts, re-exported here) and its ids uploaded as u32 tensors.
 * N batch, L patches, V visible (lenKeep), D width.
 */
import { ceilDiv, type Recorder, type Tensor } from '../kernels';
import { grid2d } from './common';

/** cls_backward's and mask_token_backward's: their parameter gradient += (or =, inside Recorder.assignParamGrads). */
const paramGradConstants = (rec: Recorder) => ({ ACCUMULATE: rec.accumulatesParamGrads ? 1 : 0 });

export { randomMasking, lenKeepFor, maskRatioFor, type Masking } from '../../core/masking';

/** out[N, 1+V, D] (=): row 0 = cls[D], row 1+j = x[n, idsKeep[n, j]] of x[N, L, D]. */
export function gatherVisible(rec: Recorder, out: Tensor, x: Tensor, cls: Tensor, idsKeep: Tensor, N: number, L: number, V: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'gather_visible' }, [out, x, cls, idsKeep], [N, L, V, D], grid2d(N * (1 + V) * D));
}

/**
 * dx[N, L, D] (=): dout's visible rows scattered back to their patches, zero at the masked
 * ones (a clearing pass, then the scatter); dcls[D] += Σ_n dout[n, 0] (images in order; = inside Recorder.assignParamGrads).
 * Pass dx = null when the input needs no gradient.
 */
export function gatherVisibleBackward(
  rec: Recorder, dx: Tensor | null, dcls: Tensor, dout: Tensor, idsKeep: Tensor, N: number, L: number, V: number, D: number,
): void {
  if (dx) {
    rec.dispatch({ shader: 'masking', entry: 'gather_visible_zero' }, [dx], [N, L, V, D], grid2d(N * L * D));
    rec.dispatch({ shader: 'masking', entry: 'gather_visible_scatter' }, [dx, dout, undefined, idsKeep], [N, L, V, D], grid2d(N * V * D));
  }
  rec.dispatch({ shader: 'masking', entry: 'cls_backward', constants: paramGradConstants(rec) }, [dcls, dout], [N, L, V, D], [ceilDiv(D, 64)]);
}

/**
 * The decoder's unshuffle, out[N, 1+L, D] (=) from x[N, 1+V, D] (cls first): row 0 = x[n, 0];
 * row 1+l = x[n, 1+j] where j = idsRestore[n, l] < V, else maskToken[D].
 */
export function insertMaskTokens(rec: Recorder, out: Tensor, x: Tensor, maskToken: Tensor, idsRestore: Tensor, N: number, L: number, V: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'insert_mask_tokens' }, [out, x, maskToken, idsRestore], [N, L, V, D], grid2d(N * (1 + L) * D));
}

/**
 * dx[N, 1+V, D] (=): dout's cls row and kept rows, back in shuffled order;
 * dmaskToken[D] += Σ over the masked (n, l) of dout[n, 1+l] (in order; = inside Recorder.assignParamGrads).
 */
export function insertMaskTokensBackward(
  rec: Recorder, dx: Tensor, dmaskToken: Tensor, dout: Tensor, idsRestore: Tensor, N: number, L: number, V: number, D: number,
): void {
  rec.dispatch({ shader: 'masking', entry: 'insert_mask_tokens_backward' }, [dx, dout, undefined, idsRestore], [N, L, V, D], grid2d(N * (1 + L) * D));
  rec.dispatch({ shader: 'masking', entry: 'mask_token_backward', constants: paramGradConstants(rec) }, [dmaskToken, dout, undefined, idsRestore], [N, L, V, D], [ceilDiv(D, 64)]);
}

/** out[N, V, D] (=) = x[n, idsKeep[n, j]] of x[N, L, D]: the visible patches, before embedding. */
export function gatherPatches(rec: Recorder, out: Tensor, x: Tensor, idsKeep: Tensor, N: number, L: number, V: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'gather_patches' }, [out, x, undefined, idsKeep], [N, L, V, D], grid2d(N * V * D));
}

/**
 * The encoder's input from its embedded visible patches x[N, V, D] (=): row 0 = cls[D]; row 1+j =
 * x[n, j] + pos[1 + idsKeep[n, j]] of pos[1+L, D]. The same tokens as embedding every patch,
 * adding pos and gathering (gatherVisible), for V/L of the work.
 */
export function embedVisible(rec: Recorder, out: Tensor, x: Tensor, cls: Tensor, idsKeep: Tensor, pos: Tensor, N: number, L: number, V: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'embed_visible' }, [out, x, cls, idsKeep, pos], [N, L, V, D], grid2d(N * (1 + V) * D));
}

/** embedVisible's backward: dx[N, V, D] (=) = dout[n, 1+j]; dcls[D] += Σ_n dout[n, 0] (= inside Recorder.assignParamGrads). pos is fixed. */
export function embedVisibleBackward(rec: Recorder, dx: Tensor, dcls: Tensor, dout: Tensor, N: number, L: number, V: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'strip_cls' }, [dx, dout], [N, L, V, D], grid2d(N * V * D));
  rec.dispatch({ shader: 'masking', entry: 'cls_backward', constants: paramGradConstants(rec) }, [dcls, dout], [N, L, V, D], [ceilDiv(D, 64)]);
}

/** out[N, T, D] (=) = x[n, 1+t] of x[N, 1+T, D]: the tokens without their cls row. */
export function dropCls(rec: Recorder, out: Tensor, x: Tensor, N: number, T: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'strip_cls' }, [out, x], [N, T, T, D], grid2d(N * T * D));
}

/** dropCls's backward: dx[N, 1+T, D] (=): row 0 = 0, row 1+t = dout[n, t]. */
export function padCls(rec: Recorder, dx: Tensor, dout: Tensor, N: number, T: number, D: number): void {
  rec.dispatch({ shader: 'masking', entry: 'pad_cls' }, [dx, dout], [N, T, T, D], grid2d(N * (1 + T) * D));
}
