/**
 * Per-adapter tuning of the kernel families other than matmul (layer norm, attention, the
 * distillation loss; see FAMILIES): the same idea as gpu/autotune.ts, smaller, because these kernels are few and cheap
 * to check.
 *
 * A family has variants (e.g. layer norm's workgroup-memory reduction and its subgroup one), an
 * always-correct fallback, and shape classes. `tuneKernelsForRecording` lists the classes a
 * model's step asks for in one dry recording (its matmuls for autotune.ts, the rest through
 * gpu/variant-choices.ts) and tunes both before the model records anything: per
 * class not yet known, on the class's largest shape, every variant the device can run is run
 * once and compared with the float64 reference in src/ref (a variant that fails is never
 * chosen), then timed, interleaved, `reps` times (GPU timestamps when the device has them, else
 * the wall clock); the fastest wins. Choices are remembered in memory and kept in the matmul
 * tuner's store, under the same adapter fingerprint, as `families[<family>#<shader hash>|<class>]`
 * (a changed shader makes its family's choices stale on its own).
 */
import {
  adapterFingerprint, checked, collectMatmulShapes, defaultTuneStore, fnv1a, loadDoc, serial, summarizeTuning, tuneMatmul, tuningEnabled, updateStoredAdapter, VariantTimer,
  type FamilyChoice, type TimingMethod, type TuneOptions, type TuneReport, type TuneStore,
} from './autotune';
import { createTensor, readback } from './buffers';
import type { Gpu } from './device';
import { composeShader, Recorder, type Tensor } from './kernels';
import { layernormBackward, layernormForward, layernormVariants, LAYERNORM_SHADERS, type LayernormVariant } from './ops/layernorm';
import { attentionBackward, attentionForward, attentionVariants, ATTENTION_SHADERS, type AttentionVariant } from './ops/attention';
import { distillLossBackward, distillLossForward, distillVariants, DISTILL_SHADERS, type DistillVariant } from './ops/loss';
import { GpuTimer } from './timing';
import { collectFamilyShapes, knownVariant, rememberVariant, variantInUse } from './variant-choices';
import * as refLayernorm from '../ref/layernorm';
import * as refAttention from '../ref/attention';
import * as refLoss from '../ref/loss';
import { mulberry32 } from '../core/random';

/** One shape of a family, by its dimension names ({ rows, C } for layer norm). */
export type FamilyShape = Record<string, number>;

/** A variant's dispatches on one shape's data, and the check of what they wrote. */
export interface Trial<V extends string> {
  record(rec: Recorder, v: V): void;
  /** null when v's outputs match the float64 reference, else what is wrong. */
  check(v: V): Promise<string | null>;
  destroy(): void;
}

export interface Family<V extends string = string> {
  readonly name: string;
  /** Shader files whose text decides the variants (hashed into the stored key). */
  readonly shaders: readonly string[];
  /** The variants the device runs for shapes like `shape` (every shape of the family when omitted). */
  variants(gpu: Gpu, shape?: FamilyShape): readonly V[];
  readonly fallback: V;
  trial(gpu: Gpu, shape: FamilyShape): Trial<V>;
}

const ATOL = 2e-5; // test/numerics TOL.reduction
const RTOL = 2e-4;

function compare(got: Float32Array, want: Float64Array, what: string, scale = 1): string | null {
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= scale * ATOL + RTOL * Math.abs(want[i]))) return `${what}[${i}] = ${got[i]}, float64 says ${want[i]}`;
  }
  return null;
}

function seeded(n: number, seed: number, mean = 0): Float32Array {
  const u = mulberry32(seed);
  return Float32Array.from({ length: n }, () => mean + 2 * u() - 1);
}

/** The rows a check covers (the float64 reference of a ViT-B step's 12 k rows would take a while); timing uses all. */
const CHECK_ROWS = 2048;

