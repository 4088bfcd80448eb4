/** Folders of PNG/JPEG/WebP images (decoded by sharp in Node): labels from folders, bad files named, oversized refused from the header, fuzzed. */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importDataset, type ImportOptions } from '../../src/data/import';
import { importPaths, sharpDecoder } from '../../src/data/node';
import { readImageHeader } from '../../src/data/formats/image-header';
import { crc32 } from '../../src/data/formats/archive';
import { DEFAULT_LIMITS } from '../../src/data/errors';
import { Rng } from '../../src/data/rng';
import { bytesSource, encodeImage, expectDatasetError, fuzz, mutations, randomBytes, zip } from './fixtures';

const opts: ImportOptions = { decoder: sharpDecoder };
const tmp = mkdtempSync(join(tmpdir(), 'dmae-images-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A PNG whose IHDR claims w×h (CRC fixed), without the pixels to match. */
function pngClaiming(png: Uint8Array, w: number, h: number): Uint8Array {
  const d = png.slice();
  const dv = new DataView(d.buffer);
  dv.setUint32(16, w);
  dv.setUint32(20, h);
  dv.setUint32(29, crc32(d.subarray(12, 29)));
  return d;
}

describe('image folders', () => {
  it('reads PNG, JPEG and WebP; labels from sub-folder names; sizes and headers right', async () => {
    const files: Record<string, Uint8Array> = {};
    let k = 0;
    for (const cls of ['cat', 'dog', 'bird'])
      for (const fmt of ['png', 'jpeg', 'webp'] as const) for (let i = 0; i < 2; i++) files[`pets/${cls}/${i}.${fmt === 'jpeg' ? 'jpg' : fmt}`] = await encodeImage(fmt, 20, 16, k++);
    for (const [p, d] of Object.entries(files)) {
      const h = readImageHeader(d, p);
      expect([h.width, h.height]).toEqual([20, 16]);
    }
    const { dataset: ds } = await importDataset(Object.entries(files).map(([p, d]) => bytesSource(p, d)), opts);
    expect([ds.N, ds.C, ds.H, ds.W]).toEqual([18, 3, 16, 20]);
    expect(ds.classNames).toEqual(['bird', 'cat', 'dog']);
    expect(ds.nTrain).toBe(16); // 10 % of 18, rounded: 2 in validation
    expect(ds.name).toBe('pets');
    expect(new Set(ds.labels).size).toBe(3);
    // A lossless PNG round-trips exactly: find the first cat PNG by its known top-left pixel.
    const ref = await sharpDecoder.decode(files['pets/cat/0.png'], 'x', readImageHeader(files['pets/cat/0.png'], 'x'), DEFAULT_LIMITS);
    const found = Array.from({ length: ds.N }, (_, n) => n).some((n) => ds.images[n * 960] === ref.data[0] && ds.images[n * 960 + 320] === ref.data[1] && ds.images[n * 960 + 1] === ref.data[3]);
    expect(found).toBe(true);
  });

  it('imports from disk: class folders, a train/val level, unlabelled, gray kept gray, zip of a folder', async () => {
    const root = join(tmp, 'digits');
    for (const split of ['train', 'val'])
      for (const cls of ['0', '1', '10'])
        for (let i = 0; i < 3; i++) {
          mkdirSync(join(root, split, cls), { recursive: true });
          writeFileSync(join(root, split, cls, `${i}.png`), await encodeImage('png', 12, 12, i + cls.length * 10, 1));
        }
    writeFileSync(join(root, '.DS_Store'), randomBytes(new Rng(1), 100));
    const { dataset: ds } = await importPaths([root]);
    expect(ds.classNames).toEqual(['0', '1', '10']); // natural order
    expect([ds.N, ds.nTrain, ds.C]).toEqual([18, 9, 1]);
    expect(Array.from(ds.labels!)).toEqual([...Array(3).fill(0), ...Array(3).fill(1), ...Array(3).fill(2), 0, 0, 0, 1, 1, 1, 2, 2, 2]);

    const flat = join(tmp, 'flat');
    mkdirSync(flat);
    for (let i = 0; i < 4; i++) writeFileSync(join(flat, `${i}.webp`), await encodeImage('webp', 10, 10, i));
    const u = (await importPaths([flat])).dataset;
    expect(u.labels).toBeNull();
    expect(u.classNames).toEqual([]);
    expect([u.N, u.nTrain]).toEqual([4, 3]);

    const z = zip({ 'shapes/a/1.png': await encodeImage('png', 8, 8, 1), 'shapes/b/2.jpg': await encodeImage('jpeg', 8, 8, 2), '__MACOSX/shapes/._1.png': new Uint8Array(10) });
    const zd = (await importDataset([bytesSource('shapes.zip', z)], { ...opts, resolution: 16, channels: 3 })).dataset;
    expect([zd.N, zd.C, zd.H, zd.W, zd.classNames.length]).toEqual([2, 3, 16, 16, 2]);
  });

  it('fits images of different sizes to one, composites alpha over black', async () => {
    const a = await encodeImage('png', 40, 20, 1, 4);
    const b = await encodeImage('png', 10, 30, 2);
    const { dataset: ds, warnings } = await importDataset([bytesSource('m/a.png', a), bytesSource('m/b.png', b)], { ...opts, valFraction: 0 });
    expect([ds.H, ds.W]).toEqual([10, 10]); // median shorter side
    expect(warnings.join()).toMatch(/different sizes/);
  });

  it('names a non-image file, an unsupported image, a damaged image and an empty folder', async () => {
    const png = await encodeImage('png', 8, 8, 3);
    await expectDatasetError(importDataset([bytesSource('f/a.png', png), bytesSource('f/notes.txt', new TextEncoder().encode('hello'))], opts), 'not-image', 'f/notes.txt', /not a PNG, JPEG or WebP image/);
    const skipped = await importDataset([bytesSource('f/a.png', png), bytesSource('f/b.png', png), bytesSource('f/notes.txt', new TextEncoder().encode('hello'))], { ...opts, skipNonImages: true });
    expect(skipped.dataset.N).toBe(2);
    expect(skipped.warnings.join()).toMatch(/notes\.txt: skipped/);
    await expectDatasetError(importDataset([bytesSource('f/a.png', png), bytesSource('f/b.gif', new TextEncoder().encode('GIF89a......'))], opts), 'unsupported', 'f/b.gif', /GIF/);
    const damaged = png.slice();
    damaged.fill(7, 40, damaged.length - 20);
    await expectDatasetError(importDataset([bytesSource('f/a.png', png), bytesSource('f/bad.png', damaged)], opts), 'corrupt', 'f/bad.png', /could not be decoded/);
    await expectDatasetError(importDataset([bytesSource('f/a.png', png), bytesSource('f/b.png', png.subarray(0, 20))], opts), 'truncated', 'f/b.png');
    const empty = join(tmp, 'empty');
    mkdirSync(join(empty, 'sub'), { recursive: true });
    await expectDatasetError(importPaths([empty]), 'empty', empty, /holds no files/);
    writeFileSync(join(empty, 'sub', 'Thumbs.db'), new Uint8Array(3));
    await expectDatasetError(importPaths([empty]), 'empty', 'empty', /no files/);
    await expectDatasetError(importDataset([], opts), 'empty', 'Imported dataset');
    await expectDatasetError(importPaths([join(tmp, 'nope')]), 'not-found', join(tmp, 'nope'));
    const mixed = [bytesSource('g/a/1.png', png), bytesSource('g/b/2.png', png), bytesSource('g/3.png', png)];
    await expectDatasetError(importDataset(mixed, opts), 'mismatch', 'g/3.png', /outside the class folders/);
  });

  it('refuses a 30000×30000 PNG, JPEG and WebP from the header, without decoding', async () => {
    const png = pngClaiming(await encodeImage('png', 8, 8, 4), 30000, 30000);
    const t0 = performance.now();
    await expectDatasetError(importDataset([bytesSource('big/huge.png', png), bytesSource('big/ok.png', await encodeImage('png', 8, 8, 5))], opts), 'too-large', 'big/huge.png', /30000×30000 pixels.*not decoded/);
    const jpg = (await encodeImage('jpeg', 8, 8, 6)).slice();
    let p = 2;
    while (!(jpg[p] === 0xff && jpg[p + 1] >= 0xc0 && jpg[p + 1] <= 0xc2)) p += 2 + ((jpg[p + 2] << 8) | jpg[p + 3]);
    new DataView(jpg.buffer).setUint16(p + 5, 30000);
    new DataView(jpg.buffer).setUint16(p + 7, 30000);
    await expectDatasetError(importDataset([bytesSource('big/huge.jpg', jpg)], opts), 'too-large', 'big/huge.jpg', /30000×30000/);
    const webp = (await encodeImage('webp', 8, 8, 7)).slice();
    const bits = (16383 | (16383 << 14)) >>> 0; // VP8L: 16384×16384
    new DataView(webp.buffer).setUint32(21, (new DataView(webp.buffer).getUint32(21, true) & 0xf0000000) | bits, true);
    await expectDatasetError(importDataset([bytesSource('big/huge.webp', webp)], opts), 'too-large', 'big/huge.webp', /16384×16384/);
    expect(performance.now() - t0).toBeLessThan(3000);
    // sharp refuses on its own too, should a header lie about being small.
    await expectDatasetError(sharpDecoder.decode(await encodeImage('png', 64, 64, 8), 'd.png', { format: 'png', width: 1, height: 1, gray: false }, { ...DEFAULT_LIMITS, maxImagePixels: 100 }), 'too-large', 'd.png');
  });

  it('holds only the headers of loose image files between scanning and decoding', async () => {
    const files = await Promise.all(Array.from({ length: 10 }, (_, i) => encodeImage('png', 40, 40, i)));
    const reads: number[] = Array(10).fill(0);
    const sources = files.map((d, i) => ({ path: `lazy/${i}.png`, size: d.length, read: async () => (reads[i]++, d) }));
    // A budget that holds two files at once, not ten.
    const { dataset } = await importDataset(sources, { ...opts, limits: { maxUncompressedBytes: 2 * Math.max(...files.map((f) => f.length)) } });
    expect(dataset.N).toBe(10);
    expect(reads).toEqual(Array(10).fill(2)); // once to scan, once to decode
  });

  it('refuses a dataset that would be too large, before decoding', async () => {
    const png = await encodeImage('png', 8, 8, 9);
    await expectDatasetError(importDataset([bytesSource('s/a.png', png), bytesSource('s/b.png', png)], { ...opts, resolution: 1024, limits: { maxDatasetBytes: 2 ** 20 } }), 'too-large', 's', /Choose a smaller resolution/);
  });

  it('fuzz: headers of 300 mutations per format; 100 mutated images per format and 200 mutated zips through sharp', async () => {
    const valid = { png: await encodeImage('png', 12, 10, 10), jpeg: await encodeImage('jpeg', 12, 10, 11), webp: await encodeImage('webp', 12, 10, 12) };
    for (const [fmt, d] of Object.entries(valid)) await fuzz(mutations(d, 300, fmt.length), (m) => readImageHeader(m, `x.${fmt}`));
    const rng = new Rng(13);
    await fuzz(Array.from({ length: 200 }, () => randomBytes(rng, 200)), (m) => readImageHeader(m, 'r.png'));
    const decodeAll = async (name: string, m: Uint8Array) => (await importDataset([bytesSource(`q/${name}`, m), bytesSource('q/ok.png', valid.png)], { ...opts, valFraction: 0 })).dataset;
    for (const [fmt, d] of Object.entries(valid)) await fuzz(mutations(d, 100, 100 + fmt.length), (m) => decodeAll(`a.${fmt}`, m), 3000);
    const z = zip({ 'z/a/1.png': valid.png, 'z/b/2.jpg': valid.jpeg, 'z/b/3.webp': valid.webp }, 0);
    await fuzz(mutations(z, 200, 14), async (m) => (await importDataset([bytesSource('z.zip', m)], opts)).dataset, 3000);
  });
});
