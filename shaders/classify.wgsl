// The classification heads of evaluation: global average pooling of the patch tokens, softmax
// cross-entropy with label smoothing (fused with its batch mean, argmax and correct count), and
// the non-affine BatchNorm1d of MAE's linear probe; forward and backward.
//
// Shape letters: N rows (images), T tokens per image (1 + L, cls first), D width, K classes,
// C BatchNorm channels. Row-major f32; labels are u32.
//
// Entry points and bindings (0 = Params; storage from 1, outputs first):
//   mean_pool_forward        1 out[N,D] =            2 x[N,T,D]
//       out[n] = mean over t = 1..T−1 of x[n,t] (the patch tokens; cls, row 0, is skipped)
//   mean_pool_backward       1 dx[N,T,D] =           2 dout[N,D]
//       dx[n,0] = 0, dx[n,t≥1] = dout[n]/(T−1)
//   cls_pool_forward         1 out[N,D] =            2 x[N,T,D]
//       out[n] = x[n,0] (the cls token: the linear probe's default feature; a kernel, because a
//       copy may not read and write one buffer, and activations share one arena)
//   xent_forward             1 stats[2] =  2 pred[N] u32 =   3 logits[N,K]  4 labels[N] u32
//       stats[0] = mean_n Σ_k −q_k·log softmax(z_n)_k with q = (1−ε)·onehot(label) + ε/K
//       (torch's CrossEntropyLoss(label_smoothing=ε), timm's LabelSmoothingCrossEntropy);
//       stats[1] = number of rows whose argmax (first maximum) equals the label; pred = argmax.
//       One workgroup: each thread does rows lid, lid+WG, … in order, then the fixed tree.
//   xent_backward            1 dlogits[N,K] =        2 logits  3 labels
//       dlogits = scale·(softmax(z) − q), scale = dloss/N
//   kd_forward               1 stats[2] =  2 pred[N] u32 =   3 logits[N,K]  4 teacher[N,K]  5 labels[N] u32
//       knowledge distillation (Hinton): per row, with s the student's logits, t the teacher's,
//       λ = soft_weight and τ = temperature,
//         (1−λ)·CE_ε(s, label) + λ·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)),
//       averaged over rows into stats[0]; stats[1] and pred as xent_forward (the student's argmax).
//       KL (not the cross-entropy to the soft targets) so that a student matching its teacher
//       scores 0; the τ² keeps the soft term's gradient scale independent of τ.
//   kd_backward              1 dlogits[N,K] =        2 logits  3 teacher  4 labels
//       dlogits = scale·((1−λ)·(softmax(s) − q) + λ·τ·(softmax(s/τ) − softmax(t/τ)))
//       (the teacher is frozen: no gradient for it)
//   bn_forward_train         1 out[N,C] = 2 mean[C] = 3 rstd[C] = 4 running_mean[C] (in place)
//                            5 running_var[C] (in place)  6 x[N,C]
//       batch statistics (biased variance), out = (x − mean)·rstd, rstd = 1/√(var + eps);
//       running = (1 − momentum)·running + momentum·stat, with the unbiased variance (torch).
//   bn_forward_eval          1 out[N,C] =  2 x  3 running_mean  4 running_var
//   bn_backward              1 dx[N,C] =   2 dout  3 x  4 mean  5 rstd
//       dx = rstd·(dout − mean_n(dout) − x̂·mean_n(dout·x̂)) (training-mode statistics)
// The BatchNorm is non-affine (MAE's BatchNorm1d(affine=False, eps=1e-6)): no parameter, so
// every output here is assigned (=); bn_forward_train saves mean and rstd for bn_backward.
// Nothing else is saved: the cross-entropy and distillation backwards recompute their softmaxes
// from the logits.
//
// Determinism: every sum runs in a fixed order — one thread per output looping in order
// (pooling, BatchNorm channels, a row's classes), and xent_forward's and kd_forward's batch
// means through workgroup_sum's fixed tree. No atomics.

// #import common/reduce
// #import common/grid

