// The operands of matmul_vec4_sampled (matmul_sampled.wgsl, matmul_sampled_subgroups.wgsl): Aᵀ
// [K, M'] and B [K, N] flat in rgba32float textures, read through a nearest sampler (see
// matmul_sampled.wgsl's header), and the tile those two entry points run. The importing file
// defines load_a_block (common/matmul_vec4.wgsl) from sample_aT.
// Bindings: 2 Aᵀ (texture), 3 B (texture), 6 the sampler (nearest; repeat along u, clamp to edge along v).

// #import common/matmul_vec4

@group(0) @binding(2) var a_texture: texture_2d<f32>;
@group(0) @binding(3) var b_texture: texture_2d<f32>;
@group(0) @binding(6) var nearest: sampler;

// Texel j of a flat W × H texture is sampled at (j + 0.5) · (1/W, 1/(W·H)): the sampler repeats
// along u, which takes j % W, and nearest filtering floors v·H = (j + 0.5)/W to j / W. Exact in
// f32 for j < 2^22 (sampledApplies); one multiply per coordinate, no integer arithmetic.
var<private> a_scale: vec2<f32>;
var<private> b_scale: vec2<f32>;

fn flat_scale(size: vec2<u32>) -> vec2<f32> {
  return 1.0 / vec2(f32(size.x), f32(size.x * size.y));
}

// Row quad r of Aᵀ at k.
fn sample_aT(k: u32, r: u32) -> vec4<f32> {
  return textureSampleLevel(a_texture, nearest, (f32(k) * f32((p.M + 3u) / 4u) + f32(r) + 0.5) * a_scale, 0.0);
}
fn load_bK(k: u32, q: u32) -> vec4<f32> {
  return textureSampleLevel(b_texture, nearest, (f32(k) * f32(p.N / 4u) + f32(q) + 0.5) * b_scale, 0.0);
}

// The workgroup's tile (matmul_vec4_tile), with the textures' scales set first.
fn sampled_tile(wid: vec3<u32>, li: u32) {
  a_scale = flat_scale(textureDimensions(a_texture));
  b_scale = flat_scale(textureDimensions(b_texture));
  matmul_vec4_tile(wid, li);
}
