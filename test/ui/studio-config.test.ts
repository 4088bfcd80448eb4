import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, PRESETS, applyPreset, decodeConfig, encodeConfig, initialConfig, peakLr, toTrainSpec, validateConfig, visibleOf, STORAGE_KEY, type StudioConfig } from '../../src/ui/studio/config';
import { microBatchesThatFit, planExceedsLimits } from '../../src/engine/run';
import { resolveTrainConfig, trainMemoryPlan } from '../../src/engine/trainer';

describe('studio configuration', () => {
  it('every preset is valid and resolves in the engine', () => {
    for (const [id, p] of Object.entries(PRESETS)) {
      const teacher = p.config.mode === 'dmae' ? toTrainSpec(PRESETS['tiny-teacher'].config).model : null;
      expect(validateConfig(p.config, teacher), id).toEqual({});
      expect(() => resolveTrainConfig(toTrainSpec(p.config, teacher))).not.toThrow();
    }
  });

  it('round-trips through the URL, compactly', () => {
    const c: StudioConfig = { ...DEFAULT_CONFIG, maskRatio: 0.9, mode: 'dmae', teacherBlock: 3, normPixLoss: false, dataset: 'stored:abc-1' };
    const text = encodeConfig(c);
    expect(text).toBe('p=tiny&m=dmae&ds=stored%3Aabc-1&np=0&mr=0.9&kt=3');
    expect(decodeConfig(text)).toEqual(c);
    expect(decodeConfig('#' + text)).toEqual(c);
    expect(encodeConfig(DEFAULT_CONFIG)).toBe('p=tiny');
  });

  it('ignores malformed values and unknown presets', () => {
    expect(decodeConfig('p=nope&mr=0.5')).toBeNull();
    expect(decodeConfig('p=tiny&mr=abc&ds=http://x&m=zzz')).toEqual(DEFAULT_CONFIG);
  });

  it('prefers the URL, then the last configuration, then the default', () => {
    const store = { getItem: (k: string) => (k === STORAGE_KEY ? 'p=tiny&s=99' : null) };
    expect(initialConfig({ search: '', hash: '#p=tiny&s=7' }, store).totalSteps).toBe(7);
    expect(initialConfig({ search: '?p=tiny&s=8', hash: '' }, store).totalSteps).toBe(8);
    expect(initialConfig({ search: '', hash: '' }, store).totalSteps).toBe(99);
    expect(initialConfig({ search: '', hash: '' }, null)).toEqual(DEFAULT_CONFIG);
  });

  it('sorts the engine\'s messages to the field they name', () => {
    const p = validateConfig({ ...DEFAULT_CONFIG, patchSize: 5, numHeads: 3, decoderNumHeads: 5, totalSteps: 0, batch: 0 });
    expect(p.patchSize?.[0]).toMatch(/image size 28 is not a multiple of patch size 5/);
    expect(p.numHeads?.[0]).toMatch(/width 32 is not divisible by 3 heads/);
    expect(p.decoderNumHeads?.[0]).toMatch(/decoder width 32 is not divisible by 5 heads/);
    expect(p.totalSteps?.[0]).toMatch(/total steps 0/);
    expect(p.batch?.[0]).toMatch(/batch 0/);
    const d = validateConfig({ ...DEFAULT_CONFIG, mode: 'dmae', teacherBlock: 9 }, toTrainSpec(PRESETS['tiny-teacher'].config).model);
    expect(d.teacherBlock?.[0]).toMatch(/teacher block 9 is not in 0..3/);
    expect(validateConfig({ ...DEFAULT_CONFIG, mode: 'dmae' }).teacher?.[0]).toMatch(/needs a teacher/);
  });

  it('counts visible patches as the reference truncates', () => {
    expect(visibleOf({ ...DEFAULT_CONFIG, maskRatio: 0.75 })).toBe(12); // int(49 · 0.25)
    expect(visibleOf({ ...DEFAULT_CONFIG, maskRatio: 0.98 })).toBe(1);
  });

  it('trains micro-batches: the spec, the effective batch\'s lr, the URL and the field\'s check', () => {
    const c: StudioConfig = { ...applyPreset('vit-tiny', DEFAULT_CONFIG), batch: 16, accumSteps: 4 };
    const rc = resolveTrainConfig(toTrainSpec(c));
    expect([rc.batch, rc.accumSteps]).toEqual([16, 4]);
    expect(peakLr(c)).toBeCloseTo((1.5e-4 * 64) / 256, 12); // blr · effective batch / 256
    expect(rc.lr).toBeCloseTo(peakLr(c), 12); // as the engine scales it
    expect(toTrainSpec({ ...c, accumSteps: 1 })).not.toHaveProperty('accumSteps');
    expect(decodeConfig(encodeConfig(c))).toEqual(c);
    expect(encodeConfig(c)).toContain('acc=4');
    expect(validateConfig({ ...c, accumSteps: 0 }).accumSteps?.[0]).toMatch(/micro-batches 0 must be a positive integer/);
    expect(validateConfig({ ...c, accumSteps: 1.5 }).accumSteps?.[0]).toMatch(/micro-batches 1.5/);
  });

  it('splits a batch over the adapter\'s one-buffer limit into micro-batches that fit, the same images a step', () => {
    const cpu = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 }; // lavapipe's, SwiftShader's
    const planOf = (c: StudioConfig) => trainMemoryPlan(resolveTrainConfig(toTrainSpec(c)));
    const fits = (c: StudioConfig) => (batch: number, accumSteps: number) => !planExceedsLimits(planOf({ ...c, batch, accumSteps }), cpu);
    const tiny = applyPreset('vit-tiny', DEFAULT_CONFIG); // batch 64 on MNIST: its activations are ~180 MiB
    expect(planExceedsLimits(planOf(tiny), cpu)).toMatch(/needs one .* buffer \(activations\); this GPU allows at most 128/);
    const fix = microBatchesThatFit(tiny.batch, tiny.accumSteps, fits(tiny))!;
    expect(fix).toEqual({ batch: 32, accumSteps: 2 });
    expect(planExceedsLimits(planOf({ ...tiny, ...fix }), cpu)).toBeNull();
    // Already split: the largest divisor of the images a step that fits, never a larger batch.
    expect(microBatchesThatFit(48, 2, fits(tiny))).toEqual({ batch: 32, accumSteps: 3 });
    expect(microBatchesThatFit(8, 1, fits(tiny))).toEqual({ batch: 8, accumSteps: 1 });
    expect(microBatchesThatFit(64, 1, () => false)).toBeNull(); // not even a batch of 1
  });
});
