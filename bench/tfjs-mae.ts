/**
 * The peer's training step: the same ViT MAE step as ours (src/engine/mae.ts, float64 twin
 * src/ref/model.ts), written as a TensorFlow.js user would write it, with tf ops, tf.variableGrads
 * and tf.train.adam. Runs on whichever tfjs backend is active when the model is built (CPU in the
 * test, WebGPU on our device and WebGL in the benchmarks); browser-safe (no Node imports).
 *
 * The math, op for op the reference's:
 *   patchify        imgs[N,C,S,S] → reshape [N,C,g,p,g,p] → transpose → [N·L, C·p·p] (the conv
 *                   weight's order) for the patch embedding, and [N,L,p·p·C] for the target
 *   patch_embed     matMul with the (D, C·p·p) view of the conv weight, + bias, + pos_embed rows 1..L
 *   masking         tf.gather of rows n·L + idsKeep (our masking's ids), cls token in front
 *   blocks          pre-norm: x + proj(attn(LN1 x)), then + fc2(gelu(fc1(LN2 ·)));
 *                   layer norm from tf.moments (biased variance, eps 1e-6); attention = softmax
 *                   (q·kᵀ·hd^-½)·v per head with batched matMul; GELU exact: 0.5·x·(1 + erf(x/√2)),
 *                   tf.erf (tfjs evaluates erf with Abramowitz–Stegun 7.1.26, |error| ≤ 1.5e-7)
 *   final norm, decoder_embed, mask tokens appended and unshuffled by tf.gather with idsRestore,
 *   cls row kept, decoder_pos_embed, decoder blocks, decoder_norm, decoder_pred, cls row dropped
 *   loss            norm_pix (per patch, unbiased variance, eps 1e-6) MSE, mean over the masked patches
 * The step: tf.variableGrads of the loss over every trainable tensor (the position embeddings are
 * fixed tables: constants), then AdamW — torch's decoupled weight decay written out
 * (p ← p·(1 − lr·wd) on the tensors the recipe decays, noWeightDecay), then tf.train.adam's
 * update with the recipe's betas and eps (tfjs's Adam is torch's Adam without decay, same bias
 * correction). It computes no global gradient norm (ours does, for logging): slightly less work
 * for the peer.
 */
import type { MaeConfig } from '../src/engine/config';
import type { ParamMap } from '../src/engine/init';
import { maeParamLayout, FROZEN } from '../src/engine/params';
import { ADAMW_DEFAULTS, noWeightDecay } from '../src/gpu/ops/adamw';
import type { Masking } from '../src/core/masking';

export type Tf = typeof import('@tensorflow/tfjs-core');
type Tensor = import('@tensorflow/tfjs-core').Tensor;
type Tensor2D = import('@tensorflow/tfjs-core').Tensor2D;
type Scalar = import('@tensorflow/tfjs-core').Scalar;
type Variable = import('@tensorflow/tfjs-core').Variable;
type Optimizer = import('@tensorflow/tfjs-core').Optimizer;

export interface TfjsAdamwOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

export const LN_EPS = 1e-6;
const PIX_EPS = 1e-6;

let instances = 0;

export class TfjsMae {
  readonly L: number;
  readonly P: number;
  /** Trainable tensors by timm name (tfjs variable names carry a unique prefix). */
  readonly vars = new Map<string, Variable>();
  private readonly consts = new Map<string, Tensor>();
  private readonly decayed: Variable[] = [];
  private readonly optimizer: Optimizer;
  private readonly prefix: string;
  private batch: { imgs: Tensor; keep: Tensor; restore: Tensor; mask: Tensor; maskSum: number } | undefined;

  constructor(
    readonly tf: Tf, readonly cfg: MaeConfig, readonly N: number, readonly V: number, params: ParamMap,
    readonly adamw: TfjsAdamwOptions = { lr: 1.5e-4 },
  ) {
    const g = cfg.imgSize / cfg.patchSize;
    this.L = g * g;
    this.P = cfg.patchSize * cfg.patchSize * cfg.inChans;
    this.prefix = `tfjs-mae-${instances++}/`;
    for (const e of maeParamLayout(cfg).entries) {
      const v = params.get(e.name);
      if (!v || v.length !== e.length) throw new Error(`TfjsMae: no ${e.length} values for "${e.name}"`);
      const t = tf.tensor(Float32Array.from(v), e.shape);
      if (FROZEN.has(e.name)) {
        this.consts.set(e.name, t);
        continue;
      }
      const variable = tf.variable(t, true, this.prefix + e.name);
      t.dispose();
      this.vars.set(e.name, variable);
      if (!noWeightDecay(e.name, e.shape)) this.decayed.push(variable);
    }
    const d = { ...ADAMW_DEFAULTS, ...adamw };
    this.optimizer = tf.train.adam(d.lr, d.beta1, d.beta2, d.eps);
  }

