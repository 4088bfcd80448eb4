/**
 * DMAE on the GPU (recipe §2): the MAE student of mae.ts plus a frozen teacher that runs blocks
 * 0..kT only, on the student's visible tokens, and one projection head per aligned pair.
 *
 *   T_k    = teacher block kT's raw output        [N, 1+V, Dt]   no grad, no final norm
 *   S_k    = student block kS's raw output        [N, 1+V, D]
 *   L_dist = distillLoss(T_k, head_k(S_k))        L1 (or L2) on per-token L2-normalised rows, cls included
 *   loss   = L_pix + α·Σ_k L_dist
 *
 * The teacher keeps no activations for a backward: one block workspace serves all its blocks,
 * two residual buffers alternate, and the aligned blocks write to their own feature tensors.
 * The gradient of L_dist enters the student's backward at the output of block kS (the
 * addFeatureGradient hook of MaeModel). Gradients for the student and its heads only.
 * src/ref/model.ts's dmaeForwardBackward is the float64 twin.
 */
import { Arena, ArenaLayout, readback } from '../gpu/buffers';
import type { Gpu } from '../gpu/device';
import { Recorder, type Tensor } from '../gpu/kernels';
import { addInPlace } from '../gpu/ops/elementwise';
import { distillLossBackward, distillLossForward } from '../gpu/ops/loss';
import { embedVisible } from '../gpu/ops/masking';
import { KMajorWeights, kMajorLayout, linearBackward, linearForward } from '../gpu/ops/matmul';
import { teacherStopBlock, validateDistill, type DistillConfig, type MaeConfig } from './config';
import type { ParamMap } from './init';
import { MaeModel, addBlockActs, blockActs, readParamMap, recordBlockForward, uploadParamMap, type ArenaExtensions, type MaeModelOptions } from './mae';
import { addEncoderParams, addProjectionParams, maeParamLayout } from './params';

/** The student's table: the MAE's tensors and `aligned_feature_projection_heads.{k}`. */
export function dmaeStudentLayout(cfg: MaeConfig, teacherCfg: MaeConfig, d: DistillConfig): ArenaLayout {
  const layout = maeParamLayout(cfg);
  addProjectionParams(layout, cfg.embedDim, teacherCfg.embedDim, d.pairs.length);
  return layout;
}

/** The teacher's table: its encoder up to block kT, or up to `stop` when given (no final norm, no decoder). */
export function teacherLayout(teacherCfg: MaeConfig, d: DistillConfig, stop = teacherStopBlock(d)): ArenaLayout {
  const layout = new ArenaLayout();
  addEncoderParams(layout, teacherCfg, stop);
  return layout;
}

/** What DMAE adds to the student's activation, activation-gradient and io arenas. */
export function dmaeActivationExtension(cfg: MaeConfig, teacherCfg: MaeConfig, d: DistillConfig, N: number, V: number): ArenaExtensions {
  const R = N * (1 + V), D = cfg.embedDim, Dt = teacherCfg.embedDim;
  return {
    acts: (a) => d.pairs.forEach((_, k) => a.add(`proj.${k}`, [R, Dt])), // head_k(S_k)
    dacts: (g) => {
      g.add('dproj', [R, Dt]);
      d.pairs.forEach((_, k) => g.add(`dfeat.${k}`, [R, D])); // d L / d S_k through head k
    },
    io: (o) => d.pairs.forEach((_, k) => o.add(`loss.distill.${k}`, [1])),
  };
}

/** The teacher's weights that KMajorWeights copies: every `.weight` (kMajorLayout keeps those of two or more dimensions, the Linears'). */
const isLinearWeight = (name: string): boolean => name.endsWith('.weight');

/**
 * The teacher's Linear weights again, K-major (Wᵀ [in, out]; kMajorLayout), written once when the
 * teacher is uploaded: its frozen forward multiplies x·Wᵀ as 'nn' and pays no transpose of W per step.
 */
export function teacherKMajorLayout(teacherCfg: MaeConfig, d: DistillConfig, stop = teacherStopBlock(d)): ArenaLayout {
  return kMajorLayout(teacherLayout(teacherCfg, d, stop), isLinearWeight);
}

/**
 * The teacher's activations: its embedded visible patches, the input tokens, two residual buffers
 * that alternate, one block workspace shared by every block, and the aligned blocks' features.
 */
