// Multi-head self-attention for SIMD-style devices with subgroups: the 'subgroup' variant of
// shaders/attention.wgsl, for devices with the WebGPU feature 'subgroups', and at the end the
// 'subgroup_quads' variant (entry points *_quads: written-out register blocks, for subgroups of
// exactly 4 or 8 lanes; see its own header there). Same maths, shapes,
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

// backward_qkv works one output at a time (part 0: dq = dS·k, 1: dk = dSᵀ·q, 2: dv = Pᵀ·dout):
// each part reads its own token vectors and weights, so the three load what one pass over the
// tokens for all three did, while only one ROWS × CH block of sums is live.

// Token m's vector of `part` (k_m, q_m or dout_m) at the lane's CH channels (qb, gb: their indices at token 0).
fn token_part(part: u32, qb: array<u32, MAX_CH>, gb: array<u32, MAX_CH>, m: u32, tstride: u32, gstride: u32) -> array<f32, MAX_CH> {
  var t = array<f32, MAX_CH>();
  for (var c = 0u; c < CH; c++) {
    if (part == 0u) { t[c] = bq_qkv[qb[c] + m * tstride + gstride]; }
    else if (part == 1u) { t[c] = bq_qkv[qb[c] + m * tstride]; }
    else { t[c] = bq_dout[gb[c] + m * gstride]; }
  }
  return t;
}

// Row i's weight of token m in `part` (ib: i's row base, ic: i's column): dS[i,m], dS[m,i] or P[m,i].
fn weight_part(part: u32, ib: u32, ic: u32, m: u32, T: u32) -> f32 {
  if (part == 0u) { return bq_dscores[ib + m]; }
  if (part == 1u) { return bq_dscores[ic + m * T]; }
  return bq_probs[ic + m * T];
}

// One output of backward_qkv for the workgroup's rows i0.. and the lane's channels d0 + c·SG_WG + l.
fn backward_qkv_part(part: u32, b: u32, h: u32, i0: u32, d0: u32, l: u32, fast: bool, ib: array<u32, MAX_ROWS>, ic: array<u32, MAX_ROWS>) {
  let T = p.T;
  let hd = p.hd;
  let tstride = 3u * p.H * hd;
  let gstride = p.H * hd;
  var qb = array<u32, MAX_CH>();
  var gb = array<u32, MAX_CH>();
  for (var c = 0u; c < CH; c++) {
    let dc = min(d0 + c * SG_WG + l, hd - 1u);
    qb[c] = qkv_at(b, 0u, 0u, h, dc);
    gb[c] = btd_at(b, 0u, h, dc);
  }
  var acc = array<f32, MAX_ROWS * MAX_CH>();
  if (fast) {
    // The weights SG_WG tokens at a time, one per lane, handed round (as dots_scores).
    for (var m0 = 0u; m0 < T; m0 += SG_WG) {
      let ml = min(m0 + l, T - 1u);
      var w = array<f32, MAX_ROWS>();
      for (var r = 0u; r < ROWS; r++) { w[r] = weight_part(part, ib[r], ic[r], ml, T); }
      for (var k = 0u; k < SG_WG; k++) {
        let m = m0 + k;
        if (m < T) {
          let t = token_part(part, qb, gb, m, tstride, gstride);
          for (var r = 0u; r < ROWS; r++) {
            let wr = subgroupShuffle(w[r], k);
            for (var c = 0u; c < CH; c++) { acc[r * MAX_CH + c] += wr * t[c]; }
          }
        }
      }
    }
  } else {
    for (var m = 0u; m < T; m++) {
      let t = token_part(part, qb, gb, m, tstride, gstride);
      for (var r = 0u; r < ROWS; r++) {
        let wr = weight_part(part, ib[r], ic[r], m, T);
        for (var c = 0u; c < CH; c++) { acc[r * MAX_CH + c] += wr * t[c]; }
      }
    }
  }
  let scale = select(1.0, p.scale, part < 2u);
  for (var c = 0u; c < CH; c++) {
    let d = d0 + c * SG_WG + l;
    if (d < hd) {
      for (var r = 0u; r < ROWS; r++) {
        let i = i0 + r;
        if (i < T) { bq_dqkv[qkv_at(b, i, part, h, d)] = acc[r * MAX_CH + c] * scale; }
      }
    }
  }
}

