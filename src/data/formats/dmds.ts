/**
 * DMDS, the studio's own dataset file: what the built-in MNIST ships as
 * (public/datasets/mnist.dmds.gz) and what a stored dataset is serialised to.
 *
 *   offset  size  field (little-endian)
 *   0       4     magic "DMDS"
 *   4       4     u32 version = 1
 *   8       4     u32 N          samples
 *   12      4     u32 C          channels, 1 or 3
 *   16      4     u32 H
 *   20      4     u32 W
 *   24      4     u32 nTrain     samples [0, nTrain) are the training split, the rest validation
 *   28      4     u32 K          classes; 0 = unlabelled
 *   32      4     u32 M          bytes of the metadata JSON
 *   36      M     UTF-8 JSON { name, source, classNames[K], mean[C], std[C] }
 *   36+M    N·C·H·W  pixels, uint8, each sample CHW
 *   then    N·L   labels (L = 1 byte when K ≤ 256, else 2 bytes u16), absent when K = 0
 *
 * Whole files may be gzipped (the built-in is); decode accepts either.
 */
import { DatasetError } from '../errors';
import { assertValidDataset, type ImageDataset } from '../dataset';
import { Budget, gunzip, isGzip } from './archive';
import { DEFAULT_LIMITS, type ImportLimits } from '../errors';

const MAGIC = 'DMDS';
const HEADER = 36;

export function encodeDmds(ds: ImageDataset): Uint8Array {
  const K = ds.labels ? ds.classNames.length : 0;
  const meta = new TextEncoder().encode(JSON.stringify({ name: ds.name, source: ds.source, classNames: ds.classNames, mean: ds.mean, std: ds.std }));
  const labelBytes = K === 0 ? 0 : K <= 256 ? 1 : 2;
  const out = new Uint8Array(HEADER + meta.length + ds.images.length + ds.N * labelBytes);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) out[i] = MAGIC.charCodeAt(i);
  [1, ds.N, ds.C, ds.H, ds.W, ds.nTrain, K, meta.length].forEach((v, i) => dv.setUint32(4 + 4 * i, v, true));
  out.set(meta, HEADER);
  out.set(ds.images, HEADER + meta.length);
  let p = HEADER + meta.length + ds.images.length;
  if (ds.labels) {
    for (let i = 0; i < ds.N; i++) {
      if (labelBytes === 1) out[p++] = ds.labels[i];
      else {
        dv.setUint16(p, ds.labels[i], true);
        p += 2;
      }
    }
  }
  return out;
}

export function decodeDmds(bytes: Uint8Array, file: string, limits: ImportLimits = DEFAULT_LIMITS): ImageDataset {
  const data = isGzip(bytes) ? gunzip(bytes, file, new Budget(limits)) : bytes;
  if (data.length < HEADER || String.fromCharCode(...data.subarray(0, 4)) !== MAGIC) {
    throw new DatasetError(file, 'bad-magic', 'is not a DMAE Studio dataset file (no DMDS header).');
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const [version, N, C, H, W, nTrain, K, M] = Array.from({ length: 8 }, (_, i) => dv.getUint32(4 + 4 * i, true));
  if (version !== 1) throw new DatasetError(file, 'unsupported', `is a dataset file of version ${version}; this studio reads version 1.`, 'Update the studio, or rebuild the file.');
  if (C !== 1 && C !== 3) throw new DatasetError(file, 'corrupt', `declares ${C} channels (1 or 3 allowed).`);
  if (N < 1 || H < 1 || W < 1 || H > 65535 || W > 65535 || nTrain < 1 || nTrain > N || K > 65536) throw new DatasetError(file, 'corrupt', `has impossible sizes N=${N} H=${H} W=${W} nTrain=${nTrain} K=${K}.`);
  const pixels = N * C * H * W;
  const labelBytes = K === 0 ? 0 : K <= 256 ? 1 : 2;
  const expected = HEADER + M + pixels + N * labelBytes;
  if (expected > data.length) throw new DatasetError(file, 'truncated', `is cut short: its header promises ${expected} bytes, the file has ${data.length}.`);
  if (expected < data.length) throw new DatasetError(file, 'trailing-data', `has ${data.length - expected} bytes past what its header describes.`);
  let meta: { name?: unknown; source?: unknown; classNames?: unknown; mean?: unknown; std?: unknown };
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(HEADER, HEADER + M)));
  } catch {
    throw new DatasetError(file, 'corrupt', 'has unreadable metadata (not UTF-8 JSON).');
  }
  const isNums = (x: unknown, n: number): x is number[] => Array.isArray(x) && x.length === n && x.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!meta || typeof meta !== 'object' || typeof meta.name !== 'string' || typeof meta.source !== 'string' || !isNums(meta.mean, C) || !isNums(meta.std, C)) {
    throw new DatasetError(file, 'corrupt', 'has metadata without a name, source, or per-channel mean and std.');
  }
  const classNames = meta.classNames;
  if (!Array.isArray(classNames) || classNames.length !== K || !classNames.every((s) => typeof s === 'string')) {
    throw new DatasetError(file, 'corrupt', `has ${Array.isArray(classNames) ? classNames.length : 'no'} class names for ${K} classes.`);
  }
  const p0 = HEADER + M;
  const images = data.slice(p0, p0 + pixels);
  let labels: Int32Array | null = null;
  if (K > 0) {
    labels = new Int32Array(N);
    const lp = p0 + pixels;
    for (let i = 0; i < N; i++) labels[i] = labelBytes === 1 ? data[lp + i] : dv.getUint16(lp + 2 * i, true);
  }
  const ds: ImageDataset = { name: meta.name, source: meta.source, images, labels, classNames: classNames as string[], N, C, H, W, nTrain, mean: meta.mean, std: meta.std };
  try {
    assertValidDataset(ds);
  } catch (e) {
    if (e instanceof DatasetError) throw new DatasetError(file, 'corrupt', e.problem);
    throw e;
  }
  return ds;
}
