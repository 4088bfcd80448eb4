/**
 * The MAE on the GPU: MAE's forward_encoder, forward_decoder and forward_loss, their backward
 * in reverse, and AdamW, recorded as kernel dispatches into one Recorder (one submit per step).
 * src/ref/model.ts is the float64 twin of every function here, op for op and in the same order.
 *
 * Memory, one buffer per role (llm.c's plan):
 *   params, grads, adamM, adamV  the parameter table (params.ts), timm names, same offsets in all four
 *   acts                         the forward's saved activations, sized once per (config, N, V)
 *   dacts                        the backward's activation-gradient workspace (reused by every block)
 *   io                           what crosses to the CPU or needs its own buffer: pred, dpred, losses
 * Nothing is allocated inside a step (the kernels' per-device scratch grows on the first step only).
 *
 * Shape letters: N images, C channels, S image size, p patch, L patches, V visible, K = C·p·p,
 * P = p·p·C, D encoder width, Dd decoder width, T = 1+V encoder tokens, Td = 1+L decoder tokens.
 */
import { Arena, ArenaLayout, createTensor, readback, upload } from '../gpu/buffers';
import { GpuError, type Gpu } from '../gpu/device';
import type { MatmulPrecision, Recorder, Tensor } from '../gpu/kernels';
import { adamwStep, clipCoefficient, decayRanges, globalGradNorm, LOSS_SCALE_DEFAULTS, lossScaleUpdate, type AdamwOptions } from '../gpu/ops/adamw';
import { attentionBackward, attentionForward } from '../gpu/ops/attention';
import { fill, scaleBy } from '../gpu/ops/elementwise';
import { LayernormParamSums, layernormBackward, layernormForward } from '../gpu/ops/layernorm';
import { maeLossBackward, maeLossForward } from '../gpu/ops/loss';
import { dropCls, embedVisible, embedVisibleBackward, gatherPatches, insertMaskTokens, insertMaskTokensBackward, padCls, type Masking } from '../gpu/ops/masking';
import { f16OverflowFlag, linearBackward, linearForward, type MatmulEpilogue } from '../gpu/ops/matmul';
import { addPosEmbed, patchifyConv, patchifyTarget } from '../gpu/ops/patch';
import { numPatches, patchDim, type MaeConfig } from './config';
import type { ParamMap } from './init';
import { maeParamLayout } from './params';

/** A view of the first `length` elements of t (workspace tensors are sized for the largest use). */
export const view = (t: Tensor, length: number): Tensor => ({ buffer: t.buffer, offset: t.offset, length });

// ---------------------------------------------------------------------------------------------
// The transformer block, shared by the encoder, the decoder and the teacher.
// ---------------------------------------------------------------------------------------------

/** A block's saved activations (rows R = N·T). */
export interface BlockActs {
  ln1: Tensor; mean1: Tensor; rstd1: Tensor; // [R, W], [R], [R]
  qkv: Tensor; // [R, 3W]
  probs: Tensor; // [N, heads, T, T]
  attn: Tensor; // [R, W] before proj
  x1: Tensor; // [R, W] after the attention residual
  ln2: Tensor; mean2: Tensor; rstd2: Tensor;
  /** [R, 4W] gelu'(h), h = fc1's output (bias included): saved by fc1's pass for the backward; a frozen block's workspace has none. */
  geluGrad?: Tensor;
  a: Tensor; // [R, 4W] gelu(h), written by the same pass
}

const BLOCK_ACTS = ['ln1', 'mean1', 'rstd1', 'qkv', 'probs', 'attn', 'x1', 'ln2', 'mean2', 'rstd2', 'geluGrad', 'a'] as const;

/** A block's activations under `prefix`; `frozen` (forward only: a teacher, a probe) leaves out what only the backward reads. */
export function addBlockActs(layout: ArenaLayout, prefix: string, N: number, T: number, W: number, heads: number, hidden: number, frozen = false): void {
  const R = N * T;
  const shapes: Record<(typeof BLOCK_ACTS)[number], number[]> = {
    ln1: [R, W], mean1: [R], rstd1: [R], qkv: [R, 3 * W], probs: [N, heads, T, T], attn: [R, W], x1: [R, W],
    ln2: [R, W], mean2: [R], rstd2: [R], geluGrad: [R, hidden], a: [R, hidden],
  };
  for (const k of BLOCK_ACTS) if (!(frozen && k === 'geluGrad')) layout.add(`${prefix}.${k}`, shapes[k]);
}

