/**
 * The importer: files (a folder's, an archive's, loose ones) in, one ImageDataset out.
 *
 *   read sources → unpack archives (zip, tar, gzip; nested, under one budget) → drop system
 *   files → decide the format (IDX, CIFAR binary, or a folder of images) → parse → fixed
 *   train/validation split → conform to the asked resolution and channels → mean/std.
 *
 * Pure TypeScript: the same code runs in the browser (sources from File objects, the browser's
 * image decoders) and in Node (sources from paths, sharp). Every failure is a DatasetError that
 * names the file; an import never writes anything, so a failed one leaves stored data alone.
 */
import { DatasetError, DEFAULT_LIMITS, formatBytes, type ImportLimits } from './errors';
import { makeDataset, permuteSamples, splitOrder, LUMA, type ImageDataset } from './dataset';
import { Budget, cleanPath, gunzip, isGzip, isZip, looksLikeTar, unzip, untar } from './formats/archive';
import { looksLikeIdx, parseIdx, type IdxArray } from './formats/idx';
import { CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR_PIXELS, cifarRecordCount, cifarRecordSize, parseCifarBatch, parseLabelNames, type CifarKind } from './formats/cifar';
import { checkImageSize, IMAGE_EXTENSIONS, imageFormatOf, readImageHeader, type ImageHeader } from './formats/image-header';
import { resizeCHW } from './resize';

/** One file to import: a path (relative, '/'-separated; folders give the labels) and its bytes. */
export interface ImportSource {
  path: string;
  /** Size in bytes, known before reading (File.size, fs.stat). */
  size: number;
  read(): Promise<Uint8Array>;
}

/** A decoded image, channels interleaved (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), rows top to bottom. */
export interface DecodedImage {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

/** The platform's image decoder (the browser's, or sharp in Node). Throws on a bad image. */
export interface ImageDecoder {
  decode(bytes: Uint8Array, file: string, header: ImageHeader, limits: ImportLimits): Promise<DecodedImage>;
}

export interface ImportProgress {
  phase: 'reading' | 'unpacking' | 'decoding' | 'finishing';
  done: number;
  total: number;
}

export interface ImportOptions {
  /** Dataset name; default from the folder or archive name. */
  name?: string;
  /** Stored resolution (square side, or height and width). Default: native for IDX/CIFAR, the images' own size up to 128 for folders. */
  resolution?: number | { height: number; width: number };
  /** Stored channels; 'auto' (default) keeps gray data gray and colour data RGB. */
  channels?: 1 | 3 | 'auto';
  /** How images of another aspect ratio are fitted: centred crop (default) or stretch. */
  fit?: 'cover' | 'stretch';
  /** Validation fraction when the files do not come split (default 0.1). */
  valFraction?: number;
  /** Seed of that split (default fixed, so the same files always give the same split). */
  splitSeed?: number;
  /** Ignore files in an image folder that are not images (default: they are an error). */
  skipNonImages?: boolean;
  /** CIFAR-100 labels: 'fine' (100 classes, default) or 'coarse' (20). */
  cifar100Labels?: 'fine' | 'coarse';
  /** Transpose IDX images (EMNIST stores them column-major); default: when the path says emnist. */
  transposeIdx?: boolean;
  limits?: Partial<ImportLimits>;
  /** Needed for folders of images. */
  decoder?: ImageDecoder;
  /** Images decoded at once (default 4). */
  concurrency?: number;
  onProgress?: (p: ImportProgress) => void;
  signal?: AbortSignal;
}

export interface ImportResult {
  dataset: ImageDataset;
  /** Files that were skipped, and other things the user should know. */
  warnings: string[];
}

export const DEFAULT_SPLIT_SEED = 20240611;
const AUTO_MAX_SIDE = 128;

interface Entry {
  path: string;
  /** The bytes — or, for a loose image file, only its first bytes (see `reread`). */
  data: Uint8Array;
  /** A loose image file keeps only its header in memory until it is decoded; this reads it again. */
  reread?: () => Promise<Uint8Array>;
  /** Its header, read while the whole file was in hand. */
  header?: ImageHeader;
}

/** Bytes of a loose image file kept in memory between the scan and the decoding. */
const HEAD_BYTES = 64;
/**
 * Small loose images (thumbnails, MNIST or CIFAR as PNGs) are kept whole instead, up to a total
 * of 64 MiB or a sixteenth of the import's memory budget, which saves reading each file twice
 * (a third of a small-image folder's import time); past it, or for bigger files, only the header stays.
 */
const KEEP_WHOLE_MAX = 64 * 1024;
const KEEP_WHOLE_TOTAL = 64 * 2 ** 20;

const JUNK = /(^|\/)(__MACOSX|\.[^/]*)(\/|$)|(^|\/)(Thumbs\.db|desktop\.ini|ehthumbs\.db)$/i;

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}
function extOf(p: string): string {
  const b = baseName(p).toLowerCase();
  const i = b.lastIndexOf('.');
  return i < 0 ? '' : b.slice(i + 1);
}
function stripArchiveExt(name: string): string {
  return name.replace(/\.(tar\.gz|tgz|tar|zip|gz)$/i, '');
}

