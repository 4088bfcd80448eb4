// Matrix multiply with fused bias, in the three layouts a Linear layer's forward and backward need.
//
//   C[M,N] (=|+=) op(A) · op(B) (+ bias[N])
//   A is [M,K] row-major, or [K,M] when TRANS_A (so op(A) = Aᵀ: dW = dYᵀ·X)
//   B is [K,N] row-major, or [N,K] when TRANS_B (so op(B) = Bᵀ: Y = X·Wᵀ with W (out,in))
//
// Bindings: 0 params {M,N,K}, 1 c (out), 2 a, 3 b, 4 bias (bound even when unused).
// ACCUMULATE: c += result (parameter gradients); otherwise c = result (activations).
//
// Three variants of the same product; all are verified, the fastest is chosen per adapter:
//   matmul_tiled   — 64×64 output tile per workgroup, 16-deep K slices staged in workgroup
//                    memory, 4×4 register block per thread (what wins on real GPUs);
//   matmul_blocked — the same 4×4 register block per thread read straight from storage, no
//                    barriers (for CPU-emulated adapters, where barriers are costly);
//   matmul_vec4    — needs N % 4 == 0 and K % 4 == 0 (the wrapper falls back to blocked
//                    otherwise). Each invocation owns 4 adjacent columns (one vec4) of 8 rows,
//                    and the 8 rows are the workgroup's, so every load of A is uniform: on a
//                    CPU adapter (lavapipe) it is one scalar load broadcast to all SIMD lanes,
//                    and B comes in as one vec4 per lane instead of four scalar gathers.
//                    It reads the same bindings through vec4 views (c4, a4, b4, bias4), which
//                    alias bindings 1–4; an entry point uses one view of each binding only.
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

// ---- matmul_vec4 ---------------------------------------------------------------------------
// vec4 views of bindings 1–4 (same buffers; only matmul_vec4 uses them).
@group(0) @binding(1) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bias4: array<vec4<f32>>;

// Invocations per workgroup, one vec4 of columns each: a workgroup covers 8 rows × 4·LANES columns.
override LANES: u32 = 16u;
const VEC4_ROWS = 8u;

// One element of A through the vec4 view; m < M, k < K (callers clamp).
fn load_a4(m: u32, k: u32) -> f32 {
  var i = m * p.K + k;
  if (TRANS_A) { i = k * p.M + m; }
  return a4[i / 4u][i % 4u];
}

// Columns 4q..4q+3 of row m.
fn store_c4(m: u32, q: u32, v: vec4<f32>) {
  if (m >= p.M || q >= p.N / 4u) { return; }
  let i = m * (p.N / 4u) + q;
  var x = v;
  if (HAS_BIAS) { x += bias4[q]; }
  if (ACCUMULATE) { x += c4[i]; }
  c4[i] = x;
}

@compute @workgroup_size(LANES)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * VEC4_ROWS;
  let nq = p.N / 4u;
  let q = wid.x * LANES + li;
  // Lanes past the last column quad and rows past M compute on clamped indices and store
  // nothing: no early return, so control flow (and hence A's loads) stays uniform.
  let qc = min(q, nq - 1u);
  var acc: array<vec4<f32>, VEC4_ROWS>;
  if (TRANS_B) {
    // B is [N,K]: four consecutive k of each of the lane's four columns per step.
    let kq = p.K / 4u;
    for (var k4 = 0u; k4 < kq; k4++) {
      let b0 = b4[(qc * 4u + 0u) * kq + k4];
      let b1 = b4[(qc * 4u + 1u) * kq + k4];
      let b2 = b4[(qc * 4u + 2u) * kq + k4];
      let b3 = b4[(qc * 4u + 3u) * kq + k4];
      for (var i = 0u; i < VEC4_ROWS; i++) {
        let av = a4[min(m0 + i, p.M - 1u) * kq + k4];
        acc[i] += vec4(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3));
      }
    }
  } else {
    // B is [K,N]: row k's columns 4q..4q+3 are one vec4.
    for (var k = 0u; k < p.K; k++) {
      let bv = b4[k * nq + qc];
      for (var i = 0u; i < VEC4_ROWS; i++) {
        acc[i] += load_a4(min(m0 + i, p.M - 1u), k) * bv;
      }
    }
  }
  for (var i = 0u; i < VEC4_ROWS; i++) { store_c4(m0 + i, q, acc[i]); }
}
