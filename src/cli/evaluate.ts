/**
 * `npm run dmae -- evaluate <run dir | .safetensors> --method knn|linprobe|finetune`: evaluation
 * of a trained encoder (recipe §5) in Node, written as JSON: accuracy, per-class accuracy and
 * the confusion matrix on the dataset's validation split, with the options, sizes, seed and
 * wall-clock time that produced them (what docs/results/ tables are built from).
 *
 *   knn       frozen features of the training split as the bank, k = 20 nearest by cosine
 *             similarity, votes weighted exp(sim/0.07) (the DINO/MAE k-NN monitor)
 *   linprobe  frozen encoder, non-affine BatchNorm, one Linear trained with AdamW (wd 0)
 *   finetune  the whole encoder + fc_norm + head, layer-wise lr decay, label smoothing
 *
 * evaluateRun is the programmatic entry (the experiment command calls it with options).
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ImageDataset } from '../data/dataset';
import { DataLoader } from '../data/loader';
import { importPaths, loadBuiltinNode } from '../data/node';
import {
  Classifier, classificationMetrics, extractFeatures, initFinetuneParams, initHead, knnPredict, predictAll, predictFeatures, trainClassifier, trainProbeOnFeatures,
  type ClassMetrics, type EvalMethod, type FeaturePool,
} from '../engine/classifier';
import type { MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import type { ArenaLayout } from '../gpu/buffers';
import { shapesOptionsFor } from '../engine/run';
import type { Gpu } from '../gpu/device';
import { acquireNodeGpu } from '../gpu/node-device';
import { writeSafetensors } from '../io/safetensors';
import { CHECKPOINT_FILE, MODEL_FILE } from './checkpoints';
import { readTeacher, type TeacherSource } from './teacher';

export const EVALUATE_HELP = `Usage: npm run dmae -- evaluate <run dir | FILE.safetensors> [options]

  <run dir | FILE.safetensors>
                             a run folder of npm run dmae -- train (its model.safetensors, else
                             its checkpoint.safetensors; an older run's params.json + params.bin),
                             or a .safetensors file: a full export, a checkpoint, or a timm
                             encoder (only the encoder is used)
  --method knn|linprobe|finetune
                             k-NN on frozen features (default), linear probe, or fine-tuning
  --data NAME|PATH           mnist, procedural (shapes), or a dataset folder/archive/IDX/CIFAR
                             file to import (default: the run's dataset, else mnist)
  --pool cls|mean            frozen feature of knn/linprobe: the normed cls token (default) or
                             the mean of the normed patch tokens
  --k K --temperature T      k-NN neighbours (default 20) and vote temperature (default 0.07;
                             0 = plain majority)
  --steps N                  training steps (linprobe default 1000, finetune default 300)
  --batch B                  images per batch (default: linprobe 256, finetune 32, knn 256)
  --lr LR                    peak lr (default: linprobe 5e-2, finetune 4e-3)
  --warmup N                 warmup steps (default 5 % of --steps)
  --weight-decay WD          AdamW decay on matrices (default: linprobe 0, finetune 0.05)
  --layer-decay D            fine-tuning's layer-wise lr decay (default 0.75)
  --smoothing E              fine-tuning's label smoothing (default 0.1)
  --scratch                  fine-tune from the recipe's random init instead of the run's weights
  --seed S                   head init and data order (default 0)
  --out FILE.json            where to write the result (default <run dir>/eval-<method>.json)
  --save DIR                 finetune: write the fine-tuned model (encoder without norm, fc_norm,
                             head; timm names, F32) as DIR/finetuned.safetensors
`;

const OPTIONS = {
  method: { type: 'string' }, data: { type: 'string' }, pool: { type: 'string' }, k: { type: 'string' }, temperature: { type: 'string' },
  steps: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' }, warmup: { type: 'string' },
  'weight-decay': { type: 'string' }, 'layer-decay': { type: 'string' }, smoothing: { type: 'string' }, scratch: { type: 'boolean' },
  seed: { type: 'string' }, out: { type: 'string' }, save: { type: 'string' },
} as const;

export interface EvaluateOptions {
  method: EvalMethod;
  pool?: FeaturePool;
  k?: number;
  temperature?: number;
  steps?: number;
  batch?: number;
  lr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  layerDecay?: number;
  labelSmoothing?: number;
  scratch?: boolean;
  seed?: number;
  log?: (line: string) => void;
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

/** The encoder of a run folder or a .safetensors file (readTeacher), and the folder it lies in. */
export function readEvalModel(path: string): TeacherSource & { dir: string } {
  const p = /\.json$/i.test(path) ? dirname(path) : path; // an older run's params.json: its folder
  if (!existsSync(p)) throw new Error(`${path}: no such file or folder.`);
  const isDir = statSync(p).isDirectory();
  if (isDir && ![MODEL_FILE, CHECKPOINT_FILE, 'params.json'].some((f) => existsSync(join(p, f)))) {
    throw new Error(`${path}: no ${MODEL_FILE} or ${CHECKPOINT_FILE} there (a run folder of npm run dmae -- train, or a .safetensors file).`);
  }
  return { ...readTeacher(p), dir: isDir ? p : dirname(p) };
}

