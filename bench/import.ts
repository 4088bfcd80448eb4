/**
 * `npm run bench -- import`: how fast each format imports in Node (images per second), through
 * the same path as `npm run dmae -- dataset` and `train --data` (importPaths: read, unpack,
 * parse or decode with sharp, split, mean/std). CPU work only, so `adapter` is 'cpu'.
 *
 * The files are written first, in the exact formats as distributed, into a temporary folder:
 *   - IDX as Fashion-MNIST's train set: 60,000 28×28 images + labels (train-images-idx3-ubyte,
 *     train-labels-idx1-ubyte), raw and gzipped. The pixels are the built-in MNIST's 10,000 real
 *     digits, six times, each copy shifted sideways, so that gzip sees real image statistics.
 *   - CIFAR-10: one binary batch (cifar-10-batches-bin/data_batch_1.bin, 10,000 32×32×3 records,
 *     with batches.meta.txt), loose and as the .tar.gz (GNU tar + gzip).
 *   - Image folders: --images (default 3,000) 32×32 RGB Shapes in class sub-folders as PNG, JPEG
 *     (quality 90) and WebP (quality 90) files, and a zip of the PNG folder (deflate); and a folder
 *     of 256×256 JPEGs (--photos, default 300) imported at 64×64, as a user's photos would be.
 * Each import is run once untimed (warm-up: sharp and the JIT), then --reps times (default 3);
 * the median wall-clock time is reported, with the min and every sample.
 * Options: --reps N, --warmup N, --images N, --photos N, --out NAME (results file name), --keep
 * (leave the generated files and print where).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { zipSync, type Zippable } from 'fflate';
import sharp from 'sharp';
import type { ImageDataset } from '../src/data/dataset';
import { encodeIdx } from '../src/data/formats/idx';
import { importPaths, loadBuiltinNode } from '../src/data/node';
import type { ImportOptions } from '../src/data/import';
import { makeShapesDataset } from '../src/data/procedural';
import { commandLine, median, round, writeResults } from './lib';

export interface ImportBenchOptions {
  reps: number;
  warmup: number;
  images: number;
  photos: number;
  out: string;
  keep: boolean;
}

interface Case {
  name: string;
  format: string;
  container: string;
  /** What importPaths is given. */
  path: string;
  expect: { N: number; C: number; H: number; W: number };
  options?: ImportOptions;
}

/** Bytes on disk under a path (a file, or every file under a folder). */
function diskBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  let n = 0;
  for (const e of readdirSync(path, { withFileTypes: true })) n += diskBytes(join(path, e.name));
  return n;
}

/** FNV-1a over the pixels: equal imports of the same data in two containers must agree. */
function fingerprint(ds: ImageDataset): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < ds.images.length; i++) h = Math.imul(h ^ ds.images[i], 0x01000193);
  if (ds.labels) for (let i = 0; i < ds.labels.length; i++) h = Math.imul(h ^ ds.labels[i], 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** Fashion-MNIST's train set in size and layout: the 10,000 built-in digits six times, copy k shifted k − 2 pixels sideways. */
async function writeIdx(dir: string, gz: boolean): Promise<void> {
  const mnist = await loadBuiltinNode('mnist');
  const n = 60_000, S = 28, HW = S * S;
  const pixels = new Uint8Array(n * HW);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const src = i % mnist.N, shift = Math.floor(i / mnist.N) - 2;
    labels[i] = mnist.labels![src];
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++) {
        const sx = x - shift;
        pixels[i * HW + y * S + x] = sx >= 0 && sx < S ? mnist.images[src * HW + y * S + sx] : 0;
      }
  }
  const images = encodeIdx([n, S, S], pixels);
  const labs = encodeIdx([n], labels);
  for (const [d, z] of [[join(dir, 'fashion-mnist-raw'), false], [join(dir, 'fashion-mnist-gz'), true]] as const) {
    if (z && !gz) continue;
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `train-images-idx3-ubyte${z ? '.gz' : ''}`), z ? gzipSync(images) : images);
    writeFileSync(join(d, `train-labels-idx1-ubyte${z ? '.gz' : ''}`), z ? gzipSync(labs) : labs);
  }
}