export function blockActs(arena: Arena, prefix: string): BlockActs {
  return Object.fromEntries(BLOCK_ACTS.filter((k) => arena.layout.has(`${prefix}.${k}`)).map((k) => [k, arena.tensor(`${prefix}.${k}`)])) as unknown as BlockActs;
}

/** Parameters of one block by their leaf name (`norm1.weight`, …). */
type Lookup = (leaf: string) => Tensor;

export interface BlockDims {
  N: number;
  T: number;
  W: number;
  heads: number;
  hidden: number;
}

/** How a block's forward runs beyond its inputs. */
export interface BlockForwardOptions {
  /** The block is frozen (a teacher, a probe, a linear probe's encoder): nothing is kept for a backward (fc1 saves no GELU slope). */
  frozen?: boolean;
  /** Linear weights already K-major (Wᵀ [in, out], a frozen teacher's KMajorWeights), multiplied as 'nn' with no per-step transpose of W. */
  kMajor?: (name: string) => Tensor | undefined;
}

/** out[R, W] = block(x[R, W]); saves A for the backward (unless frozen: then A is a workspace). */
export function recordBlockForward(rec: Recorder, out: Tensor, A: BlockActs, P: Lookup, x: Tensor, d: BlockDims, opts: BlockForwardOptions = {}): void {
  if (!opts.frozen && !A.geluGrad) throw new Error('recordBlockForward: a trainable block needs geluGrad (lay it out with addBlockActs, not frozen).');
  const { N, T, W, heads, hidden } = d;
  const R = N * T;
  const linear = (y: Tensor, input: Tensor, layer: string, inF: number, outF: number, epilogue?: MatmulEpilogue): void =>
    linearForward(rec, y, input, P(`${layer}.weight`), P(`${layer}.bias`), R, inF, outF, epilogue, opts.kMajor?.(`${layer}.weight`));
  layernormForward(rec, A.ln1, A.mean1, A.rstd1, x, P('norm1.weight'), P('norm1.bias'), R, W);
  linear(A.qkv, A.ln1, 'attn.qkv', W, 3 * W);
  attentionForward(rec, A.attn, A.probs, A.qkv, N, T, heads, W / heads);
  linear(A.x1, A.attn, 'attn.proj', W, W, { kind: 'residual', residual: x });
  layernormForward(rec, A.ln2, A.mean2, A.rstd2, A.x1, P('norm2.weight'), P('norm2.bias'), R, W);
  linear(A.a, A.ln2, 'mlp.fc1', W, hidden, opts.frozen ? { kind: 'gelu' } : { kind: 'gelu', grad: A.geluGrad });
  linear(out, A.a, 'mlp.fc2', hidden, W, { kind: 'residual', residual: A.x1 });
}

/** The activation-gradient workspace, each tensor sized for the largest block that uses it. */
export interface Workspace {
  dres: Tensor; // [R, W] the residual stream's gradient
  dln: Tensor; dattn: Tensor; // [R, W]
  dqkv: Tensor; // [R, 3W]
  dh: Tensor; // [R, 4W]
}

export function addWorkspace(layout: ArenaLayout, rowsTimesWidth: number, rowsTimesHidden: number): void {
  for (const k of ['dres', 'dln', 'dattn']) layout.add(k, [rowsTimesWidth]);
  layout.add('dqkv', [3 * rowsTimesWidth]);
  layout.add('dh', [rowsTimesHidden]);
}

/**
 * The block's backward: dres[R, W] holds d out on entry and d x on exit (activation gradients
 * assign); the parameter gradients accumulate (+=) into G. `normSums`: its two norms' dweight/dbias
 * sums are left to it (LayernormParamSums, one dispatch for a whole backward).
 */
