/**
 * Which variant of a non-matmul kernel family (layer norm, …) a dispatch uses: the per-adapter
 * tuner's choice for the dispatch's shape class (gpu/autotune-families.ts measures and fills
 * this table before a model records anything), else the family's always-correct fallback.
 * As for matmul (gpu/autotune.ts), the first answer for a class on a device is frozen for the
 * device's life, so a later tuning never changes what a running model dispatches.
 *
 * This module only remembers; it imports no kernels, so the ops can ask it without a cycle.
 */
import { adapterFingerprint, tuningEnabled } from './autotune';
import type { Gpu } from './device';

/** family → class → variant, per adapter fingerprint (this process). */
const known = new Map<string, Map<string, string>>();
let frozen = new WeakMap<Gpu, Map<string, string>>();
/** Set during a dry recording: the shapes the ops ask about are listed, nothing is fixed. */
let collector: Map<string, Map<string, Record<string, number>>> | null = null;

const key = (family: string, cls: string): string => `${family}|${cls}`;

const size = (shape: Record<string, number>): number => Object.values(shape).reduce((a, b) => a * b, 1);

/**
 * The variant for one dispatch of `family` whose shape falls in `cls`. `allowed` is what this
 * device can run (a remembered choice outside it is ignored). DMAE_TUNE=off: the fallback.
 */
export function chosenVariant<V extends string>(gpu: Gpu, family: string, cls: string, shape: Record<string, number>, fallback: V, allowed: readonly V[]): V {
  if (!tuningEnabled()) return fallback;
  const k = key(family, cls);
  const remembered = (): V => {
    const r = known.get(adapterFingerprint(gpu))?.get(k) as V | undefined;
    return r !== undefined && allowed.includes(r) ? r : fallback;
  };
  if (collector) {
    // A dry recording: list the class's largest shape, fix nothing.
    let f = collector.get(family);
    if (!f) collector.set(family, (f = new Map()));
    const seen = f.get(cls);
    if (!seen || size(shape) > size(seen)) f.set(cls, shape);
    return remembered();
  }
  let mine = frozen.get(gpu);
  if (!mine) frozen.set(gpu, (mine = new Map()));
  let v = mine.get(k) as V | undefined;
  if (v === undefined) mine.set(k, (v = remembered()));
  return v;
}

/** What this process knows for a class (tuned or read from the store), without fixing anything. */
export function knownVariant(fingerprint: string, family: string, cls: string): string | undefined {
  return known.get(fingerprint)?.get(key(family, cls));
}

/** What a device already dispatches for a class (frozen at its first use), if anything. */
export function variantInUse(gpu: Gpu, family: string, cls: string): string | undefined {
  return frozen.get(gpu)?.get(key(family, cls));
}

export function rememberVariant(fingerprint: string, family: string, cls: string, variant: string): void {
  let t = known.get(fingerprint);
  if (!t) known.set(fingerprint, (t = new Map()));
  t.set(key(family, cls), variant);
}

/** Runs `record` (a dry recording) and returns, per family, one shape per class the ops asked about. */
export function collectFamilyShapes<T>(record: () => T): { result: T; shapes: Map<string, Map<string, Record<string, number>>> } {
  const outer = collector;
  collector = new Map();
  const shapes = collector;
  try {
    return { result: record(), shapes };
  } finally {
    collector = outer;
  }
}

/** Forgets every choice and frozen answer (tests). */
export function resetVariantChoices(): void {
  known.clear();
  frozen = new WeakMap();
}
