/**
 * The per-adapter matmul tuner (src/gpu/autotune.ts): it picks a verified variant that applies,
 * remembers it (a second call runs nothing), persists it to the cache file and reads it back, ignores
 * and rewrites a corrupt file, keeps the static guess under DMAE_TUNE=off, never picks a variant
 * that computes a wrong product (faulty candidates injected through the test hook), never changes
 * what a device already runs, and the products with the tuned choice equal the float64 reference.
 * No timing is asserted: which variant wins depends on the machine and its load.
 */
import { IDBFactory } from 'fake-indexeddb';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import { Trainer } from '../../src/engine/trainer';
import {
  PRIOR_MARGIN, adapterFingerprint, applicableVariants, collectMatmulShapes, pickVariant, indexedDbTuneStore, localStorageTuneStore, matmulTuneCounters, resetMatmulTuning,
  shapeClass, tuneMatmul, type MatmulCandidate, type MatmulShape, type TuneStore,
} from '../../src/gpu/autotune';
import { fileTuneStore } from '../../src/gpu/autotune-node';
import { fill } from '../../src/gpu/ops/elementwise';
import { defaultMatmulVariant, matmul, staticMatmulVariant } from '../../src/gpu/ops/matmul';
import * as ref from '../../src/ref/matmul';
import { expectClose, gpuTensor, matmulTol, randn, read, run, testGpu } from '../helpers';

// Odd M (not a multiple of 8 or 64); N and K multiples of 4 (vec4 applies) or not.
const ALIGNED: MatmulShape = { layout: 'nt', M: 131, N: 96, K: 52 };
const ODD: MatmulShape = { layout: 'tn', M: 45, N: 33, K: 70 };
const NN: MatmulShape = { layout: 'nn', M: 70, N: 40, K: 24 };
// Over 192 rows: screened on the first 128 + M mod 64 rows, then checked on the whole product
// ('tn': M is also A's row stride, so the screen is a product of its own).
const TALL_TN: MatmulShape = { layout: 'tn', M: 300, N: 36, K: 40 };
const TALL_NT: MatmulShape = { layout: 'nt', M: 333, N: 44, K: 28 };

/** Writes nothing useful: zeros, and very fast, so it would win if it were not verified. */
const zeroes: MatmulCandidate = (rec, c, _a, _b, M, N) => fill(rec, c, 0, M * N);
/** Right on small products, wrong past row 100: caught on the timed shape, not by the small check. */
const firstRowsOnly: MatmulCandidate = (rec, c, a, b, M, N, K, layout) => matmul(rec, c, a, b, null, Math.min(M, 100), N, K, layout, false, 'blocked');
/** Right up to 192 rows: passes the small check and the screen of a taller product, fails on the whole of it. */
const first192Rows: MatmulCandidate = (rec, c, a, b, M, N, K, layout) => matmul(rec, c, a, b, null, Math.min(M, 192), N, K, layout, false, 'tiled');

