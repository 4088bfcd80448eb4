/**
 * Evaluation through the training worker's logic (createTrainSession) in Node, on real WebGPU,
 * every message cloned and transferred as postMessage does: 'evaluate' of a paused run answers
 * with progress and a result (accuracy, per-class accuracy, confusion matrix) and leaves the run
 * exactly as it was (parameters, AdamW moments, state, and its later losses); an ended run is
 * evaluated from its kept parameters, a run the worker does not hold from the weights the page
 * sends (an earlier ended run's dataset loaded again); an unlabelled dataset, a bad request and an unknown run are answered with clear
 * problems. The live k-NN monitor (RunOptions.knnEvery) posts its points at 0, every N and the
 * end, and the run's losses are bit for bit those of a run without it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { makeDataset } from '../../src/data/dataset';
import { loadBuiltinNode } from '../../src/data/node';
import { builtinDatasetId, shapesOptionsFor } from '../../src/engine/run';
import {
  TRAIN_PROTOCOL_VERSION as v, checkToTrainWorker,
  type EvaluateRequestSpec, type RunOptions, type TrainSpec,
} from '../../src/protocol/train';
import { model, sessionHarness, shapes, spec } from './session-harness';

/** 'stored' data is an unlabelled set. */
const harness = () => sessionHarness({
  async loadDataset(data, model) {
    if (data.kind === 'stored') {
      const N = 200, S = model.imgSize, r = (i: number) => (i * 2654435761) >>> 24;
      return makeDataset({ name: 'unlabelled', source: 'test', images: Uint8Array.from({ length: N * S * S }, (_, i) => r(i)), labels: null, classNames: [], N, C: 1, H: S, W: S, nTrain: 160 });
    }
    return loadBuiltinNode(builtinDatasetId(data.id), shapesOptionsFor(model));
  },
}, 90_000);
const start = (runId: string, config: TrainSpec, options: RunOptions = {}, data: { kind: 'builtin'; id: 'shapes'; augment: 'none' } | { kind: 'stored'; id: string } = shapes) =>
  ({ v, type: 'start' as const, runId, config, data, options });
const evaluate = (runId: string, evalId: string, request: EvaluateRequestSpec) => ({ v, type: 'evaluate' as const, runId, evalId, request });
const quick: EvaluateRequestSpec = { method: 'knn', maxTrain: 300, maxVal: 100, seed: 1 };

const h = harness();
afterAll(() => h.session.dispose());

