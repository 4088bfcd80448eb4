/**
 * CIFAR-10 and CIFAR-100 binary batches, as distributed in cifar-10-binary.tar.gz and
 * cifar-100-binary.tar.gz. A batch is a run of fixed-size records:
 *   CIFAR-10:  <1 byte label 0–9> <3072 bytes pixels>
 *   CIFAR-100: <1 byte coarse label 0–19> <1 byte fine label 0–99> <3072 bytes pixels>
 * Pixels are 32×32 red, then green, then blue planes, rows top to bottom: already CHW.
 */
import { DatasetError } from '../errors';

export type CifarKind = 'cifar-10' | 'cifar-100';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

export const CIFAR100_CLASSES = (
  'apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle ' +
  'caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish ' +
  'forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle ' +
  'mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine ' +
  'possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar ' +
  'sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale ' +
  'willow_tree wolf woman worm'
).split(' ');

export const CIFAR100_COARSE_CLASSES = (
  'aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices household_furniture ' +
  'insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes large_omnivores_and_herbivores ' +
  'medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1 vehicles_2'
).split(' ');

export const CIFAR_PIXELS = 3 * 32 * 32;

export function cifarRecordSize(kind: CifarKind): number {
  return kind === 'cifar-10' ? 1 + CIFAR_PIXELS : 2 + CIFAR_PIXELS;
}

export interface CifarBatch {
  count: number;
  /** [count·3·32·32] */
  images: Uint8Array;
  /** [count] (CIFAR-100: fine or coarse as asked) */
  labels: Int32Array;
}

/** The number of records in a batch of `bytes` bytes, or null when it is not a whole number. */
export function cifarRecordCount(bytes: number, kind: CifarKind): number | null {
  const rec = cifarRecordSize(kind);
  return bytes > 0 && bytes % rec === 0 ? bytes / rec : null;
}

/**
 * Parse one binary batch. `fine` picks CIFAR-100's fine (100) or coarse (20) labels. With
 * `into`, writes the samples there from sample `at` on (no extra copy of a 150 MB dataset).
 */
export function parseCifarBatch(data: Uint8Array, file: string, kind: CifarKind, fine = true, into?: { images: Uint8Array; labels: Int32Array; at: number }): CifarBatch {
  const rec = cifarRecordSize(kind);
  if (data.length === 0) throw new DatasetError(file, 'empty', `is empty; a ${kind} batch holds records of ${rec} bytes.`);
  if (data.length % rec !== 0) {
    const other: CifarKind = kind === 'cifar-10' ? 'cifar-100' : 'cifar-10';
    const hint = data.length % cifarRecordSize(other) === 0 ? `Its size fits ${other} records: is it a ${other} batch?` : 'The file is cut short or is not a CIFAR binary batch (the Python pickle version is not read).';
    throw new DatasetError(file, 'truncated', `is ${data.length} bytes, not a whole number of ${rec}-byte ${kind} records (${Math.floor(data.length / rec)} records and ${data.length % rec} bytes over).`, hint);
  }
  const count = data.length / rec;
  const images = into ? into.images.subarray(into.at * CIFAR_PIXELS, (into.at + count) * CIFAR_PIXELS) : new Uint8Array(count * CIFAR_PIXELS);
  const labels = into ? into.labels.subarray(into.at, into.at + count) : new Int32Array(count);
  if (images.length !== count * CIFAR_PIXELS || labels.length !== count) throw new DatasetError(file, 'corrupt', 'holds more records than were counted.');
  const numClasses = kind === 'cifar-10' ? 10 : fine ? 100 : 20;
  for (let i = 0; i < count; i++) {
    const base = i * rec;
    const label = kind === 'cifar-10' ? data[base] : data[base + (fine ? 1 : 0)];
    if (kind === 'cifar-100' && data[base] >= 20) throw new DatasetError(file, 'corrupt', `record ${i} has coarse label ${data[base]}, outside 0–19.`, 'Is this a CIFAR-10 batch?');
    if (label >= numClasses) throw new DatasetError(file, 'corrupt', `record ${i} has label ${label}, outside 0–${numClasses - 1} for ${kind}.`, kind === 'cifar-10' ? 'Is this a CIFAR-100 batch?' : 'The file is damaged.');
    labels[i] = label;
    images.set(data.subarray(base + rec - CIFAR_PIXELS, base + rec), i * CIFAR_PIXELS);
  }
  return { count, images, labels };
}

/** Class names from a batches.meta.txt / fine_label_names.txt file: one per line. */
export function parseLabelNames(text: string, expected: number): string[] | null {
  const names = text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  return names.length === expected && names.every((n) => n.length <= 200) ? names : null;
}