@compute @workgroup_size(SG_WG)
fn attention_backward_qkv(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * ROWS;
  let h = wid.y;
  let b = wid.z;
  let T = p.T;
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
  for (var d0 = 0u; d0 < p.hd; d0 += CH * SG_WG) {
    backward_qkv_part(0u, b, h, i0, d0, l, w.fast, ib, ic);
    backward_qkv_part(1u, b, h, i0, d0, l, w.fast, ib, ic);
    backward_qkv_part(2u, b, h, i0, d0, l, w.fast, ib, ic);
  }
}

// ---------------------------------------------------------------------------------------------
// The four kernels with written-out register blocks (entry points *_quads): eight query rows at a
// time and four keys or four channels per lane, the running sums in named vec4s. Arrays indexed
// by loop counters, as above, are what SwiftShader keeps in memory: 10× slower per multiply-add
// there (the same speed on lavapipe). Channels are read four at a time (vec4 views of the same
// bindings), so these need hd % 4 = 0, and they share values with subgroupBroadcast from lanes
// 0..7 (0..3 with 4 lanes): the workgroup must be one subgroup of SG_WG = 4 or 8 lanes with ids
// 0..SG_WG−1 (the wrapper picks them only where the adapter's subgroups have exactly that size).
// The same sums, over channels and tokens in order, as the kernels above; the softmax's running
// max and sum are kept per four keys, so probs and dscores differ from theirs in the last bits.

@group(0) @binding(2) var<storage, read_write> s_qkv4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w_out4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> w_qkv4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> bs_dout4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bs_qkv4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> bq_dqkv4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bq_qkv4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> bq_dout4: array<vec4<f32>>;

// Eight rows' vec4 sums (four keys, or four channels, of rows r0..r7).
struct Rows8 { r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>, r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32> }

// acc + q·[kx ky kz kw]: a row's sums over four more channels (q) for four keys (kx: channel 0 of each).
fn row4(acc: vec4<f32>, q: vec4<f32>, kx: vec4<f32>, ky: vec4<f32>, kz: vec4<f32>, kw: vec4<f32>) -> vec4<f32> {
  return acc + q.x * kx + q.y * ky + q.z * kz + q.w * kw;
}

// The block's eight rows, channels d..d+3: lane l loaded row l (ma) and, with 4 lanes, row l + 4 (mb).
fn rows8(ma: vec4<f32>, mb: vec4<f32>) -> array<vec4<f32>, 8> {
  if (SG_WG == 4u) {
    return array(subgroupBroadcast(ma, 0u), subgroupBroadcast(ma, 1u), subgroupBroadcast(ma, 2u), subgroupBroadcast(ma, 3u),
                 subgroupBroadcast(mb, 0u), subgroupBroadcast(mb, 1u), subgroupBroadcast(mb, 2u), subgroupBroadcast(mb, 3u));
  }
  return array(subgroupBroadcast(ma, 0u), subgroupBroadcast(ma, 1u), subgroupBroadcast(ma, 2u), subgroupBroadcast(ma, 3u),
               subgroupBroadcast(ma, 4u), subgroupBroadcast(ma, 5u), subgroupBroadcast(ma, 6u), subgroupBroadcast(ma, 7u));
}

// a += the eight rows q (channels d..d+3) against the lane's four keys v0..v3 (the same channels).
fn add_dots8(a: ptr<function, Rows8>, q: array<vec4<f32>, 8>, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) {
  let kx = vec4(v0.x, v1.x, v2.x, v3.x);
  let ky = vec4(v0.y, v1.y, v2.y, v3.y);
  let kz = vec4(v0.z, v1.z, v2.z, v3.z);
  let kw = vec4(v0.w, v1.w, v2.w, v3.w);
  (*a).r0 = row4((*a).r0, q[0], kx, ky, kz, kw); (*a).r1 = row4((*a).r1, q[1], kx, ky, kz, kw);
  (*a).r2 = row4((*a).r2, q[2], kx, ky, kz, kw); (*a).r3 = row4((*a).r3, q[3], kx, ky, kz, kw);
  (*a).r4 = row4((*a).r4, q[4], kx, ky, kz, kw); (*a).r5 = row4((*a).r5, q[5], kx, ky, kz, kw);
  (*a).r6 = row4((*a).r6, q[6], kx, ky, kz, kw); (*a).r7 = row4((*a).r7, q[7], kx, ky, kz, kw);
}

