/** The teacher panel's arithmetic, apart from React (tested in Node). */
import type { ModelSpec } from '../../protocol/train';

/** A larger MAE than the student: twice the width and the heads (same head size), at least 4 blocks; same geometry and decoder. */
export function teacherModelFor(student: ModelSpec): ModelSpec {
  return { ...student, embedDim: 2 * student.embedDim, numHeads: 2 * student.numHeads, depth: Math.max(4, student.depth) };
}

/** Trainable parameters of the encoder (patch embedding, cls, blocks, final norm; the fixed sin-cos table excluded). */
export function encoderParamCount(m: Pick<ModelSpec, 'embedDim' | 'depth' | 'mlpRatio' | 'patchSize' | 'inChans'>): number {
  const D = m.embedDim, K = m.inChans * m.patchSize ** 2, H = m.mlpRatio * D;
  const block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (H * D + H) + (D * H + D);
  return D * K + D + D + m.depth * block + 2 * D;
}

const fmtCount = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n));

/** "64-wide, 4 blocks, 4 heads · 28×28×1 in 4-px patches · 201.2 k encoder parameters". */
export const describeTeacher = (m: ModelSpec): string =>
  `${m.embedDim}-wide, ${m.depth} blocks, ${m.numHeads} heads · ${m.imgSize}×${m.imgSize}×${m.inChans} in ${m.patchSize}-px patches · ${fmtCount(encoderParamCount(m))} encoder parameters`;

/** The aligned pair as the panel says it, with what the teacher runs (or why kT does not fit it). */
export const alignmentText = (kS: number, kT: number, teacherDepth: number): string =>
  `Aligned: student block kS = ${kS} → teacher block kT = ${kT}` +
  (kT >= teacherDepth || kT < 0 ? ` (out of range: the teacher has blocks 0..${teacherDepth - 1})` : ` of 0..${teacherDepth - 1}; the teacher runs blocks 0..${kT} only`);
