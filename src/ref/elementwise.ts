/**
 * Float64 reference of shaders/elementwise.wgsl (same names and argument order as
 * src/gpu/ops/elementwise.ts), and of the exact GELU that matmul's epilogues fuse
 * (shaders/common/gelu.wgsl; biasGeluForward/Backward here), with the float64 erf/erfc
 * (accurate to about 1e-16 absolute) it needs.
 */
type Vec = Float64Array;

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_PI = 0.5641895835477563;

/**
 * erfc(x) for x ≥ 2.5 by its continued fraction
 *   erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …)))))
 * evaluated from the tail; 120 terms converge to float64 precision for x ≥ 2.5.
 */
function erfcContinuedFraction(x: number): number {
  let f = x;
  for (let k = 120; k >= 1; k--) f = x + k / 2 / f;
  return (Math.exp(-x * x) * ONE_OVER_SQRT_PI) / f;
}

/**
 * erf(x) for |x| < 2.5 by the series of positive terms
 *   erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)),
 * which, unlike the Maclaurin series, does not cancel.
 */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const z = Math.abs(x);
  const r = z < 2.5 ? erfSeries(z) : 1 - erfcContinuedFraction(z);
  return x < 0 ? -r : r;
}

/** erfc(x) = 1 − erf(x), accurate in relative terms in the tail x → +∞. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= 2.5) return erfcContinuedFraction(x);
  return 1 - erf(x);
}

/** Φ(x), the standard normal CDF. */
export const normalCdf = (x: number): number => 0.5 * erfc(-x * Math.SQRT1_2);
/** φ(x), the standard normal PDF. */
export const normalPdf = (x: number): number => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);

export const gelu = (x: number): number => x * normalCdf(x);
export const geluGrad = (x: number): number => normalCdf(x) + x * normalPdf(x);

export function geluForward(out: Vec, x: Vec, n: number): void {
  for (let i = 0; i < n; i++) out[i] = gelu(x[i]);
}

export function geluBackward(dx: Vec, dout: Vec, x: Vec, n: number): void {
  for (let i = 0; i < n; i++) dx[i] = geluGrad(x[i]) * dout[i];
}

export function biasGeluForward(out: Vec, x: Vec, bias: Vec, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < C; c++) out[r * C + c] = gelu(x[r * C + c] + bias[c]);
}

export function biasGeluBackward(dx: Vec, dout: Vec, x: Vec, bias: Vec, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < C; c++) dx[r * C + c] = geluGrad(x[r * C + c] + bias[c]) * dout[r * C + c];
}

export function add(out: Vec, a: Vec, b: Vec, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}

export function addInPlace(out: Vec, a: Vec, n: number): void {
  for (let i = 0; i < n; i++) out[i] += a[i];
}

export function scale(out: Vec, x: Vec, s: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = s * x[i];
}

export function fill(out: Vec, value: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = value;
}

/** out[n] ·= by[0]: a scale that lives on the GPU (the loss scale). */
export function scaleBy(out: Vec, by: Vec, n: number): void {
  for (let i = 0; i < n; i++) out[i] *= by[0];
}
