/** Float64 reference of shaders/loss.wgsl; same names and argument order as src/gpu/ops/loss.ts. */
import type { DistillKind } from '../gpu/ops/loss';
export type { DistillKind };

type Vec = Float64Array;

const NORM_EPS = 1e-12;
const PIX_EPS = 1e-6;

/** out[0] = scale · Σ_{i<n} x[i] ('sum'), scale · Σ x[i]² ('sumsq') or scale · sqrt(Σ x[i]²) ('norm'). */
export function sumReduce(out: Vec, x: Vec, n: number, op: 'sum' | 'sumsq' | 'norm' = 'sum', scale = 1): void {
  let s = 0;
  for (let i = 0; i < n; i++) s += op === 'sum' ? x[i] : x[i] * x[i];
  out[0] = (op === 'norm' ? Math.sqrt(s) : s) * scale;
}

/** out[rows, P] = (x − mean)/sqrt(var_unbiased + 1e-6) per row. */
export function normalizePixelTargets(out: Vec, target: Vec, rows: number, P: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * P;
    let mean = 0;
    for (let c = 0; c < P; c++) mean += target[base + c];
    mean /= P;
    let q = 0;
    for (let c = 0; c < P; c++) q += (target[base + c] - mean) ** 2;
    const sd = Math.sqrt(q / (P - 1) + PIX_EPS);
    for (let c = 0; c < P; c++) out[base + c] = (target[base + c] - mean) / sd;
  }
}

/** lossPerPatch[N·L] = mean_P (pred − target)²; loss[0] = Σ lossPerPatch·mask / Σ mask, loss[1] = Σ mask. */
export function maeLossForward(loss: Vec, lossPerPatch: Vec, pred: Vec, target: Vec, mask: Vec, N: number, L: number, P: number): void {
  if (loss.length < 2) throw new Error('maeLossForward: loss holds (loss, Σmask) and needs 2 elements.');
  let num = 0;
  let den = 0;
  for (let r = 0; r < N * L; r++) {
    let s = 0;
    for (let c = 0; c < P; c++) s += (pred[r * P + c] - target[r * P + c]) ** 2;
    lossPerPatch[r] = s / P;
    num += lossPerPatch[r] * mask[r];
    den += mask[r];
  }
  loss[0] = num / den;
  loss[1] = den;
}

/** dpred[N·L, P] = mask · 2(pred − target)/P / Σmask · dloss, with Σmask = loss[1] from maeLossForward. */
export function maeLossBackward(dpred: Vec, pred: Vec, target: Vec, mask: Vec, loss: Vec, N: number, L: number, P: number, dloss = 1): void {
  if (loss.length < 2) throw new Error("maeLossBackward: loss is maeLossForward's (loss, Σmask) and needs 2 elements.");
  const den = loss[1];
  for (let r = 0; r < N * L; r++) {
    for (let c = 0; c < P; c++) {
      const i = r * P + c;
      dpred[i] = (mask[r] * dloss * 2 * (pred[i] - target[i])) / (P * den);
    }
  }
}

/** max(‖row‖₂, eps), the divisor of F.normalize, and the unclamped norm. */
function rowNorm(x: Vec, base: number, C: number): { norm: number; div: number } {
  let s = 0;
  for (let c = 0; c < C; c++) s += x[base + c] ** 2;
  const norm = Math.sqrt(s);
  return { norm, div: Math.max(norm, NORM_EPS) };
}

/** loss[0] = mean over R·C of |t̂ − ŝ| ('l1') or (t̂ − ŝ)² ('l2'), rows normalised as F.normalize. */
export function distillLossForward(loss: Vec, teacher: Vec, student: Vec, R: number, C: number, kind: DistillKind = 'l1'): void {
  let s = 0;
  for (let r = 0; r < R; r++) {
    const base = r * C;
    const nt = rowNorm(teacher, base, C).div;
    const ns = rowNorm(student, base, C).div;
    for (let c = 0; c < C; c++) {
      const d = teacher[base + c] / nt - student[base + c] / ns;
      s += kind === 'l2' ? d * d : Math.abs(d);
    }
  }
  loss[0] = s / (R * C);
}

/** dstudent[R, C] = ∂(dloss · L_dist)/∂student; the teacher gets no gradient. */
export function distillLossBackward(dstudent: Vec, teacher: Vec, student: Vec, R: number, C: number, kind: DistillKind = 'l1', dloss = 1): void {
  const scale = dloss / (R * C);
  const g = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const base = r * C;
    const nt = rowNorm(teacher, base, C).div;
    const { norm, div: ns } = rowNorm(student, base, C);
    let dot = 0;
    for (let c = 0; c < C; c++) {
      const sh = student[base + c] / ns;
      const d = sh - teacher[base + c] / nt;
      g[c] = kind === 'l2' ? scale * 2 * d : scale * Math.sign(d);
      dot += sh * g[c];
    }
    for (let c = 0; c < C; c++) {
      // d(x/‖x‖)/dx = (I − x̂x̂ᵀ)/‖x‖; where the norm is clamped to eps the divisor is a constant.
      dstudent[base + c] = norm > NORM_EPS ? (g[c] - (student[base + c] / ns) * dot) / ns : g[c] / NORM_EPS;
    }
  }
}