export function teacherActivationLayout(teacherCfg: MaeConfig, d: DistillConfig, N: number, V: number): ArenaLayout {
  const t = new ArenaLayout();
  const T = 1 + V, Dt = teacherCfg.embedDim;
  t.add('embVisible', [N * V, Dt]);
  t.add('x0', [N, T, Dt]);
  t.add('xa', [N, T, Dt]);
  t.add('xb', [N, T, Dt]);
  addBlockActs(t, 'blk', N, T, Dt, teacherCfg.numHeads, teacherCfg.mlpRatio * Dt, true);
  for (const kT of new Set(d.pairs.map((p) => p.teacherBlock))) t.add(`feat.${kT}`, [N, T, Dt]);
  return t;
}

export interface DmaeOptions extends MaeModelOptions {
  /**
   * Run the teacher through this block (≥ the deepest aligned block kT, < its depth) instead of
   * stopping at kT. The loss is the same (it reads T_kT); the blocks after kT are wasted work.
   * For measuring what stopping early saves (bench/train.ts, test/engine/teacher.test.ts).
   * Run through the last block, the teacher's table also holds its (unused) final norm, so
   * uploadTeacher wants a whole encoder.
   */
  teacherRunThrough?: number;
}

export class DmaeModel extends MaeModel {
  readonly teacherParams: Arena;
  readonly teacherActs: Arena;
  /** The teacher's Linear weights K-major (KMajorWeights), rewritten by every uploadTeacher: its frozen forward transposes none. */
  readonly teacherWeightsT: KMajorWeights;
  readonly teacherStop: number;
  private readonly teacherBlocks: number[];

  constructor(gpu: Gpu, cfg: MaeConfig, readonly teacherCfg: MaeConfig, readonly distill: DistillConfig, batch: number, visible: number, opts: DmaeOptions = {}) {
    validateDistill(cfg, teacherCfg, distill);
    const stop = opts.teacherRunThrough ?? teacherStopBlock(distill);
    if (!(Number.isInteger(stop) && stop >= teacherStopBlock(distill) && stop < teacherCfg.depth)) {
      throw new Error(`DmaeModel: teacherRunThrough = ${stop} must be an integer in [${teacherStopBlock(distill)}, ${teacherCfg.depth - 1}] (from the deepest aligned teacher block to the last).`);
    }
    super(gpu, cfg, batch, visible, dmaeStudentLayout(cfg, teacherCfg, distill), dmaeActivationExtension(cfg, teacherCfg, distill, batch, visible), opts);
    this.teacherStop = stop;
    this.teacherBlocks = [...new Set(distill.pairs.map((p) => p.teacherBlock))];
    this.teacherParams = new Arena(gpu.device, teacherLayout(teacherCfg, distill, stop), 'teacher-params');
    this.teacherActs = new Arena(gpu.device, teacherActivationLayout(teacherCfg, distill, batch, visible), 'teacher-activations');
    this.teacherWeightsT = new KMajorWeights(gpu.device, this.teacherParams, isLinearWeight, 'teacher-weights-kmajor');
  }

  override get memoryBytes(): number {
    return super.memoryBytes + this.teacherParams.layout.bytes + this.teacherActs.layout.bytes + this.teacherWeightsT.bytes;
  }

  /** The teacher's weights: any map holding at least its tensors up to block kT (a full MAE checkpoint will do). */
  uploadTeacher(values: ParamMap): void {
    uploadParamMap(this.gpu, this.teacherParams, values);
    // Their K-major copies, once: submitted now, so any step recorded later sees them.
    const rec = new Recorder(this.gpu, undefined, 'teacher-weights-kmajor');
    this.teacherWeightsT.record(rec);
    rec.submitNoWait();
  }

  readTeacher(): Promise<ParamMap> {
    return readParamMap(this.gpu, this.teacherParams);
  }

  /** T_kT [N, 1+V, Dt]: the teacher's raw output of block kT, after a recorded forward. */
  teacherFeature(kT: number): Tensor {
    return this.teacherActs.tensor(`feat.${kT}`);
  }

