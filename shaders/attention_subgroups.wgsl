// Multi-head self-attention for SIMD-style devices with subgroups: the 'subgroup' variant of
// shaders/attention.wgsl, for devices with the WebGPU feature 'subgroups'. Same maths, shapes,
// Params, bindings and outputs as there (see its header); Params, the bindings and the tensor
// indexing are declared once for both in common/attention_io:
//
//   B batch, T tokens, H heads, hd head width, D = H·hd.
//   qkv [B,T,3D] (q | k | v, head h = channels h·hd..), probs [B,H,T,T] = softmax_j(q_i·k_j·scale),
//   out [B,T,D] = Σ_j P_ij v_j, dscores [B,H,T,T] = P ⊙ (dP − rowsum(dP ⊙ P)), dP = dout·vᵀ.
//   Binding 0 = Params {B, T, H, hd, scale}; storage, outputs first:
//   attention_scores          1 probs (=)    2 qkv
//   attention_weighted_sum    1 out (=)      2 probs    3 qkv
//   attention_backward_scores 1 dscores (=)  2 dout     3 qkv    4 probs
//   attention_backward_qkv    1 dqkv (=)     2 dscores  3 probs  4 qkv   5 dout
// The forward saves probs for the backward; every output is assigned (=), none accumulated.
//
// Why: CPU adapters (lavapipe, SwiftShader) run a subgroup as one SIMD vector, pay dearly for
// barriers, and inside a loop load every value lane by lane (a gather), even one that all lanes
// share. So here: no barrier and no workgroup memory (row max and sums are subgroupMax /
// subgroupAdd); register blocks (KEYS keys or CH channels by ROWS rows per lane), so that each
// load feeds several products; and the operand every lane shares is loaded SG_WG elements at a
// time, one per lane, and handed round with subgroupShuffle (one load instead of SG_WG).
//
// Geometry: SG_WG invocations per workgroup, set by the wrapper to the adapter's subgroup size,
// so that the workgroup is usually exactly one subgroup ("fast": then lanes are the subgroup ids
// 0..SG_WG−1 and values may be shuffled). WebGPU does not promise that mapping, so:
//   row kernels (scores, backward_scores): a workgroup per (block of ROWS query rows, h, b); the
//     subgroup holding invocation 0 takes keys j0 + c·n + rank (c < KEYS, n its invocations,
//     rank = subgroupExclusiveAdd(1): dense 0..n−1 whatever the mapping); any other subgroup of
//     the workgroup loops over nothing. Not fast: the shared operand is loaded by each lane.
//   column kernels (weighted_sum, backward_qkv): a workgroup per (block of ROWS rows, h,
//     b); lane l takes channels d0 + c·SG_WG + l (l = subgroup id when fast, else
//     local_invocation_index) and sums over the tokens in order, in either path: the same
//     products in the same order as the workgroup variant's column kernels.
// Determinism: each output element is written by one invocation; for a given pipeline and device
// the subgroup mapping and the order of subgroupMax/subgroupAdd are fixed, so the same inputs
// give the same bits (close to, not equal to, the workgroup variant's probs and dscores).
//
// Softmax: one pass writes the raw scores and keeps, per lane and row, a running max and a sum
// of exp(s − max) rescaled when the max grows (online softmax); the lanes' sums are brought to
// the row max and added; a second pass writes exp(s − max) / sum. Every exponent is ≤ 0.
enable subgroups;
// Subgroup operations inside loops whose bounds WGSL cannot prove uniform (they come from
// subgroupAdd / subgroupAny, which are uniform over the subgroup): see "Geometry".
diagnostic(off, subgroup_uniformity);

// #import common/attention_io

const MAX_ROWS = 32u; // bound of ROWS
const MAX_KEYS = 4u; // bound of KEYS
const MAX_CH = 4u;   // bound of CH
const NEG_BIG = -3.402823e38;

// Invocations per workgroup; at most 256.
override SG_WG: u32 = 32u;
// Query rows per workgroup (1..MAX_ROWS).
override ROWS: u32 = 8u;
// Register blocking: keys per lane per step in the row kernels (1..MAX_KEYS), channels per lane
// per step in the column kernels (1..MAX_CH).
override KEYS: u32 = 1u;
override CH: u32 = 1u;

