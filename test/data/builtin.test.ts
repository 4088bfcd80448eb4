/** The built-ins: MNIST's binary round trip (labels kept, split fixed), Shapes, and the DMDS format as hostile input. */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { buildMnistDataset, buildMnistFile } from '../../src/data/mnist-build';
import { loadBuiltinNode, MNIST_FILE } from '../../src/data/node';
import { decodeDmds, encodeDmds } from '../../src/data/formats/dmds';
import { makeShapesDataset, SHAPE_CLASSES } from '../../src/data/procedural';
import { BUILTIN_DATASETS, mnistUrl } from '../../src/data/builtin';
import { Rng } from '../../src/data/rng';
import { expectDatasetError, expectSameBytes, fuzz, gzip, mutations, randomBytes } from './fixtures';

describe('built-in MNIST', () => {
  const ds = buildMnistDataset();

  it('holds the 10,000 digits of the mnist package with their labels, 9,000 / 1,000 stratified', () => {
    expect([ds.N, ds.C, ds.H, ds.W, ds.nTrain]).toEqual([10000, 1, 28, 28, 9000]);
    expect(ds.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const require = createRequire(import.meta.url);
    // Every digit of the package is in the dataset under its label (checked by content for digit 7's first sample).
    for (let d = 0; d < 10; d++) {
      const pkg = JSON.parse(readFileSync(require.resolve(`mnist/src/digits/${d}.json`), 'utf8')).data as number[];
      const count = pkg.length / 784;
      expect(ds.labels!.filter((l) => l === d).length).toBe(count);
      const val = ds.labels!.subarray(9000).filter((l) => l === d).length;
      expect(Math.abs(val - count / 10)).toBeLessThanOrEqual(1);
      if (d === 7) {
        const first = Uint8Array.from(pkg.slice(0, 784), (v) => Math.round(v * 255));
        const n = Array.from({ length: ds.N }, (_, i) => i).find((i) => ds.images.subarray(i * 784, (i + 1) * 784).every((v, k) => v === first[k]));
        expect(n).toBeDefined();
        expect(ds.labels![n!]).toBe(7);
      }
    }
    expect(ds.mean[0]).toBeGreaterThan(0.1);
    expect(ds.mean[0]).toBeLessThan(0.15); // MNIST's well-known 0.1307
    expect(ds.std[0]).toBeGreaterThan(0.28);
    expect(ds.std[0]).toBeLessThan(0.33); // and 0.3081
  });

  const file = buildMnistFile(ds);

  it('round-trips through the compact file, much smaller than the JSON', () => {
    expect(file.length).toBeLessThan(2.5 * 2 ** 20);
    const back = decodeDmds(file, 'mnist.dmds.gz');
    expectSameBytes(back.images, ds.images, 'images');
    expectSameBytes(back.labels, ds.labels, 'labels');
    expect([back.nTrain, back.mean, back.std, back.name, back.source]).toEqual([ds.nTrain, ds.mean, ds.std, ds.name, ds.source]);
  });

  it('is byte-identical build to build: the file in public/datasets (when built) is this one, and Node loads it', async () => {
    // A stale file means `npm run datasets` was not run after the format or the split changed.
    const built = existsSync(MNIST_FILE) ? new Uint8Array(readFileSync(MNIST_FILE)) : buildMnistFile(buildMnistDataset());
    expectSameBytes(built, file, `${MNIST_FILE} (stale? run npm run datasets)`);
    const loaded = await loadBuiltinNode('mnist');
    expectSameBytes(loaded.labels, ds.labels, 'labels');
    expect(mnistUrl('/studio')).toBe('/studio/datasets/mnist.dmds.gz');
    expect(BUILTIN_DATASETS.find((b) => b.id === 'mnist')).toMatchObject({ N: 10000, flipSafe: false });
  });
});

describe('Shapes', () => {
  it('is seeded, labelled, any resolution, gray or RGB, with distinct classes', () => {
    const a = makeShapesDataset({ n: 70, size: 24, seed: 5 });
    const b = makeShapesDataset({ n: 70, size: 24, seed: 5 });
    const c = makeShapesDataset({ n: 70, size: 24, seed: 6 });
    expectSameBytes(a.images, b.images);
    expect(a.images).not.toEqual(c.images);
    expect([a.N, a.C, a.H, a.W, a.nTrain]).toEqual([70, 3, 24, 24, 63]);
    expect(a.classNames).toEqual([...SHAPE_CLASSES]);
    expect(new Set(a.labels).size).toBe(SHAPE_CLASSES.length);
    const g = makeShapesDataset({ n: 10, size: 7, channels: 1 });
    expect([g.C, g.H]).toEqual([1, 7]);
    expect(makeShapesDataset({ n: 3, size: 100 }).images.length).toBe(3 * 3 * 100 * 100);
    // Sample i depends on (seed, i) only: a longer set starts with the shorter one.
    expectSameBytes(makeShapesDataset({ n: 80, size: 24, seed: 5 }).images.subarray(0, 60 * 3 * 24 * 24), a.images.subarray(0, 60 * 3 * 24 * 24));
    expect(() => makeShapesDataset({ size: 2 })).toThrow(/size = 2/);
  });
});

describe('DMDS', () => {
  const small = makeShapesDataset({ n: 6, size: 6, seed: 1 });

  it('round-trips a dataset, gzipped or not, and names bad files', async () => {
    const raw = encodeDmds(small);
    for (const bytes of [raw, gzip(raw)]) {
      const back = decodeDmds(bytes, 'x.dmds');
      expectSameBytes(back.images, small.images);
      expectSameBytes(back.labels, small.labels);
      expect(back.classNames).toEqual(small.classNames);
    }
    await expectDatasetError(() => decodeDmds(raw.subarray(0, raw.length - 3), 'cut.dmds'), 'truncated', 'cut.dmds');
    await expectDatasetError(() => decodeDmds(new TextEncoder().encode('hello, world! not a dataset at all......'), 'x.dmds'), 'bad-magic', 'x.dmds');
    const bad = raw.slice();
    bad[raw.length - 1] = 200; // a label past the class count
    await expectDatasetError(() => decodeDmds(bad, 'l.dmds'), 'corrupt', 'l.dmds', /label 200/);
  });

  it('fuzz: 300 mutations, 100 of the gzipped file, 100 random inputs', async () => {
    const raw = encodeDmds(small);
    await fuzz(mutations(raw, 300, 1), (d) => decodeDmds(d, 'f.dmds'));
    await fuzz(mutations(gzip(raw), 100, 2), (d) => decodeDmds(d, 'f.dmds.gz'));
    const rng = new Rng(3);
    await fuzz(Array.from({ length: 100 }, () => Uint8Array.of(0x44, 0x4d, 0x44, 0x53, ...randomBytes(rng, 300))), (d) => decodeDmds(d, 'r.dmds'));
  });
});
