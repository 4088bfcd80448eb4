// matmul_vec4's outer product (common/matmul_vec4.wgsl) with its operands in rgba32float
// textures, read through a sampler: for CPU-emulated adapters (SwiftShader above all).
//
// Why a sampler. SwiftShader turns every storage-buffer load whose address depends on a runtime
// value into a per-lane gather with a branch per lane, and textureLoad pays for its bounds clamp;
// textureSampleLevel with nearest filtering and clamp-to-edge addressing fetches a texel per lane
// through its sampler routine, with neither. On Chromium's SwiftShader the same 16 × 8 block per
// invocation ran 1.4–1.7× faster this way than from storage buffers, in a page (1.2–1.35× on
// lavapipe; bench/README.md, the SwiftShader notes). The tuner times it beside the others on each
// adapter and keeps it only where it wins; it is SwiftShader's static guess.
//
//   matmul_vec4_sampled — Aᵀ [K, M'] as a texture of (M'/4) × K texels, B [K, N] as (N/4) × K:
//                    texel (q, k) holds the four elements of quad q at k. The sums are matmul_vec4's,
//                    in the same order: the same bits as 'vec4' on the same operands.
//   pack_operands — writes both textures in one dispatch (z = 0: A, z = 1: B), each invocation a
//                    quad at four consecutive k. An operand stored M- or N-major ('nn' and 'nt'
//                    A, 'nt' B; K % 4 == 0) is transposed on the way, as transpose_vec4 does (rows past
//                    M repeat row M − 1); one stored K-major ('tn' A, 'nn' and 'tn' B) is copied.
//
// A texture may be larger than its operand (ops/matmul.ts keeps one per power-of-two size class):
// texel centres are addressed in units of the texture's own size, and only the operand's texels
// are read. With power-of-two sizes, (r + 0.5) / size is exact in f32, so nearest sampling lands
// on the texel asked for.
//
// Bindings of matmul_vec4_sampled: 0 params {M,N,K}, 1 c, 2 Aᵀ (texture), 3 B (texture), 4 bias,
// 5 aux (as matmul.wgsl's), 6 the sampler (nearest, clamp to edge). Of pack_operands: 0 params
// {M,N,K} of the product, 1 a and 2 b as given to matmul(), 3 and 4 the textures they are packed into.

// #import common/matmul_vec4

@group(0) @binding(2) var a_texture: texture_2d<f32>;
@group(0) @binding(3) var b_texture: texture_2d<f32>;
@group(0) @binding(6) var nearest: sampler;

// 1 / each texture's size in texels: a texel's centre in normalised coordinates.
var<private> a_texel: vec2<f32>;
var<private> b_texel: vec2<f32>;

fn load_aT(k: u32, r: u32) -> vec4<f32> {
  return textureSampleLevel(a_texture, nearest, (vec2(f32(r), f32(k)) + 0.5) * a_texel, 0.0);
}
fn load_bK(k: u32, q: u32) -> vec4<f32> {
  return textureSampleLevel(b_texture, nearest, (vec2(f32(q), f32(k)) + 0.5) * b_texel, 0.0);
}

@compute @workgroup_size(LANES)
fn matmul_vec4_sampled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  a_texel = 1.0 / vec2<f32>(textureDimensions(a_texture));
  b_texel = 1.0 / vec2<f32>(textureDimensions(b_texture));
  matmul_vec4_tile(wid, li);
}

// ---- pack_operands ---------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> a_given: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> b_given: array<vec4<f32>>;
@group(0) @binding(3) var a_packed: texture_storage_2d<rgba32float, write>;
@group(0) @binding(4) var b_packed: texture_storage_2d<rgba32float, write>;

// Texels (q, k0 + j) = x_j for the j with k0 + j < K.
fn store_quads(t: texture_storage_2d<rgba32float, write>, q: u32, k0: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
  textureStore(t, vec2(q, k0), x0);
  if (k0 + 1u < p.K) { textureStore(t, vec2(q, k0 + 1u), x1); }
  if (k0 + 2u < p.K) { textureStore(t, vec2(q, k0 + 2u), x2); }
  if (k0 + 3u < p.K) { textureStore(t, vec2(q, k0 + 3u), x3); }
}

// The same four texels from rows x0..x3 of an M- or N-major operand (columns k0..k0 + 3).
fn store_transposed_quads(t: texture_storage_2d<rgba32float, write>, q: u32, k0: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
  store_quads(t, q, k0, vec4(x0.x, x1.x, x2.x, x3.x), vec4(x0.y, x1.y, x2.y, x3.y), vec4(x0.z, x1.z, x2.z, x3.z), vec4(x0.w, x1.w, x2.w, x3.w));
}

// Rows 4q..4q + 3 (clamped to `rows`) of an operand [rows, K] at column quad kq, as vec4 indices.
fn row_quads(rows: u32, q: u32, kq: u32) -> vec4<u32> {
  return min(vec4(q * 4u) + vec4(0u, 1u, 2u, 3u), vec4(rows - 1u)) * (p.K / 4u) + vec4(kq);
}

// Rows k0..k0 + 3 (clamped to K) of a K-major operand with `quads` vec4s per row, at quad q.
fn k_rows(quads: u32, q: u32, k0: u32) -> vec4<u32> {
  return min(vec4(k0) + vec4(0u, 1u, 2u, 3u), vec4(p.K - 1u)) * quads + vec4(q);
}

@compute @workgroup_size(8, 8)
fn pack_operands(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q = gid.x;
  let k0 = gid.y * 4u;
  if (k0 >= p.K) { return; }
  if (gid.z == 0u) {
    let mq = (p.M + 3u) / 4u;
    if (q >= mq) { return; }
    if (TRANS_A) { // 'tn': Aᵀ [K, M] as given (M % 4 == 0)
      let i = k_rows(mq, q, k0);
      store_quads(a_packed, q, k0, a_given[i.x], a_given[i.y], a_given[i.z], a_given[i.w]);
    } else { // A [M, K]
      let i = row_quads(p.M, q, gid.y);
      store_transposed_quads(a_packed, q, k0, a_given[i.x], a_given[i.y], a_given[i.z], a_given[i.w]);
    }
  } else {
    let nq = p.N / 4u;
    if (q >= nq) { return; }
    if (TRANS_B) { // 'nt': B [N, K], a Linear's weight (out, in)
      let i = row_quads(p.N, q, gid.y);
      store_transposed_quads(b_packed, q, k0, b_given[i.x], b_given[i.y], b_given[i.z], b_given[i.w]);
    } else { // B [K, N] as given
      let i = k_rows(nq, q, k0);
      store_quads(b_packed, q, k0, b_given[i.x], b_given[i.y], b_given[i.z], b_given[i.w]);
    }
  }
}
