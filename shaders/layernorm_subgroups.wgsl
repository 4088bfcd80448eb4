// Layer normalisation's row kernels (forward, backward_dx_partial) with subgroup reductions: the
// 'subgroup' variant of shaders/layernorm.wgsl, for devices with the WebGPU feature 'subgroups'.
// Same maths, shapes and Params as there (see its header); Params, ACCUMULATE_DX, the bindings
// and the per-element maths are in common/layernorm_rows, for both:
//
//   out[R,C] = (x − mean_r) · rstd_r · weight[C] + bias[C],   rstd_r = 1/√(var_r + eps)
//   R rows, C channels. Binding 0 = params {rows, C, eps, nchunks}; storage, outputs first:
//   layernorm_forward              1 out[R,C] =, 2 mean[R] =, 3 rstd[R] =, 4 x, 5 weight, 6 bias
//                                  (layernorm_forward_vec4, for C % 4 == 0: the same bindings,
//                                  ROWS_PER_WORKGROUP rows per workgroup)
//   layernorm_backward_dx_partial  1 dx[R,C] = or += (ACCUMULATE_DX), 2 partial[2, nchunks, C] =,
//                                  3 dout, 4 x, 5 weight, 6 mean, 7 rstd: one workgroup per chunk
//                                  of ROWS_PER_CHUNK rows computes their dx and the chunk's
//                                  dweight/dbias sums in one dispatch (the workgroup variant's
//                                  backward_dx and backward_partial together); _vec4 for C % 4 == 0
// The forward saves mean and rstd. The backward's last kernel is layernorm.wgsl's backward_params,
// which sums the chunks.
//
// Why: the workgroup variant's tree costs 8 barriers per row sum (one per level of 64, and the
// ends); CPU adapters (lavapipe, SwiftShader) pay a lot per barrier. Here a row sum is one
// subgroupAdd: no barrier, no workgroup memory.
//
// Geometry: one workgroup of SG_WG invocations per row (backward_dx_partial: per chunk of
// ROWS_PER_CHUNK rows, taken in order; rows or chunks past 65535 spill into y, common/grid).
// The wrapper sets SG_WG to the adapter's subgroup size. The kernels are correct for any mapping
// of invocations onto subgroups (common/subgroup_rows): row sums are subgroupAdd over the
// subgroup that holds invocation 0, so every invocation of it has the total.
// Determinism: for a given pipeline and device the mapping and subgroupAdd's order are fixed, so
// the same inputs give the same bits. They need not equal the workgroup variant's bits.
//
// Numerics: as layernorm.wgsl, two-pass and shifted by x[r,0] in the forward, and the backward
// corrects the f32-rounded saved mean by corr_r = Σ(x − mean_r)/C.
enable subgroups;

// #import common/grid
// #import common/layernorm_rows
// #import common/subgroup_rows

// Invocations per workgroup (one workgroup per row, or per chunk of rows); at most 256.
override SG_WG: u32 = 32u;

@compute @workgroup_size(SG_WG)
fn layernorm_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = grid_workgroup(wid, nwg);
  if (row >= p.rows) { return; }
  let C = p.C;
  let base = row * C;
  let w = lanes(lid, C);
  let shift = f_x[base];
  var s = 0.0;
  for (var i = w.lane; i < w.end; i += w.n) { s += f_x[base + i] - shift; }
  let mean_d = subgroupAdd(s) / f32(C);
  var v = 0.0;
  for (var i = w.lane; i < w.end; i += w.n) {
    let d = centered(base + i, shift, mean_d);
    v += d * d;
  }
  let rstd = inverseSqrt(subgroupAdd(v) / f32(C) + p.eps);
  for (var i = w.lane; i < w.end; i += w.n) { write_out(base + i, i, shift, mean_d, rstd); }
  if (lid == 0u) { // in the working subgroup
    f_mean[row] = shift + mean_d;
    f_rstd[row] = rstd;
  }
}


// partial[0, k, c] = Σ_{r in chunk k} dout·xhat, partial[1, k, c] = Σ_{r in chunk k} dout, rows in
// order (the sums and order of layernorm_backward_partial), with each row's dx on the way: one
// workgroup per chunk, in two phases. 1: each row's sums (dx_terms), the rows one after another,
// kept per row in registers. 2: each lane takes its channels one at a time and the chunk's rows in
// order, writing dx and adding the channel's two partial sums in registers, stored once at the
// end (no other invocation writes them): dout and x are read twice per element, as before, but
// the partials are no longer read and written back once per row (11 accesses per element → 6).
@group(0) @binding(2) var<storage, read_write> b_partial: array<f32>;

@compute @workgroup_size(SG_WG)
fn layernorm_backward_dx_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let chunk = grid_workgroup(wid, nwg);
  if (chunk >= p.nchunks) { return; }
  let C = p.C;
  let w = lanes(lid, C);
  let r0 = chunk * ROWS_PER_CHUNK;
  let n_rows = min(ROWS_PER_CHUNK, p.rows - r0);
  var k = array<DxRow, ROWS_PER_CHUNK>();
  var mean = array<f32, ROWS_PER_CHUNK>();
  var rstd = array<f32, ROWS_PER_CHUNK>();
  for (var j = 0u; j < n_rows; j++) {
    let base = (r0 + j) * C;
    mean[j] = b_mean[r0 + j];
    rstd[j] = b_rstd[r0 + j];
    var acc = vec3(0.0);
    for (var i = w.lane; i < w.end; i += w.n) { acc += dx_terms(base + i, i, mean[j]); }
    k[j] = dx_row(subgroupAdd(acc), rstd[j], C);
  }
  for (var i = w.lane; i < w.end; i += w.n) {
    var dw = 0.0;
    var db = 0.0;
    for (var j = 0u; j < n_rows; j++) {
      let e = (r0 + j) * C + i;
      let xhat = write_dx(e, i, mean[j], rstd[j], k[j]);
      let g = b_dout[e];
      dw += g * xhat;
      db += g;
    }
    b_partial[chunk * C + i] = dw;
    b_partial[(p.nchunks + chunk) * C + i] = db;
  }
}

