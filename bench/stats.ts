/**
 * The benchmarks' small numeric helpers, browser-safe (no Node imports) so that the Chromium page
 * (bench/page/main.ts) and peer-core.ts share them with the Node benchmarks (bench/lib.ts
 * re-exports them).
 */

/** The median (the mean of the middle two for an even count); NaN when empty. */
export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

export const geomean = (xs: readonly number[]): number => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

/** `digits` significant digits: what the result files keep of a measured figure. */
export const round = (x: number, digits = 4): number => Number(x.toPrecision(digits));
