/**
 * The peer: TensorFlow.js's WebGPU backend, run on OUR GPUDevice (same adapter, same process,
 * same queue) under its own backend name, so that its figures and ours differ only by kernels.
 *
 * How it is timed (the same rules as ours, see lib.ts):
 *  - GPU timestamps: `tf.time(() => tf.matMul(...))`. tfjs's backend then gives each program its
 *    own compute pass with begin/end timestamp writes, exactly as our Recorder does per dispatch;
 *    `kernelMs` is the sum over the programs of one matMul.
 *  - Wall clock, of the same repetitions: from the `tf.matMul` call (tfjs records its dispatch,
 *    uniforms and bind group, and submits) to `queue.onSubmittedWorkDone()`; the timestamp
 *    readback comes after, as for ours. Without timestamps: tf.matMul, then end tfjs's open
 *    compute pass and `backend.submitQueue()`, then `onSubmittedWorkDone()`.
 *  - Inputs are uploaded once, before the warm-up; the output tensor is disposed after each
 *    repetition, outside the timed interval (tfjs's buffer manager then reuses its buffer).
 * Verification reads the output with `await tensor.data()`.
 */
import type { Gpu } from '../src/gpu/device';
import type { MatmulLayout } from '../src/gpu/ops/matmul';
import type { BenchContext, Contender } from './lib';

export const PEER_BACKEND = 'dmae-peer-tfjs-webgpu';

type Tf = typeof import('@tensorflow/tfjs-core');
type TfTensor = import('@tensorflow/tfjs-core').Tensor;
type WebGPUBackend = import('@tensorflow/tfjs-backend-webgpu').WebGPUBackend;

export interface TfjsMatmul {
  contender: Contender;
  /** Runs once and reads the result back (for verification). */
  result(): Promise<Float32Array>;
  /** The tfjs programs one run dispatches (e.g. MatMulPackedProgram), by class name. */
  programs(): Promise<string[]>;
  dispose(): void;
}

export interface TfjsPeer {
  name: 'tfjs-webgpu';
  version: string;
  backendName: string;
  timedAs: string;
  /** tf.matMul on [M,K]·[K,N] in our layout convention ('nt': b is [N,K]; 'tn': a is [K,M]). */
  matmul(name: string, a: Float64Array, b: Float64Array, M: number, N: number, K: number, layout: MatmulLayout): TfjsMatmul;
}

/**
 * tfjs-backend-webgpu refuses to construct unless `navigator.gpu` exists (Node 20 has no
 * `navigator`). Give it a GPU object from Dawn's `webgpu` package, the same package our
 * node-device.ts uses; tfjs only tests for its presence, the device it runs on is ours.
 */
async function provideNavigatorGpu(): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return;
  const { create } = await import('webgpu');
  const gpu = create([]); // kept alive by the global: Dawn crashes if it is collected
  if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
}

export async function createTfjsPeer(ctx: BenchContext): Promise<TfjsPeer> {
  const gpu: Gpu = ctx.gpu;
  await provideNavigatorGpu();
  const tf: Tf = await import('@tensorflow/tfjs-core');
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  // The package registers its kernels for the backend name 'webgpu'; register the same kernels
  // for ours, whose factory wraps our device instead of requesting a new adapter.
  if (!tf.findBackendFactory(PEER_BACKEND)) {
    for (const k of tf.getKernelsForBackend('webgpu')) tf.registerKernel({ ...k, backendName: PEER_BACKEND });
    tf.registerBackend(PEER_BACKEND, () => new WebGPUBackend(gpu.device), 0);
  }
  if (!(await tf.setBackend(PEER_BACKEND))) throw new Error(`tfjs could not initialise backend ${PEER_BACKEND}`);
  await tf.ready();
  const backend = tf.backend() as WebGPUBackend;
  if (backend.device !== gpu.device) throw new Error('tfjs peer is not on our device');

  // tfjs batches dispatches in an open compute pass until 15 are recorded; end it and submit now.
  const flush = (): void => {
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.submitQueue();
  };

  return {
    name: 'tfjs-webgpu',
    version: tf.version_core,
    backendName: PEER_BACKEND,
    timedAs:
      'tf.matMul with transposeA/transposeB for the layouts, on our GPUDevice; GPU figure = tf.time() kernelMs (per-program timestamp-query passes, as ours per dispatch); ' +
      'wall figure = from the tf.matMul call (record + submit) to queue.onSubmittedWorkDone(), timestamp readback excluded as for ours; same warm-up and reps, interleaved with ours; output disposed outside the timed interval; inputs uploaded before warm-up',
    matmul(name, a, b, M, N, K, layout) {
      const ta = tf.tensor2d(Float32Array.from(a), layout === 'tn' ? [K, M] : [M, K]);
      const tb = tf.tensor2d(Float32Array.from(b), layout === 'nt' ? [N, K] : [K, N]);
      const once = (): TfTensor => tf.matMul(ta, tb, layout === 'tn', layout === 'nt');
      return {
        contender: {
          name,
          async timed(withTimestamps) {
            let out: TfTensor | undefined;
            const t0 = performance.now();
            // backend.time() records and submits synchronously, then awaits its query readback.
            const info = withTimestamps
              ? tf.time(() => {
                  out = once();
                })
              : undefined;
            if (!info) {
              out = once();
              flush();
            }
            await gpu.device.queue.onSubmittedWorkDone();
            const wallMs = performance.now() - t0;
            const gpuMs = info ? ((await info).kernelMs as number) : undefined;
            out!.dispose();
            return { wallMs, gpuMs };
          },
        },
        async programs() {
          let out: TfTensor | undefined;
          const info = await tf.time(() => {
            out = once();
          });
          out!.dispose();
          const extra = (info as { getExtraProfileInfo?: () => string }).getExtraProfileInfo?.() ?? '';
          return extra.split(', ').map((x) => x.split(':')[0]).filter(Boolean);
        },
        async result() {
          const out = once();
          const data = (await out.data()) as Float32Array;
          out.dispose();
          return data;
        },
        dispose() {
          ta.dispose();
          tb.dispose();
        },
      };
    },
  };
}
