/**
 * The studio's GPU worker: owns the WebGPU device, so the page never blocks on GPU work.
 * Today it reports the adapter and runs the kernel self-test; training will live here too.
 */
/// <reference lib="webworker" />
import { GpuError, acquireBrowserGpu, type Gpu } from '../gpu/device';
import { shaderSources } from '../gpu/shader-sources';
import type { FromWorker, ToWorker } from '../protocol/gpu';
import { kernelSelfTest } from './self-test';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (msg: FromWorker): void => scope.postMessage(msg);

let gpu: Promise<Gpu> | null = null;

/** The device, acquired once; a lost device is forgotten so the next request acquires a new one. */
function device(): Promise<Gpu> {
  if (!gpu) {
    const acquiring = acquireBrowserGpu(shaderSources);
    gpu = acquiring;
    acquiring.then(
      (g) => {
        post({ type: 'gpu-ready', adapter: g.adapter });
        void g.lost.then((loss) => {
          if (gpu === acquiring) gpu = null;
          if (loss.reason !== 'destroyed') post({ type: 'gpu-lost', message: loss.message || 'The GPU device was lost.' });
        });
      },
      (e: unknown) => {
        gpu = null;
        const code = e instanceof GpuError ? e.code : 'error';
        post({ type: 'gpu-unavailable', code, message: e instanceof Error ? e.message : String(e) });
      },
    );
  }
  return gpu;
}

scope.onmessage = async (event: MessageEvent<ToWorker>) => {
  const msg = event.data;
  switch (msg.type) {
    case 'probe':
      await device().catch(() => undefined); // reported by device()
      break;
    case 'self-test':
      try {
        post({ type: 'self-test-done', result: await kernelSelfTest(await device()) });
      } catch (e) {
        post({ type: 'self-test-failed', message: e instanceof Error ? e.message : String(e) });
      }
      break;
  }
};
