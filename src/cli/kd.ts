/**
 * `npm run dmae -- kd --teacher DIR/finetuned.safetensors`: the paper's baseline for DMAE —
 * knowledge distillation from a fine-tuned teacher (Hinton; DeiT's soft variant). A student ViT
 * classifier trained from the recipe's random init on the teacher's soft labels softmax(t/τ)
 * mixed with the hard labels: per image (1−λ)·CE_ε(student, label) + λ·τ²·KL(teacher ‖ student),
 * with the fine-tuning recipe's optimiser (AdamW, warmup then cosine, no decay on 1-D tensors).
 * The teacher runs forward only, in the same step (a frozen Classifier: no gradients, AdamW
 * moments or per-block saved activations). Written to --out DIR:
 *
 *   model.safetensors  the student, in the form of evaluate --save's finetuned.safetensors
 *                      (encoder without norm, fc_norm, head; timm names, F32; readFinetuned
 *                      and evaluate --method head read both)
 *   eval-kd.json       the student's own head on the validation split: accuracy, per-class
 *                      accuracy, confusion matrix (evaluate's result), plus the teacher's own
 *                      validation accuracy and the KD options
 *   config.json        the resolved options and the command line
 *
 * Also `evaluate FILE --method head` (evaluateHeadCommand): a fine-tuned classifier file
 * evaluated as it is, its own head, no training.
 *
 * kdRun is the programmatic entry (the experiment command calls it); it never exits the process.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ImageDataset } from '../data/dataset';
import { DataLoader } from '../data/loader';
import { Classifier, classificationMetrics, initFinetuneParams, predictAll, trainKdStudent, type ClassMetrics, type KdStepMetrics } from '../engine/classifier';
import { ENCODER_PRESETS, maeConfig, type EncoderPreset, type MaeConfig } from '../engine/config';
import { evaluationClasses, resultData, resultModel, subsetDataset, type ClassifierTrainingOptions } from '../engine/evaluate';
import type { Gpu } from '../gpu/device';
import { acquireNodeGpu } from '../gpu/node-device';
import { FINETUNED_METADATA_KEY, type FinetunedModel } from '../io/finetuned';
import { writeSafetensors } from '../io/safetensors';
import { MODEL_FILE } from './checkpoints';
import { loadEvalDataset, type EvaluateResult } from './evaluate';
import { readFinetuned } from './teacher';

export { readFinetuned };

export const KD_HELP = `Usage: npm run dmae -- kd --teacher PATH [options]

Knowledge distillation from a fine-tuned teacher (the baseline DMAE is compared with): a student
ViT classifier trained from scratch on the teacher's soft labels softmax(t/τ) mixed with the hard
labels, per image (1−λ)·CE(student, label) + λ·τ²·KL(teacher ‖ student).

  --teacher PATH             the fine-tuned teacher: DIR/finetuned.safetensors written by
                             npm run dmae -- evaluate RUN --method finetune --save DIR, or that
                             DIR (a kd student's model.safetensors works too)
  --data NAME|PATH           mnist (default), procedural (shapes), or a dataset folder/archive/
                             IDX/CIFAR file; it must have the teacher's classes
  --preset NAME              student size: ${Object.keys(ENCODER_PRESETS).join(', ')} (default test)
  --embed-dim D --depth N --heads H --patch P --mlp-ratio R
                             override the preset's sizes (patch: default the teacher's; MLP
                             ratio 4); image size and channels are the teacher's
  --steps N                  training steps (default 300)
  --batch B                  images per batch (default 32)
  --lr LR                    peak lr (default 4e-3)
  --warmup N                 warmup steps (default 5 % of --steps)
  --weight-decay WD          AdamW decay on matrices (default 0.05)
  --layer-decay D            layer-wise lr decay (default 1: none, for a student from scratch)
  --smoothing E              label smoothing of the hard term (default 0.1)
  --temperature T            softmax temperature τ of both sides (default 4)
  --soft-weight W            λ, the weight of the soft term (default 0.5, DeiT's soft mix;
                             1 = soft labels only, 0 = plain supervised training)
  --seed S                   student init and data order (default 0)
  --out DIR                  where to write model.safetensors, eval-kd.json and config.json
                             (default runs/kd)
`;

const OPTIONS = {
  teacher: { type: 'string' }, data: { type: 'string' }, preset: { type: 'string' },
  'embed-dim': { type: 'string' }, depth: { type: 'string' }, heads: { type: 'string' }, patch: { type: 'string' }, 'mlp-ratio': { type: 'string' },
  steps: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' }, warmup: { type: 'string' },
  'weight-decay': { type: 'string' }, 'layer-decay': { type: 'string' }, smoothing: { type: 'string' },
  temperature: { type: 'string' }, 'soft-weight': { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' },
} as const;

// ---------------------------------------------------------------------------------------------
// Reading a fine-tuned classifier
// ---------------------------------------------------------------------------------------------

/** The teacher's classes against the dataset's: the count must agree; differing names are reported. */
function checkClasses(ft: FinetunedModel & { file: string }, ds: ImageDataset, log: (s: string) => void): { K: number; classNames: string[] } {
  const c = evaluationClasses(ds);
  if (c.K !== ft.numClasses) {
    throw new Error(`${ft.file} classifies ${ft.numClasses} classes; ${ds.name} has ${c.K}. Use the dataset the classifier was fine-tuned on.`);
  }
  if (ft.classNames && ft.classNames.some((n, k) => n !== c.classNames[k])) {
    log(`note     the classifier's classes (${ft.classNames.join(', ')}) are named differently from ${ds.name}'s (${c.classNames.join(', ')}); matched by index`);
  }
  return c;
}

