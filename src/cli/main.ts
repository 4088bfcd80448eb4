/**
 * `npm run dmae -- <command> [options]`: the studio's Node command line.
 * The commands are listed in HELP; each has its own `--help`.
 */
import { DATASET_HELP, datasetCommand } from './dataset';
import { EXPORT_HELP, exportCommand } from './export';
import { EVALUATE_HELP, evaluateCommand } from './evaluate';
import { KD_HELP, kdCommand } from './kd';
import { EXPERIMENT_HELP, experimentCommand } from './experiment';
import { TRAIN_HELP, trainCommand } from './train';

const HELP = `Usage: npm run dmae -- <command> [options]

Commands:
  train     train a MAE, or distil one into a smaller student (DMAE)
  export    a checkpoint as safetensors (full, timm) or ONNX
  dataset   detect a dataset's format and print its summary as JSON (a path or mnist, shapes)
  evaluate  accuracy of a run's encoder: k-NN, linear probe or fine-tuning, as JSON
  kd        knowledge-distillation baseline: a student classifier from a fine-tuned teacher
  experiment  the method's claims end to end on built-in data → docs/results (dmae-vs-mae,
            dmae-vs-kd, mask-ratio, cost, all)
  help      this text; \`npm run dmae -- train --help\` for the options of train
`;

/** Each command: its help text and what runs it. */
const COMMANDS: Record<string, { help: string; run: (args: string[]) => Promise<number> }> = {
  train: { help: TRAIN_HELP, run: trainCommand },
  export: { help: EXPORT_HELP, run: exportCommand },
  dataset: { help: DATASET_HELP, run: datasetCommand },
  evaluate: { help: EVALUATE_HELP, run: evaluateCommand },
  kd: { help: KD_HELP, run: kdCommand },
  experiment: { help: EXPERIMENT_HELP, run: experimentCommand },
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(HELP);
    return 0;
  }
  const c = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!c) {
    process.stderr.write(`Unknown command "${command}".\n\n${HELP}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(c.help);
    return 0;
  }
  return c.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    // Messages are written for users (they say what to change); DMAE_DEBUG=1 adds the stack.
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`\nerror: ${msg}\n`);
    if (process.env.DMAE_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  },
);
