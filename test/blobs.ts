/**
 * A labelled toy set with a known answer: K classes, each a random prototype image plus a little
 * noise, well separated in any continuous feature space (a linear probe or k-NN on it reaches
 * ~100 %). Half of the images are the validation split.
 */
import { makeDataset, type ImageDataset } from '../src/data/dataset';
import { randn, rng } from './numerics';

export function blobs(K: number, perClass: number, S: number, seed: number, o: { C?: 1 | 3; noise?: number } = {}): ImageDataset {
  const C = o.C ?? 1, noise = o.noise ?? 0.05;
  const HW = S * S, N = K * perClass * 2;
  const protos = Array.from({ length: K }, (_, k) => randn(C * HW, seed + k, 0.5));
  const images = new Uint8Array(N * C * HW), labels = new Int32Array(N);
  const r = rng(seed + 99);
  for (let i = 0; i < N; i++) {
    const k = i % K;
    labels[i] = k;
    for (let j = 0; j < C * HW; j++) images[i * C * HW + j] = Math.max(0, Math.min(255, Math.round(255 * (0.5 + protos[k][j] + noise * (2 * r() - 1)))));
  }
  return makeDataset({ name: 'blobs', source: 'test', images, labels, classNames: Array.from({ length: K }, (_, k) => `c${k}`), N, C, H: S, W: S, nTrain: N / 2 });
}
