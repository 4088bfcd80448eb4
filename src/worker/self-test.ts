/**
 * The kernel self-test: a few matmuls on this device, each compared element by element with the
 * same product computed in float64 by the reference (src/ref/matmul). It is a test that ships
 * with the page, so the reference is imported here as the tests import it.
 */
import type { Gpu } from '../gpu/device';
import { Recorder } from '../gpu/kernels';
import { createTensor, readback } from '../gpu/buffers';
import { matmul, type MatmulLayout, type MatmulVariant } from '../gpu/ops/matmul';
import * as ref from '../ref/matmul';
import type { SelfTestCase, SelfTestResult } from '../protocol/gpu';

interface Case {
  name: string;
  M: number;
  N: number;
  K: number;
  layout: MatmulLayout;
  variant: MatmulVariant;
}

// Odd sizes (no multiple of any tile) for both variants, and one ViT-Tiny Linear layer.
const CASES: Case[] = [
  { name: 'matmul tiled, odd sizes, bias', M: 67, N: 45, K: 129, layout: 'nn', variant: 'tiled' },
  { name: 'matmul blocked, odd sizes, bias', M: 67, N: 45, K: 129, layout: 'nn', variant: 'blocked' },
  { name: 'Linear x·Wᵀ+b (ViT-Tiny qkv)', M: 68, N: 576, K: 192, layout: 'nt', variant: 'tiled' },
];

// The kernel tests' `reduction` preset, with atol grown as √K for sums of K float32 terms.
const ATOL = 2e-5;
const RTOL = 2e-4;

/** Seeded values in [-1, 1), exactly representable in float32 (mulberry32). */
function randomF32(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = 2 * (((t ^ (t >>> 14)) >>> 0) / 4294967296) - 1;
  }
  return out;
}

async function runCase(gpu: Gpu, c: Case, seed: number): Promise<SelfTestCase> {
  const { M, N, K } = c;
  const a = randomF32(M * K, seed);
  const b = randomF32(K * N, seed + 1);
  const bias = randomF32(N, seed + 2);
  const dev = gpu.device;
  const tensors = [createTensor(dev, M * N, 'self-test c'), createTensor(dev, a.length, 'self-test a', a), createTensor(dev, b.length, 'self-test b', b), createTensor(dev, N, 'self-test bias', bias)];
  const [tc, ta, tb, tbias] = tensors;
  try {
    const rec = new Recorder(gpu, undefined, `self-test ${c.name}`);
    matmul(rec, tc, ta, tb, tbias, M, N, K, c.layout, false, c.variant);
    await rec.submit();
    const got = await readback(dev, tc);

    const want = new Float64Array(M * N);
    ref.matmul(want, Float64Array.from(a), Float64Array.from(b), Float64Array.from(bias), M, N, K, c.layout, false);
    const atol = ATOL * Math.sqrt(K);
    let maxError = 0;
    let allowed = atol;
    let passed = true;
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(got[i] - want[i]);
      const bound = atol + RTOL * Math.abs(want[i]);
      if (!(err <= bound)) passed = false; // NaN fails too
      if (err > maxError || Number.isNaN(err)) {
        maxError = err;
        allowed = bound;
      }
    }
    return { name: c.name, M, N, K, maxError, allowed, passed };
  } finally {
    for (const t of tensors) t.buffer.destroy();
  }
}

export async function kernelSelfTest(gpu: Gpu): Promise<SelfTestResult> {
  const t0 = performance.now();
  const cases: SelfTestCase[] = [];
  for (const [i, c] of CASES.entries()) cases.push(await runCase(gpu, c, 1000 + 10 * i));
  const uncaptured = gpu.takeUncapturedErrors();
  if (uncaptured.length) throw new Error(`WebGPU validation errors during the self-test: ${uncaptured.join('; ')}`);
  return { passed: cases.every((c) => c.passed), cases, ms: performance.now() - t0 };
}
