/**
 * `npm run bench -- <command> [options]`: a small dispatcher over the benchmarks in bench/.
 *
 *   kernels   every kernel on the shapes of a ViT-Tiny MAE step, verified, then timed, and the
 *             tfjs-webgpu peer on the same matmuls → bench/results/kernels.json
 *
 * Options: --reps N (timed repetitions, default 5), --warmup N (default 1),
 *          --only A,B (benchmarks whose name contains A or B), --no-peer, --out NAME (results file name).
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
