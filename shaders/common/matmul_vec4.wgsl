// The vec4 outer-product matmul shared by matmul.wgsl (f32 operands) and matmul_f16.wgsl (f16
// operands, f32 accumulation): the overrides, Params, the vec4 views of c, bias and aux, the
// epilogue four columns at a time, and matmul_vec4_tile, the whole product of one workgroup.
// The importing file defines how an operand element is read, as f32:
//   fn load_a_block(k: u32, r: vec4<u32>) -> mat4x4<f32>   row quads r.x..r.w of Aᵀ [K, M'] at k
//                                                          (M' = M rounded up to 4), as columns 0..3
//   fn load_bK(k: u32, q: u32) -> vec4<f32>                column quad q of B [K, N] at k
// Bindings as in matmul.wgsl: 0 params {M,N,K}, 1 c, 2 a, 3 b, 4 bias (output with BIAS_GRAD), 5 aux.

// #import common/gelu

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override EPILOGUE: u32 = 0u;
// 'tn' only (dW = dYᵀ·X): also bias[m] (+= with ACCUMULATE, else =) Σ_k A[k, m] — the Linear's
// db, from the dY rows the product reads anyway — in the workgroups of the first column block
// (bias is then an output).
override BIAS_GRAD: bool = false;

const EPILOGUE_RESIDUAL = 1u;
const EPILOGUE_GELU = 2u;      // and aux = gelu'(x), saved for the backward
const EPILOGUE_GELU_GRAD = 3u; // x · aux
const EPILOGUE_GELU_ONLY = 4u; // a frozen layer's: nothing saved

// b_at: transpose_vec4_pair's Bᵀ offset in vec4s (0 for every other entry point).
struct Params { M: u32, N: u32, K: u32, b_at: u32 }

@group(0) @binding(0) var<uniform> p: Params;
// vec4 views of bindings 1, 4 and 5 (the importing file declares its own views of a and b).
@group(0) @binding(1) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bias4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> aux4: array<vec4<f32>>;

// 16 k per loop iteration instead of 1 (matmul_vec4_tile; set by matmul_vec4_sampled's wrapper).
override UNROLL_K: bool = false;

// Invocations per workgroup of matmul_vec4; each owns two column quads (8 columns) of the
// workgroup's VEC4_ROWS rows, so a workgroup covers VEC4_ROWS rows × 8·LANES columns.
override LANES: u32 = 8u;
const VEC4_ROWS = 16u;

fn gelu4(x: vec4<f32>) -> vec4<f32> {
  return vec4(gelu(x.x), gelu(x.y), gelu(x.z), gelu(x.w));
}

// Four columns' (gelu, gelu'): columns 0 and 1 of the result.
fn gelu_with_grad4(x: vec4<f32>) -> mat2x4<f32> {
  let g0 = gelu_with_grad(x.x);
  let g1 = gelu_with_grad(x.y);
  let g2 = gelu_with_grad(x.z);
  let g3 = gelu_with_grad(x.w);
  return mat2x4(vec4(g0.x, g1.x, g2.x, g3.x), vec4(g0.y, g1.y, g2.y, g3.y));
}

// Columns 4q..4q+3 of row m; the same steps as store_c, four columns at a time.
fn store_c4(m: u32, q: u32, v: vec4<f32>) {
  if (m >= p.M || q >= p.N / 4u) { return; }
  let i = m * (p.N / 4u) + q;
  var x = v;
  if (HAS_BIAS) { x += bias4[q]; }
  if (EPILOGUE == EPILOGUE_RESIDUAL) { x += aux4[i]; }
  if (EPILOGUE == EPILOGUE_GELU) {
    let g = gelu_with_grad4(x);
    aux4[i] = g[1];
    x = g[0];
  }
  if (EPILOGUE == EPILOGUE_GELU_ONLY) { x = gelu4(x); }
  if (EPILOGUE == EPILOGUE_GELU_GRAD) { x = aux4[i] * x; }
  if (ACCUMULATE) { x += c4[i]; }
  c4[i] = x;
}

// Row m's column quads q and q + 1.
fn store_c4_pair(m: u32, q: u32, lo: vec4<f32>, hi: vec4<f32>) {
  store_c4(m, q, lo);
  store_c4(m, q + 1u, hi);
}