const LAYERNORM: Family<LayernormVariant> = {
  name: 'layernorm',
  get shaders() {
    return LAYERNORM_SHADERS;
  },
  variants: (gpu) => layernormVariants(gpu),
  fallback: 'workgroup',
  trial(gpu, { rows, C }) {
    const dev = gpu.device;
    const x = seeded(rows * C, 1, 0.5), w = seeded(C, 2, 1), b = seeded(C, 3), dout = seeded(rows * C, 4);
    const inputs = { x: createTensor(dev, rows * C, 'ln-tune-x', x), w: createTensor(dev, C, 'ln-tune-w', w), b: createTensor(dev, C, 'ln-tune-b', b), dout: createTensor(dev, rows * C, 'ln-tune-dout', dout) };
    const outs = new Map<LayernormVariant, Record<'out' | 'mean' | 'rstd' | 'dx' | 'dw' | 'db', Tensor>>();
    const outsOf = (v: LayernormVariant) => {
      let o = outs.get(v);
      if (!o) {
        const t = (n: number, what: string) => createTensor(dev, n, `ln-tune-${v}-${what}`);
        outs.set(v, (o = { out: t(rows * C, 'out'), mean: t(rows, 'mean'), rstd: t(rows, 'rstd'), dx: t(rows * C, 'dx'), dw: t(C, 'dw'), db: t(C, 'db') }));
      }
      return o;
    };
    const r = Math.min(rows, CHECK_ROWS);
    let want: Record<'out' | 'dx' | 'dw' | 'db', Float64Array> | null = null;
    const reference = () => {
      if (want) return want;
      const x64 = Float64Array.from(x.subarray(0, r * C)), d64 = Float64Array.from(dout.subarray(0, r * C)), w64 = Float64Array.from(w), b64 = Float64Array.from(b);
      const out = new Float64Array(r * C), mean = new Float64Array(r), rstd = new Float64Array(r), dx = new Float64Array(r * C), dw = new Float64Array(C), db = new Float64Array(C);
      refLayernorm.layernormForward(out, mean, rstd, x64, w64, b64, r, C);
      refLayernorm.layernormBackward(dx, dw, db, d64, x64, w64, mean, rstd, r, C);
      return (want = { out, dx, dw, db });
    };
    return {
      record(rec, v) {
        const o = outsOf(v);
        layernormForward(rec, o.out, o.mean, o.rstd, inputs.x, inputs.w, inputs.b, rows, C, 1e-6, v);
        layernormBackward(rec, o.dx, o.dw, o.db, inputs.dout, inputs.x, inputs.w, o.mean, o.rstd, rows, C, false, v);
      },
      async check(v) {
        // The checked run covers the first r rows: dw and db are then sums over those rows only.
        const o = outsOf(v);
        const rec = new Recorder(gpu, undefined, 'ln-tune-check');
        rec.clear(o.dw);
        rec.clear(o.db);
        layernormForward(rec, o.out, o.mean, o.rstd, inputs.x, inputs.w, inputs.b, r, C, 1e-6, v);
        layernormBackward(rec, o.dx, o.dw, o.db, inputs.dout, inputs.x, inputs.w, o.mean, o.rstd, r, C, false, v);
        await rec.submit();
        const ref = reference();
        const read = (t: Tensor, n: number) => readback(dev, { buffer: t.buffer, offset: t.offset, length: n });
        return compare(await read(o.out, r * C), ref.out, 'out') ?? compare(await read(o.dx, r * C), ref.dx, 'dx', 10) ??
          compare(await read(o.dw, C), ref.dw, 'dweight', Math.sqrt(r)) ?? compare(await read(o.db, C), ref.db, 'dbias', Math.sqrt(r));
      },
      destroy() {
        for (const t of [...Object.values(inputs), ...[...outs.values()].flatMap((o) => Object.values(o))]) t.buffer.destroy();
      },
    };
  },
};

/** Work a check may give the float64 attention reference (multiply-adds, ≈ 0.1 s); timing uses the whole shape. */
const CHECK_ATTENTION_MACS = 2e7;

