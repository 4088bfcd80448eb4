/** The worker protocol's Checkpoint ↔ the one-file checkpoint (what the studio stores and downloads). */
import { describe, expect, it } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { teacherLayout } from '../../src/engine/dmae';
import { maeParamLayout } from '../../src/engine/params';
import { resolveTrainConfig, trainParamLayout } from '../../src/engine/trainer';
import type { Checkpoint as WireCheckpoint, ParamsPayload } from '../../src/protocol/train';
import { payloadTensors } from '../../src/protocol/train';
import { CheckpointError } from '../../src/io/checkpoint';
import { CheckpointStore } from '../../src/io/checkpoint-store';
import { fileToWireCheckpoint, wireCheckpointToFile } from '../../src/io/protocol-checkpoint';
import { encodeCheckpoint } from '../../src/io/checkpoint';
import { IDBFactory } from 'fake-indexeddb';
import { randn } from '../helpers';
import { perturbedParams } from '../model-fixtures';

/** A payload as the worker's arenas give it: the layout's (aligned, gapped) offsets. */
function arenaPayload(layout: ReturnType<typeof maeParamLayout>, seed: number): { payload: ParamsPayload; flat: Float32Array } {
  const flat = Float32Array.from(randn(layout.size, seed));
  return { payload: { tensors: layout.entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.start * 4, length: e.length })), buffer: flat.buffer as ArrayBuffer }, flat };
}

describe('protocol checkpoint ↔ file', () => {
  const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
  const tcfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 }, { embedDim: 48, depth: 3, numHeads: 3 });
  const rc = resolveTrainConfig({ mode: 'dmae', model: cfg, teacher: tcfg, batch: 4, lr: 1e-3, totalSteps: 20, seed: 3 });
  const layout = trainParamLayout(rc);

  it('parameters, moments, state, configuration, data and teacher survive the round trip (through IndexedDB too)', async () => {
    const p = arenaPayload(layout, 1), m = arenaPayload(layout, 2), v = arenaPayload(layout, 3);
    const teacherFull = perturbedParams(maeParamLayout(tcfg), tcfg, 4); // a whole MAE: more than the run needs
    const tl = maeParamLayout(tcfg);
    const tflat = new Float32Array(tl.size);
    for (const e of tl.entries) tflat.set(teacherFull.get(e.name)!, e.start);
    const teacher: ParamsPayload = { tensors: tl.entries.map((e) => ({ name: e.name, shape: e.shape, offset: e.start * 4, length: e.length })), buffer: tflat.buffer as ArrayBuffer };
    const wire: WireCheckpoint = {
      runId: 'run-7', step: 9, config: rc, data: { kind: 'builtin', id: 'shapes', augment: 'mae' },
      params: p.payload, adamM: m.flat.buffer as ArrayBuffer, adamV: v.flat.buffer as ArrayBuffer, state: { step: 9, masking: [5, -6, 7, 8], source: { seed: 3, epoch: 1, position: 12 } },
    };
    const bytes = wireCheckpointToFile(wire, { teacher, dataset: { name: 'Shapes', mean: [0.5], std: [0.3] }, label: 'my run' });
    const factory = new IDBFactory();
    const store = await CheckpointStore.open({ factory });
    await store.save('run-7', bytes, 'my run');
    const back = fileToWireCheckpoint(await store.load('run-7'), 'stored run-7');
    store.close();
    const c = back.checkpoint;
    expect([c.runId, c.step, c.data, c.state]).toEqual([wire.runId, wire.step, wire.data, wire.state]);
    expect(c.config).toEqual(rc);
    const same = (got: ParamsPayload, gotBuf: ArrayBuffer, want: ParamsPayload, wantBuf: ArrayBuffer, what: string) => {
      const g = payloadTensors({ tensors: got.tensors, buffer: gotBuf }), w = payloadTensors({ tensors: want.tensors, buffer: wantBuf });
      expect([...g.keys()], what).toEqual([...w.keys()]);
      for (const [n, x] of w) expect(g.get(n), `${what} ${n}`).toEqual(x);
    };
    same(c.params, c.params.buffer, wire.params, wire.params.buffer, 'params');
    same(c.params, c.adamM, wire.params, wire.adamM, 'adamM');
    same(c.params, c.adamV, wire.params, wire.adamV, 'adamV');
    // the teacher as the run holds it: blocks 0..kT, real shapes
    const tWant = teacherLayout(rc.teacher!, rc.distill!);
    expect(back.teacher!.tensors.map((t) => [t.name, t.shape])).toEqual(tWant.entries.map((e) => [e.name, e.shape]));
    for (const [n, x] of payloadTensors(back.teacher!)) expect(Float64Array.from(x), n).toEqual(teacherFull.get(n));
    expect(back.meta.extra).toMatchObject({ label: 'my run' });
  });

  it('a command-line checkpoint (no data source) is refused with a message', () => {
    const mrc = resolveTrainConfig({ mode: 'mae', model: cfg, batch: 4, lr: 1e-3, totalSteps: 5, seed: 1 });
    const pm = perturbedParams(maeParamLayout(cfg), cfg, 1);
    const bytes = encodeCheckpoint({ meta: { config: mrc, trainer: { step: 1, masking: [1, 2, 3, 4] } }, params: pm, adamM: pm, adamV: pm, teacher: null });
    expect(() => fileToWireCheckpoint(bytes, 'cli.ckpt')).toThrow(CheckpointError);
    expect(() => fileToWireCheckpoint(bytes, 'cli.ckpt')).toThrow(/cli\.ckpt: the checkpoint does not say which data/);
  });
});