// Where one invocation's block is: Aᵀ's row quads r (four, clamped to M') and B's column quads q
// (two, clamped to N).
struct Block { r: vec4<u32>, q0: u32, q1: u32 }

// acc += the outer product at k of the block's 16 rows of Aᵀ and 8 columns of B (acc[2i + j]: row
// i, column quad j); with bias_rows also bsum += the 16 rows, k in order, as bias_backward sums.
fn outer_product(acc: ptr<function, array<vec4<f32>, 32>>, bsum: ptr<function, array<vec4<f32>, 4>>, blk: Block, k: u32, bias_rows: bool) {
  let a = load_a_block(k, blk.r);
  let a0 = a[0];
  let a1 = a[1];
  let a2 = a[2];
  let a3 = a[3];
  if (bias_rows) { // uniform per workgroup
    (*bsum)[0] += a0;
    (*bsum)[1] += a1;
    (*bsum)[2] += a2;
    (*bsum)[3] += a3;
  }
  let b0 = load_bK(k, blk.q0);
  let b1 = load_bK(k, blk.q1);
  // Written out (not a loop over rows): the accumulators stay in registers on CPU adapters.
  (*acc)[0] += a0.x * b0;  (*acc)[1] += a0.x * b1;
  (*acc)[2] += a0.y * b0;  (*acc)[3] += a0.y * b1;
  (*acc)[4] += a0.z * b0;  (*acc)[5] += a0.z * b1;
  (*acc)[6] += a0.w * b0;  (*acc)[7] += a0.w * b1;
  (*acc)[8] += a1.x * b0;  (*acc)[9] += a1.x * b1;
  (*acc)[10] += a1.y * b0; (*acc)[11] += a1.y * b1;
  (*acc)[12] += a1.z * b0; (*acc)[13] += a1.z * b1;
  (*acc)[14] += a1.w * b0; (*acc)[15] += a1.w * b1;
  (*acc)[16] += a2.x * b0; (*acc)[17] += a2.x * b1;
  (*acc)[18] += a2.y * b0; (*acc)[19] += a2.y * b1;
  (*acc)[20] += a2.z * b0; (*acc)[21] += a2.z * b1;
  (*acc)[22] += a2.w * b0; (*acc)[23] += a2.w * b1;
  (*acc)[24] += a3.x * b0; (*acc)[25] += a3.x * b1;
  (*acc)[26] += a3.y * b0; (*acc)[27] += a3.y * b1;
  (*acc)[28] += a3.z * b0; (*acc)[29] += a3.z * b1;
  (*acc)[30] += a3.w * b0; (*acc)[31] += a3.w * b1;
}