// a += w_r · x for the eight rows (w: their weights of one token, x: its four channels).
fn add_weighted8(a: ptr<function, Rows8>, w: array<f32, 8>, x: vec4<f32>) {
  (*a).r0 += w[0] * x; (*a).r1 += w[1] * x; (*a).r2 += w[2] * x; (*a).r3 += w[3] * x;
  (*a).r4 += w[4] * x; (*a).r5 += w[5] * x; (*a).r6 += w[6] * x; (*a).r7 += w[7] * x;
}

// Lane `lane`'s eight weights (w8: this lane's), by constant lane: the callers pass literals.
fn bcast8(w8: array<f32, 8>, lane: u32) -> array<f32, 8> {
  switch lane {
    case 0u: { return array(subgroupBroadcast(w8[0], 0u), subgroupBroadcast(w8[1], 0u), subgroupBroadcast(w8[2], 0u), subgroupBroadcast(w8[3], 0u), subgroupBroadcast(w8[4], 0u), subgroupBroadcast(w8[5], 0u), subgroupBroadcast(w8[6], 0u), subgroupBroadcast(w8[7], 0u)); }
    case 1u: { return array(subgroupBroadcast(w8[0], 1u), subgroupBroadcast(w8[1], 1u), subgroupBroadcast(w8[2], 1u), subgroupBroadcast(w8[3], 1u), subgroupBroadcast(w8[4], 1u), subgroupBroadcast(w8[5], 1u), subgroupBroadcast(w8[6], 1u), subgroupBroadcast(w8[7], 1u)); }
    case 2u: { return array(subgroupBroadcast(w8[0], 2u), subgroupBroadcast(w8[1], 2u), subgroupBroadcast(w8[2], 2u), subgroupBroadcast(w8[3], 2u), subgroupBroadcast(w8[4], 2u), subgroupBroadcast(w8[5], 2u), subgroupBroadcast(w8[6], 2u), subgroupBroadcast(w8[7], 2u)); }
    case 3u: { return array(subgroupBroadcast(w8[0], 3u), subgroupBroadcast(w8[1], 3u), subgroupBroadcast(w8[2], 3u), subgroupBroadcast(w8[3], 3u), subgroupBroadcast(w8[4], 3u), subgroupBroadcast(w8[5], 3u), subgroupBroadcast(w8[6], 3u), subgroupBroadcast(w8[7], 3u)); }
    case 4u: { return array(subgroupBroadcast(w8[0], 4u), subgroupBroadcast(w8[1], 4u), subgroupBroadcast(w8[2], 4u), subgroupBroadcast(w8[3], 4u), subgroupBroadcast(w8[4], 4u), subgroupBroadcast(w8[5], 4u), subgroupBroadcast(w8[6], 4u), subgroupBroadcast(w8[7], 4u)); }
    case 5u: { return array(subgroupBroadcast(w8[0], 5u), subgroupBroadcast(w8[1], 5u), subgroupBroadcast(w8[2], 5u), subgroupBroadcast(w8[3], 5u), subgroupBroadcast(w8[4], 5u), subgroupBroadcast(w8[5], 5u), subgroupBroadcast(w8[6], 5u), subgroupBroadcast(w8[7], 5u)); }
    case 6u: { return array(subgroupBroadcast(w8[0], 6u), subgroupBroadcast(w8[1], 6u), subgroupBroadcast(w8[2], 6u), subgroupBroadcast(w8[3], 6u), subgroupBroadcast(w8[4], 6u), subgroupBroadcast(w8[5], 6u), subgroupBroadcast(w8[6], 6u), subgroupBroadcast(w8[7], 6u)); }
    default: { return array(subgroupBroadcast(w8[0], 7u), subgroupBroadcast(w8[1], 7u), subgroupBroadcast(w8[2], 7u), subgroupBroadcast(w8[3], 7u), subgroupBroadcast(w8[4], 7u), subgroupBroadcast(w8[5], 7u), subgroupBroadcast(w8[6], 7u), subgroupBroadcast(w8[7], 7u)); }
  }
}

