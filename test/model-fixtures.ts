/** Tiny models, parameters and masks shared by the reference-model and engine tests. */
import { maeConfig, type MaeConfig } from '../src/engine/config';
import { initParams, type ParamMap } from '../src/engine/init';
import { FROZEN } from '../src/engine/params';
import type { ArenaLayout } from '../src/gpu/buffers';
import { randomMasking, type Masking } from '../src/core/masking';
import { randn } from './numerics';

/** 8×8×C images, patch 4 (L = 4, P = 16·C), width 8 (2 heads), depth 2, decoder width 8, depth 1. */
export const tinyConfig = (inChans: 1 | 3, normPixLoss: boolean, overrides: Partial<MaeConfig> = {}): MaeConfig =>
  maeConfig('test', { imgSize: 8, patchSize: 4, inChans }, { embedDim: 8, numHeads: 2, decoderEmbedDim: 8, decoderNumHeads: 2, normPixLoss, ...overrides });

/** A tiny teacher: width 12 (3 heads), depth 3. */
export const tinyTeacherConfig = (inChans: 1 | 3): MaeConfig => tinyConfig(inChans, true, { embedDim: 12, depth: 3, numHeads: 3 });

/** initParams, then every tensor but the fixed tables nudged (float32 values), so that biases and norms are not trivial. */
export function perturbedParams(layout: ArenaLayout, cfg: MaeConfig, seed: number): ParamMap {
  const p = initParams(layout, cfg.imgSize / cfg.patchSize, seed);
  let s = seed * 100;
  for (const [name, t] of p) {
    if (FROZEN.has(name)) continue;
    const noise = randn(t.length, ++s, 0.2);
    for (let i = 0; i < t.length; i++) t[i] = Math.fround(t[i] + noise[i]);
  }
  return p;
}

export const testMasking = (N: number, L: number, V: number, seed: number): Masking => randomMasking(Float32Array.from(randn(N * L, seed)), N, L, V);

/** A ParamMap flattened into its arena layout (padding 0), and back: for the reference AdamW over the whole table. */
export const flatten = (layout: ArenaLayout, m: ParamMap): Float64Array => {
  const out = new Float64Array(layout.size);
  for (const e of layout.entries) out.set(m.get(e.name)!, e.start);
  return out;
};
export const unflatten = (layout: ArenaLayout, flat: Float64Array): ParamMap =>
  new Map(layout.entries.map((e) => [e.name, flat.slice(e.start, e.start + e.length)]));