function checkAbort(signal?: AbortSignal) {
  if (signal?.aborted) throw new DatasetError('import', 'cancelled', 'was cancelled.');
}

/** Read every source under the budget and unpack archives (recursively, to maxArchiveDepth). */
async function readAndUnpack(sources: ImportSource[], budget: Budget, opts: ImportOptions, warnings: string[]): Promise<Entry[]> {
  budget.takeEntries(sources[0]?.path ?? 'import', sources.length);
  const out: Entry[] = [];
  const sorted = [...sources].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  let done = 0;
  let keptWhole = 0;
  const keepWholeTotal = Math.min(KEEP_WHOLE_TOTAL, budget.limits.maxUncompressedBytes / 16);
  for (const s of sorted) {
    checkAbort(opts.signal);
    const path = cleanPath(s.path) || 'file';
    if (JUNK.test(path)) continue;
    budget.takeBytes(path, s.size, true);
    let data: Uint8Array;
    try {
      data = await s.read();
    } catch (e) {
      throw new DatasetError(path, 'not-found', `could not be read (${e instanceof Error ? e.message : String(e)}).`);
    }
    if (data.length !== s.size) budget.takeBytes(path, Math.max(0, data.length - s.size), true);
    if (imageFormatOf(data) !== null) {
      // A loose image: read its header now, keep only its first bytes, read it again to decode.
      // A folder of 100,000 photos then costs its headers, not its gigabytes.
      let header: ImageHeader | undefined;
      try {
        header = readImageHeader(data, path);
      } catch {
        header = undefined; // reported (with the whole file) when the folder is built
      }
      if (header && data.length <= KEEP_WHOLE_MAX && keptWhole + data.length <= keepWholeTotal) {
        keptWhole += data.length;
        out.push({ path, data, header });
        opts.onProgress?.({ phase: 'reading', done: ++done, total: sorted.length });
        continue;
      }
      if (header) {
        out.push({ path, data: data.slice(0, HEAD_BYTES), header, reread: async () => await s.read() });
        budget.refund(Math.max(0, data.length - HEAD_BYTES));
        opts.onProgress?.({ phase: 'reading', done: ++done, total: sorted.length });
        continue;
      }
    }
    unpack({ path, data }, 0, budget, out, warnings);
    opts.onProgress?.({ phase: 'reading', done: ++done, total: sorted.length });
  }
  return out;
}

function unpack(e: Entry, depth: number, budget: Budget, out: Entry[], warnings: string[]): void {
  if (JUNK.test(e.path)) return;
  const lower = e.path.toLowerCase();
  const byName = /\.(zip|tar|tgz|gz)$/.test(lower);
  const isArchive = byName || isZip(e.data) || isGzip(e.data) || (e.data.length >= 512 && String.fromCharCode(...e.data.subarray(257, 262)) === 'ustar');
  if (!isArchive) {
    out.push(e);
    return;
  }
  if (depth >= budget.limits.maxArchiveDepth) {
    throw new DatasetError(e.path, 'too-large', `is an archive nested ${depth + 1} deep; at most ${budget.limits.maxArchiveDepth} levels are unpacked.`);
  }
  if (isZip(e.data) || lower.endsWith('.zip')) {
    for (const inner of unzip(e.data, e.path, budget)) unpack(inner, depth + 1, budget, out, warnings);
    return;
  }
  if (isGzip(e.data) || /\.(tgz|gz)$/.test(lower)) {
    const inflated = gunzip(e.data, e.path, budget);
    // a.tar.gz / a.tgz hold a tar; x.gz holds x. Name the content so that errors read well.
    const tarName = /\.(tgz|tar\.gz)$/i.test(e.path);
    const name = e.path.replace(/\.tgz$/i, '.tar').replace(/\.gz$/i, '') || `${e.path}.out`;
    if (tarName || looksLikeTar(inflated)) {
      for (const inner of untar(inflated, e.path, budget)) unpack(inner, depth + 1, budget, out, warnings);
    } else {
      out.push({ path: name === e.path ? `${e.path}.out` : name, data: inflated });
    }
    return;
  }
  for (const inner of untar(e.data, e.path, budget)) unpack(inner, depth + 1, budget, out, warnings);
}