export function recordBlockBackward(rec: Recorder, ws: Workspace, G: Lookup, P: Lookup, A: BlockActs, x: Tensor, d: BlockDims, normSums?: LayernormParamSums): void {
  const { N, T, W, heads, hidden } = d;
  const R = N * T;
  const dres = view(ws.dres, R * W), dln = view(ws.dln, R * W), dattn = view(ws.dattn, R * W);
  const dqkv = view(ws.dqkv, R * 3 * W), dh = view(ws.dh, R * hidden);
  if (!A.geluGrad) throw new Error('recordBlockBackward: the block was laid out frozen (no geluGrad): it has no backward.');
  // MLP branch
  linearBackward(rec, dh, G('mlp.fc2.weight'), G('mlp.fc2.bias'), dres, A.a, P('mlp.fc2.weight'), R, hidden, W, { kind: 'gelu_grad', grad: A.geluGrad });
  linearBackward(rec, dln, G('mlp.fc1.weight'), G('mlp.fc1.bias'), dh, A.ln2, P('mlp.fc1.weight'), R, W, hidden);
  layernormBackward(rec, dres, G('norm2.weight'), G('norm2.bias'), dln, A.x1, P('norm2.weight'), A.mean2, A.rstd2, R, W, true, undefined, normSums); // d x1 (+= the residual's)
  // attention branch
  linearBackward(rec, dattn, G('attn.proj.weight'), G('attn.proj.bias'), dres, A.attn, P('attn.proj.weight'), R, W, W);
  attentionBackward(rec, dqkv, dattn, A.qkv, A.probs, N, T, heads, W / heads);
  linearBackward(rec, dln, G('attn.qkv.weight'), G('attn.qkv.bias'), dqkv, A.ln1, P('attn.qkv.weight'), R, W, 3 * W);
  layernormBackward(rec, dres, G('norm1.weight'), G('norm1.bias'), dln, x, P('norm1.weight'), A.mean1, A.rstd1, R, W, true, undefined, normSums); // d x
}

// ---------------------------------------------------------------------------------------------
// Parameter arenas ↔ ParamMaps
// ---------------------------------------------------------------------------------------------

export function uploadParamMap(gpu: Gpu, arena: Arena, values: ParamMap): void {
  const flat = new Float32Array(arena.layout.size);
  for (const e of arena.layout.entries) {
    const v = values.get(e.name);
    if (!v) throw new Error(`uploadParams: no value for "${e.name}".`);
    if (v.length !== e.length) throw new Error(`uploadParams: "${e.name}" has ${v.length} values, the table says ${e.length} (${e.shape.join('×')}).`);
    flat.set(v, e.start);
  }
  upload(gpu.device, arena.all, flat);
}

export async function readParamMap(gpu: Gpu, arena: Arena): Promise<ParamMap> {
  const flat = await readback(gpu.device, arena.all);
  return new Map(arena.layout.entries.map((e) => [e.name, Float64Array.from(flat.subarray(e.start, e.start + e.length))]));
}

// ---------------------------------------------------------------------------------------------
// The MAE
// ---------------------------------------------------------------------------------------------

export interface StepOptions extends AdamwOptions {
  /** Clip the global gradient norm to this (torch's clip_grad_norm_); undefined: no clipping. */
  clipGrad?: number;
}

/**
 * The activation, activation-gradient and io tables of a MAE for N images of V visible
 * patches: what MaeModel allocates, available before any GPU work (memory estimates).
 */
export function maeActivationLayouts(cfg: MaeConfig, N: number, V: number, extend: ArenaExtensions = {}): { acts: ArenaLayout; dacts: ArenaLayout; io: ArenaLayout } {
  const L = numPatches(cfg), P = patchDim(cfg);
  const D = cfg.embedDim, Dd = cfg.decoderEmbedDim, C = cfg.inChans, S = cfg.imgSize, K = C * cfg.patchSize ** 2;
  const T = 1 + V, Td = 1 + L;
  const a = new ArenaLayout();
  a.add('imgs', [N, C, S, S]);
  a.add('idsKeep', [N, V]);
  a.add('idsRestore', [N, L]);
  a.add('mask', [N, L]);
  a.add('patches', [N * L, K]); // every patch, conv order; gatherPatches keeps the visible ones (the DMAE teacher reads those)
  a.add('patchesVisible', [N * V, K]);
  a.add('embVisible', [N * V, D]);
  a.add('x0', [N, T, D]);
  for (let i = 0; i < cfg.depth; i++) {
    addBlockActs(a, `enc.blocks.${i}`, N, T, D, cfg.numHeads, cfg.mlpRatio * D);
    a.add(`enc.blocks.${i}.out`, [N, T, D]);
  }
  a.add('latent', [N, T, D]);
  a.add('norm.mean', [N * T]);
  a.add('norm.rstd', [N * T]);
  a.add('dec.y', [N, T, Dd]);
  a.add('dec.z', [N, Td, Dd]);
  for (let i = 0; i < cfg.decoderDepth; i++) {
    addBlockActs(a, `dec.blocks.${i}`, N, Td, Dd, cfg.decoderNumHeads, cfg.mlpRatio * Dd);
    a.add(`dec.blocks.${i}.out`, [N, Td, Dd]);
  }
  a.add('dec.normed', [N, Td, Dd]);
  a.add('dec.mean', [N * Td]);
  a.add('dec.rstd', [N * Td]);
  a.add('dec.full', [N, Td, P]); // decoder_pred on every token; the cls row is dropped by copy
  a.add('target', [N * L, P]); // patchify(imgs), already standardised per patch with norm_pix
  a.add('lossPerPatch', [N * L]);
  extend.acts?.(a);

  const g = new ArenaLayout();
  addWorkspace(g, Math.max(N * T * D, N * Td * Dd), Math.max(N * T * D, N * Td * Dd) * cfg.mlpRatio);
  g.add('dfull', [N, Td, P]);
  g.add('dy', [N, T, Dd]);
  g.add('dlatent', [N, T, D]);
  g.add('dembVisible', [N * V, D]);
  extend.dacts?.(g);

  const o = new ArenaLayout();
  o.add('pred', [N, L, P]);
  o.add('dpred', [N, L, P]);
  o.add('loss.pix', [2]); // the pixel loss, then Σmask (for the loss's backward)
  o.add('gradNorm', [1]);
  o.add('clipCoef', [2]); // the clip coefficient, then 1 when the loss scaler skips the step (mixed precision)
  o.add('lossScale', [4]); // mixed precision: scale, good steps in a row, skipped (0/1), steps skipped so far
  extend.io?.(o);

  return { acts: a, dacts: g, io: o };
}

