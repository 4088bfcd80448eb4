// Element-wise ops: exact GELU (and its fusion with a bias), residual add, scale, fill.
//
//   gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2))   (exact erf, not the tanh approximation)
//   gelu'(x) = Φ(x) + x·φ(x)
//   n elements; bias_gelu_* see x as [R,C] rows × channels and add bias[C] first.
//
// Every entry point binds 0 = params {n, C, s}; its storage bindings, outputs first:
//   gelu_forward        1 out[n] =,  2 x
//   gelu_backward       1 dx[n] =,   2 dout, 3 x
//   bias_gelu_forward   1 out[R,C] =, 2 x, 3 bias[C]
//   bias_gelu_backward  1 dx[R,C] =, 2 dout, 3 x, 4 bias[C]    (dbias is then Σ_rows dx, by matmul's bias_backward)
//   add                 1 out[n] =,  2 a, 3 b
//   add_inplace         1 out[n] +=, 2 a                         (residual backward: the shortcut accumulates)
//   scale               1 out[n] =,  2 x                         out = s·x
//   scale_inplace       1 out[n] =                               out = s·out
//   fill                1 out[n] =                               out = s
// Nothing is saved: the backward recomputes from x. Activation gradients are assigned.
// Storage is declared read_write throughout: WebGPU forbids binding one buffer both read-only and
// writable in a dispatch, and inputs and outputs are often slices of the same arena. An output
// must not overlap an input of the same dispatch (in-place ops have their own entry points).
//
// Geometry: WG threads per workgroup, one element per thread, the workgroups laid out on a 2-D
// grid (x ≤ 65535, common/grid) so that n may exceed 65535·WG.

// #import common/erf
// #import common/grid

struct Params { n: u32, C: u32, s: f32, _pad: u32 }

const WG = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> in0: array<f32>;
@group(0) @binding(3) var<storage, read_write> in1: array<f32>;
@group(0) @binding(4) var<storage, read_write> in2: array<f32>;

fn gelu(x: f32) -> f32 {
  return x * normal_cdf(x);
}

fn gelu_grad(x: f32) -> f32 {
  return normal_cdf(x) + x * normal_pdf(x);
}

@compute @workgroup_size(WG)
fn gelu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = gelu(in0[i]);
}

// in0 = dout, in1 = x
@compute @workgroup_size(WG)
fn gelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = gelu_grad(in1[i]) * in0[i];
}

// in0 = x, in1 = bias
@compute @workgroup_size(WG)
fn bias_gelu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = gelu(in0[i] + in1[i % p.C]);
}

// in0 = dout, in1 = x, in2 = bias
@compute @workgroup_size(WG)
fn bias_gelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = gelu_grad(in1[i] + in2[i % p.C]) * in0[i];
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = in0[i] + in1[i];
}

@compute @workgroup_size(WG)
fn add_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] += in0[i];
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = p.s * in0[i];
}

@compute @workgroup_size(WG)
fn scale_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] *= p.s;
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = p.s;
}