// The row block's rows r0..r0+7 as a Rows8 member, by constant index.
fn row_of(a: Rows8, r: u32) -> vec4<f32> {
  switch r {
    case 0u: { return a.r0; }
    case 1u: { return a.r1; }
    case 2u: { return a.r2; }
    case 3u: { return a.r3; }
    case 4u: { return a.r4; }
    case 5u: { return a.r5; }
    case 6u: { return a.r6; }
    default: { return a.r7; }
  }
}

// A softmax row's running max m and sum s of exp(x − m); after final_stat, s is 1/sum.
struct Stat { m: f32, s: f32 }

// One row's online softmax over the lane's valid keys: the running max and sum.
fn stat4(st: Stat, v: vec4<f32>, valid: vec4<bool>) -> Stat {
  let vm = select(vec4(NEG_BIG), v, valid);
  let m = max(st.m, max(max(vm.x, vm.y), max(vm.z, vm.w)));
  let e = select(vec4(0.0), exp(v - m), valid);
  return Stat(m, st.s * exp(st.m - m) + ((e.x + e.y) + (e.z + e.w)));
}

// The row's max and 1/sum over the subgroup (every lane's sum brought to the row max).
fn final_stat(st: Stat) -> Stat {
  let m = subgroupMax(st.m);
  return Stat(m, 1.0 / subgroupAdd(st.s * exp(st.m - m)));
}

// attention_scores, eight rows at a time from i0 (rows < end); the lane's keys j0 + 4l..4l+3.
fn scores_block8(b: u32, h: u32, i0: u32, end: u32, l: u32) {
  let T = p.T;
  let hq = p.hd / 4u;
  let qa = qkv_at(b, min(i0 + l % 8u, T - 1u), 0u, h, 0u) / 4u;
  let qb = qkv_at(b, min(i0 + l % 4u + 4u, T - 1u), 0u, h, 0u) / 4u;
  var st = array<Stat, 8>();
  for (var r = 0u; r < 8u; r++) { st[r] = Stat(NEG_BIG, 0.0); }
  for (var j0 = 0u; j0 < T; j0 += 4u * SG_WG) {
    let j = vec4(j0 + 4u * l) + vec4(0u, 1u, 2u, 3u);
    let jc = min(j, vec4(T - 1u));
    let k0 = qkv_at(b, jc.x, 1u, h, 0u) / 4u;
    let k1 = qkv_at(b, jc.y, 1u, h, 0u) / 4u;
    let k2 = qkv_at(b, jc.z, 1u, h, 0u) / 4u;
    let k3 = qkv_at(b, jc.w, 1u, h, 0u) / 4u;
    var a = Rows8();
    for (var d = 0u; d < hq; d++) {
      add_dots8(&a, rows8(s_qkv4[qa + d], s_qkv4[qb + d]), s_qkv4[k0 + d], s_qkv4[k1 + d], s_qkv4[k2 + d], s_qkv4[k3 + d]);
    }
    let valid = j < vec4(T);
    st[0] = stat4(st[0], a.r0 * p.scale, valid); st[1] = stat4(st[1], a.r1 * p.scale, valid);
    st[2] = stat4(st[2], a.r2 * p.scale, valid); st[3] = stat4(st[3], a.r3 * p.scale, valid);
    st[4] = stat4(st[4], a.r4 * p.scale, valid); st[5] = stat4(st[5], a.r5 * p.scale, valid);
    st[6] = stat4(st[6], a.r6 * p.scale, valid); st[7] = stat4(st[7], a.r7 * p.scale, valid);
    for (var r = 0u; r < 8u; r++) {
      let v = row_of(a, r) * p.scale;
      if (i0 + r < end) {
        let at = bhtt_at(b, h, i0 + r, 0u);
        if (j.x < T) { s_probs[at + j.x] = v.x; }
        if (j.y < T) { s_probs[at + j.y] = v.y; }
        if (j.z < T) { s_probs[at + j.z] = v.z; }
        if (j.w < T) { s_probs[at + j.w] = v.w; }
      }
    }
  }
  for (var r = 0u; r < 8u; r++) { st[r] = final_stat(st[r]); }
  for (var j = l; j < T; j += SG_WG) {
    for (var r = 0u; r < 8u; r++) {
      if (i0 + r < end) {
        let at = bhtt_at(b, h, i0 + r, j);
        s_probs[at] = exp(s_probs[at] - st[r].m) * st[r].s;
      }
    }
  }
}

