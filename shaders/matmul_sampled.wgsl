// matmul_vec4's outer product (common/matmul_vec4.wgsl) with its operands in rgba32float
// textures, read through a sampler: for CPU-emulated adapters (SwiftShader above all).
//
// Why a sampler. SwiftShader turns every storage-buffer load whose address depends on a runtime
// value into a per-lane gather with a branch per lane, and textureLoad pays for its bounds clamp;
// textureSampleLevel with nearest filtering fetches a texel per lane through its sampler routine,
// with neither. On Chromium's SwiftShader the same 16 × 8 block per
// invocation ran 1.4–1.7× faster this way than from storage buffers, in a page (1.2–1.35× on
// lavapipe; bench/README.md, the SwiftShader notes). The tuner times it beside the others on each
// adapter and keeps it only where it wins; it is SwiftShader's static guess. On adapters with
// subgroups the product is matmul_sampled_subgroups.wgsl's instead: the same sums, a quarter of
// the samples of Aᵀ (common/matmul_vec4_subgroups.wgsl).
//
//   matmul_vec4_sampled — Aᵀ [K, M'] and B [K, N], K-major as matmul_vec4 reads them, each flat in
//                    its texture: element quad j (Aᵀ's row quad r at k: j = k·M'/4 + r; B's column
//                    quad q at k: j = k·N/4 + q) is texel (j % W, j / W) of a texture W texels wide
//                    (a power of two). The sums are matmul_vec4's, in the same order: the same bits
//                    as 'vec4' on the same operands.
//   pack_operands, pack_a — the operands stored M- or N-major ('nt' A and B, 'nn' A; K % 4 == 0),
//                    transposed into their textures in one dispatch (pack_operands: z = 0 A, z = 1 B),
//                    each invocation a quad at four consecutive k, as transpose_vec4 does (rows past M
//                    repeat row M − 1). They read the operands from textures too: ops/matmul.ts copies
//                    each operand into a texture flat, as it is stored (copyBufferToTexture, a copy of
//                    bytes, far cheaper on SwiftShader than any pass of ours). An operand stored
//                    K-major ('tn' A, 'nn' and 'tn' B) is already its texture's contents: it is
//                    copied straight into the texture the product reads.
//
// Texel j is sampled at (j + 0.5) · (1/W, 1/(W·H)) (common/sampled_operands.wgsl): one multiply per coordinate
// (integer addressing, j % W and j / W converted to f32, cost the product 7–15 % on SwiftShader).
//
// Bindings of matmul_vec4_sampled: 0 params {M,N,K}, 1 c, 2 Aᵀ (texture), 3 B (texture), 4 bias,
// 5 aux (as matmul.wgsl's), 6 the sampler (nearest; repeat along u, clamp to edge along v). Of the packs: 0 params
// {M,N,K} of the product, 1 A and 2 B as given to matmul() (flat textures), 3 and 4 the textures
// they are packed into, 6 the sampler.

// #import common/sampled_operands

// Where texel j of a flat texture lies: column j & mask, row j >> shift (W = mask + 1 = 2^shift).
// The shift is the exponent of f32(W): countTrailingZeros made pack_operands 10–20 % slower on SwiftShader.
struct Flat { mask: u32, shift: u32 }
fn flat_of(t: texture_storage_2d<rgba32float, write>) -> Flat {
  let width = textureDimensions(t).x;
  return Flat(width - 1u, (bitcast<u32>(f32(width)) >> 23u) - 127u);
}

// The block's four row quads of Aᵀ at k, one sample each.
fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  return mat4x4(sample_aT(k, r.x), sample_aT(k, r.y), sample_aT(k, r.z), sample_aT(k, r.w));
}

@compute @workgroup_size(LANES)
fn matmul_vec4_sampled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  sampled_tile(wid, li);
}

