/** IDX (the MNIST family) and CIFAR binary imports: real layouts, loose, gzipped, in archives; bad files named; fuzzed. */
import { describe, expect, it } from 'vitest';
import { importDataset } from '../../src/data/import';
import { parseIdx, encodeIdx } from '../../src/data/formats/idx';
import { CIFAR10_CLASSES, CIFAR100_CLASSES, parseCifarBatch } from '../../src/data/formats/cifar';
import { Rng } from '../../src/data/rng';
import { bytesSource, cifarBatch, expectDatasetError, fuzz, gzip, idxFiles, mutations, randomBytes, tar, zip } from './fixtures';
import { expectSameBytes } from './fixtures';

const names = { ti: 'train-images-idx3-ubyte', tl: 'train-labels-idx1-ubyte', vi: 't10k-images-idx3-ubyte', vl: 't10k-labels-idx1-ubyte' };

describe('IDX', () => {
  const train = idxFiles(50, 1);
  const test = idxFiles(20, 2);

  it('imports the four MNIST files gzipped: t10k becomes the validation split, pixels and labels kept', async () => {
    const sources = [
      bytesSource(`mnist/${names.ti}.gz`, gzip(train.images)),
      bytesSource(`mnist/${names.tl}.gz`, gzip(train.labels)),
      bytesSource(`mnist/${names.vi}.gz`, gzip(test.images)),
      bytesSource(`mnist/${names.vl}.gz`, gzip(test.labels)),
    ];
    const { dataset: ds } = await importDataset(sources);
    expect([ds.N, ds.C, ds.H, ds.W, ds.nTrain]).toEqual([70, 1, 28, 28, 50]);
    expectSameBytes(ds.images.subarray(0, 50 * 784), train.pixels);
    expectSameBytes(ds.images.subarray(50 * 784), test.pixels);
    expect(Array.from(ds.labels!)).toEqual([...train.labelValues, ...test.labelValues]);
    expect(ds.classNames).toEqual(Array.from({ length: Math.max(...train.labelValues, ...test.labelValues) + 1 }, (_, i) => String(i)));
    expect(ds.source).toBe('idx');
  });

  it('imports raw files, a zip of them, and a tar.gz of them the same way', async () => {
    const raw = await importDataset([bytesSource(names.ti, train.images), bytesSource(names.tl, train.labels)]);
    const z = await importDataset([bytesSource('fashion.zip', zip({ [`fashion/${names.ti}.gz`]: gzip(train.images), [`fashion/${names.tl}`]: train.labels, 'fashion/README.md': new TextEncoder().encode('hi') }))]);
    const t = await importDataset([bytesSource('m.tar.gz', tar({ [names.ti]: train.images, [names.tl]: train.labels }, { gzip: true }))]);
    // No test files: a seeded stratified split, the same every time.
    expect(raw.dataset.nTrain).toBe(45);
    expectSameBytes(z.dataset.images, raw.dataset.images);
    expectSameBytes(t.dataset.images, raw.dataset.images);
    expect(z.dataset.classNames[0]).toBe('T-shirt/top'); // the path says Fashion-MNIST
    expect(z.warnings.join()).toMatch(/README\.md: skipped/);
  });

  it('transposes EMNIST, imports unlabelled images, resizes and converts to RGB on request', async () => {
    const img = new Uint8Array(2 * 2 * 3);
    img.set([1, 2, 3, 4, 5, 6]); // one 2×3 image... stored column-major for EMNIST
    const em = await importDataset([bytesSource('emnist-digits-train-images-idx3-ubyte', encodeIdx([1, 2, 3], img.subarray(0, 6)))], { valFraction: 0 });
    expectSameBytes(Array.from(em.dataset.images), [1, 3, 5, 2, 4, 6]);
    expect(em.dataset.labels).toBeNull();
    const big = await importDataset([bytesSource(names.ti, train.images), bytesSource(names.tl, train.labels)], { resolution: 32, channels: 3 });
    expect([big.dataset.C, big.dataset.H, big.dataset.W]).toEqual([3, 32, 32]);
  });

  it('names a wrong magic number, a truncated file, trailing data, and disagreeing counts', async () => {
    const wrong = train.images.slice();
    wrong[2] = 0x12;
    await expectDatasetError(importDataset([bytesSource(names.ti, wrong)]), 'bad-magic', names.ti, /magic number is 00 00 12 03/);
    await expectDatasetError(importDataset([bytesSource(names.ti, train.images.subarray(0, 5000))]), 'truncated', names.ti, /promises 50×28×28 = 39200 bytes of data but only 4984 follow/);
    await expectDatasetError(importDataset([bytesSource(names.ti, Uint8Array.of(...train.images, 1, 2))]), 'trailing-data', names.ti);
    const float = train.images.slice();
    float[2] = 0x0d;
    await expectDatasetError(importDataset([bytesSource(names.ti, float)]), 'unsupported', names.ti, /float32/);
    await expectDatasetError(importDataset([bytesSource(names.ti, train.images), bytesSource(names.tl, test.labels)]), 'mismatch', names.ti, /50 images but train-labels-idx1-ubyte holds 20 labels/);
    await expectDatasetError(importDataset([bytesSource(names.tl, train.labels)]), 'empty', names.tl, /no IDX images file/);
    // A header that promises 60000 images in a few bytes is refused before allocating 47 MB.
    await expectDatasetError(importDataset([bytesSource(names.ti, encodeIdx([60000, 28, 28], new Uint8Array(10)))]), 'truncated', names.ti);
    // A cut-short .gz
    const g = gzip(train.images);
    await expectDatasetError(importDataset([bytesSource(`${names.ti}.gz`, g.subarray(0, g.length - 100))]), 'truncated', `${names.ti}.gz`);
  });

  it('stops when cancelled', async () => {
    const ac = new AbortController();
    ac.abort();
    await expectDatasetError(importDataset([bytesSource(names.ti, train.images)], { signal: ac.signal }), 'cancelled', 'import');
  });

  it('fuzz: 300 mutations each of images, labels and a gzip, and 100 random inputs', async () => {
    const small = idxFiles(6, 3, 8, 8);
    const parse = (name: string) => async (d: Uint8Array) => (await importDataset([bytesSource(name, d)], { valFraction: 0 })).dataset;
    await fuzz(mutations(small.images, 300, 4), parse(names.ti));
    await fuzz(mutations(small.labels, 300, 5), (d) => parseIdx(d, names.tl));
    await fuzz(mutations(gzip(small.images), 300, 6), parse(`${names.ti}.gz`));
    const rng = new Rng(7);
    await fuzz(Array.from({ length: 100 }, () => Uint8Array.of(0, 0, 8, 3, ...randomBytes(rng, 400))), parse(names.ti));
    // Pairs where either file is mutated.
    const pairs = mutations(small.labels, 100, 8);
    await fuzz(pairs, async (d) => (await importDataset([bytesSource(names.ti, small.images), bytesSource(names.tl, d)])).dataset);
  });
});

