enable f16;
enable subgroups;
// matmul_vec4_f16 (matmul_f16.wgsl) for adapters with subgroups: Aᵀ's row quads shared across
// each subgroup (common/matmul_vec4_subgroups.wgsl). Same bindings, f16 operands (packed by
// matmul_f16.wgsl's packs) and bits as matmul_vec4_f16.

// #import common/matmul_vec4_subgroups

@group(0) @binding(2) var<storage, read_write> a4h: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> b4h: array<vec4<f16>>;

fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  return share_a_block(vec4<f32>(a4h[k * ((p.M + 3u) / 4u) + lane_row_quad(r)]));
}
fn load_bK(k: u32, q: u32) -> vec4<f32> { return vec4<f32>(b4h[k * (p.N / 4u) + q]); }

@compute @workgroup_size(LANES)
fn matmul_vec4_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  share_by_lane(lane);
  matmul_vec4_tile(wid, li);
}
