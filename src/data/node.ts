/**
 * The Node side of src/data: files from paths, images decoded by sharp, the built-ins from disk.
 *
 * Why sharp: it is maintained, decodes PNG, JPEG and WebP (libvips with libpng, mozjpeg and
 * libwebp), refuses images past a pixel limit from their header (limitInputPixels), and its
 * native binary ships inside its npm packages (@img/sharp-linux-x64 and friends), so it installs
 * offline from the registry with no download step. Pure-JS decoders (pngjs, jpeg-js) would need
 * one package per format and have no WebP.
 */
import { existsSync, promises as fs } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type SharpType from 'sharp';
import { DatasetError, DEFAULT_LIMITS, type ImportLimits } from './errors';
import type { ImageDataset } from './dataset';
import { importDataset, type DecodedImage, type ImageDecoder, type ImportOptions, type ImportResult, type ImportSource } from './import';
import { decodeDmds } from './formats/dmds';
import { makeShapesDataset, type ShapesOptions } from './procedural';
import { buildMnistDataset } from './mnist-build';

// Loaded on first use, so that Node code that only needs the built-ins never loads libvips.
let sharpModule: Promise<typeof SharpType> | null = null;
function loadSharp(): Promise<typeof SharpType> {
  sharpModule ??= import('sharp').then((m) => {
    m.default.cache(false);
    return m.default;
  });
  return sharpModule;
}

export const sharpDecoder: ImageDecoder = {
  async decode(bytes, file, _header, limits): Promise<DecodedImage> {
    let sharp: typeof SharpType;
    try {
      sharp = await loadSharp();
    } catch (e) {
      throw new DatasetError(file, 'unsupported', `cannot be decoded: the image decoder (sharp) did not load here (${e instanceof Error ? e.message : String(e)}).`, 'Reinstall with npm ci on this platform.');
    }
    try {
      const { data, info } = await sharp(bytes, { limitInputPixels: limits.maxImagePixels, failOn: 'warning', pages: 1, autoOrient: true })
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      if (info.channels < 1 || info.channels > 4) throw new Error(`${info.channels} channels`);
      return { width: info.width, height: info.height, channels: info.channels as 1 | 2 | 3 | 4, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (/pixel limit/i.test(msg)) throw new DatasetError(file, 'too-large', `is larger than the ${limits.maxImagePixels.toLocaleString('en')} pixels an image may have; it was not decoded.`);
      throw new DatasetError(file, 'corrupt', `could not be decoded (${msg}).`, 'The image is damaged, or its extension does not match its content.');
    }
  },
};

/**
 * Files under the given paths as import sources: a folder contributes every file below it
 * (paths start with the folder's name, so sub-folders give class labels); symlinks are not followed.
 */
export async function sourcesFromPaths(paths: string[], limits: ImportLimits = DEFAULT_LIMITS): Promise<ImportSource[]> {
  const out: ImportSource[] = [];
  const add = (abs: string, rel: string, size: number) => {
    if (out.length >= limits.maxEntries) throw new DatasetError(rel, 'too-large', `is one file too many: an import may have at most ${limits.maxEntries} files.`);
    out.push({ path: rel.split(sep).join('/'), size, read: async () => new Uint8Array(await fs.readFile(abs)) });
  };
  for (const p of paths) {
    const root = resolve(p);
    let st;
    try {
      st = await fs.stat(root);
    } catch {
      throw new DatasetError(p, 'not-found', 'does not exist or cannot be read.');
    }
    if (st.isFile()) {
      add(root, basename(root), st.size);
      continue;
    }
    if (!st.isDirectory()) throw new DatasetError(p, 'unsupported', 'is neither a file nor a folder.');
    const stack = [root];
    while (stack.length) {
      const dir = stack.pop()!;
      const items = await fs.readdir(dir, { withFileTypes: true });
      items.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const it of items) {
        const abs = join(dir, it.name);
        if (it.isDirectory()) stack.push(abs);
        else if (it.isFile()) add(abs, join(basename(root), relative(root, abs)), (await fs.stat(abs)).size);
      }
    }
  }
  return out;
}

/** Import from files and folders on disk (decoding images with sharp). */
export async function importPaths(paths: string[], opts: ImportOptions = {}): Promise<ImportResult> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const sources = await sourcesFromPaths(paths, limits);
  if (sources.length === 0) throw new DatasetError(paths.join(', ') || 'import', 'empty', 'holds no files.', 'Choose a folder with images, IDX or CIFAR files, or an archive of them.');
  return importDataset(sources, { decoder: sharpDecoder, ...opts });
}

/** Where the build writes the built-in MNIST (public/datasets/, served as /datasets/ by Vite). */
export const MNIST_FILE = fileURLToPath(new URL('../../public/datasets/mnist.dmds.gz', import.meta.url));

/**
 * A built-in dataset in Node: 'mnist' from public/datasets (or, when that file has not been
 * built, straight from the mnist package), 'shapes' generated.
 */
export async function loadBuiltinNode(id: 'mnist' | 'shapes', shapes?: ShapesOptions): Promise<ImageDataset> {
  if (id === 'shapes') return makeShapesDataset(shapes);
  if (existsSync(MNIST_FILE)) return decodeDmds(new Uint8Array(await fs.readFile(MNIST_FILE)), 'public/datasets/mnist.dmds.gz');
  return buildMnistDataset();
}
