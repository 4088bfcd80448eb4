/**
 * The one in-memory dataset type that every importer and built-in produces, and the small
 * operations on it: per-channel statistics, the fixed train/validation split, validation of
 * the invariants, channel conversion and thumbnails.
 */
import { DatasetError } from './errors';
import { Rng } from './rng';

export interface ImageDataset {
  name: string;
  /** Where it came from, for the list: 'builtin:mnist', 'idx', 'cifar-10', 'images', … */
  source: string;
  /** [N·C·H·W] uint8 pixels, each sample CHW (channel planes, rows top to bottom). */
  images: Uint8Array;
  /** [N] class index per sample, or null when unlabelled. */
  labels: Int32Array | null;
  /** Class names by index; [] when unlabelled. */
  classNames: string[];
  N: number;
  C: 1 | 3;
  H: number;
  W: number;
  /**
   * The fixed split: samples [0, nTrain) train, [nTrain, N) validation. Importers order the
   * samples so that this holds; it never changes once the dataset exists.
   */
  nTrain: number;
  /** Per channel, over the training samples' pixels scaled to [0, 1]. */
  mean: number[];
  /** Per channel (population std), same pixels; 1 where a channel is constant. */
  std: number[];
}

export interface ChannelStats {
  mean: number[];
  std: number[];
}

/** Per-channel mean and std of samples [0, count) of a C·H·W uint8 array, pixels scaled to [0, 1]. */
export function channelStats(images: Uint8Array, count: number, C: number, HW: number): ChannelStats {
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < C; c++) {
    // Integer histogram: exact and order-independent, so stats are bit-identical everywhere.
    const hist = new Float64Array(256);
    for (let n = 0; n < count; n++) {
      const base = (n * C + c) * HW;
      for (let i = 0; i < HW; i++) hist[images[base + i]]++;
    }
    let s = 0;
    let s2 = 0;
    let total = 0;
    for (let v = 0; v < 256; v++) {
      total += hist[v];
      s += hist[v] * v;
      s2 += hist[v] * v * v;
    }
    const m = total > 0 ? s / total : 0;
    const variance = total > 0 ? Math.max(0, s2 / total - m * m) : 0;
    const sd = Math.sqrt(variance) / 255;
    mean.push(m / 255);
    std.push(sd > 1e-6 ? sd : 1);
  }
  return { mean, std };
}

/** How many of N samples go to validation for a fraction (at least one when N ≥ 2 and fraction > 0). */
export function validationCount(N: number, valFraction: number): number {
  if (N < 2 || !(valFraction > 0)) return 0;
  return Math.min(N - 1, Math.max(1, Math.round(N * valFraction)));
}

/**
 * A seeded order that puts a validation subset last: a permutation of 0..N-1 whose last
 * `nVal` entries are validation. Stratified by label when labels exist, so every class is in
 * both splits in proportion.
 */
export function splitOrder(N: number, labels: ArrayLike<number> | null, valFraction: number, seed: number): { order: Uint32Array; nTrain: number } {
  const rng = new Rng(seed);
  const nValTotal = validationCount(N, valFraction);
  if (nValTotal === 0) return { order: rng.permutation(N), nTrain: N };
  const train: number[] = [];
  const val: number[] = [];
  if (labels) {
    const byClass = new Map<number, number[]>();
    for (let i = 0; i < N; i++) {
      const l = labels[i];
      let list = byClass.get(l);
      if (!list) byClass.set(l, (list = []));
      list.push(i);
    }
    const classes = [...byClass.keys()].sort((a, b) => a - b);
    // Exactly nValTotal validation samples, shared out by largest remainder (ties: lower class).
    const exact = classes.map((c) => byClass.get(c)!.length * (nValTotal / N));
    const quota = exact.map(Math.floor);
    let left = nValTotal - quota.reduce((a, b) => a + b, 0);
    const byRemainder = classes.map((_, i) => i).sort((a, b) => exact[b] - quota[b] - (exact[a] - quota[a]) || a - b);
    for (const i of byRemainder) {
      if (left === 0) break;
      if (quota[i] < byClass.get(classes[i])!.length) {
        quota[i]++;
        left--;
      }
    }
    classes.forEach((c, ci) => {
      const list = byClass.get(c)!;
      const p = rng.permutation(list.length);
      for (let i = 0; i < list.length; i++) (i < quota[ci] ? val : train).push(list[p[i]]);
    });
  } else {
    const p = rng.permutation(N);
    for (let i = 0; i < N; i++) (i < N - nValTotal ? train : val).push(p[i]);
  }
  const pt = rng.permutation(train.length);
  const pv = rng.permutation(val.length);
  const order = new Uint32Array(N);
  for (let i = 0; i < train.length; i++) order[i] = train[pt[i]];
  for (let i = 0; i < val.length; i++) order[train.length + i] = val[pv[i]];
  return { order, nTrain: train.length };
}

/** Reorder samples (images and labels) by `order` (new index i takes old sample order[i]). */
export function permuteSamples(images: Uint8Array, labels: Int32Array | null, sampleSize: number, order: Uint32Array): { images: Uint8Array; labels: Int32Array | null } {
  const out = new Uint8Array(images.length);
  for (let i = 0; i < order.length; i++) out.set(images.subarray(order[i] * sampleSize, (order[i] + 1) * sampleSize), i * sampleSize);
  let outLabels: Int32Array | null = null;
  if (labels) {
    outLabels = new Int32Array(labels.length);
    for (let i = 0; i < order.length; i++) outLabels[i] = labels[order[i]];
  }
  return { images: out, labels: outLabels };
}

