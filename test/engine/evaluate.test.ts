/**
 * The environment-free evaluation (src/engine/evaluate.ts) on real WebGPU: seeded subsets of a
 * dataset's splits, evaluateEncoder with subsets and progress (a separable toy set reaches
 * ~100 % with the probe and k-NN; random labels are near chance; an unlabelled set is refused by
 * name), and the live KnnMonitor: the same accuracy from the training model's arena as from a
 * ParamMap and as evaluateEncoder's k-NN on the same subset, and a run trained with the monitor
 * measuring between its steps gives the same losses and parameters, bit for bit, as one without.
 * (test/engine/classifier.test.ts checks the classifier itself on the same kinds of known answers.)
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobs } from '../blobs';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../../src/cli/train';
import { makeDataset } from '../../src/data/dataset';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import { encoderParamLayout } from '../../src/engine/classifier';
import { maeConfig, type MaeConfig } from '../../src/engine/config';
import { KnnMonitor, evaluateEncoder, subsetDataset, type EvaluateProgress } from '../../src/engine/evaluate';
import { initParams } from '../../src/engine/init';
import { maeParamLayout } from '../../src/engine/params';
import { Trainer, type StepMetrics } from '../../src/engine/trainer';
import { quiet, rng, testGpu } from '../helpers';

const tiny = (o: Partial<MaeConfig> = {}): MaeConfig =>
  maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { embedDim: 16, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderNumHeads: 2, ...o });


describe('subsetDataset', () => {
  const ds = makeShapesDataset({ n: 300, size: 8, channels: 1, seed: 2 });
  it('takes a seeded subset of each split, in order, with the whole dataset\'s statistics', () => {
    const a = subsetDataset(ds, { maxTrain: 50, maxVal: 10, seed: 3 });
    expect([a.N, a.nTrain]).toEqual([60, 50]);
    expect(a.mean).toEqual(ds.mean);
    expect(a.std).toEqual(ds.std);
    expect(a.classNames).toEqual(ds.classNames);
    // Every subset image is one of its split's images, with its label.
    const S = 64;
    const key = (x: Uint8Array, i: number) => x.subarray(i * S, (i + 1) * S).join(',');
    const train = new Map(Array.from({ length: ds.nTrain }, (_, i) => [key(ds.images, i), ds.labels![i]]));
    const val = new Map(Array.from({ length: ds.N - ds.nTrain }, (_, i) => [key(ds.images, ds.nTrain + i), ds.labels![ds.nTrain + i]]));
    for (let i = 0; i < a.N; i++) expect((i < 50 ? train : val).get(key(a.images, i))).toBe(a.labels![i]);
    const b = subsetDataset(ds, { maxTrain: 50, maxVal: 10, seed: 3 });
    expect(b.images).toEqual(a.images);
    const c = subsetDataset(ds, { maxTrain: 50, maxVal: 10, seed: 4 });
    expect(c.images).not.toEqual(a.images);
  });

  it('returns the dataset itself when nothing is cut; refuses a bad size', () => {
    expect(subsetDataset(ds, {})).toBe(ds);
    expect(subsetDataset(ds, { maxTrain: 10_000, maxVal: 10_000 })).toBe(ds);
    expect(subsetDataset(ds, { maxVal: 5 }).nTrain).toBe(ds.nTrain);
    expect(() => subsetDataset(ds, { maxTrain: 0 })).toThrow(/maxTrain 0 must be a whole number/);
  });
});

describe('evaluateEncoder', () => {
  it('a separable toy set: the linear probe and k-NN reach ~100 % on seeded subsets; progress runs features → train → predict', async () => {
    const gpu = await testGpu();
    const cfg = tiny();
    const ds = blobs(4, 60, 8, 3); // 240 training, 240 validation images
    const enc = initParams(encoderParamLayout(cfg), 2, 5);
    const seen: EvaluateProgress[] = [];
    const { result: r } = await evaluateEncoder(gpu, cfg, enc, ds, { method: 'linprobe', maxTrain: 96, maxVal: 40, steps: 60, lr: 3e-2, batch: 16, seed: 1, onProgress: (p) => seen.push(p) });
    expect(r.accuracy, `probe (confusion ${JSON.stringify(r.confusion)})`).toBeGreaterThanOrEqual(0.97);
    expect(r.count).toBe(40);
    expect(r.data).toMatchObject({ name: 'blobs', train: 96, val: 40 });
    expect(r.options).toMatchObject({ maxTrain: 96, maxVal: 40, steps: 60 });
    expect(r.confusion.flat().reduce((a, b) => a + b, 0)).toBe(40);
    const phases = seen.map((p) => p.phase).filter((p, i, a) => p !== a[i - 1]);
    expect(phases).toEqual(['features', 'train', 'predict']);
    for (const p of seen) expect(p.done).toBeLessThanOrEqual(p.total);
    expect(seen.filter((p) => p.phase === 'features').at(-1)).toEqual({ phase: 'features', done: 136, total: 136 });
    expect(seen.at(-1)).toEqual({ phase: 'predict', done: 40, total: 40 });

    const knn = (await evaluateEncoder(gpu, cfg, enc, ds, { method: 'knn', k: 5, maxTrain: 96, maxVal: 40, seed: 1 })).result;
    expect(knn.accuracy, 'k-NN').toBeGreaterThanOrEqual(0.97);
    expect(knn.perClass.map((c) => c.name)).toEqual(['c0', 'c1', 'c2', 'c3']);
  });

  it('a random encoder on random labels is near chance; an unlabelled dataset is refused by name', async () => {
    const gpu = await testGpu();
    const cfg = tiny();
    const K = 4, N = 480, r = rng(11);
    const images = Uint8Array.from({ length: N * 64 }, () => Math.floor(256 * r()));
    const labels = Int32Array.from({ length: N }, () => Math.floor(K * r()));
    const ds = makeDataset({ name: 'noise', source: 'test', images, labels, classNames: ['a', 'b', 'c', 'd'], N, C: 1, H: 8, W: 8, nTrain: 240 });
    const enc = initParams(encoderParamLayout(cfg), 2, 9);
    const acc = (await evaluateEncoder(gpu, cfg, enc, ds, { method: 'knn', pool: 'mean' })).result.accuracy;
    // Chance is 0.25; with 240 queries the standard deviation is about 0.028.
    expect(acc).toBeGreaterThan(0.13);
    expect(acc).toBeLessThan(0.37);
    const unlabelled = makeDataset({ name: 'no-labels', source: 'test', images, labels: null, classNames: [], N, C: 1, H: 8, W: 8, nTrain: 240 });
    await expect(evaluateEncoder(gpu, cfg, enc, unlabelled, { method: 'knn' })).rejects.toThrow(/no-labels has no labels/);
  });

  it('scratch: k-NN and the probe of the recipe\'s random initialisation (seeded), whatever weights are given', async () => {
    const gpu = await testGpu();
    const cfg = tiny(), ds = blobs(3, 40, 8, 5);
    const init = initParams(maeParamLayout(cfg), 2, 7);
    const trained = initParams(maeParamLayout(cfg), 2, 99); // stands for a run's weights: --scratch must ignore them
    for (const method of ['knn', 'linprobe'] as const) {
      const o = { method, pool: 'mean' as const, seed: 7, steps: 20 };
      const a = (await evaluateEncoder(gpu, cfg, trained, ds, { ...o, scratch: true })).result;
      const b = (await evaluateEncoder(gpu, cfg, init, ds, o)).result;
      expect(a.options.scratch).toBe(true);
      expect(a.confusion).toEqual(b.confusion);
    }
  });
});

describe('KnnMonitor', () => {
  const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 }, { embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2 });
  const ds = makeShapesDataset({ n: 600, size: 16, channels: 1, seed: 1 });
  const train = (gpu: Awaited<ReturnType<typeof testGpu>>) => new Trainer(gpu, { mode: 'mae', model: cfg, batch: 8, totalSteps: 8, lr: 2e-3, warmupSteps: 2, seed: 4 },
    new DataLoader(ds, { split: 'train', batchSize: 8, seed: 4, augment: false }));

  it('measures the same from the training model\'s arena, from a ParamMap, and as evaluateEncoder\'s k-NN on the same subset', async () => {
    const gpu = await testGpu();
    const t = train(gpu);
    await t.train({ until: 3 });
    const monitor = new KnnMonitor(gpu, cfg, ds, { bank: 200, queries: 50, seed: 2, batch: 50 });
    expect([monitor.bank, monitor.queries]).toEqual([200, 50]);
    const a = await monitor.measure(t.model.params);
    const params = await t.readParams();
    const b = await monitor.measure(params);
    expect(b.accuracy).toBe(a.accuracy);
    const e = (await evaluateEncoder(gpu, cfg, params, ds, { method: 'knn', maxTrain: 200, maxVal: 50, seed: 2, batch: 50 })).result;
    expect(e.accuracy).toBe(a.accuracy);
    expect(a.accuracy, 'shapes are above chance (1/7, and 50 queries: sd 0.05) even for a barely trained encoder').toBeGreaterThan(0.22);
    monitor.destroy();
    t.destroy();
  });

  it('a run measured every 2 steps gives the same losses and parameters, bit for bit, as one never measured', async () => {
    const gpu = await testGpu();
    const plain = train(gpu), watched = train(gpu);
    const a: StepMetrics[] = [], b: StepMetrics[] = [];
    await plain.train({ onMetrics: (m) => void a.push(m) });
    const monitor = new KnnMonitor(gpu, cfg, ds, { bank: 100, queries: 40, seed: 4 });
    const acc: number[] = [(await monitor.measure(watched.model.params)).accuracy];
    while (watched.step < 8) {
      await watched.train({ until: watched.step + 2, onMetrics: (m) => void b.push(m) });
      acc.push((await monitor.measure(watched.model.params)).accuracy);
    }
    const numbers = (ms: StepMetrics[]) => ms.map((m) => [m.step, m.loss, m.pix, m.gradNorm, m.lr]);
    expect(numbers(b)).toEqual(numbers(a));
    const pa = await plain.readParams(), pb = await watched.readParams();
    for (const [name, v] of pa) expect(pb.get(name), name).toEqual(v);
    expect(acc).toHaveLength(5);
    for (const x of acc) expect(x >= 0 && x <= 1).toBe(true);
    monitor.destroy();
    plain.destroy();
    watched.destroy();
  });

  it('train --knn-every N: a knn line at 0, every N steps and the end; the step lines equal a run without it', { timeout: 180_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmae-knn-'));
    const args = ['--dataset', 'procedural', '--img-size', '16', '--channels', '1', '--batch', '4', '--lr', '1e-3', '--seed', '3', '--embed-dim', '16', '--depth', '1', '--heads', '2',
      '--decoder-dim', '16', '--decoder-heads', '2', '--steps', '5', '--recon-every', '5'];
    const lines = (d: string) => readFileSync(join(d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(await quiet(() => trainCommand([...args, '--out', join(dir, 'plain')]))).toBe(0);
    expect(await quiet(() => trainCommand([...args, '--knn-every', '2', '--out', join(dir, 'knn')]))).toBe(0);
    const plain = lines(join(dir, 'plain')), knn = lines(join(dir, 'knn'));
    const steps = (m: Record<string, unknown>[]) => m.filter((x) => 'loss' in x).map(({ elapsedMs: _e, imagesPerSec: _i, ...rest }) => rest);
    expect(steps(knn)).toEqual(steps(plain));
    const points = knn.filter((x) => 'knn' in x) as { step: number; knn: { accuracy: number; bank: number; queries: number } }[];
    expect(points.map((p) => p.step)).toEqual([0, 2, 4, 5]);
    for (const p of points) {
      expect(p.knn.accuracy).toBeGreaterThanOrEqual(0);
      expect(p.knn.accuracy).toBeLessThanOrEqual(1);
      expect([p.knn.bank, p.knn.queries]).toEqual([1000, 200]); // shapes: 1800 training, 200 validation images
    }
    expect(JSON.parse(readFileSync(join(dir, 'knn', 'config.json'), 'utf8')).knnEvery).toBe(2);
  });
});
