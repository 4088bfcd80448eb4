/**
 * Model configurations: the MAE encoder/decoder sizes and the DMAE teacher alignment, by name
 * (presets) or by numbers. Pure data and validation; no GPU.
 */

export interface VitConfig {
  imgSize: number;
  patchSize: number;
  inChans: number;
  /** Encoder width D, depth and heads. */
  embedDim: number;
  depth: number;
  numHeads: number;
  /** MLP hidden width = mlpRatio·D (4 in the reference). */
  mlpRatio: number;
}

export interface MaeConfig extends VitConfig {
  decoderEmbedDim: number;
  decoderDepth: number;
  decoderNumHeads: number;
  normPixLoss: boolean;
}

export const ENCODER_PRESETS = {
  test: { embedDim: 32, depth: 2, numHeads: 2 },
  'vit-tiny': { embedDim: 192, depth: 12, numHeads: 3 },
  'vit-small': { embedDim: 384, depth: 12, numHeads: 6 },
  'vit-base': { embedDim: 768, depth: 12, numHeads: 12 },
  'vit-large': { embedDim: 1024, depth: 24, numHeads: 16 },
} as const satisfies Record<string, Pick<VitConfig, 'embedDim' | 'depth' | 'numHeads'>>;

export type EncoderPreset = keyof typeof ENCODER_PRESETS;

/** A MAE of a named encoder size at a given image geometry; the decoder scales with the encoder. */
export function maeConfig(
  preset: EncoderPreset,
  geometry: { imgSize: number; patchSize: number; inChans: number },
  overrides: Partial<MaeConfig> = {},
): MaeConfig {
  const enc = ENCODER_PRESETS[preset];
  const decoder =
    preset === 'test'
      ? { decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2 }
      : preset === 'vit-tiny' || preset === 'vit-small'
        ? { decoderEmbedDim: 128, decoderDepth: 2, decoderNumHeads: 4 }
        : { decoderEmbedDim: 512, decoderDepth: 8, decoderNumHeads: 16 }; // the reference's ViT-B/L decoder
  const cfg: MaeConfig = { ...geometry, ...enc, mlpRatio: 4, ...decoder, normPixLoss: true, ...overrides };
  validateMaeConfig(cfg);
  return cfg;
}

export const numPatches = (c: VitConfig): number => (c.imgSize / c.patchSize) ** 2;
export const patchDim = (c: VitConfig): number => c.patchSize * c.patchSize * c.inChans;

/** Throws an Error whose message says which setting is impossible and why. */
export function validateMaeConfig(c: MaeConfig): void {
  const problems: string[] = [];
  const positiveInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) problems.push(`${name} must be a positive integer (got ${v})`);
  };
  for (const k of ['imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'decoderEmbedDim', 'decoderDepth', 'decoderNumHeads'] as const) positiveInt(k, c[k]);
  if (c.imgSize % c.patchSize !== 0) problems.push(`image size ${c.imgSize} is not a multiple of patch size ${c.patchSize}`);
  if (c.embedDim % c.numHeads !== 0) problems.push(`width ${c.embedDim} is not divisible by ${c.numHeads} heads`);
  if (c.decoderEmbedDim % c.decoderNumHeads !== 0) problems.push(`decoder width ${c.decoderEmbedDim} is not divisible by ${c.decoderNumHeads} heads`);
  // The fixed 2-D sin-cos embedding splits the width in four (sin/cos × row/column).
  if (c.embedDim % 4 !== 0) problems.push(`width ${c.embedDim} must be a multiple of 4 for the 2-D sin-cos position embedding`);
  if (c.decoderEmbedDim % 4 !== 0) problems.push(`decoder width ${c.decoderEmbedDim} must be a multiple of 4 for the 2-D sin-cos position embedding`);
  if (c.inChans !== 1 && c.inChans !== 3) problems.push(`input channels must be 1 or 3 (got ${c.inChans})`);
  if (problems.length > 0) throw new Error(`Invalid model configuration: ${problems.join('; ')}.`);
}

/** The reference's default aligned block: about three quarters of the depth, 0-based. */
export const defaultAlignedBlock = (depth: number): number => Math.max(0, Math.round(0.75 * depth) - 1);

/** One DMAE aligned pair: student block kS ↔ teacher block kT (0-based, raw block outputs). */
export interface AlignedPair {
  studentBlock: number;
  teacherBlock: number;
}

/** DMAE's distillation settings: loss = L_pix + α·Σ_pairs L_dist(T_kT, head_k(S_kS)). */
export interface DistillConfig {
  /** One projection head `aligned_feature_projection_heads.{k}` per pair k. */
  pairs: readonly AlignedPair[];
  /** Weight of L_dist (1 in the reference). */
  alpha: number;
  /** 'l1' (the recipe's choice) or 'l2' (MSE) between per-token L2-normalised features. */
  kind: 'l1' | 'l2';
}

/** The reference's pairing: about three quarters of each depth, α = 1, L1. */
export const defaultDistillConfig = (studentDepth: number, teacherDepth: number): DistillConfig => ({
  pairs: [{ studentBlock: defaultAlignedBlock(studentDepth), teacherBlock: defaultAlignedBlock(teacherDepth) }],
  alpha: 1,
  kind: 'l1',
});

/** The teacher runs blocks 0..teacherStopBlock only: the deepest aligned teacher block. */
export const teacherStopBlock = (d: DistillConfig): number => Math.max(...d.pairs.map((p) => p.teacherBlock));

/** Throws when a student/teacher pair cannot be distilled (the teacher must see the same patches). */
export function validateDistill(student: MaeConfig, teacher: MaeConfig, d: DistillConfig): void {
  const problems: string[] = [];
  for (const k of ['imgSize', 'patchSize', 'inChans'] as const) {
    if (student[k] !== teacher[k]) problems.push(`the teacher's ${k} (${teacher[k]}) differs from the student's (${student[k]}); it must see the same patches`);
  }
  if (d.pairs.length === 0) problems.push('at least one aligned pair is needed');
  for (const p of d.pairs) {
    if (!(Number.isInteger(p.studentBlock) && p.studentBlock >= 0 && p.studentBlock < student.depth)) problems.push(`student block ${p.studentBlock} is not in 0..${student.depth - 1}`);
    if (!(Number.isInteger(p.teacherBlock) && p.teacherBlock >= 0 && p.teacherBlock < teacher.depth)) problems.push(`teacher block ${p.teacherBlock} is not in 0..${teacher.depth - 1}`);
  }
  if (!(d.alpha >= 0)) problems.push(`α must be ≥ 0 (got ${d.alpha})`);
  if (problems.length > 0) throw new Error(`Invalid distillation configuration: ${problems.join('; ')}.`);
}
