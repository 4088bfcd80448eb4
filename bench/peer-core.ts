/**
 * What the Node twin (bench/step-peer.ts) and the Chromium page (bench/page/main.ts) of the peer
 * benchmark share, browser-safe (no Node imports): the ViT matmul shapes, the contenders for a
 * whole training step (ours, and TfjsMae on a tfjs backend), how each backend is waited for,
 * the tfjs WebGPU backend on OUR device, and the comparison rule.
 *
 * Waiting. A repetition's wall clock runs from the call that records/enqueues the work to the
 * moment the backend says it is done: ours and tfjs-webgpu `queue.onSubmittedWorkDone()` (tfjs's
 * open compute pass is ended and its command encoder submitted first: it batches dispatches);
 * tfjs-webgl a blocking one-pixel readPixels (tfjsWebglBackend says why). Readbacks are outside.
 */
import type { Contender, Sample, Timing } from './lib';
import { numPatches, patchDim, type MaeConfig } from '../src/engine/config';
import type { Gpu } from '../src/gpu/device';
import { createTensor, readback } from '../src/gpu/buffers';
import { Recorder, type TimedSpan } from '../src/gpu/kernels';
import { defaultMatmulVariant, matmul, type MatmulLayout } from '../src/gpu/ops/matmul';
import { matmul as refMatmul } from '../src/ref/matmul';
import type { GpuTimer } from '../src/gpu/timing';
import { mulberry32 } from '../src/core/random';
import { geomean as geomeanOf, round } from './stats';
import { TOL, type Tolerance } from '../test/numerics';
import type { Tf, TfjsMae } from './tfjs-mae';

export type { Contender, Sample, Timing };
type TfTensor = import('@tensorflow/tfjs-core').Tensor;

/** The step of bench/train.ts: ViT-Tiny at 32×32×3, p = 4; AdamW at this lr, step 1, no clipping. */
export const GEOMETRY = { imgSize: 32, patchSize: 4, inChans: 3 } as const;
export const STEP_OPTS = { lr: 1.5e-4, step: 1 };

// ---------------------------------------------------------------------------------------------
// Backends

export interface TfjsBackend {
  /** 'tfjs-webgpu' | 'tfjs-webgl' (the JSON's impl names). */
  impl: string;
  /** The name the backend is registered under in tfjs. */
  backendName: string;
  /** Ends and submits what tfjs has batched, and resolves when the device has done it. */
  finish(): Promise<void>;
  /** Whether tf.time() gives per-program GPU times on this backend. */
  kernelTimes: boolean;
}

/**
 * Registers tfjs-backend-webgpu's kernels under `name` with a factory that wraps OUR device (as
 * bench/tfjs-peer.ts does in Node), so the peer runs on the same adapter, device and queue.
 */
export function registerTfjsWebgpuOn(tf: Tf, WebGPUBackend: typeof import('@tensorflow/tfjs-backend-webgpu').WebGPUBackend, device: GPUDevice, name: string): void {
  if (tf.findBackendFactory(name)) return;
  for (const k of tf.getKernelsForBackend('webgpu')) tf.registerKernel({ ...k, backendName: name });
  tf.registerBackend(name, () => new WebGPUBackend(device), 0);
}

/** The finish of a tfjs WebGPU backend registered under `backendName` on `device`. */
export function tfjsWebgpuBackend(tf: Tf, backendName: string, device: GPUDevice): TfjsBackend {
  return {
    impl: 'tfjs-webgpu',
    backendName,
    kernelTimes: device.features.has('timestamp-query'),
    async finish() {
      const b = tf.findBackend(backendName) as import('@tensorflow/tfjs-backend-webgpu').WebGPUBackend;
      // tfjs keeps up to 15 dispatches in an open pass before it submits: end it and submit now.
      b.ensureCommandEncoderReady();
      b.endComputePassEncoder();
      b.submitQueue();
      await device.queue.onSubmittedWorkDone();
    },
  };
}

/**
 * tfjs-backend-webgl (its own WebGL2 context). Chromium's gl.finish() does not wait for the GPU
 * (measured: 0.1 ms for a matmul), and polling a WebGL2 fence needs a task per poll: a loop of
 * them keeps one CPU core busy, which a CPU-emulated GPU (SwiftShader, on this machine's two cores)
 * needs for the work itself — measured, it made the WebGL work about 1.7× slower. So the wait is
 * a blocking readPixels of one pixel from a private 1×1 framebuffer: Chromium's GPU process (ANGLE)
 * finishes every command before it, and the page's thread sleeps meanwhile (measured: as long as
 * a fence polled every timer task, without the timer's 4 ms granularity).
 */