/** A dataset by built-in name or path, in the model's channels (and, for shapes, size). */
export async function loadEvalDataset(data: string, model: MaeConfig): Promise<ImageDataset> {
  if (data === 'mnist') return loadBuiltinNode('mnist');
  if (data === 'procedural' || data === 'shapes') return loadBuiltinNode('shapes', shapesOptionsFor(model));
  if (!existsSync(data)) throw new Error(`--data ${data}: neither mnist, procedural, nor an existing file or folder.`);
  return (await importPaths([data])).dataset;
}

const numClassesOf = (ds: ImageDataset): number => {
  if (!ds.labels) throw new Error(`${ds.name} has no labels: it cannot be used to evaluate a classifier.`);
  let max = 0;
  for (const y of ds.labels) max = Math.max(max, y);
  return Math.max(ds.classNames.length, max + 1, 2);
};

/** Runs one evaluation of an encoder on a dataset's validation split (training on its training split). */
export async function evaluateRun(gpu: Gpu, cfg: MaeConfig, pretrained: ParamMap, ds: ImageDataset, o: EvaluateOptions): Promise<EvaluateOutput> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const K = numClassesOf(ds);
  const classNames = Array.from({ length: K }, (_, k) => ds.classNames[k] ?? String(k));
  const seed = o.seed ?? 0;
  const loaderOpts = { resolution: cfg.imgSize, channels: cfg.inChans as 1 | 3 };
  let batch = o.batch ?? (o.method === 'finetune' ? 32 : 256);
  const trainAll = () => new DataLoader(ds, { split: 'train', batchSize: batch, seed, augment: false, shuffle: false, dropLast: false, ...loaderOpts });
  const val = () => new DataLoader(ds, { split: 'val', batchSize: batch, seed, ...loaderOpts });
  const trainStream = () => new DataLoader(ds, { split: 'train', batchSize: batch, seed, augment: false, ...loaderOpts });
  const pool = o.pool ?? 'cls';
  const dataInfo = { name: ds.name, train: ds.nTrain, val: ds.N - ds.nTrain, C: cfg.inChans, H: cfg.imgSize, W: cfg.imgSize };
  const model = { imgSize: cfg.imgSize, patchSize: cfg.patchSize, inChans: cfg.inChans, embedDim: cfg.embedDim, depth: cfg.depth, numHeads: cfg.numHeads, mlpRatio: cfg.mlpRatio };
  const done = (m: ClassMetrics, options: EvaluateResult['options'], extra: Partial<EvaluateResult> = {}): EvaluateOutput =>
    ({ result: { method: o.method, ...m, classNames, options, data: dataInfo, model, ...extra, seconds: (performance.now() - t0) / 1000 } });

  if (o.method === 'knn') {
    const k = o.k ?? 20, temperature = o.temperature ?? 0.07;
    const clf = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch, pool });
    try {
      clf.uploadEncoder(pretrained);
      log(`knn      features of ${dataInfo.train} training images (the bank) and ${dataInfo.val} validation images, pool ${pool}`);
      const bank = await extractFeatures(clf, trainAll());
      const q = await extractFeatures(clf, val());
      const pred = await knnPredict(gpu, bank.features, bank.labels, q.features, cfg.embedDim, K, { k, temperature });
      return done(classificationMetrics(pred, q.labels, K, classNames), { pool, k, temperature, batch, seed });
    } finally {
      clf.destroy();
    }
  }

  const steps = o.steps ?? (o.method === 'finetune' ? 300 : 1000);
  const warmupSteps = o.warmupSteps ?? Math.round(0.05 * steps);
  if (ds.nTrain < batch) batch = Math.max(2, ds.nTrain);
  const trainLog: NonNullable<EvaluateResult['trainLog']> = [];
  const onStep = (m: { step: number; loss: number; accuracy: number; lr: number }) => {
    trainLog.push(m);
    log(`step ${String(m.step).padStart(String(steps).length)}/${steps}  loss ${m.loss.toFixed(4)}  batch acc ${(100 * m.accuracy).toFixed(1)} %  lr ${m.lr.toExponential(2)}`);
  };

  if (o.method === 'linprobe') {
    // MAE probes with LARS at lr 0.1·batch/256 (a large lr on BatchNorm-ed features). With AdamW
    // on the MNIST teacher (runs/mnist-mae-teacher, cls): lr 1e-3 ×500 steps 42.6 %, 1e-2 ×500
    // 64.0 %, 5e-2 ×1000 73.5 %: the probe needs the large lr too.
    const lr = o.lr ?? 5e-2, weightDecay = o.weightDecay ?? 0;
    const clf = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch, pool });
    try {
      clf.uploadEncoder(pretrained);
      const h = initHead(K, cfg.embedDim, 0.01, seed); // MAE's linear probe: trunc_normal_(head.weight, std=0.01)
      clf.uploadParams(new Map([['head.weight', h.weight], ['head.bias', h.bias]]));
      log(`linprobe features of ${dataInfo.train} training and ${dataInfo.val} validation images (frozen encoder, once each), pool ${pool}`);
      const trainFeats = await extractFeatures(clf, trainAll());
      const valFeats = await extractFeatures(clf, val());
      log(`linprobe ${steps} steps of ${batch}, AdamW lr ${lr} (warmup ${warmupSteps}, cosine), wd ${weightDecay}, BatchNorm(affine=False, eps 1e-6)`);
      await trainProbeOnFeatures(clf, trainFeats, { steps, lr, warmupSteps, weightDecay, seed, onStep, logEvery: Math.max(1, Math.round(steps / 10)) });
      const r = await predictFeatures(clf, valFeats);
      return done(classificationMetrics(r.pred, r.labels, K, classNames), { pool, steps, batch, lr, warmupSteps, weightDecay, seed }, { valLoss: r.loss, trainLog });
    } finally {
      clf.destroy();
    }
  }

  const layerDecay = o.layerDecay ?? 0.75, labelSmoothing = o.labelSmoothing ?? 0.1, weightDecay = o.weightDecay ?? 0.05;
  // MAE fine-tunes ViT-B with blr 1e-3 scaled by batch/256 (4e-3 at its batch 1024). A tiny model
  // in a ~1-epoch budget needs as much at a small batch: on the MNIST teacher, batch 32, lr 5e-4
  // ×150 steps gave 27.6 %, lr 4e-3 ×300 steps 59.3 %. Default: 4e-3.
  const lr = o.lr ?? 4e-3;
  const clf = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: K, batch, labelSmoothing }, layerDecay);
  try {
    clf.uploadParams(initFinetuneParams(cfg, K, o.scratch ? null : pretrained, seed));
    log(`finetune ${steps} steps of ${batch}${o.scratch ? ' from scratch' : ''}, AdamW lr ${lr.toExponential(3)} (warmup ${warmupSteps}, cosine), betas (0.9, 0.999), wd ${weightDecay}, layer decay ${layerDecay}, label smoothing ${labelSmoothing}`);
    await trainClassifier(clf, trainStream(), { steps, lr, warmupSteps, weightDecay, onStep, logEvery: Math.max(1, Math.round(steps / 10)) });
    const r = await predictAll(clf, val());
    const out = done(classificationMetrics(r.pred, r.labels, K, classNames), { steps, batch, lr, warmupSteps, weightDecay, layerDecay, labelSmoothing, scratch: o.scratch === true, seed }, { valLoss: r.loss, trainLog });
    return { ...out, finetuned: { layout: clf.params.layout, params: await clf.readParams() } };
  } finally {
    clf.destroy();
  }
}

