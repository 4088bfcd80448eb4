// matmul_vec4 (matmul.wgsl) for adapters with subgroups: the block's 16 rows of op(A) at each k
// loaded a part per lane and shared across the subgroup by subgroupBroadcast
// (common/matmul_vec4_subgroups.wgsl). Same bindings, sums and bits as matmul_vec4. B is K-major,
// [K, N] ('nt': Bᵀ written first by matmul.wgsl's transpose_vec4). A is Aᵀ [K, M'] ('tn', or
// transposed first by the wrapper), or, with A_ALONG_K, A [M, K] as the caller stores it ('nn',
// 'nt' on subgroups of 8 lanes): the activations are then never transposed.
// On lavapipe a vec4 load is four per-lane gathers, two scalars two: on subgroups of exactly 8
// lanes (EIGHT_LANES, the workgroup's own) each lane loads two of the 16 values, not four, and the
// products ran 1.07–1.11× faster ('tn', Aᵀ in pairs) and up to 1.15× (A along K, which also saves
// the transpose). Along K with four lanes reading all 16 rows ran 1.1× slower than transposing
// first, and four k of vec4s held in registers 1.5× slower.

enable subgroups;

// #import common/matmul_vec4_subgroups

// vec2s: Aᵀ's row pairs, or (A_ALONG_K) two elements of a row of A.
@group(0) @binding(2) var<storage, read_write> a2: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> b4: array<vec4<f32>>;

// The workgroup is one subgroup of exactly 8 lanes (the wrapper's subgroupsOfEight).
override EIGHT_LANES: bool = false;
// A is A [M, K], read along K ('nn', 'nt'; needs EIGHT_LANES).
override A_ALONG_K: bool = false;

// This lane in its subgroup (0–7 with EIGHT_LANES), for the pairs it loads.
var<private> lane8: u32;

// The block's row quads r at k, as columns.
//   A_ALONG_K: lanes 0–3 read row lane mod 4 of quads 0 and 1, lanes 4–7 of quads 2 and 3.
//   EIGHT_LANES: lane l reads Aᵀ's pair l of the block's 16 values at k (quad i: lanes 2i, 2i + 1).
//   Otherwise lanes 0–3 read a quad each (lane_row_quad), shared by share_a_block.
fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  if (A_ALONG_K) {
    let hi = lane8 >= 4u;
    let x0 = a_along_k(4u * select(r.x, r.z, hi) + lane_quad, k);
    let x1 = a_along_k(4u * select(r.y, r.w, hi) + lane_quad, k);
    return mat4x4(share_quad(x0, 0u), share_quad(x1, 0u), share_quad(x0, 4u), share_quad(x1, 4u));
  }
  let mp = 2u * ((p.M + 3u) / 4u); // Aᵀ's row length in vec2s
  if (EIGHT_LANES) {
    let x = a2[k * mp + min(2u * r.x + lane8, mp - 1u)]; // pairs past M' read clamped, never stored
    return mat4x4(vec4(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u)), vec4(subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u)),
                  vec4(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u)), vec4(subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u)));
  }
  let at = k * mp + 2u * lane_row_quad(r);
  return share_a_block(vec4(a2[at], a2[at + 1u]));
}

// Element k of row m of A [M, K], m clamped to M − 1 (rows past M are never stored). K % 4 == 0
// (vec4Aligned): the component, k % 2, is the same in every lane.
fn a_along_k(m: u32, k: u32) -> f32 {
  return a2[min(m, p.M - 1u) * (p.K / 2u) + k / 2u][k % 2u];
}

// Lanes first..first+3's x (first = 0 or 4): four consecutive rows' elements of A at one k.
fn share_quad(x: f32, first: u32) -> vec4<f32> {
  if (first == 0u) {
    return vec4(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u));
  }
  return vec4(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
}
fn load_bK(k: u32, q: u32) -> vec4<f32> { return b4[k * (p.N / 4u) + q]; }

@compute @workgroup_size(LANES)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  share_by_lane(lane);
  lane8 = lane % 8u;
  matmul_vec4_tile(wid, li);
}
