// The training losses: MAE's masked pixel MSE and DMAE's feature distillation loss, forward and
// backward, plus a generic deterministic sum. MAE's norm_pix targets arrive already standardised:
// patch.wgsl's patchify_target_norm builds them while it patchifies.
//
// Shape letters: N batch, L patches per image, P patch vector length (p·p·C), R feature rows
// (tokens, cls included), C feature width (teacher width), G workgroups of mae_patch_loss
// (⌈N·L / REDUCE_WG⌉). All tensors are row-major f32.
// mask[N·L] is MAE's mask as f32: 1 = masked (the loss counts it), 0 = visible (kept).
//
// Entry points and bindings (0 = Params; storage from 1, outputs first). Every output is
// assigned (=): nothing here is a parameter gradient.
//   mae_patch_loss         1 loss_per_patch[N·L] = mean_P (pred − target)²                 3 pred 4 target 5 mask
//                          2 partials[2G] = per workgroup (Σ loss_per_patch·mask, Σ mask)
//   mae_loss_final         1 loss[2] = (Σ loss_per_patch·mask / Σ mask, Σ mask)            2 partials
//   mae_loss_backward      1 dpred[N·L,P] = mask·2(pred − target)/(P·Σmask)·dloss          2 pred 3 target 4 mask 5 loss[2]
//   distill_row_loss       1 row_loss[R] = Σ_c f(t̂ − ŝ), f = |·| or (·)²                   2 teacher 3 student
//   distill_backward       1 dstudent[R,C] = d(scale·Σ f(t̂ − ŝ))/dstudent                  2 teacher 3 student
//   reduce_sum_partial     1 partials[G] = per-workgroup Σ x (or Σ x²)                     2 x
//   reduce_sum_partial_vec4 1 partials[G·256] = per-thread Σ x (or Σ x²), x read as vec4s   2 x
//   reduce_sum_final       1 out[1] = scale · Σ partials (or scale · sqrt(Σ partials))     2 partials
// Saved by the MAE forward for its backward: loss[1] = Σ mask (mae_loss_backward reads it, so
// the backward needs the forward of the same step, recorded before it).
// x̂ = x / max(‖x‖₂, 1e-12) per row, as torch.nn.functional.normalize. The teacher is frozen:
// only the student side gets a gradient. Nothing is saved by a forward for its backward: the
// backwards recompute the per-row norms (cheap, and it keeps the caller's tensors the only state).
//
// Determinism: every sum has a fixed order — a thread loops over its elements in order, then
// workgroup_sum (common/reduce) adds the threads in a fixed tree; cross-workgroup sums go
// through per-workgroup partials and a second one-workgroup dispatch. No atomics.
// The row kernels (distill_*) loop over rows with stride num_workgroups (one workgroup per row at a time), so
// any row count fits in the 65535-workgroup limit; mae_patch_loss (a thread per patch) and
// mae_loss_backward run on 2-D grids (common/grid).

// #import common/reduce
// #import common/grid

// Distillation: L2 (MSE) instead of L1 (the recipe's default).
override DIST_L2: bool = false;
// Generic sum: sum x² instead of x (sums of squares for gradient norms).
override SQUARE: bool = false;
// Generic sum: the final pass takes the square root (with SQUARE: the L2 norm, AdamW's grad norm).
override ROOT: bool = false;

const NORM_EPS = 1e-12;   // F.normalize's eps
const EW_WG = 256u;       // element-wise workgroup size

// rows, cols: the 2-D shape the entry point works on (see each entry point).
// count: element count of the generic sum (reduce_sum_partial), of its partials (reduce_sum_final),
// or G, the partial pairs of mae_loss_final.
// scale: dloss for mae_loss_backward, dloss/(R·C) for distill_backward, the factor of reduce_sum_final.
struct Params { rows: u32, cols: u32, count: u32, scale: f32 }

@group(0) @binding(0) var<uniform> p: Params;

// The output (binding 1); mae_patch_loss has a second one (out_partials, binding 2).
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// Inputs, named by role. Several names share a binding; no entry point uses two of them.
@group(0) @binding(2) var<storage, read_write> in_pred: array<f32>;
@group(0) @binding(3) var<storage, read_write> in_target: array<f32>;
@group(0) @binding(4) var<storage, read_write> in_mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> in_loss: array<f32>;     // mae_loss_backward: the forward's loss[2]