/** Paths relative to their longest common folder. */
function relativePaths(paths: string[]): string[] {
  if (paths.length === 0) return [];
  const split = paths.map((p) => p.split('/'));
  let common = 0;
  const first = split[0];
  outer: for (; common < first.length - 1; common++) {
    for (const s of split) if (s.length - 1 <= common || s[common] !== first[common]) break outer;
  }
  return split.map((s) => s.slice(common).join('/'));
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true, sensitivity: 'variant' });
}

function resolveTarget(opts: ImportOptions): { H: number; W: number } | null {
  const r = opts.resolution;
  if (r === undefined) return null;
  const { height, width } = typeof r === 'number' ? { height: r, width: r } : r;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1 || height > 4096 || width > 4096) {
    throw new DatasetError('import options', 'unsupported', `resolution ${height}×${width} must be whole pixels between 1 and 4096.`);
  }
  return { H: height, W: width };
}

function checkDatasetSize(file: string, N: number, C: number, H: number, W: number, limits: ImportLimits): void {
  const bytes = N * C * H * W;
  if (bytes > limits.maxDatasetBytes) {
    throw new DatasetError(file, 'too-large', `would hold ${N} images of ${C}×${H}×${W} = ${formatBytes(bytes)}, past the ${formatBytes(limits.maxDatasetBytes)} a dataset may have.`, 'Choose a smaller resolution, or fewer images.');
  }
}

/** Apply the asked resolution and channels to CHW uint8 samples. */
function conform(images: Uint8Array, N: number, C: 1 | 3, H: number, W: number, opts: ImportOptions, limits: ImportLimits, file: string): { images: Uint8Array; C: 1 | 3; H: number; W: number } {
  const target = resolveTarget(opts);
  const outC: 1 | 3 = opts.channels === 1 || opts.channels === 3 ? opts.channels : C;
  const outH = target?.H ?? H;
  const outW = target?.W ?? W;
  if (outC === C && outH === H && outW === W) return { images, C, H, W };
  checkDatasetSize(file, N, outC, outH, outW, limits);
  const out = new Uint8Array(N * outC * outH * outW);
  const inSize = C * H * W;
  const outSize = outC * outH * outW;
  for (let n = 0; n < N; n++) {
    let sample = images.subarray(n * inSize, (n + 1) * inSize);
    if (outH !== H || outW !== W) sample = resizeCHW(sample, C, H, W, outH, outW, opts.fit ?? 'cover');
    out.set(convertPlanes(sample, C, outC, outH * outW), n * outSize);
  }
  return { images: out, C: outC, H: outH, W: outW };
}

function convertPlanes(sample: Uint8Array, C: 1 | 3, outC: 1 | 3, HW: number): Uint8Array {
  if (C === outC) return sample;
  const out = new Uint8Array(outC * HW);
  if (outC === 3) {
    out.set(sample.subarray(0, HW), 0);
    out.set(sample.subarray(0, HW), HW);
    out.set(sample.subarray(0, HW), 2 * HW);
  } else {
    for (let i = 0; i < HW; i++) out[i] = Math.min(255, Math.round(LUMA[0] * sample[i] + LUMA[1] * sample[HW + i] + LUMA[2] * sample[2 * HW + i]));
  }
  return out;
}

/** Interleaved decoded pixels → CHW planes with C channels (alpha composited over black). */
export function decodedToCHW(img: DecodedImage, C: 1 | 3): Uint8Array {
  const HW = img.width * img.height;
  const k = img.channels;
  const out = new Uint8Array(C * HW);
  const d = img.data;
  for (let i = 0; i < HW; i++) {
    let r: number;
    let g: number;
    let b: number;
    let a = 255;
    if (k <= 2) {
      r = g = b = d[i * k];
      if (k === 2) a = d[i * 2 + 1];
    } else {
      r = d[i * k];
      g = d[i * k + 1];
      b = d[i * k + 2];
      if (k === 4) a = d[i * 4 + 3];
    }
    if (a !== 255) {
      r = Math.round((r * a) / 255);
      g = Math.round((g * a) / 255);
      b = Math.round((b * a) / 255);
    }
    if (C === 1) out[i] = k <= 2 ? r : Math.min(255, Math.round(LUMA[0] * r + LUMA[1] * g + LUMA[2] * b));
    else {
      out[i] = r;
      out[HW + i] = g;
      out[2 * HW + i] = b;
    }
  }
  return out;
}