export function tfjsWebglBackend(tf: Tf, backendName = 'webgl', kernelTimes = false): TfjsBackend {
  let target: { fb: WebGLFramebuffer; pixel: Uint8Array } | undefined;
  return {
    impl: 'tfjs-webgl',
    backendName,
    kernelTimes,
    async finish() {
      const gl = (tf.findBackend(backendName) as import('@tensorflow/tfjs-backend-webgl').MathBackendWebGL).getGPGPUContext().gl as WebGL2RenderingContext;
      const bound = gl.getParameter(gl.FRAMEBUFFER_BINDING) as WebGLFramebuffer | null;
      if (!target) {
        const texBound = gl.getParameter(gl.TEXTURE_BINDING_2D) as WebGLTexture | null;
        const tex = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, tex);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
        gl.bindTexture(gl.TEXTURE_2D, texBound); // tfjs's state as it was
        const fb = gl.createFramebuffer();
        if (!tex || !fb) throw new Error('tfjs-webgl: could not create the 1×1 framebuffer the wait reads');
        gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
        gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
        target = { fb, pixel: new Uint8Array(4) };
      }
      gl.bindFramebuffer(gl.FRAMEBUFFER, target.fb);
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, target.pixel);
      gl.bindFramebuffer(gl.FRAMEBUFFER, bound);
    },
  };
}

/** Makes `b` tfjs's active backend (cheap once initialised); done before a timed interval starts. */
export async function activate(tf: Tf, b: TfjsBackend): Promise<void> {
  if (tf.getBackend() !== b.backendName && !(await tf.setBackend(b.backendName))) throw new Error(`tfjs could not initialise backend ${b.backendName}`);
}

const kernelMsOf = (info: { kernelMs: number | { error: string } }): number | undefined => (typeof info.kernelMs === 'number' ? info.kernelMs : undefined);

// ---------------------------------------------------------------------------------------------
// Whole-step contenders

/** How ourStepContender times: what the timer spans (Recorder's TimedSpan), and `repeat` recordings per submission. */
export interface OurTiming {
  /** 'dispatch' (the default): each dispatch its own timed pass, a profile; 'submission': the whole submission as the engine runs it. */
  timed?: TimedSpan;
  /** Records `record` this many times into the one submission; the figures are per recording. */
  repeat?: number;
}

/**
 * Our step: recorded into one Recorder and submitted once (as bench/lib.ts's ourContender).
 * With timestamps the GPU figure is the sum of the timed spans (the timer must hold every one):
 * every dispatch's pass, or with `timed: 'submission'` the whole submission; `onPasses` also
 * receives each repetition's nanoseconds per label.
 */
export function ourStepContender(gpu: Gpu, timer: GpuTimer | undefined, name: string, record: (rec: Recorder) => void, onPasses?: (nsByPass: Map<string, number>) => void, how: OurTiming = {}): Contender {
  const repeat = how.repeat ?? 1;
  return {
    name,
    async timed(withTimestamps) {
      const ts = withTimestamps && timer !== undefined;
      const t0 = performance.now();
      const rec = new Recorder(gpu, ts ? timer : undefined, name, how.timed);
      for (let i = 0; i < repeat; i++) record(rec);
      rec.submitNoWait();
      await gpu.device.queue.onSubmittedWorkDone();
      const wallMs = (performance.now() - t0) / repeat;
      if (!ts) return { wallMs };
      const byPass = await timer.read();
      onPasses?.(byPass);
      let ns = 0;
      for (const v of byPass.values()) ns += v;
      return { wallMs, gpuMs: ns / 1e6 / repeat };
    },
  };
}

/**
 * The tfjs step (TfjsMae.step: tf.variableGrads + AdamW) on `b`. Without timestamps the backend
 * runs as it normally does (batched submissions) and only the wall clock is kept. With them it
 * runs under tf.time(): tfjs then gives every program its own pass and submission and reads each
 * pass's timestamps back, so that repetition's wall clock is not the normal one (the GPU figure
 * is the sum of the programs' times).
 */
