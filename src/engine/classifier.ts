/**
 * Evaluation of an encoder (recipe §5) on the GPU: fine-tuning, linear probing and k-NN
 * accuracy, and the metrics they report (accuracy, per-class accuracy, confusion matrix).
 *
 * The encoder runs with every patch visible (no masking: V = L, the ids are the identity), as
 * MAE's forward_encoder does at evaluation. On top of it:
 *
 *   fine-tuning   global average of the patch tokens (no cls) → LayerNorm `fc_norm` → Linear
 *                 `head` (timm's VisionTransformer(global_pool='avg'), MAE's models_vit: no final
 *                 `norm`); every parameter trains, with layer-wise lr decay (layerDecayScale) and
 *                 no weight decay on 1-D parameters, tokens and position embeddings; softmax
 *                 cross-entropy with optional label smoothing. With `distill`, the knowledge-
 *                 distillation baseline (Hinton; DeiT's soft variant): the loss mixes the
 *                 hard-label cross-entropy with τ²·KL to a frozen teacher classifier's soft
 *                 labels softmax(t/τ) (trainKdStudent records the teacher in the same step).
 *                 With `frozen`, a fine-tuned classifier that only runs forward (the KD teacher,
 *                 a classifier file evaluated as it is): no gradients, no AdamW moments, its
 *                 blocks through one shared set of activations; the same logits, bit for bit.
 *   linear probe  frozen encoder with its final `norm`; the feature is the cls token or the mean
 *                 of the patch tokens; non-affine BatchNorm1d (eps 1e-6, momentum 0.1; running
 *                 statistics for evaluation) → one Linear `head`. Only the head trains; the
 *                 encoder runs forward only, never backward.
 *   k-NN          the same frozen features, L2-normalised; cosine similarities to the training
 *                 bank by a GPU matmul, the 20 nearest vote with weights exp(sim/0.07) (the
 *                 DINO/MAE k-NN monitor; knnPredict).
 *
 * Deviations from the reference code, all deliberate and small-scale: the fixed sin-cos
 * position embedding stays fixed during fine-tuning (timm makes it a learnable copy); no drop
 * path, mixup, cutmix or RandAugment; the linear probe uses AdamW (wd 0) instead of LARS.
 *
 * Shape letters: N images per batch, n ≤ N rows in one call, L patches, T = 1 + L tokens,
 * D width, K classes, C·p·p = Kp patch pixels.
 */
import { Arena, ArenaLayout, createTensor, readback, readbackU32, upload } from '../gpu/buffers';
import type { Gpu } from '../gpu/device';
import { Recorder, type Tensor } from '../gpu/kernels';
import { ADAMW_DEFAULTS, adamwStep, decayRanges, lrScaleRanges } from '../gpu/ops/adamw';
import {
  batchnormEval, batchnormForward, clsPoolForward, crossEntropyBackward, crossEntropyForward, kdCrossEntropyBackward, kdCrossEntropyForward, meanPoolBackward, meanPoolForward,
} from '../gpu/ops/classify';
import { layernormBackward, layernormForward } from '../gpu/ops/layernorm';
import { gatherVisible, gatherVisibleBackward } from '../gpu/ops/masking';
import { linearBackward, linearForward, matmul } from '../gpu/ops/matmul';
import { addPosEmbed, patchifyConv } from '../gpu/ops/patch';
import type { Batch, DataLoader } from '../data/loader';
import { hashInts, Rng } from '../data/rng';
import { numPatches, type MaeConfig, type VitConfig } from './config';
import { initParams, seededUniform, type ParamMap } from './init';
import { addBlockActs, addWorkspace, blockActs, readParamMap, recordBlockBackward, recordBlockForward, uploadParamMap, view, type BlockActs, type BlockDims, type Workspace } from './mae';
import { addEncoderParams } from './params';
import { lrAt, type LrSchedule } from './schedule';

export type EvalMethod = 'knn' | 'linprobe' | 'finetune';
/** Which feature a frozen encoder gives: its normed cls token, or the mean of its normed patch tokens. */
export type FeaturePool = 'cls' | 'mean';

// ---------------------------------------------------------------------------------------------
// Parameter tables, initialisation and layer-wise lr decay
// ---------------------------------------------------------------------------------------------

/** The encoder's tensors without the final `norm` (fine-tuning replaces it by fc_norm after pooling). */
function addEncoderWithoutNorm(layout: ArenaLayout, cfg: VitConfig): void {
  // addEncoderParams adds `norm` only when it lays out the last block: lay out blocks 0..depth−1
  // of a one-deeper encoder, which is exactly the encoder without its norm.
  addEncoderParams(layout, { ...cfg, depth: cfg.depth + 1 } as MaeConfig, cfg.depth - 1);
}

/** Fine-tuning's table (timm names): the encoder without `norm`, fc_norm [D], head [K, D] + [K]. */
export function finetuneParamLayout(cfg: VitConfig, numClasses: number): ArenaLayout {
  const layout = new ArenaLayout();
  addEncoderWithoutNorm(layout, cfg);
  layout.add('fc_norm.weight', [cfg.embedDim]);
  layout.add('fc_norm.bias', [cfg.embedDim]);
  layout.add('head.weight', [numClasses, cfg.embedDim]);
  layout.add('head.bias', [numClasses]);
  return layout;
}

/** The frozen encoder of the linear probe and k-NN: the whole encoder, final `norm` included. */
export function encoderParamLayout(cfg: VitConfig): ArenaLayout {
  const layout = new ArenaLayout();
  addEncoderParams(layout, cfg as MaeConfig); // reads only the encoder's sizes
  return layout;
}

/** The linear probe's trainable table: head [K, D] + [K] (the BatchNorm has no parameter). */
export function probeParamLayout(cfg: VitConfig, numClasses: number): ArenaLayout {
  const layout = new ArenaLayout();
  layout.add('head.weight', [numClasses, cfg.embedDim]);
  layout.add('head.bias', [numClasses]);
  return layout;
}

/**
 * The recipe's layer-wise lr decay (§5; MAE's util/lr_decay.param_groups_lrd with
 * num_layers = depth + 1): block i (0-based) gets decay^(depth − i); patch_embed, cls_token and
 * pos_embed get decay^(depth + 1); everything else (fc_norm, head) gets 1.
 */
