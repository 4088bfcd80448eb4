// Layer norm's row kernels, the parts their two variants share (layernorm.wgsl: workgroup-memory
// reductions; layernorm_subgroups.wgsl: subgroup reductions): the Params uniform (every
// layer-norm kernel's), ROWS_PER_CHUNK, the ACCUMULATE_DX override, the row kernels' bindings, and
// the maths of one element, so that the variants differ only in how they stride over a row and
// sum it. See layernorm.wgsl's header for the maths and the numerics.
//
//   R rows, C channels. Binding 0 = params {rows, C, eps, nchunks}; storage, outputs first:
//   layernorm_forward      1 out[R,C] =, 2 mean[R] =, 3 rstd[R] =, 4 x, 5 weight, 6 bias
//   layernorm_backward_dx  1 dx[R,C] = or += (ACCUMULATE_DX), 2 corr[R] = (scratch), 3 dout, 4 x,
//                          5 weight, 6 mean, 7 rstd (layernorm_backward_dx_partial, in
//                          layernorm_subgroups.wgsl: the same with 2 = partial[2, nchunks, C])
// The per-channel backward kernels (backward_partial, backward_params) exist only in
// layernorm.wgsl and declare their bindings there.
//
// Use: `// #import common/layernorm_rows` (after any `enable`). Each entry point binds only the
// variables it uses (layout 'auto'), so the two kernels' declarations share binding numbers.
// Below, e is an element's index in x (row·C + c) and c its channel.

struct Params { rows: u32, C: u32, eps: f32, nchunks: u32 }

// dweight/dbias are summed over chunks of this many rows (in order) into a partial[2, nchunks, C],
// then over the chunks in order (layernorm.wgsl's backward_params).
const ROWS_PER_CHUNK = 32u;

// dx accumulates instead of being assigned: the residual stream's gradient takes the norm's
// contribution in the same pass (dres += dx_norm) rather than through a scratch and an add.
override ACCUMULATE_DX: bool = false;

@group(0) @binding(0) var<uniform> p: Params;

// layernorm_forward
@group(0) @binding(1) var<storage, read_write> f_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> f_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> f_rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> f_weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> f_bias: array<f32>;

// layernorm_backward_dx
@group(0) @binding(1) var<storage, read_write> b_dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> b_corr: array<f32>;
@group(0) @binding(3) var<storage, read_write> b_dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> b_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> b_weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> b_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> b_rstd: array<f32>;

// Forward: element e's distance from the row mean, in the shifted form (x − x[r,0]) − mean_d.
fn centered(e: u32, shift: f32, mean_d: f32) -> f32 {
  return (f_x[e] - shift) - mean_d;
}

// out = xhat·weight + bias, xhat = centered·rstd.
fn write_out(e: u32, c: u32, shift: f32, mean_d: f32, rstd: f32) {
  let xhat = centered(e, shift, mean_d) * rstd;
  f_out[e] = xhat * f_weight[c] + f_bias[c];
}

// Backward_dx: element e's terms of the three row sums (Σd, Σg, Σg·d), d = x − mean, g = dout·weight.
fn dx_terms(e: u32, c: u32, mean: f32) -> vec3<f32> {
  let d = b_x[e] - mean;
  let g = b_dout[e] * b_weight[c];
  return vec3(d, g, g * d);
}

// What dx needs of its row, from the row sums: corr = Σd/C (the saved mean's rounding), mean(g),
// and mean(g·xhat) = rstd·(Σg·d − corr·Σg)/C.
struct DxRow { corr: f32, mean_g: f32, mean_gxhat: f32 }

fn dx_row(sums: vec3<f32>, rstd: f32, C: u32) -> DxRow {
  let inv_c = 1.0 / f32(C);
  let corr = sums.x * inv_c;
  return DxRow(corr, sums.y * inv_c, rstd * (sums.z - corr * sums.y) * inv_c);
}

// dx = rstd·(g − mean(g) − xhat·mean(g·xhat)), xhat = (x − mean − corr)·rstd; assigned, or added
// with ACCUMULATE_DX. Returns xhat (dweight's factor).
fn write_dx(e: u32, c: u32, mean: f32, rstd: f32, k: DxRow) -> f32 {
  let xhat = ((b_x[e] - mean) - k.corr) * rstd;
  let g = b_dout[e] * b_weight[c];
  let dx = rstd * (g - k.mean_g - xhat * k.mean_gxhat);
  if (ACCUMULATE_DX) { b_dx[e] += dx; } else { b_dx[e] = dx; }
  return xhat;
}
