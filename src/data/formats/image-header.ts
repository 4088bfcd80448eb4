/**
 * Image headers read without decoding: the format, the size and whether the file declares
 * itself grayscale. Lets an import refuse a 30000×30000 image from its first bytes, before a
 * decoder allocates anything, and lets a non-image in an image folder be named.
 */
import { DatasetError, type ImportLimits } from '../errors';

export type ImageFormat = 'png' | 'jpeg' | 'webp';

export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
  /** The file says it has no colour (PNG gray types, single-component JPEG). */
  gray: boolean;
}

export const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'jfif', 'webp'];

function u16be(d: Uint8Array, o: number): number {
  return (d[o] << 8) | d[o + 1];
}
function u32be(d: Uint8Array, o: number): number {
  return ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
}
function ascii(d: Uint8Array, o: number, n: number): string {
  return String.fromCharCode(...d.subarray(o, o + n));
}

/** Which of the formats we decode the bytes start like, or null. */
export function imageFormatOf(d: Uint8Array): ImageFormat | null {
  if (d.length >= 8 && d[0] === 0x89 && ascii(d, 1, 3) === 'PNG' && d[4] === 0x0d && d[5] === 0x0a && d[6] === 0x1a && d[7] === 0x0a) return 'png';
  if (d.length >= 3 && d[0] === 0xff && d[1] === 0xd8 && d[2] === 0xff) return 'jpeg';
  if (d.length >= 12 && ascii(d, 0, 4) === 'RIFF' && ascii(d, 8, 4) === 'WEBP') return 'webp';
  return null;
}

/** A name for a file that is an image of a format we do not decode, or null. */
function otherImageKind(d: Uint8Array): string | null {
  if (ascii(d, 0, 4) === 'GIF8') return 'a GIF image';
  if (ascii(d, 0, 2) === 'BM') return 'a BMP image';
  if ((d[0] === 0x49 && d[1] === 0x49 && d[2] === 0x2a) || (d[0] === 0x4d && d[1] === 0x4d && d[3] === 0x2a)) return 'a TIFF image';
  if (ascii(d, 4, 8) === 'ftypavif' || ascii(d, 4, 8) === 'ftypheic') return 'an AVIF/HEIC image';
  return null;
}

/**
 * Read the header of a PNG, JPEG or WebP file. Throws 'not-image' for anything else and
 * 'corrupt'/'truncated' for a header that cannot be read.
 */
export function readImageHeader(d: Uint8Array, file: string): ImageHeader {
  const format = imageFormatOf(d);
  if (!format) {
    const other = otherImageKind(d);
    throw new DatasetError(file, other ? 'unsupported' : 'not-image', other ? `is ${other}; only PNG, JPEG and WebP images are imported.` : 'is not a PNG, JPEG or WebP image.', other ? 'Convert it to PNG.' : "Remove it from the folder, or choose 'skip files that are not images'.");
  }
  const trunc = () => new DatasetError(file, 'truncated', `ends inside its ${format.toUpperCase()} header.`);
  if (format === 'png') {
    if (d.length < 33) throw trunc();
    if (ascii(d, 12, 4) !== 'IHDR') throw new DatasetError(file, 'corrupt', 'is a PNG whose first chunk is not IHDR.');
    const colorType = d[25];
    return { format, width: u32be(d, 16), height: u32be(d, 20), gray: colorType === 0 || colorType === 4 };
  }
  if (format === 'jpeg') {
    let p = 2;
    // Walk the marker segments up to the frame header (SOFn); at most one pass over the file.
    while (p < d.length) {
      if (d[p] !== 0xff) throw new DatasetError(file, 'corrupt', `is a JPEG with a damaged marker at byte ${p}.`);
      while (p < d.length && d[p] === 0xff) p++;
      if (p >= d.length) break;
      const marker = d[p++];
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
      if (marker === 0xd9 || marker === 0xda) throw new DatasetError(file, 'corrupt', 'is a JPEG with no frame header (SOF) before its image data.');
      if (p + 2 > d.length) break;
      const len = u16be(d, p);
      if (len < 2) throw new DatasetError(file, 'corrupt', `is a JPEG with a segment of impossible length ${len}.`);
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isSof) {
        if (p + 8 > d.length) break;
        return { format, height: u16be(d, p + 3), width: u16be(d, p + 5), gray: d[p + 7] === 1 };
      }
      p += len;
    }
    throw trunc();
  }
  // WebP: RIFF container, first chunk VP8 (lossy), VP8L (lossless) or VP8X (extended).
  if (d.length < 30) throw trunc();
  const chunk = ascii(d, 12, 4);
  if (chunk === 'VP8 ') {
    if (d[23] !== 0x9d || d[24] !== 0x01 || d[25] !== 0x2a) throw new DatasetError(file, 'corrupt', 'is a WebP whose VP8 frame has no start code.');
    return { format, width: (d[26] | (d[27] << 8)) & 0x3fff, height: (d[28] | (d[29] << 8)) & 0x3fff, gray: false };
  }
  if (chunk === 'VP8L') {
    if (d[20] !== 0x2f) throw new DatasetError(file, 'corrupt', 'is a WebP whose lossless stream has no signature.');
    const bits = (d[21] | (d[22] << 8) | (d[23] << 16) | (d[24] << 24)) >>> 0;
    return { format, width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, gray: false };
  }
  if (chunk === 'VP8X') {
    const w = (d[24] | (d[25] << 8) | (d[26] << 16)) + 1;
    const h = (d[27] | (d[28] << 8) | (d[29] << 16)) + 1;
    return { format, width: w, height: h, gray: false };
  }
  throw new DatasetError(file, 'corrupt', `is a WebP whose first chunk '${chunk.replace(/[^\x20-\x7e]/g, '?')}' is not VP8, VP8L or VP8X.`);
}

/** Refuse sizes that are zero or past the limits, from the header alone. */
export function checkImageSize(h: { width: number; height: number }, file: string, limits: ImportLimits): void {
  if (h.width < 1 || h.height < 1) throw new DatasetError(file, 'corrupt', `declares an image of ${h.width}×${h.height} pixels.`);
  if (h.width > limits.maxImageSide || h.height > limits.maxImageSide || h.width * h.height > limits.maxImagePixels) {
    throw new DatasetError(file, 'too-large', `is ${h.width}×${h.height} pixels, more than the ${limits.maxImagePixels.toLocaleString('en')} pixels (${limits.maxImageSide} per side) an image may have; it was not decoded.`, 'Shrink it first: training resolutions are far smaller.');
  }
}