// Aᵀ [K, M'] and B [K,N] at k (load_a_block, load_bK), whatever the layout: the wrapper transposes
// what is stored otherwise, or the importing file reads it so (matmul_subgroups.wgsl's A_ALONG_K).
// Per k the workgroup's 16 rows of Aᵀ are four vec4s at the same address in every invocation and
// each invocation loads two vec4s of B: 6 loads for 128 multiply-adds. (Neither lavapipe nor
// SwiftShader shares a load of the same address across lanes: with subgroups the four are shared,
// common/matmul_vec4_subgroups.wgsl.) Measured on lavapipe, this
// outer product beats reading A and B along K (the old 'nt' path, 12 loads per 128) even with
// the transposes paid, and 16 rows × 8 columns beat the other blockings tried (8–24 rows, 4–16
// columns per invocation; 4·LANES..16·LANES columns per workgroup).
// With UNROLL_K (matmul_vec4_sampled) the loop takes 16 k per iteration, the same sums in the same
// order: SwiftShader stores and reloads every loop-carried accumulator on each iteration, and this
// ran 1.25–1.45× faster there (scratch, Chromium 150); lavapipe keeps its accumulators in registers.
// The workgroup at `wid` (LANES invocations; `li` this one's index) computes its rows × columns.
fn matmul_vec4_tile(wid: vec3<u32>, li: u32) {
  let mq = (p.M + 3u) / 4u; // Aᵀ's row length in vec4s
  let nq = p.N / 4u;
  let m0 = wid.y * VEC4_ROWS;
  // Row quads past M' and column quads past N are loaded clamped and never stored: no early
  // return, so control flow (and hence the loads of Aᵀ) stays uniform.
  let r0 = wid.y * 4u;
  let q = (wid.x * LANES + li) * 2u;
  let blk = Block(min(vec4(r0) + vec4(0u, 1u, 2u, 3u), vec4(mq - 1u)), min(q, nq - 1u), min(q + 1u, nq - 1u));
  let bias_rows = BIAS_GRAD && wid.x == 0u;
  var acc = array<vec4<f32>, 32>();
  var bsum = array<vec4<f32>, 4>();
  var k = 0u;
  if (UNROLL_K) {
    for (; k + 16u <= p.K; k += 16u) {
      outer_product(&acc, &bsum, blk, k, false);       outer_product(&acc, &bsum, blk, k + 1u, false);
      outer_product(&acc, &bsum, blk, k + 2u, false);  outer_product(&acc, &bsum, blk, k + 3u, false);
      outer_product(&acc, &bsum, blk, k + 4u, false);  outer_product(&acc, &bsum, blk, k + 5u, false);
      outer_product(&acc, &bsum, blk, k + 6u, false);  outer_product(&acc, &bsum, blk, k + 7u, false);
      outer_product(&acc, &bsum, blk, k + 8u, false);  outer_product(&acc, &bsum, blk, k + 9u, false);
      outer_product(&acc, &bsum, blk, k + 10u, false); outer_product(&acc, &bsum, blk, k + 11u, false);
      outer_product(&acc, &bsum, blk, k + 12u, false); outer_product(&acc, &bsum, blk, k + 13u, false);
      outer_product(&acc, &bsum, blk, k + 14u, false); outer_product(&acc, &bsum, blk, k + 15u, false);
    }
  }
  for (; k < p.K; k++) {
    outer_product(&acc, &bsum, blk, k, bias_rows && !UNROLL_K);
  }
  if (UNROLL_K && bias_rows) {
    // The unrolled loop carries no bias sums: a branch in each of its 16 steps made lavapipe run
    // the sampled form's 'tn' products 1.3× slower. The bias rows' own loop, k in order, after it.
    for (k = 0u; k < p.K; k++) {
      let a = load_a_block(k, blk.r);
      bsum[0] += a[0];
      bsum[1] += a[1];
      bsum[2] += a[2];
      bsum[3] += a[3];
    }
  }
  store_c4_pair(m0 + 0u, q, acc[0], acc[1]);
  store_c4_pair(m0 + 1u, q, acc[2], acc[3]);
  store_c4_pair(m0 + 2u, q, acc[4], acc[5]);
  store_c4_pair(m0 + 3u, q, acc[6], acc[7]);
  store_c4_pair(m0 + 4u, q, acc[8], acc[9]);
  store_c4_pair(m0 + 5u, q, acc[10], acc[11]);
  store_c4_pair(m0 + 6u, q, acc[12], acc[13]);
  store_c4_pair(m0 + 7u, q, acc[14], acc[15]);
  store_c4_pair(m0 + 8u, q, acc[16], acc[17]);
  store_c4_pair(m0 + 9u, q, acc[18], acc[19]);
  store_c4_pair(m0 + 10u, q, acc[20], acc[21]);
  store_c4_pair(m0 + 11u, q, acc[22], acc[23]);
  store_c4_pair(m0 + 12u, q, acc[24], acc[25]);
  store_c4_pair(m0 + 13u, q, acc[26], acc[27]);
  store_c4_pair(m0 + 14u, q, acc[28], acc[29]);
  store_c4_pair(m0 + 15u, q, acc[30], acc[31]);
  if (bias_rows && li == 0u) {
    // Row quads r0..r0+3 of the bias; quads past M' were loaded clamped: not stored.
    for (var j = 0u; j < 4u; j++) {
      if (r0 + j < mq) {
        if (ACCUMULATE) { bias4[r0 + j] += bsum[j]; } else { bias4[r0 + j] = bsum[j]; }
      }
    }
  }
}
