/**
 * The fixed 2-D sin-cos position embedding of MAE (recipe §4; MAE's `get_2d_sincos_pos_embed`).
 * Pure TypeScript, computed once on the CPU and uploaded; imported by the GPU wrappers, the
 * float64 reference and the engine alike, so it imports nothing of either.
 */

/**
 * pos[(1+L)·D] (or [L·D] without the cls row), row 1 + l for patch l = h·gw + w.
 * Channels [0, D/2) encode the column w, [D/2, D) the row h (MAE's meshgrid(w, h) puts w
 * first); each half is [sin(pos·ω_k)]_k ++ [cos(pos·ω_k)]_k with ω_k = 1/10000^(k/(D/4)),
 * k = 0 … D/4 − 1. The cls row is zeros. Computed in float64 like numpy, then rounded to
 * float32 like MAE's `torch.from_numpy(pos_embed).float()`.
 * `gridSize` is g for a g×g grid, or [gh, gw] for a rectangular one.
 */
export function posEmbed2d(D: number, gridSize: number | readonly [number, number], withCls = true): Float32Array {
  return Float32Array.from(posEmbed2dFloat64(D, gridSize, withCls));
}

/** The same table before the float32 rounding. */
export function posEmbed2dFloat64(D: number, gridSize: number | readonly [number, number], withCls = true): Float64Array {
  if (!(D > 0 && D % 4 === 0)) throw new Error(`posEmbed2d: the width D = ${D} must be a positive multiple of 4.`);
  const [gh, gw] = typeof gridSize === 'number' ? [gridSize, gridSize] : gridSize;
  const quarter = D / 4;
  const omega = Float64Array.from({ length: quarter }, (_, k) => 1 / 10000 ** (k / quarter));
  const first = withCls ? 1 : 0;
  const out = new Float64Array((first + gh * gw) * D);
  for (let h = 0; h < gh; h++) {
    for (let w = 0; w < gw; w++) {
      const row = (first + h * gw + w) * D;
      for (let k = 0; k < quarter; k++) {
        out[row + k] = Math.sin(w * omega[k]);
        out[row + quarter + k] = Math.cos(w * omega[k]);
        out[row + 2 * quarter + k] = Math.sin(h * omega[k]);
        out[row + 3 * quarter + k] = Math.cos(h * omega[k]);
      }
    }
  }
  return out;
}
