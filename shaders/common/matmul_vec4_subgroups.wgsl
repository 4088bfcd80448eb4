// matmul_vec4's outer product (common/matmul_vec4.wgsl) with Aᵀ's row quads shared across each
// subgroup, for the importing files that `enable subgroups` (matmul_subgroups.wgsl,
// matmul_f16_subgroups.wgsl, matmul_sampled_subgroups.wgsl). The block's four row quads of Aᵀ
// at k are the same in every lane of a workgroup, yet without subgroups every lane loads all
// four: here each lane loads one (lane_row_quad) and share_a_block hands them round with
// subgroupBroadcast. The same sums in the same order: the same bits. A quarter of Aᵀ's loads:
// 1.3× faster products on lavapipe, which does not share loads of an address that is the same in
// every lane, and 1.06–1.25× on SwiftShader's samples (bench/README.md). Used where subgroups have
// at most LANES lanes (ops/matmul.ts vec4ProductShader): a workgroup is then one or two whole
// subgroups of at least 4 lanes, and it keeps every lane to the end, so lanes 0–3 are there to share.
// The importing file defines load_a_block from lane_row_quad and share_a_block, and load_bK;
// matmul_subgroups.wgsl, on subgroups of exactly 8 lanes, loads and shares the block its own way
// (two values a lane: Aᵀ's pairs, or A along K).

// #import common/matmul_vec4

// Which of the block's row quads this lane loads (its subgroup lane, mod 4).
var<private> lane_quad: u32;

// This lane's row quad of the block whose quads are r: min(r.x + lane_quad, M'/4 − 1), which is
// r[lane_quad] (matmul_vec4_tile clamps the quads so).
fn lane_row_quad(r: vec4<u32>) -> u32 {
  return min(r.x + lane_quad, (p.M + 3u) / 4u - 1u);
}

// The block's four row quads, from lanes 0–3's.
fn share_a_block(mine: vec4<f32>) -> mat4x4<f32> {
  return mat4x4(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
}

// Sets this lane's quad (`lane`: its subgroup_invocation_id); call before matmul_vec4_tile.
fn share_by_lane(lane: u32) {
  lane_quad = lane % 4u;
}
