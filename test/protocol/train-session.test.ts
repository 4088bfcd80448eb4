/**
 * The training worker's logic (createTrainSession) driven by protocol messages in Node, on real
 * WebGPU (Dawn), with every message passed through structuredClone with its transfer list as
 * postMessage would: a run reports started → metrics (every step once, in order, batched) →
 * reconstructions → stopped with its checkpoint; pause holds the step, requests are served while
 * paused, resume continues; a checkpoint resumes bit for bit; DMAE takes a teacher run kept in the
 * worker; and each failure is one clear `error` of the right kind with the run kept: invalid
 * configuration, busy, out of memory (budget and adapter limits), data, divergence, device loss.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { gridColumnLevels } from '../../src/engine/visualize';
import { acquireNodeGpu } from '../../src/gpu/node-device';
import { TRAIN_PROTOCOL_VERSION as v, payloadTensors, type RunOptions, type StepRecord, type TeacherSource, type TrainSpec } from '../../src/protocol/train';
import type { TrainSessionEnv } from '../../src/worker/train-session';
import { microBatchesThatFit, planExceedsLimits } from '../../src/engine/run';
import { resolveTrainConfig, trainMemoryPlan } from '../../src/engine/trainer';
import { model, sessionHarness, shapes, spec } from './session-harness';

const harness = (env: Partial<TrainSessionEnv> = {}) => sessionHarness(env);
const start = (runId: string, config: TrainSpec, options: RunOptions = {}, teacher?: TeacherSource) => ({ v, type: 'start' as const, runId, config, data: shapes, options, ...(teacher ? { teacher } : {}) });

const h = harness();
afterAll(() => h.session.dispose());

describe('train session: a run', () => {
  it('MAE: started, every step once in order (batched), reconstructions at 0, every N and the end, stopped with a checkpoint; the loss falls', async () => {
    await h.session.handle({ v, type: 'init' });
    expect((await h.waitFor('ready')).adapter.description).not.toBe('');
    await h.session.handle(start('mae-1', spec({ totalSteps: 30 }), { reconEvery: 10, reconCount: 3 }));
    const started = await h.waitFor('started', (m) => m.runId === 'mae-1');
    expect(started.config.visible).toBe(4); // 16 patches, 75 % masked
    expect(started.config.patches).toBe(16);
    expect(started.config.lr).toBe(2e-3);
    expect(started.memory.totalBytes).toBeGreaterThan(0);
    expect(started.data).toMatchObject({ C: 1, H: 16, W: 16 });
    const stopped = await h.waitFor('stopped', (m) => m.runId === 'mae-1');
    expect(stopped.reason).toBe('done');
    expect(stopped.step).toBe(30);

    const recs = h.records('mae-1');
    expect(recs.map((r) => r.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const batches = h.of('metrics', 'mae-1');
    expect(batches.length, 'metrics are batched, not one message per step').toBeLessThan(30);
    for (const r of recs) expect(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm) && r.elapsedMs >= 0 && r.epoch > 0).toBe(true);
    const mean = (xs: StepRecord[]) => xs.reduce((s, r) => s + r.loss, 0) / xs.length;
    expect(mean(recs.slice(-5)), 'the loss falls').toBeLessThan(mean(recs.slice(0, 5)));

    const recon = h.of('reconstruction', 'mae-1');
    expect(recon.map((r) => r.step)).toEqual([0, 10, 20, 30]);
    const r0 = recon[0];
    expect(r0.rows).toBe(3);
    expect(r0.columns).toHaveLength(4);
    expect(r0.image.data.byteLength).toBe(r0.image.width * r0.image.height * 4);
    expect(r0.image.width).toBe(4 * r0.cell + 5 * r0.gap);
    const px = new Uint8Array(r0.image.data);
    expect(new Set(px.filter((_, i) => i % 4 === 0)).size, 'the picture is not blank').toBeGreaterThan(10);
    // The worker's level counts are those of the picture it sent (the page shows them as they are).
    expect(r0.levels).toEqual(gridColumnLevels({ data: px, width: r0.image.width }, 4, { rows: r0.rows, columns: 4, cell: r0.cell, gap: r0.gap }));
    expect(recon[3].val.pix).toBeLessThan(recon[0].val.pix);

    // Every message of the run came after `started` and before `stopped`; the metrics before the end.
    const order = h.got.filter((m) => (m as { runId?: string }).runId === 'mae-1').map((m) => m.type);
    expect(order[0]).toBe('started');
    expect(order[order.length - 1]).toBe('stopped');
    const ck = stopped.checkpoint;
    expect(ck.step).toBe(30);
    expect(ck.state.step).toBe(30);
    const t = payloadTensors(ck.params);
    expect(t.get('blocks.1.mlp.fc2.weight')!.length).toBe(32 * 128);
    expect(ck.adamM.byteLength).toBe(ck.params.buffer.byteLength);

    // `init` again (a page that reconnects): the device it already has is reported again.
    const readies = h.of('ready').length;
    await h.session.handle({ v, type: 'init' });
    expect(h.of('ready')).toHaveLength(readies + 1);
  });

  it('pause holds the step; reconstruction and checkpoint requests are served while paused; resume continues; stop ends it', async () => {
    await h.session.handle(start('mae-2', spec({ totalSteps: 400 }), { reconEvery: 0, snapshotEvery: 0, metricsIntervalMs: 0 }));
    await h.waitFor('metrics', (m) => m.runId === 'mae-2' && m.records.some((r) => r.step >= 3));
    const seen = () => Math.max(...h.records('mae-2').map((r) => r.step));
    const asked = seen();
    await h.session.handle({ v, type: 'pause', runId: 'mae-2' });
    const paused = await h.waitFor('paused', (m) => m.runId === 'mae-2');
    // Within a step or two (one step may already be on the GPU while the last one is read).
    expect(paused.step - asked, 'paused promptly').toBeLessThanOrEqual(2);
    expect(seen()).toBe(paused.step);
    await new Promise((r) => setTimeout(r, 400));
    expect(seen(), 'no step while paused').toBe(paused.step);

    const n = h.got.length;
    await h.session.handle({ v, type: 'request-reconstruction', runId: 'mae-2' });
    expect((await h.waitFor('reconstruction', (m) => m.runId === 'mae-2', n)).step).toBe(paused.step);
    await h.session.handle({ v, type: 'request-checkpoint', runId: 'mae-2' });
    const ck = (await h.waitFor('checkpoint', (m) => m.runId === 'mae-2', n)).checkpoint;
    expect(ck.step).toBe(paused.step);

    await h.session.handle({ v, type: 'resume', runId: 'mae-2' });
    expect((await h.waitFor('resumed', (m) => m.runId === 'mae-2')).step).toBe(paused.step);
    await h.waitFor('metrics', (m) => m.runId === 'mae-2' && m.records.some((r) => r.step >= paused.step + 2));
    await h.session.handle({ v, type: 'stop', runId: 'mae-2' });
    const stopped = await h.waitFor('stopped', (m) => m.runId === 'mae-2');
    expect(stopped.reason).toBe('stopped');
    expect(stopped.step).toBeLessThan(400);
    expect(h.records('mae-2').map((r) => r.step)).toEqual(Array.from({ length: stopped.step }, (_, i) => i + 1));
    // A late request for an ended run is ignored.
    const m = h.got.length;
    await h.session.handle({ v, type: 'pause', runId: 'mae-2' });
    expect(h.got.length).toBe(m);
  });

  it('a checkpoint taken while paused resumes bit for bit', async () => {
    const c = spec({ totalSteps: 12, seed: 9 });
    await h.session.whenIdle();
    await h.session.handle(start('full', c, { reconEvery: 0 }));
    await h.waitFor('stopped', (m) => m.runId === 'full');
    const full = h.records('full');

    await h.session.handle(start('part', c, { reconEvery: 0, metricsIntervalMs: 0 }));
    await h.waitFor('metrics', (m) => m.runId === 'part' && m.records.length > 0);
    await h.session.handle({ v, type: 'pause', runId: 'part' });
    const paused = await h.waitFor('paused', (m) => m.runId === 'part');
    await h.session.handle({ v, type: 'request-checkpoint', runId: 'part' });
    const ck = (await h.waitFor('checkpoint', (m) => m.runId === 'part')).checkpoint;
    await h.session.handle({ v, type: 'stop', runId: 'part' });
    await h.waitFor('stopped', (m) => m.runId === 'part');
    expect(paused.step).toBeLessThan(12);

    await h.session.handle({ ...start('resumed', c, { reconEvery: 0 }), resume: ck });
    expect((await h.waitFor('started', (m) => m.runId === 'resumed')).step).toBe(ck.step);
    await h.waitFor('stopped', (m) => m.runId === 'resumed');
    const rest = h.records('resumed');
    expect(rest.map((r) => r.step)).toEqual(full.slice(ck.step).map((r) => r.step));
    expect(rest.map((r) => r.loss), 'the same losses, bit for bit').toEqual(full.slice(ck.step).map((r) => r.loss));
  });

  it('DMAE from a MAE run kept in the worker: the teacher config is filled in, the distillation loss is reported', async () => {
    await h.session.handle(start('dmae-1', spec({ mode: 'dmae', model: model({ embedDim: 16, depth: 2 }), totalSteps: 6 }), { reconEvery: 3 }, { kind: 'run', runId: 'mae-1' }));
    const started = await h.waitFor('started', (m) => m.runId === 'dmae-1');
    expect(started.config.teacher).toMatchObject({ embedDim: 32, depth: 2 });
    expect(started.config.distill!.pairs).toEqual([{ studentBlock: 1, teacherBlock: 1 }]); // round(¾·2) − 1
    await h.waitFor('stopped', (m) => m.runId === 'dmae-1');
    const recs = h.records('dmae-1');
    expect(recs).toHaveLength(6);
    expect(recs[0].distill![0]).toBeGreaterThan(0);
    expect(recs[0].loss).toBeCloseTo(recs[0].pix + recs[0].distill![0], 5);
  });
});

describe('train session: refusals and failures', () => {
  const refusal = async (runId: string, msg: unknown) => {
    await h.session.whenIdle();
    const n = h.got.length;
    await h.session.handle(msg);
    const e = await h.waitFor('error', (m) => m.runId === runId, n);
    expect(h.got.slice(n).some((m) => m.type === 'started'), `${runId} never started`).toBe(false);
    return e;
  };

  it('an impossible configuration is refused with the engine\'s message', async () => {
    let e = await refusal('bad-patch', start('bad-patch', spec({ model: model({ patchSize: 5 }) })));
    expect(e.kind).toBe('invalid-config');
    expect(e.message).toMatch(/image size 16 is not a multiple of patch size 5/);
    e = await refusal('bad-ratio', start('bad-ratio', spec({ maskRatio: 1.2 })));
    expect([e.kind, e.message]).toEqual(['invalid-config', expect.stringMatching(/mask ratio 1.2/)]);
    e = await refusal('no-teacher', start('no-teacher', spec({ mode: 'dmae' })));
    expect([e.kind, e.message]).toEqual(['invalid-config', expect.stringMatching(/needs a teacher/)]);
    e = await refusal('gone', start('gone', spec({ mode: 'dmae' }), {}, { kind: 'run', runId: 'never-ran' }));
    expect(e.message).toMatch(/"never-ran" is not in this worker/);
    e = await refusal('opt', start('opt', spec(), { reconEvery: -1 }));
    expect(e.message).toMatch(/reconEvery = -1/);
  });

  it('a message of another protocol version, or an unknown one, is answered with an error', async () => {
    let e = await refusal('x', { v: 2, type: 'pause', runId: 'x' });
    expect([e.kind, e.message]).toEqual(['internal', expect.stringMatching(/version 2.*reload/)]);
    const n = h.got.length;
    await h.session.handle({ v, type: 'fly' });
    e = await h.waitFor('error', () => true, n);
    expect(e.message).toMatch(/unknown message type "fly"/);
  });

  it('out of memory: over the budget, or over the adapter\'s largest buffer, refused before allocating', async () => {
    let e = await refusal('budget', start('budget', spec(), { maxMemoryBytes: 10_000 }));
    expect(e.kind).toBe('out-of-memory');
    expect(e.message).toMatch(/over the 9.8 KiB allowed/);
    const huge = spec({ model: model({ imgSize: 224, patchSize: 16, inChans: 3, embedDim: 1024, depth: 24, numHeads: 16, decoderEmbedDim: 512, decoderDepth: 8, decoderNumHeads: 16 }), batch: 4096 });
    e = await refusal('huge', start('huge', huge));
    expect(e.kind).toBe('out-of-memory');
    expect(e.message).toMatch(/buffer|limit/);
  });

  it('a dataset that cannot be loaded is a data error', async () => {
    const e = await refusal('ds', { ...start('ds', spec()), data: { kind: 'stored', id: 'nope' } });
    expect(e.kind).toBe('data');
    expect(e.message).toMatch(/stored dataset nope/);
  });

  it('over the adapter\'s largest buffer: refused; the same images a step in micro-batches that fit (the studio\'s split) train', async () => {
    // An adapter that allows 128 MiB in one buffer (lavapipe's own; a larger one is capped here).
    const MiB128 = 2 ** 27;
    const d = harness({
      acquireGpu: async (needs) => {
        const g = await acquireNodeGpu(needs);
        for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize']) g.adapter.limits[k] = Math.min(g.adapter.limits[k], MiB128);
        return g;
      },
    });
    try {
      await d.session.handle({ v, type: 'init' });
      const { limits } = (await d.waitFor('ready')).adapter;
      // 48×48 shapes, 144 patches × 200 images (all the validation images, which must hold a batch):
      // activations of 141 MiB, over 128 MiB in one buffer.
      const big = (o: Partial<TrainSpec>) => spec({ model: model({ imgSize: 48 }), totalSteps: 2, ...o });
      const tooBig = (batch: number, accumSteps = 1) => planExceedsLimits(trainMemoryPlan(resolveTrainConfig(big({ batch, accumSteps }))), limits);
      const batch = 200;
      expect(tooBig(batch)).toMatch(/\(activations\)/);
      await d.session.handle(start('whole', big({ batch })));
      const e = await d.waitFor('error', (m) => m.runId === 'whole');
      expect([e.kind, e.message]).toEqual(['out-of-memory', expect.stringMatching(/\(activations\).*gradient accumulation/)]);
      expect(d.of('started')).toEqual([]);
      const split = microBatchesThatFit(batch, 1, (b, k) => !tooBig(b, k))!;
      expect(split.batch * split.accumSteps).toBe(batch);
      expect(split.accumSteps).toBeGreaterThan(1);
      await d.session.handle(start('split', big(split), { reconEvery: 0 }));
      const started = await d.waitFor('started', (m) => m.runId === 'split');
      expect([started.config.batch, started.config.accumSteps]).toEqual([split.batch, split.accumSteps]);
      expect((await d.waitFor('stopped', (m) => m.runId === 'split')).reason).toBe('done');
      const recs = d.records('split');
      expect(recs.map((r) => r.step)).toEqual([1, 2]);
      expect(recs[1].epoch).toBeCloseTo((2 * batch) / started.data.train, 12); // a step is the whole effective batch
      for (const r of recs) expect(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm)).toBe(true);
    } finally {
      d.session.dispose();
    }
  });

  it('one run at a time: a second start is refused as busy', async () => {
    await h.session.whenIdle();
    await h.session.handle(start('long', spec({ totalSteps: 400 }), { reconEvery: 0 }));
    await h.session.handle(start('second', spec()));
    const e = await h.waitFor('error', (m) => m.runId === 'second');
    expect([e.kind, e.message]).toEqual(['busy', expect.stringMatching(/"long" is still active/)]);
    await h.session.handle({ v, type: 'stop', runId: 'long' });
    await h.waitFor('stopped', (m) => m.runId === 'long');
  });

  it('diverged: lr 1e6 stops with the step and the loss, and returns the restored last good state', async () => {
    await h.session.whenIdle();
    await h.session.handle(start('nan', spec({ lr: 1e6, warmupSteps: 0, totalSteps: 40 }), { reconEvery: 0 }));
    const e = await h.waitFor('error', (m) => m.runId === 'nan');
    expect(e.kind).toBe('diverged');
    expect(e.message).toMatch(/diverged at step \d+.*(pixel loss|gradient norm).*Lower the learning rate/);
    const bad = Number(/step (\d+)/.exec(e.message)![1]);
    expect(e.step).toBe(bad - 1);
    expect(e.checkpoint!.step).toBe(bad - 1);
    for (const [name, t] of payloadTensors(e.checkpoint!.params)) expect(t.every(Number.isFinite), name).toBe(true);
    expect(h.records('nan').map((r) => r.step)).toEqual(Array.from({ length: bad - 1 }, (_, i) => i + 1));
    expect(h.of('stopped', 'nan')).toEqual([]);
  });
});

describe('train session: an allocation that fails', () => {
  it('is out-of-memory, named, and nothing started (a device that did not grant the limits asked for)', async () => {
    // A device without the limits the run asks for, on an adapter that claims to have them.
    const d = harness({
      acquireGpu: async () => {
        const g = await acquireNodeGpu();
        Object.assign(g.adapter.limits, { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 31 });
        return g;
      },
    });
    try {
      const big = spec({ model: model({ imgSize: 28 }), batch: 1000, totalSteps: 2 }); // 49 patches × 1000 images: activations over 128 MiB
      await d.session.handle({ ...start('alloc', big), data: { kind: 'builtin', id: 'mnist', augment: 'none' } });
      const e = await d.waitFor('error', (m) => m.runId === 'alloc');
      expect(e.kind).toBe('out-of-memory');
      expect(e.message).toMatch(/could not allocate.*activations arena needs .* MiB in one buffer/);
      expect(d.of('started')).toEqual([]);
    } finally {
      d.session.dispose();
    }
  });
});

describe('train session: a lost device', () => {
  it('is reported as device-lost with the last snapshot; the next run acquires a new device', async () => {
    const d = harness();
    try {
      await d.session.handle(start('lost', spec({ totalSteps: 2000 }), { reconEvery: 0, snapshotEvery: 2 }));
      await d.waitFor('metrics', (m) => m.records.some((r) => r.step >= 5));
      const readies = d.of('ready').length;
      await d.session.handle({ v, type: 'debug-lose-device' });
      const e = await d.waitFor('error', (m) => m.runId === 'lost');
      expect(e.kind).toBe('device-lost');
      expect(e.message).toMatch(/device was lost.*kept as it was at step \d+.*new device/);
      expect(e.checkpoint!.step % 2).toBe(0);
      expect(e.checkpoint!.step).toBeGreaterThanOrEqual(4);
      expect(e.checkpoint!.step).toBeLessThanOrEqual(e.step);
      expect(d.of('stopped')).toEqual([]);

      // Start again from what was kept: a new device, and training continues from the snapshot.
      await d.session.whenIdle();
      await d.session.handle({ ...start('again', spec({ totalSteps: e.checkpoint!.step + 3 }), { reconEvery: 0 }), resume: e.checkpoint! });
      const st = await d.waitFor('stopped', (m) => m.runId === 'again');
      expect(d.of('ready').length).toBe(readies + 1);
      expect(st.step).toBe(e.checkpoint!.step + 3);
      expect(d.records('again').map((r) => r.step)[0]).toBe(e.checkpoint!.step + 1);
    } finally {
      d.session.dispose();
    }
  });
});