describe('train session: evaluation', () => {
  it('a paused run: progress then the result; the run is unchanged (state, moments, later losses)', async () => {
    const opts: RunOptions = { reconEvery: 0, snapshotEvery: 0, metricsIntervalMs: 0 };
    // The reference: the same run, never paused or evaluated.
    await h.session.handle(start('ref', spec({ totalSteps: 14 }), opts));
    await h.waitFor('stopped', (m) => m.runId === 'ref');

    await h.session.handle(start('ev-1', spec({ totalSteps: 14 }), opts));
    await h.waitFor('metrics', (m) => m.runId === 'ev-1' && m.records.some((r) => r.step >= 3));
    await h.session.handle({ v, type: 'pause', runId: 'ev-1' });
    const paused = await h.waitFor('paused', (m) => m.runId === 'ev-1');
    let n = h.got.length;
    await h.session.handle({ v, type: 'request-checkpoint', runId: 'ev-1' });
    const before = (await h.waitFor('checkpoint', (m) => m.runId === 'ev-1', n)).checkpoint;

    n = h.got.length;
    await h.session.handle(evaluate('ev-1', 'e1', quick));
    const answer = await h.waitFor('evaluation', (m) => m.evalId === 'e1', n);
    expect(answer.problem).toBeUndefined();
    const r = answer.result!;
    expect(r.method).toBe('knn');
    expect(r.step).toBe(paused.step);
    expect(r.count).toBe(100);
    expect(r.classNames).toEqual(['circle', 'square', 'triangle', 'ring', 'cross', 'stripes', 'checker']);
    expect(r.confusion).toHaveLength(7);
    expect(r.confusion.flat().reduce((a, b) => a + b, 0)).toBe(100);
    expect(r.perClass.reduce((s, c) => s + c.count, 0)).toBe(100);
    expect(r.confusion.reduce((s, row, k) => s + row[k], 0) / 100).toBeCloseTo(r.accuracy, 12);
    expect(r.data).toMatchObject({ train: 300, val: 100, C: 1, H: 16, W: 16 });
    expect(r.accuracy, 'shapes: well above chance (1/7)').toBeGreaterThan(0.25);
    const progress = h.of('evaluation-progress').filter((m) => m.evalId === 'e1');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)!.progress).toEqual({ phase: 'predict', done: 100, total: 100 });
    expect(h.got.indexOf(progress.at(-1)!)).toBeLessThan(h.got.indexOf(answer));

    n = h.got.length;
    await h.session.handle({ v, type: 'request-checkpoint', runId: 'ev-1' });
    const after = (await h.waitFor('checkpoint', (m) => m.runId === 'ev-1', n)).checkpoint;
    expect(after.step).toBe(before.step);
    expect(after.state).toEqual(before.state);
    for (const k of ['adamM', 'adamV'] as const) expect(new Uint8Array(after[k])).toEqual(new Uint8Array(before[k]));
    expect(new Uint8Array(after.params.buffer)).toEqual(new Uint8Array(before.params.buffer));
    expect(h.records('ev-1').at(-1)!.step, 'no step while evaluating a paused run').toBe(paused.step);

    await h.session.handle({ v, type: 'resume', runId: 'ev-1' });
    await h.waitFor('stopped', (m) => m.runId === 'ev-1');
    const losses = (id: string) => h.records(id).map((x) => [x.step, x.loss, x.gradNorm]);
    expect(losses('ev-1'), 'the same losses, bit for bit, as a run never evaluated').toEqual(losses('ref'));
  });

  it('an ended run from its kept parameters (linear probe); a run the worker does not hold from the weights sent', async () => {
    let n = h.got.length;
    await h.session.handle(evaluate('ev-1', 'e2', { method: 'linprobe', maxTrain: 200, maxVal: 70, steps: 30, batch: 50 }));
    const probe = await h.waitFor('evaluation', (m) => m.evalId === 'e2', n);
    expect(probe.problem).toBeUndefined();
    expect(probe.result).toMatchObject({ method: 'linprobe', step: 14, count: 70 });
    expect(probe.result!.options).toMatchObject({ steps: 30, batch: 50, maxTrain: 200, maxVal: 70 });
    expect(probe.result!.valLoss).toBeGreaterThan(0);
    expect(h.of('evaluation-progress').filter((m) => m.evalId === 'e2').map((m) => m.progress.phase)).toContain('train');

    // The same weights, sent by the page for a run the worker never saw: the same k-NN answer as from the kept ones.
    const ck = h.of('stopped', 'ev-1')[0].checkpoint;
    n = h.got.length;
    await h.session.handle(evaluate('ev-1', 'e3', quick));
    const kept = await h.waitFor('evaluation', (m) => m.evalId === 'e3', n);
    n = h.got.length;
    await h.session.handle({ ...evaluate('from-page', 'e4', quick), source: { model: ck.config.model, params: ck.params, data: shapes, step: ck.step } });
    const sent = await h.waitFor('evaluation', (m) => m.evalId === 'e4', n);
    expect(sent.problem).toBeUndefined();
    expect(sent.result!.accuracy).toBe(kept.result!.accuracy);
    expect(sent.result!.confusion).toEqual(kept.result!.confusion);
  });

  it('clear problems: an unknown run, a bad request, an unlabelled dataset', async () => {
    let n = h.got.length;
    await h.session.handle(evaluate('nobody', 'p1', quick));
    expect((await h.waitFor('evaluation', (m) => m.evalId === 'p1', n)).problem).toMatch(/"nobody" is not in the training worker/);
    n = h.got.length;
    await h.session.handle(evaluate('ev-1', 'p2', { method: 'svm' as 'knn' }));
    expect((await h.waitFor('evaluation', (m) => m.evalId === 'p2', n)).problem).toMatch(/method "svm" is not knn, linprobe or finetune/);
    n = h.got.length;
    await h.session.handle(evaluate('ev-1', 'p3', { method: 'knn', maxVal: 0 }));
    expect((await h.waitFor('evaluation', (m) => m.evalId === 'p3', n)).problem).toMatch(/maxVal 0 must be a whole number/);
    expect(checkToTrainWorker({ v, type: 'evaluate', runId: 'x', request: quick })).toMatch(/evalId/);

    await h.session.handle(start('unl', spec({ totalSteps: 4 }), { reconEvery: 0, knnEvery: 2 }, { kind: 'stored', id: 'u' }));
    await h.waitFor('stopped', (m) => m.runId === 'unl');
    const knn = h.of('knn', 'unl');
    expect(knn).toHaveLength(1); // once, why
    expect(knn[0].problem).toMatch(/unlabelled has no labels: the k-NN monitor needs a labelled dataset/);
    n = h.got.length;
    await h.session.handle(evaluate('unl', 'p4', quick));
    expect((await h.waitFor('evaluation', (m) => m.evalId === 'p4', n)).problem).toMatch(/unlabelled has no labels, so there is nothing to measure accuracy against/);

    // An earlier ended run (no longer the latest: its dataset is loaded again) answers as before.
    n = h.got.length;
    await h.session.handle(evaluate('ev-1', 'p5', quick));
    const again = await h.waitFor('evaluation', (m) => m.evalId === 'p5', n);
    expect(again.result!.confusion).toEqual(h.of('evaluation').find((m) => m.evalId === 'e3')!.result!.confusion);
  });
});