const valLoader = (ds: ImageDataset, c: MaeConfig, batch: number, seed: number) =>
  new DataLoader(ds, { split: 'val', batchSize: batch, seed, resolution: c.imgSize, channels: c.inChans as 1 | 3 });

// ---------------------------------------------------------------------------------------------
// evaluate --method head: a fine-tuned classifier as it is
// ---------------------------------------------------------------------------------------------

/** evaluate --method head's result: evaluate's JSON, method 'head'. */
export type HeadResult = Omit<EvaluateResult, 'method'> & { method: 'head'; file: string };

/** A fine-tuned classifier's own head on a dataset's validation split (no training). */
export async function headRun(gpu: Gpu, ft: FinetunedModel & { file: string }, ds: ImageDataset, o: { batch?: number; seed?: number; log?: (s: string) => void } = {}): Promise<HeadResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const { K, classNames } = checkClasses(ft, ds, log);
  const batch = o.batch ?? 64, seed = o.seed ?? 0;
  if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`batch ${batch} must be a whole number ≥ 1.`);
  const smoothing = typeof ft.meta?.labelSmoothing === 'number' ? ft.meta.labelSmoothing : 0;
  // Evaluated as it is: forward only (no gradients, moments, or per-block saved activations).
  const clf = new Classifier(gpu, ft.config, { mode: 'finetune', numClasses: K, batch, labelSmoothing: smoothing, frozen: true });
  try {
    clf.uploadParams(ft.params);
    const r = await predictAll(clf, valLoader(ds, ft.config, batch, seed));
    const m: ClassMetrics = classificationMetrics(r.pred, r.labels, K, classNames);
    return {
      method: 'head', file: ft.file, ...m, classNames, options: { batch, seed, labelSmoothing: smoothing }, data: resultData(ds, ft.config), model: resultModel(ft.config),
      valLoss: r.loss, seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    clf.destroy();
  }
}

