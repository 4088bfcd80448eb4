// AdamW over a whole parameter arena, and the gradient-clipping coefficient. The global
// gradient norm it takes is loss.wgsl's generic sum (sumReduce's 'l2', in src/gpu/ops/loss.ts).
//
// Shape letters: n elements (the arena's size, padding included), R decay ranges.
// params, grads, m, v are four arenas of one layout (or four tensors of length n).
//
// adamw_step — torch.optim.AdamW, one element per thread on a 2-D grid of workgroups (common/grid):
//   g  = grad[i] · clip[0]                       (clip_grad_norm_ scales the gradient first)
//   p *= 1 − lr·wd                               (decoupled decay, only where i is in a decay range)
//   m  = m + (1 − β1)·(g − m)                    (torch's lerp_: = β1·m + (1 − β1)·g)
//   v  = v·β2 + (1 − β2)·g²
//   p  = p − step_size · m / (sqrt(v) / sqrt(bc2) + eps),  step_size = lr / bc1, bc_k = 1 − β_k^t
//   (torch's own form; bias corrections are computed on the CPU in float64.)
//   Bindings: 0 params, 1 param (=, in place), 2 m (=, in place), 3 v (=, in place),
//             4 grad [n] (read), 5 ranges [2R] u32 (sorted, disjoint [start, end) pairs), 6 clip [1],
//             7 lr_ranges [3S] u32 (optional per-parameter lr scale: sorted, disjoint
//               [start, end, bits of the f32 scale] triples; elements outside them have scale 1).
//   With an lr-scale table (num_lr_ranges > 0) an element of scale s is updated as torch's
//   param group of lr·s: p *= 1 − lr·s·wd, step_size·s (layer-wise lr decay of fine-tuning).
//   Padding between tensors is 0 in all four arenas and stays exactly 0: g = m = v = 0 gives an
//   update 0 / eps = 0, and the decay multiplies 0.
//
// clip_coefficient — clip[0] = min(1, max_norm / (norm[0] + 1e-6)) (torch.nn.utils.clip_grad_norm_).
//   Bindings: 1 clip [1] (=), 2 norm [1].
// Nothing is saved for a backward; there is none.

// #import common/grid

struct Params {
  n: u32,
  num_ranges: u32,
  decay_all: u32,        // 1: every element decays (no range table bound)
  _pad0: u32,
  decay_factor: f32,     // 1 − lr·wd
  one_minus_beta1: f32,
  beta2: f32,
  one_minus_beta2: f32,
  step_size: f32,        // lr / (1 − β1^t)
  bc2_sqrt: f32,         // sqrt(1 − β2^t)
  eps: f32,
  max_norm: f32,         // clip_coefficient only
  num_lr_ranges: u32,    // 0: no lr-scale table (every element has scale 1; the exact old path)
  lr_wd: f32,            // lr·wd, for the per-element decay factor 1 − lr·wd·s
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// adamw_step
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> ranges: array<u32>;
@group(0) @binding(6) var<storage, read_write> clip: array<f32>;
@group(0) @binding(7) var<storage, read_write> lr_ranges: array<u32>;

// clip_coefficient: one output, one input.
@group(0) @binding(1) var<storage, read_write> clip_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm_in: array<f32>;

const WG = 256u;

// Whether element i lies in one of the sorted, disjoint [start, end) ranges: binary search for the
// last range whose start ≤ i, then compare with its end.
fn decays(i: u32) -> bool {
  if (p.decay_all != 0u) { return true; }
  var lo = 0u;
  var hi = p.num_ranges;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (ranges[2u * mid] <= i) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo > 0u && i < ranges[2u * (lo - 1u) + 1u];
}

// The lr scale of element i: binary search of the sorted triples, 1 outside them.
fn lr_scale(i: u32) -> f32 {
  var lo = 0u;
  var hi = p.num_lr_ranges;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (lr_ranges[3u * mid] <= i) { lo = mid + 1u; } else { hi = mid; }
  }
  if (lo > 0u && i < lr_ranges[3u * (lo - 1u) + 1u]) { return bitcast<f32>(lr_ranges[3u * (lo - 1u) + 2u]); }
  return 1.0;
}

@compute @workgroup_size(WG)
fn adamw_step(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = grid_index(wid, nwg, lid.x, WG);
  if (i >= p.n) { return; }
  let g = grad[i] * clip[0];
  var w = param[i];
  var decay_factor = p.decay_factor;
  var step_size = p.step_size;
  if (p.num_lr_ranges > 0u) {
    let s = lr_scale(i);
    decay_factor = 1.0 - p.lr_wd * s;
    step_size = p.step_size * s;
  }
  if (decays(i)) { w *= decay_factor; }
  let mi = m[i] + p.one_minus_beta1 * (g - m[i]);
  let vi = v[i] * p.beta2 + p.one_minus_beta2 * g * g;
  let denom = sqrt(vi) / p.bc2_sqrt + p.eps;
  w -= step_size * (mi / denom);
  m[i] = mi;
  v[i] = vi;
  param[i] = w;
}

@compute @workgroup_size(1)
fn clip_coefficient() {
  // f32 throughout, as torch computes it on the gradients' device.
  clip_out[0] = min(1.0, p.max_norm / (norm_in[0] + 1e-6));
}