describe('train session: the live k-NN monitor', () => {
  it('posts its points at 0, every N and the end; the losses are bit for bit those of a run without it', async () => {
    const opts: RunOptions = { reconEvery: 4, snapshotEvery: 0, metricsIntervalMs: 0 };
    await h.session.handle(start('plain', spec({ totalSteps: 10 }), opts));
    await h.waitFor('stopped', (m) => m.runId === 'plain');
    await h.session.handle(start('knn', spec({ totalSteps: 10 }), { ...opts, knnEvery: 3, knnBank: 200, knnQueries: 50 }));
    await h.waitFor('stopped', (m) => m.runId === 'knn');
    const points = h.of('knn', 'knn').map((m) => m.point!);
    expect(points.map((p) => p.step)).toEqual([0, 3, 6, 9, 10]);
    for (const p of points) {
      expect(p.accuracy).toBeGreaterThanOrEqual(0);
      expect(p.accuracy).toBeLessThanOrEqual(1);
      expect([p.bank, p.queries]).toEqual([200, 50]);
    }
    // Each point comes after the metrics of its step.
    const order = h.got.filter((m) => (m as { runId?: string }).runId === 'knn');
    const lastStepBefore = (i: number) => Math.max(0, ...order.slice(0, i).flatMap((m) => (m.type === 'metrics' ? m.records.map((r) => r.step) : [])));
    order.forEach((m, i) => {
      if (m.type === 'knn') expect(lastStepBefore(i)).toBe(m.point!.step);
    });
    const numbers = (id: string) => h.records(id).map((x) => [x.step, x.loss, x.pix, x.gradNorm, x.lr]);
    expect(numbers('knn')).toEqual(numbers('plain'));
    const recon = (id: string) => h.of('reconstruction', id).map((m) => [m.step, m.val.pix]);
    expect(recon('knn')).toEqual(recon('plain'));
  });
});