const ATTENTION: Family<AttentionVariant> = {
  name: 'attention',
  get shaders() {
    return ATTENTION_SHADERS;
  },
  variants: (gpu) => attentionVariants(gpu),
  fallback: 'workgroup',
  trial(gpu, { B, T, H, hd }) {
    const dev = gpu.device;
    const D = H * hd;
    // qkv spread over ±2: softmax rows far from uniform, as in test/gpu/attention.test.ts.
    const qkv = seeded(B * T * 3 * D, 11).map((x) => 2 * x), dout = seeded(B * T * D, 12);
    const inputs = { qkv: createTensor(dev, qkv.length, 'att-tune-qkv', qkv), dout: createTensor(dev, dout.length, 'att-tune-dout', dout) };
    const outs = new Map<AttentionVariant, Record<'out' | 'probs' | 'dqkv', Tensor>>();
    const outsOf = (v: AttentionVariant) => {
      let o = outs.get(v);
      if (!o) {
        const t = (n: number, what: string) => createTensor(dev, n, `att-tune-${v}-${what}`);
        outs.set(v, (o = { out: t(B * T * D, 'out'), probs: t(B * H * T * T, 'probs'), dqkv: t(B * T * 3 * D, 'dqkv') }));
      }
      return o;
    };
    // The check covers the first b images (the batch is independent per image).
    const b = Math.max(1, Math.min(B, Math.floor(CHECK_ATTENTION_MACS / (4 * H * T * T * hd))));
    let want: Record<'out' | 'probs' | 'dqkv', Float64Array> | null = null;
    const reference = () => {
      if (want) return want;
      const q64 = Float64Array.from(qkv.subarray(0, b * T * 3 * D)), d64 = Float64Array.from(dout.subarray(0, b * T * D));
      const out = new Float64Array(b * T * D), probs = new Float64Array(b * H * T * T), dqkv = new Float64Array(b * T * 3 * D);
      refAttention.attentionForward(out, probs, q64, b, T, H, hd);
      refAttention.attentionBackward(dqkv, d64, q64, probs, b, T, H, hd);
      return (want = { out, probs, dqkv });
    };
    return {
      record(rec, v) {
        const o = outsOf(v);
        attentionForward(rec, o.out, o.probs, inputs.qkv, B, T, H, hd, v);
        attentionBackward(rec, o.dqkv, inputs.dout, inputs.qkv, o.probs, B, T, H, hd, v);
      },
      async check(v) {
        const o = outsOf(v);
        const rec = new Recorder(gpu, undefined, 'att-tune-check');
        attentionForward(rec, o.out, o.probs, inputs.qkv, b, T, H, hd, v);
        attentionBackward(rec, o.dqkv, inputs.dout, inputs.qkv, o.probs, b, T, H, hd, v);
        await rec.submit();
        const ref = reference();
        const read = (t: Tensor, n: number) => readback(dev, { buffer: t.buffer, offset: t.offset, length: n });
        // dqkv goes through two reductions (test/gpu/attention.test.ts checks it at TOL.gradient).
        return compare(await read(o.probs, b * H * T * T), ref.probs, 'probs') ?? compare(await read(o.out, b * T * D), ref.out, 'out') ??
          compare(await read(o.dqkv, b * T * 3 * D), ref.dqkv, 'dqkv', 5);
      },
      destroy() {
        for (const t of [...Object.values(inputs), ...[...outs.values()].flatMap((o) => Object.values(o))]) t.buffer.destroy();
      },
    };
  },
};

/**
 * DMAE's L1 distillation loss and its gradient (ops/loss.ts: the rows normalised, then summed).
 * The tuner times L1, the recipe's loss; L2 differs only in f, the same loads and sums.
 */
const DISTILL: Family<DistillVariant> = {
  name: 'distill',
  get shaders() {
    return DISTILL_SHADERS;
  },
  variants: (gpu, shape) => distillVariants(gpu, shape?.C),
  fallback: 'workgroup',
  trial(gpu, { R, C }) {
    const dev = gpu.device;
    const teacher = seeded(R * C, 21).map((x) => 3 * x), student = seeded(R * C, 22);
    const inputs = { teacher: createTensor(dev, R * C, 'distill-tune-teacher', teacher), student: createTensor(dev, R * C, 'distill-tune-student', student) };
    const outs = new Map<DistillVariant, Record<'loss' | 'dstudent', Tensor>>();
    const outsOf = (v: DistillVariant) => {
      let o = outs.get(v);
      if (!o) outs.set(v, (o = { loss: createTensor(dev, 1, `distill-tune-${v}-loss`), dstudent: createTensor(dev, R * C, `distill-tune-${v}-dstudent`) }));
      return o;
    };
    const r = Math.min(R, CHECK_ROWS);
    let want: Record<'loss' | 'dstudent', Float64Array> | null = null;
    const reference = () => {
      if (want) return want;
      const t64 = Float64Array.from(teacher.subarray(0, r * C)), s64 = Float64Array.from(student.subarray(0, r * C));
      const loss = new Float64Array(1), dstudent = new Float64Array(r * C);
      refLoss.distillLossForward(loss, t64, s64, r, C, 'l1');
      refLoss.distillLossBackward(dstudent, t64, s64, r, C, 'l1', 1);
      return (want = { loss, dstudent });
    };
    return {
      record(rec, v) {
        const o = outsOf(v);
        distillLossForward(rec, o.loss, inputs.teacher, inputs.student, R, C, 'l1', v);
        distillLossBackward(rec, o.dstudent, inputs.teacher, inputs.student, R, C, 'l1', 1, v);
      },
      async check(v) {
        // The checked run covers the first r rows (the loss is then their mean).
        const o = outsOf(v);
        const rec = new Recorder(gpu, undefined, 'distill-tune-check');
        distillLossForward(rec, o.loss, inputs.teacher, inputs.student, r, C, 'l1', v);
        distillLossBackward(rec, o.dstudent, inputs.teacher, inputs.student, r, C, 'l1', 1, v);
        await rec.submit();
        const ref = reference();
        const read = (t: Tensor, n: number) => readback(dev, { buffer: t.buffer, offset: t.offset, length: n });
        // dstudent's entries are ~1/(r·C): its absolute tolerance is 2.5·ATOL (test/numerics
        // TOL.gradient) times its largest entry, as test/gpu/loss.test.ts's scaledTol.
        const dMax = ref.dstudent.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        return compare(await read(o.loss, 1), ref.loss, 'loss') ?? compare(await read(o.dstudent, r * C), ref.dstudent, 'dstudent', 2.5 * dMax);
      },
      destroy() {
        for (const t of [...Object.values(inputs), ...[...outs.values()].flatMap((o) => Object.values(o))]) t.buffer.destroy();
      },
    };
  },
};