export function layerDecayScale(name: string, depth: number, decay: number): number {
  const m = /^blocks\.(\d+)\./.exec(name);
  if (m) return decay ** (depth - Number(m[1]));
  if (name === 'cls_token' || name === 'pos_embed' || name.startsWith('patch_embed.')) return decay ** (depth + 1);
  return 1;
}

/** Standard normal by Box–Muller on a uniform stream. */
const normal = (u: () => number): number => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());

/**
 * Head weights drawn from normal(0, std) (MAE: trunc_normal_(std=2e-5) for fine-tuning,
 * std=0.01 for the linear probe; timm's truncation at ±2 is absolute, so it never cuts at these
 * stds), bias 0; float32-rounded like every initial value.
 */
export function initHead(numClasses: number, D: number, std: number, seed: number): { weight: Float64Array; bias: Float64Array } {
  const u = seededUniform(seed ^ 0x4ead);
  const weight = new Float64Array(numClasses * D);
  for (let i = 0; i < weight.length; i++) weight[i] = Math.fround(std * normal(u));
  return { weight, bias: new Float64Array(numClasses) };
}

/** Fine-tuning's starting point: the pretrained encoder (or the recipe's init when null), fc_norm 1/0, head std 2e-5. */
export function initFinetuneParams(cfg: VitConfig, numClasses: number, pretrained: ParamMap | null, seed: number): ParamMap {
  const layout = finetuneParamLayout(cfg, numClasses);
  const base = pretrained ?? initParams(encoderParamLayout(cfg), cfg.imgSize / cfg.patchSize, seed);
  const out: ParamMap = new Map();
  const head = initHead(numClasses, cfg.embedDim, 2e-5, seed);
  for (const e of layout.entries) {
    let v: Float64Array | undefined;
    if (e.name === 'fc_norm.weight') v = new Float64Array(e.length).fill(1);
    else if (e.name === 'fc_norm.bias') v = new Float64Array(e.length);
    else if (e.name === 'head.weight') v = head.weight;
    else if (e.name === 'head.bias') v = head.bias;
    else v = base.get(e.name)?.slice();
    if (!v || v.length !== e.length) throw new Error(`Fine-tuning: the pretrained parameters have ${v ? `${v.length} values` : 'no tensor'} for "${e.name}" (the model needs ${e.shape.join('×')}).`);
    out.set(e.name, v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

export interface ClassMetrics {
  /** Fraction of correct predictions. */
  accuracy: number;
  /** Samples evaluated. */
  count: number;
  /** Per true class: its samples and the fraction of them predicted correctly (null when it has none). */
  perClass: { index: number; name: string; count: number; accuracy: number | null }[];
  /** confusion[true][predicted] = count. */
  confusion: number[][];
}

export function classificationMetrics(pred: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number, classNames: readonly string[] = []): ClassMetrics {
  if (pred.length !== labels.length) throw new Error(`classificationMetrics: ${pred.length} predictions for ${labels.length} labels.`);
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  let correct = 0;
  for (let i = 0; i < pred.length; i++) {
    confusion[labels[i]][pred[i]]++;
    if (pred[i] === labels[i]) correct++;
  }
  const perClass = confusion.map((row, k) => {
    const count = row.reduce((a, b) => a + b, 0);
    return { index: k, name: classNames[k] ?? String(k), count, accuracy: count > 0 ? row[k] / count : null };
  });
  return { accuracy: pred.length > 0 ? correct / pred.length : 0, count: pred.length, perClass, confusion };
}

// ---------------------------------------------------------------------------------------------
// The classifier on the GPU
// ---------------------------------------------------------------------------------------------

export interface ClassifierOptions {
  /** 'finetune' trains everything; 'linprobe' (also used for k-NN features) freezes the encoder. */
  mode: 'finetune' | 'linprobe';
  numClasses: number;
  /** Images per batch (the largest call); activations are sized for it. */
  batch: number;
  /** Linear probe / k-NN feature (default 'cls'). Fine-tuning always pools the patch tokens. */
  pool?: FeaturePool;
  /** Cross-entropy label smoothing ε (default 0). */
  labelSmoothing?: number;
  /**
   * Fine-tuning only: train by knowledge distillation from a teacher's logits (acts
   * 'teacherLogits', filled by recordTeacherLogits): per row (1−softWeight)·CE_ε
   * + softWeight·τ²·KL(softmax(teacher/τ) ‖ softmax(student/τ)). Evaluation forwards
   * (train = false) still report the hard-label cross-entropy.
   */
  distill?: DistillOptions;
  /**
   * Fine-tuning only: a forward-only classifier (a KD teacher, a fine-tuned classifier evaluated
   * as it is). Its blocks run through one shared set of activations, as the linear probe's
   * frozen encoder does, and it has no gradients, AdamW moments or activation gradients, so a
   * teacher costs its parameters and one block's activations; training it throws. It gives the
   * same logits, bit for bit, as a trainable classifier with the same weights (the same kernels
   * on the same values; only where the activations live differs).
   */
  frozen?: boolean;
}

/** Knowledge distillation's temperature τ > 0 and the soft term's weight λ ∈ [0, 1]. */
export interface DistillOptions {
  temperature: number;
  softWeight: number;
}

export interface OptimOptions {
  lr: number;
  /** 1-based AdamW step. */
  step: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
}

/**
 * An encoder (every patch visible) with a classification head, on the GPU. Fine-tuning keeps
 * every block's activations for the backward, one arena per block (a full-image ViT-Tiny at
 * batch 16 keeps ~160 MiB of them: more than one buffer may hold on some devices). The frozen
 * encoder of the linear probe, and a `frozen` fine-tuned classifier, run their blocks through one
 * shared set of activations (forward only), so a large evaluation batch or a teacher fits.
 */
export class Classifier {
  readonly L: number;
  readonly T: number;
  readonly D: number;
  readonly K: number;
  readonly pool: FeaturePool;
  readonly smoothing: number;
  /** Knowledge distillation's options (null: the plain cross-entropy). */
  readonly distill: DistillOptions | null;
  /** Forward only (ClassifierOptions.frozen): no gradients, moments or activation gradients. */
  readonly frozen: boolean;
  /** Trainable parameters (fine-tuning: everything; linear probe: the head); a frozen classifier's weights. */
  readonly params: Arena;
  /** The frozen encoder (linear probe only). */
  readonly encoder: Arena | null;
  /** The stem's and the head's activations (images, patch embedding, pooling, logits, loss). */
  readonly acts: Arena;
  /**
   * The blocks' activations: one arena per block when training (block i's saved activations
   * 'enc.blocks.i.*' and its output 'enc.blocks.i.out'), or one shared arena when forward only
   * ('enc.block.*' for every block, outputs alternating between 'enc.out0' and 'enc.out1').
   */
  readonly blockArenas: readonly Arena[];
  /** Activation gradients (null when frozen). */
  readonly dacts: Arena | null;
  private readonly gradArena: Arena | null;
  private readonly momentM: Arena | null;
  private readonly momentV: Arena | null;
  private readonly decay: Tensor | null;
  private readonly lrScales: Tensor | null;
  /** The blocks share one set of activations (forward only: the linear probe, a frozen classifier). */
  private readonly sharedBlocks: boolean;

  constructor(readonly gpu: Gpu, readonly cfg: VitConfig, readonly opts: ClassifierOptions, layerDecay = 0.75) {
    const { mode, numClasses: K, batch: N } = opts;
    if (!(Number.isInteger(K) && K >= 2)) throw new Error(`Classifier: ${K} classes; at least 2 are needed.`);
    if (!(Number.isInteger(N) && N >= 1)) throw new Error(`Classifier: batch ${N} must be a positive integer.`);
    const L = (this.L = numPatches(cfg));
    const T = (this.T = 1 + L);
    const D = (this.D = cfg.embedDim);
    this.K = K;
    this.pool = opts.pool ?? 'cls';
    this.smoothing = opts.labelSmoothing ?? 0;
    const kd = (this.distill = opts.distill ?? null);
    const frozen = (this.frozen = opts.frozen ?? false);
    if (frozen && mode !== 'finetune') {
      throw new Error(`Classifier: frozen makes a fine-tuned classifier forward-only; it needs mode 'finetune', not '${mode}' (the linear probe's encoder is always frozen, and its head trains).`);
    }
    if (frozen && kd) throw new Error('Classifier: a distilling student (distill) trains; it cannot be frozen. Freeze the teacher instead.');
    if (kd) {
      if (mode !== 'finetune') throw new Error(`Classifier: knowledge distillation (distill) trains a whole student: it needs mode 'finetune', not '${mode}'.`);
      if (!(kd.softWeight >= 0 && kd.softWeight <= 1)) throw new Error(`Classifier: distillation soft weight ${kd.softWeight} must lie in [0, 1].`);
      if (!(kd.temperature > 0 && Number.isFinite(kd.temperature))) throw new Error(`Classifier: distillation temperature ${kd.temperature} must be a positive number.`);
    }
    const hidden = cfg.mlpRatio * D, Kp = cfg.inChans * cfg.patchSize ** 2;
    const dev = gpu.device;
    const shared = (this.sharedBlocks = mode === 'linprobe' || frozen);
    const layout = mode === 'finetune' ? finetuneParamLayout(cfg, K) : probeParamLayout(cfg, K);
    this.params = new Arena(dev, layout, frozen ? 'cls-frozen-params' : 'cls-params');
    this.gradArena = frozen ? null : new Arena(dev, layout, 'cls-grads');
    this.momentM = frozen ? null : new Arena(dev, layout, 'cls-adamw-m');
    this.momentV = frozen ? null : new Arena(dev, layout, 'cls-adamw-v');
    this.encoder = mode === 'linprobe' ? new Arena(dev, encoderParamLayout(cfg), 'cls-encoder') : null;

    const a = new ArenaLayout();
    a.add('imgs', [N, cfg.inChans, cfg.imgSize, cfg.imgSize]);
    a.add('ids', [N, L]);
    a.add('patches', [N * L, Kp]);
    a.add('emb', [N * L, D]);
    a.add('x0', [N, T, D]);
    if (mode === 'finetune') {
      a.add('pooled', [N, D]);
      a.add('fcn', [N, D]);
      a.add('fcn.mean', [N]);
      a.add('fcn.rstd', [N]);
    } else {
      a.add('latent', [N, T, D]);
      a.add('norm.mean', [N * T]);
      a.add('norm.rstd', [N * T]);
      a.add('pooled', [N, D]); // the feature
      a.add('bn.out', [N, D]);
      a.add('bn.mean', [D]);
      a.add('bn.rstd', [D]);
      a.add('bn.runningMean', [D]);
      a.add('bn.runningVar', [D]);
    }
    a.add('logits', [N, K]);
    if (kd) a.add('teacherLogits', [N, K]);
    a.add('labels', [N]);
    a.add('pred', [N]);
    a.add('stats', [2]);
    this.acts = new Arena(dev, a, 'cls-activations');

    if (shared) {
      const b = new ArenaLayout();
      addBlockActs(b, 'enc.block', N, T, D, cfg.numHeads, hidden, true); // shared by every block: forward only
      b.add('enc.out0', [N, T, D]);
      b.add('enc.out1', [N, T, D]);
      this.blockArenas = [new Arena(dev, b, 'cls-block-activations')];
    } else {
      this.blockArenas = Array.from({ length: cfg.depth }, (_, i) => {
        const b = new ArenaLayout();
        addBlockActs(b, `enc.blocks.${i}`, N, T, D, cfg.numHeads, hidden);
        b.add(`enc.blocks.${i}.out`, [N, T, D]);
        return new Arena(dev, b, `cls-block-activations.${i}`);
      });
    }

    if (frozen) this.dacts = null;
    else if (mode === 'finetune') {
      const g = new ArenaLayout();
      addWorkspace(g, N * T * D, N * T * hidden);
      g.add('dlogits', [N, K]);
      g.add('dfcn', [N, D]);
      g.add('dpooled', [N, D]);
      g.add('demb', [N * L, D]);
      this.dacts = new Arena(dev, g, 'cls-activation-grads');
    } else {
      const g = new ArenaLayout();
      g.add('dlogits', [N, K]);
      this.dacts = new Arena(dev, g, 'cls-activation-grads');
    }

    const ids = new Uint32Array(N * L);
    for (let i = 0; i < ids.length; i++) ids[i] = i % L;
    upload(dev, this.acts.tensor('ids'), ids);
    if (frozen) {
      this.decay = null;
      this.lrScales = null;
      return;
    }
    const r = decayRanges(layout);
    this.decay = view(createTensor(dev, Math.max(r.length, 1), 'cls-decay-ranges', r.length > 0 ? r : undefined), r.length);
    if (mode === 'finetune') {
      const s = lrScaleRanges(layout, (name) => layerDecayScale(name, cfg.depth, layerDecay));
      this.lrScales = s.length > 0 ? view(createTensor(dev, s.length, 'cls-lr-scales', s), s.length) : null;
    } else this.lrScales = null;
    this.resetOptimizer();
    this.resetRunningStats();
  }

  get mode(): 'finetune' | 'linprobe' {
    return this.opts.mode;
  }

  get batch(): number {
    return this.opts.batch;
  }

  /** Parameter gradients (the trainable table's layout); a frozen classifier has none. */
  get grads(): Arena {
    return this.trainable('grads', this.gradArena);
  }

  /** AdamW's first moments; a frozen classifier has none. */
  get adamM(): Arena {
    return this.trainable('adamM', this.momentM);
  }

  /** AdamW's second moments; a frozen classifier has none. */
  get adamV(): Arena {
    return this.trainable('adamV', this.momentV);
  }

  /** Bytes of GPU memory the classifier holds (arenas; the kernels' scratch is extra and small). */
  get memoryBytes(): number {
    const arenas = [this.params, this.gradArena, this.momentM, this.momentV, this.encoder, this.acts, ...this.blockArenas, this.dacts];
    return arenas.reduce((s, x) => s + (x ? x.layout.bytes : 0), 0);
  }

  /** `what` of a trainable classifier; on a frozen one, an error that says so. */
  private trainable<X>(what: string, x: X | null): X {
    if (this.frozen || x === null) {
      throw new Error(`Classifier.${what}: this classifier was built frozen (forward only: a teacher or an evaluator); it has no gradients or optimizer state and cannot be trained. Build it without \`frozen\` to train it.`);
    }
    return x;
  }

  resetOptimizer(): void {
    const z = new Float32Array(this.params.layout.size);
    upload(this.gpu.device, this.trainable('resetOptimizer', this.momentM).all, z);
    upload(this.gpu.device, this.trainable('resetOptimizer', this.momentV).all, z);
  }

  /** torch's BatchNorm start: running mean 0, running variance 1. */
  resetRunningStats(): void {
    if (this.mode !== 'linprobe') return;
    upload(this.gpu.device, this.acts.tensor('bn.runningMean'), new Float32Array(this.D));
    upload(this.gpu.device, this.acts.tensor('bn.runningVar'), new Float32Array(this.D).fill(1));
  }

  /** Trainable parameters (fine-tuning: the whole table; linear probe: head.*). */
  uploadParams(values: ParamMap): void {
    uploadParamMap(this.gpu, this.params, values);
  }

  /** The frozen encoder of the linear probe (a MAE's encoder tensors; extra tensors are ignored). */
  uploadEncoder(values: ParamMap): void {
    if (!this.encoder) throw new Error('uploadEncoder: only the linear probe has a separate frozen encoder.');
    const only = new Map([...values].filter(([k]) => this.encoder!.layout.has(k)));
    uploadParamMap(this.gpu, this.encoder, only);
  }

  readParams(): Promise<ParamMap> {
    return readParamMap(this.gpu, this.params);
  }

  async readGrads(): Promise<ParamMap> {
    return readParamMap(this.gpu, this.trainable('readGrads', this.gradArena));
  }

  /** n ≤ batch images [n, C, S, S] and their labels (checked against K). */
  setBatch(imgs: Float32Array, labels: ArrayLike<number> | null, n: number): void {
    const { cfg } = this;
    const S = cfg.inChans * cfg.imgSize * cfg.imgSize;
    if (!(n >= 1 && n <= this.batch) || imgs.length < n * S) throw new Error(`setBatch: ${n} images (of ${imgs.length / S}) for a batch of ${this.batch}.`);
    upload(this.gpu.device, this.acts.tensor('imgs'), imgs.length === n * S ? imgs : imgs.subarray(0, n * S));
    if (labels) this.uploadLabels(labels, n);
  }

  /** logits [batch, K] of the last forward (a teacher's, for recordTeacherLogits). */
  get logits(): Tensor {
    return this.act('logits');
  }

  /** The distilling student's input of teacher logits [batch, K]. */
  get teacherLogits(): Tensor {
    if (!this.distill) throw new Error('teacherLogits: this classifier was not built with distill options.');
    return this.act('teacherLogits');
  }

  private act = (k: string): Tensor => this.acts.tensor(k);
  private dact = (k: string): Tensor => this.dacts!.tensor(k);
  private p = (k: string): Tensor => this.params.tensor(k);
  private g = (k: string): Tensor => this.gradArena!.tensor(k);
  /** An encoder tensor, wherever it lives (fine-tuning: the trainable table; probe: the frozen one). */
  private e = (k: string): Tensor => (this.encoder ?? this.params).tensor(k);

  /** Block i's saved activations (training), or the set every block shares (forward only). */
  private blockSaved(i: number): BlockActs {
    return this.sharedBlocks ? blockActs(this.blockArenas[0], 'enc.block') : blockActs(this.blockArenas[i], `enc.blocks.${i}`);
  }

  /** Block i's output [n, T, D]: its own (training), or one of two alternating (forward only). */
  private blockOut(i: number): Tensor {
    return this.sharedBlocks ? this.blockArenas[0].tensor(`enc.out${i % 2}`) : this.blockArenas[i].tensor(`enc.blocks.${i}.out`);
  }

  private dims(n: number): BlockDims {
    const D = this.D;
    return { N: n, T: this.T, W: D, heads: this.cfg.numHeads, hidden: this.cfg.mlpRatio * D };
  }

  /** The encoder, every patch visible; returns its last block's raw output [n, T, D]. */
  private recordEncoder(rec: Recorder, n: number): Tensor {
    const { cfg, L, D } = this;
    const Kp = cfg.inChans * cfg.patchSize ** 2;
    patchifyConv(rec, this.act('patches'), this.act('imgs'), n, cfg.inChans, cfg.imgSize, cfg.imgSize, cfg.patchSize);
    linearForward(rec, this.act('emb'), this.act('patches'), this.e('patch_embed.proj.weight'), this.e('patch_embed.proj.bias'), n * L, Kp, D);
    addPosEmbed(rec, this.act('emb'), this.e('pos_embed'), n, L, D, D);
    gatherVisible(rec, this.act('x0'), this.act('emb'), this.e('cls_token'), this.act('ids'), n, L, L, D);
    const d = this.dims(n);
    let x = this.act('x0');
    for (let i = 0; i < cfg.depth; i++) {
      const out = this.blockOut(i);
      recordBlockForward(rec, out, this.blockSaved(i), (k) => this.e(`blocks.${i}.${k}`), x, d, { frozen: this.sharedBlocks });
      x = out;
    }
    return x;
  }

  /**
   * The frozen encoder's feature [n, D] in acts 'pooled': the final norm on every token, then
   * the cls token or the mean of the patch tokens.
   */
  recordFeatures(rec: Recorder, n: number): void {
    if (this.mode !== 'linprobe') throw new Error('recordFeatures: the fine-tuning model pools its own way (recordForward).');
    const { T, D } = this;
    const x = this.recordEncoder(rec, n);
    const latent = this.act('latent'), pooled = this.act('pooled');
    layernormForward(rec, latent, this.act('norm.mean'), this.act('norm.rstd'), x, this.e('norm.weight'), this.e('norm.bias'), n * T, D);
    if (this.pool === 'mean') meanPoolForward(rec, pooled, latent, n, T, D);
    else clsPoolForward(rec, pooled, latent, n, T, D);
  }

  /**
   * logits[n, K], and with labels: stats = [mean loss, correct] and pred[n]. `train`: the linear
   * probe's BatchNorm uses (and updates) batch statistics; otherwise its running statistics.
   */
  recordForward(rec: Recorder, n: number, train: boolean): void {
    const { D, K, T } = this;
    if (this.mode === 'finetune') {
      const x = this.recordEncoder(rec, n);
      meanPoolForward(rec, this.act('pooled'), x, n, T, D);
      layernormForward(rec, this.act('fcn'), this.act('fcn.mean'), this.act('fcn.rstd'), this.act('pooled'), this.p('fc_norm.weight'), this.p('fc_norm.bias'), n, D);
      linearForward(rec, this.act('logits'), this.act('fcn'), this.p('head.weight'), this.p('head.bias'), n, D, K);
      if (this.distill && train) {
        kdCrossEntropyForward(rec, this.act('stats'), this.act('pred'), this.act('logits'), this.act('teacherLogits'), this.act('labels'), n, K, { ...this.distill, smoothing: this.smoothing });
      } else crossEntropyForward(rec, this.act('stats'), this.act('pred'), this.act('logits'), this.act('labels'), n, K, this.smoothing);
    } else {
      this.recordFeatures(rec, n);
      this.recordHead(rec, n, train);
    }
  }

  /**
   * The linear probe's head on the features in acts 'pooled' (from recordFeatures, or uploaded
   * with setFeatures): BatchNorm (batch statistics when `train`, else running) → Linear → loss.
   */
  recordHead(rec: Recorder, n: number, train: boolean): void {
    if (this.mode !== 'linprobe') throw new Error('recordHead: only the linear probe has a head on frozen features.');
    const { D, K } = this;
    const bn = this.act('bn.out');
    if (train) batchnormForward(rec, bn, this.act('bn.mean'), this.act('bn.rstd'), this.act('bn.runningMean'), this.act('bn.runningVar'), this.act('pooled'), n, D);
    else batchnormEval(rec, bn, this.act('pooled'), this.act('bn.runningMean'), this.act('bn.runningVar'), n, D);
    linearForward(rec, this.act('logits'), bn, this.p('head.weight'), this.p('head.bias'), n, D, K);
    crossEntropyForward(rec, this.act('stats'), this.act('pred'), this.act('logits'), this.act('labels'), n, K, this.smoothing);
  }

  /**
   * Frozen features [n, D] computed earlier (extractFeatures) as the probe's input: with no
   * augmentation the frozen encoder gives the same feature every epoch, so it runs once per image.
   */
  setFeatures(features: Float32Array, labels: ArrayLike<number> | null, n: number): void {
    if (this.mode !== 'linprobe') throw new Error('setFeatures: only the linear probe takes frozen features.');
    if (!(n >= 1 && n <= this.batch) || features.length < n * this.D) throw new Error(`setFeatures: ${n} rows of ${this.D} for a batch of ${this.batch}.`);
    upload(this.gpu.device, this.act('pooled'), features.subarray(0, n * this.D));
    if (labels) this.uploadLabels(labels, n);
  }

  private uploadLabels(labels: ArrayLike<number>, n: number): void {
    const u = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      if (!(Number.isInteger(y) && y >= 0 && y < this.K)) throw new Error(`Label ${y} is not a class of 0..${this.K - 1}.`);
      u[i] = y;
    }
    upload(this.gpu.device, this.act('labels'), u);
  }

  private workspace(): Workspace {
    const t = (k: string) => this.dact(k);
    return { dres: t('dres'), dln: t('dln'), dattn: t('dattn'), dqkv: t('dqkv'), dh: t('dh') };
  }

  /** The backward of the mean cross-entropy (with distill: of the KD loss); parameter gradients += (zero them first). */
  recordBackward(rec: Recorder, n: number): void {
    this.trainable('recordBackward', this.dacts);
    const { cfg, D, K, T, L } = this;
    const dlogits = this.dact('dlogits');
    if (this.distill) kdCrossEntropyBackward(rec, dlogits, this.act('logits'), this.act('teacherLogits'), this.act('labels'), n, K, { ...this.distill, smoothing: this.smoothing });
    else crossEntropyBackward(rec, dlogits, this.act('logits'), this.act('labels'), n, K, this.smoothing);
    if (this.mode === 'linprobe') {
      // The frozen encoder and the parameter-free BatchNorm need no gradient.
      linearBackward(rec, null, this.g('head.weight'), this.g('head.bias'), dlogits, this.act('bn.out'), this.p('head.weight'), n, D, K);
      return;
    }
    linearBackward(rec, this.dact('dfcn'), this.g('head.weight'), this.g('head.bias'), dlogits, this.act('fcn'), this.p('head.weight'), n, D, K);
    layernormBackward(rec, this.dact('dpooled'), this.g('fc_norm.weight'), this.g('fc_norm.bias'), this.dact('dfcn'), this.act('pooled'), this.p('fc_norm.weight'), this.act('fcn.mean'), this.act('fcn.rstd'), n, D);
    const ws = this.workspace();
    const R = n * T;
    meanPoolBackward(rec, view(ws.dres, R * D), this.dact('dpooled'), n, T, D);
    const d = this.dims(n);
    for (let i = cfg.depth - 1; i >= 0; i--) {
      const x = i === 0 ? this.act('x0') : this.blockOut(i - 1);
      recordBlockBackward(rec, ws, (k) => this.g(`blocks.${i}.${k}`), (k) => this.p(`blocks.${i}.${k}`), this.blockSaved(i), x, d);
    }
    gatherVisibleBackward(rec, this.dact('demb'), this.g('cls_token'), view(ws.dres, R * D), this.act('ids'), n, L, L, D);
    // pos_embed stays fixed (its backward is the identity); the images need no gradient.
    linearBackward(rec, null, this.g('patch_embed.proj.weight'), this.g('patch_embed.proj.bias'), this.dact('demb'), this.act('patches'), this.p('patch_embed.proj.weight'), n * L, cfg.inChans * cfg.patchSize ** 2, D);
  }

  recordZeroGrads(rec: Recorder): void {
    rec.clear(this.trainable('recordZeroGrads', this.gradArena).all, this.params.layout.size);
  }

  /** AdamW over the trainable table: layer-wise lr scales (fine-tuning), no decay on 1-D tensors, tokens, pos_embed. */
  recordOptimizer(rec: Recorder, o: OptimOptions): void {
    const grads = this.trainable('recordOptimizer', this.gradArena), decay = this.trainable('recordOptimizer', this.decay);
    adamwStep(rec, this.params.all, grads.all, this.momentM!.all, this.momentV!.all, decay, this.one(), this.params.layout.size, {
      lr: o.lr, step: o.step, weightDecay: o.weightDecay ?? ADAMW_DEFAULTS.weightDecay, beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.999,
    }, this.lrScales);
  }

  private oneTensor: Tensor | null = null;
  /** The clip coefficient 1 (no clipping, as MAE's fine-tuning default). */
  private one(): Tensor {
    if (!this.oneTensor) this.oneTensor = createTensor(this.gpu.device, 1, 'cls-clip-one', Float32Array.of(1));
    return this.oneTensor;
  }

  /**
   * One training step on a full batch (setBatch, or setFeatures with `fromFeatures` for the
   * probe): zero grads, forward, backward, AdamW. Read the batch's loss with readStats.
   */
  recordTrainStep(rec: Recorder, o: OptimOptions, fromFeatures = false): void {
    this.trainable('recordTrainStep', this.gradArena);
    const n = this.batch;
    if (this.mode === 'linprobe' && n < 2) throw new Error('The linear probe trains with BatchNorm batch statistics: use a batch of at least 2.');
    this.recordZeroGrads(rec);
    if (fromFeatures) this.recordHead(rec, n, true);
    else this.recordForward(rec, n, true);
    this.recordBackward(rec, n);
    this.recordOptimizer(rec, o);
  }

  /** [mean loss, correct count] of the last forward. */
  async readStats(): Promise<{ loss: number; correct: number }> {
    const s = await readback(this.gpu.device, this.act('stats'));
    return { loss: s[0], correct: s[1] };
  }

  async readPred(n: number): Promise<Uint32Array> {
    return (await readbackU32(this.gpu.device, this.act('pred'))).slice(0, n);
  }

  async readFeatures(n: number): Promise<Float32Array> {
    return (await readback(this.gpu.device, this.act('pooled'))).slice(0, n * this.D);
  }

  async readLogits(n: number): Promise<Float32Array> {
    return (await readback(this.gpu.device, this.act('logits'))).slice(0, n * this.K);
  }

  destroy(): void {
    for (const a of [this.params, this.gradArena, this.momentM, this.momentV, this.encoder, this.acts, ...this.blockArenas, this.dacts]) a?.destroy();
    this.decay?.buffer.destroy();
    this.lrScales?.buffer.destroy();
    this.oneTensor?.buffer.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Drivers: train, evaluate, features, k-NN
// ---------------------------------------------------------------------------------------------

/** Predictions for every sample of a loader's epoch (val loaders: no shuffle, no augmentation). */
export async function predictAll(model: Classifier, loader: DataLoader): Promise<{ pred: Uint32Array; labels: Int32Array; loss: number }> {
  const total = loader.count;
  const pred = new Uint32Array(total), labels = new Int32Array(total);
  let at = 0, lossSum = 0;
  while (at < total) {
    const b = loader.next();
    if (!b.labels) throw new Error(`${loader.dataset.name} has no labels: it cannot be evaluated.`);
    const n = Math.min(b.size, total - at);
    model.setBatch(b.x, b.labels, n);
    const rec = new Recorder(model.gpu, undefined, 'eval');
    model.recordForward(rec, n, false);
    await rec.submit();
    pred.set(await model.readPred(n), at);
    labels.set(b.labels.subarray(0, n), at);
    lossSum += (await model.readStats()).loss * n;
    at += n;
  }
  return { pred, labels, loss: lossSum / total };
}

/** The frozen features [count, D] and labels of every sample of a loader's epoch. */
export async function extractFeatures(model: Classifier, loader: DataLoader): Promise<{ features: Float32Array; labels: Int32Array }> {
  const total = loader.count, D = model.D;
  const features = new Float32Array(total * D), labels = new Int32Array(total);
  let at = 0;
  while (at < total) {
    const b = loader.next();
    if (!b.labels) throw new Error(`${loader.dataset.name} has no labels.`);
    const n = Math.min(b.size, total - at);
    model.setBatch(b.x, null, n);
    const rec = new Recorder(model.gpu, undefined, 'features');
    model.recordFeatures(rec, n);
    await rec.submit();
    features.set(await model.readFeatures(n), at * D);
    labels.set(b.labels.subarray(0, n), at);
    at += n;
  }
  return { features, labels };
}

export interface TrainHeadOptions {
  steps: number;
  lr: number;
  warmupSteps?: number;
  weightDecay?: number;
  /** Called after each step with its (1-based) number and the batch's loss and accuracy (read back every `logEvery` steps). */
  onStep?: (m: { step: number; loss: number; accuracy: number; lr: number }) => void;
  logEvery?: number;
}

/**
 * The training loop of trainClassifier and trainKdStudent: `steps` AdamW steps, warmup then
 * cosine to 0, one submission each; `before` records what the step needs first (the KD
 * teacher's logits); `report` reads the stats back, only on logging steps.
 */
async function trainSteps(
  model: Classifier, loader: DataLoader, o: Omit<TrainHeadOptions, 'onStep'>, what: { name: string; label: string; unlabelled: string; batchOf: string },
  before: ((rec: Recorder, b: Batch) => void) | null, report: ((t: number, b: Batch, lr: number) => Promise<void>) | null,
): Promise<void> {
  const sched: LrSchedule = { lr: o.lr, minLr: 0, warmupSteps: o.warmupSteps ?? Math.round(0.05 * o.steps), totalSteps: o.steps };
  const every = o.logEvery ?? Math.max(1, Math.round(o.steps / 20));
  for (let t = 1; t <= o.steps; t++) {
    const b = loader.next();
    if (!b.labels) throw new Error(`${loader.dataset.name} has no labels: ${what.unlabelled}.`);
    if (b.size !== model.batch) throw new Error(`${what.name}: a batch of ${b.size}, ${what.batchOf} is ${model.batch} (use a training loader that drops the last batch).`);
    model.setBatch(b.x, b.labels, b.size);
    const lr = lrAt(t - 1, sched);
    const rec = new Recorder(model.gpu, undefined, what.label);
    before?.(rec, b);
    model.recordTrainStep(rec, { lr, step: t, weightDecay: o.weightDecay });
    if (report && (t % every === 0 || t === o.steps || t === 1)) {
      await rec.submit();
      await report(t, b, lr);
    } else rec.submitNoWait();
  }
  await model.gpu.device.queue.onSubmittedWorkDone();
}

/** Trains a classifier (fine-tuning or the probe's head) for `steps` AdamW steps, warmup then cosine to 0. */
export async function trainClassifier(model: Classifier, loader: DataLoader, o: TrainHeadOptions): Promise<void> {
  const onStep = o.onStep;
  await trainSteps(model, loader, o, { name: 'trainClassifier', label: 'classifier-step', unlabelled: 'a classifier cannot be trained on it', batchOf: "the model's" }, null,
    onStep ? async (t, b, lr) => {
      const s = await model.readStats();
      onStep({ step: t, loss: s.loss, accuracy: s.correct / b.size, lr });
    } : null);
}

/**
 * Checks that `teacher` can teach `student` by knowledge distillation: the student was built
 * with distill options, both see the same images (size, channels), the teacher has the same
 * classes and a batch at least as large. Throws a message that says what differs.
 */
export function checkKdPair(student: Classifier, teacher: Classifier): void {
  if (!student.distill) throw new Error('Knowledge distillation: the student classifier was not built with distill options ({ temperature, softWeight }).');
  if (teacher === student) throw new Error('Knowledge distillation: the teacher and the student are the same classifier.');
  if (teacher.K !== student.K) throw new Error(`Knowledge distillation: the teacher has ${teacher.K} classes, the student ${student.K}; they must classify the same classes.`);
  const t = teacher.cfg, s = student.cfg;
  if (t.imgSize !== s.imgSize || t.inChans !== s.inChans) {
    throw new Error(`Knowledge distillation: the teacher sees ${t.imgSize}×${t.imgSize}×${t.inChans} images, the student ${s.imgSize}×${s.imgSize}×${s.inChans}; both must see the same images.`);
  }
  if (teacher.batch < student.batch) throw new Error(`Knowledge distillation: the teacher's batch (${teacher.batch}) is smaller than the student's (${student.batch}).`);
}

/**
 * Records the frozen teacher's forward (evaluation mode, no backward) on the n images it holds
 * (setBatch with the student's batch) and copies its logits into the student's teacherLogits,
 * in the same command buffer as what follows.
 */
export function recordTeacherLogits(rec: Recorder, student: Classifier, teacher: Classifier, n: number): void {
  teacher.recordForward(rec, n, false);
  rec.copy(teacher.logits, student.teacherLogits, n * student.K);
}

export interface KdStepMetrics {
  step: number;
  /** The student's KD loss on the batch. */
  loss: number;
  /** The student's batch accuracy. */
  accuracy: number;
  /** The teacher's batch accuracy (it sees the same images). */
  teacherAccuracy: number;
  lr: number;
}

/**
 * The knowledge-distillation baseline: trains `student` (a fine-tuning Classifier built with
 * `distill`) for `steps` AdamW steps (warmup then cosine to 0, as trainClassifier) on soft
 * labels from a frozen `teacher` classifier. Each step is one submission: both get the same
 * images, the teacher's forward and the copy of its logits, then the student's train step;
 * stats are read back only on logging steps. `onStep` also receives the teacher's batch accuracy.
 */
export async function trainKdStudent(
  student: Classifier, teacher: Classifier, loader: DataLoader, o: Omit<TrainHeadOptions, 'onStep'> & { onStep?: (m: KdStepMetrics) => void },
): Promise<void> {
  checkKdPair(student, teacher);
  const onStep = o.onStep;
  await trainSteps(student, loader, o, { name: 'trainKdStudent', label: 'kd-step', unlabelled: 'a student cannot be distilled on it (the hard term needs them)', batchOf: "the student's" },
    (rec, b) => {
      teacher.setBatch(b.x, b.labels, b.size);
      recordTeacherLogits(rec, student, teacher, b.size);
    },
    onStep ? async (t, b, lr) => {
      const s = await student.readStats(), ts = await teacher.readStats();
      onStep({ step: t, loss: s.loss, accuracy: s.correct / b.size, teacherAccuracy: ts.correct / b.size, lr });
    } : null);
}

/**
 * The linear probe trained on cached frozen features [count, D] (extractFeatures of an
 * unaugmented loader): each epoch a seeded permutation, full batches only (as a training loader
 * drops the last), warmup then cosine.
 */
export async function trainProbeOnFeatures(model: Classifier, data: { features: Float32Array; labels: ArrayLike<number> }, o: TrainHeadOptions & { seed?: number }): Promise<void> {
  const D = model.D, B = model.batch, count = data.labels.length;
  if (count < B) throw new Error(`trainProbeOnFeatures: ${count} training samples, fewer than one batch of ${B}.`);
  const sched: LrSchedule = { lr: o.lr, minLr: 0, warmupSteps: o.warmupSteps ?? Math.round(0.05 * o.steps), totalSteps: o.steps };
  const every = o.logEvery ?? Math.max(1, Math.round(o.steps / 20));
  const x = new Float32Array(B * D), y = new Int32Array(B);
  const perEpoch = Math.floor(count / B);
  let order: Uint32Array = new Uint32Array(0);
  for (let t = 1; t <= o.steps; t++) {
    const epoch = Math.floor((t - 1) / perEpoch), at = ((t - 1) % perEpoch) * B;
    if (at === 0) order = new Rng(hashInts(o.seed ?? 0, epoch, 0x9b0b)).permutation(count);
    for (let i = 0; i < B; i++) {
      const j = order[at + i];
      x.set(data.features.subarray(j * D, (j + 1) * D), i * D);
      y[i] = data.labels[j];
    }
    model.setFeatures(x, y, B);
    const lr = lrAt(t - 1, sched);
    const rec = new Recorder(model.gpu, undefined, 'probe-step');
    model.recordTrainStep(rec, { lr, step: t, weightDecay: o.weightDecay }, true);
    if (o.onStep && (t % every === 0 || t === o.steps || t === 1)) {
      await rec.submit();
      const s = await model.readStats();
      o.onStep({ step: t, loss: s.loss, accuracy: s.correct / B, lr });
    } else rec.submitNoWait();
  }
  await model.gpu.device.queue.onSubmittedWorkDone();
}

/** The probe's predictions on cached features (BatchNorm in evaluation mode). */
export async function predictFeatures(model: Classifier, data: { features: Float32Array; labels: ArrayLike<number> }): Promise<{ pred: Uint32Array; labels: Int32Array; loss: number }> {
  const D = model.D, total = data.labels.length;
  const pred = new Uint32Array(total), labels = Int32Array.from(data.labels);
  let lossSum = 0;
  for (let at = 0; at < total; at += model.batch) {
    const n = Math.min(model.batch, total - at);
    model.setFeatures(data.features.subarray(at * D, (at + n) * D), labels.subarray(at, at + n), n);
    const rec = new Recorder(model.gpu, undefined, 'probe-eval');
    model.recordHead(rec, n, false);
    await rec.submit();
    pred.set(await model.readPred(n), at);
    lossSum += (await model.readStats()).loss * n;
  }
  return { pred, labels, loss: lossSum / total };
}

export interface KnnOptions {
  /** Neighbours (default 20). */
  k?: number;
  /** Vote temperature (default 0.07); 0 gives plain majority votes. */
  temperature?: number;
}

/** Rows of x [rows, D] scaled to unit L2 norm (F.normalize: x / max(‖x‖, 1e-12)). */
export function l2NormalizeRows(x: Float32Array, rows: number, D: number): Float32Array {
  const out = new Float32Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += x[r * D + d] ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let d = 0; d < D; d++) out[r * D + d] = x[r * D + d] * inv;
  }
  return out;
}

/**
 * The k-NN vote of one query from its similarities to the bank: the k most similar (ties: lower
 * index first), each voting for its label with weight exp(sim/T) (T = 0: weight 1); the class
 * with the largest total wins (ties: the lower class).
 */
export function knnVote(sims: ArrayLike<number>, bankLabels: ArrayLike<number>, numClasses: number, k: number, temperature: number): number {
  const n = sims.length;
  const kk = Math.min(k, n);
  // Partial selection: keep the kk best in a small sorted list (kk is ~20).
  const best: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = sims[i];
    if (best.length === kk && !(s > sims[best[kk - 1]])) continue;
    let j = best.length === kk ? kk - 1 : best.length;
    if (best.length < kk) best.push(i);
    while (j > 0 && sims[best[j - 1]] < s) {
      best[j] = best[j - 1];
      j--;
    }
    best[j] = i;
  }
  const votes = new Float64Array(numClasses);
  for (const i of best) votes[bankLabels[i]] += temperature > 0 ? Math.exp(sims[i] / temperature) : 1;
  let arg = 0;
  for (let c = 1; c < numClasses; c++) if (votes[c] > votes[arg]) arg = c;
  return arg;
}

/**
 * k-NN predictions of queries [Q, D] against a bank [B, D] of labelled features, cosine
 * similarity (both sides L2-normalised here): the similarities are one GPU matmul per chunk of
 * queries (queries·bankᵀ), read back; the top-k vote runs on the CPU (knnVote).
 */
export async function knnPredict(gpu: Gpu, bank: Float32Array, bankLabels: ArrayLike<number>, queries: Float32Array, D: number, numClasses: number, o: KnnOptions = {}): Promise<Uint32Array> {
  const k = o.k ?? 20, temperature = o.temperature ?? 0.07;
  const B = bank.length / D, Q = queries.length / D;
  if (!Number.isInteger(B) || !Number.isInteger(Q) || B < 1) throw new Error(`knnPredict: a bank of ${B} and ${Q} queries of width ${D}.`);
  const dev = gpu.device;
  const bankT = createTensor(dev, B * D, 'knn-bank', l2NormalizeRows(bank, B, D));
  const qn = l2NormalizeRows(queries, Q, D);
  // Queries per chunk: the similarity block stays ≤ 4 M floats (16 MiB).
  const chunk = Math.max(1, Math.min(Q, Math.floor((4 << 20) / B)));
  const qT = createTensor(dev, chunk * D, 'knn-queries');
  const simT = createTensor(dev, chunk * B, 'knn-sims');
  const pred = new Uint32Array(Q);
  try {
    for (let q0 = 0; q0 < Q; q0 += chunk) {
      const m = Math.min(chunk, Q - q0);
      upload(dev, qT, qn.subarray(q0 * D, (q0 + m) * D));
      const rec = new Recorder(gpu, undefined, 'knn');
      matmul(rec, view(simT, m * B), view(qT, m * D), bankT, null, m, B, D, 'nt');
      await rec.submit();
      const sims = await readback(dev, view(simT, m * B));
      for (let i = 0; i < m; i++) pred[q0 + i] = knnVote(sims.subarray(i * B, (i + 1) * B), bankLabels, numClasses, k, temperature);
    }
  } finally {
    for (const t of [bankT, qT, simT]) t.buffer.destroy();
  }
  return pred;
}
