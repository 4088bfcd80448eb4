/**
 * Attention maps through the worker protocol ('request-attention' → 'attention'), on real WebGPU
 * (Dawn) with createTrainSession: a DMAE run paused at some step answers for its student and its
 * teacher, on every patch of a validation image or on the patches its validation mask keeps. Each
 * row of the returned [T, T] matrix sums to 1 and matches the float64 reference (src/ref/model.ts
 * forwardEncoder up to that block, with the run's parameters at that step and the same validation
 * image); the cls map is the matrix's row 0 placed on the patch grid. An ended run answers for its
 * student from its kept final parameters. Bad requests, a MAE run's teacher, an ended run's teacher
 * and an unknown run are answered with a problem, and the run goes on.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { MaeConfig } from '../../src/engine/config';
import { builtinDatasetId, makeRunData, shapesOptionsFor } from '../../src/engine/run';
import { resolveTrainConfig } from '../../src/engine/trainer';
import { loadBuiltinNode } from '../../src/data/node';
import { acquireNodeGpu } from '../../src/gpu/node-device';
import {
  TRAIN_PROTOCOL_VERSION as v, payloadTensors, transferablesOf,
  type AttentionRequestSpec, type FromTrainWorker, type ModelSpec, type ParamsPayload, type TrainSpec,
} from '../../src/protocol/train';
import { forwardEncoder } from '../../src/ref/model';
import { createTrainSession } from '../../src/worker/train-session';
import { TOL, expectClose } from '../helpers';

type Of<T extends FromTrainWorker['type']> = Extract<FromTrainWorker, { type: T }>;

const got: FromTrainWorker[] = [];
const session = createTrainSession(
  {
    acquireGpu: (needs) => acquireNodeGpu(needs),
    loadDataset: async (data, model) => loadBuiltinNode(builtinDatasetId(data.kind === 'builtin' ? data.id : 'shapes'), shapesOptionsFor(model)),
  },
  (msg) => void got.push(structuredClone(msg, { transfer: transferablesOf(msg) })),
);
afterAll(() => session.dispose());
// A failed test must not leave its run active (the next one would find the worker busy).
afterEach(async () => {
  for (const runId of ['teacher', 'student', 'mae']) await session.handle({ v, type: 'stop', runId });
  await session.whenIdle();
});

async function waitFor<T extends FromTrainWorker['type']>(type: T, pred: (m: Of<T>) => boolean = () => true, from = 0): Promise<Of<T>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = got.slice(from).find((x) => x.type === type && pred(x as Of<T>));
    if (m) return m as Of<T>;
    const err = got.slice(from).find((x) => x.type === 'error');
    if (err) throw new Error(`the worker reported an error: ${(err as Of<'error'>).message}`);
    if (Date.now() > deadline) throw new Error(`no "${type}" in time; got ${got.map((x) => x.type).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const model = (o: Partial<ModelSpec> = {}): ModelSpec => ({
  imgSize: 16, patchSize: 4, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4,
  decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, normPixLoss: true, ...o,
});
const data = { kind: 'builtin', id: 'shapes', augment: 'none' } as const;
const teacherSpec: TrainSpec = { mode: 'mae', model: model({ embedDim: 24, depth: 3, numHeads: 3 }), batch: 4, totalSteps: 4, seed: 3, lr: 2e-3, maskRatio: 0.75 };
const studentSpec: TrainSpec = {
  mode: 'dmae', model: model({ embedDim: 16, depth: 2, numHeads: 2 }), batch: 4, totalSteps: 500, seed: 7, lr: 2e-3, maskRatio: 0.75,
  distill: { pairs: [{ studentBlock: 1, teacherBlock: 2 }], alpha: 1, kind: 'l1' },
};

const f64 = (p: ParamsPayload) => new Map([...payloadTensors(p)].map(([k, t]) => [k, Float64Array.from(t)]));

/** The reference's probs of `block`, head `head`, on tokens cls ++ ids of image img. */
function referenceMatrix(params: Map<string, Float64Array>, cfg: MaeConfig, img: Float32Array, ids: Uint32Array, block: number, head: number): Float64Array {
  const enc = forwardEncoder(params, cfg, Float64Array.from(img), ids, 1, { stopAfterBlock: block });
  const T = 1 + ids.length;
  return enc.cache.blocks[block].probs.slice(head * T * T, (head + 1) * T * T);
}