/** What --save writes in its folder. */
export const FINETUNED_FILE = 'finetuned.safetensors';

function num(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new Error(`--${flag} ${v} is not a number.`);
  return x;
}

function int(v: string | undefined, flag: string): number | undefined {
  const x = num(v, flag);
  if (x !== undefined && !(Number.isInteger(x) && x >= 0)) throw new Error(`--${flag} ${x} must be a whole number ≥ 0.`);
  return x;
}

export async function evaluateCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new Error(`evaluate needs one run folder or .safetensors file (got ${positionals.length}); see npm run dmae -- evaluate --help.`);
  const method = (v.method ?? 'knn') as EvalMethod;
  if (!['knn', 'linprobe', 'finetune'].includes(method)) throw new Error(`--method ${method} must be knn, linprobe or finetune.`);
  const pool = (v.pool ?? 'cls') as FeaturePool;
  if (pool !== 'cls' && pool !== 'mean') throw new Error(`--pool ${pool} must be cls or mean.`);
  const run = readEvalModel(positionals[0]);
  const cfg = run.config;
  const runDataset = (() => {
    try {
      const c = JSON.parse(readFileSync(join(run.dir, 'config.json'), 'utf8')) as { data?: unknown; dataset?: string };
      if (c.data === 'mnist' || c.data === 'shapes' || c.data === 'procedural') return c.data;
      return c.dataset === 'MNIST' ? 'mnist' : c.dataset === 'Shapes' ? 'procedural' : undefined;
    } catch {
      return undefined;
    }
  })();
  const data = v.data ?? runDataset ?? 'mnist';
  const out = v.out ?? join(run.dir, `eval-${method}.json`);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const opts: EvaluateOptions = {
    method, pool, k: int(v.k, 'k'), temperature: num(v.temperature, 'temperature'), steps: int(v.steps, 'steps'), batch: int(v.batch, 'batch'),
    lr: num(v.lr, 'lr'), warmupSteps: int(v.warmup, 'warmup'), weightDecay: num(v['weight-decay'], 'weight-decay'),
    layerDecay: num(v['layer-decay'], 'layer-decay'), labelSmoothing: num(v.smoothing, 'smoothing'), scratch: v.scratch === true, seed: int(v.seed, 'seed'), log,
  };
  if (opts.batch !== undefined && opts.batch < 2) throw new Error('--batch must be at least 2 (BatchNorm statistics).');

  log(`model    ${run.file}: encoder ${cfg.embedDim}×${cfg.depth} (${cfg.numHeads} heads), ${cfg.imgSize}×${cfg.imgSize}×${cfg.inChans}, patch ${cfg.patchSize}, step ${run.step}`);
  const gpu = await acquireNodeGpu();
  try {
    log(`adapter  ${gpu.adapter.description}`);
    const ds = await loadEvalDataset(data, cfg);
    log(`data     ${ds.name}: ${ds.nTrain} training, ${ds.N - ds.nTrain} validation images`);
    const { result: r, finetuned } = await evaluateRun(gpu, cfg, run.params, ds, opts);
    const result = { command: `dmae evaluate ${args.join(' ')}`, run: positionals[0], runStep: run.step, adapter: gpu.adapter.description, ...r };
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 1)}\n`);
    if (v.save !== undefined) {
      if (!finetuned) throw new Error('--save needs --method finetune (only fine-tuning changes the model).');
      const tensors = finetuned.layout.entries.map((e) => ({ name: e.name, shape: e.shape, data: finetuned.params.get(e.name)! }));
      const meta = { config: cfg, step: run.step, from: run.file, classes: r.classNames, pool: 'mean patch tokens → fc_norm → head', ...r.options };
      mkdirSync(v.save, { recursive: true });
      writeFileSync(join(v.save, FINETUNED_FILE), writeSafetensors(tensors, { format: 'pt', dmae_studio_finetuned: JSON.stringify(meta) }));
      log(`saved    the fine-tuned model to ${join(v.save, FINETUNED_FILE)}`);
    }
    const worst = r.perClass.filter((c) => c.accuracy !== null).sort((a, b) => a.accuracy! - b.accuracy!)[0];
    log(`result   ${method}: accuracy ${(100 * r.accuracy).toFixed(2)} % on ${r.count} validation images` +
      `${worst ? ` (weakest class ${worst.name}: ${(100 * worst.accuracy!).toFixed(1)} %)` : ''}, ${r.seconds.toFixed(1)} s → ${out}`);
    return 0;
  } finally {
    gpu.destroy();
  }
}
