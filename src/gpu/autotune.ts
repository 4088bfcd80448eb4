/**
 * Per-adapter matmul tuning: which of the matmul variants (ops/matmul.ts) is fastest
 * for a product, measured on the adapter at hand instead of guessed from its kind.
 *
 * Shape classes. A product is (layout, M, N, K); its class is the layout, ⌊log₂⌋ of M, N and K
 * (clamped to 2³..2²⁰) and whether N and K are multiples of 4 (vec4 applies only then). One
 * choice per class: products of one class behave alike, and a model has few classes.
 *
 * Tuning is an explicit async step before any recording (`tuneMatmul(gpu, shapes)`, or
 * `tuneKernelsForRecording(gpu, record)` of autotune-families.ts, which collects the shapes from
 * a dry recording of a model's step and also tunes the other kernel families): per class not yet known, every applicable variant is verified against a float64
 * product — once per device on a small odd shape in full, then on the class's own shape at
 * sampled elements, edges included, in a screening run of its first rows (which also drops the
 * variants far slower than the fastest) and on the whole product — and timed a couple of times,
 * interleaved (GPU timestamps when the device has `timestamp-query`, else the wall clock to
 * `onSubmittedWorkDone`); the fastest verified one is kept, unless the static guess is verified
 * and within PRIOR_MARGIN of it (a near tie keeps the guess). A variant that fails a check is
 * never chosen.
 *
 * The choice is remembered per adapter fingerprint (kind, vendor, architecture, device,
 * description, a hash of matmul.wgsl, the tuner's version): in memory always, and in a store —
 * a JSON file in Node (autotune-node.ts: $DMAE_TUNE_CACHE, else $XDG_CACHE_HOME or
 * ~/.cache/dmae-studio/matmul-tune.json), localStorage or IndexedDB in the browser. When a
 * stored file is written by two processes, the first writer of a class wins, so runs on one
 * machine agree. DMAE_TUNE=off disables all of it (the static guess of ops/matmul.ts).
 *
 * Determinism. `matmul()` asks `tunedMatmulVariant` when the caller names no variant; nothing is
 * ever timed there (a Recorder may be recording). The first answer for a class on a device is
 * frozen for that device's life, so a later tuning can never change the kernel a run uses
 * mid-way (tiled and blocked sum K in the same order, vec4's `nt` does not: their bits differ).
 */
import { idbDone, idbRequest } from '../core/idb';
import { mulberry32 } from '../core/random';
import { createTensor } from './buffers';
import type { Gpu } from './device';
import { composeShader, Recorder, type Binding, type KernelSpec, type Param, type Tensor } from './kernels';
import { floorLog2 } from './ops/common';
import { fill } from './ops/elementwise';
import { f16Saturate } from '../core/f16';
import { f16Applies, isF16Variant, matmul, sampledApplies, staticMatmulVariant, staticVariantFor, vec4Aligned, type MatmulLayout, type MatmulVariant } from './ops/matmul';
import { GpuTimer } from './timing';

/** Bump when the measurement or the classes change: older stored choices are then ignored. */
export const TUNER_VERSION = 6;
export const MATMUL_VARIANTS: readonly MatmulVariant[] = ['tiled', 'blocked', 'vec4', 'vec4_sampled', 'vec4_f16', 'tiled_f16'];

/** The shader files whose `matmul_*` entry points are the products (ops/matmul.ts). */
export const MATMUL_SHADERS: readonly string[] = ['matmul', 'matmul_subgroups', 'matmul_f16', 'matmul_f16_subgroups', 'matmul_sampled', 'matmul_sampled_subgroups'];
/** Whether a dispatch of `shader`'s `entry` is a matmul product (not a transpose, pack or bias pass). */
export const isMatmulProduct = (shader: string, entry: string): boolean => MATMUL_SHADERS.includes(shader) && entry.startsWith('matmul_');

export interface MatmulShape {
  layout: MatmulLayout;
  M: number;
  N: number;
  K: number;
  /** Recorded under autocast('f16'): the f16-operand variant is a candidate too (mixed precision). */
  f16?: boolean;
}

/** A product of a recorded step and how many times the step dispatches it. */
export interface MatmulUse extends MatmulShape {
  count: number;
}

export type TimingMethod = 'gpu-timestamp' | 'wall-clock';

/** Records one candidate's product c[M,N] = op(a)·op(b) (plain, no bias, `=`). Test hook: a faulty one. */
export type MatmulCandidate = (rec: Recorder, c: Tensor, a: Tensor, b: Tensor, M: number, N: number, K: number, layout: MatmulLayout) => void;

const MIN_BUCKET = 3;
const MAX_BUCKET = 20;
const log2Bucket = (x: number): number => Math.min(MAX_BUCKET, Math.max(MIN_BUCKET, floorLog2(x)));

/**
 * 'nt.m10.n9.k7.v4': the layout, ⌊log₂⌋ of M, N, K, '.v4' when vec4 applies, and '.h' for a
 * vec4-aligned product recorded under autocast('f16') (its class also weighs the f16 variants: a
 * separate choice).
 */
export function shapeClass(s: MatmulShape): string {
  const v4 = vec4Aligned(s.N, s.K, s.layout, s.M);
  // An unaligned product has no f16 candidate: under autocast it stays in its f32 class.
  return `${s.layout}.m${log2Bucket(s.M)}.n${log2Bucket(s.N)}.k${log2Bucket(s.K)}${v4 ? '.v4' : ''}${s.f16 && v4 ? '.h' : ''}`;
}

