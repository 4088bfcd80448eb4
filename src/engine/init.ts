/**
 * The recipe's initialisation (§1), seeded, in pure TypeScript: the same numbers go to the
 * float64 reference and to the GPU arenas. Every value is rounded to float32 (Math.fround),
 * so the reference and the GPU start from bit-identical parameters.
 *
 *   every Linear weight (out, in)          xavier-uniform, U(±√(6/(in+out)))
 *   patch_embed.proj.weight (D, C, p, p)    xavier-uniform viewed as (D, C·p·p)
 *   Linear biases                          0
 *   cls_token, mask_token                  normal(0, 0.02)
 *   LayerNorm weight / bias                1 / 0
 *   pos_embed, decoder_pos_embed           the fixed 2-D sin-cos table (core/posembed.ts)
 *   aligned_feature_projection_heads.*     PyTorch's default Linear init (the DMAE reference
 *                                          keeps it): weight and bias U(±1/√in)
 */
import type { ArenaLayout } from '../gpu/buffers';
import { posEmbed2d } from '../core/posembed';
import { mulberry32 } from '../core/random';

/** Parameters by timm name, each in its table shape (row-major), float64 holding float32 values. */
export type ParamMap = Map<string, Float64Array>;

/** The initialisation's uniform stream (Mulberry32; init needs no saveable state). */
export const seededUniform = mulberry32;

/** Standard normal by Box–Muller on the uniform stream. */
function normal(u: () => number): number {
  const a = 1 - u(); // (0, 1]: log is finite
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
}

const isLayerNorm = (name: string): boolean => /(^|\.)(norm\d*|decoder_norm)\.(weight|bias)$/.test(name) || /^norm\.(weight|bias)$/.test(name);

/**
 * Initial values of every tensor of `layout`, in layout order from one seeded stream.
 * Position-embedding tables need the patch grid: `gridSize` = image size / patch size.
 */
export function initParams(layout: ArenaLayout, gridSize: number, seed: number): ParamMap {
  const u = seededUniform(seed);
  const out: ParamMap = new Map();
  for (const e of layout.entries) {
    const { name, shape } = e;
    const t = new Float64Array(e.length);
    if (name === 'pos_embed' || name === 'decoder_pos_embed') {
      t.set(posEmbed2d(shape[2], gridSize, true));
    } else if (name === 'cls_token' || name === 'mask_token') {
      for (let i = 0; i < t.length; i++) t[i] = Math.fround(0.02 * normal(u));
    } else if (isLayerNorm(name)) {
      if (name.endsWith('.weight')) t.fill(1);
    } else if (name.startsWith('aligned_feature_projection_heads.')) {
      // torch.nn.Linear.reset_parameters: kaiming_uniform(a=√5) = U(±1/√in); bias U(±1/√in).
      const fanIn = name.endsWith('.weight') ? shape[1] : layout.get(name.replace(/bias$/, 'weight')).shape[1];
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < t.length; i++) t[i] = Math.fround((2 * u() - 1) * bound);
    } else if (name.endsWith('.weight')) {
      // Linear (out, in) or the patch-embed conv (D, C, p, p) viewed as (D, C·p·p).
      const fanOut = shape[0];
      const fanIn = e.length / fanOut;
      const bound = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < t.length; i++) t[i] = Math.fround((2 * u() - 1) * bound);
    } else if (!name.endsWith('.bias')) {
      throw new Error(`initParams: no initialisation rule for "${name}".`);
    }
    out.set(name, t);
  }
  return out;
}