describe('attention maps over the protocol', () => {
  it('student and teacher, every patch or the visible ones: rows sum to 1 and match float64; bad requests get a problem', async () => {
    await session.handle({ v, type: 'start', runId: 'teacher', config: teacherSpec, data, options: { reconEvery: 0, snapshotEvery: 0 } });
    const teacherCk = (await waitFor('stopped', (m) => m.runId === 'teacher')).checkpoint;

    await session.handle({ v, type: 'start', runId: 'student', config: studentSpec, data, teacher: { kind: 'run', runId: 'teacher' }, options: { reconEvery: 0, snapshotEvery: 0, metricsIntervalMs: 0 } });
    await waitFor('metrics', (m) => m.runId === 'student' && m.records.some((r) => r.step >= 2));
    await session.handle({ v, type: 'pause', runId: 'student' });
    const paused = await waitFor('paused', (m) => m.runId === 'student');
    await session.handle({ v, type: 'request-checkpoint', runId: 'student' });
    const studentCk = (await waitFor('checkpoint', (m) => m.runId === 'student')).checkpoint;
    expect(studentCk.step).toBe(paused.step);

    // The run's validation images, as the worker makes them (the same dataset, configuration and seed).
    const rc = resolveTrainConfig({ ...studentSpec, teacher: teacherSpec.model });
    const ds = await loadBuiltinNode('shapes', shapesOptionsFor(rc.model));
    const val = makeRunData(ds, rc, { augment: 'none' }).val;
    const S = 16, L = 16, V = rc.visible;
    expect(V).toBe(4);

    const cases: { req: AttentionRequestSpec; params: Map<string, Float64Array>; cfg: MaeConfig; blocks: number }[] = [
      { req: { model: 'student', block: 1, head: 1, image: 2 }, params: f64(studentCk.params), cfg: rc.model, blocks: 2 },
      { req: { model: 'student', block: 0, head: 0, image: 0, tokens: 'visible' }, params: f64(studentCk.params), cfg: rc.model, blocks: 2 },
      { req: { model: 'teacher', block: 2, head: 2, image: 3 }, params: f64(teacherCk.params), cfg: teacherSpec.model, blocks: 3 },
      { req: { model: 'teacher', block: 1, head: 0, image: 1, tokens: 'visible' }, params: f64(teacherCk.params), cfg: teacherSpec.model, blocks: 3 },
    ];
    for (const { req, params, cfg, blocks } of cases) {
      const n = got.length;
      await session.handle({ v, type: 'request-attention', runId: 'student', ...req });
      const a = await waitFor('attention', (m) => m.runId === 'student', n);
      const what = `${req.model} block ${req.block} head ${req.head} image ${req.image} ${req.tokens ?? 'all'}`;
      expect(a.problem, what).toBeUndefined();
      const map = a.map!;
      const ids = req.tokens === 'visible' ? val.masking.idsKeep.slice(req.image * V, (req.image + 1) * V) : Uint32Array.from({ length: L }, (_, i) => i);
      const T = 1 + ids.length;
      expect(map).toMatchObject({ step: paused.step, heads: cfg.numHeads, blocks, grid: 4, tokens: T, request: { ...req, tokens: req.tokens ?? 'all' } });
      expect(map.patchOf).toEqual([...ids]);
      const m = new Float32Array(map.matrix);
      expect(m.length).toBe(T * T);
      for (let i = 0; i < T; i++) {
        const row = m.subarray(i * T, (i + 1) * T);
        expect(Math.abs(row.reduce((s, x) => s + x, 0) - 1), `${what}: row ${i} sums to 1`).toBeLessThan(1e-5);
        expect(row.every((x) => x >= 0)).toBe(true);
      }
      const img = val.imgs.slice(req.image * S * S, (req.image + 1) * S * S);
      expectClose(m, referenceMatrix(params, cfg, img, ids, req.block, req.head), TOL.reduction, what);
      const cls = new Float32Array(map.cls);
      expect(cls.length).toBe(L);
      for (let p = 0; p < L; p++) {
        const j = [...ids].indexOf(p);
        expect(cls[p]).toBe(j < 0 ? 0 : m[1 + j]);
      }
      expect(map.image).toMatchObject({ width: S, height: S, format: 'rgba8' });
      expect(new Set(new Uint8Array(map.image.data).filter((_, i) => i % 4 === 0)).size, 'the image is not blank').toBeGreaterThan(2);
    }

    // The same request twice at the same step: the same bits (fixed-order reductions, no state kept).
    const twice: Float32Array[] = [];
    for (let k = 0; k < 2; k++) {
      const n = got.length;
      await session.handle({ v, type: 'request-attention', runId: 'student', ...cases[2].req });
      twice.push(new Float32Array((await waitFor('attention', (m) => m.runId === 'student', n)).map!.matrix));
    }
    expect(Buffer.from(twice[0].buffer).equals(Buffer.from(twice[1].buffer)), 'bit-identical').toBe(true);

    // Problems, answered without ending the run.
    for (const [req, pattern] of [
      [{ model: 'teacher', block: 3, head: 0, image: 0 }, /block 3 is not in 0\.\.2.*deepest aligned block/],
      [{ model: 'student', block: 0, head: 2, image: 9 }, /head 2 is not in 0\.\.1; image 9 is not in 0\.\.3/],
    ] as const) {
      const n = got.length;
      await session.handle({ v, type: 'request-attention', runId: 'student', ...req });
      const a = await waitFor('attention', (m) => m.runId === 'student', n);
      expect(a.map).toBeUndefined();
      expect(a.problem).toMatch(pattern);
    }
    await session.handle({ v, type: 'resume', runId: 'student' });
    await waitFor('metrics', (m) => m.runId === 'student' && m.records.some((r) => r.step >= paused.step + 2));
    // Requested while training: served at the next step boundary.
    let n = got.length;
    await session.handle({ v, type: 'request-attention', runId: 'student', model: 'student', block: 0, head: 0, image: 0 });
    expect((await waitFor('attention', (m) => m.runId === 'student', n)).map!.step).toBeGreaterThan(paused.step);
    await session.handle({ v, type: 'stop', runId: 'student' });
    const stopped = await waitFor('stopped', (m) => m.runId === 'student');
    expect(got.some((m) => m.type === 'error')).toBe(false);

    // An ended run: its student from the kept final parameters; its teacher is no longer loaded.
    n = got.length;
    await session.handle({ v, type: 'request-attention', runId: 'student', model: 'student', block: 1, head: 0, image: 1 });
    const ended = await waitFor('attention', (m) => m.runId === 'student', n);
    expect(ended.problem).toBeUndefined();
    expect(ended.map!.step).toBe(stopped.step);
    const all = Uint32Array.from({ length: L }, (_, i) => i);
    expectClose(new Float32Array(ended.map!.matrix), referenceMatrix(f64(stopped.checkpoint.params), rc.model, val.imgs.slice(S * S, 2 * S * S), all, 1, 0), TOL.reduction, 'ended run');
    n = got.length;
    await session.handle({ v, type: 'request-attention', runId: 'student', model: 'teacher', block: 0, head: 0, image: 0 });
    expect((await waitFor('attention', (m) => m.runId === 'student', n)).problem).toMatch(/choose the student/);
    n = got.length;
    await session.handle({ v, type: 'request-attention', runId: 'nope', model: 'student', block: 0, head: 0, image: 0 });
    expect((await waitFor('attention', (m) => m.runId === 'nope', n)).problem).toMatch(/not in the training worker/);
  });

  it('a MAE run has no teacher', async () => {
    await session.whenIdle();
    await session.handle({ v, type: 'start', runId: 'mae', config: { ...teacherSpec, totalSteps: 300 }, data, options: { reconEvery: 0, snapshotEvery: 0 } });
    await waitFor('started', (m) => m.runId === 'mae');
    const n = got.length;
    await session.handle({ v, type: 'request-attention', runId: 'mae', model: 'teacher', block: 0, head: 0, image: 0 });
    expect((await waitFor('attention', (m) => m.runId === 'mae', n)).problem).toMatch(/no teacher/);
    await session.handle({ v, type: 'stop', runId: 'mae' });
    await waitFor('stopped', (m) => m.runId === 'mae');
  });
});
