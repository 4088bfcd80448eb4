/**
 * What every driver of the Trainer shares — the Node command (src/cli/train.ts) and the browser's
 * training worker (src/worker/train-session.ts): which built-in dataset a name means, the
 * training loader and the fixed validation images with their fixed mask, the reconstruction
 * picture of them, and the device limits a memory plan needs. Platform-neutral: datasets come
 * in already loaded (from disk in Node, fetched or from IndexedDB in the browser).
 */
import { maskRatioFor, type Masking } from '../core/masking';
import { BUILTIN_DATASETS, type BuiltinId, type BuiltinInfo } from '../data/builtin';
import type { ImageDataset } from '../data/dataset';
import { DatasetError } from '../data/errors';
import { DataLoader } from '../data/loader';
import type { ShapesOptions } from '../data/procedural';
import type { LimitsNeeded } from '../gpu/device';
import type { MaeConfig } from './config';
import { MaskingSampler, formatBytes, type MemoryPlan, type ResolvedTrainConfig, type Trainer } from './trainer';
import { GRID_COLUMNS, GRID_GAP, gridColumnLevels, reconstructionGrid, type RgbImage } from './visualize';

/** The built-in a dataset name means: 'mnist', or 'procedural' / 'shapes' (generated Shapes). */
export function builtinDatasetId(name: string): BuiltinId {
  if (name === 'mnist') return 'mnist';
  if (name === 'procedural' || name === 'shapes') return 'shapes';
  throw new Error(`Dataset "${name}" must be mnist or procedural (shapes).`);
}

export const builtinInfo = (id: BuiltinId): BuiltinInfo => BUILTIN_DATASETS.find((d) => d.id === id)!;

/** Shapes are generated at the model's resolution and channels. */
export const shapesOptionsFor = (model: Pick<MaeConfig, 'imgSize' | 'inChans'>): ShapesOptions => ({ size: model.imgSize, channels: model.inChans as 1 | 3 });

/** The fixed validation batch the reconstructions show: the same images and the same mask at every step. */
export interface ValidationSet {
  /** [batch, C, S, S] normalised like the training images. */
  imgs: Float32Array;
  masking: Masking;
  /** The loader's normalisation, to draw pixels back. */
  mean: number[];
  std: number[];
}

export interface RunData {
  loader: DataLoader;
  val: ValidationSet;
  /** What the model sees, for reports. */
  summary: { name: string; train: number; val: number; C: number; H: number; W: number; mean: number[]; std: number[] };
}

/**
 * The training loader (seeded by the run's seed; MAE's random resized crop, with a flip unless
 * `hflip` is false) and the validation set: the first `batch` images of the validation split,
 * masked by a sampler seeded from `seed ^ 0x5eed` (independent of the training masks).
 */
export function makeRunData(ds: ImageDataset, rc: ResolvedTrainConfig, opts: { augment?: 'mae' | 'none'; hflip?: boolean } = {}): RunData {
  const { imgSize, inChans } = rc.model;
  const channels = inChans as 1 | 3;
  const loader = new DataLoader(ds, {
    split: 'train', batchSize: rc.batch, seed: rc.seed, resolution: imgSize, channels,
    augment: opts.augment === 'none' ? false : { hflip: opts.hflip ?? true },
  });
  const valLoader = new DataLoader(ds, { split: 'val', batchSize: rc.batch, seed: rc.seed, resolution: imgSize, channels });
  const imgs = valLoader.next().x.slice();
  if (imgs.length !== rc.batch * channels * imgSize * imgSize) {
    throw new DatasetError(ds.name, 'unsupported', `has ${valLoader.count} validation images, fewer than one batch of ${rc.batch} (the reconstructions show one batch).`, 'Choose a smaller batch.');
  }
  const masking = new MaskingSampler(rc.seed ^ 0x5eed).next(rc.batch, rc.patches, rc.visible);
  return {
    loader,
    val: { imgs, masking, mean: loader.stats.mean, std: loader.stats.std },
    summary: { name: ds.name, train: loader.count, val: valLoader.count, C: channels, H: imgSize, W: imgSize, mean: loader.stats.mean, std: loader.stats.std },
  };
}

/** Integer upscale of a reconstruction cell (so that a cell is ≥ 96 px), as reconstructionGrid's default. */
export const reconstructionScale = (imgSize: number): number => Math.max(1, Math.ceil(96 / imgSize));

