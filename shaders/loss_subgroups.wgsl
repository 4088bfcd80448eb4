// DMAE's distillation loss rows (distill_row_loss, distill_backward) with subgroup reductions: the
// 'subgroup' variant of loss.wgsl's, for devices with the WebGPU feature 'subgroups'. The same
// maths, Params and bindings as there (see its header), for C % 4 == 0, read as vec4s:
//   distill_row_loss   1 row_loss[R] = Σ_c f(t̂ − ŝ), f = |·| or (·)²        2 teacher 3 student
//   distill_backward   1 dstudent[R,C] = d(scale·Σ f(t̂ − ŝ))/dstudent        2 teacher 3 student
//
// Why: loss.wgsl reduces each row with a tree of 256 invocations (a barrier per level, three
// trees a row); CPU adapters pay dearly for barriers, and a row of 384 leaves most of them idle.
// Here a workgroup of SG_WG invocations (the adapter's subgroup size) takes ROWS_PER_WORKGROUP
// rows one after another, and a row sum is one subgroupAdd (common/subgroup_rows: correct for any
// mapping of invocations onto subgroups). Rows past 65535 workgroups spill into y (common/grid).
// Each lane sums its vec4s in order, then their components: close to, not the same bits as,
// loss.wgsl's. Deterministic for a given pipeline and device.
enable subgroups;

// #import common/grid
// #import common/subgroup_rows

struct Params { rows: u32, cols: u32, count: u32, scale: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(1) var<storage, read_write> dstudent4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> teacher4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> student4: array<vec4<f32>>;

// Invocations per workgroup; at most 256.
override SG_WG: u32 = 32u;
override ROWS_PER_WORKGROUP: u32 = 4u;
// L2 (MSE) instead of L1 (the recipe's default).
override DIST_L2: bool = false;

const NORM_EPS = 1e-12; // F.normalize's eps

// Row r of the workgroup's turn: its first vec4, the teacher's and the student's norms clamped
// as F.normalize does, and the student's unclamped one; to every invocation of the working
// subgroup. Call from uniform control flow.
struct Row { base: u32, nt: f32, ns: f32, norm_s: f32 }

fn row_at(w: Lanes, r: u32) -> Row {
  let base = r * (p.cols / 4u);
  var tt = vec4(0.0);
  var ss = vec4(0.0);
  for (var i = w.lane; i < w.end; i += w.n) {
    let t = teacher4[base + i];
    let s = student4[base + i];
    tt += t * t;
    ss += s * s;
  }
  let norms = sqrt(vec2(subgroupAdd(sum4(tt)), subgroupAdd(sum4(ss))));
  return Row(base, max(norms.x, NORM_EPS), max(norms.y, NORM_EPS), norms.y);
}

// The workgroup's rows, [x, y).
fn rows_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
  let r0 = grid_workgroup(wid, nwg) * ROWS_PER_WORKGROUP;
  return vec2(r0, min(r0 + ROWS_PER_WORKGROUP, p.rows));
}

// ∂(scale·f(t̂ − ŝ))/∂ŝ, four elements.
fn distill_grad4(th: vec4<f32>, sh: vec4<f32>) -> vec4<f32> {
  let d = sh - th;
  if (DIST_L2) { return p.scale * 2.0 * d; }
  return p.scale * sign(d);
}

@compute @workgroup_size(SG_WG)
fn distill_row_loss(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = lanes(lid, p.cols / 4u);
  let rows = rows_of(wid, nwg);
  for (var r = rows.x; r < rows.y; r++) {
    let row = row_at(w, r);
    var acc = vec4(0.0);
    for (var i = w.lane; i < w.end; i += w.n) {
      let d = teacher4[row.base + i] / row.nt - student4[row.base + i] / row.ns;
      if (DIST_L2) { acc += d * d; } else { acc += abs(d); }
    }
    let total = subgroupAdd(sum4(acc));
    if (lid == 0u) { row_loss[r] = total; } // in the working subgroup
  }
}

// As loss.wgsl's: dstudent = (g − ŝ(ŝ·g))/‖s‖ where ‖s‖ > eps, else g/eps.
@compute @workgroup_size(SG_WG)
fn distill_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = lanes(lid, p.cols / 4u);
  let rows = rows_of(wid, nwg);
  for (var r = rows.x; r < rows.y; r++) {
    let row = row_at(w, r);
    var sg = vec4(0.0);
    for (var i = w.lane; i < w.end; i += w.n) {
      let sh = student4[row.base + i] / row.ns;
      sg += sh * distill_grad4(teacher4[row.base + i] / row.nt, sh);
    }
    let dot_sg = subgroupAdd(sum4(sg));
    for (var i = w.lane; i < w.end; i += w.n) {
      let sh = student4[row.base + i] / row.ns;
      let g = distill_grad4(teacher4[row.base + i] / row.nt, sh);
      dstudent4[row.base + i] = select(g / NORM_EPS, (g - sh * dot_sg) / row.ns, row.norm_s > NORM_EPS);
    }
  }
}
