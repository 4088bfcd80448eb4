/**
 * IDX, the format of MNIST, Fashion-MNIST, EMNIST and KMNIST:
 *   bytes 0–1  zero;  byte 2  element type (0x08 = unsigned byte);  byte 3  number of dims d;
 *   then d big-endian u32 sizes, then the elements, row-major.
 * Images are d = 3 (count, rows, cols), labels d = 1 (count). Only unsigned-byte files are
 * read: every dataset of this family uses them.
 */
import { DatasetError } from '../errors';

export interface IdxArray {
  dims: number[];
  /** A view of the elements (no copy). */
  data: Uint8Array;
}

const TYPE_NAMES: Record<number, string> = { 0x08: 'unsigned byte', 0x09: 'signed byte', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64' };

/** True when the first bytes look like an IDX header (any element type). */
export function looksLikeIdx(data: Uint8Array): boolean {
  return data.length >= 8 && data[0] === 0 && data[1] === 0 && data[2] in TYPE_NAMES && data[3] >= 1 && data[3] <= 4;
}

export function parseIdx(data: Uint8Array, file: string): IdxArray {
  if (data.length < 4 || data[0] !== 0 || data[1] !== 0 || !(data[2] in TYPE_NAMES)) {
    const got = Array.from(data.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new DatasetError(file, 'bad-magic', `is not an IDX file: its magic number is ${got || '(empty)'}, expected 00 00 08 0d (d = 1 for labels, 3 for images).`, 'Is it still gzipped, or a different format?');
  }
  const type = data[2];
  if (type !== 0x08) throw new DatasetError(file, 'unsupported', `holds ${TYPE_NAMES[type]} elements; only unsigned-byte IDX files (the MNIST family) are read.`);
  const d = data[3];
  if (d < 1 || d > 4) throw new DatasetError(file, 'corrupt', `declares ${d} dimensions; an IDX image file has 3 and a label file 1.`);
  const headerLen = 4 + 4 * d;
  if (data.length < headerLen) throw new DatasetError(file, 'truncated', `ends inside its header (${data.length} of ${headerLen} bytes).`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < d; i++) {
    const n = dv.getUint32(4 + 4 * i, false);
    dims.push(n);
    count *= n; // float64: exact up to 2^53, far past any file that could exist
  }
  const have = data.length - headerLen;
  if (count > have) {
    throw new DatasetError(file, 'truncated', `is cut short: its header promises ${dims.join('×')} = ${count} bytes of data but only ${have} follow.`, 'The download may be incomplete, or the header is damaged.');
  }
  if (count < have) throw new DatasetError(file, 'trailing-data', `has ${have - count} bytes after the ${dims.join('×')} elements its header describes.`, 'The file is damaged or is not an IDX file.');
  return { dims, data: data.subarray(headerLen) };
}

/** Write an IDX unsigned-byte file (used by the tests and handy for exports). */
export function encodeIdx(dims: number[], values: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + values.length);
  const dv = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((n, i) => dv.setUint32(4 + 4 * i, n, false));
  out.set(values, 4 + 4 * dims.length);
  return out;
}