/** Every tuned family, by name. */
export const FAMILIES: Record<string, Family> = { layernorm: LAYERNORM as Family, attention: ATTENTION as Family, distill: DISTILL as Family };

export interface FamilyClassReport {
  family: string;
  cls: string;
  shape: FamilyShape;
  chosen: string;
  source: 'measured' | 'memory' | 'stored' | 'fallback';
  /** Fastest timed run per verified variant, ms. */
  ms: Record<string, number>;
  failures: Record<string, string>;
  inUseOnDevice?: string;
}

export interface FamilyTuneReport {
  method: TimingMethod;
  classes: FamilyClassReport[];
  seconds: number;
  warnings: string[];
}

export interface FamilyTuneOptions {
  /** Timed runs per variant (default 3). */
  reps?: number;
  /** Time classes even when a choice is known, and replace it (the benchmark). */
  force?: boolean;
  store?: TuneStore | null;
  log?: (line: string) => void;
}

/** `<family>#<hash of its shaders>|<class>`: the key a choice is stored under. */
function storedKey(gpu: Gpu, f: Family, cls: string): string {
  let text = '';
  for (const s of f.shaders) {
    try {
      text += composeShader(s, gpu.kernels.sources).code;
    } catch {
      text += `(no ${s})`;
    }
  }
  return `${f.name}#${fnv1a(text)}|${cls}`;
}

/**
 * Chooses a variant for every listed class not yet known (family → class → largest shape, from
 * collectFamilyShapes). Never records into anybody's Recorder; call it before recording a step.
 */
export function tuneFamilies(gpu: Gpu, listed: Map<string, Map<string, FamilyShape>>, opts: FamilyTuneOptions = {}): Promise<FamilyTuneReport> {
  return serial(() => tuneFamiliesNow(gpu, listed, opts));
}

