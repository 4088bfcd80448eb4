// Multi-head self-attention: scores + softmax, the weighted sum of values, and their backward.
//
// Shape letters: B batch, T tokens, H heads, hd head width, D = H·hd model width.
//   qkv     [B, T, 3D]   output of the fused qkv Linear: q = [.., 0:D], k = [.., D:2D], v = [.., 2D:3D];
//                        head h uses channels h·hd .. (h+1)·hd of each part
//   probs   [B, H, T, T] P_ij = softmax_j(q_i·k_j · scale), scale = hd^-0.5 (row max subtracted)
//   out     [B, T, D]    Σ_j P_ij v_j, heads concatenated along channels (ready for `proj`)
//   dscores [B, H, T, T] dS = P ⊙ (dP − rowsum(dP ⊙ P)), dP = dout·vᵀ (a scratch tensor, unscaled)
//
// Entry points (binding 0 is Params in each; storage from 1, outputs first, then inputs):
//   attention_scores          1 probs (=)    2 qkv
//   attention_weighted_sum    1 out (=)      2 probs    3 qkv
//   attention_backward_scores 1 dscores (=)  2 dout     3 qkv    4 probs
//   attention_backward_qkv    1 dqkv (=)     2 dscores  3 probs  4 qkv   5 dout
//        dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout; all three parts of dqkv are assigned.
//
// The forward saves probs for the backward. There are no parameters, so every output is
// assigned (=), never accumulated.
//
// Two kinds of kernel:
//   row kernels (scores, backward_scores): a workgroup per (row block of ROWS queries, h, b);
//     the ROWS query rows (q, or dout) are staged in workgroup memory and each thread takes
//     keys j = lane, lane+64, .., computing ROWS dot products per key row it reads (the key
//     row is read once for all ROWS queries). Row reductions (max, sum, rowsum) are a
//     per-thread loop in j order, then a fixed tree over the 64 lanes.
//   column kernels (weighted_sum, backward_qkv): one thread per (block of BLOCK rows, channel d)
//     of one (b, h), looping over the T tokens in order; neighbouring threads take neighbouring
//     channels, so value reads are contiguous and probability reads are shared.
// Every output element is written by exactly one thread, summing in a fixed order: the same
// inputs give bit-identical outputs.
//
// This is the 'workgroup' variant (any device); shaders/attention_subgroups.wgsl is the
// 'subgroup' one (same entry points and bindings), for devices with subgroups. Params, the
// bindings and the tensor indexing (qkv_at, btd_at, bhtt_at) are declared once for both in
// common/attention_io.

// #import common/attention_io

const WG = 64u;       // threads per workgroup in every entry point
const ROWS = 8u;      // query rows per workgroup in the row kernels
const MAX_HD = 256u;  // staged rows: ROWS·MAX_HD floats = 8 KiB of workgroup memory
const BLOCK = 4u;     // rows per thread in the column kernels
const NEG_BIG = -3.402823e38;

var<workgroup> staged: array<f32, ROWS * MAX_HD>;  // [ROWS][hd] query-side rows of the row kernels
var<workgroup> red: array<f32, ROWS * WG>;        // [ROWS][WG] per-lane partials of the row reductions

/**
 * Reduces red[r][0..WG) into red[r][0] for every row r, by max or by sum, in a fixed tree.
 * Starts with a barrier (the lanes' partials must be written) and ends with one.
 * Not common/reduce's workgroup_sum: this reduces ROWS rows at once, by max as well as by sum.
 */