@compute @workgroup_size(SG_WG)
fn attention_scores_quads(@builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let end = min(wid.x * ROWS + ROWS, p.T);
  for (var i0 = wid.x * ROWS; i0 < end; i0 += 8u) { scores_block8(wid.z, wid.y, i0, end, sid); }
}

// attention_weighted_sum, eight rows at a time from i0 (rows < end); the lane's channel quads
// c0 + l, c0 stepping by SG_WG quads.
fn wsum_block8(b: u32, h: u32, i0: u32, end: u32, l: u32) {
  let T = p.T;
  let hq = p.hd / 4u;
  let vstride = 3u * p.H * hq; // from token m to m + 1 in qkv, in vec4s
  for (var c0 = 0u; c0 < hq; c0 += SG_WG) {
    let vb = qkv_at(b, 0u, 2u, h, 4u * min(c0 + l, hq - 1u)) / 4u;
    var a = Rows8();
    for (var m0 = 0u; m0 < T; m0 += SG_WG) {
      // This lane's token m0 + l: its probability in each of the eight rows (0 past T).
      let ml = min(m0 + l, T - 1u);
      let real = m0 + l < T;
      var w8 = array<f32, 8>();
      w8[0] = select(0.0, w_probs[bhtt_at(b, h, min(i0, T - 1u), ml)], real);
      w8[1] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 1u, T - 1u), ml)], real);
      w8[2] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 2u, T - 1u), ml)], real);
      w8[3] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 3u, T - 1u), ml)], real);
      w8[4] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 4u, T - 1u), ml)], real);
      w8[5] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 5u, T - 1u), ml)], real);
      w8[6] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 6u, T - 1u), ml)], real);
      w8[7] = select(0.0, w_probs[bhtt_at(b, h, min(i0 + 7u, T - 1u), ml)], real);
      if (m0 + 0u < T) { add_weighted8(&a, bcast8(w8, 0u), w_qkv4[vb + (m0 + 0u) * vstride]); }
      if (m0 + 1u < T) { add_weighted8(&a, bcast8(w8, 1u), w_qkv4[vb + (m0 + 1u) * vstride]); }
      if (m0 + 2u < T) { add_weighted8(&a, bcast8(w8, 2u), w_qkv4[vb + (m0 + 2u) * vstride]); }
      if (m0 + 3u < T) { add_weighted8(&a, bcast8(w8, 3u), w_qkv4[vb + (m0 + 3u) * vstride]); }
      if (SG_WG == 8u) {
        if (m0 + 4u < T) { add_weighted8(&a, bcast8(w8, 4u), w_qkv4[vb + (m0 + 4u) * vstride]); }
        if (m0 + 5u < T) { add_weighted8(&a, bcast8(w8, 5u), w_qkv4[vb + (m0 + 5u) * vstride]); }
        if (m0 + 6u < T) { add_weighted8(&a, bcast8(w8, 6u), w_qkv4[vb + (m0 + 6u) * vstride]); }
        if (m0 + 7u < T) { add_weighted8(&a, bcast8(w8, 7u), w_qkv4[vb + (m0 + 7u) * vstride]); }
      }
    }
    if (c0 + l < hq) {
      for (var r = 0u; r < 8u; r++) {
        if (i0 + r < end) { w_out4[btd_at(b, i0 + r, h, 4u * (c0 + l)) / 4u] = row_of(a, r); }
      }
    }
  }
}