  /** imgs[N, C, S, S] and its masking (the same ids as ours). */
  setBatch(imgs: Float32Array | Float64Array, masking: Masking): void {
    const { tf, N, V, L, cfg } = this;
    if (masking.idsKeep.length !== N * V || masking.idsRestore.length !== N * L) throw new Error(`TfjsMae.setBatch: masking is not for ${N} images of ${V} of ${L} patches`);
    this.disposeBatch();
    // Row indices into the flattened [N·L, ·] tensors: a gather along axis 0.
    const keep = Int32Array.from(masking.idsKeep, (l, i) => Math.floor(i / V) * L + l);
    const restore = Int32Array.from(masking.idsRestore, (j, i) => Math.floor(i / L) * L + j);
    let maskSum = 0;
    for (const m of masking.mask) maskSum += m;
    this.batch = {
      imgs: tf.tensor4d(Float32Array.from(imgs), [N, cfg.inChans, cfg.imgSize, cfg.imgSize]),
      keep: tf.tensor1d(keep, 'int32'),
      restore: tf.tensor1d(restore, 'int32'),
      mask: tf.tensor2d(Float32Array.from(masking.mask), [N, L]),
      maskSum,
    };
  }

  private w(name: string): Tensor {
    const t = this.vars.get(name) ?? this.consts.get(name);
    if (!t) throw new Error(`TfjsMae: no tensor "${name}"`);
    return t;
  }

  private linear(x: Tensor2D, name: string): Tensor2D {
    return this.tf.add(this.tf.matMul(x, this.w(`${name}.weight`) as Tensor2D, false, true), this.w(`${name}.bias`)) as Tensor2D;
  }

