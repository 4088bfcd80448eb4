/**
 * How often a loose image file is read: small ones are kept whole after the scan (read once,
 * a third of a small-image folder's import time), big ones — or any once the kept total would
 * pass its share of the memory budget — keep only their header and are read again to decode.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { importDataset } from '../../src/data/import';
import { sharpDecoder } from '../../src/data/node';
import { Rng } from '../../src/data/rng';
import { encodeImage } from './fixtures';

/** A PNG of noise: it does not compress, so w×h×3 bytes. */
async function noisePng(w: number, h: number, seed: number): Promise<Uint8Array> {
  const rng = new Rng(seed);
  const raw = Buffer.from(Uint8Array.from({ length: w * h * 3 }, () => rng.int(256)));
  return new Uint8Array(await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer());
}

describe('reading loose image files', () => {
  it('reads small images once and big ones twice (header, then decode), with the same pixels either way', async () => {
    const small = await Promise.all(Array.from({ length: 6 }, (_, i) => encodeImage('png', 16, 16, i)));
    const big = await noisePng(160, 160, 1); // ≈ 77 KB, past the 64 KiB kept whole
    expect(big.length).toBeGreaterThan(64 * 1024);
    const files = [...small, big];
    const reads = files.map(() => 0);
    const sources = files.map((d, i) => ({ path: `set/${i}.png`, size: d.length, read: async () => (reads[i]++, d) }));
    const a = await importDataset(sources, { decoder: sharpDecoder, resolution: 16 });
    expect(reads).toEqual([1, 1, 1, 1, 1, 1, 2]);
    // A budget that holds two files at once: every file keeps only its header, and the pixels are the same.
    reads.fill(0);
    const smallOnly = sources.slice(0, 6);
    const whole = await importDataset(smallOnly, { decoder: sharpDecoder });
    expect(reads).toEqual([1, 1, 1, 1, 1, 1, 0]);
    reads.fill(0);
    const b = await importDataset(smallOnly, { decoder: sharpDecoder, limits: { maxUncompressedBytes: 2 * Math.max(...small.map((f) => f.length)) } });
    expect(reads).toEqual([2, 2, 2, 2, 2, 2, 0]);
    expect(Buffer.from(b.dataset.images).equals(Buffer.from(whole.dataset.images))).toBe(true);
    expect(a.dataset.N).toBe(7);
  });
});