@compute @workgroup_size(SG_WG)
fn attention_weighted_sum_quads(@builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let end = min(wid.x * ROWS + ROWS, p.T);
  for (var i0 = wid.x * ROWS; i0 < end; i0 += 8u) { wsum_block8(wid.z, wid.y, i0, end, sid); }
}

// attention_backward_scores, eight rows at a time from i0 (rows < end); keys as in scores_block8.
fn backward_scores_block8(b: u32, h: u32, i0: u32, end: u32, l: u32) {
  let T = p.T;
  let hq = p.hd / 4u;
  let ga = btd_at(b, min(i0 + l % 8u, T - 1u), h, 0u) / 4u;
  let gb = btd_at(b, min(i0 + l % 4u + 4u, T - 1u), h, 0u) / 4u;
  var rowdot = array<f32, 8>();
  for (var j0 = 0u; j0 < T; j0 += 4u * SG_WG) {
    let j = vec4(j0 + 4u * l) + vec4(0u, 1u, 2u, 3u);
    let jc = min(j, vec4(T - 1u));
    let v0 = qkv_at(b, jc.x, 2u, h, 0u) / 4u;
    let v1 = qkv_at(b, jc.y, 2u, h, 0u) / 4u;
    let v2 = qkv_at(b, jc.z, 2u, h, 0u) / 4u;
    let v3 = qkv_at(b, jc.w, 2u, h, 0u) / 4u;
    var a = Rows8();
    for (var d = 0u; d < hq; d++) {
      add_dots8(&a, rows8(bs_dout4[ga + d], bs_dout4[gb + d]), bs_qkv4[v0 + d], bs_qkv4[v1 + d], bs_qkv4[v2 + d], bs_qkv4[v3 + d]);
    }
    // dP into dscores, and the lane's part of rowsum(dP ⊙ P).
    for (var r = 0u; r < 8u; r++) {
      let dp = row_of(a, r);
      if (i0 + r < end) {
        let at = bhtt_at(b, h, i0 + r, 0u);
        var s = rowdot[r];
        if (j.x < T) { bs_dscores[at + j.x] = dp.x; s += dp.x * bs_probs[at + j.x]; }
        if (j.y < T) { bs_dscores[at + j.y] = dp.y; s += dp.y * bs_probs[at + j.y]; }
        if (j.z < T) { bs_dscores[at + j.z] = dp.z; s += dp.z * bs_probs[at + j.z]; }
        if (j.w < T) { bs_dscores[at + j.w] = dp.w; s += dp.w * bs_probs[at + j.w]; }
        rowdot[r] = s;
      }
    }
  }
  for (var r = 0u; r < 8u; r++) { rowdot[r] = subgroupAdd(rowdot[r]); }
  // dS = P ⊙ (dP − rowsum).
  for (var j = l; j < T; j += SG_WG) {
    for (var r = 0u; r < 8u; r++) {
      if (i0 + r < end) {
        let at = bhtt_at(b, h, i0 + r, j);
        bs_dscores[at] = bs_probs[at] * (bs_dscores[at] - rowdot[r]);
      }
    }
  }
}

@compute @workgroup_size(SG_WG)
fn attention_backward_scores_quads(@builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let end = min(wid.x * ROWS + ROWS, p.T);
  for (var i0 = wid.x * ROWS; i0 < end; i0 += 8u) { backward_scores_block8(wid.z, wid.y, i0, end, sid); }
}

// backward_qkv's weight of token m for row i in `part` (weight_part's, from i's row and column).
fn bq_weight(part: u32, b: u32, h: u32, i: u32, m: u32) -> f32 {
  return weight_part(part, bhtt_at(b, h, i, 0u), bhtt_at(b, h, 0u, i), m, p.T);
}