// layernorm_forward_vec4 (C % 4 == 0): the same maths through vec4 views of out, x, weight and bias,
// and ROWS_PER_WORKGROUP rows per workgroup, one after another. On lavapipe a vec4 load costs
// less than four scalar ones, and a workgroup has a cost of its own: 1.4× faster than
// layernorm_forward at 4 rows (8: no faster). Each lane sums its vec4s, then their components;
// close to, not the same bits as, the scalar entry point.
@group(0) @binding(1) var<storage, read_write> f_out4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> f_x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> f_weight4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> f_bias4: array<vec4<f32>>;

override ROWS_PER_WORKGROUP: u32 = 4u;

@compute @workgroup_size(SG_WG)
fn layernorm_forward_vec4(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r0 = grid_workgroup(wid, nwg) * ROWS_PER_WORKGROUP;
  let C = p.C;
  let w = lanes(lid, C / 4u); // strides over the row's vec4s
  for (var row = r0; row < min(r0 + ROWS_PER_WORKGROUP, p.rows); row++) {
    let base = row * (C / 4u);
    let shift = f_x4[base].x;
    var s = vec4(0.0);
    for (var i = w.lane; i < w.end; i += w.n) { s += f_x4[base + i] - shift; }
    let mean_d = subgroupAdd(sum4(s)) / f32(C);
    var v = vec4(0.0);
    for (var i = w.lane; i < w.end; i += w.n) {
      let d = (f_x4[base + i] - shift) - mean_d;
      v += d * d;
    }
    let rstd = inverseSqrt(subgroupAdd(sum4(v)) / f32(C) + p.eps);
    for (var i = w.lane; i < w.end; i += w.n) {
      let xhat = ((f_x4[base + i] - shift) - mean_d) * rstd;
      f_out4[base + i] = xhat * f_weight4[i] + f_bias4[i];
    }
    if (lid == 0u) { // in the working subgroup
      f_mean[row] = shift + mean_d;
      f_rstd[row] = rstd;
    }
  }
}

// layernorm_backward_dx_partial_vec4 (C % 4 == 0): layernorm_backward_dx_partial through vec4 views of
// dx, partial, dout, x and weight: 1.8× faster on lavapipe. Each lane sums its vec4s' terms, then
// their components (close to, not the same bits as, the scalar entry point); the partials are
// summed per channel over the chunk's rows in order, as there.
@group(0) @binding(1) var<storage, read_write> b_dx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> b_partial4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b_dout4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> b_x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> b_weight4: array<vec4<f32>>;

@compute @workgroup_size(SG_WG)
fn layernorm_backward_dx_partial_vec4(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let chunk = grid_workgroup(wid, nwg);
  if (chunk >= p.nchunks) { return; }
  let C = p.C;
  let cq = C / 4u;
  let w = lanes(lid, cq);
  let r0 = chunk * ROWS_PER_CHUNK;
  let n_rows = min(ROWS_PER_CHUNK, p.rows - r0);
  var k = array<DxRow, ROWS_PER_CHUNK>();
  var mean = array<f32, ROWS_PER_CHUNK>();
  var rstd = array<f32, ROWS_PER_CHUNK>();
  for (var j = 0u; j < n_rows; j++) {
    let base = (r0 + j) * cq;
    mean[j] = b_mean[r0 + j];
    rstd[j] = b_rstd[r0 + j];
    var sd = vec4(0.0);
    var sg = vec4(0.0);
    var sgd = vec4(0.0);
    for (var i = w.lane; i < w.end; i += w.n) {
      let d = b_x4[base + i] - mean[j];
      let g = b_dout4[base + i] * b_weight4[i];
      sd += d;
      sg += g;
      sgd += g * d;
    }
    k[j] = dx_row(subgroupAdd(vec3(sum4(sd), sum4(sg), sum4(sgd))), rstd[j], C);
  }
  for (var i = w.lane; i < w.end; i += w.n) {
    var dw = vec4(0.0);
    var db = vec4(0.0);
    let wt = b_weight4[i];
    for (var j = 0u; j < n_rows; j++) {
      let e = (r0 + j) * cq + i;
      let xhat = ((b_x4[e] - mean[j]) - k[j].corr) * rstd[j];
      let dout = b_dout4[e];
      let dx = rstd[j] * ((dout * wt - k[j].mean_g) - xhat * k[j].mean_gxhat);
      if (ACCUMULATE_DX) { b_dx4[e] += dx; } else { b_dx4[e] = dx; }
      dw += dout * xhat;
      db += dout;
    }
    b_partial4[chunk * cq + i] = dw;
    b_partial4[(p.nchunks + chunk) * cq + i] = db;
  }
}
