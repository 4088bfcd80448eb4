/**
 * The page's side of evaluation and the k-NN monitor (src/store/train.ts, src/store/runs.ts) on
 * fake-indexeddb: an evaluation shows as running, takes progress, ignores a stale answer, ends
 * done with its result (kept with the run's record, the latest per method) or failed with the
 * worker's problem; the monitor's points land in knnMetrics and in the run's record, and a stored
 * run's points come back with its history.
 */
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../../src/engine/trainer';
import { TRAIN_PROTOCOL_VERSION as v, type Checkpoint, type EvaluationResultSpec, type FromTrainWorker, type ResolvedTrainSpec } from '../../src/protocol/train';
import { loadHistory, startStudioRun, useRunsStore, watchRuns } from '../../src/store/runs';
import { knnMetrics, receiveTrainMessage, useEvaluationStore, useTrainStore } from '../../src/store/train';
import { DEFAULT_CONFIG, dataSpecOf, toTrainSpec } from '../../src/ui/studio/config';

const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(ok()).toBe(true);
};
const result = (accuracy: number, method: EvaluationResultSpec['method'] = 'knn'): EvaluationResultSpec => ({
  method, step: 5, accuracy, count: 4, classNames: ['a', 'b'], confusion: [[2, 0], [1, 1]],
  perClass: [{ index: 0, name: 'a', count: 2, accuracy: 1 }, { index: 1, name: 'b', count: 2, accuracy: 0.5 }],
  options: {}, data: { name: 'MNIST', train: 10, val: 4, C: 1, H: 28, W: 28 }, seconds: 0.1,
});

describe('evaluation and k-NN monitor in the stores', () => {
  it('running → progress → done (kept with the run), stale answers ignored, problems fail; knn points kept with the run', async () => {
    watchRuns();
    await until(() => useRunsStore.getState().loaded);
    const spec = toTrainSpec(DEFAULT_CONFIG);
    const resolved = resolveTrainConfig(spec) as unknown as ResolvedTrainSpec;
    const id = startStudioRun({ config: spec, data: dataSpecOf(DEFAULT_CONFIG), options: { knnEvery: 2 } }, DEFAULT_CONFIG);
    const send = (m: Record<string, unknown>) => receiveTrainMessage({ v, runId: id, ...m } as FromTrainWorker);
    const data = { name: 'MNIST', train: 9000, val: 1000, C: 1, H: 28, W: 28, mean: [0.13], std: [0.31], classes: 10 };
    send({ type: 'started', config: resolved, memory: { parts: {}, modelBytes: 1, totalBytes: 1, largestBufferBytes: 1 }, data, adapter: { kind: 'swiftshader', description: 't', features: [], limits: {} }, step: 0 });
    await until(() => useRunsStore.getState().runs.some((r) => r.id === id));
    const point = (step: number, accuracy: number) => ({ step, accuracy, bank: 1000, queries: 250, ms: 5 });
    send({ type: 'knn', point: point(0, 0.2) });
    send({ type: 'metrics', records: [1, 2].map((step) => ({ step, epoch: 0, loss: 1, pix: 1, lr: 1e-3, gradNorm: 1, imagesPerSec: 1, elapsedMs: step })) });
    send({ type: 'knn', point: point(2, 0.4) });
    expect(knnMetrics.records(id).map((p) => p.accuracy)).toEqual([0.2, 0.4]);

    const checkpoint: Checkpoint = {
      runId: id, step: 2, config: resolved, data: dataSpecOf(DEFAULT_CONFIG), params: { tensors: [{ name: 'cls_token', shape: [1], offset: 0, length: 1 }], buffer: new Float32Array(1).buffer },
      adamM: new ArrayBuffer(4), adamV: new ArrayBuffer(4), state: { step: 2, masking: [1, 2, 3, 4] },
    };
    send({ type: 'stopped', reason: 'done', step: 2, elapsedMs: 2, checkpoint });
    await until(() => useRunsStore.getState().runs.some((r) => r.id === id && r.status === 'done'));
    const rec = useRunsStore.getState().runs.find((r) => r.id === id)!;
    expect(rec.knn?.map((p) => p.step)).toEqual([0, 2]);
    expect(rec.classes).toBe(10);

    const first = useEvaluationStore.getState().evaluate(id, { method: 'knn' });
    expect(useEvaluationStore.getState().byRun[id]).toMatchObject({ evalId: first, status: 'running' });
    const second = useEvaluationStore.getState().evaluate(id, { method: 'knn', maxVal: 4 });
    send({ type: 'evaluation', evalId: first, request: { method: 'knn' }, result: result(0.1) }); // stale: ignored
    expect(useEvaluationStore.getState().byRun[id].status).toBe('running');
    send({ type: 'evaluation-progress', evalId: second, progress: { phase: 'features', done: 3, total: 14 } });
    expect(useEvaluationStore.getState().byRun[id].progress).toEqual({ phase: 'features', done: 3, total: 14 });
    send({ type: 'evaluation', evalId: second, request: { method: 'knn', maxVal: 4 }, result: result(0.75) });
    expect(useEvaluationStore.getState().byRun[id]).toMatchObject({ status: 'done', result: { accuracy: 0.75 } });
    await until(() => useRunsStore.getState().runs.find((r) => r.id === id)?.evaluations?.knn?.accuracy === 0.75);
    expect(useTrainStore.getState().run!.status, 'an evaluation never touches the run').toBe('done');

    // A later linear probe is kept beside the k-NN result; a failure keeps both.
    const third = useEvaluationStore.getState().evaluate(id, { method: 'linprobe' });
    send({ type: 'evaluation', evalId: third, request: { method: 'linprobe' }, result: result(0.9, 'linprobe') });
    await until(() => useRunsStore.getState().runs.find((r) => r.id === id)?.evaluations?.linprobe?.accuracy === 0.9);
    const fourth = useEvaluationStore.getState().evaluate(id, { method: 'knn' });
    send({ type: 'evaluation', evalId: fourth, request: { method: 'knn' }, problem: 'MNIST has no labels' });
    expect(useEvaluationStore.getState().byRun[id]).toMatchObject({ status: 'failed', problem: 'MNIST has no labels' });
    const kept = useRunsStore.getState().runs.find((r) => r.id === id)!.evaluations!;
    expect([kept.knn!.accuracy, kept.linprobe!.accuracy]).toEqual([0.75, 0.9]);

    // From IndexedDB again (a reload), and the stored points back into the buffer for a run seen only in the list.
    useRunsStore.setState({ runs: [], loaded: false });
    await useRunsStore.getState().load();
    const again = useRunsStore.getState().runs.find((r) => r.id === id)!;
    expect(again.evaluations?.knn?.confusion).toEqual([[2, 0], [1, 1]]);
    useRunsStore.setState({ runs: [{ ...again, id: 'stored-only' }] });
    loadHistory('stored-only');
    expect(knnMetrics.records('stored-only').map((p) => p.step)).toEqual([0, 2]);
  });
});
