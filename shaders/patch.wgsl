// Moving pixels between NCHW images and patch rows, and adding the fixed position embedding.
//
//   img      [N, C, H, W]    float32, patch size P, grid gh = H/P × gw = W/P, L = gh·gw patches,
//                            patch l = row·gw + col
//   patchify_conv    patches[N·L, C·P·P] = each patch in the conv weight's (C, P, P) order, so the
//                    patch embedding (a P×P stride-P conv) is a Linear with the weight viewed (D, C·P·P)
//   patchify_target  target[N, L, P·P·C] = each patch as [row-in-patch][col-in-patch][channel]
//                    (MAE's `patchify`, the pixel loss target; a different order from the conv's)
//   unpatchify       img[N, C, H, W] from target-ordered patches (the inverse of patchify_target)
//   add_pos_embed    x[N, L, D] += pos[pos_start + l·D + d], the fixed sin-cos table broadcast over N
//
// Bindings: 0 params, 1 the output (read_write), 2 the input.
// All outputs are `=` (pure rearrangements, one thread per output element, each written once)
// except add_pos_embed, which adds in place. Nothing is saved for a backward: the patch
// embedding's weight gradient comes from linearBackward on the saved patches, the image needs
// no gradient, and the position embedding is fixed, so add_pos_embed's backward is the identity.
//
// Dispatch: 256 threads per workgroup on a 2-D grid of workgroups (x up to 65535), so that a
// large batch never needs more than 65535 workgroups in one dimension (common/grid).

// #import common/grid

struct Params {
  N: u32, C: u32, H: u32, W: u32,
  P: u32, D: u32, L: u32, pos_start: u32,
}

const WG = 256u; // threads per workgroup of the element kernels (grid2d's perGroup)

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> src: array<f32>;

// img element for (n, c, patch l, pixel (i, j) inside the patch).
fn img_index(n: u32, c: u32, l: u32, i: u32, j: u32) -> u32 {
  let gw = u.W / u.P;
  let y = (l / gw) * u.P + i;
  let x = (l % gw) * u.P + j;
  return ((n * u.C + c) * u.H + y) * u.W + x;
}

// dst = patches [N·L, C·P·P], src = img.
@compute @workgroup_size(WG)
fn patchify_conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  let K = u.C * u.P * u.P;
  if (t >= u.N * u.L * K) { return; }
  let k = t % K;
  let r = t / K; // n·L + l
  let c = k / (u.P * u.P);
  let i = (k / u.P) % u.P;
  let j = k % u.P;
  dst[t] = src[img_index(r / u.L, c, r % u.L, i, j)];
}

// dst = target [N, L, P·P·C], src = img.
@compute @workgroup_size(WG)
fn patchify_target(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  let K = u.P * u.P * u.C;
  if (t >= u.N * u.L * K) { return; }
  let k = t % K;
  let r = t / K;
  let c = k % u.C;
  let j = (k / u.C) % u.P;
  let i = k / (u.C * u.P);
  dst[t] = src[img_index(r / u.L, c, r % u.L, i, j)];
}

// dst = img [N, C, H, W], src = patches [N, L, P·P·C]; one thread per pixel, so the image is
// gathered (each pixel written once) rather than scattered.
@compute @workgroup_size(WG)
fn unpatchify(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * u.C * u.H * u.W) { return; }
  let x = t % u.W;
  let y = (t / u.W) % u.H;
  let c = (t / (u.W * u.H)) % u.C;
  let n = t / (u.W * u.H * u.C);
  let l = (y / u.P) * (u.W / u.P) + x / u.P;
  let k = ((y % u.P) * u.P + x % u.P) * u.C + c;
  dst[t] = src[(n * u.L + l) * (u.P * u.P * u.C) + k];
}

// dst = x [N, L, D] (in place), src = pos table; the slice used starts at element pos_start
// (D to skip a cls row), so the caller can bind the whole (1+L)·D table at any width.
@compute @workgroup_size(WG)
fn add_pos_embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  let LD = u.L * u.D;
  if (t >= u.N * LD) { return; }
  dst[t] = dst[t] + src[u.pos_start + t % LD];
}
