/**
 * One evaluation of an encoder (recipe §5), free of any environment: what the Node command
 * (src/cli/evaluate.ts, which reads and writes the files) and the studio's training worker
 * (src/worker/train-session.ts) both run. Given a GPU, the encoder's configuration and
 * parameters and a labelled dataset with its fixed train/validation split, it trains on the
 * training split (k-NN: uses it as the bank) and reports on the validation split: accuracy,
 * per-class accuracy and the confusion matrix (src/engine/classifier.ts does the work).
 *
 *   knn       frozen features of the training split as the bank, k = 20 nearest by cosine
 *             similarity, votes weighted exp(sim/0.07) (the DINO/MAE k-NN monitor)
 *   linprobe  frozen encoder, non-affine BatchNorm, one Linear trained with AdamW (wd 0) on
 *             features computed once
 *   finetune  the whole encoder + fc_norm + head, layer-wise lr decay, label smoothing
 *
 * `maxTrain` / `maxVal` evaluate on a seeded subset of each split (subsetDataset), so that the
 * studio answers in seconds even on a software GPU. KnnMonitor is the cheap live version for
 * pretraining: k-NN accuracy of the current encoder on a fixed small subset, computed from the
 * training model's own parameter arena (copied on the GPU, nothing changes in the run).
 */
import type { ImageDataset } from '../data/dataset';
import { DataLoader, type Batch, type LoaderOptions } from '../data/loader';
import { hashInts, Rng } from '../data/rng';
import { Arena, type ArenaLayout } from '../gpu/buffers';
import type { Gpu } from '../gpu/device';
import { Recorder } from '../gpu/kernels';
import {
  Classifier, classificationMetrics, extractFeatures, initFinetuneParams, initHead, knnPredict, predictAll, predictFeatures, trainClassifier, trainProbeOnFeatures,
  type ClassMetrics, type EvalMethod, type FeaturePool,
} from './classifier';
import type { MaeConfig } from './config';
import { initParams, type ParamMap } from './init';
import { maeParamLayout } from './params';

/**
 * The options of training a classifier on a labelled dataset (AdamW, warmup then cosine), shared by
 * evaluation's linear probe and fine-tuning and the knowledge-distillation baseline (src/cli/kd.ts).
 * Each caller documents its own defaults.
 */
