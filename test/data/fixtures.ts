/**
 * Real-format test files, made in the test: IDX, CIFAR batches, PNG/JPEG/WebP (sharp), zip
 * (fflate), tar and tar.gz (GNU tar), and a seeded mutator for the fuzz tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { gzipSync, zipSync, type Zippable } from 'fflate';
import { expect } from 'vitest';
import { DatasetError } from '../../src/data/errors';
import { assertValidDataset, type ImageDataset } from '../../src/data/dataset';
import { encodeIdx } from '../../src/data/formats/idx';
import { cifarRecordSize, type CifarKind } from '../../src/data/formats/cifar';
import type { ImportSource } from '../../src/data/import';
import { Rng } from '../../src/data/rng';

export function bytesSource(path: string, data: Uint8Array): ImportSource {
  return { path, size: data.length, read: async () => data };
}

/** n IDX images (h×w) whose pixels encode their label, and the labels file. */
export function idxFiles(n: number, seed: number, h = 28, w = 28, classes = 10): { images: Uint8Array; labels: Uint8Array; pixels: Uint8Array; labelValues: Uint8Array } {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(n * h * w);
  const labelValues = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labelValues[i] = rng.int(classes);
    for (let p = 0; p < h * w; p++) pixels[i * h * w + p] = (rng.int(256) + labelValues[i] * 7) & 0xff;
  }
  return { images: encodeIdx([n, h, w], pixels), labels: encodeIdx([n], labelValues), pixels, labelValues };
}

export function cifarBatch(kind: CifarKind, n: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  const rec = cifarRecordSize(kind);
  const out = new Uint8Array(n * rec);
  for (let i = 0; i < n; i++) {
    if (kind === 'cifar-10') out[i * rec] = rng.int(10);
    else {
      out[i * rec] = rng.int(20);
      out[i * rec + 1] = rng.int(100);
    }
    for (let p = rec - 3072; p < rec; p++) out[i * rec + p] = rng.int(256);
  }
  return out;
}

/** An image of w×h with a deterministic pattern, encoded by sharp. */
export async function encodeImage(format: 'png' | 'jpeg' | 'webp', w: number, h: number, seed: number, channels: 1 | 3 | 4 = 3): Promise<Uint8Array> {
  const rng = new Rng(seed);
  const raw = Buffer.alloc(w * h * channels);
  const base = [rng.int(256), rng.int(256), rng.int(256), 255];
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < channels; c++) raw[(y * w + x) * channels + c] = c === 3 ? 255 : (base[c] + x * 8 + y * 3) & 0xff;
  let img = sharp(raw, { raw: { width: w, height: h, channels } });
  img = format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg({ quality: 95 }) : img.webp({ lossless: true });
  return new Uint8Array(await img.toBuffer());
}

export function zip(files: Record<string, Uint8Array>, level: 0 | 6 = 6): Uint8Array {
  const z: Zippable = {};
  for (const [k, v] of Object.entries(files)) z[k] = [v, { level }];
  return zipSync(z);
}

export function gzip(data: Uint8Array): Uint8Array {
  return gzipSync(data, { mtime: 0 });
}

