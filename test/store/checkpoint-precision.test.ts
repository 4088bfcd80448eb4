/**
 * Precision through the studio's checkpoints: a mixed run's resolved configuration asks the worker
 * for the same run again (and an old one, with no precision, for f32); the checkpoint file keeps
 * the precision and the loss scaler's state, a resumed run sends both back to the worker, and a
 * file with an impossible scaler state or precision is refused by name.
 */
import { IDBFactory } from 'fake-indexeddb';
import { beforeEach, describe, expect, it } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { resolveTrainConfig, trainParamLayout, type ResolvedTrainConfig } from '../../src/engine/trainer';
import { CheckpointStore } from '../../src/io/checkpoint-store';
import { fileToWireCheckpoint } from '../../src/io/protocol-checkpoint';
import type { Checkpoint } from '../../src/protocol/train';
import { checkpointFile, resumeFile, setCheckpointStorageForTests, specOfResolved, useCheckpointsStore } from '../../src/store/checkpoints';
import { useTrainStore } from '../../src/store/train';
import { randn } from '../helpers';

const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
const mixed = resolveTrainConfig({ mode: 'mae', model: cfg, batch: 4, lr: 1e-3, totalSteps: 12, seed: 3, precision: 'mixed' });
const lossScale = { scale: 8192, goodSteps: 3, skippedSteps: 2 };

function wire(runId: string, step: number, c: ResolvedTrainConfig = mixed, state: Partial<Checkpoint['state']> = { lossScale }): Checkpoint {
  const l = trainParamLayout(c);
  const buf = (seed: number) => Float32Array.from(randn(l.size, seed)).buffer as ArrayBuffer;
  return {
    runId, step, config: c, data: { kind: 'builtin', id: 'mnist' },
    params: { tensors: l.entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.start * 4, length: e.length })), buffer: buf(step) },
    adamM: buf(step + 100), adamV: buf(step + 200), state: { step, masking: [1, 2, 3, step], ...state },
  };
}

beforeEach(() => {
  const factory = new IDBFactory();
  setCheckpointStorageForTests(() => CheckpointStore.open({ factory }));
  useCheckpointsStore.setState({ offers: [], lastSaved: null, saveError: null, resumeError: null, autosaveEvery: 4 });
});

describe('precision in the studio\'s checkpoints', () => {
  it('a mixed run\'s resolved configuration resolves back to itself; one saved before mixed precision asks for f32', () => {
    expect(specOfResolved(mixed).precision).toBe('mixed');
    expect(resolveTrainConfig({ ...specOfResolved(mixed), model: cfg } as never)).toEqual(mixed);
    const { precision: _, ...old } = mixed;
    expect(specOfResolved(old as never).precision).toBe('f32');
  });

  it('the file keeps the precision and the loss scaler; a resumed run sends both to the worker', async () => {
    const back = fileToWireCheckpoint(await checkpointFile('run-m', wire('run-m', 5))).checkpoint;
    expect(back.config.precision).toBe('mixed');
    expect(back.state.lossScale).toEqual(lossScale);
    const bytes = await checkpointFile('run-m', wire('run-m', 5));
    const id = await resumeFile(new File([bytes as Uint8Array<ArrayBuffer>], 'run-m.safetensors'), {} as never);
    expect(id).not.toBeNull();
    const run = useTrainStore.getState().run!;
    expect(run.request.config.precision).toBe('mixed');
  });

  it('refuses a file whose loss scaler state or precision is impossible, by name', async () => {
    const refused = async (ck: Checkpoint) => {
      const bytes = await checkpointFile(ck.runId, ck);
      return () => fileToWireCheckpoint(bytes, 'bad.safetensors');
    };
    expect(await refused(wire('run-0', 5, mixed, { lossScale: { scale: 0, goodSteps: 0, skippedSteps: 0 } }))).toThrow(/bad\.safetensors.*loss scaler state/);
    expect(await refused(wire('run-1', 5, mixed, { lossScale: { scale: 2, goodSteps: -1, skippedSteps: 0 } }))).toThrow(/loss scaler state/);
    expect(await refused(wire('run-2', 5, { ...mixed, precision: 'bf16' as never }))).toThrow(/precision "bf16" is neither f32 nor mixed/);
    // An f32 run has no scaler state; a file without one reads as before.
    const f32 = resolveTrainConfig({ mode: 'mae', model: cfg, batch: 4, lr: 1e-3, totalSteps: 12, seed: 3 });
    expect(fileToWireCheckpoint(await checkpointFile('run-3', wire('run-3', 5, f32, {}))).checkpoint.state).not.toHaveProperty('lossScale');
  });
});
