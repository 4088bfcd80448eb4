// matmul_vec4 (matmul.wgsl) for adapters with subgroups: the block's rows of op(A) loaded a
// part per lane and shared across each subgroup (common/matmul_vec4_subgroups.wgsl). Same
// bindings, sums and bits as matmul_vec4; B is K-major, [K, N] ('nt': Bᵀ written first by
// matmul.wgsl's transpose_vec4). A is Aᵀ [K, M'] ('tn', or transposed first by the wrapper), or,
// with A_ALONG_K, A [M, K] as the caller stores it ('nn', 'nt' on subgroups of 8 lanes): the
// activations are then never transposed.

enable subgroups;

// #import common/matmul_vec4_subgroups

@group(0) @binding(2) var<storage, read_write> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b4: array<vec4<f32>>;

// 'nn' and 'nt' on subgroups of exactly 8 lanes (the wrapper's choice): A [M, K] read along K.
override A_ALONG_K: bool = false;

// The block's row quads r at k. From Aᵀ [K, M']: this lane's quad, shared. With A_ALONG_K, from
// A [M, K]: lanes 0–3 read row j = lane mod 4 of quads 0 and 1, lanes 4–7 of quads 2 and 3, and
// the lanes' elements are shared. Two scalar loads a lane per k where the K-major form loads a
// vec4: on lavapipe the products ran as fast, without transposing A (M·K) first; four lanes
// reading all four quads ran 1.1× slower, vec4s along K held for four k 1.5× slower.
fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  if (A_ALONG_K) {
    let hi = lane_half == 1u;
    let x0 = a_along_k(4u * select(r.x, r.z, hi) + lane_quad, k);
    let x1 = a_along_k(4u * select(r.y, r.w, hi) + lane_quad, k);
    return mat4x4(share_quad(x0), share_quad(x1), share_quad_hi(x0), share_quad_hi(x1));
  }
  return share_a_block(a4[k * ((p.M + 3u) / 4u) + lane_row_quad(r)]);
}

// Which half of the subgroup this lane is in (lanes 0–3: 0, lanes 4–7: 1).
var<private> lane_half: u32;

// Element k of row m of A [M, K], m clamped to M − 1 (rows past M are never stored). K % 4 == 0
// (vec4Aligned): the component, k % 4, is the same in every lane.
fn a_along_k(m: u32, k: u32) -> f32 {
  return a4[min(m, p.M - 1u) * (p.K / 4u) + k / 4u][k % 4u];
}

// Lanes 0–3's x, and lanes 4–7's: four consecutive rows' elements of A at one k.
fn share_quad(x: f32) -> vec4<f32> {
  return vec4(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u));
}
fn share_quad_hi(x: f32) -> vec4<f32> {
  return vec4(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
}
fn load_bK(k: u32, q: u32) -> vec4<f32> { return b4[k * (p.N / 4u) + q]; }

@compute @workgroup_size(LANES)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  share_by_lane(lane);
  lane_half = (lane / 4u) % 2u;
  matmul_vec4_tile(wid, li);
}
