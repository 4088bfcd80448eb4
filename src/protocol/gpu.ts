/**
 * Messages between the studio page and its GPU worker. Plain data only (structured clone);
 * imports nothing of the project, so both sides depend on it and on nothing of each other.
 */

/** What the page shows of an adapter (the worker fills it from src/gpu's AdapterReport). */
export interface AdapterSummary {
  kind: 'hardware' | 'lavapipe' | 'swiftshader' | 'software';
  description: string;
  features: string[];
  limits: Record<string, number>;
}

/** One GPU matmul compared with the same product in float64. */
export interface SelfTestCase {
  name: string;
  M: number;
  N: number;
  K: number;
  /** max |gpu − float64| over the output. */
  maxError: number;
  /** The largest error allowed at the worst element: atol + rtol·|ref| (the tests' `reduction` preset). */
  allowed: number;
  passed: boolean;
}

export interface SelfTestResult {
  passed: boolean;
  cases: SelfTestCase[];
  /** Wall time of the whole self-test in the worker, upload to readback. */
  ms: number;
}

export type ToWorker = { type: 'probe' } | { type: 'self-test' };

export type FromWorker =
  | { type: 'gpu-ready'; adapter: AdapterSummary }
  /** `code` is the GpuError code ('no-webgpu', 'no-adapter', 'limits', …); `message` says what to do. */
  | { type: 'gpu-unavailable'; code: string; message: string }
  | { type: 'gpu-lost'; message: string }
  | { type: 'self-test-done'; result: SelfTestResult }
  | { type: 'self-test-failed'; message: string };
