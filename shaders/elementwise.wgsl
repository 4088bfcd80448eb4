// Element-wise ops: residual add (and its in-place backward), scale, fill.
//
//   n elements, flat.
//
// Every entry point binds 0 = params {n, s}; its storage bindings, outputs first:
//   add                 1 out[n] =,  2 a, 3 b
//   add_inplace         1 out[n] +=, 2 a                         (residual backward: the shortcut accumulates)
//   scale               1 out[n] =,  2 x                         out = s·x
//   scale_inplace       1 out[n] =                               out = s·out
//   fill                1 out[n] =                               out = s
//   scale_by_inplace    1 out[n] =,  2 by[1]                     out = by[0]·out (a scale kept on the GPU: the loss scale)
// Nothing is saved for a backward. The exact GELU is not here: it is fused into the Linear layers
// around it (matmul.wgsl's gelu / gelu_grad epilogues, common/gelu).
// Storage is declared read_write throughout: WebGPU forbids binding one buffer both read-only and
// writable in a dispatch, and inputs and outputs are often slices of the same arena. An output
// must not overlap an input of the same dispatch (in-place ops have their own entry points).
//
// Geometry: WG threads per workgroup, one element per thread, the workgroups laid out on a 2-D
// grid (x ≤ 65535, common/grid) so that n may exceed 65535·WG.

// #import common/grid

struct Params { n: u32, s: f32, _p0: u32, _p1: u32 }

const WG = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> in0: array<f32>;
@group(0) @binding(3) var<storage, read_write> in1: array<f32>;

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

@compute @workgroup_size(WG)
fn scale_by_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = grid_index(wid, nwg, lid, WG);
  if (i >= p.n) { return; }
  out[i] = in0[0] * out[i];
}
