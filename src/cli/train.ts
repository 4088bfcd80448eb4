/**
 * `npm run dmae -- train`: MAE pretraining or DMAE distillation in Node, on a built-in dataset.
 * Writes, under --out: config.json (the resolved run), metrics.jsonl (one JSON line per step),
 * recon-<step>.png (original / masked / reconstruction / reconstruction + visible, for fixed
 * validation images and a fixed mask), and params.bin + params.json (the final parameters; a
 * DMAE run's --teacher reads them).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ENCODER_PRESETS, maeConfig, type EncoderPreset, type MaeConfig, type DistillConfig } from '../engine/config';
import { decodeParams, encodeParams, type ParamsMeta } from '../engine/params-file';
import { DEFAULT_BASE_LR } from '../engine/schedule';
import { describeMasking, limitsNeededFor, makeRunData, reconstructValidation } from '../engine/run';
import { Trainer, formatBytes, resolveTrainConfig, trainMemoryPlan, type StepMetrics, type TrainConfig } from '../engine/trainer';
import { acquireNodeGpu } from '../gpu/node-device';
import { dataOption, resolveTrainingData } from './dataset';

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
  --teacher runs/NAME        DMAE: the teacher run (its params.json + params.bin)
  --student-block K --teacher-block K --alpha A --distill-loss l1|l2
                             DMAE alignment (default ¾ of each depth), weight (1), loss (l1)
  --augment mae|none         MAE's random resized crop + flip (no flip for digits) (default mae)
  --out DIR                  output folder (default runs/<mode>-<date>)
  --recon-every N            reconstruction PNG every N steps (default steps/6), and at 0 and the end
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
} as const;

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

function readRun(dir: string): { meta: ParamsMeta; params: Map<string, Float64Array> } {
  const jsonPath = join(dir, 'params.json'), binPath = join(dir, 'params.bin');
  if (!existsSync(jsonPath) || !existsSync(binPath)) throw new Error(`--teacher ${dir}: no params.json and params.bin there (train the teacher first: npm run dmae -- train --mode mae --out ${dir}).`);
  return decodeParams(JSON.parse(readFileSync(jsonPath, 'utf8')), new Uint8Array(readFileSync(binPath)), jsonPath);
}

async function writePng(path: string, img: { width: number; height: number; data: Uint8Array }): Promise<void> {
  await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(path);
}

export async function trainCommand(args: string[]): Promise<number> {
  const o = readOptions(args);
  const mode = (o.mode ?? 'mae') as 'mae' | 'dmae';
  if (mode !== 'mae' && mode !== 'dmae') throw new Error(`--mode ${String(mode)} must be mae or dmae.`);
  const dataSpec = dataOption(o);

  // The teacher fixes nothing but must share the geometry; its config comes from its run.
  const teacherRun = mode === 'dmae' ? (typeof o.teacher === 'string' ? readRun(o.teacher) : null) : null;
  if (mode === 'dmae' && !teacherRun) throw new Error('--mode dmae needs --teacher runs/<a MAE run> (train a bigger MAE first).');
  const tcfg = teacherRun?.meta.config;
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
  const cfg: TrainConfig = {
    mode, model, teacher: tcfg, distill,
    maskRatio: num(o, 'mask-ratio'), visible: int(o, 'visible'),
    batch: int(o, 'batch', 32)!, accumSteps: int(o, 'accum', 1),
    lr: num(o, 'lr'), baseLr: num(o, 'blr'), minLr: num(o, 'min-lr', 0),
    warmupSteps: int(o, 'warmup', Math.round(0.05 * steps)), totalSteps: steps,
    weightDecay: num(o, 'weight-decay'), clipGrad: num(o, 'clip'), seed,
  };
  const rc = resolveTrainConfig(cfg);
  const out = typeof o.out === 'string' ? o.out : join('runs', `${mode}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const reconEvery = int(o, 'recon-every', Math.max(1, Math.round(steps / 6)))!;
  const augment = String(o.augment ?? 'mae');
  if (augment !== 'mae' && augment !== 'none') throw new Error(`--augment ${augment} must be mae or none.`);

  // Memory before anything touches the GPU.
  const plan = trainMemoryPlan(rc);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  log(`model    ${preset} ${model.embedDim}×${model.depth} (${model.numHeads} heads), decoder ${model.decoderEmbedDim}×${model.decoderDepth}; ${imgSize}×${imgSize}×${channels}, patch ${patchSize}, ` +
    `${describeMasking(rc)}, norm_pix ${model.normPixLoss ? 'on' : 'off'}`);
  if (tcfg) log(`teacher  ${o.teacher}: ${tcfg.embedDim}×${tcfg.depth}, step ${teacherRun!.meta.step}; pair student block ${distill!.pairs[0].studentBlock} ↔ teacher block ${distill!.pairs[0].teacherBlock}, α ${distill!.alpha}, ${distill!.kind}`);
  log(`optim    AdamW lr ${rc.lr.toExponential(3)}${rc.baseLr !== null ? ` (= ${rc.baseLr} · ${rc.batch * rc.accumSteps} / 256)` : ''}, warmup ${rc.warmupSteps}, cosine to ${rc.minLr} over ${steps} steps, ` +
    `wd ${rc.weightDecay}, betas (${rc.beta1}, ${rc.beta2}), batch ${rc.batch}×${rc.accumSteps}${rc.clipGrad !== null ? `, clip ${rc.clipGrad}` : ''}, seed ${seed}`);
  log(`memory   ${formatBytes(plan.totalBytes)} of GPU buffers (largest ${formatBytes(plan.largestBufferBytes)}): ` +
    Object.entries(plan.parts).map(([k, b]) => `${k} ${formatBytes(b)}`).join(', '));
  const maxMiB = num(o, 'max-memory');
  if (maxMiB !== undefined && plan.totalBytes > maxMiB * 2 ** 20) {
    throw new Error(`The run needs ${formatBytes(plan.totalBytes)} of GPU memory, over --max-memory ${maxMiB} MiB. Use a smaller model, batch or --visible, or --accum to split the batch.`);
  }
  const gpu = await acquireNodeGpu(limitsNeededFor(plan)); // refuses, naming the limit, when the adapter cannot hold the largest buffer
  log(`adapter  ${gpu.adapter.description}`);
  if (gpu.adapter.kind !== 'hardware' && plan.totalBytes > 0.8 * freemem()) {
    gpu.destroy();
    throw new Error(`The run needs ${formatBytes(plan.totalBytes)} of GPU buffers; this software adapter shares system memory, of which ${formatBytes(freemem())} is free. Use a smaller model or batch.`);
  }

  // Data: training stream (seeded, augmented) and fixed validation images and mask for the pictures.
  const ds = await data.load(model);
  const { loader, val, summary } = makeRunData(ds, rc, { augment, hflip: info.flipSafe });
  log(`data     ${ds.name}: ${summary.train} training, ${summary.val} validation images; ${augment === 'mae' ? `random resized crop${info.flipSafe ? ' + flip' : ''}` : 'no augmentation'}`);

  const trainer = new Trainer(gpu, rc, loader, { teacherParams: teacherRun?.params });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'config.json'), JSON.stringify({ command: `dmae train ${args.join(' ')}`, dataset: ds.name, data: dataSpec, adapter: gpu.adapter.description, memory: plan, config: rc, teacherRun: o.teacher ?? null }, null, 2));
  const metricsPath = join(out, 'metrics.jsonl');
  writeFileSync(metricsPath, '');
  log(`out      ${out}/ (metrics.jsonl, recon-<step>.png, params.bin + params.json)`);

  const pictures: string[] = [];
  const reconstruct = async (step: number) => {
    const r = await reconstructValidation(trainer, val);
    const path = join(out, `recon-${String(step).padStart(5, '0')}.png`);
    await writePng(path, r.image);
    pictures.push(path);
    appendFileSync(metricsPath, `${JSON.stringify({ step, val: { pix: r.pix, loss: r.loss }, png: path })}\n`);
    return r;
  };

  const tty = process.stdout.isTTY === true;
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nstopping after the current step (Ctrl-C again to quit at once)…\n');
  };
  process.on('SIGINT', onSigint);
  const startStep = trainer.step;
  const t0 = performance.now();
  let firstLoss: StepMetrics | null = null, lastLoss: StepMetrics | null = null;
  const printEvery = Math.max(1, Math.round(steps / 30));
  const progress = (m: StepMetrics) => {
    const elapsed = (performance.now() - t0) / 1000;
    const done = m.step - startStep;
    const rate = (done * rc.batch * rc.accumSteps) / Math.max(elapsed, 1e-9);
    const eta = (elapsed / Math.max(done, 1)) * (steps - m.step);
    const dist = m.distill ? `  dist ${m.distill.map((d) => d.toFixed(4)).join('+')}` : '';
    const line = `step ${String(m.step).padStart(String(steps).length)}/${steps}  loss ${m.loss.toFixed(4)}  pix ${m.pix.toFixed(4)}${dist}  lr ${m.lr.toExponential(2)}  |g| ${m.gradNorm.toFixed(3)}  ${rate.toFixed(0)} img/s  ETA ${duration(eta)}`;
    if (tty) process.stdout.write(`\r${line}\x1b[K`);
    else if (m.step % printEvery === 0 || m.step === steps || m.step === 1) log(line);
  };

  const v0 = await reconstruct(0);
  log(`val      step 0: pix ${v0.pix.toFixed(4)}${mode === 'dmae' ? `, loss ${v0.loss.toFixed(4)}` : ''}`);
  let result = { status: 'done' as string, step: 0, message: '' };
  while (trainer.step < steps && !stop) {
    const until = Math.min(steps, (Math.floor(trainer.step / reconEvery) + 1) * reconEvery);
    const r = await trainer.train({
      until, shouldStop: () => stop,
      onMetrics: (m) => {
        firstLoss ??= m;
        lastLoss = m;
        // elapsedMs over the whole run (the trainer's restarts with each train() call between pictures).
        appendFileSync(metricsPath, `${JSON.stringify({ ...m, elapsedMs: Math.round(performance.now() - t0) })}\n`);
        progress(m);
      },
    });
    result = { status: r.status, step: r.step, message: r.divergence?.message ?? '' };
    if (r.status === 'diverged') break;
    if (r.status === 'done' || trainer.step === until) {
      const v = await reconstruct(trainer.step);
      if (tty) process.stdout.write('\n');
      log(`val      step ${trainer.step}: pix ${v.pix.toFixed(4)}${mode === 'dmae' ? `, loss ${v.loss.toFixed(4)}` : ''} → ${pictures[pictures.length - 1]}`);
    }
  }
  process.off('SIGINT', onSigint);
  if (tty) process.stdout.write('\n');

  // The parameters: after a divergence these are the restored last good state.
  const params = await trainer.readParams();
  const file = encodeParams(trainer.model.layout, params, { mode, config: model, teacher: tcfg, distill, step: trainer.step });
  writeFileSync(join(out, 'params.bin'), file.bin);
  // One tensor per line: readable, and diff-able between runs.
  const { tensors, ...head } = file.json;
  writeFileSync(join(out, 'params.json'), `${JSON.stringify(head, null, 1).slice(0, -2)},\n "tensors": [\n${tensors.map((t) => `  ${JSON.stringify(t)}`).join(',\n')}\n ]\n}\n`);
  const secs = (performance.now() - t0) / 1000;
  const f = firstLoss as StepMetrics | null, l = lastLoss as StepMetrics | null;
  if (f && l) {
    const d = (m: StepMetrics) => (m.distill ? `, distill ${m.distill.map((x) => x.toFixed(4)).join('+')}` : '');
    log(`summary  ${l.step - f.step + 1} steps in ${duration(secs)}: loss ${f.loss.toFixed(4)} → ${l.loss.toFixed(4)} (pix ${f.pix.toFixed(4)} → ${l.pix.toFixed(4)}${f.distill ? `; distill ${f.distill.map((x) => x.toFixed(4)).join('+')} → ${l.distill!.map((x) => x.toFixed(4)).join('+')}` : ''})${d(l) ? '' : ''}`);
  }
  log(`saved    ${join(out, 'params.bin')} + params.json (step ${trainer.step}); ${pictures.length} reconstruction PNGs`);
  trainer.destroy();
  gpu.destroy();
  if (result.status === 'diverged') {
    process.stderr.write(`error: ${result.message}\n`);
    return 3;
  }
  return 0;
}