/** The split the files came with (train files first), or a seeded one; returns the order and nTrain. */
function finishSplit(N: number, nTrainGiven: number | null, labels: Int32Array | null, opts: ImportOptions): { order: Uint32Array | null; nTrain: number } {
  if (nTrainGiven !== null && nTrainGiven > 0 && nTrainGiven < N) return { order: null, nTrain: nTrainGiven };
  const { order, nTrain } = splitOrder(N, labels, opts.valFraction ?? 0.1, opts.splitSeed ?? DEFAULT_SPLIT_SEED);
  return { order, nTrain };
}

// ---------------------------------------------------------------------------------------- IDX

const IDX_NAME = /(idx[1-4]-ubyte|\.idx[1-4]?)(\.out)?$|ubyte$/i;
const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

function idxKey(path: string): string {
  return baseName(path).toLowerCase().replace(/\.out$/, '').replace(/images?|labels?/g, '#').replace(/idx[13]/g, 'idx#');
}
function isTestFile(path: string): boolean {
  const b = baseName(path).toLowerCase();
  return b.startsWith('t10k') || /(^|[^a-z])test/.test(b);
}

function buildIdx(entries: Entry[], opts: ImportOptions, limits: ImportLimits, warnings: string[]): ImageDataset {
  const images: { path: string; arr: IdxArray }[] = [];
  const labels: { path: string; arr: IdxArray }[] = [];
  for (const e of entries) {
    if (!(looksLikeIdx(e.data) || IDX_NAME.test(e.path))) {
      warnings.push(`${e.path}: skipped (not an IDX file).`);
      continue;
    }
    const arr = parseIdx(e.data, e.path);
    if (arr.dims.length === 3) images.push({ path: e.path, arr });
    else if (arr.dims.length === 1) labels.push({ path: e.path, arr });
    else throw new DatasetError(e.path, 'unsupported', `is an IDX file of ${arr.dims.length} dimensions (${arr.dims.join('×')}); images have 3 (count×rows×cols) and labels 1.`);
  }
  if (images.length === 0) {
    throw new DatasetError(labels[0]?.path ?? 'import', 'empty', 'is a labels file, but no IDX images file came with it.', 'Import the images file (…-images-idx3-ubyte) together with its labels.');
  }
  // Pair each images file with its labels file by name (train-images ↔ train-labels).
  const pairs: { img: (typeof images)[0]; lab: (typeof labels)[0] | null }[] = [];
  const unused = new Set(labels);
  for (const img of images) {
    let lab = labels.find((l) => unused.has(l) && idxKey(l.path) === idxKey(img.path)) ?? null;
    if (!lab && images.length === 1 && labels.length === 1) lab = labels[0];
    if (lab) unused.delete(lab);
    pairs.push({ img, lab });
  }
  for (const l of unused) throw new DatasetError(l.path, 'mismatch', 'is a labels file that matches no images file by name.', 'Name them alike (train-images-idx3-ubyte with train-labels-idx1-ubyte).');
  const labelled = pairs.filter((p) => p.lab).length;
  if (labelled !== 0 && labelled !== pairs.length) {
    const lonely = pairs.find((p) => !p.lab)!;
    throw new DatasetError(lonely.img.path, 'mismatch', 'has no labels file, while the other images files have one.');
  }
  const [, H, W] = pairs[0].img.arr.dims;
  let N = 0;
  let maxLabel = 0;
  for (const { img, lab } of pairs) {
    const [n, h, w] = img.arr.dims;
    if (h !== H || w !== W) throw new DatasetError(img.path, 'mismatch', `holds ${h}×${w} images while ${pairs[0].img.path} holds ${H}×${W}.`);
    if (h < 1 || w < 1 || h > limits.maxImageSide || w > limits.maxImageSide) throw new DatasetError(img.path, 'corrupt', `declares images of ${h}×${w} pixels.`);
    if (lab && lab.arr.dims[0] !== n) throw new DatasetError(img.path, 'mismatch', `holds ${n} images but ${lab.path} holds ${lab.arr.dims[0]} labels.`, 'They must come from the same set (both train or both t10k).');
    if (lab) for (const v of lab.arr.data) maxLabel = Math.max(maxLabel, v);
    N += n;
  }
  if (N === 0) throw new DatasetError(pairs[0].img.path, 'empty', 'holds no images.');
  checkDatasetSize(pairs[0].img.path, N, 1, H, W, limits);
  // Train files first, test files last: the test set becomes the validation split.
  pairs.sort((a, b) => Number(isTestFile(a.img.path)) - Number(isTestFile(b.img.path)) || naturalCompare(a.img.path, b.img.path));
  const transpose = opts.transposeIdx ?? pairs.some((p) => /emnist/i.test(p.img.path));
  const pix = new Uint8Array(N * H * W);
  const lab = labelled ? new Int32Array(N) : null;
  let n0 = 0;
  let nTrain = 0;
  for (const p of pairs) {
    const n = p.img.arr.dims[0];
    if (transpose) {
      for (let s = 0; s < n; s++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) pix[(n0 + s) * H * W + y * W + x] = p.img.arr.data[s * H * W + x * H + y];
    } else pix.set(p.img.arr.data, n0 * H * W);
    if (lab && p.lab) for (let i = 0; i < n; i++) lab[n0 + i] = p.lab.arr.data[i];
    if (!isTestFile(p.img.path)) nTrain += n;
    n0 += n;
  }
  const K = lab ? maxLabel + 1 : 0;
  const fashion = pairs.some((p) => /fashion/i.test(p.img.path));
  const classNames = lab ? Array.from({ length: K }, (_, i) => (fashion && K === 10 ? FASHION_CLASSES[i] : String(i))) : [];
  const name = opts.name ?? (fashion ? 'Fashion-MNIST' : /kmnist/i.test(pairs[0].img.path) ? 'KMNIST' : /emnist/i.test(pairs[0].img.path) ? 'EMNIST' : 'MNIST (IDX)');
  return assemble(name, 'idx', pix, lab, classNames, N, 1, H, W, nTrain, opts, limits, pairs[0].img.path);
}

