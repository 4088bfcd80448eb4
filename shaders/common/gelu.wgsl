// The exact GELU and its derivative, on f32 (erf from common/erf, not the tanh approximation).
//
//   gelu(x)  = x·Φ(x) = ½·x·(1 + erf(x/√2))
//   gelu'(x) = Φ(x) + x·φ(x)
//
// Use: `// #import common/gelu` (matmul.wgsl's fused epilogues).

// #import common/erf

fn gelu(x: f32) -> f32 {
  return x * normal_cdf(x);
}

fn gelu_grad(x: f32) -> f32 {
  return normal_cdf(x) + x * normal_pdf(x);
}