describe('CIFAR', () => {
  it('imports CIFAR-10 binary batches from the distributed tar.gz layout, test_batch as validation', async () => {
    const b1 = cifarBatch('cifar-10', 30, 1);
    const b2 = cifarBatch('cifar-10', 30, 2);
    const tb = cifarBatch('cifar-10', 10, 3);
    const meta = new TextEncoder().encode(CIFAR10_CLASSES.join('\n') + '\n\n');
    const tgz = tar({ 'cifar-10-batches-bin/data_batch_1.bin': b1, 'cifar-10-batches-bin/data_batch_2.bin': b2, 'cifar-10-batches-bin/test_batch.bin': tb, 'cifar-10-batches-bin/batches.meta.txt': meta, 'cifar-10-batches-bin/readme.html': new TextEncoder().encode('<p>') }, { gzip: true });
    const { dataset: ds } = await importDataset([bytesSource('cifar-10-binary.tar.gz', tgz)]);
    expect([ds.N, ds.C, ds.H, ds.W, ds.nTrain]).toEqual([70, 3, 32, 32, 60]);
    expect(ds.classNames).toEqual(CIFAR10_CLASSES);
    expect(ds.labels![0]).toBe(b1[0]);
    expectSameBytes(ds.images.subarray(0, 3072), b1.subarray(1, 3073));
    expect(ds.labels![60]).toBe(tb[0]);
    expect(ds.mean.length).toBe(3);
  });

  it('imports CIFAR-100 loose batches with fine or coarse labels', async () => {
    const tr = cifarBatch('cifar-100', 25, 4);
    const te = cifarBatch('cifar-100', 5, 5);
    const src = [bytesSource('cifar-100-binary/train.bin', tr), bytesSource('cifar-100-binary/test.bin', te)];
    const fine = (await importDataset(src)).dataset;
    expect([fine.N, fine.nTrain, fine.classNames.length]).toEqual([30, 25, 100]);
    expect(fine.classNames).toEqual(CIFAR100_CLASSES);
    expect(fine.labels![0]).toBe(tr[1]);
    const coarse = (await importDataset(src, { cifar100Labels: 'coarse' })).dataset;
    expect(coarse.labels![0]).toBe(tr[0]);
    expect(coarse.classNames).toHaveLength(20);
  });

  it('names a truncated batch, a bad label and the Python version', async () => {
    const b = cifarBatch('cifar-10', 5, 6);
    await expectDatasetError(importDataset([bytesSource('data_batch_1.bin', b.subarray(0, b.length - 7))]), 'truncated', 'data_batch_1.bin', /4 records and 3066 bytes over/);
    const bad = b.slice();
    bad[3073] = 42;
    await expectDatasetError(importDataset([bytesSource('data_batch_1.bin', bad)]), 'corrupt', 'data_batch_1.bin', /record 1 has label 42/);
    await expectDatasetError(importDataset([bytesSource('cifar-10-batches-py/data_batch_1', new Uint8Array(100))]), 'unsupported', 'cifar-10-batches-py/data_batch_1', /pickle/);
    await expectDatasetError(() => parseCifarBatch(new Uint8Array(0), 'x.bin', 'cifar-10'), 'empty', 'x.bin');
  });

  it('fuzz: 300 mutations of a batch, 200 of a tar.gz holding batches', async () => {
    const b = cifarBatch('cifar-10', 3, 7);
    await fuzz(mutations(b, 300, 8), async (d) => (await importDataset([bytesSource('data_batch_1.bin', d)], { valFraction: 0 })).dataset);
    const tgz = tar({ 'c/data_batch_1.bin': cifarBatch('cifar-10', 2, 9), 'c/test_batch.bin': cifarBatch('cifar-10', 1, 10) }, { gzip: true });
    await fuzz(mutations(tgz, 200, 11), async (d) => (await importDataset([bytesSource('cifar.tar.gz', d)])).dataset);
  });
});