  private layerNorm(x: Tensor2D, name: string): Tensor2D {
    const { tf } = this;
    const { mean, variance } = tf.moments(x, -1, true);
    const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LN_EPS)));
    return tf.add(tf.mul(xhat, this.w(`${name}.weight`)), this.w(`${name}.bias`)) as Tensor2D;
  }

  private gelu(x: Tensor): Tensor {
    const { tf } = this;
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
  }

  /** One pre-norm block on x[N·T, W]. */
  private block(x: Tensor2D, prefix: string, T: number, W: number, heads: number): Tensor2D {
    const { tf, N } = this;
    const hd = W / heads;
    const qkv = this.linear(this.layerNorm(x, `${prefix}.norm1`), `${prefix}.attn.qkv`); // [R, 3W]
    // [N, T, 3·heads, hd] → [N, 3·heads, T, hd]: q, k, v are heads 0..h, h..2h, 2h..3h.
    const split = tf.transpose(tf.reshape(qkv, [N, T, 3 * heads, hd]), [0, 2, 1, 3]);
    const [q, k, v] = tf.split(split, 3, 1);
    const probs = tf.softmax(tf.mul(tf.matMul(q, k, false, true), hd ** -0.5));
    const o = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [N * T, W]) as Tensor2D;
    const x1 = tf.add(x, this.linear(o, `${prefix}.attn.proj`)) as Tensor2D;
    const a = this.gelu(this.linear(this.layerNorm(x1, `${prefix}.norm2`), `${prefix}.mlp.fc1`)) as Tensor2D;
    return tf.add(x1, this.linear(a, `${prefix}.mlp.fc2`)) as Tensor2D;
  }

  /** The MAE loss (norm_pix MSE over masked patches) as a scalar; differentiable in the variables. */
  loss(): Scalar {
    const { tf, cfg, N, V, L, P } = this;
    const b = this.batch;
    if (!b) throw new Error('TfjsMae: setBatch first');
    const { inChans: C, imgSize: S, patchSize: p, embedDim: D, decoderEmbedDim: Dd } = cfg;
    const g = S / p, K = C * p * p, T = 1 + V, Td = 1 + L;
    // patchify: image rows = (gy, i), columns = (gx, j)
    const x6 = tf.reshape(b.imgs, [N, C, g, p, g, p]);
    const patches = tf.reshape(tf.transpose(x6, [0, 2, 4, 1, 3, 5]), [N * L, K]) as Tensor2D; // (c, i, j)
    let target = tf.reshape(tf.transpose(x6, [0, 2, 4, 3, 5, 1]), [N, L, P]); // (i, j, c)

    // Encoder: patch embedding (+ the table's patch rows), the visible rows, cls in front.
    const pe = tf.add(tf.matMul(patches, tf.reshape(this.w('patch_embed.proj.weight'), [D, K]) as Tensor2D, false, true), this.w('patch_embed.proj.bias'));
    const pos = tf.slice(tf.reshape(this.w('pos_embed'), [Td, D]), [1, 0], [L, D]);
    const emb = tf.reshape(tf.add(tf.reshape(pe, [N, L, D]), pos), [N * L, D]);
    const vis = tf.reshape(tf.gather(emb, b.keep), [N, V, D]);
    const cls = tf.broadcastTo(this.w('cls_token'), [N, 1, D]); // pos_embed row 0 is zeros
    let x = tf.reshape(tf.concat([cls, vis], 1), [N * T, D]) as Tensor2D;
    for (let i = 0; i < cfg.depth; i++) x = this.block(x, `blocks.${i}`, T, D, cfg.numHeads);
    const latent = this.layerNorm(x, 'norm');

    // Decoder: embed, append mask tokens, unshuffle, cls row back in front, position table.
    const y = tf.reshape(this.linear(latent, 'decoder_embed'), [N, T, Dd]);
    const parts = [tf.slice(y, [0, 1, 0], [N, V, Dd])];
    if (L > V) parts.push(tf.broadcastTo(this.w('mask_token'), [N, L - V, Dd]));
    const shuffled = tf.reshape(parts.length > 1 ? tf.concat(parts, 1) : parts[0], [N * L, Dd]);
    const unshuffled = tf.reshape(tf.gather(shuffled, b.restore), [N, L, Dd]);
    const z = tf.add(tf.concat([tf.slice(y, [0, 0, 0], [N, 1, Dd]), unshuffled], 1), tf.reshape(this.w('decoder_pos_embed'), [1, Td, Dd]));
    let xd = tf.reshape(z, [N * Td, Dd]) as Tensor2D;
    for (let i = 0; i < cfg.decoderDepth; i++) xd = this.block(xd, `decoder_blocks.${i}`, Td, Dd, cfg.decoderNumHeads);
    const full = tf.reshape(this.linear(this.layerNorm(xd, 'decoder_norm'), 'decoder_pred'), [N, Td, P]);
    const pred = tf.slice(full, [0, 1, 0], [N, L, P]);

    // forward_loss
    if (cfg.normPixLoss) {
      const mean = tf.mean(target, -1, true);
      const centred = tf.sub(target, mean);
      const variance = tf.div(tf.sum(tf.square(centred), -1, true), P - 1); // torch's unbiased var
      target = tf.div(centred, tf.sqrt(tf.add(variance, PIX_EPS)));
    }
    const perPatch = tf.mean(tf.square(tf.sub(pred, target)), -1); // [N, L]
    return tf.div(tf.sum(tf.mul(perPatch, b.mask)), b.maskSum) as Scalar;
  }

  /** The loss and d loss / d every trainable tensor, by timm name (caller disposes). */
  lossAndGrads(): { value: Scalar; grads: Map<string, Tensor> } {
    const { value, grads } = this.tf.variableGrads(() => this.loss(), [...this.vars.values()]);
    const byName = new Map<string, Tensor>();
    for (const [name, v] of this.vars) byName.set(name, grads[v.name]);
    return { value, grads: byName };
  }

  /**
   * One training step: loss and gradients, then AdamW (decoupled decay, then Adam). Records and
   * enqueues the work; returns the loss (the caller disposes it, and waits for the backend).
   */
  step(): Scalar {
    const { tf } = this;
    const d = { ...ADAMW_DEFAULTS, ...this.adamw };
    return tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => this.loss(), [...this.vars.values()]);
      // torch.optim.AdamW: param.mul_(1 − lr·wd) before the Adam update (gradients are already taken).
      const factor = 1 - d.lr * d.weightDecay;
      for (const v of this.decayed) v.assign(tf.mul(v, factor));
      this.optimizer.applyGradients(grads);
      return value;
    });
  }

  /** Current parameter values by timm name (trainable tensors only). */
  async readParams(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, v] of this.vars) out.set(name, (await v.data()) as Float32Array);
    return out;
  }

  private disposeBatch(): void {
    if (!this.batch) return;
    for (const t of [this.batch.imgs, this.batch.keep, this.batch.restore, this.batch.mask]) t.dispose();
    this.batch = undefined;
  }

  dispose(): void {
    this.disposeBatch();
    for (const v of this.vars.values()) v.dispose();
    for (const t of this.consts.values()) t.dispose();
    this.optimizer.dispose();
  }
}
