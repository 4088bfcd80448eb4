/**
 * The one error type of src/data. Every parser treats its input as hostile and, when the input
 * is wrong, throws a DatasetError whose message names the file, says what is wrong and, where
 * there is one, what to do about it. Anything else escaping a parser is a bug.
 */

export type DatasetErrorCode =
  | 'bad-magic' // not the format its name or place says it is
  | 'truncated' // the header promises more data than exists
  | 'trailing-data' // more bytes than the header describes
  | 'corrupt' // checksums, impossible fields, a decoder that refused
  | 'mismatch' // image and label counts, sizes across files
  | 'unsupported' // a real format variant this importer does not read
  | 'too-large' // a limit: image pixels, archive size, entry count, dataset size
  | 'not-image' // a file in an image folder that is not PNG, JPEG or WebP
  | 'empty' // nothing to import
  | 'storage' // the browser's storage refused (quota, blocked)
  | 'not-found'
  | 'cancelled';

export class DatasetError extends Error {
  override readonly name = 'DatasetError';
  constructor(
    /** The file (path inside the import, archive members as `archive.zip/inner/path`). */
    readonly file: string,
    readonly code: DatasetErrorCode,
    /** What is wrong, one sentence without the file name. */
    readonly problem: string,
    /** What the user can do, or ''. */
    readonly hint = '',
  ) {
    super(`${file}: ${problem}${hint ? ` ${hint}` : ''}`);
  }
}

/** Wrap anything a third-party decoder threw so that only DatasetError leaves a parser. */
export function asDatasetError(e: unknown, file: string, what: string): DatasetError {
  if (e instanceof DatasetError) return e;
  if (e instanceof RangeError && /allocat|memory|Array buffer/i.test(e.message)) {
    return new DatasetError(file, 'too-large', `${what} needs more memory than is available (${e.message}).`);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new DatasetError(file, 'corrupt', `${what} failed: ${msg}.`, 'The file is damaged or not what its name says.');
}

/**
 * Bounds on what an import may cost. Checked before allocating where the format tells sizes up
 * front (archive directories, image headers, IDX dimensions) and enforced while inflating.
 */
export interface ImportLimits {
  /** Total bytes produced by decompression (all gzip, zip and nested archives together). */
  maxUncompressedBytes: number;
  /** Files inside archives plus files given, all together. */
  maxEntries: number;
  /** Width × height of one image, checked from its header before it is decoded. */
  maxImagePixels: number;
  /** Largest side of one image. */
  maxImageSide: number;
  /** N·C·H·W of the dataset that is built. */
  maxDatasetBytes: number;
  /** Archives inside archives (a .tar.gz counts as one level). */
  maxArchiveDepth: number;
}

export const DEFAULT_LIMITS: ImportLimits = {
  maxUncompressedBytes: 1 << 30,
  maxEntries: 200_000,
  maxImagePixels: 4096 * 4096,
  maxImageSide: 16384,
  maxDatasetBytes: 1 << 30,
  maxArchiveDepth: 3,
};

export function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size) return `${+(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}