function assemble(name: string, source: string, pix: Uint8Array, labels: Int32Array | null, classNames: string[], N: number, C: 1 | 3, H: number, W: number, nTrainGiven: number | null, opts: ImportOptions, limits: ImportLimits, file: string): ImageDataset {
  const { order, nTrain } = finishSplit(N, nTrainGiven, labels, opts);
  let images = pix;
  let labs = labels;
  if (order) ({ images, labels: labs } = permuteSamples(pix, labels, C * H * W, order));
  const c = conform(images, N, C, H, W, opts, limits, file);
  return makeDataset({ name, source, images: c.images, labels: labs, classNames, N, C: c.C, H: c.H, W: c.W, nTrain });
}

// -------------------------------------------------------------------------------------- CIFAR

function cifarKindOf(e: Entry): CifarKind | null {
  const b = baseName(e.path).toLowerCase();
  if (/^data_batch_\d+\.bin$|^test_batch\.bin$/.test(b)) return 'cifar-10';
  if (/^(train|test)\.bin$/.test(b) && /cifar-?100/i.test(e.path)) return 'cifar-100';
  if (/^(train|test)\.bin$/.test(b) || extOf(b) === 'bin') {
    const f10 = e.data.length > 0 && e.data.length % cifarRecordSize('cifar-10') === 0;
    const f100 = e.data.length > 0 && e.data.length % cifarRecordSize('cifar-100') === 0;
    if (f10 !== f100) return f10 ? 'cifar-10' : 'cifar-100';
    if (f10 && f100) throw new DatasetError(e.path, 'unsupported', 'could be a CIFAR-10 or a CIFAR-100 batch; its name does not say which.', 'Name it data_batch_N.bin (CIFAR-10) or put it in a cifar-100-binary folder.');
  }
  return null;
}