  /**
   * The frozen teacher on the student's visible patches, blocks 0..teacherStop. Reads the
   * student's `patches` (same image, same patch grid), so it runs after recordForwardEncoder.
   */
  recordForwardTeacher(rec: Recorder): void {
    const { teacherCfg: tc, batch: N, visible: V, L } = this;
    const Dt = tc.embedDim, K = tc.inChans * tc.patchSize ** 2;
    const P = (n: string) => this.teacherParams.tensor(n);
    const A = (n: string) => this.teacherActs.tensor(n);
    // The student's visible patches (same image, grid and ids), embedded by the teacher: V of L rows.
    linearForward(rec, A('embVisible'), this.acts.tensor('patchesVisible'), P('patch_embed.proj.weight'), P('patch_embed.proj.bias'), N * V, K, Dt, undefined, this.teacherWeightsT.weight('patch_embed.proj.weight'));
    embedVisible(rec, A('x0'), A('embVisible'), P('cls_token'), this.acts.tensor('idsKeep'), P('pos_embed'), N, L, V, Dt);
    const d = { N, T: 1 + V, W: Dt, heads: tc.numHeads, hidden: tc.mlpRatio * Dt };
    const ws = blockActs(this.teacherActs, 'blk');
    const xa = A('xa'), xb = A('xb');
    let x = A('x0');
    for (let i = 0; i <= this.teacherStop; i++) {
      const out = this.teacherBlocks.includes(i) ? A(`feat.${i}`) : x.offset === xa.offset ? xb : xa;
      recordBlockForward(rec, out, ws, (n) => P(`blocks.${i}.${n}`), x, d, { frozen: true, kMajor: (n) => this.teacherWeightsT.weight(`blocks.${i}.${n}`) });
      x = out;
    }
  }

  /** L_dist per pair into io['loss.distill.k'] (α is applied by the caller and the backward). */
  recordForwardDistill(rec: Recorder): void {
    const R = this.batch * (1 + this.visible), D = this.cfg.embedDim, Dt = this.teacherCfg.embedDim;
    this.distill.pairs.forEach((pair, k) => {
      const proj = this.acts.tensor(`proj.${k}`);
      linearForward(rec, proj, this.encoderBlockOutput(pair.studentBlock), this.p(`aligned_feature_projection_heads.${k}.weight`), this.p(`aligned_feature_projection_heads.${k}.bias`), R, D, Dt);
      distillLossForward(rec, this.io.tensor(`loss.distill.${k}`), this.teacherFeature(pair.teacherBlock), proj, R, Dt, this.distill.kind);
    });
  }

  protected override recordForwardInOrder(rec: Recorder): void {
    this.recordForwardEncoder(rec);
    this.recordForwardTeacher(rec);
    this.recordForwardDecoder(rec);
    this.recordForwardLoss(rec);
    this.recordForwardDistill(rec);
  }

  /** d(α·L_dist)/d S_k into dacts['dfeat.k']; the heads' gradients +=. */
  recordBackwardDistill(rec: Recorder): void {
    const R = this.batch * (1 + this.visible), D = this.cfg.embedDim, Dt = this.teacherCfg.embedDim;
    const dproj = this.dacts.tensor('dproj');
    this.distill.pairs.forEach((pair, k) => {
      distillLossBackward(rec, dproj, this.teacherFeature(pair.teacherBlock), this.acts.tensor(`proj.${k}`), R, Dt, this.distill.kind, this.distill.alpha);
      this.scaleLossGradient(rec, dproj);
      const head = `aligned_feature_projection_heads.${k}`;
      linearBackward(rec, this.dacts.tensor(`dfeat.${k}`), this.g(`${head}.weight`), this.g(`${head}.bias`), dproj, this.encoderBlockOutput(pair.studentBlock), this.p(`${head}.weight`), R, D, Dt);
    });
  }

  protected override addFeatureGradient(rec: Recorder, block: number, dres: Tensor): void {
    this.distill.pairs.forEach((pair, k) => {
      if (pair.studentBlock === block) addInPlace(rec, dres, this.dacts.tensor(`dfeat.${k}`), dres.length);
    });
  }

  protected override recordBackwardInOrder(rec: Recorder): void {
    this.recordBackwardDistill(rec);
    this.recordBackwardDecoder(rec);
    this.recordBackwardEncoder(rec);
  }

  /** loss = pix + α·Σ distill; distill per pair, before α. */
  override async readLosses(): Promise<{ loss: number; pix: number; gradNorm: number; distill: number[] }> {
    const all = await readback(this.gpu.device, this.io.all);
    const at = (k: string) => all[this.io.layout.get(k).start];
    const distill = this.distill.pairs.map((_, k) => at(`loss.distill.${k}`));
    const pix = at('loss.pix');
    return { loss: pix + this.distill.alpha * distill.reduce((a, b) => a + b, 0), pix, gradNorm: at('gradNorm'), distill };
  }

  override destroy(): void {
    super.destroy();
    this.teacherParams.destroy();
    this.teacherActs.destroy();
    this.teacherWeightsT.destroy();
  }
}