// How the invocations of a workgroup share the work (Geometry). Call from uniform control flow.
struct Lanes {
  lane: u32,  // rank in the subgroup (dense 0..n−1); = subgroup_invocation_id when fast
  n: u32,     // invocations in the subgroup
  works: bool, // the subgroup holds invocation 0
  fast: bool,  // the subgroup is the whole workgroup, ids 0..SG_WG−1: values can be shuffled
}

fn lanes(lid: u32, sid: u32) -> Lanes {
  let n = subgroupAdd(1u);
  return Lanes(subgroupExclusiveAdd(1u), n, subgroupAny(lid == 0u), n == SG_WG && subgroupAll(sid < SG_WG));
}

// ---------------------------------------------------------------------------------------------
// Row kernels: the ROWS × KEYS block of dot products of one lane, rows a = ab[r] + d (the same
// for every lane) against the lane's keys bb[c] + d, summed over d in order. Two copies that
// differ only in the arrays they read (scores: q·kᵀ from qkv; backward: dout·vᵀ): WGSL cannot pass
// a storage array to a function (a storage pointer parameter needs the language extension
// unrestricted_pointer_parameters, which not every browser has and the variant's device check
// does not ask for), and one function reading both kernels' arrays would make each kernel bind
// the other's buffers.

fn dots_scores(ab: array<u32, MAX_ROWS>, bb: array<u32, MAX_KEYS>, lane: u32, fast: bool) -> array<f32, MAX_ROWS * MAX_KEYS> {
  let hd = p.hd;
  var acc = array<f32, MAX_ROWS * MAX_KEYS>();
  if (fast) {
    // The row values SG_WG channels at a time, one per lane, handed round with subgroupShuffle:
    // one load for SG_WG products instead of one each. Channels past hd are 0.
    for (var d0 = 0u; d0 < hd; d0 += SG_WG) {
      var ac = array<f32, MAX_ROWS>();
      for (var r = 0u; r < ROWS; r++) { ac[r] = select(0.0, s_qkv[ab[r] + min(d0 + lane, hd - 1u)], d0 + lane < hd); }
      for (var k = 0u; k < SG_WG; k++) {
        let d = min(d0 + k, hd - 1u);
        var kv = array<f32, MAX_KEYS>();
        for (var c = 0u; c < KEYS; c++) { kv[c] = s_qkv[bb[c] + d]; }
        for (var r = 0u; r < ROWS; r++) {
          let a = subgroupShuffle(ac[r], k);
          for (var c = 0u; c < KEYS; c++) { acc[r * MAX_KEYS + c] += a * kv[c]; }
        }
      }
    }
  } else {
    for (var d = 0u; d < hd; d++) {
      var kv = array<f32, MAX_KEYS>();
      for (var c = 0u; c < KEYS; c++) { kv[c] = s_qkv[bb[c] + d]; }
      for (var r = 0u; r < ROWS; r++) {
        let a = s_qkv[ab[r] + d];
        for (var c = 0u; c < KEYS; c++) { acc[r * MAX_KEYS + c] += a * kv[c]; }
      }
    }
  }
  return acc;
}

fn dots_backward(ab: array<u32, MAX_ROWS>, bb: array<u32, MAX_KEYS>, lane: u32, fast: bool) -> array<f32, MAX_ROWS * MAX_KEYS> {
  let hd = p.hd;
  var acc = array<f32, MAX_ROWS * MAX_KEYS>();
  if (fast) {
    for (var d0 = 0u; d0 < hd; d0 += SG_WG) {
      var ac = array<f32, MAX_ROWS>();
      for (var r = 0u; r < ROWS; r++) { ac[r] = select(0.0, bs_dout[ab[r] + min(d0 + lane, hd - 1u)], d0 + lane < hd); }
      for (var k = 0u; k < SG_WG; k++) {
        let d = min(d0 + k, hd - 1u);
        var kv = array<f32, MAX_KEYS>();
        for (var c = 0u; c < KEYS; c++) { kv[c] = bs_qkv[bb[c] + d]; }
        for (var r = 0u; r < ROWS; r++) {
          let a = subgroupShuffle(ac[r], k);
          for (var c = 0u; c < KEYS; c++) { acc[r * MAX_KEYS + c] += a * kv[c]; }
        }
      }
    }
  } else {
    for (var d = 0u; d < hd; d++) {
      var kv = array<f32, MAX_KEYS>();
      for (var c = 0u; c < KEYS; c++) { kv[c] = bs_qkv[bb[c] + d]; }
      for (var r = 0u; r < ROWS; r++) {
        let a = bs_dout[ab[r] + d];
        for (var c = 0u; c < KEYS; c++) { acc[r * MAX_KEYS + c] += a * kv[c]; }
      }
    }
  }
  return acc;
}