export interface ClassifierTrainingOptions {
  steps?: number;
  /** Images per batch. */
  batch?: number;
  /** Peak learning rate. */
  lr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  /** Layer-wise lr decay (1: none). */
  layerDecay?: number;
  labelSmoothing?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface EvaluateOptions extends ClassifierTrainingOptions {
  method: EvalMethod;
  pool?: FeaturePool;
  k?: number;
  /** k-NN: the votes' temperature (default 0.07). */
  temperature?: number;
  scratch?: boolean;
  /** At most this many training images (the k-NN bank, the probe's or fine-tuning's data): a subset fixed by `seed`. Default: all. */
  maxTrain?: number;
  /** At most this many validation images: a subset fixed by `seed`. Default: all. */
  maxVal?: number;
  /** Called as the work advances (after each batch of features, every few training steps, each prediction batch). */
  onProgress?: (p: EvaluateProgress) => void;
}

/** Where an evaluation is: images through the frozen encoder, training steps, or validation predictions. */
export interface EvaluateProgress {
  phase: 'features' | 'train' | 'predict';
  done: number;
  total: number;
}

export interface EvaluateResult extends ClassMetrics {
  method: EvalMethod;
  classNames: string[];
  /** The options as resolved (defaults filled in). */
  options: Record<string, number | string | boolean>;
  data: { name: string; train: number; val: number; C: number; H: number; W: number };
  model: Pick<MaeConfig, 'imgSize' | 'patchSize' | 'inChans' | 'embedDim' | 'depth' | 'numHeads' | 'mlpRatio'>;
  /** Mean cross-entropy on the validation split (linprobe / finetune). */
  valLoss?: number;
  /** Training curve samples (linprobe / finetune). */
  trainLog?: { step: number; loss: number; accuracy: number; lr: number }[];
  seconds: number;
}

/** The fine-tuned parameters (fine-tuning only; kept out of the JSON): a fine-tuned teacher for distillation baselines. */
export interface EvaluateOutput {
  result: EvaluateResult;
  finetuned?: { layout: ArenaLayout; params: ParamMap };
}

/** EvaluateResult's `model`: the encoder's sizes. */
export const resultModel = (c: MaeConfig): EvaluateResult['model'] =>
  ({ imgSize: c.imgSize, patchSize: c.patchSize, inChans: c.inChans, embedDim: c.embedDim, depth: c.depth, numHeads: c.numHeads, mlpRatio: c.mlpRatio });

/** EvaluateResult's `data`: the dataset's name, split sizes and the images as the model sees them. */
export const resultData = (ds: ImageDataset, c: MaeConfig): EvaluateResult['data'] =>
  ({ name: ds.name, train: ds.nTrain, val: ds.N - ds.nTrain, C: c.inChans, H: c.imgSize, W: c.imgSize });

/** The classes of a labelled dataset (at least 2); an unlabelled one is refused with a message. */
export function evaluationClasses(ds: ImageDataset): { K: number; classNames: string[] } {
  if (!ds.labels) throw new Error(`${ds.name} has no labels: a classifier cannot be trained or evaluated on it.`);
  let max = 0;
  for (const y of ds.labels) max = Math.max(max, y);
  const K = Math.max(ds.classNames.length, max + 1, 2);
  return { K, classNames: Array.from({ length: K }, (_, k) => ds.classNames[k] ?? String(k)) };
}

/** `take` of `count` indices, drawn by a seeded permutation and put back in order. */
function pick(count: number, take: number, seed: number, salt: number): Uint32Array {
  if (take >= count) return Uint32Array.from({ length: count }, (_, i) => i);
  return new Rng(hashInts(seed, salt)).permutation(count).slice(0, take).sort();
}

/**
 * At most `maxTrain` training and `maxVal` validation samples of a dataset, chosen by a seeded
 * permutation of each split (the same seed gives the same subset), in their original order.
 * The split stays a split (training first) and the per-channel statistics stay the whole
 * dataset's, so the images are normalised as in training. (A run that converts RGB to gray has
 * its luma statistics recomputed by the loader, over the subset.) Returns `ds` itself when
 * nothing is cut.
 */
export function subsetDataset(ds: ImageDataset, o: { maxTrain?: number; maxVal?: number; seed?: number }): ImageDataset {
  const nVal = ds.N - ds.nTrain, seed = o.seed ?? 0;
  const maxTrain = o.maxTrain ?? Infinity, maxVal = o.maxVal ?? Infinity;
  for (const [name, v] of [['maxTrain', maxTrain], ['maxVal', maxVal]] as const) {
    if (!(v === Infinity || (Number.isInteger(v) && v >= 1))) throw new Error(`${name} ${v} must be a whole number ≥ 1.`);
  }
  if (maxTrain >= ds.nTrain && maxVal >= nVal) return ds;
  const train = pick(ds.nTrain, maxTrain, seed, 0x7a1), val = pick(nVal, maxVal, seed, 0x7a2);
  const S = ds.C * ds.H * ds.W, N = train.length + val.length;
  const images = new Uint8Array(N * S);
  const labels = ds.labels ? new Int32Array(N) : null;
  let at = 0;
  const put = (i: number) => {
    images.set(ds.images.subarray(i * S, (i + 1) * S), at * S);
    if (labels) labels[at] = ds.labels![i];
    at++;
  };
  for (const i of train) put(i);
  for (const i of val) put(ds.nTrain + i);
  return { ...ds, images, labels, N, nTrain: train.length, mean: [...ds.mean], std: [...ds.std] };
}

/** A loader that reports each batch it hands out (feature extraction's progress). */
class CountingLoader extends DataLoader {
  constructor(ds: ImageDataset, opts: LoaderOptions, private readonly onBatch: (size: number) => void) {
    super(ds, opts);
  }

