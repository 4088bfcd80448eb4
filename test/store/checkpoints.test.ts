/** The studio's checkpoint autosave and resume logic (src/store/checkpoints.ts) on fake-indexeddb. */
import { IDBFactory } from 'fake-indexeddb';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { teacherLayout } from '../../src/engine/dmae';
import { maeParamLayout } from '../../src/engine/params';
import { resolveTrainConfig, trainParamLayout } from '../../src/engine/trainer';
import { CheckpointStore } from '../../src/io/checkpoint-store';
import { fileToWireCheckpoint } from '../../src/io/protocol-checkpoint';
import { payloadTensors, type Checkpoint, type ParamsPayload, type StepRecord, type TrainSpec } from '../../src/protocol/train';
import {
  autosave, checkpointFile, discardStored, loadOffers, resumeFile, setCheckpointStorageForTests, specOfResolved, useCheckpointsStore, watchCheckpoints,
} from '../../src/store/checkpoints';
import { requestOf, startStudioRun, useRunsStore } from '../../src/store/runs';
import { trainMetrics, useTrainStore, type RunView } from '../../src/store/train';
import { randn } from '../helpers';

const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
const rc = resolveTrainConfig({ mode: 'mae', model: cfg, batch: 4, lr: 1e-3, totalSteps: 12, seed: 3 });
const layout = trainParamLayout(rc);

function wire(runId: string, step: number, c = rc): Checkpoint {
  const l = trainParamLayout(c);
  const buf = (seed: number) => Float32Array.from(randn(l.size, seed)).buffer as ArrayBuffer;
  return {
    runId, step, config: c, data: { kind: 'builtin', id: 'mnist' },
    params: { tensors: l.entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.start * 4, length: e.length })), buffer: buf(step) },
    adamM: buf(step + 100), adamV: buf(step + 200), state: { step, masking: [1, 2, 3, step] },
  };
}

const rec = (step: number): StepRecord => ({ step, epoch: 0, loss: 1, pix: 1, lr: 0, gradNorm: 0, imagesPerSec: 0, elapsedMs: 0 });

let factory: IDBFactory;
beforeEach(() => {
  factory = new IDBFactory();
  setCheckpointStorageForTests(() => CheckpointStore.open({ factory }));
  useCheckpointsStore.setState({ offers: [], lastSaved: null, saveError: null, resumeError: null, autosaveEvery: 4 });
});

