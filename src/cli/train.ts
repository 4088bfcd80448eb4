/**
 * `npm run dmae -- train`: MAE pretraining or DMAE distillation in Node.
 * Writes, under --out: config.json (the run as resolved, and how it was started and resumed),
 * metrics.jsonl (one JSON line per step; with --knn-every, a `knn` line at those steps), recon-<step>.png (original / masked / reconstruction /
 * reconstruction + visible, for fixed validation images and a fixed mask), and at every
 * checkpoint (every --checkpoint-every steps, at each picture by default, at the end and on
 * Ctrl-C): model.safetensors (the full export, reference names; a DMAE run's --teacher reads it),
 * checkpoint.safetensors (the complete training state; --resume reads it) and
 * continue-training.txt (the torchrun command that carries the run on in PyTorch).
 */
import { existsSync, mkdirSync, readFileSync, appendFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ENCODER_PRESETS, maeConfig, type EncoderPreset, type MaeConfig, type DistillConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { DEFAULT_BASE_LR } from '../engine/schedule';
import { KnnMonitor } from '../engine/evaluate';
import { precisionProblem } from '../engine/mae';
import { describeMasking, limitsNeededFor, makeRunData, microBatchesThatFit, planExceedsLimits, reconstructValidation } from '../engine/run';
import { Trainer, formatBytes, resolveTrainConfig, trainMemoryPlan, type ResolvedTrainConfig, type StepMetrics, type TrainConfig } from '../engine/trainer';
import { describeAdapter } from '../gpu/device';
import { acquireNodeGpu, findNodeAdapter } from '../gpu/node-device';
import type { Checkpoint } from '../io/checkpoint';
import { CHECKPOINT_FILE, CONTINUE_FILE, MODEL_FILE, RunCheckpointer, applyResume, metricsUpTo, nextStop, readResume, resumeFolder } from './checkpoints';
import { dataOption, resolveTrainingData } from './dataset';
import { writeFileAtomic } from './export';
import { readTeacher, type TeacherSource } from './teacher';

export const TRAIN_HELP = `Usage: npm run dmae -- train [options]

  --mode mae|dmae            MAE pretraining, or DMAE distillation from --teacher (default mae)
  --data NAME|PATH           built-in mnist (28×28 gray) or shapes/procedural (generated), or a file,
                             folder or archive of IDX, CIFAR or PNG/JPEG/WebP images (see
                             \`npm run dmae -- dataset --help\`), resized and converted to the
                             model's size and channels (default mnist; --dataset is an alias)
  --preset NAME              encoder size: ${Object.keys(ENCODER_PRESETS).join(', ')} (default test)
  --img-size S --patch P --channels 1|3
                             geometry (default: the dataset's size and channels, patch 4)
  --embed-dim D --depth N --heads H --decoder-dim D --decoder-depth N --decoder-heads H
                             override the preset's sizes
  --no-norm-pix              plain pixel targets (default: norm_pix_loss on)
  --steps N                  optimiser steps (default 300)
  --batch B                  images per forward (default 32)
  --accum K                  micro-batches per optimiser step (default 1)
  --mask-ratio R | --visible K
                             masking (default ratio 0.75; visible = int(L·(1 − R)))
  --lr LR | --blr BLR        absolute peak lr, or base lr ·batch·accum/256 (default blr ${DEFAULT_BASE_LR})
  --min-lr LR --warmup N     cosine floor (default 0), warmup steps (default 5 % of --steps)
  --weight-decay WD --clip NORM
                             AdamW decay on matrices (default 0.05), gradient-norm clip (default off)
  --seed S                   init, masking and data order (default 0)
  --precision f32|mixed      f32 (default), or mixed: f16 matmul operands (f32 accumulation and
                             master weights) with dynamic loss scaling; needs an adapter with
                             shader-f16. The progress shows the loss scale and the skipped steps
  --teacher PATH             DMAE: the teacher — a run folder, its model.safetensors or
                             checkpoint.safetensors, or any MAE/ViT .safetensors with reference or
                             timm names (a config.json beside it may give the head count)
  --student-block K --teacher-block K --alpha A --distill-loss l1|l2
                             DMAE alignment (default ¾ of each depth), weight (1), loss (l1)
  --augment mae|none         MAE's random resized crop + flip (no flip for digits) (default mae)
  --out DIR                  output folder (default runs/<mode>-<date>)
  --recon-every N            reconstruction PNG every N steps (default steps/6), and at 0 and the end
  --checkpoint-every N       save model.safetensors + checkpoint.safetensors every N steps (default:
                             at each reconstruction); always at the end and on Ctrl-C (exit 130)
  --resume PATH              continue a run exactly where its checkpoint.safetensors (or its run
                             folder) left it: same configuration, data order, masks and optimiser
                             state; appends to its metrics.jsonl. Only --out, --data, --recon-every,
                             --checkpoint-every, --max-memory and --teacher may be given with it
  --knn-every N              every N steps (and at 0 and the end) the k-NN accuracy of the encoder
                             on a fixed subset (1000 training, 250 validation images, chosen by
                             --seed) as a {"step", "knn"} line in metrics.jsonl; needs labels;
                             changes nothing of the run (default 0: off)
  --max-memory MIB           refuse a run whose GPU buffers exceed this budget
  --config FILE.json         options as JSON ({"steps": 300, "mask-ratio": 0.9, …}); flags override
`;

const OPTIONS = {
  mode: { type: 'string' }, data: { type: 'string' }, dataset: { type: 'string' }, preset: { type: 'string' },
  'img-size': { type: 'string' }, patch: { type: 'string' }, channels: { type: 'string' },
  'embed-dim': { type: 'string' }, depth: { type: 'string' }, heads: { type: 'string' },
  'decoder-dim': { type: 'string' }, 'decoder-depth': { type: 'string' }, 'decoder-heads': { type: 'string' },
  'norm-pix': { type: 'boolean' }, 'no-norm-pix': { type: 'boolean' },
  steps: { type: 'string' }, batch: { type: 'string' }, accum: { type: 'string' },
  'mask-ratio': { type: 'string' }, visible: { type: 'string' },
  lr: { type: 'string' }, blr: { type: 'string' }, 'min-lr': { type: 'string' }, warmup: { type: 'string' },
  'weight-decay': { type: 'string' }, clip: { type: 'string' }, seed: { type: 'string' },
  teacher: { type: 'string' }, 'student-block': { type: 'string' }, 'teacher-block': { type: 'string' },
  alpha: { type: 'string' }, 'distill-loss': { type: 'string' }, augment: { type: 'string' },
  out: { type: 'string' }, 'recon-every': { type: 'string' }, 'max-memory': { type: 'string' }, config: { type: 'string' },
  'checkpoint-every': { type: 'string' }, resume: { type: 'string' }, 'knn-every': { type: 'string' },
  precision: { type: 'string' },
} as const;

/** What may accompany --resume: where the run goes and how it reports, never what it computes. */
const RESUME_OPTIONS = new Set(['resume', 'out', 'data', 'dataset', 'recon-every', 'checkpoint-every', 'max-memory', 'teacher', 'config', 'knn-every']);

type Opts = Record<string, string | boolean | undefined>;

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Flags over the --config file's values (its keys kebab- or camelCase). */
function readOptions(args: string[]): Opts {
  const { values } = parseArgs({ args, options: OPTIONS, allowPositionals: false, strict: true });
  const opts: Opts = {};
  if (values.config) {
    let file: Record<string, unknown>;
    try {
      file = JSON.parse(readFileSync(values.config, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`--config ${values.config}: ${(e as Error).message}`);
    }
    for (const [k, v] of Object.entries(file)) {
      const key = kebab(k);
      if (!(key in OPTIONS)) throw new Error(`--config ${values.config}: unknown option "${k}".`);
      opts[key] = typeof v === 'boolean' ? v : String(v);
    }
  }
  for (const [k, v] of Object.entries(values)) if (v !== undefined) opts[k] = v as string | boolean;
  return opts;
}

function num(opts: Opts, key: string, fallback?: number): number | undefined {
  const v = opts[key];
  if (v === undefined || v === false) return fallback;
  const x = Number(v);
  if (v === true || !Number.isFinite(x)) throw new Error(`--${key} ${String(v)} is not a number.`);
  return x;
}

function int(opts: Opts, key: string, fallback?: number): number | undefined {
  const x = num(opts, key, fallback);
  if (x !== undefined && !Number.isInteger(x)) throw new Error(`--${key} ${x} must be a whole number.`);
  return x;
}

const duration = (s: number): string => {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
};

function readJson(path: string): Record<string, unknown> | null {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

interface Resumed {
  checkpoint: Checkpoint;
  /** The run folder the checkpoint came from, and its config.json. */
  dir: string;
  prev: Record<string, unknown> | null;
}

async function writePng(path: string, img: { width: number; height: number; data: Uint8Array }): Promise<void> {
  await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(path);
}

/** The run a fresh start's flags describe (everything --resume instead reads from the checkpoint). */
async function freshRun(o: Opts, dataSpec: string, teacher: TeacherSource | null) {
  const mode = (o.mode ?? 'mae') as 'mae' | 'dmae';
  const tcfg = teacher?.config;
  // A path is imported now (a bad file is named before any GPU work); its size and channels are the geometry's defaults.
  const data = await resolveTrainingData(dataSpec, { imgSize: int(o, 'img-size') ?? tcfg?.imgSize, patch: int(o, 'patch', tcfg?.patchSize ?? 4)! });
  const info = data.info;
  const imgSize = int(o, 'img-size', tcfg?.imgSize ?? info.H)!;
  const channels = int(o, 'channels', tcfg?.inChans ?? info.C)! as 1 | 3;
  const patchSize = int(o, 'patch', tcfg?.patchSize ?? 4)!;
  const preset = String(o.preset ?? 'test') as EncoderPreset;
  if (!(preset in ENCODER_PRESETS)) throw new Error(`--preset ${preset} must be one of ${Object.keys(ENCODER_PRESETS).join(', ')}.`);
  const overrides: Partial<MaeConfig> = { normPixLoss: o['no-norm-pix'] === true ? false : o['norm-pix'] === false ? false : true };
  const map: [string, keyof MaeConfig][] = [['embed-dim', 'embedDim'], ['depth', 'depth'], ['heads', 'numHeads'], ['decoder-dim', 'decoderEmbedDim'], ['decoder-depth', 'decoderDepth'], ['decoder-heads', 'decoderNumHeads']];
  for (const [flag, key] of map) {
    const v = int(o, flag);
    if (v !== undefined) (overrides as Record<string, number>)[key] = v;
  }
  const model = maeConfig(preset, { imgSize, patchSize, inChans: channels }, overrides);

  const steps = int(o, 'steps', 300)!;
  let distill: DistillConfig | undefined;
  if (mode === 'dmae') {
    const sb = int(o, 'student-block'), tb = int(o, 'teacher-block');
    const kind = String(o['distill-loss'] ?? 'l1');
    if (kind !== 'l1' && kind !== 'l2') throw new Error(`--distill-loss ${kind} must be l1 or l2.`);
    distill = {
      pairs: [{ studentBlock: sb ?? Math.max(0, Math.round(0.75 * model.depth) - 1), teacherBlock: tb ?? Math.max(0, Math.round(0.75 * tcfg!.depth) - 1) }],
      alpha: num(o, 'alpha', 1)!, kind,
    };
  }
  const seed = int(o, 'seed', 0)!;
  const precision = String(o.precision ?? 'f32');
  if (precision !== 'f32' && precision !== 'mixed') throw new Error(`--precision ${precision} must be f32 or mixed.`);
  const cfg: TrainConfig = {
    mode, model, teacher: tcfg, distill,
    maskRatio: num(o, 'mask-ratio'), visible: int(o, 'visible'),
    batch: int(o, 'batch', 32)!, accumSteps: int(o, 'accum', 1),
    lr: num(o, 'lr'), baseLr: num(o, 'blr'), minLr: num(o, 'min-lr', 0),
    warmupSteps: int(o, 'warmup', Math.round(0.05 * steps)), totalSteps: steps,
    weightDecay: num(o, 'weight-decay'), clipGrad: num(o, 'clip'), seed, precision,
  };
  const augment = String(o.augment ?? 'mae');
  if (augment !== 'mae' && augment !== 'none') throw new Error(`--augment ${augment} must be mae or none.`);
  return { rc: resolveTrainConfig(cfg), data, augment: augment as 'mae' | 'none', preset };
}

/** `--resume PATH`: the checkpoint, its run folder's config.json, and the flags that may go with it. */
function readResumed(o: Opts): Resumed {
  const path = String(o.resume);
  const bad = Object.keys(o).filter((k) => !RESUME_OPTIONS.has(k));
  if (bad.length) {
    throw new Error(`--resume continues the checkpoint's run exactly as it was configured; ${bad.map((k) => `--${k}`).join(', ')} would change it. ` +
      `Start a new run instead (a DMAE student of this one: --mode dmae --teacher ${path}).`);
  }
  const { checkpoint } = readResume(path);
  const dir = resumeFolder(path);
  return { checkpoint, dir, prev: readJson(join(dir, 'config.json')) };
}

export async function trainCommand(args: string[]): Promise<number> {
  const o = readOptions(args);
  const resumed = typeof o.resume === 'string' ? readResumed(o) : null;
  if (resumed && resumed.checkpoint.meta.trainer.step >= resumed.checkpoint.meta.config.totalSteps) {
    process.stdout.write(`resume   ${String(o.resume)}: the run is complete (step ${resumed.checkpoint.meta.trainer.step} of ${resumed.checkpoint.meta.config.totalSteps}); nothing to do. ` +
      `Train on from it as a new run with --teacher, or in PyTorch: ${join(resumed.dir, CONTINUE_FILE)}.\n`);
    return 0;
  }
  const prev = resumed?.prev ?? null;
  const given = typeof o.data === 'string' || typeof o.dataset === 'string';
  if (resumed && !given && typeof prev?.data !== 'string') throw new Error(`--resume ${String(o.resume)}: no config.json in ${resumed.dir} says which data the run trained on; give --data.`);
  const dataSpec = resumed && !given ? String(prev!.data) : dataOption(o);

  // The teacher: a resumed run's is in its checkpoint (a --teacher given with --resume stands in for a checkpoint saved without one).
  const mode = resumed ? resumed.checkpoint.meta.config.mode : ((o.mode ?? 'mae') as 'mae' | 'dmae');
  if (mode !== 'mae' && mode !== 'dmae') throw new Error(`--mode ${String(mode)} must be mae or dmae.`);
  const teacher = mode === 'dmae' && typeof o.teacher === 'string' && !resumed?.checkpoint.teacher ? readTeacher(o.teacher) : null;
  if (mode === 'dmae' && !teacher && !resumed?.checkpoint.teacher) {
    throw new Error(resumed ? `--resume ${String(o.resume)}: this DMAE checkpoint holds no teacher; give it with --teacher.` : '--mode dmae needs --teacher (a MAE run folder or .safetensors; train a bigger MAE first).');
  }
  const teacherParams: ParamMap | undefined = resumed?.checkpoint.teacher ?? teacher?.params;

  let rc: ResolvedTrainConfig, augment: 'mae' | 'none', preset: string | null = null, data: Awaited<ReturnType<typeof resolveTrainingData>>;
  if (resumed) {
    rc = resumed.checkpoint.meta.config;
    data = await resolveTrainingData(dataSpec, { imgSize: rc.model.imgSize, patch: rc.model.patchSize });
    augment = prev?.augment === 'none' ? 'none' : 'mae';
  } else {
    ({ rc, data, augment, preset } = await freshRun(o, dataSpec, teacher));
  }
  const info = data.info;
  const model = rc.model, tcfg = rc.teacher, distill = rc.distill;
  const steps = rc.totalSteps;
  // A checkpoint written before mixed precision existed has none: f32.
  const precision = rc.precision ?? 'f32', mixed = precision === 'mixed';
  const startedAt = resumed?.checkpoint.meta.trainer.step ?? 0;
  const out = typeof o.out === 'string' ? o.out : resumed ? resumed.dir : join('runs', `${mode}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const prevNum = (k: string) => (typeof prev?.[k] === 'number' ? (prev[k] as number) : undefined);
  const reconEvery = int(o, 'recon-every', prevNum('reconEvery') ?? Math.max(1, Math.round(steps / 6)))!;
  const ckEvery = int(o, 'checkpoint-every', prevNum('checkpointEvery')) ?? null;
  if (reconEvery < 1) throw new Error(`--recon-every ${reconEvery} must be at least 1.`);
  if (ckEvery !== null && ckEvery < 1) throw new Error(`--checkpoint-every ${ckEvery} must be at least 1.`);
  const knnEvery = int(o, 'knn-every', prevNum('knnEvery') ?? 0)!;
  if (knnEvery < 0) throw new Error(`--knn-every ${knnEvery} must be 0 (off) or more.`);

  // Memory before anything touches the GPU.
  const plan = trainMemoryPlan(rc);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  if (resumed) log(`resume   ${String(o.resume)}: step ${startedAt} of ${steps} (saved ${resumed.checkpoint.meta.savedAt})`);
  log(`model    ${preset ? `${preset} ` : ''}${model.embedDim}×${model.depth} (${model.numHeads} heads), decoder ${model.decoderEmbedDim}×${model.decoderDepth}; ${model.imgSize}×${model.imgSize}×${model.inChans}, patch ${model.patchSize}, ` +
    `${describeMasking(rc)}, norm_pix ${model.normPixLoss ? 'on' : 'off'}`);
  if (tcfg && distill) {
    const from = teacher ? `${teacher.file}: ` : 'from the checkpoint: ';
    log(`teacher  ${from}${tcfg.embedDim}×${tcfg.depth}${teacher ? `, step ${teacher.step}` : ''}; pair student block ${distill.pairs[0].studentBlock} ↔ teacher block ${distill.pairs[0].teacherBlock}, α ${distill.alpha}, ${distill.kind}`);
  }
  log(`optim    AdamW lr ${rc.lr.toExponential(3)}${rc.baseLr !== null ? ` (= ${rc.baseLr} · ${rc.batch * rc.accumSteps} / 256)` : ''}, warmup ${rc.warmupSteps}, cosine to ${rc.minLr} over ${steps} steps, ` +
    `wd ${rc.weightDecay}, betas (${rc.beta1}, ${rc.beta2}), batch ${rc.batch}×${rc.accumSteps}${rc.clipGrad !== null ? `, clip ${rc.clipGrad}` : ''}, seed ${rc.seed}, ` +
    `precision ${mixed ? 'mixed (f16 matmuls, loss scaling)' : 'f32'}`);
  log(`memory   ${formatBytes(plan.totalBytes)} of GPU buffers (largest ${formatBytes(plan.largestBufferBytes)}): ` +
    Object.entries(plan.parts).map(([k, b]) => `${k} ${formatBytes(b)}`).join(', '));
  const maxMiB = num(o, 'max-memory');
  if (maxMiB !== undefined && plan.totalBytes > maxMiB * 2 ** 20) {
    throw new Error(`The run needs ${formatBytes(plan.totalBytes)} of GPU memory, over --max-memory ${maxMiB} MiB. Use a smaller model, batch or --visible, or --accum to split the batch.`);
  }
  // Over the adapter's one-buffer limit: said before a device is opened, with the flags that train
  // the same images a step in micro-batches that fit.
  const adapter = await findNodeAdapter();
  const limits = describeAdapter(adapter).limits;
  const tooBig = planExceedsLimits(plan, limits);
  if (tooBig) {
    const fit = resumed ? null : microBatchesThatFit(rc.batch, rc.accumSteps, (batch, accumSteps) => !planExceedsLimits(trainMemoryPlan({ ...rc, batch, accumSteps }), limits));
    throw new Error(fit ? `${tooBig} Here: --batch ${fit.batch} --accum ${fit.accumSteps} trains the same ${rc.batch * rc.accumSteps} images a step.` : tooBig);
  }
  const gpu = await acquireNodeGpu(limitsNeededFor(plan), adapter);
  log(`adapter  ${gpu.adapter.description}`);
  if (precisionProblem(gpu, precision)) {
    gpu.destroy();
    throw new Error(resumed
      ? `--resume ${String(o.resume)}: the run trains in mixed precision, which needs the adapter's shader-f16 feature; ${gpu.adapter.description} lacks it. Resume it on an adapter that has it.`
      : `--precision mixed needs the adapter's shader-f16 feature; ${gpu.adapter.description} lacks it. Train with --precision f32.`);
  }
  if (gpu.adapter.kind !== 'hardware' && plan.totalBytes > 0.8 * freemem()) {
    gpu.destroy();
    throw new Error(`The run needs ${formatBytes(plan.totalBytes)} of GPU buffers; this software adapter shares system memory, of which ${formatBytes(freemem())} is free. Use a smaller model or batch.`);
  }

  // Data: training stream (seeded, augmented) and fixed validation images and mask for the pictures.
  const ds = await data.load(model);
  const { loader, val, summary } = makeRunData(ds, rc, { augment, hflip: info.flipSafe });
  log(`data     ${ds.name}: ${summary.train} training, ${summary.val} validation images; ${augment === 'mae' ? `random resized crop${info.flipSafe ? ' + flip' : ''}` : 'no augmentation'}`);

  if (knnEvery > 0 && !ds.labels) {
    gpu.destroy();
    throw new Error(`--knn-every needs a labelled dataset; ${ds.name} has no labels.`);
  }
  const trainer = new Trainer(gpu, rc, loader, { initialParams: resumed?.checkpoint.params, teacherParams });
  if (resumed) applyResume(trainer, resumed.checkpoint); // moments, step, masking stream, data position
  mkdirSync(out, { recursive: true });
  const command = `dmae train ${args.join(' ')}`;
  const runInfo = { data: dataSpec, augment, reconEvery, checkpointEvery: ckEvery, ...(knnEvery > 0 ? { knnEvery } : {}) };
  if (resumed && prev) {
    const resumes = Array.isArray(prev.resumes) ? prev.resumes : [];
    writeFileAtomic(join(out, 'config.json'), JSON.stringify({ ...prev, ...runInfo, resumes: [...resumes, { command, fromStep: startedAt, at: new Date().toISOString() }] }, null, 2));
  } else {
    writeFileAtomic(join(out, 'config.json'), JSON.stringify({ command, dataset: ds.name, ...runInfo, adapter: gpu.adapter.description, memory: plan, config: rc, teacher: typeof o.teacher === 'string' ? o.teacher : null }, null, 2));
  }
  const metricsPath = join(out, 'metrics.jsonl');
  // A resumed run appends to the lines up to its checkpoint's step (dropping any logged after that checkpoint).
  const kept = resumed ? metricsUpTo(join(resumed.dir, 'metrics.jsonl'), startedAt) : { text: '', elapsedMs: 0 };
  writeFileAtomic(metricsPath, kept.text);
  log(`out      ${out}/ (metrics.jsonl, recon-<step>.png, ${MODEL_FILE} + ${CHECKPOINT_FILE} + ${CONTINUE_FILE} every ${ckEvery ?? reconEvery} steps and at the end)`);
  const checkpointer = new RunCheckpointer(out, ckEvery ?? reconEvery, { name: ds.name, mean: summary.mean, std: summary.std });

  const pictures: string[] = [];
  const reconstruct = async (step: number) => {
    const r = await reconstructValidation(trainer, val);
    const path = join(out, `recon-${String(step).padStart(5, '0')}.png`);
    await writePng(path, r.image);
    pictures.push(path);
    appendFileSync(metricsPath, `${JSON.stringify({ step, val: { pix: r.pix, loss: r.loss }, png: path })}\n`);
    return r;
  };

  // The live k-NN monitor: its own buffers, the encoder copied from the trainer's arena on the GPU.
  const monitor = knnEvery > 0 ? new KnnMonitor(gpu, model, ds, { seed: rc.seed }) : null;
  const measureKnn = async () => {
    if (!monitor) return;
    const k = await monitor.measure(trainer.model.params);
    appendFileSync(metricsPath, `${JSON.stringify({ step: trainer.step, knn: { accuracy: k.accuracy, bank: k.bank, queries: k.queries, ms: Math.round(k.ms) } })}\n`);
    if (tty) process.stdout.write('\n');
    log(`knn      step ${trainer.step}: accuracy ${(100 * k.accuracy).toFixed(1)} % (${k.queries} validation images against ${k.bank} training images, ${(k.ms / 1000).toFixed(1)} s)`);
  };

  const tty = process.stdout.isTTY === true;
  let stop = false, stopAt = 0;
  const onSigint = () => {
    // One Ctrl-C can arrive twice (the terminal signals the whole group, and tsx relays it to node): a repeat within a second is that echo.
    if (stop && performance.now() - stopAt > 1000) process.exit(130);
    if (stop) return;
    stop = true;
    stopAt = performance.now();
    process.stderr.write('\nstopping after the current step and saving (Ctrl-C again to quit at once, unsaved)…\n');
  };
  process.on('SIGINT', onSigint);
  const startStep = trainer.step;
  const t0 = performance.now() - kept.elapsedMs;
  const tRun = performance.now();
  let firstLoss: StepMetrics | null = null, lastLoss: StepMetrics | null = null;
  const printEvery = Math.max(1, Math.round(steps / 30));
  const progress = (m: StepMetrics) => {
    const elapsed = (performance.now() - tRun) / 1000;
    const done = m.step - startStep;
    const rate = (done * rc.batch * rc.accumSteps) / Math.max(elapsed, 1e-9);
    const eta = (elapsed / Math.max(done, 1)) * (steps - m.step);
    const dist = m.distill ? `  dist ${m.distill.map((d) => d.toFixed(4)).join('+')}` : '';
    const scale = m.lossScale !== undefined ? `  scale ${m.lossScale}  skipped ${m.skippedSteps ?? 0}` : '';
    const line = `step ${String(m.step).padStart(String(steps).length)}/${steps}  loss ${m.loss.toFixed(4)}  pix ${m.pix.toFixed(4)}${dist}  lr ${m.lr.toExponential(2)}  |g| ${m.gradNorm.toFixed(3)}${scale}  ${rate.toFixed(0)} img/s  ETA ${duration(eta)}`;
    if (tty) process.stdout.write(`\r${line}\x1b[K`);
    else if (m.step % printEvery === 0 || m.step === steps || m.step === 1) log(line);
  };
  const saved = (path: string | null) => {
    if (!path) return;
    if (tty) process.stdout.write('\n');
    log(`saved    step ${trainer.step}: ${join(out, MODEL_FILE)} + ${CHECKPOINT_FILE}`);
  };

  try {
    if (!resumed) {
      const v0 = await reconstruct(0);
      log(`val      step 0: pix ${v0.pix.toFixed(4)}${mode === 'dmae' ? `, loss ${v0.loss.toFixed(4)}` : ''}`);
      await measureKnn();
    }
    let result = { status: 'done' as string, step: 0, message: '' };
    while (trainer.step < steps && !stop) {
      const until = nextStop(trainer.step, steps, reconEvery, ckEvery, knnEvery);
      const r = await trainer.train({
        until, shouldStop: () => stop,
        onMetrics: (m) => {
          firstLoss ??= m;
          lastLoss = m;
          // elapsedMs over the whole run, resumes included (the trainer's restarts with each train() call).
          appendFileSync(metricsPath, `${JSON.stringify({ ...m, elapsedMs: Math.round(performance.now() - t0) })}\n`);
          progress(m);
        },
      });
      result = { status: r.status, step: r.step, message: r.divergence?.message ?? '' };
      if (r.status === 'diverged') break;
      if (trainer.step === until) {
        if (trainer.step % reconEvery === 0 || trainer.step === steps) {
          const v = await reconstruct(trainer.step);
          if (tty) process.stdout.write('\n');
          log(`val      step ${trainer.step}: pix ${v.pix.toFixed(4)}${mode === 'dmae' ? `, loss ${v.loss.toFixed(4)}` : ''} → ${pictures[pictures.length - 1]}`);
        }
        if (knnEvery > 0 && (trainer.step % knnEvery === 0 || trainer.step === steps)) await measureKnn();
        if (trainer.step < steps) saved(await checkpointer.maybeSave(trainer));
      }
    }
    process.off('SIGINT', onSigint);
    if (tty) process.stdout.write('\n');

    // At the end, on Ctrl-C, and after a divergence (the trainer holds the restored last good state).
    saved(await checkpointer.save(trainer));
    const secs = (performance.now() - tRun) / 1000;
    const f = firstLoss as StepMetrics | null, l = lastLoss as StepMetrics | null;
    if (f && l) {
      log(`summary  ${l.step - f.step + 1} steps in ${duration(secs)}: loss ${f.loss.toFixed(4)} → ${l.loss.toFixed(4)} (pix ${f.pix.toFixed(4)} → ${l.pix.toFixed(4)}${f.distill ? `; distill ${f.distill.map((x) => x.toFixed(4)).join('+')} → ${l.distill!.map((x) => x.toFixed(4)).join('+')}` : ''})` +
        (l.lossScale !== undefined ? `; loss scale ${l.lossScale}, ${l.skippedSteps} step${l.skippedSteps === 1 ? '' : 's'} skipped` : ''));
    }
    log(`files    ${out}/: ${MODEL_FILE}, ${CHECKPOINT_FILE}, ${CONTINUE_FILE} (step ${trainer.step} of ${steps}); ${pictures.length} reconstruction PNG${pictures.length === 1 ? '' : 's'}`);
    if (result.status === 'diverged') {
      process.stderr.write(`error: ${result.message}\n`);
      return 3;
    }
    if (stop) {
      log(`stopped  at step ${trainer.step}; continue with: npm run dmae -- train --resume ${join(out, CHECKPOINT_FILE)}`);
      return 130;
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    trainer.destroy();
    monitor?.destroy();
    gpu.destroy();
  }
}
