/**
 * `npm run bench -- <command> [options]`: a small dispatcher over the benchmarks in bench/.
 *
 *   kernels   every kernel on the shapes of a ViT-Tiny MAE step, verified, then timed, and the
 *             tfjs-webgpu peer on the same matmuls → bench/results/kernels.json
 *   train     whole MAE and DMAE training steps (ViT-Tiny student, ViT-Small teacher stopped at
 *             ¾ depth) at mask ratios 0.75–0.98, and stopped vs full teacher → bench/results/train.json
 *
 * kernels options: --reps N (timed repetitions, default 5), --warmup N (default 1),
 *          --only A,B (benchmarks whose name contains A or B), --no-peer, --out NAME (results file name).
 * train options: --reps N (default 5), --teacher-reps N (the teacher-forward pair, default 7),
 *          --warmup N (extra untimed rounds, default 0: every contender has already run once,
 *          checked, before timing), --batch N (default 16), --ratios 0.75,0.9,0.95,0.98, --out NAME,
 *          --student JSON --teacher JSON (MaeConfigs instead of ViT-Tiny ← ViT-Small at 32×32×3).
 *   gpu       the matmul tuner's table (every variant on every Linear product of ViT-Tiny/Small/Base
 *             MAE and DMAE steps at 224×224 and 32×32) and whole MAE/DMAE steps with the tuned
 *             variants (images/s, step efficiency), sized to the adapter → bench/results/gpu-<kind>.json
 * gpu options: --plan auto|gpu|cpu (default: by the adapter's kind), --reps N, --tune-reps N, --batch N (every run's starting batch),
 *          --only vit-tiny@32,… (run names), --budget-s S (no step run starts after S s, default 240),
 *          --memory-gib G (largest plan per run), --dry (print the plan only), --out NAME.
 *   peer      the TensorFlow.js peers in one run: our ViT-Tiny MAE step vs the same step in tfjs
 *             (bench/tfjs-mae.ts) on tfjs-webgpu built on our device, and the step's matmuls, interleaved
 *             → bench/results/peer-node.json; with --browser, the same in Debian's chromium with
 *             tfjs-webgpu and tfjs-webgl (bench/page/) → bench/results/peer-chromium.json
 * peer options: --batch N (default 8), --mask-ratio R (0.75), --reps N (3), --warmup N (1),
 *          --gpu-reps N (timestamped step reps, 1; 0 skips), --matmul-batch N (64; 0 skips),
 *          --matmul-reps N (5), --matmul-calls N (browser: products per wait in the batched matmul timing, 8), --no-tune (our static matmul variant instead of the tuned ones), --out NAME;
 *          --browser [--timeout-s S] [--no-webgl] (page defaults: bench/page/main.ts).
 *   import    images per second of each dataset format (IDX raw/gzip, CIFAR-10 bin/tar.gz, PNG folder
 *             and zip, JPEG, WebP) through importPaths, on the CPU → bench/results/import.json
 *             (see bench/import.ts for its options).
 */
import { parseArgs } from 'node:util';
import { validateMaeConfig, type MaeConfig } from '../src/engine/config';

/** A mistake in the command line: printed as its message alone (no stack), exit status 2. */
class UsageError extends Error {}

/**
 * A numeric option, checked: undefined when absent (never, for an option parseArgs gives a default), else a number `ok` accepts or a UsageError
 * that names the option and what it takes (Number('') is 0 and Number('x') NaN: neither slips by).
 */