/**
 * The model's reconstruction of the validation set (a forward only; no parameter changes):
 * `count` rows of original / masked / reconstruction / reconstruction + visible, the distinct
 * grey levels of each of those columns, and the validation losses.
 */
export async function reconstructValidation(trainer: Trainer, val: ValidationSet, count = Math.min(8, trainer.config.batch)): Promise<{ image: RgbImage; rows: number; cell: number; gap: number; levels: number[]; pix: number; loss: number }> {
  const cfg = trainer.config.model;
  const rows = Math.max(1, Math.min(count, trainer.config.batch));
  const r = await trainer.reconstruct(val.imgs, val.masking);
  const scale = reconstructionScale(cfg.imgSize);
  const image = reconstructionGrid({ cfg, imgs: val.imgs, pred: r.pred, mask: val.masking.mask, mean: val.mean, std: val.std, count: rows, scale });
  const cell = cfg.imgSize * scale, gap = GRID_GAP;
  const levels = gridColumnLevels(image, 3, { rows, columns: GRID_COLUMNS, cell, gap });
  return { image, rows, cell, gap, levels, pix: r.pix, loss: r.loss };
}

/** RGB bytes → RGBA (opaque), in a fresh ArrayBuffer of its own (transferable). */
export function rgbToRgba(img: RgbImage): { width: number; height: number; data: Uint8ClampedArray<ArrayBuffer> } {
  const n = img.width * img.height;
  const out = new Uint8ClampedArray(new ArrayBuffer(n * 4));
  for (let i = 0; i < n; i++) {
    out[4 * i] = img.data[3 * i];
    out[4 * i + 1] = img.data[3 * i + 1];
    out[4 * i + 2] = img.data[3 * i + 2];
    out[4 * i + 3] = 255;
  }
  return { width: img.width, height: img.height, data: out };
}

/** WebGPU's default maxStorageBufferBindingSize (and maxBufferSize is 256 MiB). */
export const DEFAULT_BINDING_BYTES = 128 * 2 ** 20;

/** Limits beyond WebGPU's defaults that a run's largest buffer needs (none when it fits the defaults). */
export function limitsNeededFor(plan: MemoryPlan): LimitsNeeded {
  return plan.largestBufferBytes > DEFAULT_BINDING_BYTES ? { maxStorageBufferBindingSize: plan.largestBufferBytes, maxBufferSize: plan.largestBufferBytes } : {};
}

/** The role of the plan's largest buffer, for messages. */
export function largestPart(plan: MemoryPlan): string {
  let best = '', bytes = -1;
  for (const [k, b0] of Object.entries(plan.parts)) {
    const b = k === 'nan-guard-backups' ? b0 / 6 : b0;
    if (b > bytes) [best, bytes] = [k, b];
  }
  return best;
}

/**
 * Why an adapter with these limits cannot hold the run (its largest single buffer), or null.
 * Total memory is not a WebGPU limit: allocation failures are caught separately.
 */
export function planExceedsLimits(plan: MemoryPlan, limits: Record<string, number>): string | null {
  const cap = Math.min(limits.maxBufferSize ?? Infinity, limits.maxStorageBufferBindingSize ?? Infinity);
  if (plan.largestBufferBytes <= cap) return null;
  return `The run needs one ${formatBytes(plan.largestBufferBytes)} buffer (${largestPart(plan)}); this GPU allows at most ${formatBytes(cap)} in one buffer. ` +
    'Use a smaller model or batch, fewer visible patches, or gradient accumulation (a smaller batch, more micro-batches).';
}

/**
 * The same images a step (batch × accumSteps) in more, smaller micro-batches, for a run whose
 * largest buffer is over what the adapter allows in one (`fits`: whether a batch and micro-batch
 * count fit, e.g. by planExceedsLimits): the largest batch that divides the images a step and fits,
 * or null when not even a batch of 1 does.
 */
export function microBatchesThatFit(batch: number, accumSteps: number, fits: (batch: number, accumSteps: number) => boolean): { batch: number; accumSteps: number } | null {
  const images = batch * accumSteps;
  for (let b = Math.min(batch, images); b >= 1; b--) {
    if (images % b === 0 && fits(b, images / b)) return { batch: b, accumSteps: images / b };
  }
  return null;
}

/** "49 of 196 patches visible (mask 75.0 %)". */
export const describeMasking = (rc: ResolvedTrainConfig): string => `${rc.visible} of ${rc.patches} patches visible (mask ${(100 * maskRatioFor(rc.patches, rc.visible)).toFixed(1)} %)`;