/** The loss scaler's state that a checkpoint keeps (mixed precision). */
export interface LossScaleState {
  scale: number;
  goodSteps: number;
  skippedSteps: number;
}

/** Bytes of GPU memory a MAE (or, with `extra`, a DMAE) training run needs: four parameter-sized arenas and the activations. */
export function maeMemoryEstimate(cfg: MaeConfig, N: number, V: number, layout: ArenaLayout = maeParamLayout(cfg), extend: ArenaExtensions = {}): number {
  const { acts, dacts, io } = maeActivationLayouts(cfg, N, V, extend);
  return 4 * layout.bytes + acts.bytes + dacts.bytes + io.bytes;
}

/**
 * 'f32': every kernel in f32. 'mixed': matmul products may take f16 operands (f32 accumulation,
 * f32 activations and master weights; the tuner keeps f16 only where it is faster) with dynamic
 * loss scaling; needs the adapter's `shader-f16`.
 */
export type Precision = 'f32' | 'mixed';

export interface MaeModelOptions {
  /** Default 'f32'. */
  precision?: Precision;
  /** Mixed precision: the first loss scale (default 2¹⁶) and good steps before it doubles (default 2000). */
  initLossScale?: number;
  lossScaleGrowthInterval?: number;
}

/** The precision's check against the adapter: a message that says what to do, or null. */
export function precisionProblem(gpu: Gpu, precision: Precision): string | null {
  if (precision !== 'f32' && precision !== 'mixed') return `precision "${String(precision)}" must be "f32" or "mixed"`;
  if (precision === 'mixed' && !gpu.hasF16) return `mixed precision needs the adapter's shader-f16 feature, which ${gpu.adapter.description} lacks; train with precision "f32"`;
  return null;
}

/** Extra tensors a subclass (DMAE) lays out in the activation, activation-gradient and io arenas. */
export interface ArenaExtensions {
  acts?: (a: ArenaLayout) => void;
  dacts?: (g: ArenaLayout) => void;
  io?: (o: ArenaLayout) => void;
}

export class MaeModel {
  readonly L: number;
  readonly P: number;
  readonly params: Arena;
  readonly grads: Arena;
  readonly adamM: Arena;
  readonly adamV: Arena;
  readonly acts: Arena;
  readonly dacts: Arena;
  readonly io: Arena;
  private readonly ranges: Tensor;
  /** Every layer norm's dweight/dbias sums of a backward, in one dispatch at its end. */
  private readonly normSums: LayernormParamSums;
  readonly precision: Precision;
  private readonly lossScaleGrowthInterval: number;

