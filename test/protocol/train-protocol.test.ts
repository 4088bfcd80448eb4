/**
 * The training protocol's messages cross postMessage intact: every kind of message survives a
 * structured clone (and a real MessageChannel) with its ArrayBuffers transferred — detached on
 * the sender, whole on the receiver — and the envelope check refuses what a worker cannot read.
 */
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import {
  RECONSTRUCTION_COLUMNS, TRAIN_PROTOCOL_VERSION, checkToTrainWorker, payloadTensors, transferablesOf,
  type Checkpoint, type FromTrainWorker, type ParamsPayload, type ToTrainWorker, type TrainSpec,
} from '../../src/protocol/train';

const v = TRAIN_PROTOCOL_VERSION;

const model = { imgSize: 28, patchSize: 4, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, normPixLoss: true };
const spec: TrainSpec = { mode: 'mae', model, batch: 8, totalSteps: 30, seed: 1, maskRatio: 0.75, lr: 1e-3 };

function params(): ParamsPayload {
  const f = new Float32Array(128);
  f.forEach((_, i) => (f[i] = i / 7));
  return { tensors: [{ name: 'cls_token', shape: [1, 1, 32], offset: 0, length: 32 }, { name: 'mask_token', shape: [1, 1, 32], offset: 256, length: 32 }], buffer: f.buffer };
}

function checkpoint(): Checkpoint {
  return {
    runId: 'r1', step: 5, data: { kind: 'builtin', id: 'mnist' }, params: params(),
    adamM: new Float32Array(128).fill(0.5).buffer, adamV: new Float32Array(128).fill(0.25).buffer,
    state: { step: 5, masking: [1, 2, 3, 4], source: { seed: 1, epoch: 0, position: 40 } },
    config: { ...spec, teacher: null, distill: null, visible: 12, patches: 49, maskRatio: 0.755, accumSteps: 1, lr: 1e-3, baseLr: null, minLr: 0, warmupSteps: 0, weightDecay: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, clipGrad: null, nanGuard: 'restore' },
  };
}

/** One example of every message type, both ways. */
function examples(): (ToTrainWorker | FromTrainWorker)[] {
  const rgba = new Uint8ClampedArray(4 * 6 * 5).fill(200);
  return [
    { v, type: 'init' },
    { v, type: 'start', runId: 'r1', config: spec, data: { kind: 'builtin', id: 'mnist', augment: 'mae' }, options: { reconEvery: 10, metricsIntervalMs: 100 } },
    { v, type: 'start', runId: 'r2', config: { ...spec, mode: 'dmae' }, data: { kind: 'stored', id: 'ds1', hflip: false }, teacher: { kind: 'params', params: params() }, resume: checkpoint() },
    { v, type: 'pause', runId: 'r1' },
    { v, type: 'resume', runId: 'r1' },
    { v, type: 'stop', runId: 'r1' },
    { v, type: 'request-reconstruction', runId: 'r1' },
    { v, type: 'request-checkpoint', runId: 'r1' },
    { v, type: 'forget-run', runId: 'r1' },
    { v, type: 'debug-lose-device' },
    { v, type: 'ready', adapter: { kind: 'swiftshader', description: 'SwiftShader', features: ['timestamp-query'], limits: { maxBufferSize: 2 ** 28 } } },
    { v, type: 'unavailable', code: 'no-webgpu', message: 'no WebGPU' },
    {
      v, type: 'started', runId: 'r1', config: checkpoint().config, step: 0,
      memory: { parts: { params: 1024, activations: 4096 }, modelBytes: 5000, totalBytes: 5120, largestBufferBytes: 4096 },
      data: { name: 'MNIST', train: 9000, val: 1000, C: 1, H: 28, W: 28, mean: [0.13], std: [0.31] },
      adapter: { kind: 'swiftshader', description: 'SwiftShader', features: [], limits: {} },
    },
    { v, type: 'metrics', runId: 'r1', records: [{ step: 1, epoch: 0.001, loss: 1.5, pix: 1.5, lr: 1e-4, gradNorm: 3, imagesPerSec: 40, elapsedMs: 12 }, { step: 2, epoch: 0.002, loss: NaN, pix: Infinity, distill: [0.5], lr: 2e-4, gradNorm: 3, imagesPerSec: 41, elapsedMs: 30 }] },
    { v, type: 'reconstruction', runId: 'r1', step: 10, image: { width: 6, height: 5, format: 'rgba8', data: rgba.buffer }, rows: 1, columns: [...RECONSTRUCTION_COLUMNS], cell: 1, gap: 0.4, levels: [3, 1, 3, 3], val: { pix: 1.2, loss: 1.2 } },
    { v, type: 'paused', runId: 'r1', step: 7 },
    { v, type: 'resumed', runId: 'r1', step: 7 },
    { v, type: 'checkpoint', runId: 'r1', checkpoint: checkpoint() },
    { v, type: 'stopped', runId: 'r1', reason: 'done', step: 30, elapsedMs: 1234, checkpoint: checkpoint() },
    { v, type: 'error', runId: 'r1', kind: 'device-lost', message: 'lost', step: 12, checkpoint: checkpoint() },
    { v, type: 'error', runId: null, kind: 'internal', message: 'bad message', step: 0 },
  ];
}

