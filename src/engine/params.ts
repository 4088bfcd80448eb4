/**
 * The parameter table of a MAE (and of a DMAE student's projection heads): every tensor with
 * its PyTorch/timm name and shape. The same table lays out the parameter, gradient and AdamW-moment arenas.
 */
import { ArenaLayout } from '../gpu/buffers';
import { numPatches, patchDim, type MaeConfig } from './config';

/** Tensors that are in the state_dict but never trained (fixed sin-cos position embeddings). */
export const FROZEN = new Set(['pos_embed', 'decoder_pos_embed']);

function addBlock(layout: ArenaLayout, prefix: string, D: number, hidden: number): void {
  layout.add(`${prefix}.norm1.weight`, [D]);
  layout.add(`${prefix}.norm1.bias`, [D]);
  layout.add(`${prefix}.attn.qkv.weight`, [3 * D, D]);
  layout.add(`${prefix}.attn.qkv.bias`, [3 * D]);
  layout.add(`${prefix}.attn.proj.weight`, [D, D]);
  layout.add(`${prefix}.attn.proj.bias`, [D]);
  layout.add(`${prefix}.norm2.weight`, [D]);
  layout.add(`${prefix}.norm2.bias`, [D]);
  layout.add(`${prefix}.mlp.fc1.weight`, [hidden, D]);
  layout.add(`${prefix}.mlp.fc1.bias`, [hidden]);
  layout.add(`${prefix}.mlp.fc2.weight`, [D, hidden]);
  layout.add(`${prefix}.mlp.fc2.bias`, [D]);
}

/** The encoder's tensors (what a timm ViT loads), optionally only up to block `lastBlock`. */
export function addEncoderParams(layout: ArenaLayout, c: MaeConfig, lastBlock = c.depth - 1): void {
  const D = c.embedDim;
  layout.add('cls_token', [1, 1, D]);
  layout.add('pos_embed', [1, 1 + numPatches(c), D]);
  layout.add('patch_embed.proj.weight', [D, c.inChans, c.patchSize, c.patchSize]);
  layout.add('patch_embed.proj.bias', [D]);
  for (let i = 0; i <= lastBlock; i++) addBlock(layout, `blocks.${i}`, D, c.mlpRatio * D);
  if (lastBlock === c.depth - 1) {
    layout.add('norm.weight', [D]);
    layout.add('norm.bias', [D]);
  }
}

export function addDecoderParams(layout: ArenaLayout, c: MaeConfig): void {
  const Dd = c.decoderEmbedDim;
  layout.add('mask_token', [1, 1, Dd]);
  layout.add('decoder_pos_embed', [1, 1 + numPatches(c), Dd]);
  layout.add('decoder_embed.weight', [Dd, c.embedDim]);
  layout.add('decoder_embed.bias', [Dd]);
  for (let i = 0; i < c.decoderDepth; i++) addBlock(layout, `decoder_blocks.${i}`, Dd, c.mlpRatio * Dd);
  layout.add('decoder_norm.weight', [Dd]);
  layout.add('decoder_norm.bias', [Dd]);
  layout.add('decoder_pred.weight', [patchDim(c), Dd]);
  layout.add('decoder_pred.bias', [patchDim(c)]);
}

/** DMAE's projection heads, one Linear (student width → teacher width) per aligned pair. */
export function addProjectionParams(layout: ArenaLayout, studentDim: number, teacherDim: number, pairs: number): void {
  for (let k = 0; k < pairs; k++) {
    layout.add(`aligned_feature_projection_heads.${k}.weight`, [teacherDim, studentDim]);
    layout.add(`aligned_feature_projection_heads.${k}.bias`, [teacherDim]);
  }
}

export function maeParamLayout(c: MaeConfig): ArenaLayout {
  const layout = new ArenaLayout();
  addEncoderParams(layout, c);
  addDecoderParams(layout, c);
  return layout;
}