  /**
   * `batch` images of `visible` patches each, fixed for the model's life (activations are
   * sized for them). `layout` is the parameter table (default: maeParamLayout(cfg)).
   */
  constructor(
    readonly gpu: Gpu, readonly cfg: MaeConfig, readonly batch: number, readonly visible: number,
    readonly layout: ArenaLayout = maeParamLayout(cfg), extend: ArenaExtensions = {}, opts: MaeModelOptions = {},
  ) {
    const L = (this.L = numPatches(cfg));
    this.P = patchDim(cfg);
    if (!(Number.isInteger(visible) && visible >= 1 && visible <= L)) throw new Error(`MaeModel: visible = ${visible} must be an integer in [1, ${L}].`);
    this.precision = opts.precision ?? 'f32';
    const problem = precisionProblem(gpu, this.precision);
    if (problem) throw new GpuError(`MaeModel: ${problem}.`, 'validation');
    const initScale = opts.initLossScale ?? LOSS_SCALE_DEFAULTS.initScale;
    if (!(initScale > 0 && Number.isFinite(initScale))) throw new Error(`MaeModel: initLossScale ${initScale} must be a finite number > 0.`);
    this.lossScaleGrowthInterval = opts.lossScaleGrowthInterval ?? LOSS_SCALE_DEFAULTS.growthInterval;
    const dev = gpu.device;
    this.params = new Arena(dev, layout, 'params');
    this.grads = new Arena(dev, layout, 'grads');
    this.adamM = new Arena(dev, layout, 'adamw-m');
    this.adamV = new Arena(dev, layout, 'adamw-v');

    const { acts, dacts, io } = maeActivationLayouts(cfg, batch, visible, extend);
    this.acts = new Arena(dev, acts, 'activations');
    this.dacts = new Arena(dev, dacts, 'activation-grads');
    this.io = new Arena(dev, io, 'io');

    // The norms the backward has: two per block and the final one, encoder and decoder.
    const encoderNorm = { rows: batch * (1 + visible), C: cfg.embedDim }, decoderNorm = { rows: batch * (1 + L), C: cfg.decoderEmbedDim };
    this.normSums = new LayernormParamSums(dev, [...Array(2 * cfg.depth + 1).fill(encoderNorm), ...Array(2 * cfg.decoderDepth + 1).fill(decoderNorm)]);
    const r = decayRanges(layout);
    this.ranges = createTensor(dev, Math.max(r.length, 1), 'adamw-decay-ranges', r.length > 0 ? r : undefined);
    this.ranges = view(this.ranges, r.length);
    // Moments start at zero (buffers are zero-initialised by WebGPU; said explicitly for resets).
    this.resetOptimizer();
    this.setLossScale({ scale: initScale, goodSteps: 0, skippedSteps: 0 });
  }

  /** What matmul products are recorded in: f16 operands under mixed precision. */
  get matmulPrecision(): MatmulPrecision {
    return this.precision === 'mixed' ? 'f16' : 'f32';
  }

  /** The loss scaler's state (mixed precision; an f32 model keeps it at its start and never reads it). */
  setLossScale(s: LossScaleState): void {
    upload(this.gpu.device, this.io.tensor('lossScale'), Float32Array.of(s.scale, s.goodSteps, 0, s.skippedSteps));
  }

  async readLossScale(): Promise<LossScaleState & { skipped: boolean }> {
    const [scale, goodSteps, skipped, skippedSteps] = await readback(this.gpu.device, this.io.tensor('lossScale'));
    return { scale, goodSteps, skippedSteps, skipped: skipped !== 0 };
  }

  /** Under mixed precision, multiplies a loss's gradient seed by the loss scale (in place). */
  protected scaleLossGradient(rec: Recorder, seed: Tensor): void {
    if (this.precision === 'mixed') scaleBy(rec, seed, this.io.tensor('lossScale'), seed.length);
  }

  /** Bytes of GPU memory the model holds (arenas; the kernels' scratch and the norms' partials are extra and small). */
  get memoryBytes(): number {
    return [this.params, this.grads, this.adamM, this.adamV, this.acts, this.dacts, this.io].reduce((s, x) => s + x.layout.bytes, 0);
  }

  resetOptimizer(): void {
    const zeros = new Float32Array(this.layout.size);
    upload(this.gpu.device, this.adamM.all, zeros);
    upload(this.gpu.device, this.adamV.all, zeros);
  }

  uploadParams(values: ParamMap): void {
    uploadParamMap(this.gpu, this.params, values);
  }

  readParams(): Promise<ParamMap> {
    return readParamMap(this.gpu, this.params);
  }

  readGrads(): Promise<ParamMap> {
    return readParamMap(this.gpu, this.grads);
  }

  /** The batch: imgs[N, C, S, S] and its masking (from randomMasking with lenKeep = visible). */
  setBatch(imgs: Float32Array, masking: Masking): void {
    const { batch: N, visible: V, L } = this;
    if (masking.idsKeep.length !== N * V || masking.idsRestore.length !== N * L) throw new Error(`setBatch: masking is not for ${N} images of ${V} visible of ${L} patches.`);
    const dev = this.gpu.device;
    upload(dev, this.acts.tensor('imgs'), imgs);
    upload(dev, this.acts.tensor('idsKeep'), masking.idsKeep);
    upload(dev, this.acts.tensor('idsRestore'), masking.idsRestore);
    upload(dev, this.acts.tensor('mask'), masking.mask);
  }