/**
 * The variants that compute this product themselves on `gpu`: vec4 only where vec4Aligned,
 * vec4_sampled only where sampledApplies (float32-filterable, aligned, textures that fit), the f16
 * variants only where f16Applies (autocast('f16'), shader-f16, aligned).
 */
export const applicableVariants = (gpu: Gpu, s: MatmulShape): MatmulVariant[] =>
  MATMUL_VARIANTS.filter((v) =>
    v === 'vec4' ? vec4Aligned(s.N, s.K, s.layout, s.M) : v === 'vec4_sampled' ? sampledApplies(gpu, s) : isF16Variant(v) ? f16Applies(gpu, s) : true);

// ---------------------------------------------------------------------------------------------
// Switches and counters

type Env = Record<string, string | undefined>;
const env = (): Env => (globalThis as { process?: { env?: Env } }).process?.env ?? {};

/** False when DMAE_TUNE is off/0/false/no: every product keeps the static guess. */
export function tuningEnabled(): boolean {
  const v = env().DMAE_TUNE?.trim().toLowerCase();
  return !(v === 'off' || v === '0' || v === 'false' || v === 'no');
}

const counters = { runs: 0, measuredClasses: 0 };

/**
 * Monotonic counts for this process: `runs` is every product the tuner has run on a GPU
 * (verification and timing), `measuredClasses` every class it has timed. A call that finds
 * its classes known leaves both unchanged.
 */
export function matmulTuneCounters(): { runs: number; measuredClasses: number } {
  return { ...counters };
}

// ---------------------------------------------------------------------------------------------
// Adapter fingerprint and the in-memory tables

/** FNV-1a, 32 bits, as hex (fingerprints of shader texts). */
export function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

const fingerprints = new WeakMap<Gpu, string>();

/** What a stored choice is valid for: the adapter, the matmul shader's text and the tuner's version. */
export function adapterFingerprint(gpu: Gpu): string {
  let f = fingerprints.get(gpu);
  if (f === undefined) {
    const a = gpu.adapter;
    let shader = 'unknown';
    try {
      // The matmul files (composed, so their common pieces count too), those that exist.
      shader = fnv1a(MATMUL_SHADERS.filter((n) => n in gpu.kernels.sources).map((n) => composeShader(n, gpu.kernels.sources).code).join('\n'));
    } catch {
      // no matmul source (a test double): the adapter alone
    }
    f = [a.kind, a.vendor, a.architecture, a.device ?? '', a.description, `matmul.wgsl#${shader}`, `tuner-v${TUNER_VERSION}`].join('|');
    fingerprints.set(gpu, f);
  }
  return f;
}

/** One class's stored choice. */
export interface ClassChoice {
  variant: MatmulVariant;
  /** The shapes it was timed on, [M, N, K]. */
  shapes: [number, number, number][];
  /** Σ over those shapes of each verified variant's fastest time, ms. */
  ms: Partial<Record<MatmulVariant, number>>;
  method: TimingMethod;
  date: string;
}

/** Inside collectMatmulShapes: products are only listed, so asking for a variant must not fix one. */
let dryRecordings = 0;
/** fingerprint → class → choice (this process). */
let memory = new Map<string, Map<string, ClassChoice>>();
/** The variant each class got on a device the first time matmul() asked: fixed for the device's life. */
let frozen = new WeakMap<Gpu, Map<string, MatmulVariant>>();
/** Small-shape verification per device: `${variant}.${layout}.${aligned}` → null (passed) or the failure. */
let smallChecks = new WeakMap<Gpu, Map<string, string | null>>();

const memoryTable = (fp: string): Map<string, ClassChoice> => {
  let t = memory.get(fp);
  if (!t) memory.set(fp, (t = new Map()));
  return t;
};

/**
 * The variant matmul() uses for a product when its caller names none: the tuned choice of the
 * product's class if this process knows one, else the static guess. The answer is frozen per
 * device at the first ask. Never measures anything.
 */
export function tunedMatmulVariant(gpu: Gpu, s: MatmulShape): MatmulVariant {
  if (!tuningEnabled()) return staticVariantFor(gpu, s);
  const key = shapeClass(s);
  const remembered = (): MatmulVariant => {
    const v = memory.get(adapterFingerprint(gpu))?.get(key)?.variant;
    return v !== undefined && applicableVariants(gpu, s).includes(v) ? v : staticVariantFor(gpu, s);
  };
  if (dryRecordings > 0) return remembered(); // nothing runs: fix nothing
  let f = frozen.get(gpu);
  if (!f) frozen.set(gpu, (f = new Map()));
  let v = f.get(key);
  if (v === undefined) f.set(key, (v = remembered()));
  return v;
}

/** Forgets every choice, frozen answer and verification of this process (tests). Counters keep counting. */
export function resetMatmulTuning(): void {
  memory = new Map();
  frozen = new WeakMap();
  smallChecks = new WeakMap();
}

// ---------------------------------------------------------------------------------------------
// Stores

/** Where choices persist between processes. `load` resolves null when nothing is stored. */
export interface TuneStore {
  /** For messages: a path, 'localStorage', … */
  readonly where: string;
  load(): Promise<string | null>;
  save(text: string): Promise<void>;
}

const STORE_KEY = 'dmae-studio.matmul-tune';

export function localStorageTuneStore(storage: Storage): TuneStore {
  return {
    where: 'localStorage',
    load: async () => storage.getItem(STORE_KEY),
    save: async (text) => storage.setItem(STORE_KEY, text),
  };
}