/** `evaluate FILE|DIR --method head [--data D] [--batch B] [--out FILE.json]`, dispatched here by evaluate.ts. */
export async function evaluateHeadCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { method: { type: 'string' }, data: { type: 'string' }, batch: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, 'max-val': { type: 'string' } },
  });
  if (positionals.length !== 1) throw new Error(`evaluate --method head needs one fine-tuned classifier file or folder (got ${positionals.length}).`);
  const ft = readFinetuned(positionals[0]);
  const data = v.data ?? (typeof ft.meta?.data === 'string' ? ft.meta.data : 'mnist');
  const out = v.out ?? join(dirname(ft.file), 'eval-head.json');
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const c = ft.config;
  log(`model    ${ft.file}: fine-tuned classifier ${c.embedDim}×${c.depth} (${c.numHeads} heads), ${ft.numClasses} classes, ${c.imgSize}×${c.imgSize}×${c.inChans}, patch ${c.patchSize}`);
  const gpu = await acquireNodeGpu();
  try {
    log(`adapter  ${gpu.adapter.description}`);
    const seed = int(v.seed, 'seed', 0);
    // The same validation subset as evaluate --max-val N --seed S picks.
    const ds = subsetDataset(await loadEvalDataset(data, c), { maxVal: int(v['max-val'], 'max-val', 1), seed });
    log(`data     ${ds.name}: ${ds.N - ds.nTrain} validation images`);
    const r = await headRun(gpu, ft, ds, { batch: int(v.batch, 'batch', 1), seed, log });
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ command: `dmae evaluate ${args.join(' ')}`, run: positionals[0], adapter: gpu.adapter.description, ...r }, null, 1)}\n`);
    log(`result   head: accuracy ${(100 * r.accuracy).toFixed(2)} % on ${r.count} validation images, ${r.seconds.toFixed(1)} s → ${out}`);
    return 0;
  } finally {
    gpu.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// kd
// ---------------------------------------------------------------------------------------------

/** The training options (ClassifierTrainingOptions) default to steps 300, batch 32, lr 4e-3, warmup 5 % of steps, wd 0.05, layer decay 1 (none), label smoothing 0.1, seed 0. */
export interface KdRunOptions extends ClassifierTrainingOptions {
  /** The fine-tuned teacher: a file or folder (readFinetuned), or one already read. */
  teacher: string | (FinetunedModel & { file: string });
  /** Dataset name or path (default mnist); ignored when `dataset` is given. */
  data?: string;
  dataset?: ImageDataset;
  /** Student size preset (default 'test'), and overrides. */
  preset?: EncoderPreset;
  embedDim?: number;
  depth?: number;
  numHeads?: number;
  /** Default: the teacher's patch size. */
  patchSize?: number;
  mlpRatio?: number;
  /** Distillation's softmax temperature τ of both sides (default 4). */
  temperature?: number;
  /** λ, the weight of the soft term (default 0.5). */
  softWeight?: number;
  /** Write model.safetensors, eval-kd.json and config.json here (nothing is written without it). */
  out?: string;
  /** Recorded in config.json and eval-kd.json. */
  command?: string;
  /** A device to use (left open); default: one acquired and destroyed here. */
  gpu?: Gpu;
}

/** eval-kd.json: evaluate's result for the student (method 'kd'), the teacher's own accuracy, the KD options. */
export type KdResult = Omit<EvaluateResult, 'method' | 'trainLog'> & {
  method: 'kd';
  trainLog: KdStepMetrics[];
  teacher: { file: string; accuracy: number; valLoss: number; count: number; numClasses: number; model: EvaluateResult['model']; notes: string[] };
  kd: { temperature: number; softWeight: number; labelSmoothing: number };
  /** The files written (with `out`). */
  files?: { model: string; eval: string; config: string };
};

export const KD_EVAL_FILE = 'eval-kd.json';

function check(ok: boolean, msg: string): void {
  if (!ok) throw new Error(msg);
}

/** Trains a student by knowledge distillation from a fine-tuned teacher and evaluates it (and the teacher). */
export async function kdRun(opts: KdRunOptions): Promise<KdResult> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const ft = typeof opts.teacher === 'string' ? readFinetuned(opts.teacher) : opts.teacher;
  const tc = ft.config;
  const preset = opts.preset ?? 'test';
  check(preset in ENCODER_PRESETS, `preset ${preset} must be one of ${Object.keys(ENCODER_PRESETS).join(', ')}.`);
  const steps = opts.steps ?? 300, seed = opts.seed ?? 0;
  const lr = opts.lr ?? 4e-3, weightDecay = opts.weightDecay ?? 0.05, layerDecay = opts.layerDecay ?? 1;
  const labelSmoothing = opts.labelSmoothing ?? 0.1, temperature = opts.temperature ?? 4, softWeight = opts.softWeight ?? 0.5;
  const warmupSteps = opts.warmupSteps ?? Math.round(0.05 * steps);
  check(Number.isInteger(steps) && steps >= 1, `steps ${steps} must be a whole number ≥ 1.`);
  check(lr > 0 && Number.isFinite(lr), `lr ${lr} must be a positive number.`);
  check(Number.isInteger(warmupSteps) && warmupSteps >= 0, `warmup ${warmupSteps} must be a whole number ≥ 0.`);
  check(weightDecay >= 0, `weight decay ${weightDecay} must be ≥ 0.`);
  check(layerDecay > 0 && layerDecay <= 1, `layer decay ${layerDecay} must lie in (0, 1] (1 = none).`);
  check(labelSmoothing >= 0 && labelSmoothing < 1, `label smoothing ${labelSmoothing} must lie in [0, 1).`);
  check(temperature > 0 && Number.isFinite(temperature), `temperature ${temperature} must be a positive number.`);
  check(softWeight >= 0 && softWeight <= 1, `soft weight ${softWeight} must lie in [0, 1].`);

  const overrides: Partial<MaeConfig> = {};
  if (opts.embedDim !== undefined) overrides.embedDim = opts.embedDim;
  if (opts.depth !== undefined) overrides.depth = opts.depth;
  if (opts.numHeads !== undefined) overrides.numHeads = opts.numHeads;
  overrides.mlpRatio = opts.mlpRatio ?? 4;
  let student: MaeConfig;
  try {
    student = maeConfig(preset, { imgSize: tc.imgSize, patchSize: opts.patchSize ?? tc.patchSize, inChans: tc.inChans }, overrides);
  } catch (e) {
    throw new Error(`The student cannot be built: ${(e as Error).message}`);
  }
  check(Number.isInteger(student.mlpRatio) && student.mlpRatio >= 1, `MLP ratio ${student.mlpRatio} must be a whole number ≥ 1.`);

  log(`teacher  ${ft.file}: ${tc.embedDim}×${tc.depth} (${tc.numHeads} heads), ${ft.numClasses} classes, ${tc.imgSize}×${tc.imgSize}×${tc.inChans}, patch ${tc.patchSize}`);
  const data = opts.data ?? 'mnist';
  const ds = opts.dataset ?? (await loadEvalDataset(data, tc));
  const { K, classNames } = checkClasses(ft, ds, log);
  let batch = opts.batch ?? 32;
  check(Number.isInteger(batch) && batch >= 1, `batch ${batch} must be a whole number ≥ 1.`);
  if (ds.nTrain < batch) batch = Math.max(1, ds.nTrain);
  log(`data     ${ds.name}: ${ds.nTrain} training, ${ds.N - ds.nTrain} validation images`);
  log(`student  ${student.embedDim}×${student.depth} (${student.numHeads} heads, MLP ${student.mlpRatio}), patch ${student.patchSize}, from the recipe's random init`);

  const gpu = opts.gpu ?? (await acquireNodeGpu());
  let teacherClf: Classifier | null = null, studentClf: Classifier | null = null;
  try {
    const teacherSmoothing = typeof ft.meta?.labelSmoothing === 'number' ? ft.meta.labelSmoothing : labelSmoothing;
    // The teacher only runs forward (its validation accuracy, then its logits in each KD step).
    teacherClf = new Classifier(gpu, tc, { mode: 'finetune', numClasses: K, batch, labelSmoothing: teacherSmoothing, frozen: true });
    teacherClf.uploadParams(ft.params);
    const tv = await predictAll(teacherClf, valLoader(ds, tc, batch, seed));
    const teacherMetrics = classificationMetrics(tv.pred, tv.labels, K, classNames);
    log(`teacher  validation accuracy ${(100 * teacherMetrics.accuracy).toFixed(2)} % on ${teacherMetrics.count} images`);

    studentClf = new Classifier(gpu, student, { mode: 'finetune', numClasses: K, batch, labelSmoothing, distill: { temperature, softWeight } }, layerDecay);
    studentClf.uploadParams(initFinetuneParams(student, K, null, seed));
    log(`kd       ${steps} steps of ${batch}, τ ${temperature}, λ ${softWeight}, AdamW lr ${lr.toExponential(3)} (warmup ${warmupSteps}, cosine), wd ${weightDecay}, layer decay ${layerDecay}, label smoothing ${labelSmoothing}`);
    const trainLog: KdStepMetrics[] = [];
    const train = new DataLoader(ds, { split: 'train', batchSize: batch, seed, augment: false, resolution: tc.imgSize, channels: tc.inChans as 1 | 3 });
    await trainKdStudent(studentClf, teacherClf, train, {
      steps, lr, warmupSteps, weightDecay, logEvery: Math.max(1, Math.round(steps / 10)),
      onStep: (m) => {
        trainLog.push(m);
        log(`step ${String(m.step).padStart(String(steps).length)}/${steps}  loss ${m.loss.toFixed(4)}  batch acc ${(100 * m.accuracy).toFixed(1)} % (teacher ${(100 * m.teacherAccuracy).toFixed(1)} %)  lr ${m.lr.toExponential(2)}`);
      },
    });
    const sv = await predictAll(studentClf, valLoader(ds, student, batch, seed));
    const m = classificationMetrics(sv.pred, sv.labels, K, classNames);
    const options = {
      teacher: ft.file, data: opts.dataset ? ds.name : data, preset, steps, batch, lr, warmupSteps, weightDecay, layerDecay, labelSmoothing, temperature, softWeight, seed,
    };
    const result: KdResult = {
      method: 'kd', ...m, classNames, options, data: resultData(ds, student), model: resultModel(student), valLoss: sv.loss, trainLog,
      teacher: { file: ft.file, accuracy: teacherMetrics.accuracy, valLoss: tv.loss, count: teacherMetrics.count, numClasses: K, model: resultModel(tc), notes: ft.notes },
      kd: { temperature, softWeight, labelSmoothing },
      seconds: (performance.now() - t0) / 1000,
    };
    log(`result   kd student: accuracy ${(100 * m.accuracy).toFixed(2)} % (teacher ${(100 * teacherMetrics.accuracy).toFixed(2)} %) on ${m.count} validation images`);

    if (opts.out !== undefined) {
      mkdirSync(opts.out, { recursive: true });
      const files = { model: join(opts.out, MODEL_FILE), eval: join(opts.out, KD_EVAL_FILE), config: join(opts.out, 'config.json') };
      const params = await studentClf.readParams();
      const tensors = studentClf.params.layout.entries.map((e) => ({ name: e.name, shape: e.shape, data: params.get(e.name)! }));
      // The same metadata as evaluate --save's finetuned.safetensors (config, classes, options), plus where it came from.
      const meta = { config: student, step: 0, from: ft.file, method: 'kd', classes: classNames, pool: 'mean patch tokens → fc_norm → head', ...options };
      writeFileSync(files.model, writeSafetensors(tensors, { format: 'pt', [FINETUNED_METADATA_KEY]: JSON.stringify(meta) }));
      result.files = files;
      const command = opts.command ?? null;
      writeFileSync(files.eval, `${JSON.stringify({ command, adapter: gpu.adapter.description, ...result }, null, 1)}\n`);
      writeFileSync(files.config, `${JSON.stringify({ command, mode: 'kd', ...options, student, teacherConfig: tc, dataset: ds.name }, null, 2)}\n`);
      log(`saved    ${files.model}, ${files.eval}, ${files.config}`);
    }
    return result;
  } finally {
    studentClf?.destroy();
    teacherClf?.destroy();
    if (!opts.gpu) gpu.destroy();
  }
}