function numeric(option: string, v: string | undefined, ok: (n: number) => boolean, takes: string): number | undefined {
  if (v === undefined) return undefined;
  const blank = v.trim() === '';
  const n = blank ? NaN : Number(v);
  if (!ok(n)) throw new UsageError(`--${option} ${blank ? `'${v}'` : v}: give ${takes}`);
  return n;
}
/** Something counted that must happen at least once (repetitions, a batch, products per wait). */
const count = (option: string, v: string | undefined) => numeric(option, v, (n) => Number.isInteger(n) && n >= 1, 'a whole number ≥ 1');
/** Something counted where 0 means none (warm-up rounds; 0 skips a part). */
const countOrNone = (option: string, v: string | undefined) => numeric(option, v, (n) => Number.isInteger(n) && n >= 0, 'a whole number ≥ 0 (0: none)');
/** A time or a size. */
const positive = (option: string, v: string | undefined) => numeric(option, v, (n) => Number.isFinite(n) && n > 0, 'a number > 0');
/** A mask ratio, as the trainer takes it. */
const maskRatio = (option: string, v: string | undefined) => numeric(option, v, (n) => n >= 0 && n < 1, 'a mask ratio in [0, 1)');
/** An option that holds a model's MaeConfig as JSON, parsed and checked (validateMaeConfig). */
function modelConfig(option: string, v: string): MaeConfig {
  let c: MaeConfig;
  try {
    c = JSON.parse(v) as MaeConfig;
  } catch (e) {
    throw new UsageError(`--${option}: not JSON (${(e as Error).message})`);
  }
  try {
    validateMaeConfig(c);
  } catch (e) {
    throw new UsageError(`--${option}: ${(e as Error).message}`);
  }
  return c;
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  async kernels(args) {
    const { values } = parseArgs({
      args,
      options: {
        reps: { type: 'string', default: '5' },
        warmup: { type: 'string', default: '1' },
        only: { type: 'string' },
        'no-peer': { type: 'boolean', default: false },
        out: { type: 'string', default: 'kernels' },
      },
    });
    const { runKernels } = await import('./kernels');
    await runKernels({ reps: count('reps', values.reps)!, warmup: countOrNone('warmup', values.warmup)!, only: values.only, peer: !values['no-peer'], out: values.out! });
  },
  async train(args) {
    const { values } = parseArgs({
      args,
      options: {
        reps: { type: 'string', default: '5' },
        'teacher-reps': { type: 'string', default: '7' },
        warmup: { type: 'string', default: '0' }, // the checked step before timing is each contender's warm-up
        batch: { type: 'string', default: '16' },
        ratios: { type: 'string', default: '0.75,0.9,0.95,0.98' },
        out: { type: 'string', default: 'train' },
        // Other sizes: the student's and teacher's MaeConfig as JSON (the experiment command's cost job).
        student: { type: 'string' },
        teacher: { type: 'string' },
      },
    });
    const { runTrain } = await import('./train');
    const models = values.student && values.teacher
      ? { student: modelConfig('student', values.student), teacher: modelConfig('teacher', values.teacher), studentName: 'student', teacherName: 'teacher' }
      : undefined;
    const ratios = values.ratios!.split(',').map((r) => maskRatio('ratios', r)!);
    await runTrain({
      reps: count('reps', values.reps)!, teacherReps: count('teacher-reps', values['teacher-reps'])!, warmup: countOrNone('warmup', values.warmup)!,
      batch: count('batch', values.batch)!, ratios, out: values.out!, models,
    });
  },
  async gpu(args) {
    const { values } = parseArgs({
      args,
      options: {
        plan: { type: 'string', default: 'auto' },
        reps: { type: 'string' },
        'tune-reps': { type: 'string' },
        batch: { type: 'string' },
        only: { type: 'string' },
        'budget-s': { type: 'string', default: '240' },
        'memory-gib': { type: 'string' },
        dry: { type: 'boolean', default: false },
        out: { type: 'string' },
      },
    });
    if (!['auto', 'gpu', 'cpu'].includes(values.plan!)) throw new UsageError(`--plan ${values.plan}: auto, gpu or cpu`);
    const { runGpuBench } = await import('./gpu');
    await runGpuBench({
      plan: values.plan as 'auto' | 'gpu' | 'cpu', reps: count('reps', values.reps), tuneReps: count('tune-reps', values['tune-reps']), batch: count('batch', values.batch), only: values.only,
      budgetS: positive('budget-s', values['budget-s'])!, memoryGiB: positive('memory-gib', values['memory-gib']), dry: values.dry!, out: values.out,
    });
  },
  async peer(args) {
    const { values } = parseArgs({
      args,
      options: {
        browser: { type: 'boolean', default: false },
        batch: { type: 'string' },
        'mask-ratio': { type: 'string', default: '0.75' },
        reps: { type: 'string' },
        warmup: { type: 'string' },
        'gpu-reps': { type: 'string', default: '1' },
        'matmul-batch': { type: 'string' },
        'matmul-reps': { type: 'string' },
        'matmul-calls': { type: 'string' },
        'timeout-s': { type: 'string', default: '420' },
        'no-webgl': { type: 'boolean', default: false },
        'no-tune': { type: 'boolean', default: false },
        out: { type: 'string' },
      },
    });
    const o = {
      batch: count('batch', values.batch), maskRatio: maskRatio('mask-ratio', values['mask-ratio'])!, reps: count('reps', values.reps), warmup: countOrNone('warmup', values.warmup),
      matmulBatch: countOrNone('matmul-batch', values['matmul-batch']), matmulReps: count('matmul-reps', values['matmul-reps']),
    };
    if (values.browser) {
      const { runPeerBrowser } = await import('./page/runner');
      await runPeerBrowser({
        ...o, matmulCalls: count('matmul-calls', values['matmul-calls']), webgl: values['no-webgl'] ? false : undefined, tune: values['no-tune'] ? false : undefined,
        timeoutS: positive('timeout-s', values['timeout-s'])!, out: values.out ?? 'peer-chromium',
      });
      return;
    }
    const { runPeer } = await import('./step-peer');
    await runPeer({
      batch: o.batch ?? 8, maskRatio: o.maskRatio, reps: o.reps ?? 3, warmup: o.warmup ?? 1,
      kernelReps: countOrNone('gpu-reps', values['gpu-reps'])!, matmulBatch: o.matmulBatch ?? 64, matmulReps: o.matmulReps ?? 5, tune: !values['no-tune'], out: values.out ?? 'peer-node',
    });
  },
  async import(args) {
    const { values } = parseArgs({ args, options: { reps: { type: 'string', default: '3' }, warmup: { type: 'string', default: '1' }, images: { type: 'string', default: '3000' }, photos: { type: 'string', default: '300' }, out: { type: 'string', default: 'import' }, keep: { type: 'boolean', default: false } } });
    const { runImport } = await import('./import');
    await runImport({
      reps: count('reps', values.reps)!, warmup: countOrNone('warmup', values.warmup)!,
      images: count('images', values.images)!, photos: countOrNone('photos', values.photos)!, out: values.out!, keep: values.keep!,
    });
  },
};

const [command, ...rest] = process.argv.slice(2);
const run = command ? COMMANDS[command] : undefined;
if (!run) {
  console.error(`usage: npm run bench -- <${Object.keys(COMMANDS).join('|')}> [options]`);
  process.exit(2);
}
run(rest).catch((e: unknown) => {
  // Ours, or parseArgs's (an unknown option, a missing value): the message says it all.
  const parseArgsError = e instanceof TypeError && String((e as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
  if (e instanceof UsageError || parseArgsError) {
    console.error((e as Error).message);
    process.exit(2);
  }
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
