// matmul_vec4 (matmul.wgsl) for adapters with subgroups: Aᵀ's row quads shared across each
// subgroup (common/matmul_vec4_subgroups.wgsl). Same bindings, operands (Aᵀ [K, M'] and B [K, N],
// transposed by matmul.wgsl's transposes where stored otherwise) and bits as matmul_vec4.

enable subgroups;

// #import common/matmul_vec4_subgroups

@group(0) @binding(2) var<storage, read_write> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b4: array<vec4<f32>>;

fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  return share_a_block(a4[k * ((p.M + 3u) / 4u) + lane_row_quad(r)]);
}
fn load_bK(k: u32, q: u32) -> vec4<f32> { return b4[k * (p.N / 4u) + q]; }

@compute @workgroup_size(LANES)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  share_by_lane(lane);
  matmul_vec4_tile(wid, li);
}