// backward_qkv's vector of token m in `part` (k_m, q_m or dout_m), channel quad c.
fn bq_token(part: u32, b: u32, h: u32, m: u32, c: u32) -> vec4<f32> {
  if (part == 0u) { return bq_qkv4[qkv_at(b, m, 1u, h, 4u * c) / 4u]; }
  if (part == 1u) { return bq_qkv4[qkv_at(b, m, 0u, h, 4u * c) / 4u]; }
  return bq_dout4[btd_at(b, m, h, 4u * c) / 4u];
}

// One of dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout (part 0, 1, 2) for eight rows from i0
// (rows < end) and the lane's channel quads, one output's sums live at a time.
fn backward_qkv_block8(part: u32, b: u32, h: u32, i0: u32, end: u32, l: u32) {
  let T = p.T;
  let hq = p.hd / 4u;
  let ic = min(vec4(i0) + vec4(0u, 1u, 2u, 3u), vec4(T - 1u));
  let id = min(vec4(i0 + 4u) + vec4(0u, 1u, 2u, 3u), vec4(T - 1u));
  for (var c0 = 0u; c0 < hq; c0 += SG_WG) {
    let c = min(c0 + l, hq - 1u);
    var a = Rows8();
    for (var m0 = 0u; m0 < T; m0 += SG_WG) {
      let ml = min(m0 + l, T - 1u);
      let real = m0 + l < T;
      var w8 = array<f32, 8>();
      w8[0] = select(0.0, bq_weight(part, b, h, ic.x, ml), real);
      w8[1] = select(0.0, bq_weight(part, b, h, ic.y, ml), real);
      w8[2] = select(0.0, bq_weight(part, b, h, ic.z, ml), real);
      w8[3] = select(0.0, bq_weight(part, b, h, ic.w, ml), real);
      w8[4] = select(0.0, bq_weight(part, b, h, id.x, ml), real);
      w8[5] = select(0.0, bq_weight(part, b, h, id.y, ml), real);
      w8[6] = select(0.0, bq_weight(part, b, h, id.z, ml), real);
      w8[7] = select(0.0, bq_weight(part, b, h, id.w, ml), real);
      if (m0 + 0u < T) { add_weighted8(&a, bcast8(w8, 0u), bq_token(part, b, h, m0 + 0u, c)); }
      if (m0 + 1u < T) { add_weighted8(&a, bcast8(w8, 1u), bq_token(part, b, h, m0 + 1u, c)); }
      if (m0 + 2u < T) { add_weighted8(&a, bcast8(w8, 2u), bq_token(part, b, h, m0 + 2u, c)); }
      if (m0 + 3u < T) { add_weighted8(&a, bcast8(w8, 3u), bq_token(part, b, h, m0 + 3u, c)); }
      if (SG_WG == 8u) {
        if (m0 + 4u < T) { add_weighted8(&a, bcast8(w8, 4u), bq_token(part, b, h, m0 + 4u, c)); }
        if (m0 + 5u < T) { add_weighted8(&a, bcast8(w8, 5u), bq_token(part, b, h, m0 + 5u, c)); }
        if (m0 + 6u < T) { add_weighted8(&a, bcast8(w8, 6u), bq_token(part, b, h, m0 + 6u, c)); }
        if (m0 + 7u < T) { add_weighted8(&a, bcast8(w8, 7u), bq_token(part, b, h, m0 + 7u, c)); }
      }
    }
    let scale = select(1.0, p.scale, part < 2u);
    if (c0 + l < hq) {
      for (var r = 0u; r < 8u; r++) {
        if (i0 + r < end) { bq_dqkv4[qkv_at(b, i0 + r, part, h, 4u * (c0 + l)) / 4u] = row_of(a, r) * scale; }
      }
    }
  }
}

@compute @workgroup_size(SG_WG)
fn attention_backward_qkv_quads(@builtin(subgroup_invocation_id) sid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let end = min(wid.x * ROWS + ROWS, p.T);
  for (var i0 = wid.x * ROWS; i0 < end; i0 += 8u) {
    backward_qkv_block8(0u, wid.z, wid.y, i0, end, sid);
    backward_qkv_block8(1u, wid.z, wid.y, i0, end, sid);
    backward_qkv_block8(2u, wid.z, wid.y, i0, end, sid);
  }
}