// N rows; T tokens (pooling); C = D (pooling), K (cross-entropy) or C (BatchNorm).
// eps: BatchNorm's eps. momentum: BatchNorm's running-stat momentum. smoothing: ε.
// scale: dloss/N for xent_backward and kd_backward. soft_weight λ, temperature τ: distillation.
struct Params {
  N: u32, T: u32, C: u32, _pad: u32, eps: f32, momentum: f32, smoothing: f32, scale: f32,
  soft_weight: f32, temperature: f32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const EW_WG = 256u; // one element (or row, or channel) per thread

// ---- global average pooling of the patch tokens ---------------------------------------------
@group(0) @binding(1) var<storage, read_write> pool_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> pool_x: array<f32>;

@compute @workgroup_size(EW_WG)
fn mean_pool_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = grid_index(wid, nwg, lid, EW_WG);
  if (i >= p.N * p.C) { return; }
  let n = i / p.C;
  let d = i % p.C;
  var s = 0.0;
  for (var t = 1u; t < p.T; t++) { s += pool_x[(n * p.T + t) * p.C + d]; }
  pool_out[i] = s / f32(p.T - 1u);
}

@compute @workgroup_size(EW_WG)
fn cls_pool_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = grid_index(wid, nwg, lid, EW_WG);
  if (i >= p.N * p.C) { return; }
  pool_out[i] = pool_x[(i / p.C) * p.T * p.C + i % p.C];
}

@group(0) @binding(1) var<storage, read_write> pool_dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> pool_dout: array<f32>;

@compute @workgroup_size(EW_WG)
fn mean_pool_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = grid_index(wid, nwg, lid, EW_WG);
  if (i >= p.N * p.T * p.C) { return; }
  let d = i % p.C;
  let t = (i / p.C) % p.T;
  let n = i / (p.C * p.T);
  var g = 0.0;
  if (t > 0u) { g = pool_dout[n * p.C + d] / f32(p.T - 1u); }
  pool_dx[i] = g;
}

// ---- softmax cross-entropy --------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> xe_stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> xe_pred: array<u32>;
@group(0) @binding(3) var<storage, read_write> xe_logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> xe_labels: array<u32>;

// (max, log Σ exp(z − max), argmax) of row r. Stable: shifted by the row's maximum.
fn row_lse(r: u32, K: u32) -> vec3<f32> {
  let base = r * K;
  var m = xe_logits[base];
  var am = 0u;
  for (var k = 1u; k < K; k++) {
    let z = xe_logits[base + k];
    if (z > m) { m = z; am = k; }
  }
  var s = 0.0;
  for (var k = 0u; k < K; k++) { s += exp(xe_logits[base + k] - m); }
  return vec3(m, log(s), f32(am));
}

@compute @workgroup_size(REDUCE_WG)
fn xent_forward(@builtin(local_invocation_index) lid: u32) {
  let K = p.C;
  let eps = p.smoothing;
  var loss = 0.0;
  var correct = 0.0;
  for (var r = lid; r < p.N; r += REDUCE_WG) {
    let base = r * K;
    let st = row_lse(r, K);
    let am = u32(st.z);
    // −log p_k = lse − z_k with lse = m + log Σ exp(z − m); q·(−log p) summed over k.
    var mean_nll = 0.0;
    for (var k = 0u; k < K; k++) { mean_nll += st.x + st.y - xe_logits[base + k]; }
    let y = xe_labels[r];
    let nll = st.x + st.y - xe_logits[base + y];
    loss += (1.0 - eps) * nll + eps * mean_nll / f32(K);
    xe_pred[r] = am;
    if (am == y) { correct += 1.0; }
  }
  let total = workgroup_sum(lid, loss);
  let total_correct = workgroup_sum(lid, correct);
  if (lid == 0u) {
    xe_stats[0] = total / f32(p.N);
    xe_stats[1] = total_correct;
  }
}

@group(0) @binding(1) var<storage, read_write> xe_dlogits: array<f32>;
@group(0) @binding(2) var<storage, read_write> xeb_logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> xeb_labels: array<u32>;

