/**
 * The browser's checkpoints as files: the training worker's protocol Checkpoint (parameters,
 * AdamW moments, trainer state, resolved configuration, data source — src/protocol/train.ts)
 * to and from the one-file safetensors checkpoint of checkpoint.ts, which the studio keeps in
 * IndexedDB (checkpoint-store.ts) and offers for download/upload. The DMAE teacher travels in the
 * file too, so an uploaded checkpoint resumes on its own. Runs in the worker (it imports the
 * engine's tables); the page only moves the bytes.
 */
import { teacherLayout } from '../engine/dmae';
import type { ParamMap } from '../engine/init';
import type { ResolvedTrainConfig } from '../engine/trainer';
import { trainParamLayout } from '../engine/trainer';
import type { Checkpoint as WireCheckpoint, DataSpec, ParamsPayload } from '../protocol/train';
import { payloadTensors } from '../protocol/train';
import { CheckpointError, decodeCheckpoint, encodeCheckpoint, type CheckpointMeta } from './checkpoint';

const mapOf = (p: ParamsPayload, buffer: ArrayBuffer = p.buffer): ParamMap => {
  const out: ParamMap = new Map();
  for (const [n, v] of payloadTensors({ tensors: p.tensors, buffer })) out.set(n, Float64Array.from(v));
  return out;
};

/** A protocol Checkpoint (and the DMAE teacher's parameters) as one checkpoint file. */
export function wireCheckpointToFile(ck: WireCheckpoint, opts: { teacher?: ParamsPayload; dataset?: CheckpointMeta['dataset']; label?: string; extra?: Record<string, unknown> } = {}): Uint8Array {
  return encodeCheckpoint({
    meta: {
      config: ck.config as ResolvedTrainConfig,
      trainer: ck.state,
      dataset: opts.dataset,
      extra: { ...opts.extra, runId: ck.runId, data: ck.data, ...(opts.label ? { label: opts.label } : {}) },
    },
    params: mapOf(ck.params), adamM: mapOf(ck.params, ck.adamM), adamV: mapOf(ck.params, ck.adamV),
    teacher: opts.teacher ? mapOf(opts.teacher) : null,
  });
}

/** Packs maps of one table into payloads with the same offsets (as the worker's arenas give them). */
function payloads(names: { name: string; shape: number[]; length: number }[], ...maps: ParamMap[]): { tensors: ParamsPayload['tensors']; buffers: ArrayBuffer[] } {
  let at = 0;
  const tensors = names.map((e) => {
    const t = { name: e.name, shape: [...e.shape], offset: at * 4, length: e.length };
    at += e.length;
    return t;
  });
  const buffers = maps.map((m) => {
    const f = new Float32Array(at);
    for (const t of tensors) f.set(m.get(t.name)!, t.offset / 4);
    return f.buffer;
  });
  return { tensors, buffers };
}

/**
 * A checkpoint file (downloaded, uploaded or from IndexedDB) as what the worker's `start.resume`
 * takes, with the teacher's parameters for a DMAE run. Throws CheckpointError/SafetensorsError
 * naming the problem.
 */
export function fileToWireCheckpoint(bytes: Uint8Array, file = 'checkpoint'): { checkpoint: WireCheckpoint; teacher: ParamsPayload | null; meta: CheckpointMeta } {
  const ck = decodeCheckpoint(bytes, file);
  const extra = ck.meta.extra ?? {};
  const data = extra.data as DataSpec | undefined;
  if (!data || typeof data !== 'object' || !('kind' in data)) throw new CheckpointError(file, 'the checkpoint does not say which data it was trained on (saved by the command line? resume it with `npm run dmae -- train --resume`).');
  const layout = trainParamLayout(ck.meta.config);
  const { tensors, buffers } = payloads(layout.entries, ck.params, ck.adamM, ck.adamV);
  let teacher: ParamsPayload | null = null;
  const c = ck.meta.config;
  if (ck.teacher && c.teacher && c.distill) {
    const t = payloads(teacherLayout(c.teacher, c.distill).entries, ck.teacher);
    teacher = { tensors: t.tensors, buffer: t.buffers[0] };
  }
  const checkpoint: WireCheckpoint = {
    runId: typeof extra.runId === 'string' ? extra.runId : `resumed-${Date.now().toString(36)}`,
    step: ck.meta.trainer.step,
    config: ck.meta.config,
    data,
    params: { tensors, buffer: buffers[0] },
    adamM: buffers[1],
    adamV: buffers[2],
    state: ck.meta.trainer,
  };
  return { checkpoint, teacher, meta: ck.meta };
}
