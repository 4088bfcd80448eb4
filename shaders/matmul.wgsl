// Matrix multiply with a fused epilogue, in the three layouts a Linear layer's forward and backward need.
//
//   C[M,N] (=|+=) epilogue(op(A) · op(B) (+ bias[N]))
//   A is [M,K] row-major, or [K,M] when TRANS_A (so op(A) = Aᵀ: dW = dYᵀ·X)
//   B is [K,N] row-major, or [N,K] when TRANS_B (so op(B) = Bᵀ: Y = X·Wᵀ with W (out,in))
//
// Bindings: 0 params {M,N,K, b_at: transpose_vec4_pair only}, 1 c (out), 2 a, 3 b, 4 bias, 5 aux [M,N] (4 and 5 bound even when unused).
// ACCUMULATE: c += result (parameter gradients); otherwise c = result (activations).
// BIAS_GRAD (matmul_vec4, 'tn' without a bias only): binding 4 is an output, bias[M] (+= with ACCUMULATE, else =) Σ_k A[k, m]
// (the Linear's db, summed in k order as bias_backward does; common/matmul_vec4.wgsl).
// EPILOGUE, on x = op(A)·op(B) (+ bias), element-wise, in the same pass (no second trip over C):
//   0 none       c = x
//   1 residual   c = x + aux                      (aux read: the block's shortcut, x1 = proj(attn) + x)
//   2 gelu       c = gelu(x), aux = gelu'(x)      (aux written: fc1's GELU slope, saved for the backward)
//   3 gelu_grad  c = x · aux                      (aux read: gelu'(h); dh = (dY·W_fc2) ⊙ gelu'(h))
//   4 gelu only  c = gelu(x)                      (a frozen layer: nothing saved, aux unused)
// An epilogue is never combined with ACCUMULATE (the wrapper refuses it). aux is an output only for gelu.
//
// Three variants of the same product (two more, on f16 operands, in matmul_f16.wgsl); all are
// verified, the fastest is chosen per adapter:
//   matmul_tiled   — 64×64 output tile per workgroup, 16-deep K slices staged in workgroup
//                    memory, 4×4 register block per thread (what wins on real GPUs);
//   matmul_blocked — the same 4×4 register block per thread read straight from storage, no
//                    barriers (for CPU-emulated adapters, where barriers are costly);
//   matmul_vec4    — an outer product per k on K-major operands: A as Aᵀ [K, M'] (M' = M rounded
//                    up to 4) and B as [K,N]. 'tn' binds them as they are; for 'nn' the wrapper
//                    first writes Aᵀ with transpose_vec4 into a scratch, for 'nt' Aᵀ and Bᵀ (one
//                    pass over M·K and N·K, small next to the product's M·N·K; on subgroups of 8
//                    lanes matmul_subgroups.wgsl reads 'nn' and 'nt' A as stored, along K, and
//                    only 'nt' B is transposed, with transpose_vec4). Needs N % 4 == 0,
//                    and K % 4 == 0 ('nn', 'nt': the transpose reads A and B in vec4s along K) or
//                    M % 4 == 0 ('tn': Aᵀ is bound as given); the wrapper falls back to blocked
//                    otherwise. Details by the entry point. It does not read TRANS_A/TRANS_B
//                    (they still name the caller's layout in the pipeline key, which the tuner reads;
//                    the subgroup twin's A_ALONG_K says how A is stored).
//                    It reads the bindings through vec4 views (c4, a4, b4, bias4, aux4), which
//                    alias bindings 1–5; an entry point uses one view of each binding only.
//                    Its body, shared with matmul_vec4_f16, is common/matmul_vec4.wgsl.
// transpose_vec4: out[K, M'] = in[M, K]ᵀ, rows past M repeat row M−1 (matmul_vec4 never stores them);
//   transpose_vec4_pair: an 'nt' product's Aᵀ and Bᵀ in one dispatch;
//   transpose_weights: many matrices in one dispatch, after a table (a model's Linear weights made
//   K-major, ops/matmul.ts KMajorWeights).
// bias_backward: dbias[N] (=|+=) Σ_m dy[m, n], one thread per column, rows in order (deterministic).
// Every variant sums k = 0, 1, …, K−1 in order into one accumulator per element: fixed order, so
// the same inputs give the same bits.

// #import common/matmul_vec4
// #import common/grid

@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> aux: array<f32>;

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

// x = the product (+ bias) of element i = m·N + n, through the epilogue.
fn epilogue(x: f32, i: u32) -> f32 {
  if (EPILOGUE == EPILOGUE_RESIDUAL) { return x + aux[i]; }
  if (EPILOGUE == EPILOGUE_GELU) {
    let g = gelu_with_grad(x);
    aux[i] = g.y;
    return g.x;
  }
  if (EPILOGUE == EPILOGUE_GELU_ONLY) { return gelu(x); }
  if (EPILOGUE == EPILOGUE_GELU_GRAD) { return aux[i] * x; }
  return x;
}

fn store_c(m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  let i = m * p.N + n;
  var x = v;
  if (HAS_BIAS) { x += bias[n]; }
  x = epilogue(x, i);
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
  var acc = array<vec4<f32>, 4>();
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
  var acc = array<vec4<f32>, 4>();
  for (var k = 0u; k < p.K; k++) {
    let bv = vec4(load_b(k, n), load_b(k, n + 1u), load_b(k, n + 2u), load_b(k, n + 3u));
    acc[0] += load_a(m, k) * bv;
    acc[1] += load_a(m + 1u, k) * bv;
    acc[2] += load_a(m + 2u, k) * bv;
    acc[3] += load_a(m + 3u, k) * bv;
  }
  store_block(m, n, acc);
}

