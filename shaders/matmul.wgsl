// Matrix multiply with fused bias, in the three layouts a Linear layer's forward and backward need.
//
//   C[M,N] (=|+=) op(A) · op(B) (+ bias[N])
//   A is [M,K] row-major, or [K,M] when TRANS_A (so op(A) = Aᵀ: dW = dYᵀ·X)
//   B is [K,N] row-major, or [N,K] when TRANS_B (so op(B) = Bᵀ: Y = X·Wᵀ with W (out,in))
//
// Bindings: 0 params {M,N,K}, 1 c (out), 2 a, 3 b, 4 bias (bound even when unused).
// ACCUMULATE: c += result (parameter gradients); otherwise c = result (activations).
//
// Two variants of the same product; both are verified, the fastest is chosen per adapter:
//   matmul_tiled   — 64×64 output tile per workgroup, 16-deep K slices staged in workgroup
//                    memory, 4×4 register block per thread (what wins on real GPUs);
//   matmul_blocked — the same 4×4 register block per thread read straight from storage, no
//                    barriers (what wins on CPU-emulated adapters, where barriers are costly).
// bias_backward: dbias[N] (=|+=) Σ_m dy[m, n], one thread per column, rows in order (deterministic).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

struct Params { M: u32, N: u32, K: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;

fn load_a(m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  if (TRANS_A) { return a[k * p.M + m]; }
  return a[m * p.K + k];
}

fn load_b(k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) { return 0.0; }
  if (TRANS_B) { return b[n * p.K + k]; }
  return b[k * p.N + n];
}

fn store_c(m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  let i = m * p.N + n;
  var x = v;
  if (HAS_BIAS) { x += bias[n]; }
  if (ACCUMULATE) { x += c[i]; }
  c[i] = x;
}

fn store_block(m0: u32, n0: u32, acc: array<vec4<f32>, 4>) {
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      store_c(m0 + i, n0 + j, acc[i][j]);
    }
  }
}

const TILE_K = 16u;
// [TILE_K][16] vec4s: slice kk of the tile, four consecutive rows (As) or columns (Bs) per vec4.
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let m_tile = wid.y * 64u;
  let n_tile = wid.x * 64u;
  let flat = lid.y * 16u + lid.x;
  let kk_load = flat / 16u;
  let v_load = (flat % 16u) * 4u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += TILE_K) {
    let k = k0 + kk_load;
    let m = m_tile + v_load;
    let n = n_tile + v_load;
    As[flat] = vec4(load_a(m, k), load_a(m + 1u, k), load_a(m + 2u, k), load_a(m + 3u, k));
    Bs[flat] = vec4(load_b(k, n), load_b(k, n + 1u), load_b(k, n + 2u), load_b(k, n + 3u));
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      let av = As[kk * 16u + lid.y];
      let bv = Bs[kk * 16u + lid.x];
      acc[0] += av.x * bv;
      acc[1] += av.y * bv;
      acc[2] += av.z * bv;
      acc[3] += av.w * bv;
    }
    workgroupBarrier();
  }
  store_block(m_tile + lid.y * 4u, n_tile + lid.x * 4u, acc);
}

@compute @workgroup_size(16, 16)
fn matmul_blocked(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m = gid.y * 4u;
  let n = gid.x * 4u;
  if (m >= p.M || n >= p.N) { return; }
  var acc: array<vec4<f32>, 4>;
  for (var k = 0u; k < p.K; k++) {
    let bv = vec4(load_b(k, n), load_b(k, n + 1u), load_b(k, n + 2u), load_b(k, n + 3u));
    acc[0] += load_a(m, k) * bv;
    acc[1] += load_a(m + 1u, k) * bv;
    acc[2] += load_a(m + 2u, k) * bv;
    acc[3] += load_a(m + 3u, k) * bv;
  }
  store_block(m, n, acc);
}

// Bindings reused: c = dbias [N], a = dy [M,N]. bias/b unused.
@compute @workgroup_size(64)
fn bias_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  if (n >= p.N) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.M; m++) { s += a[m * p.N + n]; }
  if (ACCUMULATE) { s += c[n]; }
  c[n] = s;
}