describe('matmul tuner', () => {
  const saved = { cache: process.env.DMAE_TUNE_CACHE, tune: process.env.DMAE_TUNE };
  let dir: string;
  beforeEach(() => {
    resetMatmulTuning();
    dir = mkdtempSync(join(tmpdir(), 'dmae-tune-'));
    process.env.DMAE_TUNE_CACHE = join(dir, 'matmul-tune.json');
    delete process.env.DMAE_TUNE;
  });
  afterEach(() => {
    for (const [k, v] of [['DMAE_TUNE_CACHE', saved.cache], ['DMAE_TUNE', saved.tune]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    vi.restoreAllMocks();
  });

  it('picks a verified, applicable variant per class; a second call runs nothing', async () => {
    const gpu = await testGpu();
    const before = matmulTuneCounters();
    const r = await tuneMatmul(gpu, [ALIGNED, ODD, NN, TALL_TN, TALL_NT], { store: null });
    expect(r.enabled).toBe(true);
    expect(r.runs).toBeGreaterThan(0);
    expect(r.classes.map((c) => c.source)).toEqual(['measured', 'measured', 'measured', 'measured', 'measured']);
    for (const c of r.classes) {
      const s = c.shapes[0];
      expect(applicableVariants(gpu, s)).toContain(c.chosen);
      expect(c.timings.find((t) => t.variant === c.chosen)?.verified, `${c.key}: the chosen variant was verified`).toBe(true);
      expect(c.timings.every((t) => t.verified), `${c.key}: every real variant verifies: ${JSON.stringify(c.timings.map((t) => t.failure))}`).toBe(true);
      expect(defaultMatmulVariant(gpu, s.layout, s.M, s.N, s.K)).toBe(c.chosen);
    }
    expect(r.classes.find((c) => c.key === shapeClass(ODD))!.timings.map((t) => t.variant)).toEqual(['tiled', 'blocked']); // no vec4 when N, K are not multiples of 4
    const mid = matmulTuneCounters();
    expect(mid.measuredClasses - before.measuredClasses).toBe(5);

    const again = await tuneMatmul(gpu, [ALIGNED, ODD, NN, TALL_TN, TALL_NT, { ...ALIGNED, M: 140 }], { store: null }); // M 140: the same class as 131
    expect(again.runs).toBe(0);
    expect(matmulTuneCounters()).toEqual(mid);
    expect(again.classes.map((c) => c.source)).toEqual(['memory', 'memory', 'memory', 'memory', 'memory']);
    expect(again.classes.map((c) => c.chosen)).toEqual(r.classes.map((c) => c.chosen));
  });

  it('persists the choices to the cache file and reads them back in a fresh process state', async () => {
    const gpu = await testGpu();
    const path = process.env.DMAE_TUNE_CACHE!;
    const r = await tuneMatmul(gpu, [ALIGNED, ODD]);
    expect(r.store).toBe(path);
    const doc = JSON.parse(readFileSync(path, 'utf8'));
    const classes = doc.adapters[adapterFingerprint(gpu)].classes;
    expect(Object.keys(classes).sort()).toEqual([shapeClass(ALIGNED), shapeClass(ODD)].sort());
    expect(classes[shapeClass(ALIGNED)].variant).toBe(r.classes[0].chosen);

    resetMatmulTuning(); // as a new process would start
    const before = matmulTuneCounters();
    const back = await tuneMatmul(gpu, [ALIGNED, ODD]);
    expect(back.classes.map((c) => c.source)).toEqual(['stored', 'stored']);
    expect(back.classes.map((c) => c.chosen)).toEqual(r.classes.map((c) => c.chosen));
    expect(matmulTuneCounters()).toEqual(before);
    expect(defaultMatmulVariant(gpu, ODD.layout, ODD.M, ODD.N, ODD.K)).toBe(r.classes[1].chosen);
  });

  it('the browser stores (localStorage; IndexedDB in a worker) keep the choices too', async () => {
    const gpu = await testGpu();
    const items = new Map<string, string>();
    const storage = { getItem: (k: string) => items.get(k) ?? null, setItem: (k: string, v: string) => void items.set(k, v) } as Storage;
    const stores: TuneStore[] = [localStorageTuneStore(storage), indexedDbTuneStore(new IDBFactory())];
    for (const store of stores) {
      resetMatmulTuning();
      const r = await tuneMatmul(gpu, [NN], { store });
      expect(JSON.parse((await store.load())!).adapters[adapterFingerprint(gpu)].classes[shapeClass(NN)].variant, store.where).toBe(r.classes[0].chosen);
      resetMatmulTuning();
      expect((await tuneMatmul(gpu, [NN], { store })).classes[0], store.where).toMatchObject({ source: 'stored', chosen: r.classes[0].chosen });
    }
  });

  it('ignores a corrupt cache file with a warning and rewrites it', async () => {
    const gpu = await testGpu();
    const path = process.env.DMAE_TUNE_CACHE!;
    writeFileSync(path, '{"format": "dmae-matmul-tune", "adapters": {');
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const r = await tuneMatmul(gpu, [NN], { store: fileTuneStore });
    expect(warn.mock.calls.some(([m]) => /matmul tuner: ignoring .*matmul-tune\.json is not readable.*rewritten/.test(String(m))), JSON.stringify(warn.mock.calls)).toBe(true);
    expect(r.warnings.length).toBeGreaterThan(0);
    expect(r.classes[0].source).toBe('measured');
    const doc = JSON.parse(readFileSync(path, 'utf8'));
    expect(doc.adapters[adapterFingerprint(gpu)].classes[shapeClass(NN)].variant).toBe(r.classes[0].chosen);
  });

  it('DMAE_TUNE=off: nothing is timed or written, every product keeps the static guess', async () => {
    const gpu = await testGpu();
    process.env.DMAE_TUNE = 'off';
    const before = matmulTuneCounters();
    const r = await tuneMatmul(gpu, [ALIGNED, ODD]);
    expect(r.enabled).toBe(false);
    expect(r.runs).toBe(0);
    expect(r.classes.every((c) => c.source === 'static' && c.chosen === staticMatmulVariant(gpu))).toBe(true);
    expect(matmulTuneCounters()).toEqual(before);
    expect(existsSync(process.env.DMAE_TUNE_CACHE!)).toBe(false);
    expect(defaultMatmulVariant(gpu, ALIGNED.layout, ALIGNED.M, ALIGNED.N, ALIGNED.K)).toBe(staticMatmulVariant(gpu));
  });

  it('never chooses a variant that computes a wrong product', async () => {
    const gpu = await testGpu();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    // vec4 and vec4_sampled write zeros (fastest of all), blocked is wrong past row 100 (passes the small check).
    const r = await tuneMatmul(gpu, [ALIGNED], { store: null, candidates: { vec4: zeroes, vec4_sampled: zeroes, blocked: firstRowsOnly } });
    const c = r.classes[0];
    expect(c.source).toBe('measured');
    expect(c.chosen).toBe('tiled');
    const t = Object.fromEntries(c.timings.map((x) => [x.variant, x]));
    expect(t.vec4.verified).toBe(false);
    expect(t.vec4.failure).toMatch(/small-shape check: C\[0, 0\] of nt 67×68×36 = 0, float64 product/);
    expect(t.blocked.verified).toBe(false);
    expect(t.blocked.failure).toMatch(/^C\[130, \d+\] = -1\.23\d*e\+30, float64 product/); // row 130 was never written
    expect(t.vec4.minMs).toBeUndefined();
    expect(warn).toHaveBeenCalled();

    // Wrong only past row 192: the screen (172 rows) passes, the whole product does not.
    const tall = await tuneMatmul(gpu, [TALL_NT], { store: null, pruneFactor: Infinity, candidates: { tiled: first192Rows } }); // all timed: none pruned before the whole check
    const tiled = tall.classes[0].timings.find((x) => x.variant === 'tiled')!;
    expect(tiled.verified).toBe(false);
    expect(tiled.failure).toMatch(/^C\[332, \d+\] = -1\.23\d*e\+30, float64 product/);
    expect(tall.classes[0].chosen).not.toBe('tiled');

    // Nothing verifies: the static guess stays, with a warning.
    resetMatmulTuning();
    const none = await tuneMatmul(gpu, [ODD], { store: null, candidates: { tiled: zeroes, blocked: zeroes } });
    expect(none.classes[0]).toMatchObject({ source: 'static', chosen: staticMatmulVariant(gpu) });
    expect(none.warnings.some((w) => /no variant could be verified/.test(w))).toBe(true);
  });

  it('never changes the variant a device already runs for a class (determinism within a run)', async () => {
    const gpu = await testGpu();
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const s = ALIGNED;
    // Listing a recording's products fixes nothing (the engine lists them before it tunes)...
    const listed = collectMatmulShapes(gpu, (rec) => matmul(rec, gpuTensor(gpu, s.M * s.N), gpuTensor(gpu, s.M * s.K), gpuTensor(gpu, s.N * s.K), null, s.M, s.N, s.K, s.layout));
    expect(listed).toEqual([{ ...s, count: 1 }]);
    const only = await tuneMatmul(gpu, [s], { store: null, candidates: { blocked: zeroes, vec4: zeroes, vec4_sampled: zeroes } });
    expect(only.classes[0].chosen).toBe('tiled');
    expect(only.classes[0].inUseOnDevice).toBeUndefined();
    expect(defaultMatmulVariant(gpu, s.layout, s.M, s.N, s.K)).toBe('tiled');
    resetMatmulTuning();
    // ...while the first real use fixes the class's variant for the device: here the static guess.
    const first = defaultMatmulVariant(gpu, s.layout, s.M, s.N, s.K);
    expect(first).toBe(staticMatmulVariant(gpu));
    // Force a different winner: only the one variant that is not in use can verify.
    const other = first === 'tiled' ? 'blocked' : 'tiled';
    const broken = Object.fromEntries((['tiled', 'blocked', 'vec4', 'vec4_sampled'] as const).filter((v) => v !== other).map((v) => [v, zeroes]));
    const r = await tuneMatmul(gpu, [s], { store: null, force: true, candidates: broken });
    expect(r.classes[0].chosen).toBe(other);
    expect(r.classes[0].inUseOnDevice).toBe(first);
    expect(defaultMatmulVariant(gpu, s.layout, s.M, s.N, s.K)).toBe(first);
  });

  it('products with the tuned choice equal the float64 reference (bias, accumulate, every layout)', async () => {
    const gpu = await testGpu();
    const shapes = [ALIGNED, ODD, NN, { layout: 'nt', M: 68, N: 576, K: 192 } as MatmulShape];
    const r = await tuneMatmul(gpu, shapes, { store: null });
    for (const [i, s] of shapes.entries()) {
      const { layout, M, N, K } = s;
      expect(defaultMatmulVariant(gpu, layout, M, N, K)).toBe(r.classes[i].chosen);
      const a = randn(M * K, 10 + i), b = randn(K * N, 20 + i), bias = randn(N, 30 + i), c0 = randn(M * N, 40 + i);
      const want = Float64Array.from(c0);
      ref.matmul(want, a, b, bias, M, N, K, layout, true);
      const c = gpuTensor(gpu, c0);
      await run(gpu, (rec) => matmul(rec, c, gpuTensor(gpu, a), gpuTensor(gpu, b), gpuTensor(gpu, bias), M, N, K, layout, true)); // no variant: the tuned one
      expectClose(await read(gpu, c), want, matmulTol(K), `C (${layout} ${M}×${N}×${K}, tuned ${r.classes[i].chosen})`);
    }
  });

  it('the trainer tunes its model\'s products once before its first step; a second trainer times nothing', async () => {
    const gpu = await testGpu();
    const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
    const shapes = makeShapesDataset({ n: 16, size: 16, channels: 1, seed: 1 });
    const make = () => new Trainer(gpu, { mode: 'mae', model: cfg, batch: 4, maskRatio: 0.75, lr: 1e-3, totalSteps: 1, seed: 3 }, new DataLoader(shapes, { split: 'train', batchSize: 4, seed: 3 }));
    const first = make();
    const uses = collectMatmulShapes(gpu, (rec) => first.model.recordStep(rec, { lr: 0, step: 1 }));
    // Encoder (1 + 4 visible tokens per image) and decoder (1 + 16) Linears, forward and backward.
    expect(uses.some((u) => u.layout === 'nt' && u.M === 4 * 17 && u.N === 3 * 32 && u.K === 32 && u.count === 1)).toBe(true); // the decoder's qkv
    expect(uses.some((u) => u.layout === 'tn' && u.M === 3 * 32 && u.N === 32 && u.K === 4 * 5 && u.count === 2)).toBe(true); // qkv's dW in 2 encoder blocks
    const before = matmulTuneCounters();
    expect((await first.train()).status).toBe('done');
    const mid = matmulTuneCounters();
    expect(mid.measuredClasses).toBeGreaterThan(before.measuredClasses);
    for (const u of uses) expect(applicableVariants(gpu, u)).toContain(defaultMatmulVariant(gpu, u.layout, u.M, u.N, u.K));
    first.destroy();
    const second = make();
    expect((await second.train()).status).toBe('done');
    expect(matmulTuneCounters()).toEqual(mid);
    second.destroy();
  });
});

describe('pickVariant: a near tie keeps the static guess', () => {
  it('the fastest wins by more than PRIOR_MARGIN; within it, or when the guess failed, as stated', () => {
    expect(pickVariant({ tiled: 3, blocked: 2.03, vec4: 2.1 }, 'vec4')).toBe('vec4'); // 3 % apart: the guess stays
    expect(pickVariant({ tiled: 3, blocked: 1.5, vec4: 2.1 }, 'vec4')).toBe('blocked'); // 40 % faster: it wins
    expect(pickVariant({ blocked: 2.0, vec4: 2.0 * (1 + PRIOR_MARGIN) }, 'vec4')).toBe('vec4'); // the margin's edge
    expect(pickVariant({ blocked: 2.0, vec4: 2.0 * (1 + PRIOR_MARGIN) * 1.01 }, 'vec4')).toBe('blocked');
    expect(pickVariant({ tiled: 3, blocked: 2 }, 'vec4')).toBe('blocked'); // the guess did not verify
    expect(pickVariant({ vec4: 1.1, vec4_f16: 1.0 }, 'vec4_f16')).toBe('vec4_f16');
    expect(() => pickVariant({}, 'vec4')).toThrow(/no verified variant/);
  });
});

describe('mixed-precision classes', () => {
  it("an aligned product under autocast gets a '.h' class whose f16 variants are verified and timed; an unaligned one stays in its f32 class", async (ctx) => {
    const gpu = await testGpu();
    if (!gpu.hasF16) ctx.skip(`${gpu.adapter.description} has no shader-f16`);
    const aligned: MatmulShape = { layout: 'nt', M: 68, N: 96, K: 64, f16: true };
    const unaligned: MatmulShape = { layout: 'nt', M: 68, N: 45, K: 37, f16: true };
    expect(shapeClass(aligned)).toBe(`${shapeClass({ ...aligned, f16: false })}.h`);
    expect(shapeClass(unaligned)).toBe(shapeClass({ ...unaligned, f16: false }));
    const r = await tuneMatmul(gpu, [aligned], { store: null, force: true, pruneFactor: Infinity });
    const c = r.classes[0];
    expect(c.key.endsWith('.h')).toBe(true);
    expect(c.timings.map((t) => t.variant).sort()).toEqual(['blocked', 'tiled', 'tiled_f16', 'vec4', 'vec4_f16', 'vec4_sampled']);
    expect(c.timings.every((t) => t.verified), JSON.stringify(c.timings.map((t) => t.failure))).toBe(true);
    expect(defaultMatmulVariant(gpu, aligned.layout, aligned.M, aligned.N, aligned.K, true)).toBe(c.chosen);
    // Without shader-f16 the same class offers only the f32 variants.
    expect(applicableVariants({ ...gpu, hasF16: false } as typeof gpu, aligned)).toEqual(['tiled', 'blocked', 'vec4', 'vec4_sampled']);
    expect(applicableVariants({ ...gpu, hasF16: false, hasFloat32Filterable: false } as typeof gpu, aligned)).toEqual(['tiled', 'blocked', 'vec4']);
  });
});
