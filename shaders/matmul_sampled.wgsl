// matmul_vec4's outer product (common/matmul_vec4.wgsl) with its operands in rgba32float
// textures, read through a sampler: for CPU-emulated adapters (SwiftShader above all).
//
// Why a sampler. SwiftShader turns every storage-buffer load whose address depends on a runtime
// value into a per-lane gather with a branch per lane, and textureLoad pays for its bounds clamp;
// textureSampleLevel with nearest filtering fetches a texel per lane through its sampler routine,
// with neither. On Chromium's SwiftShader the same 16 × 8 block per
// invocation ran 1.4–1.7× faster this way than from storage buffers, in a page (1.2–1.35× on
// lavapipe; bench/README.md, the SwiftShader notes). The tuner times it beside the others on each
// adapter and keeps it only where it wins; it is SwiftShader's static guess.
//
//   matmul_vec4_sampled — Aᵀ [K, M'] and B [K, N], K-major as matmul_vec4 reads them, each flat in
//                    its texture: element quad j (Aᵀ's row quad r at k: j = k·M'/4 + r; B's column
//                    quad q at k: j = k·N/4 + q) is texel (j % W, j / W) of a texture W texels wide
//                    (a power of two). The sums are matmul_vec4's, in the same order: the same bits
//                    as 'vec4' on the same operands.
//   pack_operands — the operands stored M- or N-major ('nn' and 'nt' A, 'nt' B; K % 4 == 0),
//                    transposed into their textures in one dispatch (z = 0: A, z = 1: B), each
//                    invocation a quad at four consecutive k, as transpose_vec4 does (rows past M
//                    repeat row M − 1). An operand stored K-major ('tn' A, 'nn' and 'tn' B) is
//                    already its texture's contents, flat: ops/matmul.ts copies it in with
//                    copyBufferToTexture: a copy of bytes, far cheaper on SwiftShader than any pass of ours.
//
// Texel j is sampled at (j + 0.5) · (1/W, 1/(W·H)) (load_aT below): one multiply per coordinate
// (integer addressing, j % W and j / W converted to f32, cost the product 7–15 % on SwiftShader).
//
// Bindings of matmul_vec4_sampled: 0 params {M,N,K}, 1 c, 2 Aᵀ (texture), 3 B (texture), 4 bias,
// 5 aux (as matmul.wgsl's), 6 the sampler (nearest; repeat along u, clamp to edge along v). Of pack_operands: 0 params
// {M,N,K} of the product, 1 a and 2 b as given to matmul(), 3 and 4 the textures they are packed into.

// #import common/matmul_vec4

@group(0) @binding(2) var a_texture: texture_2d<f32>;
@group(0) @binding(3) var b_texture: texture_2d<f32>;
@group(0) @binding(6) var nearest: sampler;

// Where texel j of a flat texture lies: column j & mask, row j >> shift (W = mask + 1 = 2^shift).
// The shift is the exponent of f32(W): countTrailingZeros made pack_operands 10–20 % slower on SwiftShader.
struct Flat { mask: u32, shift: u32 }
fn flat_of(t: texture_storage_2d<rgba32float, write>) -> Flat {
  let width = textureDimensions(t).x;
  return Flat(width - 1u, (bitcast<u32>(f32(width)) >> 23u) - 127u);
}

// Texel j of a flat W × H texture is sampled at (j + 0.5) · (1/W, 1/(W·H)): the sampler repeats
// along u, which takes j % W, and nearest filtering floors v·H = (j + 0.5)/W to j / W. Exact in
// f32 for j < 2^22 (sampledApplies); one multiply per coordinate, no integer arithmetic.
var<private> a_scale: vec2<f32>;
var<private> b_scale: vec2<f32>;

fn flat_scale(size: vec2<u32>) -> vec2<f32> {
  return 1.0 / vec2(f32(size.x), f32(size.x * size.y));
}

fn load_aT(k: u32, r: u32) -> vec4<f32> {
  return textureSampleLevel(a_texture, nearest, (f32(k) * f32((p.M + 3u) / 4u) + f32(r) + 0.5) * a_scale, 0.0);
}
fn load_bK(k: u32, q: u32) -> vec4<f32> {
  return textureSampleLevel(b_texture, nearest, (f32(k) * f32(p.N / 4u) + f32(q) + 0.5) * b_scale, 0.0);
}

@compute @workgroup_size(LANES)
fn matmul_vec4_sampled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  a_scale = flat_scale(textureDimensions(a_texture));
  b_scale = flat_scale(textureDimensions(b_texture));
  matmul_vec4_tile(wid, li);
}

// ---- pack_operands ---------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> a_given: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> b_given: array<vec4<f32>>;
@group(0) @binding(3) var a_packed: texture_storage_2d<rgba32float, write>;
@group(0) @binding(4) var b_packed: texture_storage_2d<rgba32float, write>;

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

// Rows 4q..4q + 3 (clamped to `rows`) of an operand [rows, K] at column quad kq, as vec4 indices.
fn row_quads(rows: u32, q: u32, kq: u32) -> vec4<u32> {
  return min(vec4(q * 4u) + vec4(0u, 1u, 2u, 3u), vec4(rows - 1u)) * (p.K / 4u) + vec4(kq);
}

@compute @workgroup_size(8, 8)
fn pack_operands(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q = gid.x;
  let kq = gid.y;
  if (kq >= p.K / 4u) { return; }
  if (gid.z == 0u) { // A [M, K] ('nn', 'nt')
    let mq = (p.M + 3u) / 4u;
    if (q >= mq) { return; }
    let i = row_quads(p.M, q, kq);
    store_transposed_quads(a_packed, mq, q, 4u * kq, a_given[i.x], a_given[i.y], a_given[i.z], a_given[i.w]);
  } else { // B [N, K] ('nt'), a Linear's weight (out, in)
    let nq = p.N / 4u;
    if (q >= nq) { return; }
    let i = row_quads(p.N, q, kq);
    store_transposed_quads(b_packed, nq, q, 4u * kq, b_given[i.x], b_given[i.y], b_given[i.z], b_given[i.w]);
  }
}
