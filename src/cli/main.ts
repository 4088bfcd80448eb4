/**
 * `npm run dmae -- <command> [options]`: the studio's Node command line.
 *   train   MAE pretraining or DMAE distillation on a built-in dataset (see `train --help`)
 */
import { TRAIN_HELP, trainCommand } from './train';

const HELP = `Usage: npm run dmae -- <command> [options]

Commands:
  train     train a MAE, or distil one into a smaller student (DMAE)
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