// Bindings reused: c = dbias [N], a = dy [M,N]. bias/b/aux unused.
@compute @workgroup_size(64)
fn bias_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  if (n >= p.N) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.M; m++) { s += a[m * p.N + n]; }
  if (ACCUMULATE) { s += c[n]; }
  c[n] = s;
}

// ---- matmul_vec4 (common/matmul_vec4.wgsl) and its transposes ------------------------------
// f32 vec4 views of a and b (bindings 2, 3; same buffers as a, b: only these entry points use them).
@group(0) @binding(2) var<storage, read_write> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b4: array<vec4<f32>>;

// (matmul_subgroups.wgsl's matmul_vec4, on adapters with subgroups, loads one quad per lane and shares them.)
fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32> {
  let row = k * ((p.M + 3u) / 4u);
  return mat4x4(a4[row + r.x], a4[row + r.y], a4[row + r.z], a4[row + r.w]);
}
fn load_bK(k: u32, q: u32) -> vec4<f32> { return b4[k * (p.N / 4u) + q]; }

@compute @workgroup_size(LANES)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  matmul_vec4_tile(wid, li);
}

// The transposes: one 4×4 block per invocation, four row quads in, four column quads out; x walks
// the input's column quads, y its row quads (a 2-D grid: no integer division, which CPU adapters
// do per lane). K % 4 == 0.

// vec4 indices of row quad bm's four rows at column quad bk of in[rows, K] (rows past the last
// repeat it: matmul_vec4 never stores them).
fn quad_rows(rows: u32, bm: u32, bk: u32) -> vec4<u32> {
  return min(vec4(bm * 4u) + vec4(0u, 1u, 2u, 3u), vec4(rows - 1u)) * (p.K / 4u) + vec4(bk);
}

// Rows x0..x3 of a 4×4 block, written transposed into out[K, 4·rq] (rq row quads) at vec4 c_at.
fn store_transposed(c_at: u32, rq: u32, bk: u32, bm: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
  c4[c_at + (bk * 4u + 0u) * rq + bm] = vec4(x0.x, x1.x, x2.x, x3.x);
  c4[c_at + (bk * 4u + 1u) * rq + bm] = vec4(x0.y, x1.y, x2.y, x3.y);
  c4[c_at + (bk * 4u + 2u) * rq + bm] = vec4(x0.z, x1.z, x2.z, x3.z);
  c4[c_at + (bk * 4u + 3u) * rq + bm] = vec4(x0.w, x1.w, x2.w, x3.w);
}

// c4 = out [K, M'] (M' = M rounded up to 4), a4 = in [M, K].
@compute @workgroup_size(8, 8)
fn transpose_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let mq = (p.M + 3u) / 4u;
  if (gid.x >= p.K / 4u || gid.y >= mq) { return; }
  let r = quad_rows(p.M, gid.y, gid.x);
  store_transposed(0u, mq, gid.x, gid.y, a4[r.x], a4[r.y], a4[r.z], a4[r.w]);
}

// An 'nt' product's two operands in one dispatch (a pass fewer): z = 0 writes Aᵀ [K, M'] at the
// start of c4, z = 1 writes Bᵀ [K, N] at vec4 p.b_at (b4 = B [N, K], N % 4 == 0).
@compute @workgroup_size(8, 8)
fn transpose_vec4_pair(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.z == 0u) {
    let mq = (p.M + 3u) / 4u;
    if (gid.x >= p.K / 4u || gid.y >= mq) { return; }
    let r = quad_rows(p.M, gid.y, gid.x);
    store_transposed(0u, mq, gid.x, gid.y, a4[r.x], a4[r.y], a4[r.z], a4[r.w]);
  } else {
    let nq = p.N / 4u;
    if (gid.x >= p.K / 4u || gid.y >= nq) { return; }
    let r = quad_rows(p.N, gid.y, gid.x);
    store_transposed(p.b_at, nq, gid.x, gid.y, b4[r.x], b4[r.y], b4[r.z], b4[r.w]);
  }
}

// transpose_weights: out[cols, rows] = in[rows, cols]ᵀ for each of p.M matrices (rows, cols % 4 == 0),
// binding 3 their table: per matrix [in_at, out_at (vec4 offsets), rows, cols, first_tile], sorted
// by first_tile. Each workgroup transposes one tile of 8 × 8 of transpose_vec4's 4 × 4 blocks (a
// 2-D grid of tiles, common/grid); its matrix, the last whose first_tile is ≤ its tile, is found
// by a binary search, the same in every invocation. One dispatch for every weight of a model: on
// CPU adapters each dispatch in a pass costs 20–50 µs of its own.
@group(0) @binding(3) var<storage, read_write> tiles: array<u32>;

@compute @workgroup_size(8, 8)
fn transpose_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tile = grid_workgroup(wid, nwg);
  var lo = 0u;
  var hi = p.M;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (tiles[5u * mid + 4u] <= tile) { lo = mid; } else { hi = mid; }
  }
  let j = 5u * lo;
  let rq = tiles[j + 2u] / 4u; // row quads of the input, column quads of the output
  let cq = tiles[j + 3u] / 4u;
  let across = (cq + 7u) / 8u; // tiles along a row of blocks
  let t = tile - tiles[j + 4u];
  let bm = (t / across) * 8u + lid.y;
  let bk = (t % across) * 8u + lid.x;
  if (bm >= rq || bk >= cq) { return; } // also the grid's partial last row, past the last matrix
  let at = tiles[j] + bm * 4u * cq + bk;
  store_transposed(tiles[j + 1u], rq, bk, bm, a4[at], a4[at + cq], a4[at + 2u * cq], a4[at + 3u * cq]);
}
