// MAE's masking on the GPU: keep the visible tokens (encoder), put mask tokens back and unshuffle
// (decoder), and their backwards. The random masking itself runs on the CPU (src/core/masking.ts)
// and arrives as ids.
//
//   N batch, L patches, V visible (len_keep), D width
//   ids_keep    [N, V]  u32, the kept patch indices in shuffled order
//   ids_restore [N, L]  u32, shuffled position of patch l (kept iff ids_restore < V)
//
//   gather_visible          out[N, 1+V, D] = cls ++ x[n, ids_keep[n, j]]       x [N, L, D]
//   gather_visible_zero     dx[N, L, D] = 0                                    } gatherVisibleBackward
//   gather_visible_scatter  dx[n, ids_keep[n, j]] = dout[n, 1+j]               } (two passes: zero,
//   cls_backward            dcls[D] += Σ_n dout[n, 0] (= without ACCUMULATE)   }  then scatter)
//   insert_mask_tokens      out[N, 1+L, D]: row 0 = x[n, 0]; row 1+l = x[n, 1+j] if
//                           j = ids_restore[n, l] < V, else mask_token         x [N, 1+V, D]
//   insert_mask_tokens_backward  dx[N, 1+V, D] = the kept rows of dout, unshuffled back
//   mask_token_backward     dmask_token[D] += Σ over masked (n, l) of dout[n, 1+l] (= without ACCUMULATE)
//
// Embedding only the visible patches (the encoders' path: the patch embedding is per patch, so
// gathering first gives the same tokens for V/L of the work):
//   gather_patches          out[N, V, D] = x[n, ids_keep[n, j]]               x [N, L, D] (D = C·p·p)
//   embed_visible           out[N, 1+V, D]: row 0 = cls; row 1+j = x[n, j] + pos[1 + ids_keep[n, j]]
//                           x [N, V, D] (the embedded visible patches), pos [1+L, D]
//   strip_cls               dx[N, V, D] = dout[n, 1+j]: embed_visible's backward to x (pos is fixed;
//                           cls_backward gives dcls); also the decoder's prediction without its
//                           cls row (V = L)
//   pad_cls                 dx[N, 1+V, D]: row 0 = 0, row 1+j = dout[n, j] (strip_cls's backward)
//
// Bindings: 0 params, 1 the output (read_write), 2 the token rows (x / dout), 3 the token
// vector (cls / mask_token), 4 the ids (u32), 5 the position embedding (embed_visible). An entry point binds only what it uses (the
// wrapper passes `undefined` for the holes).
// `=`: out, dx (activation gradients). `+=`: dcls, dmask_token (parameter gradients).
// Nothing is saved beyond the ids. Every output element is written by exactly one thread (the
// ids of one image are distinct), and the two sums run over n, l in order: no atomics, and the
// same inputs give the same bits.
// Element kernels: 256 threads per workgroup on a 2-D grid of workgroups (common/grid).

// #import common/grid

struct Params { N: u32, L: u32, V: u32, D: u32 }

const WG = 256u; // threads per workgroup of the element kernels (grid2d's perGroup)
// cls_backward, mask_token_backward: the parameter gradient += the sum (else =: a step's first backward).
override ACCUMULATE: bool = true;

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> rows: array<f32>;
@group(0) @binding(3) var<storage, read_write> token: array<f32>;
@group(0) @binding(4) var<storage, read_write> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> pos: array<f32>;

// dst = out [N, 1+V, D], rows = x [N, L, D], token = cls [D], ids = ids_keep [N, V].
@compute @workgroup_size(WG)
fn gather_visible(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * (1u + u.V) * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D;
  let n = r / (1u + u.V);
  let j = r % (1u + u.V);
  if (j == 0u) {
    dst[t] = token[d];
  } else {
    dst[t] = rows[(n * u.L + ids[n * u.V + j - 1u]) * u.D + d];
  }
}

// dst = dx [N, L, D]: clear it, so the masked rows read zero after the scatter.
@compute @workgroup_size(WG)
fn gather_visible_zero(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * u.L * u.D) { return; }
  dst[t] = 0.0;
}

// dst = dx [N, L, D], rows = dout [N, 1+V, D], ids = ids_keep [N, V]. One thread per (n, j, d);
// the V ids of an image are distinct, so no two threads write the same element.
@compute @workgroup_size(WG)
fn gather_visible_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * u.V * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D; // n·V + j
  let n = r / u.V;
  let j = r % u.V;
  dst[(n * u.L + ids[r]) * u.D + d] = rows[(n * (1u + u.V) + 1u + j) * u.D + d];
}

