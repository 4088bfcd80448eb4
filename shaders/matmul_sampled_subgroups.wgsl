// matmul_vec4_sampled (matmul_sampled.wgsl) for adapters with subgroups: the same product, the
// same sums in the same order (the same bits), but each lane samples one of the block's four row
// quads of Aᵀ per k and subgroupBroadcast hands them round, instead of every lane sampling all
// four. The four are the same in every lane of the workgroup; a CPU adapter samples per lane all
// the same. A quarter of Aᵀ's samples: 1.06–1.25× faster on SwiftShader and on lavapipe
// (bench/README.md, the SwiftShader notes). WebGPU's subgroups hold at least 4 lanes, and a
// workgroup (LANES ≥ 4) keeps every lane to the end: lanes 0–3 of each subgroup are there to share.
// Bindings as matmul_vec4_sampled's; the operands are packed by matmul_sampled.wgsl's packs.

enable subgroups;

// #import common/sampled_operands

// Which of the block's row quads this lane samples (its subgroup lane, mod 4).
var<private> lane_quad: u32;

fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  // r[i] = min(r.x + i, M'/4 − 1): the block's quads, clamped as matmul_vec4_tile clamps them.
  let mine = sample_aT(k, min(r.x + lane_quad, (p.M + 3u) / 4u - 1u));
  return mat4x4(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
}

@compute @workgroup_size(LANES)
fn matmul_vec4_sampled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  lane_quad = lane % 4u;
  sampled_tile(wid, li);
}