  protected p = (name: string): Tensor => this.params.tensor(name);
  protected g = (name: string): Tensor => this.grads.tensor(name);
  protected act = (name: string): Tensor => this.acts.tensor(name);
  protected dact = (name: string): Tensor => this.dacts.tensor(name);

  protected encDims(): BlockDims {
    const D = this.cfg.embedDim;
    return { N: this.batch, T: 1 + this.visible, W: D, heads: this.cfg.numHeads, hidden: this.cfg.mlpRatio * D };
  }

  protected decDims(): BlockDims {
    const Dd = this.cfg.decoderEmbedDim;
    return { N: this.batch, T: 1 + this.L, W: Dd, heads: this.cfg.decoderNumHeads, hidden: this.cfg.mlpRatio * Dd };
  }

  /** The raw output of encoder block i: [N, 1+V, D]. */
  encoderBlockOutput(i: number): Tensor {
    return this.act(`enc.blocks.${i}.out`);
  }

  /** MAE's forward_encoder: latent[N, 1+V, D] from imgs and idsKeep. */
  recordForwardEncoder(rec: Recorder): void {
    const { cfg, batch: N, visible: V, L } = this;
    const D = cfg.embedDim, C = cfg.inChans, S = cfg.imgSize, p = cfg.patchSize, K = C * p * p;
    const d = this.encDims();
    patchifyConv(rec, this.act('patches'), this.act('imgs'), N, C, S, S, p);
    // Only the visible patches are embedded: the same tokens as MAE's embed-all-then-gather.
    gatherPatches(rec, this.act('patchesVisible'), this.act('patches'), this.act('idsKeep'), N, L, V, K);
    linearForward(rec, this.act('embVisible'), this.act('patchesVisible'), this.p('patch_embed.proj.weight'), this.p('patch_embed.proj.bias'), N * V, K, D);
    embedVisible(rec, this.act('x0'), this.act('embVisible'), this.p('cls_token'), this.act('idsKeep'), this.p('pos_embed'), N, L, V, D);
    let x = this.act('x0');
    for (let i = 0; i < cfg.depth; i++) {
      const out = this.encoderBlockOutput(i);
      recordBlockForward(rec, out, blockActs(this.acts, `enc.blocks.${i}`), (n) => this.p(`blocks.${i}.${n}`), x, d);
      x = out;
    }
    layernormForward(rec, this.act('latent'), this.act('norm.mean'), this.act('norm.rstd'), x, this.p('norm.weight'), this.p('norm.bias'), N * d.T, D);
  }

  /** MAE's forward_decoder: io.pred[N, L, P] from latent and idsRestore. */
  recordForwardDecoder(rec: Recorder): void {
    const { cfg, batch: N, visible: V, L, P } = this;
    const D = cfg.embedDim, Dd = cfg.decoderEmbedDim;
    const d = this.decDims();
    const Rd = N * d.T;
    linearForward(rec, this.act('dec.y'), this.act('latent'), this.p('decoder_embed.weight'), this.p('decoder_embed.bias'), N * (1 + V), D, Dd);
    insertMaskTokens(rec, this.act('dec.z'), this.act('dec.y'), this.p('mask_token'), this.act('idsRestore'), N, L, V, Dd);
    addPosEmbed(rec, this.act('dec.z'), this.p('decoder_pos_embed'), N, d.T, Dd, 0); // whole table, cls row zeros
    let x = this.act('dec.z');
    for (let i = 0; i < cfg.decoderDepth; i++) {
      const out = this.act(`dec.blocks.${i}.out`);
      recordBlockForward(rec, out, blockActs(this.acts, `dec.blocks.${i}`), (n) => this.p(`decoder_blocks.${i}.${n}`), x, d);
      x = out;
    }
    layernormForward(rec, this.act('dec.normed'), this.act('dec.mean'), this.act('dec.rstd'), x, this.p('decoder_norm.weight'), this.p('decoder_norm.bias'), Rd, Dd);
    const full = this.act('dec.full');
    linearForward(rec, full, this.act('dec.normed'), this.p('decoder_pred.weight'), this.p('decoder_pred.bias'), Rd, Dd, P);
    dropCls(rec, this.io.tensor('pred'), full, N, L, P);
  }

  /** The target MAE's loss compares with: patchify(imgs), standardised per patch with norm_pix (one pass). */
  protected targetTensor(): Tensor {
    return this.act('target');
  }