export function tfjsStepContender(tf: Tf, b: TfjsBackend, model: TfjsMae, name: string): Contender {
  return {
    name,
    async timed(withTimestamps) {
      await activate(tf, b);
      let loss: TfTensor | undefined;
      const t0 = performance.now();
      const info = withTimestamps && b.kernelTimes
        ? tf.time(() => {
            loss = model.step();
          })
        : undefined;
      if (!info) loss = model.step();
      await b.finish();
      const wallMs = performance.now() - t0;
      const gpuMs = info ? kernelMsOf((await info) as never) : undefined;
      loss!.dispose();
      return { wallMs, gpuMs };
    },
  };
}

/** The loss of one untimed tfjs step (compiles its programs; the caller compares it with ours). */
export async function tfjsFirstStepLoss(tf: Tf, b: TfjsBackend, model: TfjsMae): Promise<number> {
  await activate(tf, b);
  const loss = model.step();
  const v = (await loss.data())[0];
  loss.dispose();
  await b.finish();
  return v;
}

// ---------------------------------------------------------------------------------------------
// The matmul shapes of a ViT MAE step

export interface LinearShape {
  layer: string;
  R: number;
  inF: number;
  outF: number;
  /** false where no dX is needed (the patch embedding's input is the image). */
  dx: boolean;
}

/**
 * Every Linear layer of a MAE step on N images of V visible patches: rows R = N·L (patch
 * embedding), N·(1+V) (encoder, decoder_embed), N·(1+L) (decoder). At ViT-Tiny, 32×32×3, p = 4,
 * N = 64, V = 16 these are bench/kernels.ts's LINEARS.
 */
export function vitLinearShapes(cfg: MaeConfig, N: number, V: number): LinearShape[] {
  const L = numPatches(cfg), P = patchDim(cfg), D = cfg.embedDim, Dd = cfg.decoderEmbedDim;
  const rEnc = N * (1 + V), rDec = N * (1 + L), hid = cfg.mlpRatio * D, hidD = cfg.mlpRatio * Dd;
  return [
    { layer: 'patch_embed', R: N * L, inF: P, outF: D, dx: false },
    { layer: 'enc_qkv', R: rEnc, inF: D, outF: 3 * D, dx: true },
    { layer: 'enc_proj', R: rEnc, inF: D, outF: D, dx: true },
    { layer: 'enc_fc1', R: rEnc, inF: D, outF: hid, dx: true },
    { layer: 'enc_fc2', R: rEnc, inF: hid, outF: D, dx: true },
    { layer: 'decoder_embed', R: rEnc, inF: D, outF: Dd, dx: true },
    { layer: 'dec_qkv', R: rDec, inF: Dd, outF: 3 * Dd, dx: true },
    { layer: 'dec_proj', R: rDec, inF: Dd, outF: Dd, dx: true },
    { layer: 'dec_fc1', R: rDec, inF: Dd, outF: hidD, dx: true },
    { layer: 'dec_fc2', R: rDec, inF: hidD, outF: Dd, dx: true },
    { layer: 'dec_pred', R: rDec, inF: Dd, outF: P, dx: true },
  ];
}

export interface MatmulCase {
  /** e.g. 'nt_enc_qkv' */
  id: string;
  layer: string;
  layout: MatmulLayout;
  role: string;
  M: number;
  N: number;
  K: number;
  /** float32-representable inputs: a[M,K] ('tn': [K,M]), b[K,N] ('nt': [N,K]). */
  a: Float64Array;
  b: Float64Array;
}

/** The three products of each Linear: nt forward y = x·Wᵀ, nn backward dX = dY·W, tn backward dW = dYᵀ·X. */
export function matmulCases(shapes: readonly LinearShape[], seed = 1000): MatmulCase[] {
  const u = mulberry32(seed);
  const rand = (n: number): Float64Array => Float64Array.from({ length: n }, () => Math.fround(2 * u() - 1));
  const cases: MatmulCase[] = [];
  for (const { layer, R, inF, outF, dx } of shapes) {
    const geo: Array<[MatmulLayout, string, number, number, number]> = [['nt', 'forward y = x·Wᵀ', R, outF, inF]];
    if (dx) geo.push(['nn', 'backward dX = dY·W', R, inF, outF]);
    geo.push(['tn', 'backward dW = dYᵀ·X', outF, inF, R]);
    for (const [layout, role, M, N, K] of geo) cases.push({ id: `${layout}_${layer}`, layer, layout, role, M, N, K, a: rand(M * K), b: rand(K * N) });
  }
  return cases;
}