function buildCifar(entries: Entry[], opts: ImportOptions, limits: ImportLimits, warnings: string[]): ImageDataset {
  const batches: { e: Entry; kind: CifarKind }[] = [];
  const texts = new Map<string, Entry>();
  for (const e of entries) {
    const kind = cifarKindOf(e);
    if (kind) batches.push({ e, kind });
    else if (extOf(e.path) === 'txt') texts.set(baseName(e.path).toLowerCase(), e);
    else warnings.push(`${e.path}: skipped (not a CIFAR batch).`);
  }
  const kind = batches[0].kind;
  const other = batches.find((b) => b.kind !== kind);
  if (other) throw new DatasetError(other.e.path, 'mismatch', `is a ${other.kind} batch, but ${batches[0].e.path} is ${kind}.`, 'Import one dataset at a time.');
  const fine = (opts.cifar100Labels ?? 'fine') === 'fine';
  batches.sort((a, b) => Number(isTestFile(a.e.path)) - Number(isTestFile(b.e.path)) || naturalCompare(a.e.path, b.e.path));
  // Count first (a batch that is not whole records is named here), then parse straight into place.
  let N = 0;
  for (const b of batches) {
    const n = cifarRecordCount(b.e.data.length, kind);
    if (n === null) parseCifarBatch(b.e.data, b.e.path, kind, fine); // throws the precise error
    N += n!;
  }
  checkDatasetSize(batches[0].e.path, N, 3, 32, 32, limits);
  const pix = new Uint8Array(N * CIFAR_PIXELS);
  const labels = new Int32Array(N);
  let n0 = 0;
  let nTrain = 0;
  for (const b of batches) {
    const { count } = parseCifarBatch(b.e.data, b.e.path, kind, fine, { images: pix, labels, at: n0 });
    if (!isTestFile(b.e.path)) nTrain += count;
    n0 += count;
  }
  const parsed = batches.map((b) => ({ path: b.e.path }));
  const K = kind === 'cifar-10' ? 10 : fine ? 100 : 20;
  const metaName = kind === 'cifar-10' ? 'batches.meta.txt' : fine ? 'fine_label_names.txt' : 'coarse_label_names.txt';
  const metaEntry = texts.get(metaName);
  const fromMeta = metaEntry ? parseLabelNames(new TextDecoder().decode(metaEntry.data), K) : null;
  if (metaEntry && !fromMeta) warnings.push(`${metaEntry.path}: ignored (does not list ${K} class names); using the standard names.`);
  const classNames = fromMeta ?? (kind === 'cifar-10' ? CIFAR10_CLASSES : fine ? CIFAR100_CLASSES : CIFAR100_COARSE_CLASSES);
  const name = opts.name ?? (kind === 'cifar-10' ? 'CIFAR-10' : fine ? 'CIFAR-100' : 'CIFAR-100 (coarse)');
  return assemble(name, kind, pix, labels, [...classNames], N, 3, 32, 32, nTrain, opts, limits, parsed[0].path);
}

// ------------------------------------------------------------------------------------- Images

