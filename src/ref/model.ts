/**
 * Float64 reference of the whole MAE and of DMAE, composed from the src/ref ops in the method's
 * vocabulary (MAE's models_mae.py): patchify, forwardEncoder, forwardDecoder, forwardLoss, and
 * their backward in reverse. The GPU engine (src/engine/mae.ts, dmae.ts) records the same ops in
 * the same order; its golden test compares the loss and every parameter gradient with this.
 *
 * Shape letters: N images, C channels, H = W image size, p patch size, L patches, V visible
 * patches (len_keep), D encoder width, Dd decoder width, P = p·p·C pixels of a target patch,
 * T tokens of a sequence (1+V in the encoder, 1+L in the decoder).
 *
 * Parameters and gradients are ParamMaps keyed by the timm names of src/engine/params.ts, each a
 * Float64Array in its table shape. Frozen tensors (the sin-cos position embeddings) get a zero
 * gradient. Imported by tests only.
 */
import { numPatches, patchDim, teacherStopBlock, type AlignedPair, type DistillConfig, type MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { attentionBackward, attentionForward } from './attention';
import { addInPlace, biasGeluBackward, biasGeluForward } from './elementwise';
import { layernormBackward, layernormForward } from './layernorm';
import { distillLossBackward, distillLossForward, maeLossBackward, maeLossForward, normalizePixelTargets, type DistillKind } from './loss';
import { gatherVisible, gatherVisibleBackward, insertMaskTokens, insertMaskTokensBackward, type Masking } from './masking';
import { biasBackward, linearBackward, linearForward } from './matmul';
import { addPosEmbed, patchifyConv, patchifyTarget } from './patch';

export type { ParamMap };
type Vec = Float64Array;

const get = (m: ParamMap, name: string): Vec => {
  const t = m.get(name);
  if (!t) throw new Error(`reference model: no tensor "${name}"`);
  return t;
};

/** A zero gradient for every tensor of `params`, same names and shapes. */
export function zeroGrads(params: ParamMap): ParamMap {
  return new Map([...params].map(([k, v]) => [k, new Float64Array(v.length)]));
}

// ---------------------------------------------------------------------------------------------
// The transformer block: x + attn(LN1(x)), then + mlp(LN2(·)).
// ---------------------------------------------------------------------------------------------

/** What a block's forward saves for its backward; rows R = N·T. */
export interface BlockCache {
  x: Vec; // [R, D] input
  ln1: Vec; mean1: Vec; rstd1: Vec; // [R, D], [R], [R]
  qkv: Vec; // [R, 3D]
  probs: Vec; // [N, heads, T, T]
  attn: Vec; // [R, D] heads concatenated, before proj
  x1: Vec; // [R, D] after the attention residual
  ln2: Vec; mean2: Vec; rstd2: Vec;
  h: Vec; // [R, 4D] fc1 output before its bias (the bias is fused into the GELU, as on the GPU)
  a: Vec; // [R, 4D] gelu(h + fc1.bias)
  out: Vec; // [R, D]
}

export function blockForward(P: ParamMap, prefix: string, x: Vec, N: number, T: number, D: number, heads: number, hidden: number): BlockCache {
  const R = N * T;
  const w = (n: string) => get(P, `${prefix}.${n}`);
  const c: BlockCache = {
    x, ln1: new Float64Array(R * D), mean1: new Float64Array(R), rstd1: new Float64Array(R), qkv: new Float64Array(R * 3 * D),
    probs: new Float64Array(N * heads * T * T), attn: new Float64Array(R * D), x1: new Float64Array(R * D),
    ln2: new Float64Array(R * D), mean2: new Float64Array(R), rstd2: new Float64Array(R), h: new Float64Array(R * hidden),
    a: new Float64Array(R * hidden), out: new Float64Array(R * D),
  };
  layernormForward(c.ln1, c.mean1, c.rstd1, x, w('norm1.weight'), w('norm1.bias'), R, D);
  linearForward(c.qkv, c.ln1, w('attn.qkv.weight'), w('attn.qkv.bias'), R, D, 3 * D);
  attentionForward(c.attn, c.probs, c.qkv, N, T, heads, D / heads);
  linearForward(c.x1, c.attn, w('attn.proj.weight'), w('attn.proj.bias'), R, D, D);
  addInPlace(c.x1, x, R * D);
  layernormForward(c.ln2, c.mean2, c.rstd2, c.x1, w('norm2.weight'), w('norm2.bias'), R, D);
  linearForward(c.h, c.ln2, w('mlp.fc1.weight'), null, R, D, hidden);
  biasGeluForward(c.a, c.h, w('mlp.fc1.bias'), R, hidden);
  linearForward(c.out, c.a, w('mlp.fc2.weight'), w('mlp.fc2.bias'), R, hidden, D);
  addInPlace(c.out, c.x1, R * D);
  return c;
}

/** dx[R, D] (=) from dout[R, D]; the block's parameter gradients accumulate (+=) into G. */
export function blockBackward(
  dx: Vec, G: ParamMap, P: ParamMap, prefix: string, c: BlockCache, dout: Vec, N: number, T: number, D: number, heads: number, hidden: number,
): void {
  const R = N * T;
  const w = (n: string) => get(P, `${prefix}.${n}`);
  const g = (n: string) => get(G, `${prefix}.${n}`);
  const dres = Float64Array.from(dout.subarray(0, R * D)); // the residual stream's gradient
  const da = new Float64Array(R * hidden), dh = new Float64Array(R * hidden);
  const dln = new Float64Array(R * D), dtmp = new Float64Array(R * D);
  const dattn = new Float64Array(R * D), dqkv = new Float64Array(R * 3 * D);
  // MLP branch
  linearBackward(da, g('mlp.fc2.weight'), g('mlp.fc2.bias'), dres, c.a, w('mlp.fc2.weight'), R, hidden, D);
  biasGeluBackward(dh, da, c.h, w('mlp.fc1.bias'), R, hidden);
  biasBackward(g('mlp.fc1.bias'), dh, R, hidden);
  linearBackward(dln, g('mlp.fc1.weight'), null, dh, c.ln2, w('mlp.fc1.weight'), R, D, hidden);
  layernormBackward(dtmp, g('norm2.weight'), g('norm2.bias'), dln, c.x1, w('norm2.weight'), c.mean2, c.rstd2, R, D);
  addInPlace(dres, dtmp, R * D); // d x1
  // attention branch
  linearBackward(dattn, g('attn.proj.weight'), g('attn.proj.bias'), dres, c.attn, w('attn.proj.weight'), R, D, D);
  attentionBackward(dqkv, dattn, c.qkv, c.probs, N, T, heads, D / heads);
  linearBackward(dln, g('attn.qkv.weight'), g('attn.qkv.bias'), dqkv, c.ln1, w('attn.qkv.weight'), R, D, 3 * D);
  layernormBackward(dtmp, g('norm1.weight'), g('norm1.bias'), dln, c.x, w('norm1.weight'), c.mean1, c.rstd1, R, D);
  addInPlace(dres, dtmp, R * D); // d x
  dx.set(dres);
}

// ---------------------------------------------------------------------------------------------
// MAE
// ---------------------------------------------------------------------------------------------

/** MAE's `patchify`: target[N, L, P], each patch as [row][col][channel]. */
export function patchify(cfg: MaeConfig, imgs: Vec, N: number): Vec {
  const target = new Float64Array(N * numPatches(cfg) * patchDim(cfg));
  patchifyTarget(target, imgs, N, cfg.inChans, cfg.imgSize, cfg.imgSize, cfg.patchSize);
  return target;
}

export interface EncoderCache {
  N: number; V: number;
  idsKeep: Uint32Array;
  patches: Vec; // [N·L, C·p·p] in the conv weight's order
  x0: Vec; // [N, 1+V, D] cls ++ visible patch embeddings (+ pos)
  blocks: BlockCache[];
  /** Final norm (absent when the encoder stopped early). */
  lnMean?: Vec; lnRstd?: Vec;
}

export interface EncoderOutput {
  /** [N, 1+V, D] the normed last block (null when stopped before the last block). */
  latent: Vec | null;
  /** Raw output (before any norm, cls included) of each requested block: [N, 1+V, D]. */
  features: Map<number, Vec>;
  cache: EncoderCache;
}

/**
 * MAE's forward_encoder. imgs[N, C, H, W]; idsKeep[N·V] from randomMasking.
 * `featureBlocks`: blocks whose raw output to return (DMAE). `stopAfterBlock`: run blocks
 * 0..k only and skip the final norm (the DMAE teacher); default the whole encoder.
 * `params` may hold only the blocks that run (a teacher truncated at kT).
 */
export function forwardEncoder(
  params: ParamMap, cfg: MaeConfig, imgs: Vec, idsKeep: Uint32Array, N: number,
  opts: { featureBlocks?: readonly number[]; stopAfterBlock?: number } = {},
): EncoderOutput {
  const { inChans: C, imgSize: Hs, patchSize: p, embedDim: D, numHeads: heads } = cfg;
  const L = numPatches(cfg), K = C * p * p, V = idsKeep.length / N, T = 1 + V, hidden = cfg.mlpRatio * D;
  const last = opts.stopAfterBlock ?? cfg.depth - 1;
  const patches = new Float64Array(N * L * K);
  patchifyConv(patches, imgs, N, C, Hs, Hs, p);
  const emb = new Float64Array(N * L * D);
  linearForward(emb, patches, get(params, 'patch_embed.proj.weight'), get(params, 'patch_embed.proj.bias'), N * L, K, D);
  addPosEmbed(emb, get(params, 'pos_embed'), N, L, D, D); // patch rows of the table (row 0 is cls's zeros)
  const x0 = new Float64Array(N * T * D);
  gatherVisible(x0, emb, get(params, 'cls_token'), idsKeep, N, L, V, D); // cls + pos_embed[0] = cls (zeros)
  const blocks: BlockCache[] = [];
  const features = new Map<number, Vec>();
  let x: Vec = x0;
  for (let i = 0; i <= last; i++) {
    const c = blockForward(params, `blocks.${i}`, x, N, T, D, heads, hidden);
    blocks.push(c);
    x = c.out;
    if (opts.featureBlocks?.includes(i)) features.set(i, x);
  }
  const cache: EncoderCache = { N, V, idsKeep, patches, x0, blocks };
  if (last < cfg.depth - 1) return { latent: null, features, cache };
  const latent = new Float64Array(N * T * D);
  cache.lnMean = new Float64Array(N * T);
  cache.lnRstd = new Float64Array(N * T);
  layernormForward(latent, cache.lnMean, cache.lnRstd, x, get(params, 'norm.weight'), get(params, 'norm.bias'), N * T, D);
  return { latent, features, cache };
}

/**
 * The encoder's backward: dlatent[N, 1+V, D] into the final norm, plus dfeatures[k] added at
 * the output of block k (DMAE's distillation gradient). Parameter gradients += into G.
 */
export function backwardEncoder(G: ParamMap, params: ParamMap, cfg: MaeConfig, cache: EncoderCache, dlatent: Vec | null, dfeatures = new Map<number, Vec>()): void {
  const { inChans: C, patchSize: p, embedDim: D, numHeads: heads } = cfg;
  const { N, V } = cache;
  const L = numPatches(cfg), K = C * p * p, T = 1 + V, R = N * T, hidden = cfg.mlpRatio * D;
  const last = cache.blocks.length - 1;
  let dx = new Float64Array(R * D);
  if (dlatent) {
    layernormBackward(dx, get(G, 'norm.weight'), get(G, 'norm.bias'), dlatent, cache.blocks[last].out, get(params, 'norm.weight'), cache.lnMean!, cache.lnRstd!, R, D);
  }
  for (let i = last; i >= 0; i--) {
    const df = dfeatures.get(i);
    if (df) addInPlace(dx, df, R * D);
    const dIn = new Float64Array(R * D);
    blockBackward(dIn, G, params, `blocks.${i}`, cache.blocks[i], dx, N, T, D, heads, hidden);
    dx = dIn;
  }
  const demb = new Float64Array(N * L * D);
  gatherVisibleBackward(demb, get(G, 'cls_token'), dx, cache.idsKeep, N, L, V, D);
  // pos_embed is fixed: its backward is the identity, and it gets no gradient.
  linearBackward(null, get(G, 'patch_embed.proj.weight'), get(G, 'patch_embed.proj.bias'), demb, cache.patches, get(params, 'patch_embed.proj.weight'), N * L, K, D);
}

export interface DecoderCache {
  N: number; V: number;
  idsRestore: Uint32Array;
  latent: Vec; // [N, 1+V, D]
  blocks: BlockCache[];
  normed: Vec; lnMean: Vec; lnRstd: Vec; // [N, 1+L, Dd]
}

/** MAE's forward_decoder: pred[N, L, P] (cls row dropped) from latent[N, 1+V, D]. */
export function forwardDecoder(params: ParamMap, cfg: MaeConfig, latent: Vec, idsRestore: Uint32Array, N: number): { pred: Vec; cache: DecoderCache } {
  const D = cfg.embedDim, Dd = cfg.decoderEmbedDim, L = numPatches(cfg), P = patchDim(cfg);
  const V = latent.length / (N * D) - 1, T = 1 + L, R = N * T, hidden = cfg.mlpRatio * Dd;
  const y = new Float64Array(N * (1 + V) * Dd);
  linearForward(y, latent, get(params, 'decoder_embed.weight'), get(params, 'decoder_embed.bias'), N * (1 + V), D, Dd);
  const z = new Float64Array(R * Dd);
  insertMaskTokens(z, y, get(params, 'mask_token'), idsRestore, N, L, V, Dd);
  addPosEmbed(z, get(params, 'decoder_pos_embed'), N, T, Dd, 0); // whole table: cls row is zeros
  const blocks: BlockCache[] = [];
  let x: Vec = z;
  for (let i = 0; i < cfg.decoderDepth; i++) {
    const c = blockForward(params, `decoder_blocks.${i}`, x, N, T, Dd, cfg.decoderNumHeads, hidden);
    blocks.push(c);
    x = c.out;
  }
  const normed = new Float64Array(R * Dd), lnMean = new Float64Array(R), lnRstd = new Float64Array(R);
  layernormForward(normed, lnMean, lnRstd, x, get(params, 'decoder_norm.weight'), get(params, 'decoder_norm.bias'), R, Dd);
  const full = new Float64Array(R * P);
  linearForward(full, normed, get(params, 'decoder_pred.weight'), get(params, 'decoder_pred.bias'), R, Dd, P);
  const pred = new Float64Array(N * L * P);
  for (let n = 0; n < N; n++) pred.set(full.subarray((n * T + 1) * P, (n * T + T) * P), n * L * P); // drop cls
  return { pred, cache: { N, V, idsRestore, latent, blocks, normed, lnMean, lnRstd } };
}

/** The decoder's backward: dlatent[N, 1+V, D] (returned) from dpred[N, L, P]; parameter gradients += into G. */
export function backwardDecoder(G: ParamMap, params: ParamMap, cfg: MaeConfig, cache: DecoderCache, dpred: Vec): Vec {
  const D = cfg.embedDim, Dd = cfg.decoderEmbedDim, L = numPatches(cfg), P = patchDim(cfg);
  const { N, V } = cache;
  const T = 1 + L, R = N * T, hidden = cfg.mlpRatio * Dd;
  const dfull = new Float64Array(R * P); // the cls row's prediction was dropped: zero gradient
  for (let n = 0; n < N; n++) dfull.set(dpred.subarray(n * L * P, (n + 1) * L * P), (n * T + 1) * P);
  const dnormed = new Float64Array(R * Dd);
  linearBackward(dnormed, get(G, 'decoder_pred.weight'), get(G, 'decoder_pred.bias'), dfull, cache.normed, get(params, 'decoder_pred.weight'), R, Dd, P);
  const lastOut = cache.blocks.length > 0 ? cache.blocks[cache.blocks.length - 1].out : undefined;
  let dx = new Float64Array(R * Dd);
  layernormBackward(dx, get(G, 'decoder_norm.weight'), get(G, 'decoder_norm.bias'), dnormed, lastOut!, get(params, 'decoder_norm.weight'), cache.lnMean, cache.lnRstd, R, Dd);
  for (let i = cache.blocks.length - 1; i >= 0; i--) {
    const dIn = new Float64Array(R * Dd);
    blockBackward(dIn, G, params, `decoder_blocks.${i}`, cache.blocks[i], dx, N, T, Dd, cfg.decoderNumHeads, hidden);
    dx = dIn;
  }
  // decoder_pos_embed is fixed (identity backward, no gradient).
  const dy = new Float64Array(N * (1 + V) * Dd);
  insertMaskTokensBackward(dy, get(G, 'mask_token'), dx, cache.idsRestore, N, L, V, Dd);
  const dlatent = new Float64Array(N * (1 + V) * D);
  linearBackward(dlatent, get(G, 'decoder_embed.weight'), get(G, 'decoder_embed.bias'), dy, cache.latent, get(params, 'decoder_embed.weight'), N * (1 + V), D, Dd);
  return dlatent;
}

/**
 * MAE's forward_loss: the masked mean of per-patch MSE against patchify(imgs), standardised
 * per patch when cfg.normPixLoss. mask[N·L] 1 = masked. Returns the target used, and
 * maeLossForward's (loss, Σmask) pair, which maeLossBackward takes.
 */
export function forwardLoss(cfg: MaeConfig, imgs: Vec, pred: Vec, mask: ArrayLike<number>, N: number): { loss: number; target: Vec; lossPerPatch: Vec; lossStats: Vec } {
  const L = numPatches(cfg), P = patchDim(cfg);
  let target = patchify(cfg, imgs, N);
  if (cfg.normPixLoss) {
    const t = new Float64Array(target.length);
    normalizePixelTargets(t, target, N * L, P);
    target = t;
  }
  const loss = new Float64Array(2), lossPerPatch = new Float64Array(N * L);
  maeLossForward(loss, lossPerPatch, pred, target, Float64Array.from(mask), N, L, P);
  return { loss: loss[0], target, lossPerPatch, lossStats: loss };
}

export interface MaeStepResult {
  loss: number;
  pred: Vec; // [N, L, P]
  grads: ParamMap;
}

/** One MAE forward and backward: the loss and d loss / d every parameter. */
export function maeForwardBackward(params: ParamMap, cfg: MaeConfig, imgs: Vec, masking: Masking, N: number): MaeStepResult {
  const enc = forwardEncoder(params, cfg, imgs, masking.idsKeep, N);
  const dec = forwardDecoder(params, cfg, enc.latent!, masking.idsRestore, N);
  const { loss, target, lossStats } = forwardLoss(cfg, imgs, dec.pred, masking.mask, N);
  const grads = zeroGrads(params);
  const dpred = new Float64Array(dec.pred.length);
  maeLossBackward(dpred, dec.pred, target, Float64Array.from(masking.mask), lossStats, N, numPatches(cfg), patchDim(cfg));
  const dlatent = backwardDecoder(grads, params, cfg, dec.cache, dpred);
  backwardEncoder(grads, params, cfg, enc.cache, dlatent);
  return { loss, pred: dec.pred, grads };
}

/** The MAE loss alone (finite differences). */
export function maeLoss(params: ParamMap, cfg: MaeConfig, imgs: Vec, masking: Masking, N: number): number {
  const enc = forwardEncoder(params, cfg, imgs, masking.idsKeep, N);
  const dec = forwardDecoder(params, cfg, enc.latent!, masking.idsRestore, N);
  return forwardLoss(cfg, imgs, dec.pred, masking.mask, N).loss;
}

// ---------------------------------------------------------------------------------------------
// DMAE
// ---------------------------------------------------------------------------------------------

export { teacherStopBlock, type AlignedPair, type DistillConfig };

/**
 * The frozen teacher's raw block outputs on the student's visible patches: features[kT]
 * [N, 1+V, Dt], blocks 0..teacherStopBlock only, no final norm, no decoder.
 */
export function teacherFeatures(teacher: ParamMap, teacherCfg: MaeConfig, imgs: Vec, idsKeep: Uint32Array, N: number, d: DistillConfig): Map<number, Vec> {
  const out = forwardEncoder(teacher, teacherCfg, imgs, idsKeep, N, { featureBlocks: d.pairs.map((p) => p.teacherBlock), stopAfterBlock: teacherStopBlock(d) });
  return out.features;
}

export interface DmaeStepResult extends MaeStepResult {
  pixLoss: number;
  /** L_dist summed over the pairs (one pair in the reference), before α. */
  distillLoss: number;
}

/**
 * One DMAE forward and backward: loss = L_pix + α·Σ_pairs L_dist(T_kT, head_k(S_kS)).
 * `student` holds the MAE's tensors and `aligned_feature_projection_heads.{k}.*`; gradients
 * for the student and its heads only (the teacher is frozen).
 */
export function dmaeForwardBackward(
  student: ParamMap, cfg: MaeConfig, teacher: ParamMap, teacherCfg: MaeConfig, imgs: Vec, masking: Masking, N: number, d: DistillConfig,
): DmaeStepResult {
  const D = cfg.embedDim, Dt = teacherCfg.embedDim;
  const V = masking.idsKeep.length / N, R = N * (1 + V);
  const T = teacherFeatures(teacher, teacherCfg, imgs, masking.idsKeep, N, d);
  const enc = forwardEncoder(student, cfg, imgs, masking.idsKeep, N, { featureBlocks: d.pairs.map((p) => p.studentBlock) });
  const dec = forwardDecoder(student, cfg, enc.latent!, masking.idsRestore, N);
  const { loss: pixLoss, target, lossStats } = forwardLoss(cfg, imgs, dec.pred, masking.mask, N);
  const grads = zeroGrads(student);
  const dfeatures = new Map<number, Vec>();
  let distillLoss = 0;
  d.pairs.forEach((pair, k) => {
    const w = get(student, `aligned_feature_projection_heads.${k}.weight`), b = get(student, `aligned_feature_projection_heads.${k}.bias`);
    const S = enc.features.get(pair.studentBlock)!;
    const proj = new Float64Array(R * Dt);
    linearForward(proj, S, w, b, R, D, Dt);
    const l = new Float64Array(1);
    distillLossForward(l, T.get(pair.teacherBlock)!, proj, R, Dt, d.kind);
    distillLoss += l[0];
    const dproj = new Float64Array(R * Dt);
    distillLossBackward(dproj, T.get(pair.teacherBlock)!, proj, R, Dt, d.kind, d.alpha);
    const dS = new Float64Array(R * D);
    linearBackward(dS, get(grads, `aligned_feature_projection_heads.${k}.weight`), get(grads, `aligned_feature_projection_heads.${k}.bias`), dproj, S, w, R, D, Dt);
    const prev = dfeatures.get(pair.studentBlock);
    if (prev) addInPlace(prev, dS, R * D);
    else dfeatures.set(pair.studentBlock, dS);
  });
  const dpred = new Float64Array(dec.pred.length);
  maeLossBackward(dpred, dec.pred, target, Float64Array.from(masking.mask), lossStats, N, numPatches(cfg), patchDim(cfg));
  const dlatent = backwardDecoder(grads, student, cfg, dec.cache, dpred);
  backwardEncoder(grads, student, cfg, enc.cache, dlatent, dfeatures);
  return { loss: pixLoss + d.alpha * distillLoss, pixLoss, distillLoss, pred: dec.pred, grads };
}

/** The DMAE loss alone (finite differences). */
export function dmaeLoss(student: ParamMap, cfg: MaeConfig, teacher: ParamMap, teacherCfg: MaeConfig, imgs: Vec, masking: Masking, N: number, d: DistillConfig): number {
  const D = cfg.embedDim, Dt = teacherCfg.embedDim;
  const V = masking.idsKeep.length / N, R = N * (1 + V);
  const T = teacherFeatures(teacher, teacherCfg, imgs, masking.idsKeep, N, d);
  const enc = forwardEncoder(student, cfg, imgs, masking.idsKeep, N, { featureBlocks: d.pairs.map((p) => p.studentBlock) });
  const dec = forwardDecoder(student, cfg, enc.latent!, masking.idsRestore, N);
  let loss = forwardLoss(cfg, imgs, dec.pred, masking.mask, N).loss;
  d.pairs.forEach((pair, k) => {
    const proj = new Float64Array(R * Dt);
    linearForward(proj, enc.features.get(pair.studentBlock)!, get(student, `aligned_feature_projection_heads.${k}.weight`), get(student, `aligned_feature_projection_heads.${k}.bias`), R, D, Dt);
    const l = new Float64Array(1);
    distillLossForward(l, T.get(pair.teacherBlock)!, proj, R, Dt, d.kind);
    loss += d.alpha * l[0];
  });
  return loss;
}
