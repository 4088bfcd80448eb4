/**
 * The lr schedule against values computed by hand from MAE's util/lr_sched.adjust_learning_rate
 * (epoch → step): warmup lr·t/w, then min + (lr − min)·½·(1 + cos(π·(t − w)/(T − w))).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_BASE_LR, lrAt, scaledLr, validateSchedule } from '../../src/engine/schedule';

describe('learning-rate schedule (MAE lr_sched, per optimiser step)', () => {
  it('scales base lr by effective batch / 256, or takes an absolute lr', () => {
    expect(DEFAULT_BASE_LR).toBe(1.5e-4);
    expect(scaledLr({ effectiveBatch: 256 })).toBe(1.5e-4);
    expect(scaledLr({ effectiveBatch: 4096 })).toBeCloseTo(2.4e-3, 15); // the reference's batch 4096
    expect(scaledLr({ baseLr: 1e-3, effectiveBatch: 64 })).toBe(2.5e-4);
    expect(scaledLr({ lr: 0.01, baseLr: 1e-3, effectiveBatch: 64 })).toBe(0.01);
  });

  it('warmup 4 of 10 steps to lr 1, min 0: hand-computed values', () => {
    const s = { lr: 1, minLr: 0, warmupSteps: 4, totalSteps: 10 };
    // warmup: 0, 1/4, 2/4, 3/4 (the first step has lr 0, as in MAE)
    expect([0, 1, 2, 3].map((t) => lrAt(t, s))).toEqual([0, 0.25, 0.5, 0.75]);
    // cosine over 6 steps: ½(1 + cos(πk/6)), k = 0..5
    const want = [1, (1 + Math.sqrt(3) / 2) / 2, 0.75, 0.5, 0.25, (1 - Math.sqrt(3) / 2) / 2];
    [4, 5, 6, 7, 8, 9].forEach((t, k) => expect(lrAt(t, s)).toBeCloseTo(want[k], 15));
    expect(lrAt(10, s)).toBeCloseTo(0, 15); // the end of the cosine
  });

  it('min lr floors the cosine; no warmup starts at the peak', () => {
    const s = { lr: 2e-3, minLr: 1e-4, warmupSteps: 0, totalSteps: 4 };
    expect(lrAt(0, s)).toBe(2e-3);
    expect(lrAt(2, s)).toBeCloseTo(1e-4 + 1.9e-3 * 0.5, 15);
    expect(lrAt(4, s)).toBeCloseTo(1e-4, 15);
  });

  it('an all-warmup run stays at the peak after warmup instead of dividing by zero', () => {
    const s = { lr: 1, minLr: 0, warmupSteps: 5, totalSteps: 5 };
    expect(lrAt(4, s)).toBe(0.8);
    expect(lrAt(5, s)).toBe(1);
  });

  it('rejects impossible schedules with a message', () => {
    expect(() => validateSchedule({ lr: -1, minLr: 0, warmupSteps: 0, totalSteps: 0 })).toThrow(/lr -1.*total steps 0/);
  });
});
