/**
 * The tuner of the non-matmul kernel families (src/gpu/autotune-families.ts, choices in
 * src/gpu/variant-choices.ts): a model's step lists its layer-norm (attention, distillation) classes in the same dry
 * recording as its matmuls, each class gets a verified variant the device can run, the choice is
 * remembered, stored next to the matmul choices and read back, a variant that computes a wrong
 * result is never chosen, a device keeps what it already dispatches, and DMAE_TUNE=off keeps the
 * fallback. No timing is asserted.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { MaeModel } from '../../src/engine/mae';
import { adapterFingerprint, resetMatmulTuning, type StoredAdapter } from '../../src/gpu/autotune';
import { FAMILIES, tuneFamilies, tuneKernelsForRecording, type Family, type FamilyClassReport } from '../../src/gpu/autotune-families';
import { fileTuneStore } from '../../src/gpu/autotune-node';
import { createTensor, readback } from '../../src/gpu/buffers';
import { Recorder } from '../../src/gpu/kernels';
import { fill } from '../../src/gpu/ops/elementwise';
import { layernormVariants } from '../../src/gpu/ops/layernorm';
import { attentionVariants } from '../../src/gpu/ops/attention';
import { distillVariants } from '../../src/gpu/ops/loss';
import { DmaeModel } from '../../src/engine/dmae';
import { chosenVariant, rememberVariant, resetVariantChoices } from '../../src/gpu/variant-choices';
import type { Gpu } from '../../src/gpu/device';
import { testGpu } from '../helpers';
import { tinyConfig, tinyTeacherConfig } from '../model-fixtures';

/** A family whose fast variant writes nothing: it must fail its check and lose to the slow one. */
const fake: Family<'wrong' | 'right'> = {
  name: 'test-fake',
  shaders: [],
  variants: () => ['wrong', 'right'],
  fallback: 'right',
  trial(gpu, { n }) {
    const out = createTensor(gpu.device, n, 'fake-out');
    return {
      record(rec, v) {
        if (v === 'wrong') fill(rec, out, 0, n); // one pass, wrong
        else for (let i = 0; i < 8; i++) fill(rec, out, 7, n); // slower: eight passes
      },
      async check(v) {
        const rec = new Recorder(gpu);
        fill(rec, out, 0, n);
        this.record(rec, v);
        await rec.submit();
        const got = await readback(gpu.device, out);
        return got.every((x) => x === 7) ? null : `out[0] = ${got[0]}, want 7`;
      },
      destroy: () => out.buffer.destroy(),
    };
  },
};

