/**
 * IEEE 754 binary16 rounding in float64 (Math.f16round arrives after Node 20): what a GPU's
 * f32 → f16 conversion gives, round-to-nearest-even, subnormals kept. The float64 references of
 * the mixed-precision kernels round their operands with it. (WGSL lets a conversion take either
 * neighbour; Vulkan, D3D12 and Metal round to nearest even. A device that truncated would fail
 * the tuner's check of the f16 variants, which then are never chosen there.)
 */

/** The largest finite f16. */
export const F16_MAX = 65504;
const MIN_NORMAL = 2 ** -14;

/** Rounds x / quantum to the nearest integer, ties to even (quantum a power of two: exact). */
function roundToQuantum(x: number, quantum: number): number {
  const q = x / quantum;
  const f = Math.floor(q);
  const d = q - f;
  const n = d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  return n * quantum;
}

/** x rounded to the nearest f16 (±Infinity past the largest finite one, NaN kept). */
export function f16round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  // 10 fraction bits above the smallest normal exponent; below it the subnormals' fixed 2⁻²⁴ step.
  const r = roundToQuantum(a, a < MIN_NORMAL ? 2 ** -24 : 2 ** (e - 10));
  if (r > F16_MAX) return x > 0 ? Infinity : -Infinity;
  return x > 0 ? r : -r;
}

/** What matmul_f16.wgsl's packs store: f16round, with values past ±65504 (and ±Infinity) clamped to it. */
export function f16Saturate(x: number): number {
  if (Number.isNaN(x)) return x;
  return f16round(Math.max(-F16_MAX, Math.min(F16_MAX, x)));
}
