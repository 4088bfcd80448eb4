/**
 * Batches for training and evaluation: seeded shuffling per epoch, a fixed validation split,
 * MAE's augmentation, and a state that restores the stream exactly (checkpoints save it).
 *
 * Determinism without hidden state: the epoch's order is a permutation drawn from
 * (seed, epoch), and each sample's augmentation from (seed, epoch, position in the epoch). So
 * the whole stream is a function of { seed, epoch, position }, which is the loader's state;
 * a restored loader gives bit-identical batches, whatever happened before.
 *
 * A batch is `x` [B·C·H·W] float32 (NCHW), each pixel (v/255 − mean[c]) / std[c] with the
 * dataset's own statistics, and `labels` [B] (or null).
 */
import { channelStats, LUMA, type ChannelStats, type ImageDataset } from './dataset';
import { DatasetError } from './errors';
import { resampleCHW, type Rect } from './resize';
import { hashInts, Rng } from './rng';

export interface AugmentOptions {
  /** RandomResizedCrop (torchvision's): area fraction and aspect ratio ranges. */
  randomResizedCrop: boolean;
  scale: [number, number];
  ratio: [number, number];
  /** RandomHorizontalFlip(p = 0.5). Off for digits and text, where a mirror changes the class. */
  hflip: boolean;
}

/** MAE's pretraining augmentation: RandomResizedCrop(scale=(0.2, 1.0)), RandomHorizontalFlip. */
export const MAE_AUGMENT: AugmentOptions = { randomResizedCrop: true, scale: [0.2, 1.0], ratio: [3 / 4, 4 / 3], hflip: true };

export interface LoaderOptions {
  split: 'train' | 'val';
  batchSize: number;
  seed: number;
  /** Output side (square) or size; default the dataset's. */
  resolution?: number | { height: number; width: number };
  /** Output channels; default the dataset's (gray is repeated to RGB, RGB becomes luma). */
  channels?: 1 | 3;
  /** Augmentation; default MAE_AUGMENT for 'train', none for 'val'. Partial options fill in from MAE_AUGMENT. */
  augment?: Partial<AugmentOptions> | false;
  /** Default: true for 'train', false for 'val'. */
  shuffle?: boolean;
  /** Drop the last incomplete batch of an epoch; default true for 'train', false for 'val'. */
  dropLast?: boolean;
}

export interface LoaderState {
  seed: number;
  epoch: number;
  /** Samples of this epoch already handed out. */
  position: number;
}

export interface Batch {
  /** [size·C·H·W] normalised pixels, NCHW. */
  x: Float32Array;
  /** [size] labels, or null for an unlabelled dataset. */
  labels: Int32Array | null;
  /** [size] dataset indices of the samples. */
  indices: Uint32Array;
  size: number;
  C: number;
  H: number;
  W: number;
  /** The epoch the batch belongs to, and its number within the epoch. */
  epoch: number;
  step: number;
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of an area fraction in `scale` and
 * a log-uniform aspect ratio in `ratio`; if none fits, a centre crop clamped to `ratio`.
 */
export function randomResizedCropParams(rng: Rng, H: number, W: number, scale: [number, number], ratio: [number, number]): Rect {
  const area = H * W;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = Math.round(Math.sqrt(targetArea * aspect));
    const h = Math.round(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      const y = rng.int(H - h + 1);
      const x = rng.int(W - w + 1);
      return { x, y, w, h };
    }
  }
  const inRatio = W / H;
  let w: number;
  let h: number;
  if (inRatio < Math.min(...ratio)) {
    w = W;
    h = Math.round(w / Math.min(...ratio));
  } else if (inRatio > Math.max(...ratio)) {
    h = H;
    w = Math.round(h * Math.max(...ratio));
  } else {
    w = W;
    h = H;
  }
  return { x: Math.floor((W - w) / 2), y: Math.floor((H - h) / 2), w, h };
}

/** Mean/std of the dataset's training pixels as they come out in C channels. */
export function statsForChannels(ds: ImageDataset, C: 1 | 3): ChannelStats {
  if (C === ds.C) return { mean: ds.mean, std: ds.std };
  if (C === 3) return { mean: [ds.mean[0], ds.mean[0], ds.mean[0]], std: [ds.std[0], ds.std[0], ds.std[0]] };
  // RGB → luma: one pass over the training samples.
  const HW = ds.H * ds.W;
  const gray = new Uint8Array(Math.max(1, ds.nTrain) * HW);
  for (let n = 0; n < ds.nTrain; n++) {
    const b = n * 3 * HW;
    for (let i = 0; i < HW; i++) gray[n * HW + i] = Math.min(255, Math.round(LUMA[0] * ds.images[b + i] + LUMA[1] * ds.images[b + HW + i] + LUMA[2] * ds.images[b + 2 * HW + i]));
  }
  return channelStats(gray, ds.nTrain, 1, HW);
}

