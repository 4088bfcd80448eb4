/**
 * Precision through the training worker (createTrainSession in Node, lavapipe: it has shader-f16):
 * a mixed run reports `precision: 'mixed'` in its resolved configuration and the loss scale with
 * every step's record; its checkpoint carries the loss scaler, and a run resumed from a checkpoint
 * continues from the scaler state in it. On a device without shader-f16 a mixed run is refused
 * before anything is allocated, with the engine's message (precisionProblem).
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/device';
import { acquireNodeGpu } from '../../src/gpu/node-device';
import { TRAIN_PROTOCOL_VERSION as v, type Checkpoint, type RunOptions, type TrainSpec } from '../../src/protocol/train';
import { sessionHarness, shapes, spec } from './session-harness';

const start = (runId: string, config: TrainSpec, options: RunOptions = {}, resume?: Checkpoint) =>
  ({ v, type: 'start' as const, runId, config, data: shapes, options: { reconEvery: 0, ...options }, ...(resume ? { resume } : {}) });

describe('train session: precision', () => {
  const h = sessionHarness();
  afterAll(() => h.session.dispose());

  it('mixed: the resolved configuration says so, every record has the loss scale, the checkpoint keeps the scaler, a resume continues from it', async () => {
    await h.session.handle(start('mixed-1', spec({ totalSteps: 6, precision: 'mixed' })));
    const started = await h.waitFor('started', (m) => m.runId === 'mixed-1');
    expect(started.config.precision).toBe('mixed');
    expect(started.adapter.features).toContain('shader-f16');
    const stopped = await h.waitFor('stopped', (m) => m.runId === 'mixed-1');
    const recs = h.records('mixed-1');
    expect(recs.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const r of recs) {
      expect(r.lossScale).toBeGreaterThan(0);
      expect(typeof r.skipped).toBe('boolean');
      expect(r.skippedSteps).toBe(recs.filter((x) => x.step <= r.step && x.skipped).length);
    }
    const ls = stopped.checkpoint.state.lossScale!;
    expect(ls).toMatchObject({ scale: recs[5].lossScale, skippedSteps: recs[5].skippedSteps });
    expect(stopped.checkpoint.config.precision).toBe('mixed');

    // The checkpoint at step 6 of 12, its scaler state changed: the resumed run starts from that state.
    const ck: Checkpoint = {
      ...stopped.checkpoint, config: { ...stopped.checkpoint.config, totalSteps: 12 },
      state: { ...stopped.checkpoint.state, lossScale: { scale: 1024, goodSteps: 0, skippedSteps: 5 } },
    };
    await h.session.handle(start('mixed-2', spec({ totalSteps: 12, precision: 'mixed' }), {}, ck));
    expect((await h.waitFor('started', (m) => m.runId === 'mixed-2')).step).toBe(6);
    const end = await h.waitFor('stopped', (m) => m.runId === 'mixed-2');
    const rest = h.records('mixed-2');
    expect(rest.map((r) => r.step)).toEqual([7, 8, 9, 10, 11, 12]);
    // Growth only after 2000 good steps in a row: the scale stays 1024, or halves on a skipped step.
    const skips = rest.filter((r) => r.skipped).length;
    expect(rest[0].lossScale).toBe(rest[0].skipped ? 512 : 1024);
    expect(rest[5].lossScale).toBe(1024 / 2 ** skips);
    expect(rest[5].skippedSteps).toBe(5 + skips);
    expect(end.checkpoint.state.lossScale).toMatchObject({ scale: 1024 / 2 ** skips, skippedSteps: 5 + skips });
  });

  it('f32: no loss scale in the records or the checkpoint', async () => {
    await h.session.whenIdle();
    await h.session.handle(start('f32-1', spec({ totalSteps: 2 })));
    expect((await h.waitFor('started', (m) => m.runId === 'f32-1')).config.precision).toBe('f32');
    const stopped = await h.waitFor('stopped', (m) => m.runId === 'f32-1');
    for (const r of h.records('f32-1')) expect(r).not.toHaveProperty('lossScale');
    expect(stopped.checkpoint.state).not.toHaveProperty('lossScale');
  });
});

describe('train session: mixed precision without shader-f16', () => {
  // The same device, seen as one without shader-f16.
  const h = sessionHarness({ acquireGpu: async (needs) => Object.create(await acquireNodeGpu(needs), { hasF16: { value: false } }) as Gpu });
  afterAll(() => h.session.dispose());

  it('is refused as an invalid configuration with the engine\'s message, before anything starts; f32 runs', async () => {
    await h.session.handle(start('no-f16', spec({ totalSteps: 2, precision: 'mixed' })));
    const e = await h.waitFor('error', (m) => m.runId === 'no-f16');
    expect(e.kind).toBe('invalid-config');
    expect(e.message).toMatch(/^Mixed precision needs the adapter's shader-f16 feature, which .+ lacks; train with precision "f32"\.$/);
    expect(h.of('started', 'no-f16')).toHaveLength(0);
    await h.session.handle(start('no-f16-f32', spec({ totalSteps: 2 })));
    expect((await h.waitFor('stopped', (m) => m.runId === 'no-f16-f32')).step).toBe(2);
  });
});