// ---- pack_operands, pack_a -------------------------------------------------------------------
// The given operands, copied flat into textures as they are stored (A [M, K], B [N, K]: texel
// m·K/4 + kq holds row m's columns 4kq..4kq + 3), read through the sampler as the product reads
// its own: reading them from storage buffers made this pass 1.5–3× slower on SwiftShader (the
// per-lane gathers of matmul_sampled's header), and the copy in costs next to nothing.
@group(0) @binding(1) var a_given: texture_2d<f32>;
@group(0) @binding(2) var b_given: texture_2d<f32>;
@group(0) @binding(3) var a_packed: texture_storage_2d<rgba32float, write>;
@group(0) @binding(4) var b_packed: texture_storage_2d<rgba32float, write>;

// Texel j of a flat given texture (t its texture, scale its flat_scale).
fn given_at(t: texture_2d<f32>, scale: vec2<f32>, j: u32) -> vec4<f32> {
  return textureSampleLevel(t, nearest, (f32(j) + 0.5) * scale, 0.0);
}

// Texels (q, k0..k0 + 3) of a K-major [K, quads·4] flat in t: the columns of rows x0..x3 of an
// M- or N-major operand at k0..k0 + 3 (K % 4 == 0).
fn store_transposed_quads(t: texture_storage_2d<rgba32float, write>, quads: u32, q: u32, k0: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
  let f = flat_of(t);
  var j = k0 * quads + q;
  textureStore(t, vec2(j & f.mask, j >> f.shift), vec4(x0.x, x1.x, x2.x, x3.x));
  j += quads;
  textureStore(t, vec2(j & f.mask, j >> f.shift), vec4(x0.y, x1.y, x2.y, x3.y));
  j += quads;
  textureStore(t, vec2(j & f.mask, j >> f.shift), vec4(x0.z, x1.z, x2.z, x3.z));
  j += quads;
  textureStore(t, vec2(j & f.mask, j >> f.shift), vec4(x0.w, x1.w, x2.w, x3.w));
}

// Rows 4q..4q + 3 (clamped to `rows`) of a given [rows, K] at column quad kq, as texel indices.
fn row_quads(rows: u32, q: u32, kq: u32) -> vec4<u32> {
  return min(vec4(q * 4u) + vec4(0u, 1u, 2u, 3u), vec4(rows - 1u)) * (p.K / 4u) + vec4(kq);
}

// Row quad q of a given [rows, K] at column quad kq, transposed into `packed` (quads row quads per k).
fn pack_quad(given: texture_2d<f32>, packed: texture_storage_2d<rgba32float, write>, rows: u32, quads: u32, q: u32, kq: u32) {
  let scale = flat_scale(textureDimensions(given));
  let i = row_quads(rows, q, kq);
  store_transposed_quads(packed, quads, q, 4u * kq, given_at(given, scale, i.x), given_at(given, scale, i.y), given_at(given, scale, i.z), given_at(given, scale, i.w));
}

// A's row quad q at column quad kq (invocations past A's quads or K do nothing).
fn pack_a_quad(q: u32, kq: u32) {
  if (kq < p.K / 4u && q < (p.M + 3u) / 4u) { pack_quad(a_given, a_packed, p.M, (p.M + 3u) / 4u, q, kq); }
}

// 'nt': A [M, K] (z = 0) and B [N, K] (z = 1), a Linear's weight (out, in), in one dispatch.
@compute @workgroup_size(8, 8)
fn pack_operands(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.z == 0u) {
    pack_a_quad(gid.x, gid.y);
  } else if (gid.y < p.K / 4u && gid.x < p.N / 4u) {
    pack_quad(b_given, b_packed, p.N, p.N / 4u, gid.x, gid.y);
  }
}

// 'nn': A [M, K] only (B [K, N] is copied in as it is).
@compute @workgroup_size(8, 8)
fn pack_a(@builtin(global_invocation_id) gid: vec3<u32>) {
  pack_a_quad(gid.x, gid.y);
}
