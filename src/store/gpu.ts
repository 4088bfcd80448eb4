/**
 * The GPU slice of the studio's store, and the one bridge to the GPU worker: the page sends
 * requests through here and the worker's replies land here as state. Components read the
 * store; none of them talks to the worker or to WebGPU.
 */
import { create } from 'zustand';
import type { AdapterSummary, FromWorker, SelfTestResult, ToWorker } from '../protocol/gpu';

export type GpuStatus =
  | { status: 'detecting' }
  | { status: 'ready'; adapter: AdapterSummary }
  | { status: 'unavailable'; code: string; message: string }
  | { status: 'lost'; message: string };

export type SelfTestState =
  | { status: 'idle' }
  | { status: 'running' }
  | { status: 'done'; result: SelfTestResult }
  | { status: 'failed'; message: string };

export interface GpuSlice {
  gpu: GpuStatus;
  selfTest: SelfTestState;
  runSelfTest: () => void;
}

let worker: Worker | null = null;

function send(msg: ToWorker): void {
  worker?.postMessage(msg);
}

export const useGpuStore = create<GpuSlice>()((set) => ({
  gpu: { status: 'detecting' },
  selfTest: { status: 'idle' },
  runSelfTest: () => {
    set({ selfTest: { status: 'running' } });
    send({ type: 'self-test' });
  },
}));

function receive(msg: FromWorker): void {
  const set = useGpuStore.setState;
  switch (msg.type) {
    case 'gpu-ready':
      set({ gpu: { status: 'ready', adapter: msg.adapter } });
      break;
    case 'gpu-unavailable':
      set({ gpu: { status: 'unavailable', code: msg.code, message: msg.message } });
      break;
    case 'gpu-lost':
      set({ gpu: { status: 'lost', message: msg.message } });
      break;
    case 'self-test-done':
      set({ selfTest: { status: 'done', result: msg.result } });
      break;
    case 'self-test-failed':
      set({ selfTest: { status: 'failed', message: msg.message } });
      break;
  }
}

/** Starts the GPU worker (once) and asks it which adapter it gets. */
export function startGpuWorker(): void {
  if (worker) return;
  try {
    worker = new Worker(new URL('../worker/gpu.worker.ts', import.meta.url), { type: 'module', name: 'dmae-gpu' });
  } catch (e) {
    useGpuStore.setState({ gpu: { status: 'unavailable', code: 'no-worker', message: `This browser cannot start a module Web Worker: ${(e as Error).message}` } });
    return;
  }
  worker.onmessage = (event: MessageEvent<FromWorker>) => receive(event.data);
  worker.onerror = (event) => {
    const message = `The GPU worker stopped: ${event.message || 'it failed to load'}.`;
    useGpuStore.setState((s) => ({
      gpu: s.gpu.status === 'detecting' ? { status: 'unavailable', code: 'worker-error', message } : s.gpu,
      selfTest: s.selfTest.status === 'running' ? { status: 'failed', message } : s.selfTest,
    }));
  };
  send({ type: 'probe' });
}
