/**
 * Attention maps for the studio: the softmax probabilities of one encoder block of a MAE
 * (student) or of a DMAE teacher, on one image, read back as [heads, T, T].
 *
 * A training model saves probs[N, H, T, T] for every block, but for its training batch and its
 * masking; the teacher keeps no activations at all. So the probe runs its own small forward:
 * one image, the given token set (every patch, or the visible ones of the validation mask),
 * blocks 0..block over the model's own parameter arena (no copy), in a scratch arena of its own
 * that is freed afterwards. It records the same ops as MaeModel.recordForwardEncoder
 * (patch embedding, sin-cos position, cls ++ kept tokens, blocks), so the probabilities are the
 * ones the model computes on those tokens. src/ref/model.ts's forwardEncoder with
 * stopAfterBlock = block is its float64 twin (test/protocol/attention.test.ts).
 *
 * Token t ≥ 1 of the sequence is patch idsKeep[t − 1] (row-major on the patch grid); token 0 is cls.
 */
import { Arena, ArenaLayout, readback, upload } from '../gpu/buffers';
import type { Gpu } from '../gpu/device';
import { Recorder, type Tensor } from '../gpu/kernels';
import { gatherVisible } from '../gpu/ops/masking';
import { linearForward } from '../gpu/ops/matmul';
import { addPosEmbed, patchifyConv } from '../gpu/ops/patch';
import { numPatches, type VitConfig } from './config';
import { addBlockActs, blockActs, recordBlockForward } from './mae';

export interface ProbeModel {
  /** The encoder's architecture (image geometry, width, depth, heads). */
  cfg: VitConfig;
  /** A parameter of the encoder by its timm name (`blocks.0.attn.qkv.weight`, `cls_token`…). */
  param: (name: string) => Tensor;
  /** Blocks whose parameters are present: 0..blocks−1 (a DMAE teacher holds only 0..kT). */
  blocks: number;
}

/**
 * probs[heads, T, T] of block `block` for image img[C, S, S] (normalised like the training
 * images) with tokens cls ++ patches idsKeep (T = 1 + idsKeep.length). Each row sums to 1.
 */
export async function probeAttention(gpu: Gpu, m: ProbeModel, img: Float32Array, idsKeep: Uint32Array, block: number): Promise<Float32Array> {
  const { cfg } = m;
  const C = cfg.inChans, S = cfg.imgSize, p = cfg.patchSize, D = cfg.embedDim, K = C * p * p, L = numPatches(cfg);
  const V = idsKeep.length, T = 1 + V, heads = cfg.numHeads;
  if (!(Number.isInteger(block) && block >= 0 && block < m.blocks)) throw new Error(`Block ${block} is not in 0..${m.blocks - 1}.`);
  if (img.length !== C * S * S) throw new Error(`The image has ${img.length} values, not ${C}×${S}×${S}.`);
  if (V < 1 || V > L || idsKeep.some((i) => i >= L)) throw new Error(`The token set must hold 1..${L} patch indices below ${L}.`);

  const layout = new ArenaLayout();
  layout.add('imgs', [1, C, S, S]);
  layout.add('ids', [V]);
  layout.add('patches', [L, K]);
  layout.add('emb', [L, D]);
  layout.add('x0', [T, D]);
  layout.add('xa', [T, D]);
  layout.add('xb', [T, D]);
  addBlockActs(layout, 'blk', 1, T, D, heads, cfg.mlpRatio * D, true);
  const arena = new Arena(gpu.device, layout, 'attention-probe');
  try {
    const A = (n: string) => arena.tensor(n);
    upload(gpu.device, A('imgs'), img);
    upload(gpu.device, A('ids'), idsKeep);
    const rec = new Recorder(gpu, undefined, 'attention-probe');
    patchifyConv(rec, A('patches'), A('imgs'), 1, C, S, S, p);
    linearForward(rec, A('emb'), A('patches'), m.param('patch_embed.proj.weight'), m.param('patch_embed.proj.bias'), L, K, D);
    addPosEmbed(rec, A('emb'), m.param('pos_embed'), 1, L, D, D);
    gatherVisible(rec, A('x0'), A('emb'), m.param('cls_token'), A('ids'), 1, L, V, D);
    const ws = blockActs(arena, 'blk');
    const d = { N: 1, T, W: D, heads, hidden: cfg.mlpRatio * D };
    let x = A('x0');
    for (let i = 0; i <= block; i++) {
      const out = x.offset === A('xa').offset ? A('xb') : A('xa'); // never the block's own input
      recordBlockForward(rec, out, ws, (n) => m.param(`blocks.${i}.${n}`), x, d, { frozen: true });
      x = out;
    }
    await rec.submit();
    return await readback(gpu.device, ws.probs);
  } finally {
    arena.destroy();
  }
}

/** The [T, T] matrix of one head from probs[heads, T, T]. */
export function headMatrix(probs: Float32Array, heads: number, T: number, head: number): Float32Array {
  if (!(Number.isInteger(head) && head >= 0 && head < heads)) throw new Error(`Head ${head} is not in 0..${heads - 1}.`);
  return probs.slice(head * T * T, (head + 1) * T * T);
}
