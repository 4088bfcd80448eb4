/**
 * Shared test machinery: one real WebGPU device per test file (Dawn in Node), deterministic
 * random data, named tolerances, comparisons that name the worst element, and the
 * finite-difference check that proves the float64 reference's gradients.
 */
import { afterAll, expect, type TestContext } from 'vitest';
import { acquireNodeGpu } from '../src/gpu/node-device';
import type { Gpu } from '../src/gpu/device';
import type { ReductionVariant } from '../src/gpu/ops/common';
import { createTensor, readback, readbackU32 } from '../src/gpu/buffers';
import { Recorder, type Tensor } from '../src/gpu/kernels';
import { rng as seededRng } from './numerics';
import type { ParamMap } from '../src/engine/init';

let shared: Promise<Gpu> | undefined;

/** The test file's device; it is destroyed after the file's tests. */
export function testGpu(): Promise<Gpu> {
  if (!shared) {
    shared = acquireNodeGpu();
    afterAll(async () => {
      const gpu = await shared!;
      expect(gpu.takeUncapturedErrors()).toEqual([]);
      gpu.destroy();
    });
  }
  return shared;
}

/** The two variants of the row-reduction families (layer norm, attention), for describe.each. */
export const REDUCTION_VARIANTS: readonly ReductionVariant[] = ['workgroup', 'subgroup'];

/**
 * The test file's device for a test of `variant`, or a skip that says why when the device cannot
 * run it; `variants` is the op's own list (attentionVariants, layernormVariants), `needs` what the
 * variant asks of a device.
 */
export async function testGpuForVariant<V extends string>(
  variant: V, variants: (gpu: Gpu) => readonly V[], ctx: TestContext, needs = "the 'subgroups' feature",
): Promise<Gpu> {
  const gpu = await testGpu();
  if (!variants(gpu).includes(variant)) ctx.skip(`the '${variant}' variant needs ${needs}, which ${gpu.adapter.description} lacks`);
  return gpu;
}

export { rng, randn, permutation, TOL, matmulTol, type Tolerance } from './numerics';
import { TOL, type Tolerance } from './numerics';

/** Compares element-wise; on failure reports the worst element, its value and the reference. */
export function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance, what = 'tensor'): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  let worst = -1;
  let worstExcess = 0;
  let bad = 0;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i];
    const r = ref[i];
    const excess = Math.abs(g - r) - (tol.atol + tol.rtol * Math.abs(r));
    if (!(excess <= 0)) {
      bad++;
      // NaN counts as infinitely wrong.
      const e = Number.isNaN(excess) ? Infinity : excess;
      if (worst < 0 || e > worstExcess) {
        worst = i;
        worstExcess = e;
      }
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad}/${ref.length} elements outside atol=${tol.atol} rtol=${tol.rtol}; ` +
        `worst at [${worst}]: got ${got[worst]}, reference ${ref[worst]} (|diff| ${Math.abs(got[worst] - ref[worst]).toExponential(3)})`,
    );
  }
}

/** Uploads float64 data as float32, or integer data as u32. */
export function gpuTensor(gpu: Gpu, data: Float64Array | Uint32Array | number, label = 'test'): Tensor {
  if (typeof data === 'number') return createTensor(gpu.device, data, label);
  const typed = data instanceof Uint32Array ? data : Float32Array.from(data);
  return createTensor(gpu.device, data.length, label, typed);
}

/** Whether two float32 arrays hold the same bits (+0 and −0 differ; NaN equals the same NaN). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Determinism checks: asserts bit-identical outputs; on failure names the first element that differs. */
export function expectSameBits(got: Float32Array, want: Float32Array, what = 'tensor'): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  if (sameBits(got, want)) return;
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length), w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  const i = g.findIndex((x, k) => x !== w[k]);
  throw new Error(`${what}: not bit-identical; first difference at [${i}]: ${got[i]} vs ${want[i]}`);
}

export const read = (gpu: Gpu, t: Tensor): Promise<Float32Array> => readback(gpu.device, t);
export const readU32 = (gpu: Gpu, t: Tensor): Promise<Uint32Array> => readbackU32(gpu.device, t);

/** Records `body` into one command buffer and waits for it. */
export async function run(gpu: Gpu, body: (rec: Recorder) => void): Promise<void> {
  const rec = new Recorder(gpu);
  body(rec);
  await rec.submit();
}

/**
 * Finite-difference check of a float64 reference op. `loss(inputs)` must be a scalar function
 * of the inputs (typically Σ forward(x)·w for a fixed random w); `grads` are the analytic
 * gradients of that scalar. Central differences with h = 1e-6 in float64.
 */
export function checkGradients(
  inputs: Record<string, Float64Array>,
  loss: (inputs: Record<string, Float64Array>) => number,
  grads: Record<string, Float64Array>,
  opts: { h?: number; tol?: Tolerance; maxPerInput?: number } = {},
): void {
  const h = opts.h ?? 1e-6;
  const tol = opts.tol ?? { atol: 1e-7, rtol: 1e-5 };
  for (const [name, x] of Object.entries(inputs)) {
    const g = grads[name];
    expect(g, `analytic gradient for ${name}`).toBeDefined();
    const n = x.length;
    const stride = Math.max(1, Math.floor(n / (opts.maxPerInput ?? 64)));
    const numeric: number[] = [];
    const analytic: number[] = [];
    for (let i = 0; i < n; i += stride) {
      const saved = x[i];
      x[i] = saved + h;
      const up = loss(inputs);
      x[i] = saved - h;
      const down = loss(inputs);
      x[i] = saved;
      numeric.push((up - down) / (2 * h));
      analytic.push(g[i]);
    }
    expectClose(analytic, numeric, tol, `d loss / d ${name} (analytic vs finite differences)`);
  }
}

/** Σ a·b: turns a tensor-valued forward into the scalar the gradient checks need. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Runs `f` with stdout silenced (the CLI commands print progress); `onLine` still sees each line. */
export async function quiet<T>(f: () => Promise<T>, onLine?: (line: string) => void): Promise<T> {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((text: string | Uint8Array) => {
    if (onLine) for (const line of String(text).split('\n')) onLine(line);
    return true;
  }) as typeof process.stdout.write;
  try {
    return await f();
  } finally {
    process.stdout.write = write;
  }
}

/** Every tensor of a parameter table, compared by name. */
export function expectSameParams(got: ParamMap, want: ParamMap, tol: Tolerance, what: string): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, w] of want) expectClose(got.get(name)!, w, tol, `${what} ${name}`);
}

/**
 * Gradients of a mean-reduced loss are of size 1/count, far below TOL.gradient.atol at real
 * sizes, which would make an absolute bound vacuous: scale atol by the largest |reference|.
 */
export function scaledTol(want: ArrayLike<number>, tol: Tolerance): Tolerance {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(want[i]));
  return { atol: tol.atol * Math.max(m, 1e-30), rtol: tol.rtol };
}

/** N class labels in [0, K), seeded. */
export function randomLabels(N: number, K: number, seed: number): Uint32Array {
  const r = seededRng(seed);
  return Uint32Array.from({ length: N }, () => Math.floor(r() * K));
}
