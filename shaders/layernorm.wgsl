// Layer normalisation over the last axis, forward and backward.
//
//   out[R,C] = (x − mean_r) · rstd_r · weight[C] + bias[C],   rstd_r = 1/√(var_r + eps)
//   R rows (tokens of all images), C channels; var is the biased variance (÷C), as in PyTorch.
//
// Every entry point binds 0 = params {rows, C, eps, nchunks}; its storage bindings, outputs first:
//   layernorm_forward          1 out[R,C] =, 2 mean[R] =, 3 rstd[R] =, 4 x, 5 weight, 6 bias
//   layernorm_backward_dx      1 dx[R,C] = or += (ACCUMULATE_DX), 2 corr[R] = (scratch), 3 dout, 4 x,
//                              5 weight, 6 mean, 7 rstd
//   layernorm_backward_partial 1 partial[2,K,C] = (scratch), 2 dout, 3 x, 4 mean, 5 rstd, 6 corr
//   layernorm_backward_params  1 dweight[C] +=, 2 dbias[C] +=, 3 partial[2,K,C] (= where ACCUMULATE_PARAMS is off)
//   layernorm_backward_params_many  the same for every norm of a backward in one dispatch
//                              (LayernormParamSums): 1 the gradient buffer (dweight, dbias of each
//                              norm at its table offsets), 2 every norm's partial[2,K,C], 3 the
//                              table, per norm [partial_at, K, C, dweight_at, dbias_at, first
//                              channel] (element offsets); params {rows: norms, C: channels in all}
// The forward saves mean and rstd for the backward; dx is assigned, dweight and dbias accumulate
// (ACCUMULATE_PARAMS, an override: off in a step's first backward, which assigns them).
// ACCUMULATE_DX (override) makes dx accumulate instead: the residual stream's gradient takes the
// norm's contribution in the same pass (dres += dx_norm) rather than through a scratch and an add.
// Params, ACCUMULATE_DX, the two row kernels' bindings and their per-element maths are in
// common/layernorm_rows, shared with the subgroup variant; the per-channel kernels' bindings are
// declared here.
// Storage is declared read_write throughout: WebGPU forbids binding one buffer both read-only and
// writable in a dispatch, and inputs and outputs are often slices of the same arena.
//
// Numerics. The forward is two-pass and shifted: it sums d = x − x[r,0] (exact for rows with a
// large common offset, by Sterbenz), so mean and variance keep the precision of the noise, not
// of the offset. The saved f32 mean is rounded to one ulp of the offset, which can be a sizeable
// part of σ (x = 1000 + 0.01·noise); the backward therefore uses the saved mean as a shift too
// and corrects it by corr_r = Σ(x − mean_r)/C, computed in the same pass as its other sums.
//
// Determinism: row reductions are fixed-shape trees in workgroup memory (common/reduce);
// dweight/dbias are summed over chunks of ROWS_PER_CHUNK rows in order into `partial`, then over
// chunks in order.
//
// shaders/layernorm_subgroups.wgsl has the forward with subgroup reductions, and
// layernorm_backward_dx_partial: this file's backward_dx and backward_partial in one pass.
//
// Geometry: the row kernels (forward, backward_dx) run one workgroup of REDUCE_WG threads per row
// (the wrapper sets 64), rows past 65535 spilling into y (common/grid); the per-channel kernels
// (backward_partial, backward_params) run WG threads per workgroup, one channel per thread.

// #import common/reduce
// #import common/grid
// #import common/layernorm_rows

const WG = 64u;

// layernorm_backward_params: dweight and dbias += the sums (else =).
override ACCUMULATE_PARAMS: bool = true;

// layernorm_backward_partial
@group(0) @binding(1) var<storage, read_write> q_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_x: array<f32>;
@group(0) @binding(4) var<storage, read_write> q_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> q_rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> q_corr: array<f32>;

// layernorm_backward_params
@group(0) @binding(1) var<storage, read_write> s_dweight: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_dbias: array<f32>;
@group(0) @binding(3) var<storage, read_write> s_partial: array<f32>;

var<workgroup> red3: array<vec3<f32>, REDUCE_WG>;