describe('kernel family tuner', () => {
  const saved = { cache: process.env.DMAE_TUNE_CACHE, tune: process.env.DMAE_TUNE };
  let cache: string;
  beforeEach(() => {
    resetMatmulTuning();
    resetVariantChoices();
    cache = join(mkdtempSync(join(tmpdir(), 'dmae-tune-')), 'matmul-tune.json');
    process.env.DMAE_TUNE_CACHE = cache;
    delete process.env.DMAE_TUNE;
  });
  afterEach(() => {
    for (const [k, v] of [['DMAE_TUNE_CACHE', saved.cache], ['DMAE_TUNE', saved.tune]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    delete FAMILIES[fake.name];
  });

  /** Each class chose a variant the device runs, all verified; measured when there was a choice. */
  const expectTunedClasses = (classes: readonly FamilyClassReport[], can: readonly string[]): void => {
    for (const c of classes) {
      expect(can, `${c.cls}: a variant this device runs`).toContain(c.chosen);
      expect(c.failures, `${c.cls}: every variant verified`).toEqual({});
      if (can.length > 1) {
        expect(c.source).toBe('measured');
        expect(Object.keys(c.ms).sort()).toEqual([...can].sort());
      } else expect(c.source, `${c.cls}: one variant on this device, nothing to measure`).toBe('fallback');
    }
  };

  /** The family's choices are in the file under its shader hash, and a new process reads them back; resolves the adapter's entry. */
  const expectStoredRoundTrip = async (gpu: Gpu, record: (rec: Recorder) => void, family: string, tuned: readonly FamilyClassReport[]): Promise<StoredAdapter> => {
    const entry: StoredAdapter = JSON.parse(readFileSync(cache, 'utf8')).adapters[adapterFingerprint(gpu)];
    expect(Object.keys(entry.families ?? {}).some((k) => k.startsWith(`${family}#`)), 'stored under the family and its shader hash').toBe(true);
    resetVariantChoices(); // a new process: only the file knows
    const fresh = await tuneKernelsForRecording(gpu, record, { store: fileTuneStore });
    for (const c of fresh!.families.classes.filter((x) => x.family === family)) {
      expect(c.source).toBe('stored');
      expect(c.chosen).toBe(tuned.find((x) => x.cls === c.cls)!.chosen);
    }
    return entry;
  };

  it("tunes a step's layer norms with its matmuls, remembers, stores and reads back the choices", async () => {
    const gpu = await testGpu();
    const model = new MaeModel(gpu, maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 }), 2, 4);
    const record = (rec: Recorder) => model.recordStep(rec, { lr: 0, step: 1 });
    const first = await tuneKernelsForRecording(gpu, record, { store: fileTuneStore });
    expect(first, 'a report').not.toBeNull();
    const ln = first!.families.classes.filter((c) => c.family === 'layernorm');
    expect(ln.length, 'layer-norm classes of the step').toBeGreaterThan(0);
    const can = layernormVariants(gpu);
    expectTunedClasses(ln, can);
    expect(first!.matmul.classes.length, 'the matmuls were tuned in the same call').toBeGreaterThan(0);

    const again = await tuneKernelsForRecording(gpu, record, { store: fileTuneStore });
    expect(again!.families.classes.every((c) => c.source === 'memory' || c.source === 'fallback')).toBe(true);

    if (can.length > 1) {
      const entry = await expectStoredRoundTrip(gpu, record, 'layernorm', ln);
      expect(Object.keys(entry.classes).length, 'the matmul choices are still there').toBeGreaterThan(0);
    }
    model.destroy();
  });

  it("tunes a step's attention classes (encoder and decoder) to verified variants, stored and read back", async () => {
    const gpu = await testGpu();
    const model = new MaeModel(gpu, maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 }), 2, 4);
    const record = (rec: Recorder) => model.recordStep(rec, { lr: 0, step: 1 });
    const first = await tuneKernelsForRecording(gpu, record, { store: fileTuneStore });
    const att = first!.families.classes.filter((c) => c.family === 'attention');
    // Encoder (1 + 4 visible tokens) and decoder (1 + 16 tokens): two classes of ⌊log₂ T⌋.
    expect(att.map((c) => c.shape.T).sort((a, b) => a - b), 'attention classes of the step').toEqual([5, 17]);
    const can = attentionVariants(gpu);
    expectTunedClasses(att, can);
    if (can.length > 1) {
      await expectStoredRoundTrip(gpu, record, 'attention', att);
    }
    model.destroy();
  });

  it('the attention trial verifies every variant this device runs, checking part of a large batch', async () => {
    const gpu = await testGpu();
    // ViT-B at 224 px: the float64 check covers the first image only (a budget of work), timing all.
    const trial = FAMILIES.attention.trial(gpu, { B: 2, T: 197, H: 12, hd: 64 });
    try {
      for (const v of attentionVariants(gpu)) expect(await trial.check(v), `${v} verifies`).toBeNull();
    } finally {
      trial.destroy();
    }
  });

  it("tunes a DMAE step's distillation loss to a verified variant, stored and read back; the trial checks part of a large batch; C % 4 ≠ 0 has 'workgroup' only", async () => {
    const gpu = await testGpu();
    const student = tinyConfig(3, true), teacher = tinyTeacherConfig(3);
    const model = new DmaeModel(gpu, student, teacher, { pairs: [{ studentBlock: 0, teacherBlock: 1 }], alpha: 1, kind: 'l1' }, 2, 2);
    const record = (rec: Recorder) => model.recordStep(rec, { lr: 0, step: 1 });
    const first = await tuneKernelsForRecording(gpu, record, { store: fileTuneStore });
    const distill = first!.families.classes.filter((c) => c.family === 'distill');
    expect(distill.map((c) => c.shape), 'one class: R = 2·(1 + 2) rows of the teacher width').toEqual([{ R: 6, C: teacher.embedDim }]);
    const can = distillVariants(gpu, teacher.embedDim);
    expectTunedClasses(distill, can);
    if (can.length > 1) await expectStoredRoundTrip(gpu, record, 'distill', distill);
    model.destroy();

    // A ViT-B teacher's rows at batch 64 (R = 64·50): the float64 check covers the first 2048.
    const trial = FAMILIES.distill.trial(gpu, { R: 64 * 50, C: 768 });
    try {
      for (const v of distillVariants(gpu, 768)) expect(await trial.check(v), `${v} verifies`).toBeNull();
    } finally {
      trial.destroy();
    }
    const odd = await tuneFamilies(gpu, new Map([['distill', new Map([['r3.c3', { R: 10, C: 13 }]])]]), { store: null });
    expect(odd.classes[0]).toMatchObject({ chosen: 'workgroup', source: 'fallback', failures: {} });
  });

  it('never chooses a variant that fails its check, however fast', async () => {
    const gpu = await testGpu();
    FAMILIES[fake.name] = fake as Family;
    const r = await tuneFamilies(gpu, new Map([[fake.name, new Map([['n4096', { n: 4096 }]])]]), { store: null });
    const c = r.classes[0];
    expect(c.failures.wrong).toMatch(/want 7/);
    expect(c.chosen).toBe('right');
    expect(Object.keys(c.ms)).toEqual(['right']);
  });

  it('a device keeps the variant it already dispatches; DMAE_TUNE=off keeps the fallback', async () => {
    const gpu = await testGpu();
    FAMILIES[fake.name] = fake as Family;
    // First use before any tuning: the fallback, frozen for this device.
    expect(chosenVariant(gpu, fake.name, 'n64', { n: 64 }, 'right', ['wrong', 'right'])).toBe('right');
    rememberVariant(adapterFingerprint(gpu), fake.name, 'n64', 'wrong'); // as a later tuning would
    const r = await tuneFamilies(gpu, new Map([[fake.name, new Map([['n64', { n: 64 }]])]]), { store: null });
    expect(r.classes[0]).toMatchObject({ chosen: 'wrong', source: 'memory', inUseOnDevice: 'right' });
    expect(chosenVariant(gpu, fake.name, 'n64', { n: 64 }, 'right', ['wrong', 'right']), 'still what it ran').toBe('right');
    process.env.DMAE_TUNE = 'off';
    expect(chosenVariant(gpu, fake.name, 'n128', { n: 128 }, 'right', ['wrong', 'right'])).toBe('right');
    expect(await tuneKernelsForRecording(gpu, () => {})).toBeNull();
  });
});
