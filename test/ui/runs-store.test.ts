/** The runs list on fake-indexeddb: a run is recorded when it starts and when it ends, with its weights within the budget. */
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { TRAIN_PROTOCOL_VERSION, type Checkpoint, type FromTrainWorker, type ResolvedTrainSpec } from '../../src/protocol/train';
import { startStudioRun, useRunsStore, watchRuns } from '../../src/store/runs';
import { receiveTrainMessage } from '../../src/store/train';
import { DEFAULT_CONFIG, dataSpecOf, toTrainSpec } from '../../src/ui/studio/config';
import { resolveTrainConfig } from '../../src/engine/trainer';

const v = TRAIN_PROTOCOL_VERSION;
const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(ok()).toBe(true);
};

describe('runs list', () => {
  it('records a run at its start and its end, keeps its weights, renames, deletes, and reloads from IndexedDB', async () => {
    watchRuns();
    await until(() => useRunsStore.getState().loaded);
    const spec = toTrainSpec(DEFAULT_CONFIG);
    const resolved = resolveTrainConfig(spec) as unknown as ResolvedTrainSpec;
    const id = startStudioRun({ config: spec, data: dataSpecOf(DEFAULT_CONFIG) }, DEFAULT_CONFIG);
    const data = { name: 'MNIST', train: 9000, val: 1000, C: 1, H: 28, W: 28, mean: [0.13], std: [0.31] };
    const adapter = { kind: 'swiftshader' as const, description: 'test', features: [], limits: {} };
    const send = (m: Record<string, unknown>) => receiveTrainMessage({ v, runId: id, ...m } as FromTrainWorker);
    send({ type: 'started', config: resolved, memory: { parts: {}, modelBytes: 1, totalBytes: 1, largestBufferBytes: 1 }, data, adapter, step: 0 });
    await until(() => useRunsStore.getState().runs.some((r) => r.id === id && r.status === 'running'));

    const records = Array.from({ length: 5 }, (_, i) => ({ step: i + 1, epoch: (i + 1) * 8 / 9000, loss: 1 - i / 10, pix: 1 - i / 10, lr: 1e-3, gradNorm: 1, imagesPerSec: 10, elapsedMs: 100 * (i + 1) }));
    send({ type: 'metrics', records });
    const params = new Float32Array([1, 2, 3, 4]);
    const checkpoint: Checkpoint = {
      runId: id, step: 5, config: resolved, data: dataSpecOf(DEFAULT_CONFIG), params: { tensors: [{ name: 'cls_token', shape: [4], offset: 0, length: 4 }], buffer: params.buffer },
      adamM: new ArrayBuffer(16), adamV: new ArrayBuffer(16), state: { step: 5, masking: [1, 2, 3, 4] },
    };
    send({ type: 'stopped', reason: 'stopped', step: 5, elapsedMs: 500, checkpoint });
    await until(() => useRunsStore.getState().runs.some((r) => r.id === id && r.status === 'stopped' && r.weightsBytes === 16));
    const r = useRunsStore.getState().runs.find((x) => x.id === id)!;
    expect(r.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5]);
    expect(r.final?.loss).toBeCloseTo(0.6);
    expect(r.norm).toEqual({ mean: [0.13], std: [0.31] });
    const w = await useRunsStore.getState().weights(id);
    expect(Array.from(new Float32Array(w!.params.buffer))).toEqual([1, 2, 3, 4]);
    expect(w!.model.embedDim).toBe(32);

    await useRunsStore.getState().rename(id, 'renamed');
    useRunsStore.setState({ runs: [], loaded: false });
    await useRunsStore.getState().load();
    expect(useRunsStore.getState().runs.find((x) => x.id === id)?.name).toBe('renamed');

    await useRunsStore.getState().remove(id);
    await useRunsStore.getState().load();
    expect(useRunsStore.getState().runs.find((x) => x.id === id)).toBeUndefined();
    expect(await useRunsStore.getState().weights(id)).toBeNull();
  });
});
