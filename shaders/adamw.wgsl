// AdamW over a whole parameter arena, and the gradient-clipping coefficient. The global
// gradient norm it takes is loss.wgsl's generic sum (sumReduce's 'norm', in src/gpu/ops/loss.ts).
//
// Shape letters: n elements (the arena's size, padding included), R decay ranges, S lr-scale ranges.
// params, grads, m, v are four arenas of one layout (or four tensors of length ≥ n).
//
// AdamW is torch.optim.AdamW, per element i:
//   g  = grad[i] · clip[0]                       (clip_grad_norm_ scales the gradient first)
//   p *= 1 − lr·wd                               (decoupled decay, only where i is in a decay range)
//   m  = m + (1 − β1)·(g − m)                    (torch's lerp_: = β1·m + (1 − β1)·g)
//   v  = v·β2 + (1 − β2)·g²
//   p  = p − step_size · m / (sqrt(v) / sqrt(bc2) + eps),  step_size = lr / bc1, bc_k = 1 − β_k^t
//   (torch's own form; bias corrections are computed on the CPU in float64.)
// Two entry points compute it with the same f32 operations in the same order per element, so
// they give bit-identical results (test/gpu/adamw.test.ts checks it):
//   adamw_step_vec4 — the fast path: elements [0, 4⌊n/4⌋) as vec4s through vec4 views of
//     bindings 1–4 (param4, m4, v4, grad4, which alias param, m, v, grad; an entry point uses one
//     view of each binding only). A workgroup owns a block of VEC4_WG·VEC4_PER_THREAD vec4s and
//     each invocation VEC4_PER_THREAD of them, VEC4_WG apart (adjacent invocations touch adjacent
//     vec4s: coalesced on GPUs, one vec4 per SIMD lane on CPU adapters). The decay and lr-scale
//     tables are searched once per invocation, for the few ranges that overlap the block, not
//     once per element: where one range covers the block, or none touches it, one decision holds
//     for all of it; otherwise each vec4 tests its four indices against the block's ranges, so
//     range boundaries need not be multiples of 4.
//   adamw_step — one element per thread on a 2-D grid of workgroups (common/grid), elements
//     [first, n) with a binary search of both tables per element: the reference path, and the
//     scalar tail [4⌊n/4⌋, n) of the vec4 path (n < 4 included: a vec4 view needs 16 bytes).
//   Bindings: 0 params, 1 param (=, in place), 2 m (=, in place), 3 v (=, in place),
//             4 grad [n] (read), 5 ranges [2R] u32 (sorted, disjoint [start, end) pairs), 6 clip [1 or 2],
//             7 lr_ranges [3S] u32 (optional per-parameter lr scale: sorted, disjoint
//               [start, end, bits of the f32 scale] triples; elements outside them have scale 1),
//             8 norm_partials (adamw_step_vec4; written with NORM_PARTIALS): one per invocation,
//               Σ grad² over its elements (the unclipped gradient), in order, (x² + y²) + (z² + w²)
//               per vec4. Summed afterwards (sumReduce 'sqrtsum') they give the global gradient
//               norm without a pass of its own over the gradients: where nothing needs the norm
//               before the update (f32, no clipping), it is reported from the update's own reads.
//               A skipped step writes none (the wrapper never asks for them where steps skip).
//   With an lr-scale table (num_lr_ranges > 0) an element of scale s is updated as torch's
//   param group of lr·s: p *= 1 − lr·s·wd, step_size·s (layer-wise lr decay of fine-tuning).
//   Padding between tensors is 0 in all four arenas and stays exactly 0: g = m = v = 0 gives an
//   update 0 / eps = 0, and the decay multiplies 0.
//
//   A clip of two elements whose clip[1] ≠ 0 skips the step: nothing is written (the loss
//   scaler's overflow; torch's GradScaler skips optimizer.step() the same way).
//
// clip_coefficient — clip[0] = min(1, max_norm / (norm[0] + 1e-6)) (torch.nn.utils.clip_grad_norm_).
//   Bindings: 1 clip [1] (=), 2 norm [1].
//
// loss_scale_update — dynamic loss scaling for mixed precision, torch.cuda.amp.GradScaler's rule
//   (backoff ½, growth 2 after growth_interval good steps in a row), run after the norm of the
//   gradients of the scaled loss. state = [scale, good steps in a row, this step skipped (0/1),
//   steps skipped so far]; overflow[0] is the f16 packs' flag (matmul_f16.wgsl).
//     overflow (flag set, or the norm not finite):
//       clip = [0, 1] (AdamW skips), scale ·= ½, good = 0, skipped += 1; norm[0] = NaN (no meaningful norm)
//     else: norm[0] /= scale (the true gradient's norm: reported, and what clipping compares)
//       clip = [c / scale, 0], c = min(1, max_norm / (norm + 1e-6)), or 1 when max_norm = 0
//       good += 1; at growth_interval: scale ·= 2, good = 0
//     overflow[0] = 0 for the next step.
//   Bindings: 1 clip [2] (=), 2 norm [1] (in place), 3 state [4] (in place), 4 overflow [1] u32 (in place).
// Nothing is saved for a backward; there is none.