/** One CIFAR-10 binary batch of 10,000 records (label byte + R, G, B planes of 32×32), loose and as the distributed .tar.gz. */
function writeCifar(dir: string): void {
  const ds = makeShapesDataset({ n: 10_000, size: 32, channels: 3, seed: 10 });
  const rec = 1 + 3072;
  const batch = new Uint8Array(ds.N * rec);
  for (let i = 0; i < ds.N; i++) {
    batch[i * rec] = ds.labels![i] % 10;
    batch.set(ds.images.subarray(i * 3072, (i + 1) * 3072), i * rec + 1);
  }
  const root = join(dir, 'cifar', 'cifar-10-batches-bin');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'data_batch_1.bin'), batch);
  writeFileSync(join(root, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n');
  execFileSync('tar', ['--format=gnu', '--owner=0', '--group=0', '-czf', join(dir, 'cifar-10-binary.tar.gz'), '-C', join(dir, 'cifar'), 'cifar-10-batches-bin']);
}

/** `n` Shapes images in class folders as PNG, JPEG and WebP, a zip of the PNG folder, and `photos` 256×256 JPEGs. */
async function writeImages(dir: string, n: number, photos: number): Promise<void> {
  const ds = makeShapesDataset({ n, size: 32, channels: 3, seed: 11 });
  const zip: Zippable = {};
  const jobs: Promise<void>[] = [];
  const one = async (i: number) => {
    const cls = ds.classNames[ds.labels![i]];
    // CHW planes → interleaved RGB for sharp.
    const raw = Buffer.alloc(32 * 32 * 3);
    for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) raw[p * 3 + c] = ds.images[i * 3072 + c * 1024 + p];
    const img = () => sharp(raw, { raw: { width: 32, height: 32, channels: 3 } });
    const name = `${String(i).padStart(5, '0')}`;
    const [png, jpg, webp] = await Promise.all([img().png().toBuffer(), img().jpeg({ quality: 90 }).toBuffer(), img().webp({ quality: 90 }).toBuffer()]);
    for (const [fmt, bytes, ext] of [['png', png, 'png'], ['jpeg', jpg, 'jpg'], ['webp', webp, 'webp']] as const) {
      mkdirSync(join(dir, `shapes-${fmt}`, cls), { recursive: true });
      writeFileSync(join(dir, `shapes-${fmt}`, cls, `${name}.${ext}`), bytes);
    }
    zip[`shapes-png/${cls}/${name}.png`] = [new Uint8Array(png), { level: 6 }];
  };
  for (let i = 0; i < n; i++) {
    jobs.push(one(i));
    if (jobs.length >= 16) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  writeFileSync(join(dir, 'shapes-png.zip'), zipSync(zip));
  // Photos: smooth colour fields with noise (JPEG's costly case), 256×256, two classes.
  if (photos <= 0) return;
  const big = makeShapesDataset({ n: photos, size: 256, channels: 3, seed: 12 });
  for (let i = 0; i < photos; i++) {
    const raw = Buffer.alloc(256 * 256 * 3);
    const HW = 256 * 256;
    for (let p = 0; p < HW; p++) for (let c = 0; c < 3; c++) raw[p * 3 + c] = big.images[i * 3 * HW + c * HW + p];
    const cls = i % 2 ? 'b' : 'a';
    mkdirSync(join(dir, 'photos-jpeg', cls), { recursive: true });
    writeFileSync(join(dir, 'photos-jpeg', cls, `${i}.jpg`), await sharp(raw, { raw: { width: 256, height: 256, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
  }
}

export async function runImport(opts: ImportBenchOptions): Promise<void> {
  const started = new Date();
  // Other processes' load makes wall-clock times noisy on a shared machine: the file records it.
  const loadAtStart = loadavg().map((x) => round(x, 3));
  const dir = mkdtempSync(join(tmpdir(), 'dmae-bench-import-'));
  const log = (s: string) => process.stdout.write(`${s}\n`);
  try {
    log(`writing the files under ${dir} …`);
    const tw = performance.now();
    await writeIdx(dir, true);
    writeCifar(dir);
    await writeImages(dir, opts.images, opts.photos);
    log(`  written in ${((performance.now() - tw) / 1000).toFixed(1)} s`);

    const n = opts.images;
    const cases: Case[] = [
      { name: 'idx_raw', format: 'idx', container: 'files', path: join(dir, 'fashion-mnist-raw'), expect: { N: 60_000, C: 1, H: 28, W: 28 } },
      { name: 'idx_gzip', format: 'idx', container: 'gzip', path: join(dir, 'fashion-mnist-gz'), expect: { N: 60_000, C: 1, H: 28, W: 28 } },
      { name: 'cifar10_bin', format: 'cifar-10', container: 'files', path: join(dir, 'cifar', 'cifar-10-batches-bin'), expect: { N: 10_000, C: 3, H: 32, W: 32 } },
      { name: 'cifar10_targz', format: 'cifar-10', container: 'tar.gz', path: join(dir, 'cifar-10-binary.tar.gz'), expect: { N: 10_000, C: 3, H: 32, W: 32 } },
      { name: 'png_folder', format: 'images (png)', container: 'folder', path: join(dir, 'shapes-png'), expect: { N: n, C: 3, H: 32, W: 32 } },
      { name: 'png_zip', format: 'images (png)', container: 'zip', path: join(dir, 'shapes-png.zip'), expect: { N: n, C: 3, H: 32, W: 32 } },
      { name: 'jpeg_folder', format: 'images (jpeg)', container: 'folder', path: join(dir, 'shapes-jpeg'), expect: { N: n, C: 3, H: 32, W: 32 } },
      { name: 'webp_folder', format: 'images (webp)', container: 'folder', path: join(dir, 'shapes-webp'), expect: { N: n, C: 3, H: 32, W: 32 } },
    ];
    if (opts.photos > 0) cases.push({ name: 'jpeg_photos_256_to_64', format: 'images (jpeg 256×256)', container: 'folder', path: join(dir, 'photos-jpeg'), expect: { N: opts.photos, C: 3, H: 64, W: 64 }, options: { resolution: 64 } });

    const figures: Record<string, unknown>[] = [];
    const prints = new Map<string, string>();
    const checks: Record<string, unknown>[] = [];
    for (const c of cases) {
      const samples: number[] = [];
      let ds: ImageDataset | null = null;
      for (let r = 0; r < opts.warmup + opts.reps; r++) {
        const t0 = performance.now();
        ds = (await importPaths([c.path], c.options)).dataset;
        const ms = performance.now() - t0;
        if (r >= opts.warmup) samples.push(ms);
      }
      const d = ds!;
      const got = { N: d.N, C: d.C, H: d.H, W: d.W };
      const ok = got.N === c.expect.N && got.C === c.expect.C && got.H === c.expect.H && got.W === c.expect.W;
      if (!ok) throw new Error(`${c.name}: imported ${JSON.stringify(got)}, expected ${JSON.stringify(c.expect)}.`);
      prints.set(c.name, fingerprint(d));
      const med = median(samples);
      const bytes = diskBytes(c.path);
      const fig = {
        name: c.name, format: c.format, container: c.container, images: d.N, shape: [d.C, d.H, d.W], inputBytes: bytes,
        medianMs: round(med), minMs: round(Math.min(...samples)), samplesMs: samples.map((x) => round(x)),
        imagesPerSecond: round((d.N / med) * 1000), bestImagesPerSecond: round((d.N / Math.min(...samples)) * 1000), inputMBPerSecond: round(bytes / 2 ** 20 / (med / 1000)),
      };
      figures.push(fig);
      log(`${c.name.padEnd(24)} ${String(d.N).padStart(6)} images  ${(med / 1000).toFixed(3).padStart(7)} s  ${fig.imagesPerSecond.toLocaleString('en').padStart(10)} img/s`);
    }
    // The same data in two containers imports to the same dataset, pixel for pixel.
    for (const [a, b] of [['idx_raw', 'idx_gzip'], ['cifar10_bin', 'cifar10_targz'], ['png_folder', 'png_zip']]) {
      const same = prints.get(a) === prints.get(b);
      checks.push({ check: `${b} imports the same pixels and labels as ${a}`, passed: same, fingerprint: prints.get(a) });
      if (!same) throw new Error(`${b} and ${a} imported different data (${prints.get(b)} vs ${prints.get(a)}).`);
    }

    const ms = (name: string) => (figures.find((f) => f.name === name)!.medianMs as number);
    const ratio = (a: string, b: string) => round(ms(a) / ms(b));
    const ratios: Record<string, number> = {
      idx_gzip_vs_raw: ratio('idx_gzip', 'idx_raw'),
      cifar10_targz_vs_bin: ratio('cifar10_targz', 'cifar10_bin'),
      png_zip_vs_folder: ratio('png_zip', 'png_folder'),
      jpeg_vs_png_folder: ratio('jpeg_folder', 'png_folder'),
      webp_vs_png_folder: ratio('webp_folder', 'png_folder'),
    };
    const idxSeconds = ms('idx_gzip') / 1000;
    const body = {
      adapter: 'cpu',
      adapterKind: 'cpu',
      command: commandLine(),
      date: started.toISOString(),
      timing: {
        method: 'wall-clock',
        statistic: 'median',
        warmup: opts.warmup,
        reps: opts.reps,
        description: 'medianMs: importPaths([path]) from call to dataset on the wall clock (read, unpack, parse or decode with sharp, resize, split, mean/std), median of reps after warm-up (imagesPerSecond from it; bestImagesPerSecond from minMs); files in the OS page cache after the warm-up. Other processes slow it: see environment.loadAverage',
      },
      environment: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: cpus().length, loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((x) => round(x, 3)) } },
      setup: {
        idx: '60,000 28×28 images + labels as Fashion-MNIST train (train-images-idx3-ubyte, train-labels-idx1-ubyte): the built-in MNIST digits ×6, shifted; raw and gzip',
        cifar10: '10,000 32×32×3 records in data_batch_1.bin + batches.meta.txt; loose and cifar-10-binary.tar.gz',
        images: `${opts.images} 32×32 RGB Shapes in 7 class folders as PNG, JPEG q90, WebP q90; the PNG folder zipped (deflate)`,
        photos: `${opts.photos} 256×256 JPEG q90 in 2 class folders, imported at 64×64 (centre crop + area resize)`,
        decoder: 'sharp (libvips), 4 images decoded at once',
      },
      summary: {
        fashionMnistTrainImportSeconds: round(idxSeconds),
        requirement: 'importing 60,000 28×28 images takes seconds, not minutes',
        met: idxSeconds < 60,
      },
      checks,
      images_per_second: Object.fromEntries(figures.map((f) => [f.name, f.imagesPerSecond])),
      ratios,
      figures,
    };
    const path = writeResults(opts.out, body);
    log(`ratios   ${Object.entries(ratios).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    log(`wrote ${path}`);
  } finally {
    if (opts.keep) log(`kept the files under ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

