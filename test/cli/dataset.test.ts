/**
 * `npm run dmae -- dataset <path or name>` and `train --data <path or name>`: the summary JSON
 * of generated files in the formats as distributed and of the built-ins; a bad file's message
 * and exit code 2 (also through the real process); a short training run on generated IDX files.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { dataOption, datasetCommand, resolveTrainingData } from '../../src/cli/dataset';
import { trainCommand } from '../../src/cli/train';
import { DatasetError } from '../../src/data/errors';
import { MNIST_FILE } from '../../src/data/node';
import { cifarBatch, encodeImage, gzip, idxFiles, tar, zip } from '../data/fixtures';

/** Runs `f` with stdout and stderr captured. */
async function captured<T>(f: () => Promise<T>): Promise<{ result: T; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => (err.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const result = await f();
    return { result, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

async function summary(args: string[]): Promise<Record<string, unknown>> {
  const { result, out, err } = await captured(() => datasetCommand(args));
  expect(result, err).toBe(0);
  return JSON.parse(out) as Record<string, unknown>;
}

const dir = mkdtempSync(join(tmpdir(), 'dmae-cli-dataset-'));
const names = { ti: 'train-images-idx3-ubyte', tl: 'train-labels-idx1-ubyte', vi: 't10k-images-idx3-ubyte', vl: 't10k-labels-idx1-ubyte' };

/** The four MNIST files (train 60, t10k 20), gzipped as distributed, in `sub`. */
function writeMnistGz(sub: string) {
  const train = idxFiles(60, 1);
  const test = idxFiles(20, 2);
  const d = join(dir, sub);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, `${names.ti}.gz`), gzip(train.images));
  writeFileSync(join(d, `${names.tl}.gz`), gzip(train.labels));
  writeFileSync(join(d, `${names.vi}.gz`), gzip(test.images));
  writeFileSync(join(d, `${names.vl}.gz`), gzip(test.labels));
  return { d, train, test };
}

describe('npm run dmae -- dataset', () => {
  it('a folder of gzipped IDX files: format, counts, classes, shape, mean and std of the training pixels, the path', async () => {
    const { d, train, test } = writeMnistGz('mnist-gz');
    const s = await summary([d]);
    expect(s).toMatchObject({ format: 'idx', container: 'folder', source: resolve(d), images: 80, train: 60, val: 20, labelled: true, shape: [1, 28, 28] });
    const K = Math.max(...train.labelValues, ...test.labelValues) + 1;
    expect(s.classes).toBe(K);
    expect(s.classNames).toEqual(Array.from({ length: K }, (_, i) => String(i)));
    // Mean and std over the training split (the train files), pixels in [0, 1].
    const px = Array.from(train.pixels, (v) => v / 255);
    const mean = px.reduce((a, b) => a + b, 0) / px.length;
    const std = Math.sqrt(px.reduce((a, b) => a + (b - mean) ** 2, 0) / px.length);
    expect((s.mean as number[])[0]).toBeCloseTo(mean, 5);
    expect((s.std as number[])[0]).toBeCloseTo(std, 5);
  });

  it('one gzipped IDX file, a CIFAR-10 .tar.gz and a zip of PNGs: the container is sniffed from the bytes', async () => {
    const one = join(dir, `${names.ti}.gz`);
    writeFileSync(one, gzip(idxFiles(30, 3).images));
    expect(await summary([one])).toMatchObject({ format: 'idx', container: 'gzip', images: 30, labelled: false, classes: 0, shape: [1, 28, 28] });

    const cifar = join(dir, 'cifar-10-binary.tar.gz');
    writeFileSync(cifar, tar({ 'cifar-10-batches-bin/data_batch_1.bin': cifarBatch('cifar-10', 40, 4), 'cifar-10-batches-bin/test_batch.bin': cifarBatch('cifar-10', 10, 5) }, { gzip: true }));
    const c = await summary([cifar]);
    expect(c).toMatchObject({ format: 'cifar-10', container: 'tar.gz', images: 50, train: 40, val: 10, classes: 10, shape: [3, 32, 32] });
    expect((c.classNames as string[])[0]).toBe('airplane');

    const pngs: Record<string, Uint8Array> = {};
    for (let i = 0; i < 6; i++) pngs[`pets/${i % 2 ? 'cat' : 'dog'}/${i}.png`] = await encodeImage('png', 12, 12, i);
    const z = join(dir, 'pets.zip');
    writeFileSync(z, zip(pngs));
    expect(await summary([z, '--resolution', '8'])).toMatchObject({ format: 'images', container: 'zip', images: 6, classes: 2, classNames: ['cat', 'dog'], shape: [3, 8, 8] });
  });

  it('the built-ins by name: mnist (10,000 digits, 9,000 / 1,000) and shapes (procedural)', async () => {
    const m = await summary(['mnist']);
    expect(m).toMatchObject({ name: 'MNIST', format: 'builtin:mnist', container: 'builtin', images: 10000, train: 9000, val: 1000, classes: 10, shape: [1, 28, 28] });
    expect((m.mean as number[])[0]).toBeGreaterThan(0.1);
    expect((m.mean as number[])[0]).toBeLessThan(0.16); // MNIST's mean is 0.1307
    // The studio's own file (what `npm run datasets` builds, and the built-in reads) is read as it is.
    if (existsSync(MNIST_FILE)) expect(await summary([MNIST_FILE])).toMatchObject({ format: 'dmds', container: 'gzip', images: 10000, train: 9000, mean: m.mean });
    // Several paths: IDX images and labels given one by one.
    const { d } = writeMnistGz('loose');
    expect(await summary([join(d, `${names.ti}.gz`), join(d, `${names.tl}.gz`)])).toMatchObject({ format: 'idx', container: 'files', images: 60, labelled: true });
    const p = await summary(['procedural', '--resolution', '16', '--channels', '1']);
    expect(p).toMatchObject({ format: 'builtin:shapes', source: 'generated', classes: 7, shape: [1, 16, 16] });
  });

  it('a corrupt file: exit code 2 and a message that names the file and what is wrong', async () => {
    const bad = join(dir, names.ti);
    writeFileSync(bad, idxFiles(50, 6).images.subarray(0, 5000)); // the header promises 50 images
    const r = await captured(() => datasetCommand([bad]));
    expect(r.result).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(new RegExp(`^error: ${names.ti}: is cut short: its header promises 50×28×28 = 39200 bytes of data but only 4984 follow`));
    const wrong = join(dir, 'notes.txt');
    writeFileSync(wrong, 'not a dataset');
    expect((await captured(() => datasetCommand([wrong]))).err).toMatch(/notes\.txt: is not an image \(PNG, JPEG, WebP\), an IDX file or a CIFAR binary batch/);
    const missing = await captured(() => datasetCommand([join(dir, 'nope')]));
    expect([missing.result, missing.err]).toEqual([2, expect.stringMatching(/nope: does not exist or cannot be read\..*built-in datasets are mnist, shapes/)]);
    expect((await captured(() => datasetCommand([]))).result).toBe(2);
    expect((await captured(() => datasetCommand(['mnist', '--channels', '2']))).err).toMatch(/--channels: 2 must be 1 or 3/);
  });

  it('through the real command line: npm run dmae -- dataset <corrupt file> exits with 2', async () => {
    const bad = join(dir, 'bad', names.ti);
    mkdirSync(join(dir, 'bad'), { recursive: true });
    const img = idxFiles(5, 7).images.slice();
    img[2] = 0x12; // the type byte of the magic number
    writeFileSync(bad, img);
    const run = promisify(execFile);
    const err = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dataset', bad], { cwd: resolve(__dirname, '../..') }).then(
      () => null,
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stdout).toBe('');
    expect(err?.stderr).toMatch(/train-images-idx3-ubyte: is not an IDX file: its magic number is 00 00 12 03/);
  });
});

