/**
 * The checkpoint writer: a small module Web Worker that turns the training worker's checkpoints
 * into checkpoint files (src/io/protocol-checkpoint.ts) and keeps them in IndexedDB
 * (src/io/checkpoint-store.ts), so an autosave costs the page only a message (the encoding of a
 * large model's parameters and moments is tens of milliseconds). Driven by src/store/checkpoints.ts:
 *
 *   { id, op: 'save', slot, label, checkpoint, teacher?, history? } → { id, ok: true, step } | { id, ok: false, message }
 *   { id, op: 'file', label, checkpoint, teacher?, history? }        → { id, ok: true, bytes (transferred) } | { id, ok: false, message }
 */
/// <reference lib="webworker" />
import { CheckpointStore, CheckpointStoreError } from '../io/checkpoint-store';
import { wireCheckpointToFile } from '../io/protocol-checkpoint';
import type { Checkpoint, ParamsPayload, StepRecord } from '../protocol/train';

export type ToCheckpointWorker =
  | { id: number; op: 'save'; slot: string; label: string; checkpoint: Checkpoint; teacher?: ParamsPayload; history?: StepRecord[] }
  | { id: number; op: 'file'; label: string; checkpoint: Checkpoint; teacher?: ParamsPayload; history?: StepRecord[] };

export type FromCheckpointWorker = { id: number; ok: true; step?: number; bytes?: ArrayBuffer } | { id: number; ok: false; message: string };

const scope = self as unknown as DedicatedWorkerGlobalScope;
let store: Promise<CheckpointStore> | null = null;

scope.onmessage = async (event: MessageEvent<ToCheckpointWorker>) => {
  const m = event.data;
  try {
    const bytes = wireCheckpointToFile(m.checkpoint, { ...(m.teacher ? { teacher: m.teacher } : {}), ...(m.label ? { label: m.label } : {}), ...(m.history ? { extra: { history: m.history } } : {}) });
    if (m.op === 'file') {
      const buf = bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer as ArrayBuffer : bytes.slice().buffer;
      scope.postMessage({ id: m.id, ok: true, bytes: buf } satisfies FromCheckpointWorker, [buf]);
      return;
    }
    store ??= CheckpointStore.open();
    store.catch(() => (store = null));
    await (await store).save(m.slot, bytes, m.label);
    scope.postMessage({ id: m.id, ok: true, step: m.checkpoint.step } satisfies FromCheckpointWorker);
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    scope.postMessage({ id: m.id, ok: false, message: e instanceof CheckpointStoreError ? text : `The checkpoint at step ${m.checkpoint.step} was not saved: ${text}` } satisfies FromCheckpointWorker);
  }
};