fn reduce_rows(lane: u32, take_max: bool) {
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) {
      for (var r = 0u; r < ROWS; r++) {
        let a = red[r * WG + lane];
        let b = red[r * WG + lane + s];
        red[r * WG + lane] = select(a + b, max(a, b), take_max);
      }
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn attention_scores(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
  let hd = p.hd;
  // Rows past T are staged as zeros; their scores are computed but never written.
  for (var e = lane; e < ROWS * hd; e += WG) {
    let i = i0 + e / hd;
    staged[e] = select(0.0, s_qkv[qkv_at(b, min(i, T - 1u), 0u, h, e % hd)], i < T);
  }
  workgroupBarrier();

  // Pass 1: raw scores into probs, and each lane's running row max.
  var mx = array<f32, ROWS>();
  for (var r = 0u; r < ROWS; r++) { mx[r] = NEG_BIG; }
  for (var j = lane; j < T; j += WG) {
    // Explicit initialiser: a bare `var acc: array<..>;` in a loop was not re-zeroed on every
    // iteration by Dawn's lavapipe path (though WGSL says it must be), so every var here has one.
    var acc = array<f32, ROWS>();
    let kb = qkv_at(b, j, 1u, h, 0u);
    for (var d = 0u; d < hd; d++) {
      let kv = s_qkv[kb + d];
      for (var r = 0u; r < ROWS; r++) { acc[r] += staged[r * hd + d] * kv; }
    }
    for (var r = 0u; r < ROWS; r++) {
      let s = acc[r] * p.scale;
      mx[r] = max(mx[r], s);
      if (i0 + r < T) { s_probs[bhtt_at(b, h, i0 + r, j)] = s; }
    }
  }
  for (var r = 0u; r < ROWS; r++) { red[r * WG + lane] = mx[r]; }
  reduce_rows(lane, true);
  for (var r = 0u; r < ROWS; r++) { mx[r] = red[r * WG]; }
  workgroupBarrier(); // every lane has read the maxima before red is reused

  // Pass 2: exp(s − max) (stable: every exponent ≤ 0), and each lane's partial row sum.
  var sum = array<f32, ROWS>();
  for (var j = lane; j < T; j += WG) {
    for (var r = 0u; r < ROWS; r++) {
      if (i0 + r < T) {
        let at = bhtt_at(b, h, i0 + r, j);
        let e = exp(s_probs[at] - mx[r]);
        s_probs[at] = e;
        sum[r] += e;
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) { red[r * WG + lane] = sum[r]; }
  reduce_rows(lane, false);

  // Pass 3: normalise. The row's own max term is exp(0) = 1, so every sum is ≥ 1.
  for (var j = lane; j < T; j += WG) {
    for (var r = 0u; r < ROWS; r++) {
      if (i0 + r < T) {
        let at = bhtt_at(b, h, i0 + r, j);
        s_probs[at] = s_probs[at] / red[r * WG];
      }
    }
  }
}

@compute @workgroup_size(WG)
fn attention_weighted_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.y;
  let b = gid.z;
  let T = p.T;
  let hd = p.hd;
  let n = gid.x;
  if (n >= ((T + BLOCK - 1u) / BLOCK) * hd) { return; }
  let d = n % hd;
  let i0 = (n / hd) * BLOCK;
  var acc = array<f32, BLOCK>();
  for (var j = 0u; j < T; j++) {
    let v = w_qkv[qkv_at(b, j, 2u, h, d)];
    for (var r = 0u; r < BLOCK; r++) {
      acc[r] += w_probs[bhtt_at(b, h, min(i0 + r, T - 1u), j)] * v;
    }
  }
  for (var r = 0u; r < BLOCK; r++) {
    if (i0 + r < T) { w_out[btd_at(b, i0 + r, h, d)] = acc[r]; }
  }
}

@compute @workgroup_size(WG)
fn attention_backward_scores(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
  let hd = p.hd;
  for (var e = lane; e < ROWS * hd; e += WG) {
    let i = i0 + e / hd;
    staged[e] = select(0.0, bs_dout[btd_at(b, min(i, T - 1u), h, e % hd)], i < T);
  }
  workgroupBarrier();

  // Pass 1: dP = dout·vᵀ into dscores, and each lane's partial of rowsum(dP ⊙ P).
  var rowdot = array<f32, ROWS>();
  for (var j = lane; j < T; j += WG) {
    var acc = array<f32, ROWS>();
    let vb = qkv_at(b, j, 2u, h, 0u);
    for (var d = 0u; d < hd; d++) {
      let vv = bs_qkv[vb + d];
      for (var r = 0u; r < ROWS; r++) { acc[r] += staged[r * hd + d] * vv; }
    }
    for (var r = 0u; r < ROWS; r++) {
      if (i0 + r < T) {
        let at = bhtt_at(b, h, i0 + r, j);
        bs_dscores[at] = acc[r];
        rowdot[r] += acc[r] * bs_probs[at];
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) { red[r * WG + lane] = rowdot[r]; }
  reduce_rows(lane, false);

  // Pass 2: dS = P ⊙ (dP − rowsum).
  for (var j = lane; j < T; j += WG) {
    for (var r = 0u; r < ROWS; r++) {
      if (i0 + r < T) {
        let at = bhtt_at(b, h, i0 + r, j);
        bs_dscores[at] = bs_probs[at] * (bs_dscores[at] - red[r * WG]);
      }
    }
  }
}

@compute @workgroup_size(WG)
fn attention_backward_qkv(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.y;
  let b = gid.z;
  let T = p.T;
  let hd = p.hd;
  let n = gid.x;
  if (n >= ((T + BLOCK - 1u) / BLOCK) * hd) { return; }
  let d = n % hd;
  let i0 = (n / hd) * BLOCK;
  // Thread owns rows i0..i0+BLOCK of channel d in all three parts: dq from the rows of dS,
  // dk and dv from its columns (dSᵀ, Pᵀ), all in one pass over the tokens m.
  var dq = array<f32, BLOCK>();
  var dk = array<f32, BLOCK>();
  var dv = array<f32, BLOCK>();
  for (var m = 0u; m < T; m++) {
    let qm = bq_qkv[qkv_at(b, m, 0u, h, d)];
    let km = bq_qkv[qkv_at(b, m, 1u, h, d)];
    let gm = bq_dout[btd_at(b, m, h, d)];
    for (var r = 0u; r < BLOCK; r++) {
      let i = min(i0 + r, T - 1u);
      dq[r] += bq_dscores[bhtt_at(b, h, i, m)] * km;
      dk[r] += bq_dscores[bhtt_at(b, h, m, i)] * qm;
      dv[r] += bq_probs[bhtt_at(b, h, m, i)] * gm;
    }
  }
  for (var r = 0u; r < BLOCK; r++) {
    let i = i0 + r;
    if (i < T) {
      bq_dqkv[qkv_at(b, i, 0u, h, d)] = dq[r] * p.scale;
      bq_dqkv[qkv_at(b, i, 1u, h, d)] = dk[r] * p.scale;
      bq_dqkv[qkv_at(b, i, 2u, h, d)] = dv[r];
    }
  }
}