function num(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new Error(`--${flag} ${v} is not a number.`);
  return x;
}

function int(v: string | undefined, flag: string, min = 0): number | undefined {
  const x = num(v, flag);
  if (x !== undefined && !(Number.isInteger(x) && x >= min)) throw new Error(`--${flag} ${x} must be a whole number ≥ ${min}.`);
  return x;
}

export async function kdCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length > 0) throw new Error(`kd takes no positional argument (got ${positionals.join(' ')}); the teacher is --teacher PATH.`);
  if (!v.teacher) throw new Error('kd needs --teacher PATH: a fine-tuned classifier (npm run dmae -- evaluate RUN --method finetune --save DIR writes DIR/finetuned.safetensors).');
  const preset = (v.preset ?? 'test') as EncoderPreset;
  if (!(preset in ENCODER_PRESETS)) throw new Error(`--preset ${preset} must be one of ${Object.keys(ENCODER_PRESETS).join(', ')}.`);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  await kdRun({
    teacher: v.teacher, data: v.data, preset,
    embedDim: int(v['embed-dim'], 'embed-dim', 1), depth: int(v.depth, 'depth', 1), numHeads: int(v.heads, 'heads', 1), patchSize: int(v.patch, 'patch', 1), mlpRatio: int(v['mlp-ratio'], 'mlp-ratio', 1),
    steps: int(v.steps, 'steps', 1), batch: int(v.batch, 'batch', 1), lr: num(v.lr, 'lr'), warmupSteps: int(v.warmup, 'warmup'),
    weightDecay: num(v['weight-decay'], 'weight-decay'), layerDecay: num(v['layer-decay'], 'layer-decay'), labelSmoothing: num(v.smoothing, 'smoothing'),
    temperature: num(v.temperature, 'temperature'), softWeight: num(v['soft-weight'], 'soft-weight'), seed: int(v.seed, 'seed'),
    out: v.out ?? join('runs', 'kd'), command: `dmae kd ${args.join(' ')}`, log,
  });
  return 0;
}
