/** The recipe's initialisation (src/engine/init.ts): rules per tensor, seeded, float32 values. */
import { describe, expect, it } from 'vitest';
import { posEmbed2d } from '../../src/core/posembed';
import { maeConfig } from '../../src/engine/config';
import { initParams } from '../../src/engine/init';
import { addProjectionParams, maeParamLayout } from '../../src/engine/params';

describe('initParams', () => {
  const cfg = maeConfig('vit-tiny', { imgSize: 32, patchSize: 4, inChans: 3 });
  const layout = maeParamLayout(cfg);
  addProjectionParams(layout, 192, 384, 1);
  const p = initParams(layout, 8, 1);
  const maxAbs = (t: Float64Array) => t.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const std = (t: Float64Array) => Math.sqrt(t.reduce((s, x) => s + x * x, 0) / t.length);

  it('follows the recipe tensor by tensor', () => {
    const bound = (fanIn: number, fanOut: number) => Math.sqrt(6 / (fanIn + fanOut));
    // xavier-uniform fills its range: max |w| close to the bound, never above it
    for (const [name, fanIn, fanOut] of [['blocks.0.attn.qkv.weight', 192, 576], ['blocks.3.mlp.fc2.weight', 768, 192], ['decoder_pred.weight', 128, 48], ['patch_embed.proj.weight', 48, 192]] as const) {
      const m = maxAbs(p.get(name)!);
      expect(m, name).toBeLessThanOrEqual(bound(fanIn, fanOut));
      expect(m, name).toBeGreaterThan(0.98 * bound(fanIn, fanOut));
    }
    for (const name of ['blocks.0.attn.qkv.bias', 'decoder_pred.bias', 'patch_embed.proj.bias', 'norm.bias', 'blocks.1.norm2.bias', 'decoder_norm.bias']) expect(maxAbs(p.get(name)!), name).toBe(0);
    for (const name of ['norm.weight', 'blocks.1.norm1.weight', 'decoder_blocks.0.norm2.weight', 'decoder_norm.weight']) expect(p.get(name)!.every((x) => x === 1), name).toBe(true);
    for (const name of ['cls_token', 'mask_token']) {
      expect(std(p.get(name)!), name).toBeGreaterThan(0.015);
      expect(std(p.get(name)!), name).toBeLessThan(0.025);
    }
    expect([...p.get('pos_embed')!]).toEqual([...posEmbed2d(192, 8)]);
    expect([...p.get('decoder_pos_embed')!]).toEqual([...posEmbed2d(128, 8)]);
    // PyTorch's default Linear init for the DMAE head: U(±1/√in) for weight and bias
    expect(maxAbs(p.get('aligned_feature_projection_heads.0.weight')!)).toBeLessThanOrEqual(1 / Math.sqrt(192));
    expect(maxAbs(p.get('aligned_feature_projection_heads.0.bias')!)).toBeGreaterThan(0);
    expect(maxAbs(p.get('aligned_feature_projection_heads.0.bias')!)).toBeLessThanOrEqual(1 / Math.sqrt(192));
  });

  it('is seeded, and every value is a float32', () => {
    const again = initParams(layout, 8, 1), other = initParams(layout, 8, 2);
    for (const [name, t] of p) {
      const a = again.get(name)!;
      expect(t.every((x, i) => x === a[i] && Math.fround(x) === x), name).toBe(true);
    }
    expect(other.get('cls_token')).not.toEqual(p.get('cls_token'));
  });
});
