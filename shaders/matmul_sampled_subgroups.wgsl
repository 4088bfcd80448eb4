// matmul_vec4_sampled (matmul_sampled.wgsl) for adapters with subgroups: Aᵀ's row quads shared
// across each subgroup (common/matmul_vec4_subgroups.wgsl), one sample per lane instead of four.
// Same bindings and bits as matmul_vec4_sampled; the operands are packed by matmul_sampled.wgsl's packs.

enable subgroups;

// #import common/matmul_vec4_subgroups
// #import common/sampled_operands

fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  return share_a_block(sample_aT(k, lane_row_quad(r)));
}

@compute @workgroup_size(LANES)
fn matmul_vec4_sampled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  share_by_lane(lane);
  sampled_tile(wid, li);
}