@compute @workgroup_size(SG_WG)
fn attention_scores(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
  let w = lanes(lid, sid);
  let end = select(0u, T, w.works);
  // Query rows past T read row T−1; never written.
  var qb = array<u32, MAX_ROWS>();
  for (var r = 0u; r < ROWS; r++) { qb[r] = qkv_at(b, min(i0 + r, T - 1u), 0u, h, 0u); }

  // Pass 1: raw scores into probs, and each lane's running max and sum of exp(s − max) over its
  // keys (a step's block max first, then one rescale). A step takes KEYS·n keys: lane l has keys
  // j0 + c·n + l.
  var mx = array<f32, MAX_ROWS>();
  var sum = array<f32, MAX_ROWS>();
  for (var r = 0u; r < ROWS; r++) { mx[r] = NEG_BIG; }
  for (var j0 = 0u; j0 < end; j0 += KEYS * w.n) {
    var kb = array<u32, MAX_KEYS>();
    for (var c = 0u; c < KEYS; c++) { kb[c] = qkv_at(b, min(j0 + c * w.n + w.lane, T - 1u), 1u, h, 0u); }
    var acc = dots_scores(qb, kb, w.lane, w.fast);
    for (var r = 0u; r < ROWS; r++) {
      var m = mx[r];
      for (var c = 0u; c < KEYS; c++) {
        acc[r * MAX_KEYS + c] *= p.scale;
        if (j0 + c * w.n + w.lane < T) { m = max(m, acc[r * MAX_KEYS + c]); }
      }
      var e = sum[r] * exp(mx[r] - m);
      for (var c = 0u; c < KEYS; c++) {
        let j = j0 + c * w.n + w.lane;
        if (j < T) {
          e += exp(acc[r * MAX_KEYS + c] - m);
          if (i0 + r < T) { s_probs[bhtt_at(b, h, i0 + r, j)] = acc[r * MAX_KEYS + c]; }
        }
      }
      sum[r] = e;
      mx[r] = m;
    }
  }
  // The row's max and sum: every lane's sum brought to the row max, then added. (A lane with no
  // key has sum 0 and max NEG_BIG: it adds 0.)
  var inv = array<f32, MAX_ROWS>();
  for (var r = 0u; r < ROWS; r++) {
    let m = subgroupMax(mx[r]);
    inv[r] = 1.0 / subgroupAdd(sum[r] * exp(mx[r] - m));
    mx[r] = m;
  }

  // Pass 2: P = exp(s − max) / sum (stable: every exponent ≤ 0; the row's own max term is 1, so
  // every sum is ≥ 1).
  for (var j0 = 0u; j0 < end; j0 += w.n) {
    let j = j0 + w.lane;
    if (j < T) {
      for (var r = 0u; r < ROWS; r++) {
        if (i0 + r < T) {
          let at = bhtt_at(b, h, i0 + r, j);
          s_probs[at] = exp(s_probs[at] - mx[r]) * inv[r];
        }
      }
    }
  }
}

