enable f16;
// The mixed-precision matmul (adapters with `shader-f16`): operands rounded to f16, products
// summed in f32, stored in f32 through the same epilogue as matmul.wgsl's f32 kernels.
//
//   matmul_vec4_f16 — matmul_vec4's outer product (common/matmul_vec4.wgsl) reading f16 operands:
//                     Aᵀ [K, M'] and B [K, N] as vec4<f16> (half the bytes of the f32 kernel's).
//                     Each f16 is widened to f32 before its multiply: a product of two f16 is
//                     exact in f32, so the result is the f32 product of the f16-rounded operands.
//   matmul_tiled_f16 — matmul_tiled's shape for hardware GPUs: a 64×64 output tile per workgroup
//                     of 16×16 invocations, 4×4 per invocation, 16-deep K slices of both operands
//                     staged in workgroup memory as f16 (half the bytes of matmul_tiled's slices),
//                     loaded along M and N from the K-major packs (adjacent invocations, adjacent
//                     vec4s), widened to f32 for the multiply-adds.
//   pack_f16_transposed — out[K, M'] = f16(in[M, K]ᵀ), K % 4 == 0, rows past M repeat row M − 1
//                     (transpose_vec4's geometry): the 'nn' and 'nt' operands.
//   pack_f16        — out[i] = f16(in[i]) over n/4 vec4s (n % 4 == 0): operands already K-major.
//
// Overflow. A value outside f16's finite range (|x| > 65504, inf, NaN) is stored clamped to
// ±65504 and sets `overflow` to 1 (never cleared here): the loss scaler (adamw.wgsl,
// loss_scale_update) reads it with the gradient norm, skips that optimiser step, lowers the
// scale and clears it. The test is on the bits, so NaN is caught however the compiler treats
// floating-point comparisons.
//
// Bindings of matmul_vec4_f16: as matmul.wgsl's (0 params {M,N,K}, 1 c, 2 a, 3 b, 4 bias, 5 aux;
// a and b hold f16 pairs). Of the packs: 0 params {M, _, K} (pack_f16: M = n/4 vec4s), 1 out (f16),
// 2 in (f32), 3 overflow (u32).

// #import common/matmul_vec4

@group(0) @binding(2) var<storage, read_write> a4h: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> b4h: array<vec4<f16>>;

// (matmul_f16_subgroups.wgsl's matmul_vec4_f16, on adapters with subgroups, loads one quad per lane and shares them.)
fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  let row = k * ((p.M + 3u) / 4u);
  return mat4x4(vec4<f32>(a4h[row + r.x]), vec4<f32>(a4h[row + r.y]), vec4<f32>(a4h[row + r.z]), vec4<f32>(a4h[row + r.w]));
}
fn load_bK(k: u32, q: u32) -> vec4<f32> { return vec4<f32>(b4h[k * (p.N / 4u) + q]); }

@compute @workgroup_size(LANES)
fn matmul_vec4_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  matmul_vec4_tile(wid, li);
}

const TILE_K = 16u;
// [TILE_K][16] vec4s: slice kk of the tile, four consecutive rows (As) or columns (Bs) per vec4.
var<workgroup> As: array<vec4<f16>, 256>;
var<workgroup> Bs: array<vec4<f16>, 256>;

@compute @workgroup_size(16, 16)
fn matmul_tiled_f16(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let mq = (p.M + 3u) / 4u; // Aᵀ's row length in vec4s
  let nq = p.N / 4u;
  let mq_tile = wid.y * 16u; // the tile's first row quad and column quad
  let nq_tile = wid.x * 16u;
  let flat = lid.y * 16u + lid.x;
  let kk_load = flat / 16u; // each invocation loads quad (flat % 16) of slice row kk_load
  let q_load = flat % 16u;
  var acc = array<vec4<f32>, 4>();
  for (var k0 = 0u; k0 < p.K; k0 += TILE_K) {
    let k = k0 + kk_load;
    var av = vec4<f16>();
    var bv = vec4<f16>();
    if (k < p.K && mq_tile + q_load < mq) { av = a4h[k * mq + mq_tile + q_load]; }
    if (k < p.K && nq_tile + q_load < nq) { bv = b4h[k * nq + nq_tile + q_load]; }
    As[flat] = av;
    Bs[flat] = bv;
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      let a = vec4<f32>(As[kk * 16u + lid.y]);
      let b = vec4<f32>(Bs[kk * 16u + lid.x]);
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  let m = (mq_tile + lid.y) * 4u;
  for (var i = 0u; i < 4u; i++) { store_c4(m + i, nq_tile + lid.x, acc[i]); }
}

// ---- packs -----------------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> packed: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read_write> unpacked: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> overflow: atomic<u32>;

const F16_MAX = 65504.0;
const F16_MAX_BITS = 0x477fe000u; // bitcast<u32>(65504.0)

fn to_f16(x: vec4<f32>) -> vec4<f16> {
  let magnitude = bitcast<vec4<u32>>(x) & vec4(0x7fffffffu);
  if (any(magnitude > vec4(F16_MAX_BITS))) { atomicOr(&overflow, 1u); }
  return vec4<f16>(clamp(x, vec4(-F16_MAX), vec4(F16_MAX)));
}

@compute @workgroup_size(8, 8)
fn pack_f16_transposed(@builtin(global_invocation_id) gid: vec3<u32>) {
  let kq = p.K / 4u;
  let mq = (p.M + 3u) / 4u;
  let bk = gid.x;
  let bm = gid.y;
  if (bk >= kq || bm >= mq) { return; }
  let x0 = unpacked[min(bm * 4u + 0u, p.M - 1u) * kq + bk];
  let x1 = unpacked[min(bm * 4u + 1u, p.M - 1u) * kq + bk];
  let x2 = unpacked[min(bm * 4u + 2u, p.M - 1u) * kq + bk];
  let x3 = unpacked[min(bm * 4u + 3u, p.M - 1u) * kq + bk];
  packed[(bk * 4u + 0u) * mq + bm] = to_f16(vec4(x0.x, x1.x, x2.x, x3.x));
  packed[(bk * 4u + 1u) * mq + bm] = to_f16(vec4(x0.y, x1.y, x2.y, x3.y));
  packed[(bk * 4u + 2u) * mq + bm] = to_f16(vec4(x0.z, x1.z, x2.z, x3.z));
  packed[(bk * 4u + 3u) * mq + bm] = to_f16(vec4(x0.w, x1.w, x2.w, x3.w));
}

// #import common/grid

@compute @workgroup_size(256)
fn pack_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = grid_index(wid, nwg, li, 256u);
  if (i >= p.M) { return; }
  packed[i] = to_f16(unpacked[i]);
}