/** Workers have no localStorage; IndexedDB serves there. */
export function indexedDbTuneStore(factory: IDBFactory): TuneStore {
  const open = (): Promise<IDBDatabase> =>
    new Promise((resolve, reject) => {
      const r = factory.open('dmae-matmul-tune', 1);
      r.onupgradeneeded = () => r.result.createObjectStore('kv');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  return {
    where: 'IndexedDB dmae-matmul-tune',
    async load() {
      const db = await open();
      try {
        const v = await idbRequest(db.transaction('kv', 'readonly').objectStore('kv').get(STORE_KEY));
        return typeof v === 'string' ? v : null;
      } finally {
        db.close();
      }
    },
    async save(text) {
      const db = await open();
      try {
        const tx = db.transaction('kv', 'readwrite');
        tx.objectStore('kv').put(text, STORE_KEY);
        await idbDone(tx);
      } finally {
        db.close();
      }
    },
  };
}

let registeredStore: TuneStore | null | undefined;

/** The store used when a call names none (Node's device code registers the file store). */
export function setDefaultTuneStore(store: TuneStore | null, onlyIfUnset = false): void {
  if (onlyIfUnset && registeredStore !== undefined) return;
  registeredStore = store;
}

/** The registered store, else localStorage, else IndexedDB, else none (memory only). */
export function defaultTuneStore(): TuneStore | null {
  if (registeredStore !== undefined) return registeredStore;
  try {
    const ls = (globalThis as { localStorage?: Storage }).localStorage;
    if (ls) return localStorageTuneStore(ls);
  } catch {
    // localStorage can throw (opaque origins, disabled storage)
  }
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  return idb ? indexedDbTuneStore(idb) : null;
}

/** The stored document: every adapter's choices. */
interface TuneDoc {
  format: 'dmae-matmul-tune';
  version: 1;
  adapters: Record<string, StoredAdapter>;
}

/** One adapter's entry: matmul classes here, the other families' choices (autotune-families.ts) beside them. */
export interface StoredAdapter {
  adapter: string;
  classes: Record<string, ClassChoice>;
  families?: Record<string, FamilyChoice>;
}

/** A non-matmul family's stored choice (autotune-families.ts). */
export interface FamilyChoice {
  variant: string;
  shape: Record<string, number>;
  ms: Record<string, number>;
  method: TimingMethod;
  date: string;
}

const emptyDoc = (): TuneDoc => ({ format: 'dmae-matmul-tune', version: 1, adapters: {} });

const validChoice = (c: unknown): c is ClassChoice => {
  const x = c as ClassChoice | null;
  return !!x && typeof x === 'object' && MATMUL_VARIANTS.includes(x.variant) && Array.isArray(x.shapes) && typeof x.ms === 'object' && x.ms !== null;
};

/** Reads the store; a document that does not parse or has the wrong form is reported in `problem`. */
export async function loadDoc(store: TuneStore | null): Promise<{ doc: TuneDoc; problem?: string }> {
  if (!store) return { doc: emptyDoc() };
  let text: string | null;
  try {
    text = await store.load();
  } catch (e) {
    return { doc: emptyDoc(), problem: `cannot read ${store.where}: ${(e as Error).message}` };
  }
  if (text === null) return { doc: emptyDoc() };
  try {
    const doc = JSON.parse(text) as TuneDoc;
    if (!doc || doc.format !== 'dmae-matmul-tune' || doc.version !== 1 || typeof doc.adapters !== 'object' || doc.adapters === null) throw new Error('not a matmul tuning document of version 1');
    for (const a of Object.values(doc.adapters)) {
      if (!a || typeof a.classes !== 'object' || a.classes === null) throw new Error('an adapter without classes');
      for (const [k, c] of Object.entries(a.classes)) if (!validChoice(c)) delete a.classes[k];
    }
    return { doc };
  } catch (e) {
    return { doc: emptyDoc(), problem: `${store.where} is not readable (${(e as Error).message})` };
  }
}

/**
 * Reads the store again (another process may have written meanwhile; an unreadable document
 * starts over empty), lets `update` change this adapter's entry, and writes the document back.
 * Resolves null, or why it could not write.
 */
export async function updateStoredAdapter(store: TuneStore, gpu: Gpu, fp: string, update: (entry: StoredAdapter) => void): Promise<string | null> {
  const fresh = await loadDoc(store);
  const doc = fresh.problem ? emptyDoc() : fresh.doc;
  update((doc.adapters[fp] ??= { adapter: gpu.adapter.description, classes: {} }));
  try {
    await store.save(`${JSON.stringify(doc, null, 1)}\n`);
    return null;
  } catch (e) {
    return `cannot write ${store.where}: ${(e as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Verification

const ATOL = 2e-5; // test/numerics TOL.reduction; atol grows as √K (sums of K products)
const RTOL = 2e-4;
const SENTINEL = -1.2345e30; // C is filled with this before a checked run: a product that writes nothing fails

/** a[m,k] and b[k,n] of op(A)·op(B) in the stored layout. */
const aAt = (a: ArrayLike<number>, s: MatmulShape, m: number, k: number): number => (s.layout === 'tn' ? a[k * s.M + m] : a[m * s.K + k]);
const bAt = (b: ArrayLike<number>, s: MatmulShape, k: number, n: number): number => (s.layout === 'nt' ? b[n * s.K + k] : b[k * s.N + n]);

/**
 * Element (m, n) of the product in float64. For an f16 variant the operands are first what
 * matmul_f16.wgsl's packs store (f16Saturate, as ref/matmul.ts): what it computes exactly, up to
 * the f32 summation every variant shares (so the f32 tolerance holds).
 */
function dot64(a: ArrayLike<number>, b: ArrayLike<number>, s: MatmulShape, m: number, n: number, variant?: MatmulVariant): number {
  const r = variant && isF16Variant(variant) ? f16Saturate : (x: number) => x;
  let acc = 0;
  for (let k = 0; k < s.K; k++) acc += r(aAt(a, s, m, k)) * r(bAt(b, s, k, n));
  return acc;
}

function checkElement(got: number, want: number, K: number, where: string): string | null {
  const err = Math.abs(got - want);
  return err <= ATOL * Math.sqrt(K) + RTOL * Math.abs(want) ? null : `${where} = ${got}, float64 product ${want}`;
}

/** Seeded values in [-1, 1), rounded to float32 (the GPU and the float64 check read the same numbers). */
function randomF32(n: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2 * u() - 1;
  return out;
}

/** Elements to check on a timed shape: the four corners, tile edges, and seeded random ones. */
function samplePoints(s: MatmulShape): [number, number][] {
  const rows = [0, s.M - 1, Math.min(s.M - 1, 63), Math.min(s.M - 1, 64), s.M >> 1];
  const cols = [0, s.N - 1, Math.min(s.N - 1, 63), Math.min(s.N - 1, 64), s.N >> 1];
  const pts = new Map<string, [number, number]>();
  for (const m of rows) for (const n of cols) pts.set(`${m},${n}`, [m, n]);
  const u = mulberry32(s.M * 73856093 ^ s.N * 19349663 ^ s.K * 83492791);
  while (pts.size < Math.min(64, s.M * s.N)) {
    const m = Math.floor(u() * s.M), n = Math.floor(u() * s.N);
    pts.set(`${m},${n}`, [m, n]);
  }
  return [...pts.values()];
}

/**
 * Runs `check` inside a validation scope: resolves its failure, a throw's message, or the
 * validation error (a variant that does not build on this device), else null.
 */
export async function checked(gpu: Gpu, check: () => Promise<string | null>): Promise<string | null> {
  gpu.device.pushErrorScope('validation');
  let failure: string | null;
  try {
    failure = await check();
  } catch (e) {
    failure = (e as Error).message;
  }
  const err = await gpu.device.popErrorScope();
  return failure ?? (err ? err.message : null);
}

/** Records `record` into one Recorder and submits it, checked. */
const runChecked = (gpu: Gpu, record: (rec: Recorder) => void, timer?: GpuTimer): Promise<string | null> =>
  checked(gpu, async () => {
    const rec = new Recorder(gpu, timer, 'matmul-tune-check');
    record(rec);
    await rec.submit();
    return null;
  });

/** Per-variant timer: every pass recorded while `current` is set is summed under it. */
export class VariantTimer extends GpuTimer {
  current = '';
  override writes(_label: string): GPUComputePassTimestampWrites | undefined {
    return super.writes(this.current);
  }
}

/** A variant's full product on a small odd shape vs float64, once per (device, variant, layout, alignment). */
async function smallCheck(gpu: Gpu, variant: MatmulVariant, layout: MatmulLayout, aligned: boolean, cand: MatmulCandidate, cacheable: boolean): Promise<string | null> {
  let byGpu = smallChecks.get(gpu);
  if (!byGpu) smallChecks.set(gpu, (byGpu = new Map()));
  const key = `${variant}.${layout}.${aligned ? 'v4' : 'odd'}`;
  if (cacheable && byGpu.has(key)) return byGpu.get(key)!;
  // Not multiples of any tile (64×64, 8 rows × 64 columns); aligned: what vec4Aligned asks, N and K
  // multiples of 4, and M too for 'tn' (with M odd, vec4 'tn' would fall back and go unchecked); nn/nt keep M odd.
  const s: MatmulShape = aligned ? { layout, M: layout === 'tn' ? 68 : 67, N: 68, K: 36 } : { layout, M: 67, N: 45, K: 37 };
  const a = randomF32(s.M * s.K, 11), b = randomF32(s.K * s.N, 12);
  const dev = gpu.device;
  const ta = createTensor(dev, a.length, 'matmul-tune-a', a), tb = createTensor(dev, b.length, 'matmul-tune-b', b), tc = createTensor(dev, s.M * s.N, 'matmul-tune-c');
  let failure: string | null;
  try {
    failure = await runChecked(gpu, (rec) => {
      fill(rec, tc, SENTINEL, s.M * s.N);
      cand(rec, tc, ta, tb, s.M, s.N, s.K, layout);
    });
    counters.runs++;
    if (!failure) {
      const all: [number, number][] = [];
      for (let m = 0; m < s.M; m++) for (let n = 0; n < s.N; n++) all.push([m, n]);
      const [got] = await readSamples(gpu, [tc], s.N, all);
      for (let i = 0; i < all.length && !failure; i++) {
        const [m, n] = all[i];
        failure = checkElement(got[i], dot64(a, b, s, m, n, variant), s.K, `C[${m}, ${n}] of ${layout} ${s.M}×${s.N}×${s.K}`);
      }
    }
  } finally {
    for (const t of [ta, tb, tc]) t.buffer.destroy();
  }
  if (cacheable) byGpu.set(key, failure);
  return failure;
}

// ---------------------------------------------------------------------------------------------
// Measurement

export interface ShapeTiming {
  shape: MatmulShape;
  variant: MatmulVariant;
  verified: boolean;
  failure?: string;
  /** Fastest timed run, ms (by the report's method), and all timed runs. */
  minMs?: number;
  medianMs?: number;
  samplesMs?: number[];
  /** 2·M·N·K / minMs. */
  gflops?: number;
  /** Verified but not timed: its screening run was over `pruneFactor`× the fastest one's. */
  pruned?: boolean;
}

export interface ClassReport {
  key: string;
  /** The class's shapes in this call (the first is the one timed unless measureAll). */
  shapes: MatmulShape[];
  chosen: MatmulVariant;
  /** measured now, known in memory, read from the store, or the static guess (tuning off or nothing verified). */
  source: 'measured' | 'memory' | 'stored' | 'static';
  /** When this device already runs another variant for the class (frozen at its first use). */
  inUseOnDevice?: MatmulVariant;
  timings: ShapeTiming[];
}

export interface TuneReport {
  enabled: boolean;
  adapter: string;
  fingerprint: string;
  method: TimingMethod;
  classes: ClassReport[];
  /** Products run on the GPU by this call (verification and timing). */
  runs: number;
  seconds: number;
  /** Where choices persist, or null (memory only). */
  store: string | null;
  warnings: string[];
}

export interface TuneOptions {
  /**
   * Timed runs per variant and shape (default 2 on a hardware adapter, 3 on a CPU-emulated one,
   * whose timings share the CPU with everything else and are noisier: a stored choice is kept
   * for good). With timestamps a screening run of the whole shape (M ≤ 192) counts as the first.
   */
  reps?: number;
  /** Time classes even when a choice is known, and replace it (the benchmark). */
  force?: boolean;
  /** Time every shape of a class, not only its largest; the class goes to the least total time. */
  measureAll?: boolean;
  /** Skip timing a variant whose screening run took over this many times the fastest one's (default 2; Infinity: time all). */
  pruneFactor?: number;
  /** Default: defaultTuneStore(); null: memory only. */
  store?: TuneStore | null;
  /** Test hook: record these instead of the real variants (e.g. a faulty one, which must never win). */
  candidates?: Partial<Record<MatmulVariant, MatmulCandidate>>;
  /** Progress lines. */
  log?: (line: string) => void;
}

const realCandidate = (v: MatmulVariant): MatmulCandidate => (rec, c, a, b, M, N, K, layout) => matmul(rec, c, a, b, null, M, N, K, layout, false, v);

const flopsOf = (s: MatmulShape): number => 2 * s.M * s.N * s.K;
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

let chain: Promise<unknown> = Promise.resolve();
/** One tuning at a time per process: two would time each other. */
export function serial<T>(f: () => Promise<T>): Promise<T> {
  const next = chain.then(f, f);
  chain = next.catch(() => undefined);
  return next;
}

/**
 * Chooses the variant of every class of `shapes` not yet known (or all, with `force`),
 * remembers the choices and persists the new ones. Resolves with what it did; never records
 * into anybody's Recorder. Call it before the first step is recorded.
 */
export function tuneMatmul(gpu: Gpu, shapes: readonly MatmulShape[], opts: TuneOptions = {}): Promise<TuneReport> {
  return serial(() => tuneNow(gpu, shapes, opts));
}

async function tuneNow(gpu: Gpu, shapes: readonly MatmulShape[], opts: TuneOptions): Promise<TuneReport> {
  const t0 = performance.now();
  const runs0 = counters.runs;
  const fp = adapterFingerprint(gpu);
  const method: TimingMethod = GpuTimer.available(gpu.device) ? 'gpu-timestamp' : 'wall-clock';
  const enabled = tuningEnabled();
  const store = !enabled ? null : opts.store === undefined ? defaultTuneStore() : opts.store;
  const report: TuneReport = { enabled, adapter: gpu.adapter.description, fingerprint: fp, method, classes: [], runs: 0, seconds: 0, store: store?.where ?? null, warnings: [] };
  const warn = (w: string): void => {
    report.warnings.push(w);
    console.warn(`matmul tuner: ${w}`);
  };

  // Group by class, largest product first within a class.
  const byClass = new Map<string, MatmulShape[]>();
  const seen = new Set<string>();
  for (const s0 of shapes) {
    const s: MatmulShape = { layout: s0.layout, M: s0.M, N: s0.N, K: s0.K, f16: !!s0.f16 };
    const id = `${s.layout}:${s.M}:${s.N}:${s.K}:${s.f16}`;
    if (s.M < 1 || s.N < 1 || s.K < 1 || seen.has(id)) continue;
    seen.add(id);
    const key = shapeClass(s);
    if (!byClass.has(key)) byClass.set(key, []);
    byClass.get(key)!.push(s);
  }
  for (const list of byClass.values()) list.sort((p, q) => flopsOf(q) - flopsOf(p));

  const inUse = (key: string) => frozen.get(gpu)?.get(key);
  if (!enabled) {
    for (const [key, list] of byClass) report.classes.push({ key, shapes: list, chosen: staticVariantFor(gpu, list[0]), source: 'static', timings: [] });
    report.seconds = (performance.now() - t0) / 1000;
    return report;
  }

  const table = memoryTable(fp);
  const loaded = await loadDoc(store);
  if (loaded.problem) warn(`ignoring ${loaded.problem}; it will be rewritten`);
  const stored = loaded.doc.adapters[fp]?.classes ?? {};
  const toMeasure: [string, MatmulShape[]][] = [];
  for (const [key, list] of byClass) {
    const known = table.get(key);
    if (!opts.force && known && applicableVariants(gpu, list[0]).includes(known.variant)) report.classes.push({ key, shapes: list, chosen: known.variant, source: 'memory', timings: [] });
    else if (!opts.force && stored[key] && applicableVariants(gpu, list[0]).includes(stored[key].variant)) {
      table.set(key, stored[key]);
      report.classes.push({ key, shapes: list, chosen: stored[key].variant, source: 'stored', timings: [] });
    } else toMeasure.push([key, list]);
  }

  const measured = new Map<string, ClassChoice>();
  if (toMeasure.length > 0) {
    const timed = toMeasure.map(([key, list]) => [key, opts.measureAll ? list : list.slice(0, 1)] as const);
    const all = timed.flatMap(([, l]) => l);
    const limit = Math.floor(Math.min(gpu.device.limits.maxStorageBufferBindingSize, gpu.device.limits.maxBufferSize) / 4);
    const fits = (s: MatmulShape) => s.M * s.K <= limit && s.K * s.N <= limit && s.M * s.N <= limit;
    const maxA = Math.max(1, ...all.filter(fits).map((s) => s.M * s.K));
    const maxB = Math.max(1, ...all.filter(fits).map((s) => s.K * s.N));
    const maxC = Math.max(1, ...all.filter(fits).map((s) => s.M * s.N));
    // Operand pools carved per shape (seeded data uploaded once for the call); an output per variant.
    const hostA = randomF32(maxA, 1), hostB = randomF32(maxB, 2);
    const dev = gpu.device;
    const pools: Pools = {
      hostA, hostB,
      a: createTensor(dev, maxA, 'matmul-tune-a', hostA),
      b: createTensor(dev, maxB, 'matmul-tune-b', hostB),
      c: Object.fromEntries(MATMUL_VARIANTS.map((v) => [v, createTensor(dev, maxC, `matmul-tune-c-${v}`)])) as Record<MatmulVariant, Tensor>,
    };
    const timer = method === 'gpu-timestamp' ? new VariantTimer(dev, 64) : undefined;
    try {
      {
        // Touch the outputs once, so that their first (lazily zeroed) use is not inside a variant's checked run.
        const rec = new Recorder(gpu, undefined, 'matmul-tune-init');
        for (const v of MATMUL_VARIANTS) fill(rec, pools.c[v], 0, maxC);
        await rec.submit();
      }
      for (const [key, list] of timed) {
        const timings: ShapeTiming[] = [];
        for (const s of list) timings.push(...(fits(s) ? await measureShape(gpu, s, pools, timer, opts) : applicableVariants(gpu, s).map((v) => ({ shape: s, variant: v, verified: false, failure: "an operand exceeds the device's largest binding" }))));
        // The class goes to the variant with the least total time over its timed shapes, among
        // those verified and timed on every one of them.
        const ms: Partial<Record<MatmulVariant, number>> = {};
        for (const v of MATMUL_VARIANTS) {
          const ts = timings.filter((t) => t.variant === v);
          if (ts.length === list.length && ts.every((t) => t.verified && t.minMs !== undefined)) ms[v] = Number(ts.reduce((acc, t) => acc + t.minMs!, 0).toPrecision(4));
        }
        const ranked = (Object.entries(ms) as [MatmulVariant, number][]).sort((p, q) => p[1] - q[1]);
        for (const f of timings.filter((t) => !t.verified)) warn(`${f.variant} failed on ${f.shape.layout} ${f.shape.M}×${f.shape.N}×${f.shape.K} and is not a candidate for ${key}: ${f.failure}`);
        if (ranked.length === 0) {
          const fallback = staticVariantFor(gpu, list[0]);
          warn(`no variant could be verified and timed for ${key}; keeping the static ${fallback}`);
          report.classes.push({ key, shapes: byClass.get(key)!, chosen: fallback, source: 'static', timings });
          continue;
        }
        const choice: ClassChoice = { variant: pickVariant(ms, staticVariantFor(gpu, list[0])), shapes: list.map((s) => [s.M, s.N, s.K]), ms, method, date: new Date().toISOString() };
        counters.measuredClasses++;
        measured.set(key, choice);
        table.set(key, choice);
        report.classes.push({ key, shapes: byClass.get(key)!, chosen: choice.variant, source: 'measured', timings });
        opts.log?.(`  ${key.padEnd(22)} ${ranked.map(([v, t]) => `${v} ${t.toFixed(3)} ms`).join(', ')} → ${choice.variant}`);
      }
    } finally {
      timer?.destroy();
      for (const t of [pools.a, pools.b, ...Object.values(pools.c)]) t.buffer.destroy();
    }
  }

  if (store && (measured.size > 0 || loaded.problem)) {
    // Merged into what is stored now: the first writer of a class wins unless forced.
    const problem = await updateStoredAdapter(store, gpu, fp, (entry) => {
      for (const [key, c] of measured) if (opts.force || !entry.classes[key]) entry.classes[key] = c;
    });
    if (problem) warn(problem);
  }

  for (const c of report.classes) {
    const u = inUse(c.key);
    if (u !== undefined && u !== c.chosen) c.inUseOnDevice = u;
  }
  report.runs = counters.runs - runs0;
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/**
 * How much faster than the static guess another variant must time to take its class. Timings on
 * a loaded (or CPU-emulated) adapter wobble by 10–20 %: a near tie must not trade the kernel the
 * static guess names for one that is slower in steady use (seen: blocked kept for a class where
 * vec4 runs 3× faster, after one run where they timed within 3 %).
 */
export const PRIOR_MARGIN = 0.15;

/**
 * The class's winner from each verified variant's time: the fastest, unless the static guess
 * `prior` is verified and within PRIOR_MARGIN of it, in which case the prior keeps the class.
 */
export function pickVariant(ms: Partial<Record<MatmulVariant, number>>, prior: MatmulVariant): MatmulVariant {
  const ranked = (Object.entries(ms) as [MatmulVariant, number][]).sort((p, q) => p[1] - q[1]);
  if (ranked.length === 0) throw new Error('pickVariant: no verified variant');
  const [fastest, best] = ranked[0];
  const priorMs = ms[prior];
  return priorMs !== undefined && priorMs <= best * (1 + PRIOR_MARGIN) ? prior : fastest;
}

interface Pools {
  hostA: Float32Array;
  hostB: Float32Array;
  a: Tensor;
  b: Tensor;
  /** One output per variant, so that the variants of a shape run in one submission. */
  c: Record<MatmulVariant, Tensor>;
}

interface Candidate {
  v: MatmulVariant;
  cand: MatmulCandidate;
  t: ShapeTiming;
}

/**
 * The rows a screening run computes: all of them up to 192, else 128 plus M mod 64, so the last
 * (partial) 64-row and 8-row tiles are shaped as in the full product while the slowest variants
 * cost a fraction of it.
 */
export const screenRows = (M: number): number => (M <= 192 ? M : 128 + (M % 64));

/**
 * Verifies and times every applicable variant on one shape:
 *   1. the small-shape check (once per device, variant and layout);
 *   2. a screening run of every variant on the first `screenRows(M)` rows, checked at sampled
 *      elements against float64 (the output is filled with a sentinel first, so a variant that
 *      writes nothing fails); variants slower than `pruneFactor`× the fastest are not timed;
 *   3. `reps` timed runs of the rest on the whole shape, in rotating order, whose output is
 *      checked at sampled elements too (edges included) when the screen was partial.
 * With timestamps the variants share each submission and each pass is timed on its own;
 * without, each run is its own submission, timed on the wall clock.
 */
async function measureShape(gpu: Gpu, s: MatmulShape, pools: Pools, timer: VariantTimer | undefined, opts: TuneOptions): Promise<ShapeTiming[]> {
  const reps = Math.max(1, opts.reps ?? (gpu.adapter.kind === 'hardware' ? 2 : 3));
  const prune = opts.pruneFactor ?? 2;
  const a: Tensor = { buffer: pools.a.buffer, offset: 0, length: s.M * s.K };
  const b: Tensor = { buffer: pools.b.buffer, offset: 0, length: s.K * s.N };
  const c = (v: MatmulVariant): Tensor => ({ buffer: pools.c[v].buffer, offset: 0, length: s.M * s.N });
  const record = (x: Candidate, rec: Recorder, M: number): void => x.cand(rec, c(x.v), a, b, M, s.N, s.K, s.layout);

  /**
   * One run of each of `xs` on the first M rows (sentinel first when `check`); resolves each
   * one's time (GPU or wall, ms) or its failure. One submission with timestamps (one each when
   * that fails, to tell which variant failed), else one each on the wall clock.
   */
  const runAll = async (xs: readonly Candidate[], M: number, check: boolean): Promise<(number | string)[]> => {
    const one = (x: Candidate) => (rec: Recorder) => {
      if (check) fill(rec, c(x.v), SENTINEL, M * s.N);
      record(x, rec, M);
    };
    counters.runs += xs.length;
    if (timer && xs.length > 0) {
      const failure = await runChecked(gpu, (rec) => {
        for (const x of xs) {
          timer.current = 'sentinel'; // the fill is not the candidate's time
          if (check) fill(rec, c(x.v), SENTINEL, M * s.N);
          timer.current = x.v;
          record(x, rec, M);
        }
      }, timer);
      if (!failure) {
        const byVariant = await timer.read();
        return xs.map((x) => (byVariant.get(x.v) ?? 0) / 1e6);
      }
      await timer.read().catch(() => undefined); // drop the failed submission's passes
    }
    const out: (number | string)[] = [];
    for (const x of xs) {
      const t0 = performance.now();
      const f = await runChecked(gpu, one(x));
      out.push(f ?? performance.now() - t0);
    }
    return out;
  };
  /** Checks sampled elements of the first M rows of each output; marks failures; resolves the ones that pass. */
  const verify = async (xs: readonly Candidate[], M: number): Promise<Candidate[]> => {
    const sub: MatmulShape = { ...s, M };
    const pts = samplePoints(sub);
    // The product of the first M rows as the kernel sees it (for 'tn' M is also A's row stride).
    const want = (v: MatmulVariant) => pts.map(([m, n]) => dot64(pools.hostA, pools.hostB, sub, m, n, v));
    const got = await readSamples(gpu, xs.map((x) => c(x.v)), s.N, pts);
    return xs.filter((x, j) => {
      let failure: string | null = null;
      const w = want(x.v);
      for (let i = 0; i < pts.length && !failure; i++) failure = checkElement(got[j][i], w[i], s.K, `C[${pts[i][0]}, ${pts[i][1]}]`);
      if (failure) {
        x.t.verified = false;
        x.t.failure = M < s.M ? `${failure} (first ${M} rows)` : failure;
      }
      return !failure;
    });
  };

  const timings: ShapeTiming[] = [];
  let live: Candidate[] = [];
  for (const v of applicableVariants(gpu, s)) {
    const cand = opts.candidates?.[v] ?? realCandidate(v);
    const t: ShapeTiming = { shape: s, variant: v, verified: false };
    timings.push(t);
    const small = await smallCheck(gpu, v, s.layout, vec4Aligned(s.N, s.K, s.layout, s.M), cand, !opts.candidates?.[v]);
    if (small) t.failure = `small-shape check: ${small}`;
    else live.push({ v, cand, t });
  }

  // Screen.
  const Ms = screenRows(s.M);
  const screen = await runAll(live, Ms, true);
  const screenMs = new Map<MatmulVariant, number>();
  live = live.filter((x, i) => {
    const r = screen[i];
    if (typeof r === 'string') x.t.failure = r;
    else screenMs.set(x.v, r);
    return typeof r !== 'string';
  });
  live = await verify(live, Ms);
  for (const x of live) x.t.verified = true;
  const fastest = Math.min(...live.map((x) => screenMs.get(x.v)!));
  const timed = live.filter((x) => {
    const skip = live.length > 1 && screenMs.get(x.v)! > prune * fastest;
    if (skip) x.t.pruned = true;
    return !skip;
  });

  // Time on the whole shape. A full screen with timestamps was already a timed run of it.
  const samples = new Map<MatmulVariant, number[]>(timed.map((x) => [x.v, Ms === s.M && timer ? [screenMs.get(x.v)!] : []]));
  let ok = [...timed];
  for (let r = samples.get(timed[0]?.v)?.length ?? reps; r < reps && ok.length > 0; r++) {
    const order = ok.map((_, i) => ok[(i + r) % ok.length]); // rotate: no variant always first
    const first = Ms < s.M && r === 0; // the whole output is checked after this run
    const res = await runAll(order, s.M, first);
    order.forEach((x, i) => {
      const v = res[i];
      if (typeof v === 'string') {
        x.t.verified = false;
        x.t.failure = v;
      } else samples.get(x.v)!.push(v);
    });
    ok = ok.filter((x) => x.t.verified);
    if (first) ok = await verify(ok, s.M);
  }
  for (const x of ok) {
    const xs = samples.get(x.v)!;
    x.t.samplesMs = xs.map((ms) => Number(ms.toPrecision(4)));
    x.t.minMs = Math.min(...xs);
    x.t.medianMs = median(xs);
    x.t.gflops = Number((flopsOf(s) / (x.t.minMs * 1e6)).toPrecision(4));
  }
  return timings;
}

/** The listed elements of each output (row-major, N columns), in one submission. */
async function readSamples(gpu: Gpu, outs: readonly Tensor[], N: number, pts: readonly [number, number][]): Promise<Float32Array[]> {
  if (outs.length === 0) return [];
  const dev = gpu.device;
  const n = pts.length;
  const staging = dev.createBuffer({ label: 'matmul-tune-readback', size: Math.max(16, 4 * n * outs.length), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const enc = dev.createCommandEncoder({ label: 'matmul-tune-readback' });
    outs.forEach((c, j) => pts.forEach(([m, col], i) => enc.copyBufferToBuffer(c.buffer, c.offset + 4 * (m * N + col), staging, 4 * (j * n + i), 4)));
    dev.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const all = new Float32Array(staging.getMappedRange(0, 4 * n * outs.length).slice(0));
    staging.unmap();
    return outs.map((_, j) => all.subarray(j * n, (j + 1) * n));
  } finally {
    staging.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Shapes from a model's recording

/**
 * The matmul products `record` dispatches, by shape with their counts, found by recording into
 * a Recorder that keeps nothing: no pipeline, bind group or GPU work is made, and no variant is
 * fixed for the device (matmul() asks for one while it records).
 */
export function collectMatmulShapes(gpu: Gpu, record: (rec: Recorder) => void): MatmulUse[] {
  const uses = new Map<string, MatmulUse>();
  const rec = new (class extends Recorder {
    override dispatch(spec: KernelSpec, _bindings: readonly (Binding | undefined)[], params: readonly Param[] | null): void {
      if (!isMatmulProduct(spec.shader, spec.entry) || !params) return;
      const [M, N, K] = params as number[];
      const c = spec.constants ?? {};
      const layout: MatmulLayout = c.TRANS_A ? 'tn' : c.TRANS_B ? 'nt' : 'nn';
      // The product's context, not the variant it got: an f16 class may have chosen an f32 kernel.
      const f16 = this.matmulPrecision === 'f16';
      const id = `${layout}:${M}:${N}:${K}:${f16}`;
      const u = uses.get(id);
      if (u) u.count++;
      else uses.set(id, { layout, M, N, K, count: 1, ...(f16 ? { f16 } : {}) });
    }
    override copy(): void {}
    override copyToTextures(): void {}
  })(gpu, undefined, 'matmul-shapes');
  dryRecordings++;
  try {
    record(rec);
  } finally {
    dryRecordings--;
  }
  rec.discard();
  return [...uses.values()];
}

/** One line: classes, how many were timed, the choices, where they are kept. */
export function summarizeTuning(r: TuneReport): string {
  const n = (s: ClassReport['source']) => r.classes.filter((c) => c.source === s).length;
  const picks = new Map<MatmulVariant, number>();
  for (const c of r.classes) picks.set(c.chosen, (picks.get(c.chosen) ?? 0) + 1);
  return `matmul tuner (${r.adapter}): ${r.classes.length} shape classes, ${n('measured')} timed (${r.method}), ${n('memory') + n('stored')} known, ${n('static')} static; ` +
    `${[...picks].map(([v, k]) => `${v} ×${k}`).join(', ')}; ${r.runs} runs in ${r.seconds.toFixed(2)} s; kept in ${r.store ?? 'memory only'}`;
}
