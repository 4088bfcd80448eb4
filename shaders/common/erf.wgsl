// erf, erfc and the standard normal CDF/PDF in f32 (WGSL has no erf), for the exact GELU.
//
// erfc_f32: the Chebyshev fit of Numerical Recipes (erfcc, Press et al., 2nd ed. §6.2), relative
//   error < 1.2e-7 for every x in exact arithmetic; relative, so the tail erfc(x→∞) and hence
//   Φ(x) for negative x stay accurate where 1 + erf(x) would cancel.
// erf_f32: Maclaurin series for |x| < 0.5 (relative accuracy near 0, where 1 − erfc(x) loses it),
//   1 − erfc(x) beyond; max abs error about 1e-7.

fn erfc_f32(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
             t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(poly - z * z);
  return select(2.0 - r, r, x >= 0.0);
}

fn erf_f32(x: f32) -> f32 {
  if (abs(x) < 0.5) {
    // 2/√π · Σ (−1)ⁿ x^(2n+1) / (n! (2n+1)), n ≤ 6: truncation < 2e-8 relative at |x| = 0.5.
    let x2 = x * x;
    let s = 1.0 + x2 * (-1.0 / 3.0 + x2 * (1.0 / 10.0 + x2 * (-1.0 / 42.0 + x2 * (1.0 / 216.0 +
            x2 * (-1.0 / 1320.0 + x2 * (1.0 / 9360.0))))));
    return 1.1283791670955126 * x * s;
  }
  return 1.0 - erfc_f32(x);
}

// Φ(x) = ½·erfc(−x/√2): the standard normal CDF.
fn normal_cdf(x: f32) -> f32 {
  return 0.5 * erfc_f32(-0.7071067811865476 * x);
}

// φ(x) = exp(−x²/2)/√(2π): the standard normal PDF.
fn normal_pdf(x: f32) -> f32 {
  return 0.3989422804014327 * exp(-0.5 * x * x);
}