async function buildImages(entries: Entry[], opts: ImportOptions, limits: ImportLimits, warnings: string[], nameHint: string): Promise<ImageDataset> {
  const found: { e: Entry; header: ImageHeader }[] = [];
  for (const e of entries) {
    let header: ImageHeader;
    try {
      header = e.header ?? readImageHeader(e.data, e.path);
    } catch (err) {
      if (opts.skipNonImages && err instanceof DatasetError && (err.code === 'not-image' || err.code === 'unsupported')) {
        warnings.push(`${e.path}: skipped (${err.problem})`);
        continue;
      }
      throw err;
    }
    checkImageSize(header, e.path, limits);
    found.push({ e, header });
  }
  if (found.length === 0) throw new DatasetError(nameHint, 'empty', 'holds no PNG, JPEG or WebP images.');
  const decoder = opts.decoder;
  if (!decoder) throw new DatasetError(found[0].e.path, 'unsupported', 'is an image, but this import was given no image decoder.');

  // Labels from the first folder level under the common root; a train/val(idation)/test level above it gives the split.
  found.sort((a, b) => naturalCompare(a.e.path, b.e.path));
  const rel = relativePaths(found.map((f) => f.e.path));
  const parts = rel.map((r) => r.split('/'));
  const SPLIT = /^(train|training|val|valid|validation|test|testing)$/i;
  const splitLevel = parts.every((p) => p.length >= 3 && SPLIT.test(p[0])) && parts.some((p) => /^train/i.test(p[0])) && parts.some((p) => !/^train/i.test(p[0]));
  const classOf = (p: string[]) => (splitLevel ? p[1] : p.length >= 2 ? p[0] : null);
  const classes = parts.map(classOf);
  const withClass = classes.filter((c) => c !== null).length;
  if (withClass !== 0 && withClass !== classes.length) {
    const i = classes.indexOf(null);
    throw new DatasetError(found[i].e.path, 'mismatch', 'lies outside the class folders that hold the other images.', 'Move every image into a folder named after its class, or none.');
  }
  let labels: Int32Array | null = null;
  let classNames: string[] = [];
  if (withClass > 0) {
    classNames = [...new Set(classes as string[])].sort(naturalCompare);
    if (classNames.length === 1) {
      warnings.push(`All images are in one folder ('${classNames[0]}'): imported as unlabelled.`);
      classNames = [];
    } else {
      const index = new Map(classNames.map((c, i) => [c, i]));
      labels = Int32Array.from(classes, (c) => index.get(c!)!);
    }
  }
  const N = found.length;

  // Resolution: asked, or the images' own size (if all agree) capped so the set fits.
  let target = resolveTarget(opts);
  const fit = opts.fit ?? 'cover';
  if (!target) {
    const h0 = found[0].header;
    const same = found.every((f) => f.header.width === h0.width && f.header.height === h0.height);
    const budgetSide = Math.floor(Math.sqrt(limits.maxDatasetBytes / (N * 3)));
    const cap = Math.max(8, Math.min(AUTO_MAX_SIDE, budgetSide));
    if (same) {
      const s = Math.min(1, cap / Math.max(h0.width, h0.height));
      target = { H: Math.max(1, Math.round(h0.height * s)), W: Math.max(1, Math.round(h0.width * s)) };
    } else {
      const shorter = found.map((f) => Math.min(f.header.width, f.header.height)).sort((a, b) => a - b);
      const side = Math.min(cap, shorter[Math.floor((shorter.length - 1) / 2)]);
      target = { H: side, W: side };
      warnings.push(`Images have different sizes: all were fitted to ${side}×${side} (${fit === 'cover' ? 'centre-cropped' : 'stretched'}).`);
    }
  }
  const { H, W } = target;
  const asked = opts.channels === 1 || opts.channels === 3 ? opts.channels : null;
  const C: 1 | 3 = asked ?? (found.every((f) => f.header.gray) ? 1 : 3);
  checkDatasetSize(nameHint, N, C, H, W, limits);

  // Split before decoding, so each image is decoded straight into its final slot. A
  // train/ + val/ (or test/) level gives the split; else a seeded stratified one.
  let split: { order: Uint32Array | null; nTrain: number };
  if (splitLevel) {
    const isTrain = parts.map((p) => /^train/i.test(p[0]));
    const order = Uint32Array.from([...isTrain.keys()].filter((i) => isTrain[i]).concat([...isTrain.keys()].filter((i) => !isTrain[i])));
    split = { order, nTrain: isTrain.filter(Boolean).length };
  } else split = finishSplit(N, null, labels, opts);
  let slotOf = new Uint32Array(N);
  if (split.order) for (let i = 0; i < N; i++) slotOf[split.order[i]] = i;
  else slotOf = Uint32Array.from({ length: N }, (_, i) => i);
  const orderedLabels = labels && split.order ? Int32Array.from(split.order, (i) => labels![i]) : labels;

  const pix = new Uint8Array(N * C * H * W);
  const sampleSize = C * H * W;
  let allGray = C === 3 && !asked;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      checkAbort(opts.signal);
      const { e, header } = found[i];
      let img: DecodedImage;
      let bytes = e.data;
      if (e.reread) {
        try {
          bytes = await e.reread();
        } catch (err) {
          throw new DatasetError(e.path, 'not-found', `could not be read again (${err instanceof Error ? err.message : String(err)}).`, 'Was it moved or deleted during the import?');
        }
        const again = imageFormatOf(bytes) ? readImageHeader(bytes, e.path) : null;
        if (!again || again.width !== header.width || again.height !== header.height) throw new DatasetError(e.path, 'mismatch', 'changed while it was being imported.');
      }
      try {
        img = await decoder.decode(bytes, e.path, header, limits);
      } catch (err) {
        if (err instanceof DatasetError) throw err;
        throw new DatasetError(e.path, 'corrupt', `could not be decoded as ${header.format.toUpperCase()} (${err instanceof Error ? err.message : String(err)}).`, 'The file is damaged, or its extension does not match its content.');
      }
      if (!(img.width >= 1 && img.height >= 1 && img.data.length === img.width * img.height * img.channels)) {
        throw new DatasetError(e.path, 'corrupt', `decoded to an inconsistent ${img.width}×${img.height}×${img.channels} image.`);
      }
      checkImageSize(img, e.path, limits);
      let chw = decodedToCHW(img, C);
      if (allGray) {
        const HW0 = img.width * img.height;
        for (let k = 0; k < HW0 && allGray; k++) if (chw[k] !== chw[HW0 + k] || chw[k] !== chw[2 * HW0 + k]) allGray = false;
      }
      if (img.height !== H || img.width !== W) chw = resizeCHW(chw, C, img.height, img.width, H, W, fit);
      pix.set(chw, slotOf[i] * sampleSize);
      opts.onProgress?.({ phase: 'decoding', done: ++done, total: N });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 4, N)) }, worker));

  let images = pix;
  let outC: 1 | 3 = C;
  if (allGray) {
    // Every pixel of every image had R = G = B: keep one plane.
    images = new Uint8Array(N * H * W);
    for (let n = 0; n < N; n++) images.set(pix.subarray(n * 3 * H * W, n * 3 * H * W + H * W), n * H * W);
    outC = 1;
  }
  return makeDataset({ name: opts.name ?? nameHint, source: 'images', images, labels: orderedLabels, classNames, N, C: outC, H, W, nTrain: split.nTrain });
}