/** Assemble a dataset, computing mean/std over the training split. */
export function makeDataset(parts: Omit<ImageDataset, 'mean' | 'std'>): ImageDataset {
  const stats = channelStats(parts.images, Math.max(1, parts.nTrain), parts.C, parts.H * parts.W);
  const ds: ImageDataset = { ...parts, ...stats };
  assertValidDataset(ds);
  return ds;
}

/** The invariants every ImageDataset keeps; throws a DatasetError naming the broken one. */
export function assertValidDataset(ds: ImageDataset): void {
  const fail = (what: string) => {
    throw new DatasetError(ds.name || 'dataset', 'corrupt', `is not a valid dataset: ${what}.`);
  };
  const intIn = (x: number, lo: number, hi: number) => Number.isInteger(x) && x >= lo && x <= hi;
  if (!intIn(ds.N, 1, 2 ** 31)) fail(`N = ${ds.N}`);
  if (ds.C !== 1 && ds.C !== 3) fail(`C = ${ds.C} (must be 1 or 3)`);
  if (!intIn(ds.H, 1, 65535) || !intIn(ds.W, 1, 65535)) fail(`H×W = ${ds.H}×${ds.W}`);
  if (!(ds.images instanceof Uint8Array) || ds.images.length !== ds.N * ds.C * ds.H * ds.W) fail(`${ds.images?.length} pixels for N·C·H·W = ${ds.N * ds.C * ds.H * ds.W}`);
  if (!intIn(ds.nTrain, 1, ds.N)) fail(`nTrain = ${ds.nTrain} of N = ${ds.N}`);
  if (ds.mean.length !== ds.C || ds.std.length !== ds.C) fail('mean/std length differs from C');
  if (ds.mean.some((m) => !(m >= 0 && m <= 1)) || ds.std.some((s) => !(s > 0 && s <= 1))) fail(`mean ${ds.mean} / std ${ds.std} out of range`);
  if (ds.labels) {
    if (!(ds.labels instanceof Int32Array) || ds.labels.length !== ds.N) fail('labels length differs from N');
    const K = ds.classNames.length;
    if (K < 1) fail('labels without class names');
    for (let i = 0; i < ds.N; i++) if (!(ds.labels[i] >= 0 && ds.labels[i] < K)) fail(`label ${ds.labels[i]} of sample ${i} outside [0, ${K})`);
  } else if (ds.classNames.length !== 0) fail('class names without labels');
}

/** Bytes the dataset holds (pixels + labels). */
export function datasetBytes(ds: ImageDataset): number {
  return ds.images.byteLength + (ds.labels ? ds.labels.byteLength : 0);
}

/** ITU-R BT.601 luma, the weights PIL's convert('L') uses. */
export const LUMA = [0.299, 0.587, 0.114] as const;

/**
 * Convert between 1 and 3 channels (gray→RGB repeats, RGB→gray is luma), returning new
 * arrays and recomputed stats; the same dataset when C already matches.
 */
export function withChannels(ds: ImageDataset, C: 1 | 3): ImageDataset {
  if (ds.C === C) return ds;
  const HW = ds.H * ds.W;
  const out = new Uint8Array(ds.N * C * HW);
  for (let n = 0; n < ds.N; n++) {
    const src = n * ds.C * HW;
    const dst = n * C * HW;
    if (C === 3) {
      const plane = ds.images.subarray(src, src + HW);
      out.set(plane, dst);
      out.set(plane, dst + HW);
      out.set(plane, dst + 2 * HW);
    } else {
      for (let i = 0; i < HW; i++) {
        const v = LUMA[0] * ds.images[src + i] + LUMA[1] * ds.images[src + HW + i] + LUMA[2] * ds.images[src + 2 * HW + i];
        out[dst + i] = Math.min(255, Math.round(v));
      }
    }
  }
  return makeDataset({ ...ds, images: out, C });
}

/** One sample as RGBA (for canvases and thumbnails). */
export function sampleRGBA(ds: ImageDataset, n: number): Uint8ClampedArray {
  const HW = ds.H * ds.W;
  const base = n * ds.C * HW;
  const out = new Uint8ClampedArray(HW * 4);
  for (let i = 0; i < HW; i++) {
    const r = ds.images[base + i];
    out[i * 4] = r;
    out[i * 4 + 1] = ds.C === 3 ? ds.images[base + HW + i] : r;
    out[i * 4 + 2] = ds.C === 3 ? ds.images[base + 2 * HW + i] : r;
    out[i * 4 + 3] = 255;
  }
  return out;
}

export interface DatasetSummary {
  name: string;
  source: string;
  N: number;
  nTrain: number;
  nVal: number;
  C: 1 | 3;
  H: number;
  W: number;
  numClasses: number;
  classNames: string[];
  bytes: number;
  mean: number[];
  std: number[];
}

export function summarize(ds: ImageDataset): DatasetSummary {
  return {
    name: ds.name,
    source: ds.source,
    N: ds.N,
    nTrain: ds.nTrain,
    nVal: ds.N - ds.nTrain,
    C: ds.C,
    H: ds.H,
    W: ds.W,
    numClasses: ds.classNames.length,
    classNames: ds.classNames.slice(0, 1000),
    bytes: datasetBytes(ds),
    mean: ds.mean,
    std: ds.std,
  };
}