// dst = dcls [D] (+=), rows = dout [N, 1+V, D]. One thread per channel, images in order.
@compute @workgroup_size(64)
fn cls_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let d = gid.x;
  if (d >= u.D) { return; }
  var s = 0.0;
  for (var n = 0u; n < u.N; n++) { s += rows[n * (1u + u.V) * u.D + d]; }
  if (ACCUMULATE) { dst[d] += s; } else { dst[d] = s; }
}

// dst = out [N, 1+L, D], rows = x [N, 1+V, D], token = mask_token [D], ids = ids_restore [N, L].
@compute @workgroup_size(WG)
fn insert_mask_tokens(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * (1u + u.L) * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D;
  let n = r / (1u + u.L);
  let i = r % (1u + u.L);
  if (i == 0u) {
    dst[t] = rows[n * (1u + u.V) * u.D + d];
    return;
  }
  let j = ids[n * u.L + i - 1u];
  if (j < u.V) {
    dst[t] = rows[(n * (1u + u.V) + 1u + j) * u.D + d];
  } else {
    dst[t] = token[d];
  }
}

// dst = dx [N, 1+V, D], rows = dout [N, 1+L, D], ids = ids_restore [N, L]. One thread per
// (n, row of dout, d): row 0 and each kept row land on a distinct row of dx, and together they
// cover all of dx (ids_restore is a permutation, so each j < V occurs once), so every element of
// dx is written exactly once and no clearing pass is needed.
@compute @workgroup_size(WG)
fn insert_mask_tokens_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * (1u + u.L) * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D;
  let n = r / (1u + u.L);
  let i = r % (1u + u.L);
  if (i == 0u) {
    dst[n * (1u + u.V) * u.D + d] = rows[t];
    return;
  }
  let j = ids[n * u.L + i - 1u];
  if (j < u.V) {
    dst[(n * (1u + u.V) + 1u + j) * u.D + d] = rows[t];
  }
}

// dst = dmask_token [D] (+=), rows = dout [N, 1+L, D], ids = ids_restore [N, L].
// One thread per channel, (n, l) in order.
@compute @workgroup_size(64)
fn mask_token_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let d = gid.x;
  if (d >= u.D) { return; }
  var s = 0.0;
  for (var n = 0u; n < u.N; n++) {
    for (var l = 0u; l < u.L; l++) {
      if (ids[n * u.L + l] >= u.V) { s += rows[(n * (1u + u.L) + 1u + l) * u.D + d]; }
    }
  }
  if (ACCUMULATE) { dst[d] += s; } else { dst[d] = s; }
}

// dst = out [N, V, D], rows = x [N, L, D], ids = ids_keep [N, V].
@compute @workgroup_size(WG)
fn gather_patches(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * u.V * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D; // n·V + j
  let n = r / u.V;
  dst[t] = rows[(n * u.L + ids[r]) * u.D + d];
}

// dst = out [N, 1+V, D], rows = x [N, V, D], token = cls [D], ids = ids_keep [N, V], pos = [1+L, D].
// The cls row takes cls alone: pos_embed's row 0 is zeros (fixed sin-cos, recipe §4).
@compute @workgroup_size(WG)
fn embed_visible(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * (1u + u.V) * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D;
  let n = r / (1u + u.V);
  let j = r % (1u + u.V);
  if (j == 0u) {
    dst[t] = token[d];
  } else {
    let v = n * u.V + j - 1u;
    dst[t] = rows[v * u.D + d] + pos[(1u + ids[v]) * u.D + d];
  }
}

// dst = dx [N, V, D], rows = dout [N, 1+V, D].
@compute @workgroup_size(WG)
fn strip_cls(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * u.V * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D; // n·V + j
  let n = r / u.V;
  let j = r % u.V;
  dst[t] = rows[(n * (1u + u.V) + 1u + j) * u.D + d];
}

// dst = dx [N, 1+V, D], rows = dout [N, V, D].
@compute @workgroup_size(WG)
fn pad_cls(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = grid_index(wid, nwg, lid.x, WG);
  if (t >= u.N * (1u + u.V) * u.D) { return; }
  let d = t % u.D;
  let r = t / u.D; // n·(1+V) + j
  let n = r / (1u + u.V);
  let j = r % (1u + u.V);
  if (j == 0u) {
    dst[t] = 0.0;
  } else {
    dst[t] = rows[(n * u.V + j - 1u) * u.D + d];
  }
}
