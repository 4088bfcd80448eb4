/**
 * `npm run dmae -- <command> [options]`: the studio's Node command line.
 *   train   MAE pretraining or DMAE distillation on a built-in dataset (see `train --help`)
 *   export  a checkpoint or model as safetensors (full / timm) or ONNX (see `export --help`)
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

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'train':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(TRAIN_HELP);
        return 0;
      }
      return trainCommand(rest);
    case 'export':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(EXPORT_HELP);
        return 0;
      }
      return exportCommand(rest);
    case 'dataset':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(DATASET_HELP);
        return 0;
      }
      return datasetCommand(rest);
    case 'evaluate':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(EVALUATE_HELP);
        return 0;
      }
      return evaluateCommand(rest);
    case 'kd':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(KD_HELP);
        return 0;
      }
      return kdCommand(rest);
    case 'experiment':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(EXPERIMENT_HELP);
        return 0;
      }
      return experimentCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    default:
      process.stderr.write(`Unknown command "${command}".\n\n${HELP}`);
      return 2;
  }
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