// #import common/grid

struct Params {
  n: u32,
  num_ranges: u32,
  decay_all: u32,        // 1: every element decays (no range table bound)
  first: u32,            // adamw_step: its first element (the vec4 path's scalar tail starts at 4⌊n/4⌋)
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
  growth_interval: u32,  // loss_scale_update only
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

// clip_coefficient: one output, one input (loss_scale_update: both in place, and two more).
@group(0) @binding(1) var<storage, read_write> clip_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> scaler: array<f32>;
@group(0) @binding(4) var<storage, read_write> overflow: array<u32>;

// The loss scaler's overflow says to skip this step (a one-element clip never does).
fn step_skipped() -> bool {
  return arrayLength(&clip) > 1u && clip[1] != 0.0;
}

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
  let i = p.first + grid_index(wid, nwg, lid.x, WG);
  if (i >= p.n || step_skipped()) { return; }
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

// ---- adamw_step_vec4 ---------------------------------------------------------------------------
// vec4 views of bindings 1–4 (same buffers; only adamw_step_vec4 uses them).
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> v4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> grad4: array<vec4<f32>>;

override VEC4_WG: u32 = 256u;        // invocations per workgroup
override VEC4_PER_THREAD: u32 = 8u;  // vec4s per invocation
override NORM_PARTIALS: bool = false; // also write norm_partials
@group(0) @binding(8) var<storage, read_write> norm_partials: array<f32>;

// The first decay range whose end is > e (R when none): the ranges are sorted and disjoint, so
// their ends are sorted too.
fn first_decay_range_ending_after(e: u32) -> u32 {
  var lo = 0u;
  var hi = p.num_ranges;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (ranges[2u * mid + 1u] <= e) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo;
}

// The same for the lr-scale triples.
fn first_lr_range_ending_after(e: u32) -> u32 {
  var lo = 0u;
  var hi = p.num_lr_ranges;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (lr_ranges[3u * mid + 1u] <= e) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo;
}

@compute @workgroup_size(VEC4_WG)
fn adamw_step_vec4(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let nq = p.n / 4u; // whole vec4s; the wrapper gives the n % 4 tail to adamw_step
  let block = VEC4_WG * VEC4_PER_THREAD;
  let q0 = grid_workgroup(wid, nwg) * block;
  if (q0 >= nq || step_skipped()) { return; } // the grid's last row may be partial
  let q1 = min(q0 + block, nq);
  // The block's elements are [e0, e1). Its decay ranges are [d_lo, d_hi), its lr-scale triples
  // [s_lo, s_hi): those that start before e1 and end after e0. Usually the whole block is inside
  // one range or outside all of them, and one decision holds for all of it; otherwise each vec4
  // tests its four indices against the block's few ranges.
  let e0 = 4u * q0;
  let e1 = 4u * q1;
  var decay_mode = 1u; // 0: no element of the block decays, 1: every element does, 2: per lane
  var d_lo = 0u;
  var d_hi = 0u;
  if (p.decay_all == 0u) {
    d_lo = first_decay_range_ending_after(e0);
    d_hi = d_lo;
    while (d_hi < p.num_ranges && ranges[2u * d_hi] < e1) { d_hi += 1u; }
    decay_mode = 2u;
    if (d_hi == d_lo) { decay_mode = 0u; }
    else if (d_hi == d_lo + 1u && ranges[2u * d_lo] <= e0 && ranges[2u * d_lo + 1u] >= e1) { decay_mode = 1u; }
  }
  // Per lane exactly what adamw_step computes for that element: without a table the uniforms;
  // with one, 1 − lr·wd·s and step_size·s for the element's scale s (1 outside the table).
  var block_decay_factor = p.decay_factor;
  var block_step_size = p.step_size;
  var scale_per_lane = false;
  var s_lo = 0u;
  var s_hi = 0u;
  if (p.num_lr_ranges > 0u) {
    s_lo = first_lr_range_ending_after(e0);
    s_hi = s_lo;
    while (s_hi < p.num_lr_ranges && lr_ranges[3u * s_hi] < e1) { s_hi += 1u; }
    var s = 1.0;
    if (s_hi == s_lo + 1u && lr_ranges[3u * s_lo] <= e0 && lr_ranges[3u * s_lo + 1u] >= e1) { s = bitcast<f32>(lr_ranges[3u * s_lo + 2u]); }
    else if (s_hi > s_lo) { scale_per_lane = true; }
    block_decay_factor = 1.0 - p.lr_wd * s;
    block_step_size = p.step_size * s;
  }
  let c = clip[0];
  var sq = 0.0; // NORM_PARTIALS: Σ grad² over this invocation's vec4s
  for (var j = 0u; j < VEC4_PER_THREAD; j++) {
    let q = q0 + j * VEC4_WG + lid;
    if (q >= q1) { break; }
    let idx = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
    var dec = vec4<bool>(decay_mode == 1u);
    if (decay_mode == 2u) {
      for (var r = d_lo; r < d_hi; r++) {
        dec = dec | ((idx >= vec4<u32>(ranges[2u * r])) & (idx < vec4<u32>(ranges[2u * r + 1u])));
      }
    }
    var decay_factor = vec4<f32>(block_decay_factor);
    var step_size = vec4<f32>(block_step_size);
    if (scale_per_lane) {
      var s = vec4<f32>(1.0);
      for (var r = s_lo; r < s_hi; r++) {
        let inside = (idx >= vec4<u32>(lr_ranges[3u * r])) & (idx < vec4<u32>(lr_ranges[3u * r + 1u]));
        s = select(s, vec4<f32>(bitcast<f32>(lr_ranges[3u * r + 2u])), inside);
      }
      decay_factor = 1.0 - p.lr_wd * s;
      step_size = p.step_size * s;
    }
    let raw = grad4[q];
    if (NORM_PARTIALS) {
      let r2 = raw * raw;
      sq += (r2.x + r2.y) + (r2.z + r2.w);
    }
    let g = raw * c;
    var w = param4[q];
    w = select(w, w * decay_factor, dec);
    let mq = m4[q];
    let mi = mq + p.one_minus_beta1 * (g - mq);
    let vi = v4[q] * p.beta2 + p.one_minus_beta2 * g * g;
    let denom = sqrt(vi) / p.bc2_sqrt + p.eps;
    w -= step_size * (mi / denom);
    m4[q] = mi;
    v4[q] = vi;
    param4[q] = w;
  }
  if (NORM_PARTIALS) { norm_partials[grid_workgroup(wid, nwg) * VEC4_WG + lid] = sq; }
}

@compute @workgroup_size(1)
fn clip_coefficient() {
  // f32 throughout, as torch computes it on the gradients' device.
  clip_out[0] = min(1.0, p.max_norm / (norm_in[0] + 1e-6));
}

@compute @workgroup_size(1)
fn loss_scale_update() {
  let scale = scaler[0];
  let norm = norm_in[0] / scale;
  // The unscaled norm, as the reference and GradScaler (which checks the unscaled gradients) test it.
  let finite = (bitcast<u32>(norm) & 0x7fffffffu) < 0x7f800000u; // on the bits: NaN-safe
  norm_in[0] = norm;
  if (overflow[0] != 0u || !finite) {
    // NaN: an overflowed step has no meaningful norm (the packs clamp). Built at run time: WGSL has no NaN constant.
    norm_in[0] = bitcast<f32>(0x7fc00000u | (overflow[0] & 0u));
    clip_out[0] = 0.0;
    clip_out[1] = 1.0;
    scaler[0] = scale * 0.5;
    scaler[1] = 0.0;
    scaler[2] = 1.0;
    scaler[3] += 1.0;
  } else {
    var c = 1.0;
    if (p.max_norm > 0.0) { c = min(1.0, p.max_norm / (norm + 1e-6)); }
    clip_out[0] = c / scale;
    clip_out[1] = 0.0;
    let good = scaler[1] + 1.0;
    if (good >= f32(p.growth_interval)) {
      scaler[0] = scale * 2.0;
      scaler[1] = 0.0;
    } else {
      scaler[1] = good;
    }
    scaler[2] = 0.0;
  }
  overflow[0] = 0u;
}