  /**
   * MAE's forward_loss: io['loss.pix'] = [masked mean of per-patch MSE, Σmask]; the backward
   * (recordBackwardDecoder) reads that Σmask, so it needs this step's forward recorded first.
   */
  recordForwardLoss(rec: Recorder): void {
    const { cfg, batch: N, L, P } = this;
    patchifyTarget(rec, this.targetTensor(), this.act('imgs'), N, cfg.inChans, cfg.imgSize, cfg.imgSize, cfg.patchSize, cfg.normPixLoss);
    maeLossForward(rec, this.io.tensor('loss.pix'), this.act('lossPerPatch'), this.io.tensor('pred'), this.targetTensor(), this.act('mask'), N, L, P);
  }

  /** The whole forward, its matmuls in the model's precision. */
  recordForward(rec: Recorder): void {
    rec.autocast(this.matmulPrecision, () => this.recordForwardInOrder(rec));
  }

  /** The forward's parts in the method's order. */
  protected recordForwardInOrder(rec: Recorder): void {
    this.recordForwardEncoder(rec);
    this.recordForwardDecoder(rec);
    this.recordForwardLoss(rec);
  }

  /** dlatent[N, 1+V, D] from d loss / d pred; decoder parameter gradients +=. */
  recordBackwardDecoder(rec: Recorder): void {
    const { cfg, batch: N, visible: V, L, P } = this;
    const D = cfg.embedDim, Dd = cfg.decoderEmbedDim;
    const d = this.decDims();
    const Rd = N * d.T;
    const ws = this.workspace();
    // Σmask comes from this step's forward (io['loss.pix'][1]), recorded before in the same submission.
    maeLossBackward(rec, this.io.tensor('dpred'), this.io.tensor('pred'), this.targetTensor(), this.act('mask'), this.io.tensor('loss.pix'), N, L, P);
    this.scaleLossGradient(rec, this.io.tensor('dpred'));
    const dfull = this.dact('dfull');
    padCls(rec, dfull, this.io.tensor('dpred'), N, L, P); // the dropped cls rows get no gradient
    const dnormed = view(ws.dln, Rd * Dd);
    linearBackward(rec, dnormed, this.g('decoder_pred.weight'), this.g('decoder_pred.bias'), dfull, this.act('dec.normed'), this.p('decoder_pred.weight'), Rd, Dd, P);
    const last = this.act(`dec.blocks.${cfg.decoderDepth - 1}.out`);
    // dnormed lives in ws.dln, which the blocks reuse: the norm's backward consumes it first.
    layernormBackward(rec, view(ws.dres, Rd * Dd), this.g('decoder_norm.weight'), this.g('decoder_norm.bias'), dnormed, last, this.p('decoder_norm.weight'), this.act('dec.mean'), this.act('dec.rstd'), Rd, Dd, false, undefined, this.normSums);
    for (let i = cfg.decoderDepth - 1; i >= 0; i--) {
      const x = i === 0 ? this.act('dec.z') : this.act(`dec.blocks.${i - 1}.out`);
      recordBlockBackward(rec, ws, (n) => this.g(`decoder_blocks.${i}.${n}`), (n) => this.p(`decoder_blocks.${i}.${n}`), blockActs(this.acts, `dec.blocks.${i}`), x, d, this.normSums);
    }
    // decoder_pos_embed is fixed: identity backward, no gradient.
    insertMaskTokensBackward(rec, this.dact('dy'), this.g('mask_token'), view(ws.dres, Rd * Dd), this.act('idsRestore'), N, L, V, Dd);
    linearBackward(rec, this.dact('dlatent'), this.g('decoder_embed.weight'), this.g('decoder_embed.bias'), this.dact('dy'), this.act('latent'), this.p('decoder_embed.weight'), N * (1 + V), D, Dd);
  }

  /** Hook: DMAE adds the distillation gradient of block i's raw output into dres[N·(1+V), D]. */
  protected addFeatureGradient(_rec: Recorder, _block: number, _dres: Tensor): void {}

