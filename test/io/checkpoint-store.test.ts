/** Browser checkpoint storage on fake-indexeddb: save/replace/list/resume offer/load/remove; quota and failed saves. */
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { maeParamLayout } from '../../src/engine/params';
import { decodeCheckpoint, encodeCheckpoint } from '../../src/io/checkpoint';
import { CheckpointStore, CheckpointStoreError } from '../../src/io/checkpoint-store';
import { perturbedParams } from '../model-fixtures';

const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
const p = perturbedParams(maeParamLayout(cfg), cfg, 1);
const ckpt = (step: number, savedAt: string, totalSteps = 10) => encodeCheckpoint({
  meta: {
    savedAt,
    config: { mode: 'mae', model: cfg, teacher: null, distill: null, maskRatio: 0.75, visible: 4, patches: 16, batch: 4, accumSteps: 1, lr: 1e-3, baseLr: null, minLr: 0, warmupSteps: 0, totalSteps, weightDecay: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, clipGrad: null, seed: 1, nanGuard: 'restore', precision: 'f32' },
    trainer: { step, masking: [1, 2, 3, step] },
  },
  params: p, adamM: p, adamV: p, teacher: null,
});

describe('CheckpointStore', () => {
  it('keeps the latest checkpoint per run across a reload, offers unfinished runs, loads exact bytes', async () => {
    const factory = new IDBFactory();
    const store = await CheckpointStore.open({ factory });
    await store.save('run-a', ckpt(3, '2026-11-30T10:00:00Z'), 'tiny MAE');
    const a5 = ckpt(5, '2026-11-30T10:05:00Z');
    await store.save('run-a', a5, 'tiny MAE'); // replaces step 3
    await store.save('run-b', ckpt(10, '2026-11-30T09:00:00Z')); // finished
    store.close();
    const again = await CheckpointStore.open({ factory }); // a reload
    const list = await again.list();
    expect(list.map((c) => [c.runId, c.step, c.resumable])).toEqual([['run-a', 5, true], ['run-b', 10, false]]);
    expect(list[0]).toMatchObject({ label: 'tiny MAE', mode: 'mae', totalSteps: 10, bytes: a5.byteLength });
    expect((await again.resumable()).map((c) => c.runId)).toEqual(['run-a']);
    const back = await again.load('run-a');
    expect(back).toEqual(a5);
    expect(decodeCheckpoint(back).meta.trainer.step).toBe(5);
    await again.remove('run-a');
    await expect(again.load('run-a')).rejects.toThrow(/No checkpoint of run run-a/);
    again.close();
  });

  it('a full quota is reported (kind quota), and a failed save keeps the previous checkpoint', async () => {
    const factory = new IDBFactory();
    const first = ckpt(2, '2026-11-30T10:00:00Z');
    const ok = await CheckpointStore.open({ factory });
    await ok.save('r', first);
    ok.close();
    const full = await CheckpointStore.open({ factory, estimate: async () => ({ usage: 1000, quota: 2000 }) });
    const err = await full.save('r', ckpt(4, '2026-11-30T10:01:00Z')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointStoreError);
    expect((err as CheckpointStoreError).kind).toBe('quota');
    expect((err as Error).message).toMatch(/quota is full.*previous checkpoint of this run is unchanged/);
    full.close();
    const failing = await CheckpointStore.open({ factory, beforeDataWrite: () => { throw new DOMException('disk gone', 'QuotaExceededError'); } });
    await expect(failing.save('r', ckpt(6, '2026-11-30T10:02:00Z'))).rejects.toThrow(/quota is full/);
    expect((await failing.list()).map((c) => c.step)).toEqual([2]); // the meta write was rolled back too
    expect(await failing.load('r')).toEqual(first);
    failing.close();
  });
});
