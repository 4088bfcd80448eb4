/**
 * The built-in datasets, available with no download and no import: MNIST (real digits, from
 * public/datasets/mnist.dmds.gz, fetched from the page's own server) and Shapes (generated).
 * Node reads the same file from disk: see loadBuiltinNode in ./node.
 */
import { DatasetError } from './errors';
import type { ImageDataset } from './dataset';
import { decodeDmds } from './formats/dmds';
import { makeShapesDataset, SHAPE_CLASSES, type ShapesOptions } from './procedural';

export type BuiltinId = 'mnist' | 'shapes';

export interface BuiltinInfo {
  id: BuiltinId;
  name: string;
  description: string;
  N: number;
  C: 1 | 3;
  H: number;
  W: number;
  numClasses: number;
  /** Whether a horizontal flip keeps the class (digits: no). */
  flipSafe: boolean;
}

export const BUILTIN_DATASETS: BuiltinInfo[] = [
  { id: 'mnist', name: 'MNIST', description: '10,000 real handwritten digits, 28×28 gray, 9,000 train / 1,000 validation.', N: 10000, C: 1, H: 28, W: 28, numClasses: 10, flipSafe: false },
  { id: 'shapes', name: 'Shapes', description: 'Generated shapes and textures in colour, any resolution, seeded.', N: 2000, C: 3, H: 32, W: 32, numClasses: SHAPE_CLASSES.length, flipSafe: true },
];

/** The built-in MNIST's URL under the app's base (Vite's import.meta.env.BASE_URL). */
export function mnistUrl(baseUrl = '/'): string {
  return `${baseUrl.replace(/\/?$/, '/')}datasets/mnist.dmds.gz`;
}

/** Fetch the built-in MNIST from the page's own server. */
/** One fetch per URL for the page's life: the studio's panels all use the same digits. */
const mnistCache = new Map<string, Promise<ImageDataset>>();

/**
 * The built-in MNIST from the page's own server. Datasets are never mutated after import, so the
 * cached one is shared; a failed fetch is forgotten so that a retry fetches again.
 */
export function fetchMnist(baseUrl = '/'): Promise<ImageDataset> {
  const url = mnistUrl(baseUrl);
  let pending = mnistCache.get(url);
  if (!pending) {
    pending = fetchMnistOnce(url);
    mnistCache.set(url, pending);
    pending.catch(() => mnistCache.delete(url));
  }
  return pending;
}

async function fetchMnistOnce(url: string): Promise<ImageDataset> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new DatasetError(url, 'not-found', `could not be fetched (${e instanceof Error ? e.message : String(e)}).`);
  }
  if (!res.ok) throw new DatasetError(url, 'not-found', `could not be fetched (HTTP ${res.status}).`, 'Run `npm run datasets` before building or serving the studio.');
  // A server may have sent it with Content-Encoding: gzip (then it arrives inflated); decodeDmds takes both.
  return decodeDmds(new Uint8Array(await res.arrayBuffer()), url);
}

export async function loadBuiltin(id: BuiltinId, opts: { baseUrl?: string; shapes?: ShapesOptions } = {}): Promise<ImageDataset> {
  if (id === 'mnist') return fetchMnist(opts.baseUrl);
  if (id === 'shapes') return makeShapesDataset(opts.shapes);
  throw new DatasetError(String(id), 'not-found', 'is not a built-in dataset.');
}