@group(0) @binding(2) var<storage, read_write> in_x: array<f32>;        // reduce_sum_*, mae_loss_final
@group(0) @binding(2) var<storage, read_write> in_x4: array<vec4<f32>>; // reduce_sum_partial_vec4: in_x as vec4s
@group(0) @binding(2) var<storage, read_write> in_teacher: array<f32>;  // distill_*
@group(0) @binding(3) var<storage, read_write> in_student: array<f32>;  // distill_*
@group(0) @binding(2) var<storage, read_write> out_partials: array<f32>; // mae_patch_loss: its second output
@group(0) @binding(3) var<storage, read_write> pl_pred: array<f32>;      // mae_patch_loss: pred
@group(0) @binding(4) var<storage, read_write> pl_target: array<f32>;    // mae_patch_loss: target
@group(0) @binding(5) var<storage, read_write> pl_mask: array<f32>;      // mae_patch_loss: mask

// ---- MAE masked MSE -------------------------------------------------------------------------
// Two dispatches for the forward, one for the backward. mae_patch_loss (rows = N·L, cols = P):
// one thread per patch sums its P squared errors in order and writes loss_per_patch (kept for
// the per-patch error maps); the workgroup then adds its patches' loss·mask and mask with the
// fixed tree into partials[2g], partials[2g + 1]. mae_loss_final (count = G, one workgroup) adds
// the G pairs in order (thread t: pairs t, t + REDUCE_WG, …, then the tree). G depends only on
// N·L, so the bits depend only on the inputs. A thread per patch (not a workgroup per patch):
// a patch is short (P = 48 at ViT-Tiny), and one tree per REDUCE_WG patches instead of one per
// patch is what makes it cheap on CPU adapters, where every barrier switches all SIMD batches.
@compute @workgroup_size(REDUCE_WG)
fn mae_patch_loss(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let g = grid_workgroup(wid, nwg);
  let r = g * REDUCE_WG + lid;
  var num = 0.0;
  var den = 0.0;
  if (r < p.rows) {
    let P = p.cols;
    let base = r * P;
    var s = 0.0;
    for (var c = 0u; c < P; c++) {
      let d = pl_pred[base + c] - pl_target[base + c];
      s += d * d;
    }
    let l = s / f32(P);
    out[r] = l;
    let m = pl_mask[r];
    num = l * m;
    den = m;
  }
  let total_num = workgroup_sum(lid, num);
  let total_den = workgroup_sum(lid, den);
  // The 2-D grid's last row may hold workgroups past G: they own no partial.
  if (lid == 0u && g * REDUCE_WG < p.rows) {
    out_partials[2u * g] = total_num;
    out_partials[2u * g + 1u] = total_den;
  }
}

// count = G. out[0] = the loss, out[1] = Σ mask (for the backward). Σ mask = 0 gives 0/0 = NaN,
// as PyTorch and the reference.
@compute @workgroup_size(REDUCE_WG)
fn mae_loss_final(@builtin(local_invocation_index) lid: u32) {
  var num = 0.0;
  var den = 0.0;
  for (var g = lid; g < p.count; g += REDUCE_WG) {
    num += in_x[2u * g];
    den += in_x[2u * g + 1u];
  }
  let total_num = workgroup_sum(lid, num);
  let total_den = workgroup_sum(lid, den);
  if (lid == 0u) {
    out[0] = total_num / total_den;
    out[1] = total_den;
  }
}

// rows = N·L, cols = P, scale = dloss. loss[1] = Σ mask, written by mae_loss_final of the same
// step's forward (no second sum of the mask). 2-D dispatch, flat index.
@compute @workgroup_size(EW_WG)
fn mae_loss_backward(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i = grid_index(wid, nwg, lid, EW_WG);
  if (i >= p.rows * p.cols) { return; }
  let coef = 2.0 * p.scale / (f32(p.cols) * in_loss[1]);
  out[i] = in_mask[i / p.cols] * coef * (in_pred[i] - in_target[i]);
}

// ---- DMAE feature distillation ---------------------------------------------------------------
// rows = R, cols = C. Per row: both norms, then Σ_c f(t̂ − ŝ). The mean over R·C is taken by
// the generic sum over row_loss (reduce_sum_*, scale 1/(R·C)).

// (‖teacher row‖₂, ‖student row‖₂) of the row at `base`, unclamped, to every invocation. Has
// barriers (workgroup_sum): call from uniform control flow.
fn row_norms(lid: u32, base: u32, C: u32) -> vec2<f32> {
  var tt = 0.0;
  var ss = 0.0;
  for (var c = lid; c < C; c += REDUCE_WG) {
    let t = in_teacher[base + c];
    let s = in_student[base + c];
    tt += t * t;
    ss += s * s;
  }
  return vec2(sqrt(workgroup_sum(lid, tt)), sqrt(workgroup_sum(lid, ss)));
}

@compute @workgroup_size(REDUCE_WG)
fn distill_row_loss(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let C = p.cols;
  for (var r = wid.x; r < p.rows; r += nwg.x) {
    let base = r * C;
    let norms = row_norms(lid, base, C);
    let nt = max(norms.x, NORM_EPS);
    let ns = max(norms.y, NORM_EPS);
    var acc = 0.0;
    for (var c = lid; c < C; c += REDUCE_WG) {
      let d = in_teacher[base + c] / nt - in_student[base + c] / ns;
      if (DIST_L2) { acc += d * d; } else { acc += abs(d); }
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) { out[r] = total; }
  }
}