// ------------------------------------------------------------------------------------ The entry

/** The folder or archive the files came in, for the dataset's name and for errors about the whole set. */
function nameFrom(sources: ImportSource[]): string {
  const top = cleanPath(sources[0]?.path ?? '').split('/')[0] ?? '';
  return stripArchiveExt(top) || 'Imported dataset';
}

/**
 * Import a dataset from files. Throws DatasetError (and only that) for anything wrong with the
 * input; never stores anything.
 */
export async function importDataset(sources: ImportSource[], opts: ImportOptions = {}): Promise<ImportResult> {
  const limits: ImportLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const warnings: string[] = [];
  const nameHint = nameFrom(sources);
  if (sources.length === 0) throw new DatasetError(nameHint, 'empty', 'is empty: there are no files to import.', 'Choose a folder with images, IDX or CIFAR files, or an archive of them.');
  const budget = new Budget(limits);
  const entries = await readAndUnpack(sources, budget, opts, warnings);
  const files = entries.filter((e) => !JUNK.test(e.path));
  if (files.length === 0) throw new DatasetError(nameHint, 'empty', 'holds no files (only folders or system files).', 'Choose a folder with images, IDX or CIFAR files, or an archive of them.');
  opts.onProgress?.({ phase: 'unpacking', done: files.length, total: files.length });

  const pythonCifar = files.find((e) => /cifar-(10|100)-(batches-)?py(thon)?\//i.test(e.path) || /^data_batch_\d+$/.test(baseName(e.path)));
  const idx = files.filter((e) => looksLikeIdx(e.data) || IDX_NAME.test(e.path));
  const cifar = files.filter((e) => cifarKindOf(e) !== null);
  const images = files.filter((e) => imageFormatOf(e.data) !== null || IMAGE_EXTENSIONS.includes(extOf(e.path)));
  let ds: ImageDataset;
  if (idx.length > 0 && images.length === 0) {
    ds = buildIdx(idx, opts, limits, warnings);
    for (const e of files) if (!idx.includes(e)) warnings.push(`${e.path}: skipped (not an IDX file).`);
  } else if (cifar.length > 0 && images.length === 0) {
    ds = buildCifar(files, opts, limits, warnings);
  } else if (images.length > 0) {
    ds = await buildImages(files, opts, limits, warnings, nameHint);
  } else if (pythonCifar) {
    throw new DatasetError(pythonCifar.path, 'unsupported', 'is from the Python (pickle) version of CIFAR, which cannot be read safely.', 'Use the binary version (cifar-10-binary.tar.gz or cifar-100-binary.tar.gz).');
  } else {
    throw new DatasetError(files[0].path, 'not-image', 'is not an image (PNG, JPEG, WebP), an IDX file or a CIFAR binary batch, and nothing else here is either.', 'Choose a folder of images, MNIST-style IDX files, CIFAR binary batches, or an archive of them.');
  }
  opts.onProgress?.({ phase: 'finishing', done: 1, total: 1 });
  return { dataset: ds, warnings };
}