// One thread per row: the row's max and Σ exp, then every class in order.
@compute @workgroup_size(EW_WG)
fn xent_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = grid_index(wid, nwg, lid, EW_WG);
  if (r >= p.N) { return; }
  let K = p.C;
  let base = r * K;
  var m = xeb_logits[base];
  for (var k = 1u; k < K; k++) { m = max(m, xeb_logits[base + k]); }
  var s = 0.0;
  for (var k = 0u; k < K; k++) { s += exp(xeb_logits[base + k] - m); }
  let y = xeb_labels[r];
  let off = p.smoothing / f32(K);
  for (var k = 0u; k < K; k++) {
    var q = off;
    if (k == y) { q += 1.0 - p.smoothing; }
    xe_dlogits[base + k] = p.scale * (exp(xeb_logits[base + k] - m) / s - q);
  }
}

// ---- knowledge distillation: hard-label cross-entropy + τ²·KL to the teacher's soft labels ---
@group(0) @binding(1) var<storage, read_write> kd_stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> kd_pred: array<u32>;
@group(0) @binding(3) var<storage, read_write> kd_logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> kd_teacher: array<f32>;
@group(0) @binding(5) var<storage, read_write> kd_labels: array<u32>;

@compute @workgroup_size(REDUCE_WG)
fn kd_forward(@builtin(local_invocation_index) lid: u32) {
  let K = p.C;
  let eps = p.smoothing;
  let lam = p.soft_weight;
  let tau = p.temperature;
  var loss = 0.0;
  var correct = 0.0;
  for (var r = lid; r < p.N; r += REDUCE_WG) {
    let base = r * K;
    // Row maxima (and the student's argmax, first maximum); τ > 0 keeps the max of z/τ at max/τ.
    var ms = kd_logits[base];
    var am = 0u;
    var mt = kd_teacher[base];
    for (var k = 1u; k < K; k++) {
      let z = kd_logits[base + k];
      if (z > ms) { ms = z; am = k; }
      mt = max(mt, kd_teacher[base + k]);
    }
    // Stable log-sum-exps: of s (the hard term), of s/τ and t/τ (the soft term).
    var se = 0.0;
    var sst = 0.0;
    var stt = 0.0;
    for (var k = 0u; k < K; k++) {
      let z = kd_logits[base + k];
      se += exp(z - ms);
      sst += exp((z - ms) / tau);
      stt += exp((kd_teacher[base + k] - mt) / tau);
    }
    let lse = ms + log(se);
    let lse_s = log(sst); // of (s − max s)/τ
    let lse_t = log(stt); // of (t − max t)/τ
    var mean_nll = 0.0;
    var kl = 0.0;
    for (var k = 0u; k < K; k++) {
      let z = kd_logits[base + k];
      mean_nll += lse - z;
      let log_pt = (kd_teacher[base + k] - mt) / tau - lse_t;
      let log_ps = (z - ms) / tau - lse_s;
      kl += exp(log_pt) * (log_pt - log_ps); // p_t = 0 adds 0: no 0·log 0
    }
    let y = kd_labels[r];
    let ce = (1.0 - eps) * (lse - kd_logits[base + y]) + eps * mean_nll / f32(K);
    loss += (1.0 - lam) * ce + lam * tau * tau * kl;
    kd_pred[r] = am;
    if (am == y) { correct += 1.0; }
  }
  let total = workgroup_sum(lid, loss);
  let total_correct = workgroup_sum(lid, correct);
  if (lid == 0u) {
    kd_stats[0] = total / f32(p.N);
    kd_stats[1] = total_correct;
  }
}

@group(0) @binding(1) var<storage, read_write> kdb_dlogits: array<f32>;
@group(0) @binding(2) var<storage, read_write> kdb_logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> kdb_teacher: array<f32>;
@group(0) @binding(4) var<storage, read_write> kdb_labels: array<u32>;

