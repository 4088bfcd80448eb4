/**
 * The training worker: a dedicated module Web Worker that owns a WebGPU device and runs one
 * training run at a time, driven by the messages of src/protocol/train.ts. The logic is
 * src/worker/train-session.ts (tested in Node); this file gives it the browser's pieces: the
 * GPU (acquireBrowserGpu over the bundled shaders), the datasets (the built-in MNIST fetched from
 * the page's own server, generated Shapes, or one kept in IndexedDB) and postMessage with the
 * payloads' ArrayBuffers transferred.
 */
/// <reference lib="webworker" />
import { loadBuiltin } from '../data/builtin';
import { DatasetStore } from '../data/store-idb';
import { shapesOptionsFor } from '../engine/run';
import { acquireBrowserGpu } from '../gpu/device';
import { shaderSources } from '../gpu/shader-sources';
import { transferablesOf, type FromTrainWorker } from '../protocol/train';
import { createTrainSession } from './train-session';

const scope = self as unknown as DedicatedWorkerGlobalScope;

const session = createTrainSession(
  {
    acquireGpu: (needs) => acquireBrowserGpu(shaderSources, needs),
    async loadDataset(data, model) {
      if (data.kind === 'builtin') return loadBuiltin(data.id, { baseUrl: import.meta.env.BASE_URL, shapes: shapesOptionsFor(model) });
      const store = await DatasetStore.open();
      try {
        return await store.load(data.id);
      } finally {
        store.close();
      }
    },
    // A software adapter (SwiftShader) allocates from system memory: keep a run to half of it.
    memoryBudget(adapter) {
      const gib = (scope.navigator as WorkerNavigator & { deviceMemory?: number }).deviceMemory;
      return adapter.kind !== 'hardware' && gib ? 0.5 * gib * 2 ** 30 : undefined;
    },
  },
  (msg: FromTrainWorker) => scope.postMessage(msg, transferablesOf(msg)),
);

scope.onmessage = (event: MessageEvent<unknown>) => {
  void session.handle(event.data);
};