export class DataLoader {
  readonly C: 1 | 3;
  readonly H: number;
  readonly W: number;
  /** Samples in this loader's split. */
  readonly count: number;
  readonly batchesPerEpoch: number;
  readonly stats: ChannelStats;
  private readonly first: number;
  private readonly augment: AugmentOptions | null;
  private readonly shuffle: boolean;
  private readonly dropLast: boolean;
  readonly batchSize: number;
  private seed: number;
  private epoch = 0;
  private position = 0;
  private order: Uint32Array | null = null;
  private orderEpoch = -1;
  private scratch: Float32Array;

  constructor(readonly dataset: ImageDataset, opts: LoaderOptions, state?: LoaderState) {
    const ds = dataset;
    const train = opts.split === 'train';
    this.first = train ? 0 : ds.nTrain;
    this.count = train ? ds.nTrain : ds.N - ds.nTrain;
    if (this.count === 0) throw new DatasetError(ds.name, 'empty', `has no ${train ? 'training' : 'validation'} samples.`);
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new DatasetError(ds.name, 'unsupported', `batch size ${opts.batchSize} must be a positive whole number.`);
    this.batchSize = opts.batchSize;
    this.dropLast = opts.dropLast ?? train;
    if (this.dropLast && this.count < this.batchSize) {
      throw new DatasetError(ds.name, 'unsupported', `has ${this.count} ${opts.split} samples, fewer than one batch of ${this.batchSize}.`, 'Choose a smaller batch.');
    }
    this.batchesPerEpoch = this.dropLast ? Math.floor(this.count / this.batchSize) : Math.ceil(this.count / this.batchSize);
    const r = opts.resolution;
    this.H = r === undefined ? ds.H : typeof r === 'number' ? r : r.height;
    this.W = r === undefined ? ds.W : typeof r === 'number' ? r : r.width;
    if (!(Number.isInteger(this.H) && Number.isInteger(this.W) && this.H >= 1 && this.W >= 1 && this.H <= 4096 && this.W <= 4096)) {
      throw new DatasetError(ds.name, 'unsupported', `output resolution ${this.H}×${this.W} must be whole pixels from 1 to 4096.`);
    }
    this.C = opts.channels ?? ds.C;
    this.stats = statsForChannels(ds, this.C);
    const aug = opts.augment ?? (train ? {} : false);
    this.augment = aug === false ? null : { ...MAE_AUGMENT, ...aug };
    if (this.augment) {
      const [s0, s1] = this.augment.scale;
      const [r0, r1] = this.augment.ratio;
      if (!(s0 > 0 && s0 <= s1 && s1 <= 1 && r0 > 0 && r0 <= r1)) throw new DatasetError(ds.name, 'unsupported', `augmentation scale ${s0}–${s1} / ratio ${r0}–${r1} is not valid.`);
    }
    this.shuffle = opts.shuffle ?? train;
    this.seed = opts.seed >>> 0;
    this.scratch = new Float32Array(ds.C * this.H * this.W);
    if (state) this.setState(state);
  }

  getState(): LoaderState {
    return { seed: this.seed, epoch: this.epoch, position: this.position };
  }

  setState(s: LoaderState): void {
    if (!(Number.isInteger(s.epoch) && s.epoch >= 0 && Number.isInteger(s.position) && s.position >= 0 && s.position <= this.count)) {
      throw new DatasetError(this.dataset.name, 'corrupt', `loader state epoch ${s.epoch}, position ${s.position} does not fit a split of ${this.count} samples.`);
    }
    this.seed = s.seed >>> 0;
    this.epoch = s.epoch;
    this.position = s.position;
    this.orderEpoch = -1;
  }

  get sampleSize(): number {
    return this.C * this.H * this.W;
  }

  /** The dataset indices of the current epoch, in order. */
  private epochOrder(): Uint32Array {
    if (this.orderEpoch !== this.epoch || !this.order) {
      const p = this.shuffle ? new Rng(hashInts(this.seed, this.epoch, 0x5348)).permutation(this.count) : Uint32Array.from({ length: this.count }, (_, i) => i);
      for (let i = 0; i < p.length; i++) p[i] += this.first;
      this.order = p;
      this.orderEpoch = this.epoch;
    }
    return this.order;
  }