// common/reduce's workgroup_sum for vec3 (kept here: only the backward sums three values at once),
// the same fixed tree; every invocation gets the total. Call from uniform control flow.
fn workgroup_sum3(tid: u32, v: vec3<f32>) -> vec3<f32> {
  red3[tid] = v;
  workgroupBarrier();
  for (var s = REDUCE_WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { red3[tid] += red3[tid + s]; }
    workgroupBarrier();
  }
  let total = red3[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(REDUCE_WG)
fn layernorm_forward(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = grid_workgroup(wid, nwg);
  if (row >= p.rows) { return; }
  let C = p.C;
  let base = row * C;
  let shift = f_x[base];
  var s = 0.0;
  for (var i = tid; i < C; i += REDUCE_WG) { s += f_x[base + i] - shift; }
  let mean_d = workgroup_sum(tid, s) / f32(C);
  var v = 0.0;
  for (var i = tid; i < C; i += REDUCE_WG) {
    let d = centered(base + i, shift, mean_d);
    v += d * d;
  }
  let rstd = inverseSqrt(workgroup_sum(tid, v) / f32(C) + p.eps);
  for (var i = tid; i < C; i += REDUCE_WG) { write_out(base + i, i, shift, mean_d, rstd); }
  if (tid == 0u) {
    f_mean[row] = shift + mean_d;
    f_rstd[row] = rstd;
  }
}

// dx = rstd · (g − mean(g) − xhat · mean(g·xhat)), g = dout·weight, xhat = (x − mean − corr)·rstd.
// The three row sums Σd, Σg, Σg·d (d = x − mean) come from one pass; Σg·xhat follows from them.
@compute @workgroup_size(REDUCE_WG)
fn layernorm_backward_dx(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = grid_workgroup(wid, nwg);
  if (row >= p.rows) { return; }
  let C = p.C;
  let base = row * C;
  let mean = b_mean[row];
  let rstd = b_rstd[row];
  var acc = vec3(0.0);
  for (var i = tid; i < C; i += REDUCE_WG) { acc += dx_terms(base + i, i, mean); }
  let k = dx_row(workgroup_sum3(tid, acc), rstd, C);
  for (var i = tid; i < C; i += REDUCE_WG) { write_dx(base + i, i, mean, rstd, k); }
  if (tid == 0u) { b_corr[row] = k.corr; }
}

// partial[0,k,c] = Σ_{r in chunk k} dout·xhat, partial[1,k,c] = Σ_{r in chunk k} dout, rows in order.
@compute @workgroup_size(WG)
fn layernorm_backward_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let k = gid.y;
  if (c >= p.C) { return; }
  let r0 = k * ROWS_PER_CHUNK;
  let r1 = min(r0 + ROWS_PER_CHUNK, p.rows);
  var dw = 0.0;
  var db = 0.0;
  for (var r = r0; r < r1; r++) {
    let i = r * p.C + c;
    let xhat = ((q_x[i] - q_mean[r]) - q_corr[r]) * q_rstd[r];
    dw += q_dout[i] * xhat;
    db += q_dout[i];
  }
  q_partial[k * p.C + c] = dw;
  q_partial[(p.nchunks + k) * p.C + c] = db;
}

@compute @workgroup_size(WG)
fn layernorm_backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var dw = 0.0;
  var db = 0.0;
  for (var k = 0u; k < p.nchunks; k++) {
    dw += s_partial[k * p.C + c];
    db += s_partial[(p.nchunks + k) * p.C + c];
  }
  if (ACCUMULATE_PARAMS) {
    s_dweight[c] += dw;
    s_dbias[c] += db;
  } else {
    s_dweight[c] = dw;
    s_dbias[c] = db;
  }
}

// layernorm_backward_params_many: one thread per channel of every norm; its norm is the last
// whose first channel is ≤ it (a binary search, as transpose_weights finds its matrix). The chunks
// are summed in order, as layernorm_backward_params sums them: the same bits.
@group(0) @binding(1) var<storage, read_write> n_grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> n_partial: array<f32>;
@group(0) @binding(3) var<storage, read_write> n_table: array<u32>;

@compute @workgroup_size(WG)
fn layernorm_backward_params_many(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = grid_index(wid, nwg, lid.x, WG);
  if (g >= p.C) { return; }
  var lo = 0u;
  var hi = p.rows;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (n_table[6u * mid + 5u] <= g) { lo = mid; } else { hi = mid; }
  }
  let t = 6u * lo;
  let at = n_table[t];
  let nchunks = n_table[t + 1u];
  let C = n_table[t + 2u];
  let c = g - n_table[t + 5u];
  var dw = 0.0;
  var db = 0.0;
  for (var k = 0u; k < nchunks; k++) {
    dw += n_partial[at + k * C + c];
    db += n_partial[at + (nchunks + k) * C + c];
  }
  let wi = n_table[t + 3u] + c;
  let bi = n_table[t + 4u] + c;
  if (ACCUMULATE_PARAMS) {
    n_grads[wi] += dw;
    n_grads[bi] += db;
  } else {
    n_grads[wi] = dw;
    n_grads[bi] = db;
  }
}
