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