@compute @workgroup_size(SG_WG)
fn attention_backward_scores(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
  let w = lanes(lid, sid);
  let end = select(0u, T, w.works);
  var gb = array<u32, MAX_ROWS>();
  for (var r = 0u; r < ROWS; r++) { gb[r] = btd_at(b, min(i0 + r, T - 1u), h, 0u); }

  // Pass 1: dP = dout·vᵀ into dscores, and each lane's partial of rowsum(dP ⊙ P), keys as in
  // attention_scores.
  var rowdot = array<f32, MAX_ROWS>();
  for (var j0 = 0u; j0 < end; j0 += KEYS * w.n) {
    var vb = array<u32, MAX_KEYS>();
    for (var c = 0u; c < KEYS; c++) { vb[c] = qkv_at(b, min(j0 + c * w.n + w.lane, T - 1u), 2u, h, 0u); }
    let acc = dots_backward(gb, vb, w.lane, w.fast);
    for (var c = 0u; c < KEYS; c++) {
      let j = j0 + c * w.n + w.lane;
      if (j < T) {
        for (var r = 0u; r < ROWS; r++) {
          if (i0 + r < T) {
            let at = bhtt_at(b, h, i0 + r, j);
            let dp = acc[r * MAX_KEYS + c];
            bs_dscores[at] = dp;
            rowdot[r] += dp * bs_probs[at];
          }
        }
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) { rowdot[r] = subgroupAdd(rowdot[r]); }

  // Pass 2: dS = P ⊙ (dP − rowsum).
  for (var j0 = 0u; j0 < end; j0 += w.n) {
    let j = j0 + w.lane;
    if (j < T) {
      for (var r = 0u; r < ROWS; r++) {
        if (i0 + r < T) {
          let at = bhtt_at(b, h, i0 + r, j);
          bs_dscores[at] = bs_probs[at] * (bs_dscores[at] - rowdot[r]);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Column kernels. A step takes CH·SG_WG channels: lane l has channels d0 + c·SG_WG + l (l = the
// subgroup id when fast, else local_invocation_index: any mapping covers every channel once).
// Sums run over the tokens in order, in both paths. The two paths differ only in how a lane gets
// the P (and dS) entries that all lanes share, shuffled or loaded, so a kernel's loads of a token
// and its products with them are functions that both paths call.

// weighted_sum: token j's values at the lane's CH channels (vb: their indices at token 0).
fn values_at(vb: array<u32, MAX_CH>, j: u32, vstride: u32) -> array<f32, MAX_CH> {
  var v = array<f32, MAX_CH>();
  for (var c = 0u; c < CH; c++) { v[c] = w_qkv[vb[c] + j * vstride]; }
  return v;
}

// weighted_sum: row r's products with one token, acc[r][c] += P[i,j]·v_j[c].
fn add_weighted(acc: ptr<function, array<f32, MAX_ROWS * MAX_CH>>, r: u32, pr: f32, v: array<f32, MAX_CH>) {
  for (var c = 0u; c < CH; c++) { (*acc)[r * MAX_CH + c] += pr * v[c]; }
}

@compute @workgroup_size(SG_WG)
fn attention_weighted_sum(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
  let hd = p.hd;
  let w = lanes(lid, sid);
  let l = select(lid, sid, w.fast);
  let vstride = 3u * p.H * hd; // from token j to j + 1 in qkv
  var pb = array<u32, MAX_ROWS>();
  for (var r = 0u; r < ROWS; r++) { pb[r] = bhtt_at(b, h, min(i0 + r, T - 1u), 0u); }
  for (var d0 = 0u; d0 < hd; d0 += CH * SG_WG) {
    var vb = array<u32, MAX_CH>();
    for (var c = 0u; c < CH; c++) { vb[c] = qkv_at(b, 0u, 2u, h, min(d0 + c * SG_WG + l, hd - 1u)); }
    var acc = array<f32, MAX_ROWS * MAX_CH>();
    if (w.fast) {
      // The probabilities SG_WG tokens at a time, one per lane, handed round (as dots_scores).
      for (var j0 = 0u; j0 < T; j0 += SG_WG) {
        var pc = array<f32, MAX_ROWS>();
        for (var r = 0u; r < ROWS; r++) { pc[r] = w_probs[pb[r] + min(j0 + l, T - 1u)]; }
        for (var k = 0u; k < SG_WG; k++) {
          if (j0 + k < T) {
            let v = values_at(vb, j0 + k, vstride);
            for (var r = 0u; r < ROWS; r++) { add_weighted(&acc, r, subgroupShuffle(pc[r], k), v); }
          }
        }
      }
    } else {
      for (var j = 0u; j < T; j++) {
        let v = values_at(vb, j, vstride);
        for (var r = 0u; r < ROWS; r++) { add_weighted(&acc, r, w_probs[pb[r] + j], v); }
      }
    }
    for (var c = 0u; c < CH; c++) {
      let d = d0 + c * SG_WG + l;
      if (d < hd) {
        for (var r = 0u; r < ROWS; r++) {
          if (i0 + r < T) { w_out[btd_at(b, i0 + r, h, d)] = acc[r * MAX_CH + c]; }
        }
      }
    }
  }
}

// backward_qkv: token m's q, k and dout at the lane's CH channels (qb, gb: their indices at token 0).
struct Token { q: array<f32, MAX_CH>, k: array<f32, MAX_CH>, g: array<f32, MAX_CH> }

fn token_at(qb: array<u32, MAX_CH>, gb: array<u32, MAX_CH>, m: u32, tstride: u32, gstride: u32) -> Token {
  var t = Token();
  for (var c = 0u; c < CH; c++) {
    t.q[c] = bq_qkv[qb[c] + m * tstride];
    t.k[c] = bq_qkv[qb[c] + m * tstride + gstride];
    t.g[c] = bq_dout[gb[c] + m * gstride];
  }
  return t;
}

// backward_qkv: the lane's ROWS rows × CH channels of dq, dk and dv.
struct Grads { dq: array<f32, MAX_ROWS * MAX_CH>, dk: array<f32, MAX_ROWS * MAX_CH>, dv: array<f32, MAX_ROWS * MAX_CH> }

// Row r's products with token m: dq += dS[i,m]·k_m, dk += dS[m,i]·q_m, dv += P[m,i]·dout_m.
fn add_token(g: ptr<function, Grads>, r: u32, s_im: f32, s_mi: f32, p_mi: f32, t: Token) {
  for (var c = 0u; c < CH; c++) {
    (*g).dq[r * MAX_CH + c] += s_im * t.k[c];
    (*g).dk[r * MAX_CH + c] += s_mi * t.q[c];
    (*g).dv[r * MAX_CH + c] += p_mi * t.g[c];
  }
}

@compute @workgroup_size(SG_WG)
fn attention_backward_qkv(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
  let hd = p.hd;
  let w = lanes(lid, sid);
  let l = select(lid, sid, w.fast);
  // Rows past T use row T−1 (never written). Row i's entries of dS and P: row base ib (dq) and
  // column ic (dk, dv: element (m, i) = ic + m·T).
  var ib = array<u32, MAX_ROWS>();
  var ic = array<u32, MAX_ROWS>();
  for (var r = 0u; r < ROWS; r++) {
    let i = min(i0 + r, T - 1u);
    ib[r] = bhtt_at(b, h, i, 0u);
    ic[r] = bhtt_at(b, h, 0u, i);
  }
  let tstride = 3u * p.H * hd;
  let gstride = p.H * hd;
  for (var d0 = 0u; d0 < hd; d0 += CH * SG_WG) {
    var qb = array<u32, MAX_CH>();
    var gb = array<u32, MAX_CH>();
    for (var c = 0u; c < CH; c++) {
      let dc = min(d0 + c * SG_WG + l, hd - 1u);
      qb[c] = qkv_at(b, 0u, 0u, h, dc);
      gb[c] = btd_at(b, 0u, h, dc);
    }
    var acc = Grads();
    if (w.fast) {
      // dS and P SG_WG tokens at a time, one per lane, handed round (as dots_scores).
      for (var m0 = 0u; m0 < T; m0 += SG_WG) {
        let ml = min(m0 + l, T - 1u);
        var s_im = array<f32, MAX_ROWS>();
        var s_mi = array<f32, MAX_ROWS>();
        var p_mi = array<f32, MAX_ROWS>();
        for (var r = 0u; r < ROWS; r++) {
          s_im[r] = bq_dscores[ib[r] + ml];
          s_mi[r] = bq_dscores[ic[r] + ml * T];
          p_mi[r] = bq_probs[ic[r] + ml * T];
        }
        for (var k = 0u; k < SG_WG; k++) {
          let m = m0 + k;
          if (m < T) {
            let t = token_at(qb, gb, m, tstride, gstride);
            for (var r = 0u; r < ROWS; r++) {
              add_token(&acc, r, subgroupShuffle(s_im[r], k), subgroupShuffle(s_mi[r], k), subgroupShuffle(p_mi[r], k), t);
            }
          }
        }
      }
    } else {
      for (var m = 0u; m < T; m++) {
        let t = token_at(qb, gb, m, tstride, gstride);
        for (var r = 0u; r < ROWS; r++) {
          add_token(&acc, r, bq_dscores[ib[r] + m], bq_dscores[ic[r] + m * T], bq_probs[ic[r] + m * T], t);
        }
      }
    }
    for (var c = 0u; c < CH; c++) {
      let d = d0 + c * SG_WG + l;
      if (d < hd) {
        for (var r = 0u; r < ROWS; r++) {
          let i = i0 + r;
          if (i < T) {
            bq_dqkv[qkv_at(b, i, 0u, h, d)] = acc.dq[r * MAX_CH + c] * p.scale;
            bq_dqkv[qkv_at(b, i, 1u, h, d)] = acc.dk[r * MAX_CH + c] * p.scale;
            bq_dqkv[qkv_at(b, i, 2u, h, d)] = acc.dv[r * MAX_CH + c];
          }
        }
      }
    }
  }
}
