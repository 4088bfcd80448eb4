// Attention's interface, shared by its two variants (attention.wgsl, attention_subgroups.wgsl):
// the Params uniform, the bindings of the four entry points, which both files implement with
// the same bindings, and the indexing of the tensors (see attention.wgsl's header for the maths).
//
//   B batch, T tokens, H heads, hd head width, D = H·hd.
//   qkv [B,T,3D] (q | k | v, head h = channels h·hd..), probs and dscores [B,H,T,T], out and dout [B,T,D].
//   Binding 0 = Params {B, T, H, hd, scale}; storage, outputs first:
//   attention_scores          1 probs (=)    2 qkv
//   attention_weighted_sum    1 out (=)      2 probs    3 qkv
//   attention_backward_scores 1 dscores (=)  2 dout     3 qkv    4 probs
//   attention_backward_qkv    1 dqkv (=)     2 dscores  3 probs  4 qkv   5 dout
//
// Use: `// #import common/attention_io` (after any `enable` and `diagnostic` directive). Each
// entry point binds only the variables it uses (layout 'auto'), so the four kernels'
// declarations share binding numbers.

struct Params { B: u32, T: u32, H: u32, hd: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;

// attention_scores
@group(0) @binding(1) var<storage, read_write> s_probs: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_qkv: array<f32>;

// attention_weighted_sum
@group(0) @binding(1) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> w_probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> w_qkv: array<f32>;

// attention_backward_scores
@group(0) @binding(1) var<storage, read_write> bs_dscores: array<f32>;
@group(0) @binding(2) var<storage, read_write> bs_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> bs_qkv: array<f32>;
@group(0) @binding(4) var<storage, read_write> bs_probs: array<f32>;

// attention_backward_qkv
@group(0) @binding(1) var<storage, read_write> bq_dqkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> bq_dscores: array<f32>;
@group(0) @binding(3) var<storage, read_write> bq_probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> bq_qkv: array<f32>;
@group(0) @binding(5) var<storage, read_write> bq_dout: array<f32>;

/** Element (b, t, part·D + h·hd + d) of qkv; part 0 = q, 1 = k, 2 = v. */
fn qkv_at(b: u32, t: u32, part: u32, h: u32, d: u32) -> u32 {
  let D = p.H * p.hd;
  return (b * p.T + t) * 3u * D + part * D + h * p.hd + d;
}

/** Element (b, t, h·hd + d) of a [B, T, D] tensor (out, dout). */
fn btd_at(b: u32, t: u32, h: u32, d: u32) -> u32 {
  return (b * p.T + t) * p.H * p.hd + h * p.hd + d;
}

/** Element (b, h, i, j) of a [B, H, T, T] tensor (probs, dscores). */
fn bhtt_at(b: u32, h: u32, i: u32, j: u32) -> u32 {
  return ((b * p.H + h) * p.T + i) * p.T + j;
}