  /**
   * The next batch (rolling into the next epoch when this one is done). Writes into `into`
   * when given (it must hold batchSize·C·H·W floats), so a caller can reuse buffers.
   */
  next(into?: Float32Array): Batch {
    const remaining = this.count - this.position;
    if (remaining === 0 || (this.dropLast && remaining < this.batchSize)) {
      this.epoch++;
      this.position = 0;
    }
    const order = this.epochOrder();
    const size = Math.min(this.batchSize, this.count - this.position);
    const S = this.sampleSize;
    const x = into && into.length >= size * S ? into.subarray(0, size * S) : new Float32Array(size * S);
    const indices = new Uint32Array(size);
    const labels = this.dataset.labels ? new Int32Array(size) : null;
    const step = Math.floor(this.position / this.batchSize);
    for (let b = 0; b < size; b++) {
      const pos = this.position + b;
      const idx = order[pos];
      indices[b] = idx;
      if (labels) labels[b] = this.dataset.labels![idx];
      this.writeSample(x, b * S, idx, pos);
    }
    const batch: Batch = { x, labels, indices, size, C: this.C, H: this.H, W: this.W, epoch: this.epoch, step };
    this.position += size;
    return batch;
  }

  /** The crop and flip sample `pos` of the current epoch gets (null crop = whole image). */
  augmentationOf(pos: number): { crop: Rect; flip: boolean } {
    const ds = this.dataset;
    const whole: Rect = { x: 0, y: 0, w: ds.W, h: ds.H };
    if (!this.augment) return { crop: whole, flip: false };
    const rng = new Rng(hashInts(this.seed, this.epoch, pos, 0xa06));
    const crop = this.augment.randomResizedCrop ? randomResizedCropParams(rng, ds.H, ds.W, this.augment.scale, this.augment.ratio) : whole;
    const flip = this.augment.hflip ? rng.float() < 0.5 : false;
    return { crop, flip };
  }

  private writeSample(x: Float32Array, offset: number, idx: number, pos: number): void {
    const ds = this.dataset;
    const { crop, flip } = this.augmentationOf(pos);
    const HW = this.H * this.W;
    const src = idx * ds.C * ds.H * ds.W;
    const { mean, std } = this.stats;
    if (ds.C === this.C) {
      resampleCHW(x, offset, ds.images, src, ds.C, ds.H, ds.W, crop, this.H, this.W, flip);
      for (let c = 0; c < this.C; c++) {
        const m = mean[c];
        const inv = 1 / std[c];
        for (let i = offset + c * HW, end = i + HW; i < end; i++) x[i] = (x[i] / 255 - m) * inv;
      }
      return;
    }
    const t = this.scratch;
    resampleCHW(t, 0, ds.images, src, ds.C, ds.H, ds.W, crop, this.H, this.W, flip);
    for (let c = 0; c < this.C; c++) {
      const m = mean[c];
      const inv = 1 / std[c];
      for (let i = 0; i < HW; i++) {
        const v = this.C === 3 ? t[i] : LUMA[0] * t[i] + LUMA[1] * t[HW + i] + LUMA[2] * t[2 * HW + i];
        x[offset + c * HW + i] = (v / 255 - m) * inv;
      }
    }
  }
}

/**
 * Prepares the next batch while the caller's step runs: `next()` hands out the batch made
 * ahead and schedules the one after it on a macrotask, so in a worker the CPU work overlaps
 * the GPU's (submit, then await the readback). Two buffers alternate: a batch's `x` stays
 * valid until the second `next()` after it.
 */
export class BatchPrefetcher {
  private pending: Promise<{ batch: Batch; before: LoaderState }> | null = null;
  private buffers: Float32Array[];
  private flip = 0;

  constructor(readonly loader: DataLoader) {
    const n = loader.batchesPerEpoch > 0 ? Math.min(loader.count, loader.batchSize) : 0;
    this.buffers = [new Float32Array(n * loader.sampleSize), new Float32Array(n * loader.sampleSize)];
  }

  private schedule(): Promise<{ batch: Batch; before: LoaderState }> {
    const buf = this.buffers[this.flip];
    this.flip ^= 1;
    return new Promise((resolve, reject) =>
      setTimeout(() => {
        try {
          const before = this.loader.getState();
          resolve({ batch: this.loader.next(buf), before });
        } catch (e) {
          reject(e);
        }
      }, 0),
    );
  }

  async next(): Promise<Batch> {
    const { batch } = await (this.pending ?? this.schedule());
    this.pending = this.schedule();
    return batch;
  }

  /** The loader state after the batches handed out so far (the batch made ahead not counted): what a checkpoint saves. */
  async state(): Promise<LoaderState> {
    if (!this.pending) return this.loader.getState();
    return (await this.pending).before;
  }
}
