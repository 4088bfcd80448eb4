/** The loader: deterministic order and augmentation, exact state restore, MAE's crop, normalisation; and the helpers it stands on. */
import { describe, expect, it } from 'vitest';
import { BatchPrefetcher, DataLoader, randomResizedCropParams, statsForChannels } from '../../src/data/loader';
import { channelStats, makeDataset, splitOrder, withChannels, type ImageDataset } from '../../src/data/dataset';
import { resizeCHW, resampleCHW } from '../../src/data/resize';
import { decodedToCHW } from '../../src/data/import';
import { makeShapesDataset } from '../../src/data/procedural';
import { Rng } from '../../src/data/rng';
import { expectSameBytes } from './fixtures';

function rampDataset(N = 40, C: 1 | 3 = 1, H = 8, W = 8): ImageDataset {
  const images = new Uint8Array(N * C * H * W);
  for (let i = 0; i < images.length; i++) images[i] = (i * 37 + (i >> 6)) & 0xff;
  const labels = Int32Array.from({ length: N }, (_, i) => i % 4);
  return makeDataset({ name: 'ramp', source: 'test', images, labels, classNames: ['a', 'b', 'c', 'd'], N, C, H, W, nTrain: N - 8 });
}

describe('statistics and resizing', () => {
  it('mean/std per channel over the training split, in [0, 1] units', () => {
    // Two 2×2 RGB samples; the second is validation and must not count.
    const images = new Uint8Array([0, 255, 0, 255, 51, 51, 51, 51, 0, 0, 255, 255, /* val */ 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
    const ds = makeDataset({ name: 't', source: 't', images, labels: null, classNames: [], N: 2, C: 3, H: 2, W: 2, nTrain: 1 });
    expect(ds.mean[0]).toBeCloseTo(0.5, 12);
    expect(ds.std[0]).toBeCloseTo(0.5, 12);
    expect(ds.mean[1]).toBeCloseTo(0.2, 12);
    expect(ds.std[1]).toBe(1); // constant channel: std 1, not 0
    expect(ds.mean[2]).toBeCloseTo(0.5, 12);
    const s = channelStats(images, 2, 3, 4);
    expect(s.mean[1]).toBeCloseTo((51 * 4 + 9 * 4) / 8 / 255, 12);
  });

  it('resize keeps constants, averages when shrinking, mirrors when flipped', () => {
    const flat = new Uint8Array(3 * 10 * 12).fill(77);
    expect(Array.from(new Set(resizeCHW(flat, 3, 10, 12, 5, 7)))).toEqual([77]);
    const checker = Uint8Array.from({ length: 64 }, (_, i) => (((i >> 3) + i) & 1 ? 255 : 0));
    const small = resizeCHW(checker, 1, 8, 8, 2, 2, 'stretch');
    for (const v of small) expect(Math.abs(v - 127.5)).toBeLessThan(1.5); // antialiased, not aliased to 0 or 255
    const ramp = Uint8Array.from({ length: 4 }, (_, i) => i * 10);
    const out = new Float32Array(4);
    resampleCHW(out, 0, ramp, 0, 1, 1, 4, { x: 0, y: 0, w: 4, h: 1 }, 1, 4, true);
    expect(Array.from(out)).toEqual([30, 20, 10, 0]);
    const up = resizeCHW(Uint8Array.of(0, 100), 1, 1, 2, 1, 4, 'stretch');
    expect(Array.from(up)).toEqual([0, 25, 75, 100]); // bilinear
  });

  it('channel conversion: gray→RGB repeats, RGB→gray is luma; alpha over black', () => {
    const ds = rampDataset(10, 1);
    const rgb = withChannels(ds, 3);
    expectSameBytes(rgb.images.subarray(64, 128), ds.images.subarray(0, 64));
    expect(rgb.mean).toEqual([ds.mean[0], ds.mean[0], ds.mean[0]]);
    const gray = decodedToCHW({ width: 1, height: 1, channels: 4, data: Uint8Array.of(255, 0, 0, 128) }, 1);
    expect(gray[0]).toBe(Math.round(0.299 * 128));
    const s3 = statsForChannels(ds, 3);
    expect(s3.std).toEqual([ds.std[0], ds.std[0], ds.std[0]]);
  });

  it('the seeded split is stratified, exact in size and fixed', () => {
    const labels = Int32Array.from({ length: 103 }, (_, i) => (i < 90 ? i % 3 : 3));
    const a = splitOrder(103, labels, 0.1, 5);
    const b = splitOrder(103, labels, 0.1, 5);
    expect(a.order).toEqual(b.order);
    expect(a.nTrain).toBe(93);
    expect(new Set(a.order).size).toBe(103);
    const valClasses = Array.from(a.order.subarray(a.nTrain), (i) => labels[i]);
    for (const c of [0, 1, 2, 3]) expect(valClasses.filter((x) => x === c).length).toBeGreaterThanOrEqual(1);
  });
});

describe('RandomResizedCrop', () => {
  it('crops an area fraction in [0.2, 1] of the image and an aspect ratio in [3/4, 4/3], as torchvision', () => {
    const rng = new Rng(1);
    const fractions: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const r = randomResizedCropParams(rng, 224, 224, [0.2, 1], [3 / 4, 4 / 3]);
      expect(r.x >= 0 && r.y >= 0 && r.x + r.w <= 224 && r.y + r.h <= 224).toBe(true);
      const f = (r.w * r.h) / (224 * 224);
      fractions.push(f);
      // Rounding w and h to whole pixels moves the area and ratio a little past the ranges.
      expect(f).toBeGreaterThan(0.2 - 0.01);
      expect(r.w / r.h).toBeGreaterThan(0.75 - 0.01);
      expect(r.w / r.h).toBeLessThan(4 / 3 + 0.01);
    }
    // A try fits when f ≤ min(r, 1/r), so large areas are drawn less often than uniform:
    // E[f] = ∫ f·g / ∫ g over [0.2, 1] with g(f) = min(1, −ln f / ln(4/3)) = 0.5384.
    const mean = fractions.reduce((a, b) => a + b, 0) / fractions.length;
    expect(Math.abs(mean - 0.5384)).toBeLessThan(0.012);
    expect(Math.min(...fractions)).toBeLessThan(0.22);
    expect(Math.max(...fractions)).toBeGreaterThan(0.97);
  });

  it('falls back to a centre crop clamped to the ratio after 10 failed tries', () => {
    const rng = new Rng(2);
    // A 1×100 strip: no crop with ratio in [3/4, 4/3] fits, every time.
    const r = randomResizedCropParams(rng, 1, 100, [0.2, 1], [3 / 4, 4 / 3]);
    expect(r).toEqual({ x: 49, y: 0, w: Math.round(4 / 3), h: 1 });
  });
});

describe('DataLoader', () => {
  const ds = rampDataset();

  it('gives normalised NCHW batches; validation in order, unaugmented', () => {
    const val = new DataLoader(ds, { split: 'val', batchSize: 3, seed: 0 });
    expect(val.batchesPerEpoch).toBe(3);
    const b = val.next();
    expect(Array.from(b.indices)).toEqual([32, 33, 34]);
    expect(b.x[0]).toBeCloseTo((ds.images[32 * 64] / 255 - ds.mean[0]) / ds.std[0], 5);
    expect(Array.from(b.labels!)).toEqual([0, 1, 2]);
    val.next();
    expect(val.next().size).toBe(2); // the last, partial batch
    expect(val.next().epoch).toBe(1);
  });

  it('each epoch is a permutation of the training split; seeds and epochs differ', () => {
    const l = new DataLoader(ds, { split: 'train', batchSize: 8, seed: 7 });
    const epoch = (ld: DataLoader) => Array.from({ length: ld.batchesPerEpoch }, () => Array.from(ld.next().indices)).flat();
    const e0 = epoch(l);
    const e1 = epoch(l);
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    expect(e1).not.toEqual(e0);
    expect(epoch(new DataLoader(ds, { split: 'train', batchSize: 8, seed: 8 }))).not.toEqual(e0);
    expect(epoch(new DataLoader(ds, { split: 'train', batchSize: 8, seed: 7 }))).toEqual(e0);
  });

  it('restores its state exactly: the same batches, bit for bit, after a save at any point', () => {
    const opts = { split: 'train' as const, batchSize: 5, seed: 3, resolution: 6, channels: 3 as const };
    const a = new DataLoader(ds, opts);
    for (let i = 0; i < 9; i++) a.next(); // into the third epoch (6 batches per epoch)
    const saved = JSON.parse(JSON.stringify(a.getState()));
    const expected = Array.from({ length: 8 }, () => a.next());
    const b = new DataLoader(ds, opts, saved);
    for (const e of expected) {
      const got = b.next();
      expect(got.indices).toEqual(e.indices);
      expectSameBytes(got.x, e.x);
      expect([got.epoch, got.step]).toEqual([e.epoch, e.step]);
    }
  });

  it('augments train batches (crops differ per epoch), can turn flipping off, and resamples to the asked size', () => {
    const shapes = makeShapesDataset({ n: 20, size: 16, seed: 1 });
    const l = new DataLoader(shapes, { split: 'train', batchSize: 18, seed: 1, resolution: 12 });
    const a = l.next();
    const b = l.next();
    expect(a.x.length).toBe(18 * 3 * 12 * 12);
    expect(a.x).not.toEqual(b.x);
    const noFlip = new DataLoader(shapes, { split: 'train', batchSize: 18, seed: 1, augment: { hflip: false } });
    for (let p = 0; p < 18; p++) expect(noFlip.augmentationOf(p).flip).toBe(false);
    const withFlip = new DataLoader(shapes, { split: 'train', batchSize: 18, seed: 1 });
    const flips = Array.from({ length: 18 }, (_, p) => withFlip.augmentationOf(p).flip);
    expect(flips.some(Boolean) && !flips.every(Boolean)).toBe(true);
    const none = new DataLoader(shapes, { split: 'train', batchSize: 2, seed: 1, augment: false, shuffle: false });
    const x = none.next().x;
    expect(x[0]).toBeCloseTo((shapes.images[0] / 255 - shapes.mean[0]) / shapes.std[0], 5);
  });

  it('normalised training pixels have mean ≈ 0 and std ≈ 1 without augmentation', () => {
    const shapes = makeShapesDataset({ n: 200, size: 12, seed: 2, channels: 1 });
    const l = new DataLoader(shapes, { split: 'train', batchSize: shapes.nTrain, seed: 0, augment: false });
    const x = l.next().x;
    const m = x.reduce((a, b) => a + b, 0) / x.length;
    const sd = Math.sqrt(x.reduce((a, b) => a + (b - m) ** 2, 0) / x.length);
    expect(Math.abs(m)).toBeLessThan(1e-4);
    expect(Math.abs(sd - 1)).toBeLessThan(1e-4);
  });

  it('the prefetcher hands out the same stream and reports the state of what it handed out', async () => {
    const opts = { split: 'train' as const, batchSize: 4, seed: 9 };
    const plain = new DataLoader(ds, opts);
    const pre = new BatchPrefetcher(new DataLoader(ds, opts));
    for (let i = 0; i < 10; i++) {
      const want = plain.next();
      const got = await pre.next();
      expect(got.indices).toEqual(want.indices);
      expectSameBytes(got.x, want.x);
    }
    expect(await pre.state()).toEqual(plain.getState());
  });

  it('refuses impossible options with a DatasetError', () => {
    expect(() => new DataLoader(ds, { split: 'train', batchSize: 100, seed: 0 })).toThrow(/fewer than one batch/);
    expect(() => new DataLoader(ds, { split: 'train', batchSize: 0, seed: 0 })).toThrow(/batch size/);
    expect(() => new DataLoader(ds, { split: 'train', batchSize: 2, seed: 0 }, { seed: 0, epoch: 0, position: 999 })).toThrow(/loader state/);
  });
});