// rows = R, cols = C, scale = dloss/(R·C). With g = ∂loss/∂ŝ (scale·sign(ŝ − t̂) for L1, sign(0)
// = 0 as torch; scale·2(ŝ − t̂) for L2): dstudent = (g − ŝ(ŝ·g))/‖s‖ where ‖s‖ > eps, else g/eps
// (the clamped norm is a constant there, as in torch's clamp_min backward).
@compute @workgroup_size(REDUCE_WG)
fn distill_backward(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let C = p.cols;
  for (var r = wid.x; r < p.rows; r += nwg.x) {
    let base = r * C;
    let norms = row_norms(lid, base, C);
    let nt = max(norms.x, NORM_EPS);
    let norm_s = norms.y;
    let ns = max(norm_s, NORM_EPS);
    var sg = 0.0;
    for (var c = lid; c < C; c += REDUCE_WG) {
      let sh = in_student[base + c] / ns;
      sg += sh * distill_grad(in_teacher[base + c] / nt, sh);
    }
    let dot_sg = workgroup_sum(lid, sg);
    for (var c = lid; c < C; c += REDUCE_WG) {
      let sh = in_student[base + c] / ns;
      let g = distill_grad(in_teacher[base + c] / nt, sh);
      out[base + c] = select(g / NORM_EPS, (g - sh * dot_sg) / ns, norm_s > NORM_EPS);
    }
  }
}

// ∂(scale·f(t̂ − ŝ))/∂ŝ for one element.
fn distill_grad(th: f32, sh: f32) -> f32 {
  let d = sh - th;
  if (DIST_L2) { return p.scale * 2.0 * d; }
  return p.scale * sign(d);
}

// ---- Generic deterministic sum ------------------------------------------------------------------
// out[0] = scale · Σ_{i<count} x[i] (x[i]² with SQUARE; scale · sqrt(Σ) with ROOT), in two
// dispatches: reduce_sum_partial with G workgroups writes partials[G] (each thread sums a strided
// share in order, then the tree), and reduce_sum_final (one workgroup) sums the G partials. G
// depends only on count, so the order, and the bits, depend only on the inputs.
@compute @workgroup_size(REDUCE_WG)
fn reduce_sum_partial(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  var acc = 0.0;
  let stride = nwg.x * REDUCE_WG;
  for (var i = wid.x * REDUCE_WG + lid; i < p.count; i += stride) {
    let v = in_x[i];
    if (SQUARE) { acc += v * v; } else { acc += v; }
  }
  let total = workgroup_sum(lid, acc);
  if (lid == 0u) { out[wid.x] = total; }
}

// The first pass for big sums, reading x as vec4s (in_x4) and with no barrier: workgroup w of G
// owns the contiguous block of B = ⌈⌈count/4⌉/G⌉ vec4s from w·B; its thread t sums the block's
// vec4s t, t + REDUCE_WG, … in order, lane by lane (lane j holds x[4q + j]), adds its lanes as
// (x + y) + (z + w), and writes partials[w·REDUCE_WG + t]; reduce_sum_final then sums the G·REDUCE_WG
// partials (thread t: partials t, t + REDUCE_WG, …, i.e. thread t of every workgroup in order,
// then the tree). A fixed order, another one than reduce_sum_partial's. Why no in-workgroup
// tree: on CPU adapters (lavapipe) every barrier switches all of a workgroup's SIMD batches,
// and G trees of 9 barriers cost several times the reading itself; one tree in the final pass
// does. The wrapper binds a view of at least 4⌈count/4⌉ elements; lanes at or past count add 0.
@compute @workgroup_size(REDUCE_WG)
fn reduce_sum_partial_vec4(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  var acc = vec4<f32>(0.0);
  let nq = (p.count + 3u) / 4u;
  let per = (nq + nwg.x - 1u) / nwg.x;
  let end = min(nq, (wid.x + 1u) * per);
  for (var q = wid.x * per + lid; q < end; q += REDUCE_WG) {
    let inside = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.count);
    let v = select(vec4<f32>(0.0), in_x4[q], inside);
    if (SQUARE) { acc += v * v; } else { acc += v; }
  }
  out[wid.x * REDUCE_WG + lid] = (acc.x + acc.y) + (acc.z + acc.w);
}

@compute @workgroup_size(REDUCE_WG)
fn reduce_sum_final(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.count; i += REDUCE_WG) { acc += in_x[i]; }
  let total = workgroup_sum(lid, acc);
  if (lid == 0u) { out[0] = select(total, sqrt(total), ROOT) * p.scale; }
}
