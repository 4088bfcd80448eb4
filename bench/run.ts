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
 *   import    images per second of each dataset format (IDX raw/gzip, CIFAR-10 bin/tar.gz, PNG folder
 *             and zip, JPEG, WebP) through importPaths, on the CPU → bench/results/import.json
 *             (see bench/import.ts for its options).
 */
import { parseArgs } from 'node:util';

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
    await runKernels({ reps: Number(values.reps), warmup: Number(values.warmup), only: values.only, peer: !values['no-peer'], out: values.out! });
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
      ? { student: JSON.parse(values.student), teacher: JSON.parse(values.teacher), studentName: 'student', teacherName: 'teacher' }
      : undefined;
    await runTrain({ reps: Number(values.reps), teacherReps: Number(values['teacher-reps']), warmup: Number(values.warmup), batch: Number(values.batch), ratios: values.ratios!.split(',').map(Number), out: values.out!, models });
  },
  async import(args) {
    const { values } = parseArgs({ args, options: { reps: { type: 'string', default: '3' }, warmup: { type: 'string', default: '1' }, images: { type: 'string', default: '3000' }, photos: { type: 'string', default: '300' }, out: { type: 'string', default: 'import' }, keep: { type: 'boolean', default: false } } });
    const { runImport } = await import('./import');
    await runImport({ reps: Number(values.reps), warmup: Number(values.warmup), images: Number(values.images), photos: Number(values.photos), out: values.out!, keep: values.keep! });
  },
};

const [command, ...rest] = process.argv.slice(2);
const run = command ? COMMANDS[command] : undefined;
if (!run) {
  console.error(`usage: npm run bench -- <${Object.keys(COMMANDS).join('|')}> [options]`);
  process.exit(2);
}
run(rest).catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
