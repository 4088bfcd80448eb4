// The exact GELU and its derivative, on f32 (erf from common/erf, not the tanh approximation).
//
//   gelu(x)  = x·Φ(x) = ½·x·(1 + erf(x/√2))
//   gelu'(x) = Φ(x) + x·φ(x)
//
// The fc1 product's epilogue computes both from one Φ(x) and saves gelu'(x) for the backward, whose
// fc2-dX epilogue then only multiplies by it (no erf in the backward).
// Use: `// #import common/gelu` (matmul.wgsl's fused epilogues).

// #import common/erf

fn gelu(x: f32) -> f32 {
  return x * normal_cdf(x);
}

// (gelu(x), gelu'(x))
fn gelu_with_grad(x: f32) -> vec2<f32> {
  let cdf = normal_cdf(x);
  return vec2(x * cdf, cdf + x * normal_pdf(x));
}