/**
 * Our side of a matmul case: its float64 answer, the inputs and output on the GPU, the variant
 * the engine picks for it, the recording of the product, its result, and the buffers' release.
 */
export function ourMatmulCase(gpu: Gpu, c: MatmulCase) {
  const { M, N, K, layout } = c;
  const want = new Float64Array(M * N);
  refMatmul(want, c.a, c.b, null, M, N, K, layout, false);
  const a = createTensor(gpu.device, c.a.length, 'peer-a', Float32Array.from(c.a));
  const b = createTensor(gpu.device, c.b.length, 'peer-b', Float32Array.from(c.b));
  const out = createTensor(gpu.device, M * N, 'peer-c');
  return {
    want,
    variant: defaultMatmulVariant(gpu, layout, M, N, K),
    record: (rec: Recorder): void => matmul(rec, out, a, b, null, M, N, K, layout, false),
    result: (): Promise<Float32Array> => readback(gpu.device, out),
    destroy: (): void => [a, b, out].forEach((t) => t.buffer.destroy()),
  };
}

/** Sums of K float32 products: the matmul tests' tolerance (atol grows as √K). */
export const matmulTol = (K: number): Tolerance => ({ atol: TOL.reduction.atol * Math.sqrt(K), rtol: TOL.reduction.rtol });

/**
 * A tfjs matMul in our layout convention on `b` ('nt': transposeB, 'tn': transposeA). `contender`
 * times one product per wait; `batched(calls)` times `calls` products made back to back before
 * one wait (as a model's forward does: the per-wait cost paid once per `calls` products), on the
 * same operands.
 */
export function tfjsMatmulContender(tf: Tf, b: TfjsBackend, name: string, c: MatmulCase): { contender: Contender; batched(calls: number): Contender; result(): Promise<Float32Array>; dispose(): void } {
  let ta: TfTensor | undefined, tb: TfTensor | undefined;
  const ready = async (): Promise<void> => {
    await activate(tf, b);
    ta ??= tf.tensor2d(Float32Array.from(c.a), c.layout === 'tn' ? [c.K, c.M] : [c.M, c.K]);
    tb ??= tf.tensor2d(Float32Array.from(c.b), c.layout === 'nt' ? [c.N, c.K] : [c.K, c.N]);
  };
  const once = (): TfTensor => tf.matMul(ta!, tb!, c.layout === 'tn', c.layout === 'nt');
  const timing = (calls: number): Contender => ({
    name,
    async timed(withTimestamps): Promise<Sample> {
      await ready();
      const outs: TfTensor[] = [];
      const all = (): void => {
        for (let i = 0; i < calls; i++) outs.push(once());
      };
      const t0 = performance.now();
      const info = withTimestamps && b.kernelTimes ? tf.time(all) : undefined;
      if (!info) all();
      await b.finish();
      const wallMs = performance.now() - t0;
      const gpuMs = info ? kernelMsOf((await info) as never) : undefined;
      for (const out of outs) out.dispose();
      return { wallMs, gpuMs };
    },
  });
  return {
    contender: timing(1),
    batched: timing,
    async result() {
      await ready();
      const out = once();
      const data = (await out.data()) as Float32Array;
      out.dispose();
      return data;
    },
    dispose() {
      ta?.dispose();
      tb?.dispose();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Comparison

/** time(other) / time(ours): above 1, ours is faster (bench/kernels.json's convention). */
export const speedup = (oursMs: number, otherMs: number): number => round(otherMs / oursMs);

/** The geometric mean, rounded as the result files keep it. */
export const geomean = (xs: readonly number[]): number => round(geomeanOf(xs));

/** The targets (bench/README.md, "TensorFlow.js peers"), and whether a measured ratio meets them. */
export const TARGETS = {
  matmul_vs_tfjs_webgpu: 5,
  matmul_vs_tfjs_webgl: 1.5,
  step_vs_tfjs_webgpu: 5,
  step_vs_tfjs_webgl: 1,
} as const;

export function targetReport(ratios: Record<string, number | undefined>): Record<string, { target: string; measured: number | null; met: boolean | null }> {
  const out: Record<string, { target: string; measured: number | null; met: boolean | null }> = {};
  for (const [k, t] of Object.entries(TARGETS)) {
    const m = ratios[k];
    out[k] = { target: t === 1 ? '> 1 (faster)' : `≥ ${t}`, measured: m ?? null, met: m === undefined ? null : t === 1 ? m > 1 : m >= t };
  }
  return out;
}