  /** The encoder's backward from dlatent; encoder parameter gradients +=. */
  recordBackwardEncoder(rec: Recorder): void {
    const { cfg, batch: N, visible: V, L } = this;
    const D = cfg.embedDim, K = cfg.inChans * cfg.patchSize ** 2;
    const d = this.encDims();
    const R = N * d.T;
    const ws = this.workspace();
    const dres = view(ws.dres, R * D);
    layernormBackward(rec, dres, this.g('norm.weight'), this.g('norm.bias'), this.dact('dlatent'), this.encoderBlockOutput(cfg.depth - 1), this.p('norm.weight'), this.act('norm.mean'), this.act('norm.rstd'), R, D, false, undefined, this.normSums);
    for (let i = cfg.depth - 1; i >= 0; i--) {
      this.addFeatureGradient(rec, i, dres);
      const x = i === 0 ? this.act('x0') : this.encoderBlockOutput(i - 1);
      recordBlockBackward(rec, ws, (n) => this.g(`blocks.${i}.${n}`), (n) => this.p(`blocks.${i}.${n}`), blockActs(this.acts, `enc.blocks.${i}`), x, d, this.normSums);
    }
    embedVisibleBackward(rec, this.dact('dembVisible'), this.g('cls_token'), dres, N, L, V, D);
    // pos_embed is fixed: identity backward, no gradient. The images need no gradient (dx = null).
    linearBackward(rec, null, this.g('patch_embed.proj.weight'), this.g('patch_embed.proj.bias'), this.dact('dembVisible'), this.act('patchesVisible'), this.p('patch_embed.proj.weight'), N * V, K, D);
  }

  /**
   * The whole backward, its matmuls in the model's precision. Parameter gradients accumulate:
   * zero them first (recordZeroGrads), or record the step's first backward inside
   * rec.assignParamGrads, which writes every gradient of the trainable parameters (the fixed
   * pos_embed has none: it keeps the zeros the arena starts with). Under mixed precision they
   * are the scaled loss's (recordOptimizer unscales).
   */
  recordBackward(rec: Recorder): void {
    try {
      rec.autocast(this.matmulPrecision, () => this.recordBackwardInOrder(rec));
    } catch (e) {
      this.normSums.discard(); // a failed recording must not leave its norms for the next backward
      throw e;
    }
    this.normSums.record(rec); // every layer norm's dweight/dbias, in one dispatch
  }

  /** The backward's parts, in reverse of the forward. */
  protected recordBackwardInOrder(rec: Recorder): void {
    this.recordBackwardDecoder(rec);
    this.recordBackwardEncoder(rec);
  }

  recordZeroGrads(rec: Recorder): void {
    rec.clear(this.grads.all, this.layout.size);
  }

  /** One training step: forward, backward (assigning the gradients: no pass zeroes them first), (clip,) AdamW. */
  recordStep(rec: Recorder, opts: StepOptions): void {
    this.recordForward(rec);
    rec.assignParamGrads(() => this.recordBackward(rec));
    this.recordOptimizer(rec, opts);
  }

  recordOptimizer(rec: Recorder, opts: StepOptions): void {
    const n = this.layout.size;
    const clip = this.io.tensor('clipCoef'), gradNorm = this.io.tensor('gradNorm');
    if (this.precision === 'f32' && opts.clipGrad === undefined) {
      // Nothing needs the norm before the update: AdamW reports it from its own reads of the gradients.
      fill(rec, clip, 1, 1);
      adamwStep(rec, this.params.all, this.grads.all, this.adamM.all, this.adamV.all, this.ranges, clip, n, opts, null, 'vec4', gradNorm);
      return;
    }
    globalGradNorm(rec, gradNorm, this.grads.all, n);
    if (this.precision === 'mixed') {
      // Unscales the norm, folds 1/scale into the clip coefficient, and skips the step on an overflow.
      lossScaleUpdate(rec, clip, gradNorm, this.io.tensor('lossScale'), f16OverflowFlag(this.gpu.device), opts.clipGrad, this.lossScaleGrowthInterval);
    } else clipCoefficient(rec, clip, gradNorm, opts.clipGrad!);
    adamwStep(rec, this.params.all, this.grads.all, this.adamM.all, this.adamV.all, this.ranges, clip, n, opts);
  }

  protected workspace(): Workspace {
    const t = (k: string) => this.dact(k);
    return { dres: t('dres'), dln: t('dln'), dattn: t('dattn'), dqkv: t('dqkv'), dh: t('dh') };
  }

  /** The losses of the last submitted forward (waits for the GPU). */
  async readLosses(): Promise<{ loss: number; pix: number; gradNorm: number }> {
    const all = await readback(this.gpu.device, this.io.all);
    const at = (k: string) => all[this.io.layout.get(k).start];
    return { loss: at('loss.pix'), pix: at('loss.pix'), gradNorm: at('gradNorm') };
  }

  async readPred(): Promise<Float32Array> {
    return readback(this.gpu.device, this.io.tensor('pred'));
  }

  destroy(): void {
    for (const a of [this.params, this.grads, this.adamM, this.adamV, this.acts, this.dacts, this.io]) a.destroy();
    this.normSums.destroy();
    this.ranges.buffer.destroy();
  }
}
