/** IndexedDB persistence (fake-indexeddb in Node; the real thing is exercised in e2e/datasets.spec.ts). */
import { describe, expect, it } from 'vitest';
import { IDBFactory } from 'fake-indexeddb';
import { DatasetStore, makeThumbnails } from '../../src/data/store-idb';
import { makeShapesDataset } from '../../src/data/procedural';
import { DatasetError } from '../../src/data/errors';
import { expectSameBytes } from './fixtures';

describe('DatasetStore', () => {
  it('saves, lists (size, classes, thumbnails), loads and removes datasets', async () => {
    const factory = new IDBFactory();
    const store = await DatasetStore.open({ factory });
    const a = makeShapesDataset({ n: 30, size: 16, seed: 1 });
    const b = makeShapesDataset({ n: 12, size: 8, seed: 2, channels: 1 });
    const ia = await store.save(a);
    const ib = await store.save(b);
    const list = await store.list();
    expect(list.map((d) => d.id)).toEqual([ia.id, ib.id]);
    expect(list[0]).toMatchObject({ name: a.name, N: 30, numClasses: 7, C: 3, H: 16, W: 16, bytes: 30 * 3 * 256 + 30 * 4 });
    expect(list[0].thumbnails.length).toBe(8);
    expect(new Set(list[0].thumbnails.slice(0, 7).map((t) => t.label)).size).toBe(7); // one per class first
    expect(list[0].thumbnails[0].rgba.length).toBe(16 * 16 * 4);
    expect(list[0].thumbnails[0].label).toBe(a.classNames[a.labels![0]]);
    store.close();
    // A reload: a new connection finds them.
    const again = await DatasetStore.open({ factory });
    const back = await again.load(ia.id);
    expectSameBytes(back.images, a.images);
    expectSameBytes(back.labels, a.labels);
    await again.remove(ia.id);
    expect((await again.list()).map((d) => d.id)).toEqual([ib.id]);
    await expect(again.load(ia.id)).rejects.toThrow(DatasetError);
    again.close();
  });

  it('a save that fails half-way writes nothing and leaves stored datasets untouched', async () => {
    const factory = new IDBFactory();
    const ok = await DatasetStore.open({ factory });
    const kept = await ok.save(makeShapesDataset({ n: 10, size: 8, seed: 3 }));
    ok.close();
    const failing = await DatasetStore.open({
      factory,
      beforeDataWrite: () => {
        throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      },
    });
    const err = await failing.save(makeShapesDataset({ n: 10, size: 8, seed: 4 })).catch((e) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect(err.code).toBe('storage');
    expect(err.message).toMatch(/quota is full.*Nothing stored was changed/);
    const list = await failing.list();
    expect(list.map((d) => d.id)).toEqual([kept.id]); // no half-written listing
    expect((await failing.load(kept.id)).N).toBe(10);
    failing.close();
  });

  it('thumbnails shrink large images', () => {
    const t = makeThumbnails(makeShapesDataset({ n: 3, size: 96, seed: 1 }), 2, 48);
    expect(t.map((x) => [x.width, x.height])).toEqual([[48, 48], [48, 48]]);
  });
});