  override next(into?: Float32Array): Batch {
    const b = super.next(into);
    this.onBatch(b.size);
    return b;
  }
}

/**
 * Runs one evaluation of an encoder on a dataset's validation split (training on its training
 * split), optionally on seeded subsets of both. `pretrained` holds at least the encoder's
 * tensors (timm names; other tensors are ignored).
 */
export async function evaluateEncoder(gpu: Gpu, cfg: MaeConfig, pretrained: ParamMap, dsAll: ImageDataset, o: EvaluateOptions): Promise<EvaluateOutput> {
  const log = o.log ?? (() => {});
  const progress = o.onProgress ?? (() => {});
  const t0 = performance.now();
  const { K, classNames } = evaluationClasses(dsAll);
  const seed = o.seed ?? 0;
  const ds = subsetDataset(dsAll, { maxTrain: o.maxTrain, maxVal: o.maxVal, seed });
  const loaderOpts = { resolution: cfg.imgSize, channels: cfg.inChans as 1 | 3 };
  let batch = o.batch ?? (o.method === 'finetune' ? 32 : 256);
  const nTrain = ds.nTrain, nVal = ds.N - ds.nTrain;
  // Feature extraction's progress: the bank (or the probe's training images), then the validation images.
  let seen = 0;
  const counting = (total: number) => (size: number) => progress({ phase: 'features', done: (seen += size), total });
  const trainAll = (total: number) => new CountingLoader(ds, { split: 'train', batchSize: batch, seed, augment: false, shuffle: false, dropLast: false, ...loaderOpts }, counting(total));
  const valFeatures = (total: number) => new CountingLoader(ds, { split: 'val', batchSize: batch, seed, ...loaderOpts }, counting(total));
  let predicted = 0;
  const val = () => new CountingLoader(ds, { split: 'val', batchSize: batch, seed, ...loaderOpts }, (size) => progress({ phase: 'predict', done: (predicted += size), total: nVal }));
  const trainStream = () => new DataLoader(ds, { split: 'train', batchSize: batch, seed, augment: false, ...loaderOpts });
  const pool = o.pool ?? 'cls';
  const dataInfo = resultData(ds, cfg);
  const model = resultModel(cfg);
  const subset: Record<string, number> = ds === dsAll ? {} : { maxTrain: o.maxTrain ?? nTrain, maxVal: o.maxVal ?? nVal };
  const done = (m: ClassMetrics, options: EvaluateResult['options'], extra: Partial<EvaluateResult> = {}): EvaluateOutput =>
    ({ result: { method: o.method, ...m, classNames, options: { ...options, ...subset }, data: dataInfo, model, ...extra, seconds: (performance.now() - t0) / 1000 } });
  const of = ds === dsAll ? '' : ` (seeded subsets of ${dsAll.nTrain} and ${dsAll.N - dsAll.nTrain})`;

  // --scratch: the recipe's random initialisation instead of the weights (for k-NN and the probe, a random-encoder baseline).
  const frozen = o.scratch ? initParams(maeParamLayout(cfg), cfg.imgSize / cfg.patchSize, seed) : pretrained;
  const scratch = o.scratch === true;

  if (o.method === 'knn') {
    const k = o.k ?? 20, temperature = o.temperature ?? 0.07;
    const clf = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch, pool });
    try {
      clf.uploadEncoder(frozen);
      log(`knn      features of ${nTrain} training images (the bank) and ${nVal} validation images${of}, pool ${pool}`);
      const bank = await extractFeatures(clf, trainAll(nTrain + nVal));
      const q = await extractFeatures(clf, valFeatures(nTrain + nVal));
      progress({ phase: 'predict', done: 0, total: nVal });
      const pred = await knnPredict(gpu, bank.features, bank.labels, q.features, cfg.embedDim, K, { k, temperature });
      progress({ phase: 'predict', done: nVal, total: nVal });
      return done(classificationMetrics(pred, q.labels, K, classNames), { pool, k, temperature, batch, scratch, seed });
    } finally {
      clf.destroy();
    }
  }

  const steps = o.steps ?? (o.method === 'finetune' ? 300 : 1000);
  const warmupSteps = o.warmupSteps ?? Math.round(0.05 * steps);
  if (nTrain < batch) batch = Math.max(2, nTrain);
  const trainLog: NonNullable<EvaluateResult['trainLog']> = [];
  const onStep = (m: { step: number; loss: number; accuracy: number; lr: number }) => {
    trainLog.push(m);
    progress({ phase: 'train', done: m.step, total: steps });
    log(`step ${String(m.step).padStart(String(steps).length)}/${steps}  loss ${m.loss.toFixed(4)}  batch acc ${(100 * m.accuracy).toFixed(1)} %  lr ${m.lr.toExponential(2)}`);
  };

  if (o.method === 'linprobe') {
    // MAE probes with LARS at lr 0.1·batch/256 (a large lr on BatchNorm-ed features). With AdamW
    // on the MNIST teacher (runs/mnist-mae-teacher, cls): lr 1e-3 ×500 steps 42.6 %, 1e-2 ×500
    // 64.0 %, 5e-2 ×1000 73.5 %: the probe needs the large lr too.
    const lr = o.lr ?? 5e-2, weightDecay = o.weightDecay ?? 0;
    const clf = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch, pool });
    try {
      clf.uploadEncoder(frozen);
      const h = initHead(K, cfg.embedDim, 0.01, seed); // MAE's linear probe: trunc_normal_(head.weight, std=0.01)
      clf.uploadParams(new Map([['head.weight', h.weight], ['head.bias', h.bias]]));
      log(`linprobe features of ${nTrain} training and ${nVal} validation images${of} (frozen encoder, once each), pool ${pool}`);
      const trainFeats = await extractFeatures(clf, trainAll(nTrain + nVal));
      const valFeats = await extractFeatures(clf, valFeatures(nTrain + nVal));
      log(`linprobe ${steps} steps of ${batch}, AdamW lr ${lr} (warmup ${warmupSteps}, cosine), wd ${weightDecay}, BatchNorm(affine=False, eps 1e-6)`);
      await trainProbeOnFeatures(clf, trainFeats, { steps, lr, warmupSteps, weightDecay, seed, onStep, logEvery: Math.max(1, Math.round(steps / 10)) });
      progress({ phase: 'predict', done: 0, total: nVal });
      const r = await predictFeatures(clf, valFeats);
      progress({ phase: 'predict', done: nVal, total: nVal });
      return done(classificationMetrics(r.pred, r.labels, K, classNames), { pool, steps, batch, lr, warmupSteps, weightDecay, scratch, seed }, { valLoss: r.loss, trainLog });
    } finally {
      clf.destroy();
    }
  }

  if (o.method !== 'finetune') throw new Error(`Evaluation method ${JSON.stringify(o.method)} is not knn, linprobe or finetune.`);
  const layerDecay = o.layerDecay ?? 0.75, labelSmoothing = o.labelSmoothing ?? 0.1, weightDecay = o.weightDecay ?? 0.05;
  // MAE fine-tunes ViT-B with blr 1e-3 scaled by batch/256 (4e-3 at its batch 1024). A tiny model
  // in a ~1-epoch budget needs as much at a small batch: on the MNIST teacher, batch 32, lr 5e-4
  // ×150 steps gave 27.6 %, lr 4e-3 ×300 steps 59.3 %. Default: 4e-3.
  const lr = o.lr ?? 4e-3;
  const clf = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: K, batch, labelSmoothing }, layerDecay);
  try {
    clf.uploadParams(initFinetuneParams(cfg, K, o.scratch ? null : pretrained, seed));
    log(`finetune ${steps} steps of ${batch}${o.scratch ? ' from scratch' : ''}${of}, AdamW lr ${lr.toExponential(3)} (warmup ${warmupSteps}, cosine), betas (0.9, 0.999), wd ${weightDecay}, layer decay ${layerDecay}, label smoothing ${labelSmoothing}`);
    await trainClassifier(clf, trainStream(), { steps, lr, warmupSteps, weightDecay, onStep, logEvery: Math.max(1, Math.round(steps / 10)) });
    const r = await predictAll(clf, val());
    const out = done(classificationMetrics(r.pred, r.labels, K, classNames), { steps, batch, lr, warmupSteps, weightDecay, layerDecay, labelSmoothing, scratch, seed }, { valLoss: r.loss, trainLog });
    return { ...out, finetuned: { layout: clf.params.layout, params: await clf.readParams() } };
  } finally {
    clf.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// The live k-NN monitor of pretraining
// ---------------------------------------------------------------------------------------------

export interface KnnMonitorOptions {
  /** Training images in the bank (default 1000) and validation images queried (default 250), a subset fixed by `seed`. */
  bank?: number;
  queries?: number;
  /** Chooses the subset (default 0). */
  seed?: number;
  k?: number;
  temperature?: number;
  pool?: FeaturePool;
  /** Images per forward (default 125). */
  batch?: number;
}

export interface KnnMeasure {
  /** Fraction of the queries whose k-NN vote is their label. */
  accuracy: number;
  bank: number;
  queries: number;
  /** Wall time of the measure, ms. */
  ms: number;
}

/**
 * k-NN accuracy of an encoder during pretraining, cheap enough to run every few hundred steps:
 * a fixed subset of the dataset (kept as bytes, normalised at each measure), a frozen-encoder
 * Classifier of its own, and the encoder's tensors copied from the training model's parameter
 * arena on the GPU (or uploaded from a ParamMap). It reads the run's parameters and writes only
 * its own buffers, so the run's results are the same with and without it.
 */
export class KnnMonitor {
  readonly bank: number;
  readonly queries: number;
  private readonly clf: Classifier;
  private readonly subset: ImageDataset;
  private readonly batch: number;
  private readonly bankLabels: Int32Array;
  private readonly queryLabels: Int32Array;
  private readonly K: number;

  constructor(readonly gpu: Gpu, readonly cfg: MaeConfig, ds: ImageDataset, readonly opts: KnnMonitorOptions = {}) {
    const { K } = evaluationClasses(ds); // refuses an unlabelled dataset
    this.K = K;
    const sub = (this.subset = subsetDataset(ds, { maxTrain: opts.bank ?? 1000, maxVal: opts.queries ?? 250, seed: opts.seed ?? 0 }));
    const batch = (this.batch = Math.max(1, Math.min(opts.batch ?? 125, Math.max(sub.nTrain, sub.N - sub.nTrain))));
    this.bankLabels = sub.labels!.slice(0, sub.nTrain);
    this.queryLabels = sub.labels!.slice(sub.nTrain);
    this.bank = this.bankLabels.length;
    this.queries = this.queryLabels.length;
    this.clf = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch, pool: opts.pool ?? 'cls' });
  }

  /** The accuracy of the encoder in `source`: a parameter arena holding its tensors (the training model's), or a ParamMap. */
  async measure(source: Arena | ParamMap): Promise<KnnMeasure> {
    const t0 = performance.now();
    const clf = this.clf, enc = clf.encoder!;
    if (source instanceof Arena) {
      const rec = new Recorder(this.gpu, undefined, 'knn-monitor-encoder');
      for (const e of enc.layout.entries) rec.copy(source.tensor(e.name), enc.tensor(e.name));
      rec.submitNoWait();
    } else clf.uploadEncoder(source);
    const features = async (split: 'train' | 'val'): Promise<Float32Array> => {
      const cfg = this.cfg;
      const loader = new DataLoader(this.subset, { split, batchSize: this.batch, seed: 0, augment: false, shuffle: false, dropLast: false, resolution: cfg.imgSize, channels: cfg.inChans as 1 | 3 });
      return (await extractFeatures(clf, loader)).features;
    };
    const bank = await features('train');
    const q = await features('val');
    const pred = await knnPredict(this.gpu, bank, this.bankLabels, q, clf.D, this.K, { k: this.opts.k ?? 20, temperature: this.opts.temperature ?? 0.07 });
    const accuracy = classificationMetrics(pred, this.queryLabels, this.K).accuracy;
    return { accuracy, bank: this.bank, queries: this.queries, ms: performance.now() - t0 };
  }

  destroy(): void {
    this.clf.destroy();
  }
}
