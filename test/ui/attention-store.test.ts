/**
 * The page's side of 'request-attention' → 'attention' (src/store/train.ts useAttentionStore):
 * a request shows as loading; only the answer to the latest request is taken (an older answer
 * arriving late is ignored); a problem fails it without touching the run.
 */
import { describe, expect, it } from 'vitest';
import { TRAIN_PROTOCOL_VERSION as v, type AttentionMap } from '../../src/protocol/train';
import { receiveTrainMessage, useAttentionStore, useTrainStore } from '../../src/store/train';

const map = (block: number): AttentionMap => ({
  step: 5, request: { model: 'student', block, head: 0, image: 0, tokens: 'all' }, heads: 2, blocks: 2, grid: 2, tokens: 5,
  patchOf: [0, 1, 2, 3], matrix: new Float32Array(25).buffer, cls: new Float32Array(4).buffer, image: { width: 4, height: 4, format: 'rgba8', data: new ArrayBuffer(64) },
});

describe('attention store', () => {
  it('loading → done with the latest request’s map; stale answers ignored; problems fail without ending the run', () => {
    const { requestAttention } = useAttentionStore.getState();
    requestAttention('r1', { model: 'student', block: 0, head: 0, image: 0 });
    expect(useAttentionStore.getState().attention).toMatchObject({ runId: 'r1', status: 'loading' });
    requestAttention('r1', { model: 'student', block: 1, head: 0, image: 0 });
    // The answer to the first request comes late: ignored.
    receiveTrainMessage({ v, type: 'attention', runId: 'r1', request: { model: 'student', block: 0, head: 0, image: 0, tokens: 'all' }, map: map(0) });
    expect(useAttentionStore.getState().attention!.status).toBe('loading');
    receiveTrainMessage({ v, type: 'attention', runId: 'r1', request: { model: 'student', block: 1, head: 0, image: 0, tokens: 'all' }, map: map(1) });
    expect(useAttentionStore.getState().attention).toMatchObject({ status: 'done', map: { request: { block: 1 } } });

    const runBefore = useTrainStore.getState().run;
    requestAttention('r1', { model: 'teacher', block: 0, head: 0, image: 0 });
    receiveTrainMessage({ v, type: 'attention', runId: 'r1', request: { model: 'teacher', block: 0, head: 0, image: 0 }, problem: 'A MAE run has no teacher: choose the student.' });
    expect(useAttentionStore.getState().attention).toMatchObject({ status: 'failed', problem: expect.stringMatching(/no teacher/) });
    expect(useTrainStore.getState().run).toBe(runBefore);
    // Another run's answer: ignored.
    receiveTrainMessage({ v, type: 'attention', runId: 'other', request: { model: 'teacher', block: 0, head: 0, image: 0 }, map: map(0) });
    expect(useAttentionStore.getState().attention!.status).toBe('failed');
  });
});
