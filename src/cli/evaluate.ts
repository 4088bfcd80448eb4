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
import { importPaths, loadBuiltinNode } from '../data/node';
import type { EvalMethod, FeaturePool } from '../engine/classifier';
import type { MaeConfig } from '../engine/config';
import { evaluateEncoder, type EvaluateOptions, type EvaluateOutput } from '../engine/evaluate';
import type { ParamMap } from '../engine/init';
import { shapesOptionsFor } from '../engine/run';
import type { Gpu } from '../gpu/device';
import { acquireNodeGpu } from '../gpu/node-device';
import { writeSafetensors } from '../io/safetensors';
import { FINETUNED_METADATA_KEY } from '../io/finetuned';
import { CHECKPOINT_FILE, MODEL_FILE } from './checkpoints';
import { FINETUNED_FILE, readTeacher, type TeacherSource } from './teacher';

export const EVALUATE_HELP = `Usage: npm run dmae -- evaluate <run dir | FILE.safetensors> [options]

  <run dir | FILE.safetensors>
                             a run folder of npm run dmae -- train (its model.safetensors, else
                             its checkpoint.safetensors; an older run's params.json + params.bin),
                             or a .safetensors file: a full export, a checkpoint, or a timm
                             encoder (only the encoder is used)
  --method knn|linprobe|finetune|head
                             k-NN on frozen features (default), linear probe, or fine-tuning;
                             head: a fine-tuned classifier file (finetuned.safetensors, a kd
                             student) evaluated as it is, its own head, no training (--data,
                             --batch, --max-val, --seed, --out; default out <its folder>/eval-head.json)
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
  --scratch                  the recipe's random init (seeded by --seed) instead of the run's
                             weights: fine-tuning from scratch, or k-NN / probe of a random encoder
  --max-train N --max-val N  evaluate on a seeded subset of each split (--seed picks it): N training
                             images for the k-NN bank / probe / fine-tuning, N validation images
                             (default: all)
  --seed S                   head init, data order and the subsets (default 0)
  --out FILE.json            where to write the result (default <run dir>/eval-<method>.json)
  --save DIR                 finetune: write the fine-tuned model (encoder without norm, fc_norm,
                             head; timm names, F32) as DIR/finetuned.safetensors
`;

const OPTIONS = {
  method: { type: 'string' }, data: { type: 'string' }, pool: { type: 'string' }, k: { type: 'string' }, temperature: { type: 'string' },
  steps: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' }, warmup: { type: 'string' },
  'weight-decay': { type: 'string' }, 'layer-decay': { type: 'string' }, smoothing: { type: 'string' }, scratch: { type: 'boolean' },
  seed: { type: 'string' }, out: { type: 'string' }, save: { type: 'string' }, 'max-train': { type: 'string' }, 'max-val': { type: 'string' },
} as const;

// The options and the result live with the environment-free implementation (src/engine/evaluate.ts, shared with the studio's worker).
export type { EvaluateOptions, EvaluateOutput, EvaluateProgress, EvaluateResult } from '../engine/evaluate';

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

/**
 * Runs one evaluation of an encoder on a dataset's validation split (training on its training
 * split): src/engine/evaluate.ts's evaluateEncoder, which the studio's worker runs too.
 */
export async function evaluateRun(gpu: Gpu, cfg: MaeConfig, pretrained: ParamMap, ds: ImageDataset, o: EvaluateOptions): Promise<EvaluateOutput> {
  return evaluateEncoder(gpu, cfg, pretrained, ds, o);
}

/** What --save writes in its folder (re-exported: where the writer is). */
export { FINETUNED_FILE };

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
  if (v.method === 'head') return (await import('./kd')).evaluateHeadCommand(args); // a fine-tuned classifier as it is (src/cli/kd.ts)
  const method = (v.method ?? 'knn') as EvalMethod;
  if (!['knn', 'linprobe', 'finetune'].includes(method)) throw new Error(`--method ${method} must be knn, linprobe or finetune (or head, for a fine-tuned classifier file).`);
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
    maxTrain: int(v['max-train'], 'max-train'), maxVal: int(v['max-val'], 'max-val'),
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
      writeFileSync(join(v.save, FINETUNED_FILE), writeSafetensors(tensors, { format: 'pt', [FINETUNED_METADATA_KEY]: JSON.stringify(meta) }));
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