async function tuneFamiliesNow(gpu: Gpu, listed: Map<string, Map<string, FamilyShape>>, opts: FamilyTuneOptions): Promise<FamilyTuneReport> {
  const t0 = performance.now();
  const method: TimingMethod = GpuTimer.available(gpu.device) ? 'gpu-timestamp' : 'wall-clock';
  const report: FamilyTuneReport = { method, classes: [], seconds: 0, warnings: [] };
  const warn = (w: string): void => {
    report.warnings.push(w);
    console.warn(`kernel tuner: ${w}`);
  };
  if (!tuningEnabled()) return report;
  const fp = adapterFingerprint(gpu);
  const store = opts.store === undefined ? defaultTuneStore() : opts.store;
  // A broken store reads as empty (the matmul tuner reports it and rewrites it).
  const stored = (await loadDoc(store)).doc.adapters[fp]?.families ?? {};
  const measured = new Map<string, FamilyChoice>();
  const reps = Math.max(1, opts.reps ?? 3);
  const timer = method === 'gpu-timestamp' ? new VariantTimer(gpu.device, 1024) : undefined;
  try {
    for (const [name, classes] of listed) {
      const f = FAMILIES[name];
      if (!f) continue;
      for (const [cls, shape] of classes) {
        const variants = f.variants(gpu, shape);
        const entry: FamilyClassReport = { family: name, cls, shape, chosen: f.fallback, source: 'fallback', ms: {}, failures: {} };
        report.classes.push(entry);
        const inUse = variantInUse(gpu, name, cls);
        const key = storedKey(gpu, f, cls);
        const mem = knownVariant(fp, name, cls);
        if (!opts.force && mem !== undefined) Object.assign(entry, { chosen: mem, source: 'memory' });
        else if (!opts.force && stored[key] && variants.includes(stored[key].variant)) {
          rememberVariant(fp, name, cls, stored[key].variant);
          Object.assign(entry, { chosen: stored[key].variant, source: 'stored', ms: stored[key].ms });
        } else if (variants.length > 1) {
          const trial = f.trial(gpu, shape);
          try {
            const ok: string[] = [];
            for (const v of variants) {
              const failure = await checked(gpu, () => trial.check(v));
              if (failure) {
                entry.failures[v] = failure;
                warn(`${name} ${v} failed on ${JSON.stringify(shape)} and is not a candidate: ${failure}`);
              } else ok.push(v);
            }
            const best: Record<string, number> = {};
            for (let i = 0; i < reps; i++) {
              const order = ok.map((_, j) => ok[(i + j) % ok.length]); // rotate, so no variant always runs first
              if (timer) {
                const rec = new Recorder(gpu, timer, `${name}-tune`);
                for (const v of order) {
                  timer.current = v;
                  trial.record(rec, v);
                }
                await rec.submit();
                for (const [v, ns] of await timer.read()) best[v] = Math.min(best[v] ?? Infinity, ns / 1e6);
              } else {
                for (const v of order) {
                  const rec = new Recorder(gpu, undefined, `${name}-tune`);
                  const start = performance.now();
                  trial.record(rec, v);
                  await rec.submit();
                  best[v] = Math.min(best[v] ?? Infinity, performance.now() - start);
                }
              }
            }
            const ranked = Object.entries(best).sort((p, q) => p[1] - q[1]);
            if (ranked.length > 0) {
              const choice: FamilyChoice = { variant: ranked[0][0], shape, ms: Object.fromEntries(ranked.map(([v, t]) => [v, Number(t.toPrecision(4))])), method, date: new Date().toISOString() };
              rememberVariant(fp, name, cls, choice.variant);
              measured.set(key, choice);
              Object.assign(entry, { chosen: choice.variant, source: 'measured', ms: choice.ms });
              opts.log?.(`  ${name} ${cls.padEnd(16)} ${ranked.map(([v, t]) => `${v} ${t.toFixed(3)} ms`).join(', ')} → ${choice.variant}`);
            } else warn(`no ${name} variant could be verified for ${cls}; keeping ${f.fallback}`);
          } finally {
            trial.destroy();
          }
        }
        if (inUse !== undefined && inUse !== entry.chosen) entry.inUseOnDevice = inUse;
      }
    }
  } finally {
    timer?.destroy();
  }
  if (store && measured.size > 0) {
    // Merged into what is stored now: the first writer of a key wins unless forced.
    const problem = await updateStoredAdapter(store, gpu, fp, (entry) => {
      const fam = (entry.families ??= {});
      for (const [k, c] of measured) if (opts.force || !fam[k]) fam[k] = c;
    });
    if (problem) warn(problem);
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/**
 * The engine's hook: tunes the matmuls and the other families of a model's step (dry-recorded
 * once by `record`) before its first real recording. Never throws: on a failure it warns and the
 * static choices stay. DMAE_TUNE=verbose prints what it did.
 */
export async function tuneKernelsForRecording(gpu: Gpu, record: (rec: Recorder) => void, opts: TuneOptions = {}): Promise<{ matmul: TuneReport; families: FamilyTuneReport } | null> {
  if (!tuningEnabled()) return null;
  try {
    const verbose = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.DMAE_TUNE?.trim().toLowerCase() === 'verbose';
    const log = verbose ? (l: string) => console.log(l) : opts.log;
    const { result: products, shapes } = collectFamilyShapes(() => collectMatmulShapes(gpu, record));
    const matmul = await tuneMatmul(gpu, products, { ...opts, ...(log ? { log } : {}) });
    const families = await tuneFamilies(gpu, shapes, { store: opts.store, force: opts.force, ...(log ? { log } : {}) });
    if (verbose) console.log(`${summarizeTuning(matmul)}\n${summarizeFamilies(families)}`);
    return { matmul, families };
  } catch (e) {
    console.warn(`kernel tuner: ${(e as Error).message}; keeping the static choices`);
    return null;
  }
}

/** One line: the families' classes, how they were decided, the choices. */
export function summarizeFamilies(r: FamilyTuneReport): string {
  const picks = r.classes.map((c) => `${c.family} ${c.cls} → ${c.chosen} (${c.source})`);
  return `kernel tuner: ${r.classes.length} classes (${r.method}) in ${r.seconds.toFixed(2)} s${picks.length ? `: ${picks.join('; ')}` : ''}`;
}
