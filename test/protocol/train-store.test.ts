/**
 * The page's side of the protocol (src/store/train.ts): worker messages become run state —
 * started, paused, resumed, reconstruction, stopped, error with the run kept — while per-step
 * metrics go only to the subscribable buffer, never into the store's state.
 */
import { describe, expect, it } from 'vitest';
import { TRAIN_PROTOCOL_VERSION as v, type Checkpoint, type StepRecord } from '../../src/protocol/train';
import { receiveTrainMessage, trainMetrics, useTrainStore } from '../../src/store/train';

const rec = (step: number): StepRecord => ({ step, epoch: step / 100, loss: 2 - step / 100, pix: 2 - step / 100, lr: 1e-3, gradNorm: 1, imagesPerSec: 50, elapsedMs: step * 10 });
const ck = { runId: 'x', step: 3 } as unknown as Checkpoint;
const spec = { mode: 'mae' as const, model: {} as never, batch: 8, totalSteps: 10, seed: 0 };

describe('train store', () => {
  it('follows a run; metrics land in the buffer and its subscribers, not in React state', () => {
    const runId = useTrainStore.getState().start({ config: spec, data: { kind: 'builtin', id: 'mnist' } });
    expect(useTrainStore.getState().worker.status).toBe('unavailable'); // no Worker in Node: said plainly
    expect(useTrainStore.getState().run).toMatchObject({ runId, status: 'starting', step: 0 });

    receiveTrainMessage({ v, type: 'started', runId, config: { visible: 12 } as never, memory: {} as never, data: {} as never, adapter: {} as never, step: 0 });
    expect(useTrainStore.getState().run!.status).toBe('running');

    const batches: number[][] = [];
    const off = trainMetrics.subscribe((id, records) => id === runId && batches.push(records.map((r) => r.step)));
    const before = useTrainStore.getState();
    receiveTrainMessage({ v, type: 'metrics', runId, records: [rec(1), rec(2)] });
    receiveTrainMessage({ v, type: 'metrics', runId, records: [rec(3)] });
    off();
    expect(useTrainStore.getState(), 'no state change per step').toBe(before);
    expect(batches).toEqual([[1, 2], [3]]);
    expect(trainMetrics.records(runId).map((r) => r.step)).toEqual([1, 2, 3]);
    expect(trainMetrics.latest(runId)!.step).toBe(3);

    useTrainStore.getState().pause();
    expect(useTrainStore.getState().run!.status).toBe('pausing');
    receiveTrainMessage({ v, type: 'paused', runId, step: 3 });
    expect(useTrainStore.getState().run).toMatchObject({ status: 'paused', step: 3 });
    receiveTrainMessage({ v, type: 'resumed', runId, step: 3 });
    expect(useTrainStore.getState().run!.status).toBe('running');

    const px = new Uint8ClampedArray(4 * 2 * 2).fill(9);
    receiveTrainMessage({ v, type: 'reconstruction', runId, step: 3, image: { width: 2, height: 2, format: 'rgba8', data: px.buffer }, rows: 1, columns: ['a', 'b', 'c', 'd'], cell: 1, gap: 0, levels: [1, 1, 1, 1], val: { pix: 1, loss: 1 } });
    expect(useTrainStore.getState().run!.reconstruction).toMatchObject({ step: 3, width: 2, height: 2 });
    expect(useTrainStore.getState().run!.reconstruction!.data[0]).toBe(9);

    // A message of another run is not this run's.
    receiveTrainMessage({ v, type: 'paused', runId: 'other', step: 99 });
    expect(useTrainStore.getState().run!.step).toBe(3);

    receiveTrainMessage({ v, type: 'error', runId, kind: 'device-lost', message: 'The GPU device was lost.', step: 5, checkpoint: ck });
    expect(useTrainStore.getState().run).toMatchObject({ status: 'error', step: 5, error: { kind: 'device-lost', step: 5 }, checkpoint: ck });
    // Controls do nothing once the run has ended.
    useTrainStore.getState().resume();
    expect(useTrainStore.getState().run!.status).toBe('error');
  });

  it('an error tied to no run is shown apart from the run', () => {
    receiveTrainMessage({ v, type: 'error', runId: null, kind: 'device-lost', message: 'lost while idle', step: 0 });
    expect(useTrainStore.getState().workerError).toBe('lost while idle');
  });

  it('a run that ends is kept with its result', () => {
    const runId = useTrainStore.getState().start({ config: spec, data: { kind: 'builtin', id: 'shapes' } });
    receiveTrainMessage({ v, type: 'stopped', runId, reason: 'done', step: 10, elapsedMs: 1000, checkpoint: ck });
    expect(useTrainStore.getState().run).toMatchObject({ status: 'done', step: 10, result: { reason: 'done', step: 10 }, checkpoint: ck });
  });
});