// One thread per row: the three softmax normalisers, then every class in order.
@compute @workgroup_size(EW_WG)
fn kd_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = grid_index(wid, nwg, lid, EW_WG);
  if (r >= p.N) { return; }
  let K = p.C;
  let base = r * K;
  let lam = p.soft_weight;
  let tau = p.temperature;
  var ms = kdb_logits[base];
  var mt = kdb_teacher[base];
  for (var k = 1u; k < K; k++) {
    ms = max(ms, kdb_logits[base + k]);
    mt = max(mt, kdb_teacher[base + k]);
  }
  var se = 0.0;
  var sst = 0.0;
  var stt = 0.0;
  for (var k = 0u; k < K; k++) {
    let z = kdb_logits[base + k] - ms;
    se += exp(z);
    sst += exp(z / tau);
    stt += exp((kdb_teacher[base + k] - mt) / tau);
  }
  let y = kdb_labels[r];
  let off = p.smoothing / f32(K);
  for (var k = 0u; k < K; k++) {
    var q = off;
    if (k == y) { q += 1.0 - p.smoothing; }
    let z = kdb_logits[base + k] - ms;
    let hard = exp(z) / se - q;
    let soft = exp(z / tau) / sst - exp((kdb_teacher[base + k] - mt) / tau) / stt;
    kdb_dlogits[base + k] = p.scale * ((1.0 - lam) * hard + lam * tau * soft);
  }
}

// ---- non-affine BatchNorm1d --------------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> bn_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> bn_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> bn_rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> bn_rmean: array<f32>;
@group(0) @binding(5) var<storage, read_write> bn_rvar: array<f32>;
@group(0) @binding(6) var<storage, read_write> bn_x: array<f32>;

// One thread per channel, rows in order; two passes (mean, then Σ(x − mean)²): stable.
@compute @workgroup_size(EW_WG)
fn bn_forward_train(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = grid_index(wid, nwg, lid, EW_WG);
  if (c >= p.C) { return; }
  let C = p.C;
  // Shifted by the first row (as layernorm.wgsl): features with a large common offset keep the
  // precision of their spread, not of the offset.
  let x0 = bn_x[c];
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) { s += bn_x[n * C + c] - x0; }
  let shift = s / f32(p.N);
  let mean = x0 + shift;
  var q = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let d = (bn_x[n * C + c] - x0) - shift;
    q += d * d;
  }
  let variance = q / f32(p.N);
  let rstd = 1.0 / sqrt(variance + p.eps);
  for (var n = 0u; n < p.N; n++) { bn_out[n * C + c] = ((bn_x[n * C + c] - x0) - shift) * rstd; }
  bn_mean[c] = mean;
  bn_rstd[c] = rstd;
  // torch updates the running variance with the unbiased estimate (N = 1 would divide by 0:
  // the wrapper refuses it, as torch does in training mode).
  let mom = p.momentum;
  bn_rmean[c] = (1.0 - mom) * bn_rmean[c] + mom * mean;
  bn_rvar[c] = (1.0 - mom) * bn_rvar[c] + mom * q / f32(p.N - 1u);
}

@group(0) @binding(1) var<storage, read_write> bne_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> bne_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> bne_rmean: array<f32>;
@group(0) @binding(4) var<storage, read_write> bne_rvar: array<f32>;

@compute @workgroup_size(EW_WG)
fn bn_forward_eval(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = grid_index(wid, nwg, lid, EW_WG);
  if (i >= p.N * p.C) { return; }
  let c = i % p.C;
  bne_out[i] = (bne_x[i] - bne_rmean[c]) / sqrt(bne_rvar[c] + p.eps);
}

@group(0) @binding(1) var<storage, read_write> bnb_dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> bnb_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> bnb_x: array<f32>;
@group(0) @binding(4) var<storage, read_write> bnb_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> bnb_rstd: array<f32>;

@compute @workgroup_size(EW_WG)
fn bn_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = grid_index(wid, nwg, lid, EW_WG);
  if (c >= p.C) { return; }
  let C = p.C;
  let mean = bnb_mean[c];
  let rstd = bnb_rstd[c];
  var sg = 0.0;
  var sgx = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let g = bnb_dout[n * C + c];
    sg += g;
    sgx += g * (bnb_x[n * C + c] - mean) * rstd;
  }
  let mg = sg / f32(p.N);
  let mgx = sgx / f32(p.N);
  for (var n = 0u; n < p.N; n++) {
    let xh = (bnb_x[n * C + c] - mean) * rstd;
    bnb_dx[n * C + c] = rstd * (bnb_dout[n * C + c] - mg - xh * mgx);
  }
}