/** The message with every ArrayBuffer replaced by its bytes, for comparing before/after a transfer. */
function snapshot(x: unknown): unknown {
  if (x instanceof ArrayBuffer) return { bytes: [...new Uint8Array(x)] };
  if (Array.isArray(x)) return x.map(snapshot);
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, snapshot(y)]));
  return x;
}

describe('train protocol', () => {
  it('every message type round-trips structuredClone with its buffers transferred', () => {
    const all = examples();
    expect(new Set(all.map((m) => m.type)).size).toBe(19);
    for (const msg of all) {
      const before = snapshot(msg);
      const transfer = transferablesOf(msg);
      const got = structuredClone(msg, { transfer });
      expect(snapshot(got), msg.type).toEqual(before);
      for (const b of transfer) expect(b.byteLength, `${msg.type}: a transferred buffer is detached on the sender`).toBe(0);
    }
  });

  it('lists exactly the payload buffers: parameters, both moments, pixels; none for control messages', () => {
    const [init, start, startDmae] = examples();
    expect(transferablesOf(init)).toEqual([]);
    expect(transferablesOf(start)).toEqual([]);
    expect(transferablesOf(startDmae)).toHaveLength(4); // teacher params, checkpoint params, m, v
    const rec = examples().find((m) => m.type === 'reconstruction')!;
    expect(transferablesOf(rec)).toHaveLength(1);
    const stopped = examples().find((m) => m.type === 'stopped')!;
    expect(transferablesOf(stopped)).toHaveLength(3);
    // Sending the same message twice: the second time there is nothing left to transfer.
    structuredClone(stopped, { transfer: transferablesOf(stopped) });
    expect(transferablesOf(stopped)).toEqual([]);
  });

  it('crosses a real MessageChannel (postMessage) with transfer', async () => {
    const { port1, port2 } = new MessageChannel();
    const msg = examples().find((m) => m.type === 'checkpoint')! as Extract<FromTrainWorker, { type: 'checkpoint' }>;
    const before = snapshot(msg);
    const got = new Promise<FromTrainWorker>((resolve) => port2.once('message', resolve));
    port1.postMessage(msg, transferablesOf(msg));
    const received = (await got) as typeof msg;
    port1.close();
    expect(snapshot(received)).toEqual(before);
    expect(msg.checkpoint.params.buffer.byteLength).toBe(0);
    const t = payloadTensors(received.checkpoint.params);
    expect(t.get('mask_token')![0]).toBeCloseTo(64 / 7, 5);
    expect(t.get('cls_token')!.length).toBe(32);
  });

  it('refuses envelopes a worker cannot read, naming why', () => {
    expect(checkToTrainWorker({ v, type: 'init' })).toBeNull();
    expect(checkToTrainWorker(examples()[1])).toBeNull();
    expect(checkToTrainWorker(null)).toMatch(/not an object/);
    expect(checkToTrainWorker({ v, type: 'train' })).toMatch(/unknown message type "train"/);
    expect(checkToTrainWorker({ v: 99, type: 'pause', runId: 'r' })).toMatch(/version 99.*reload/);
    expect(checkToTrainWorker({ v, type: 'pause' })).toMatch(/needs a runId/);
    expect(checkToTrainWorker({ v, type: 'start', runId: 'r', data: { kind: 'builtin', id: 'mnist' } })).toMatch(/needs a config/);
  });

  it('payloadTensors refuses a tensor outside its buffer', () => {
    expect(() => payloadTensors({ tensors: [{ name: 'w', shape: [10], offset: 16, length: 10 }], buffer: new ArrayBuffer(32) })).toThrow(/"w".*outside/);
  });
});
