// Moving pixels between NCHW images and patch rows, and adding the fixed position embedding.
//
//   img      [N, C, H, W]    float32, patch size P, grid gh = H/P × gw = W/P, L = gh·gw patches,
//                            patch l = row·gw + col
//   patchify_conv    patches[N·L, C·P·P] = each patch in the conv weight's (C, P, P) order, so the
//                    patch embedding (a P×P stride-P conv) is a Linear with the weight viewed (D, C·P·P)
//   patchify_target  target[N, L, P·P·C] = each patch as [row-in-patch][col-in-patch][channel]
//                    (MAE's `patchify`, the pixel loss target; a different order from the conv's)
//   patchify_target_norm  the same rows standardised per patch as MAE's norm_pix_loss:
//                    (x − mean)/sqrt(var + 1e-6), mean and unbiased var over the row's P·P·C
//                    values (as ref/loss.ts's normalizePixelTargets), in the patchify pass: no raw copy
//   unpatchify       img[N, C, H, W] from target-ordered patches (the inverse of patchify_target)
//   add_pos_embed    x[N, L, D] += pos[pos_start + l·D + d], the fixed sin-cos table broadcast over N
//
// Bindings: 0 params, 1 the output (read_write), 2 the input.
// All outputs are `=` (rearrangements, one thread per output element, each written once;
// patchify_target_norm: one thread per patch) except add_pos_embed, which adds in place. Nothing is saved for a backward: the patch
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
const ROW_WG = 64u; // threads (patches) per workgroup of patchify_target_norm
const PIX_EPS = 1e-6; // MAE's norm_pix_loss eps

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

// dst = target [N, L, P·P·C] standardised per patch, src = img. One thread per patch (N·L
// threads on a 2-D grid): it reads its patch from the image three times, in target order —
// Σ x, then Σ (x − mean)² (two passes: stable where E[x²] − E[x]² is not), then writes
// (x − mean)/sd — so the raw patch is never stored. Unbiased variance as torch's Tensor.var
// (P·P·C = 1 gives NaN, as torch). The image reads of a patch hit the cache after the first pass.
@compute @workgroup_size(ROW_WG)
fn patchify_target_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = grid_index(wid, nwg, lid.x, ROW_WG); // n·L + l
  if (r >= u.N * u.L) { return; }
  let n = r / u.L;
  let l = r % u.L;
  let gw = u.W / u.P;
  let K = u.P * u.P * u.C;
  // (row-in-patch i, col j, channel c) is img[n, c, y0 + i, x0 + j] = src[corner + c·H·W + i·W + j].
  let corner = (n * u.C * u.H + (l / gw) * u.P) * u.W + (l % gw) * u.P;
  let plane = u.H * u.W;
  var s = 0.0;
  for (var i = 0u; i < u.P; i++) {
    for (var j = 0u; j < u.P; j++) {
      for (var c = 0u; c < u.C; c++) { s += src[corner + c * plane + i * u.W + j]; }
    }
  }
  let mean = s / f32(K);
  var q = 0.0;
  for (var i = 0u; i < u.P; i++) {
    for (var j = 0u; j < u.P; j++) {
      for (var c = 0u; c < u.C; c++) {
        let d = src[corner + c * plane + i * u.W + j] - mean;
        q += d * d;
      }
    }
  }
  let sd = sqrt(q / f32(K - 1u) + PIX_EPS);
  var k = r * K;
  for (var i = 0u; i < u.P; i++) {
    for (var j = 0u; j < u.P; j++) {
      for (var c = 0u; c < u.C; c++) {
        dst[k] = (src[corner + c * plane + i * u.W + j] - mean) / sd;
        k++;
      }
    }
  }
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