/** A real tar (GNU tar, --format given) of the files, optionally gzipped by tar itself. */
export function tar(files: Record<string, Uint8Array>, opts: { gzip?: boolean; format?: 'gnu' | 'ustar' | 'pax' } = {}): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-tar-'));
  try {
    const root = join(dir, 'in');
    for (const [k, v] of Object.entries(files)) {
      mkdirSync(dirname(join(root, k)), { recursive: true });
      writeFileSync(join(root, k), v);
    }
    const out = join(dir, opts.gzip ? 'a.tar.gz' : 'a.tar');
    execFileSync('tar', [`--format=${opts.format ?? 'gnu'}`, '--sort=name', '--owner=0', '--group=0', '--mtime=@0', opts.gzip ? '-czf' : '-cf', out, '-C', root, ...Object.keys(files)]);
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One seeded mutation of a valid file: bit flips, truncation, inserted/deleted/overwritten bytes, header fields set to extremes. */
export function mutate(valid: Uint8Array, rng: Rng): Uint8Array {
  const d = valid.slice();
  switch (rng.int(7)) {
    case 0: {
      for (let k = 0, n = 1 + rng.int(8); k < n; k++) d[rng.int(d.length)] ^= 1 << rng.int(8);
      return d;
    }
    case 1:
      return d.slice(0, rng.int(d.length));
    case 2: {
      const at = rng.int(d.length + 1);
      const ins = Uint8Array.from({ length: 1 + rng.int(64) }, () => rng.int(256));
      const out = new Uint8Array(d.length + ins.length);
      out.set(d.subarray(0, at));
      out.set(ins, at);
      out.set(d.subarray(at), at + ins.length);
      return out;
    }
    case 3: {
      const at = rng.int(d.length);
      const n = 1 + rng.int(Math.min(256, d.length - at));
      const out = new Uint8Array(d.length - n);
      out.set(d.subarray(0, at));
      out.set(d.subarray(at + n), at);
      return out;
    }
    case 4: {
      // A 32-bit field in the first 64 bytes (headers live there) set to an extreme.
      const at = rng.int(Math.max(1, Math.min(60, d.length - 4)));
      const v = [0, 1, 0xffffffff, 0x7fffffff, 0x10000, rng.nextU32()][rng.int(6)];
      if (at + 4 <= d.length) new DataView(d.buffer).setUint32(at, v, rng.int(2) === 0);
      return d;
    }
    case 5: {
      for (let k = 0, n = 1 + rng.int(32); k < n; k++) d[rng.int(d.length)] = rng.int(256);
      return d;
    }
    default: {
      // Bytes near the end (trailers, directories).
      for (let k = 0, n = 1 + rng.int(4); k < n; k++) d[Math.max(0, d.length - 1 - rng.int(Math.min(d.length, 128)))] = rng.int(256);
      return d;
    }
  }
}

export function randomBytes(rng: Rng, max = 4096): Uint8Array {
  return Uint8Array.from({ length: rng.int(max) }, () => rng.int(256));
}

export interface FuzzTally {
  valid: number;
  rejected: number;
  codes: Record<string, number>;
}

/**
 * Run `parse` on each input: it must return (a valid dataset, when it returns one) or throw a
 * DatasetError, each within `msPerCase`. Any other throw fails the test with the case number.
 */
export async function fuzz(inputs: Uint8Array[], parse: (d: Uint8Array) => unknown | Promise<unknown>, msPerCase = 2000): Promise<FuzzTally> {
  const tally: FuzzTally = { valid: 0, rejected: 0, codes: {} };
  for (let i = 0; i < inputs.length; i++) {
    const t0 = performance.now();
    try {
      const r = await parse(inputs[i]);
      if (r && typeof r === 'object' && 'images' in (r as object)) assertValidDataset(r as ImageDataset);
      tally.valid++;
    } catch (e) {
      if (!(e instanceof DatasetError)) throw new Error(`fuzz case ${i} (${inputs[i].length} bytes) threw a non-DatasetError: ${e instanceof Error ? e.stack : String(e)}`);
      expect(e.message.length).toBeGreaterThan(10);
      tally.rejected++;
      tally.codes[e.code] = (tally.codes[e.code] ?? 0) + 1;
    }
    const ms = performance.now() - t0;
    if (ms > msPerCase) throw new Error(`fuzz case ${i} took ${ms.toFixed(0)} ms (limit ${msPerCase} ms)`);
  }
  return tally;
}

export function mutations(valid: Uint8Array, n: number, seed: number): Uint8Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => mutate(valid, rng));
}

/** Expect `p` to reject with a DatasetError of `code` whose message names `file` and matches `re`. */
export async function expectDatasetError(p: Promise<unknown> | (() => unknown), code: string, file: string | RegExp, re?: RegExp): Promise<DatasetError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a DatasetError').toBeInstanceOf(DatasetError);
  const de = err as DatasetError;
  expect(de.code, de.message).toBe(code);
  if (typeof file === 'string') expect(de.message.startsWith(file), `message should start with ${file}: ${de.message}`).toBe(true);
  else expect(de.file).toMatch(file);
  if (re) expect(de.message).toMatch(re);
  return de;
}

/** Byte equality without a multi-megabyte diff when it fails. */
export function expectSameBytes(got: ArrayLike<number> | null, want: ArrayLike<number> | null, what = 'bytes'): void {
  if (got === null || want === null) {
    expect(got, what).toBe(want);
    return;
  }
  let first = -1;
  if (got.length === want.length) for (let i = 0; i < got.length && first < 0; i++) if (got[i] !== want[i]) first = i;
  expect(got.length === want.length && first < 0, `${what}: lengths ${got.length} / ${want.length}, first difference at ${first}`).toBe(true);
}