describe('checkpoints in the studio', () => {
  it('autosaves into the run\'s slot; the resume offer lists unfinished runs; discard removes one', async () => {
    await autosave('run-a', wire('run-a', 4));
    expect(useCheckpointsStore.getState()).toMatchObject({ lastSaved: { runId: 'run-a', slot: 'run-a', step: 4 }, saveError: null });
    await autosave('run-a', wire('run-a', 8)); // replaces step 4
    await autosave('run-b', wire('run-b', 12)); // finished: not offered
    await loadOffers();
    expect(useCheckpointsStore.getState().offers.map((o) => [o.runId, o.step, o.totalSteps])).toEqual([['run-a', 8, 12]]);
    const s = await CheckpointStore.open({ factory });
    const back = fileToWireCheckpoint(await s.load('run-a')).checkpoint;
    s.close();
    const orig = wire('run-a', 8);
    const v = payloadTensors({ tensors: back.params.tensors, buffer: back.adamV }), v0 = payloadTensors({ tensors: orig.params.tensors, buffer: orig.adamV });
    for (const [name, t] of v0) expect(v.get(name), name).toEqual(t); // the file packs tensors without the arena's gaps
    expect(back.state).toEqual({ step: 8, masking: [1, 2, 3, 8] });
    await discardStored('run-a');
    expect(useCheckpointsStore.getState().offers).toEqual([]);
    await loadOffers();
    expect(useCheckpointsStore.getState().offers).toEqual([]);
  });

  it('a full quota is reported, never silent', async () => {
    setCheckpointStorageForTests(() => CheckpointStore.open({ factory, estimate: async () => ({ usage: 1000, quota: 1024 }) }));
    await autosave('run-q', wire('run-q', 4));
    expect(useCheckpointsStore.getState().saveError).toMatch(/storage quota is full/);
    expect(useCheckpointsStore.getState().lastSaved).toBeNull();
  });

  it('a corrupt file is refused with a message naming it; nothing starts', async () => {
    const file = new File([new TextEncoder().encode('not a checkpoint')], 'broken.safetensors');
    expect(await resumeFile(file, {} as never)).toBeNull();
    expect(useCheckpointsStore.getState().resumeError).toMatch(/^“broken\.safetensors” cannot be resumed from: /);
    expect(useTrainStore.getState().run).toBeNull();
  });

  it('a file resumes with its curve so far; the run starts from the checkpoint\'s step and configuration', async () => {
    trainMetrics.append('run-h', [rec(1), rec(2), rec(3), rec(4), rec(5), rec(6)]); // 6 came after the checkpoint was taken
    const bytes = await checkpointFile('run-h', wire('run-h', 5));
    const id = await resumeFile(new File([bytes as Uint8Array<ArrayBuffer>], 'run-h.safetensors'), {} as never);
    expect(id).not.toBeNull();
    expect(trainMetrics.records(id!).map((r) => r.step)).toEqual([1, 2, 3, 4, 5]);
    const run = useTrainStore.getState().run!;
    expect(run).toMatchObject({ runId: id, step: 5, request: { config: { totalSteps: 12, seed: 3, visible: rc.visible, lr: rc.lr }, data: { kind: 'builtin', id: 'mnist' } } });
    expect(useCheckpointsStore.getState().resumeError).toBeNull();
  });

  it('the resolved configuration resolves back to itself (a resumed run trains the same thing)', async () => {
    expect(resolveTrainConfig({ ...specOfResolved(rc), model: cfg } as never)).toEqual(rc);
    expect(fileToWireCheckpoint(await checkpointFile('run-z', wire('run-z', 5))).checkpoint.step).toBe(5);
  });

  it('asks the worker for a checkpoint every N steps and on pause, and keeps what it sends', async () => {
    const ask = vi.fn();
    const run: RunView = { runId: 'run-w', status: 'running', request: { config: { totalSteps: 12 } as TrainSpec, data: { kind: 'builtin', id: 'mnist' } }, step: 0 };
    useTrainStore.setState({ run, requestCheckpoint: ask });
    watchCheckpoints();
    trainMetrics.append('run-w', [rec(1), rec(2), rec(3)]);
    expect(ask).toHaveBeenCalledTimes(0);
    trainMetrics.append('run-w', [rec(4)]);
    expect(ask).toHaveBeenCalledTimes(1);
    trainMetrics.append('run-w', [rec(5), rec(6), rec(7)]);
    expect(ask).toHaveBeenCalledTimes(1);
    trainMetrics.append('run-w', [rec(8), rec(9)]);
    expect(ask).toHaveBeenCalledTimes(2);
    trainMetrics.append('run-w', [rec(10), rec(11), rec(12)]); // the end saves its own
    expect(ask).toHaveBeenCalledTimes(2);
    useTrainStore.setState({ run: { ...useTrainStore.getState().run!, status: 'paused' } });
    expect(ask).toHaveBeenCalledTimes(3);
    useTrainStore.setState({ run: { ...useTrainStore.getState().run!, checkpoint: wire('run-w', 9) } });
    await vi.waitFor(() => expect(useCheckpointsStore.getState().lastSaved).toEqual({ runId: 'run-w', slot: 'run-w', step: 9 }));
  });

  it('a DMAE run whose teacher is a studio run saves the teacher\'s kept weights (read once); its file resumes with them', async () => {
    const tcfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 }, { embedDim: 48, depth: 3, numHeads: 3 });
    const drc = resolveTrainConfig({ mode: 'dmae', model: cfg, teacher: tcfg, batch: 4, lr: 1e-3, totalSteps: 12, seed: 3 });
    // The teacher run's final weights as the runs store keeps them (a whole MAE: more than the run needs).
    const tl = maeParamLayout(tcfg);
    const tflat = Float32Array.from(randn(tl.size, 77));
    const kept: ParamsPayload = { tensors: tl.entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.start * 4, length: e.length })), buffer: tflat.buffer as ArrayBuffer };
    const weights = vi.fn(async (id: string) => (id === 'teacher-run' ? { id, model: tcfg, params: kept } : null));
    const original = useRunsStore.getState().weights;
    useRunsStore.setState({ weights });
    try {
      const id = startStudioRun({ config: specOfResolved(drc), data: { kind: 'builtin', id: 'mnist' }, teacher: { kind: 'run', runId: 'teacher-run' } }, {} as never);
      await autosave(id, wire(id, 4, drc));
      await autosave(id, wire(id, 8, drc));
      expect(useCheckpointsStore.getState()).toMatchObject({ lastSaved: { runId: id, step: 8 }, saveError: null });
      expect(weights).toHaveBeenCalledTimes(1); // once per run, not on every autosave
      const s = await CheckpointStore.open({ factory });
      const bytes = await s.load(id);
      s.close();
      const resumed = await resumeFile(new File([bytes as Uint8Array<ArrayBuffer>], 'dmae.safetensors'), {} as never);
      expect(useCheckpointsStore.getState().resumeError).toBeNull();
      expect(resumed).not.toBeNull();
      const t = requestOf(resumed!)!.request.teacher;
      expect(t?.kind).toBe('params');
      const got = payloadTensors((t as { kind: 'params'; params: ParamsPayload }).params);
      const want = payloadTensors(kept);
      const names = teacherLayout(drc.teacher!, drc.distill!).entries.map((e) => e.name);
      expect([...got.keys()]).toEqual(names);
      for (const n of names) expect(got.get(n), n).toEqual(want.get(n));
      expect(useTrainStore.getState().run).toMatchObject({ runId: resumed, step: 8, request: { config: { mode: 'dmae' } } });
    } finally {
      useRunsStore.setState({ weights: original });
    }
  });
});
