/**
 * The benchmarks' small numeric helpers and their verification against float64 references,
 * browser-safe (no Node imports) so that the Chromium page (bench/page/main.ts) and peer-core.ts
 * share them with the Node benchmarks (bench/lib.ts re-exports them).
 */
import { TOL, type Tolerance } from '../test/numerics';

/** The median (the mean of the middle two for an even count); NaN when empty. */
export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

export const geomean = (xs: readonly number[]): number => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

/** `digits` significant digits: what the result files keep of a measured figure. */
export const round = (x: number, digits = 4): number => Number(x.toPrecision(digits));

// ---------------------------------------------------------------------------------------------
// Verification

export interface Verification {
  verified: boolean;
  /** max |got − ref| over all checked outputs. */
  maxAbsError: number;
  /** max |got − ref| / (atol + rtol·|ref|): at most 1 when verified. */
  worstToleranceUse: number;
  tolerance: Tolerance;
  /** Set when verification ran on a smaller instance than the one timed. */
  verifiedAt?: Record<string, number | string>;
  /** First failure, in words. */
  failure?: string;
}

/** |got − ref| ≤ atol + rtol·|ref| element-wise; NaN fails. */
export function compare(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what: string): Verification {
  let maxAbs = 0;
  let worst = 0;
  let worstAt = -1;
  let bad = 0;
  if (got.length < want.length) {
    return { verified: false, maxAbsError: Infinity, worstToleranceUse: Infinity, tolerance: tol, failure: `${what}: ${got.length} elements, want ${want.length}` };
  }
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const use = Number.isNaN(d) ? Infinity : d / (tol.atol + tol.rtol * Math.abs(want[i]) || Number.MIN_VALUE);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
    if (use > worst) {
      worst = use;
      worstAt = i;
    }
    if (use > 1) bad++;
  }
  const v: Verification = { verified: bad === 0, maxAbsError: maxAbs, worstToleranceUse: worst, tolerance: tol };
  if (bad > 0) v.failure = `${what}: ${bad}/${want.length} outside atol=${tol.atol} rtol=${tol.rtol}; worst [${worstAt}] got ${got[worstAt]}, reference ${want[worstAt]}`;
  return v;
}

/** Combines the checks of several outputs of one kernel. */
export function combine(checks: Verification[]): Verification {
  const out: Verification = {
    verified: checks.every((c) => c.verified),
    maxAbsError: Math.max(0, ...checks.map((c) => c.maxAbsError)),
    worstToleranceUse: Math.max(0, ...checks.map((c) => c.worstToleranceUse)),
    tolerance: checks[0]?.tolerance ?? TOL.exact,
  };
  const failed = checks.find((c) => !c.verified);
  if (failed) out.failure = failed.failure;
  return out;
}
