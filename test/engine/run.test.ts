/**
 * The pieces the Node command and the browser worker share (src/engine/run.ts): dataset names,
 * the fixed validation set (same images and mask for a seed, independent of training), the
 * RGBA conversion of a reconstruction, and the limits a memory plan needs or exceeds.
 */
import { describe, expect, it } from 'vitest';
import { makeShapesDataset } from '../../src/data/procedural';
import { maeConfig } from '../../src/engine/config';
import { DEFAULT_BINDING_BYTES, builtinDatasetId, largestPart, limitsNeededFor, makeRunData, planExceedsLimits, rgbToRgba, shapesOptionsFor } from '../../src/engine/run';
import { resolveTrainConfig, trainMemoryPlan } from '../../src/engine/trainer';

const rc = (seed: number, batch = 4) => resolveTrainConfig({ mode: 'mae', model: maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 }), batch, totalSteps: 10, seed, maskRatio: 0.75 });

describe('engine/run', () => {
  it('names built-in datasets', () => {
    expect(builtinDatasetId('mnist')).toBe('mnist');
    expect(builtinDatasetId('procedural')).toBe('shapes');
    expect(builtinDatasetId('shapes')).toBe('shapes');
    expect(() => builtinDatasetId('cifar')).toThrow(/"cifar" must be mnist or procedural/);
    expect(shapesOptionsFor({ imgSize: 16, inChans: 1 })).toEqual({ size: 16, channels: 1 });
  });

  it('the validation set is fixed by the seed and untouched by training batches', () => {
    const ds = makeShapesDataset({ n: 100, size: 16, channels: 3 });
    const a = makeRunData(ds, rc(3)), b = makeRunData(ds, rc(3));
    a.loader.next();
    a.loader.next();
    const c = makeRunData(ds, rc(3));
    expect(c.val.imgs).toEqual(a.val.imgs);
    expect(b.val.masking.mask).toEqual(a.val.masking.mask);
    expect(a.val.imgs.length).toBe(4 * 3 * 16 * 16);
    expect(a.val.masking.mask.reduce((s, x) => s + x, 0)).toBe(4 * 12); // 12 of 16 patches masked per image
    expect(makeRunData(ds, rc(4)).val.masking.mask).not.toEqual(a.val.masking.mask);
    expect(a.summary).toMatchObject({ train: 90, val: 10, C: 3, H: 16, W: 16 });
    expect(() => makeRunData(ds, rc(3, 16))).toThrow(/10 validation images, fewer than one batch of 16/);
  });

  it('RGB → opaque RGBA in a buffer of its own', () => {
    const img = { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
    const out = rgbToRgba(img);
    expect([...out.data]).toEqual([1, 2, 3, 255, 4, 5, 6, 255]);
    expect(out.data.buffer.byteLength).toBe(8);
  });

  it('limits: none beyond the defaults for a small run; the largest buffer named when an adapter cannot hold it', () => {
    const small = trainMemoryPlan(rc(0));
    expect(limitsNeededFor(small)).toEqual({});
    expect(planExceedsLimits(small, { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 })).toBeNull();
    const big = trainMemoryPlan(resolveTrainConfig({ mode: 'mae', model: maeConfig('vit-base', { imgSize: 224, patchSize: 16, inChans: 3 }), batch: 256, totalSteps: 1, seed: 0 }));
    expect(big.largestBufferBytes).toBeGreaterThan(DEFAULT_BINDING_BYTES);
    expect(limitsNeededFor(big)).toEqual({ maxStorageBufferBindingSize: big.largestBufferBytes, maxBufferSize: big.largestBufferBytes });
    const why = planExceedsLimits(big, { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 });
    expect(why).toContain(`(${largestPart(big)})`);
    expect(why).toMatch(/at most 128.0 MiB in one buffer.*smaller model or batch/);
  });
});