describe('--data for training', () => {
  it('takes a name or a path; --dataset is its alias; the two must agree', () => {
    expect(dataOption({})).toBe('mnist');
    expect(dataOption({ dataset: 'procedural' })).toBe('procedural');
    expect(dataOption({ data: '/x', dataset: '/x' })).toBe('/x');
    expect(() => dataOption({ data: 'mnist', dataset: 'shapes' })).toThrow(/disagree/);
  });

  it('a path: imported before the model, its size rounded to the patch, digits not flipped; at the model size when that is known', async () => {
    const { d } = writeMnistGz('geom');
    const native = await resolveTrainingData(d, { patch: 8 });
    expect([native.builtin, native.info]).toEqual([null, { H: 24, C: 1, flipSafe: false }]); // 28 → 24, a multiple of 8
    expect((await native.load({ imgSize: 24, inChans: 1 })).H).toBe(28); // the loader resizes each batch
    const sized = await resolveTrainingData(d, { imgSize: 16, patch: 4 });
    const ds = await sized.load({ imgSize: 16, inChans: 3 });
    expect([ds.H, ds.W, ds.C]).toEqual([16, 16, 1]); // gray stays gray; the loader repeats it to RGB
    const shapes = await resolveTrainingData('shapes', { patch: 4 });
    expect(shapes.info).toEqual({ H: 32, C: 3, flipSafe: true });
    expect((await shapes.load({ imgSize: 12, inChans: 1 })).H).toBe(12);
    await expect(resolveTrainingData(join(dir, 'missing-folder'), { patch: 4 })).rejects.toThrow(DatasetError);
  });

  it('train --data <IDX folder>: a few steps at the test preset, resized to 16×16 RGB', async () => {
    const { d } = writeMnistGz('train-idx');
    const out = join(dir, 'run');
    const r = await captured(() => trainCommand(['--data', d, '--img-size', '16', '--channels', '3', '--batch', '4', '--steps', '3', '--recon-every', '3', '--lr', '1e-3', '--out', out]));
    expect(r.result, r.err).toBe(0);
    expect(r.out).toMatch(/data {5}MNIST \(IDX\): 60 training, 20 validation images; random resized crop;?\s/);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect([cfg.data, cfg.dataset, cfg.config.model.imgSize, cfg.config.model.inChans]).toEqual([d, 'MNIST (IDX)', 16, 3]);
    const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => 'loss' in m);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(steps.every((m) => Number.isFinite(m.loss))).toBe(true);
  });

  it('train --dataset <bad file>: refused with the file named, before any GPU work', async () => {
    const bad = join(dir, 'bad-train', names.ti);
    mkdirSync(join(dir, 'bad-train'), { recursive: true });
    writeFileSync(bad, idxFiles(10, 8).images.subarray(0, 100));
    await expect(captured(() => trainCommand(['--dataset', bad, '--steps', '1']))).rejects.toThrow(/train-images-idx3-ubyte: is cut short/);
  });
});
