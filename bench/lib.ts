/**
 * Shared pieces of the benchmarks: the device, seeded data, verification against the float64
 * reference, the timing loop, and the JSON writer with the fields every result file carries.
 *
 * Timing. Where the device has `timestamp-query`, a sample is the GPU time between the begin and
 * end timestamps of the kernel's compute passes (summed when a kernel is several passes); else it
 * is the wall-clock time from the start of recording to `queue.onSubmittedWorkDone()`. The wall
 * clock of the same repetitions is kept in both cases as a second figure (it includes the CPU
 * cost of recording and submitting, and the timestamp writes when there are any). Contenders
 * that are compared with each other are timed interleaved, one repetition each in turn, so that
 * load from other processes falls on all of them alike.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireNodeGpu } from '../src/gpu/node-device';
import type { Gpu } from '../src/gpu/device';
import { Recorder, type KernelSpec, type Param, type Tensor } from '../src/gpu/kernels';
import { GpuTimer } from '../src/gpu/timing';
import { collectMatmulShapes, isMatmulProduct, type MatmulUse } from '../src/gpu/autotune';
import { collectFamilyShapes } from '../src/gpu/variant-choices';
import { ourStepContender, type OurTiming } from './peer-core';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

export type TimingMethod = 'gpu-timestamp' | 'wall-clock';

export interface BenchContext {
  gpu: Gpu;
  method: TimingMethod;
  /** Present when method is 'gpu-timestamp'. */
  timer?: GpuTimer;
  warmup: number;
  reps: number;
}

export async function openBench(opts: { warmup: number; reps: number }): Promise<BenchContext> {
  const gpu = await acquireNodeGpu();
  const timer = GpuTimer.available(gpu.device) ? new GpuTimer(gpu.device) : undefined;
  return { gpu, timer, method: timer ? 'gpu-timestamp' : 'wall-clock', ...opts };
}

// ---------------------------------------------------------------------------------------------
// Data

export { rng, randn, permutation } from '../test/numerics';

// ---------------------------------------------------------------------------------------------
// Verification

export { TOL, type Tolerance } from '../test/numerics';
export { compare, combine, type Verification } from './stats';

// ---------------------------------------------------------------------------------------------
// Timing

export interface Sample {
  /** GPU-timestamp milliseconds (undefined when the device has no timestamps). */
  gpuMs?: number;
  /** From the start of recording to queue.onSubmittedWorkDone(), on the CPU clock. */
  wallMs: number;
}

/** Something that can be run once and timed. */
export interface Contender {
  name: string;
  /**
   * One repetition: wall clock from the start of recording to `onSubmittedWorkDone()`, and, when
   * `withTimestamps`, the GPU time of its passes (read back after the wall clock stops).
   */
  timed(withTimestamps: boolean): Promise<Sample>;
}

export interface Timing {
  /** Median over the repetitions, by the context's method. */
  medianMs: number;
  minMs: number;
  samplesMs: number[];
  /** Median wall clock (recording + submit + completion) of the same repetitions. */
  wallMedianMs: number;
  wallSamplesMs: number[];
}

export { median, geomean, round } from './stats';
import { median, round } from './stats';

/**
 * Times the contenders interleaved: `warmup` untimed rounds, then `reps` rounds, each round one
 * repetition of every contender in turn (so load from other processes falls on all alike).
 */
export async function timeInterleaved(ctx: BenchContext, contenders: readonly Contender[]): Promise<Map<string, Timing>> {
  const samples = new Map(contenders.map((c) => [c.name, [] as Sample[]]));
  const ts = ctx.method === 'gpu-timestamp';
  for (let i = 0; i < ctx.warmup; i++) for (const c of contenders) await c.timed(ts);
  for (let i = 0; i < ctx.reps; i++) for (const c of contenders) samples.get(c.name)!.push(await c.timed(ts));
  const out = new Map<string, Timing>();
  for (const c of contenders) {
    const s = samples.get(c.name)!;
    const wall = s.map((x) => x.wallMs);
    const primary = ts ? s.map((x) => x.gpuMs ?? NaN) : wall;
    out.set(c.name, {
      medianMs: round(median(primary)),
      minMs: round(Math.min(...primary)),
      samplesMs: primary.map((x) => round(x)),
      wallMedianMs: round(median(wall)),
      wallSamplesMs: wall.map((x) => round(x)),
    });
  }
  return out;
}

/**
 * A contender for our kernels: `record` records the kernel's dispatches into a Recorder. The GPU
 * figure is the sum of the passes' times (or, `how.timed: 'submission'`, the whole submission's);
 * `onPasses` also receives each repetition's per-pass nanoseconds. (The browser-safe
 * implementation is peer-core.ts's ourStepContender.)
 */
export function ourContender(ctx: BenchContext, name: string, record: (rec: Recorder) => void, onPasses?: (nsByPass: Map<string, number>) => void, how?: OurTiming): Contender {
  return ourStepContender(ctx.gpu, ctx.timer, name, record, onPasses, how);
}

/** One kernel's share of a step: the median over repetitions of its passes' summed GPU time. */
export interface KernelTime {
  /** The passes' label, `shader:entry` (Recorder.dispatch's default). */
  kernel: string;
  ms: number;
  shareOfStep: number;
}

/**
 * Where a step's GPU time goes, from the nanoseconds per pass label of each timed repetition
 * (GpuTimer.read): per kernel the median over repetitions (0 where a repetition lacks it), as a
 * share of `stepMs`; slowest first (ties by name).
 */
export function kernelProfile(reps: readonly Map<string, number>[], stepMs: number): KernelTime[] {
  const kernels = new Set(reps.flatMap((r) => [...r.keys()]));
  return [...kernels]
    .map((kernel) => {
      const ms = median(reps.map((r) => r.get(kernel) ?? 0)) / 1e6;
      return { kernel, ms: round(ms), shareOfStep: round(ms / stepMs, 3) };
    })
    .sort((a, b) => b.ms - a.ms || (a.kernel < b.kernel ? -1 : 1));
}

/** A Recorder that also counts its matmul dispatches by entry point (its timedSpans sizes a timestamp query set). */
export class CountingRecorder extends Recorder {
  readonly matmulEntries = new Map<string, number>();
  override dispatch(...args: Parameters<Recorder['dispatch']>): void {
    const spec = args[0];
    if (isMatmulProduct(spec.shader, spec.entry)) this.matmulEntries.set(spec.entry, (this.matmulEntries.get(spec.entry) ?? 0) + 1);
    super.dispatch(...args);
  }
}

/** Σ 2·M·N·K·count over the matmul products of a recording (collectMatmulShapes). */
const matmulFlops = (uses: readonly MatmulUse[]): number => uses.reduce((s, u) => s + 2 * u.M * u.N * u.K * u.count, 0);

// ---------------------------------------------------------------------------------------------
// FLOPs, counted from what a contender dispatches (bench train's ratios, bench gpu's step efficiency)

/**
 * Attention's products per entry point of shaders/attention.wgsl, in multiply-adds of B·H·T²·hd
 * (×2 for FLOPs): the forward 2 (q·kᵀ, P·v), the backward 4 (dP = dout·vᵀ; dq = dS·k, dk = dSᵀ·q,
 * dv = Pᵀ·dout). Softmax and its backward are element-wise and not counted (as in kernels.json).
 */
const ATTENTION_MACS: Readonly<Record<string, number>> = {
  attention_scores: 1,
  attention_weighted_sum: 1,
  attention_backward_scores: 1,
  attention_backward_qkv: 3,
  // 'subgroup_quads' (shaders/attention_subgroups.wgsl): the same products, written-out blocks.
  attention_scores_quads: 1,
  attention_weighted_sum_quads: 1,
  attention_backward_scores_quads: 1,
  attention_backward_qkv_quads: 3,
};

/**
 * FLOPs (2 per multiply-add) of one attention dispatch, read from its params [B, T, H, hd, …]:
 * 4·B·H·T²·hd for the forward's two dispatches together, 8·B·H·T²·hd for the backward's. Every
 * variant counts (shaders/attention.wgsl, shaders/attention_<variant>.wgsl: the same entry points
 * and params); 0 for any other shader. An attention entry point this table does not know throws,
 * rather than be counted as nothing.
 */
export function attentionDispatchFlops(spec: KernelSpec, params: readonly Param[] | null): number {
  if (spec.shader !== 'attention' && !spec.shader.startsWith('attention_')) return 0;
  const macs = ATTENTION_MACS[spec.entry];
  if (macs === undefined || !params) throw new Error(`bench/lib.ts: attention entry point ${spec.entry} is not in ATTENTION_MACS; say how many products it computes`);
  const [B, T, H, hd] = params as number[];
  return 2 * macs * B * H * T * T * hd;
}

export interface Flops {
  /** Σ 2·M·N·K over every matmul dispatch (the Linear layers forward and backward). */
  matmul: number;
  /** Σ over attention dispatches (attentionDispatchFlops). */
  attention: number;
  total: number;
  /** Dispatches recorded (the passes of a timed run: the two recordings must agree). */
  dispatches: number;
  /** The matmul products, as the tuner lists them (collectMatmulShapes). */
  uses: MatmulUse[];
  /** Per tuned family (layer norm, attention), one shape per class (collectFamilyShapes). */
  familyShapes: Map<string, Map<string, Record<string, number>>>;
}

/** Counts attention FLOPs and dispatches; dispatches nothing (a dry recording, discarded). */
class AttentionCountingRecorder extends Recorder {
  attention = 0;
  override dispatch(spec: KernelSpec, _bindings: readonly (Tensor | undefined)[], params: readonly Param[] | null, workgroups: readonly [number, number?, number?]): void {
    if (workgroups.some((n) => n === 0)) return; // not recorded (Recorder.dispatch)
    this.dispatchCount++;
    this.attention += attentionDispatchFlops(spec, params);
  }
  override copy(): void {}
  override clear(): void {}
}

/**
 * The FLOPs of what `record` dispatches, from a dry recording (nothing is submitted): the matmul
 * products as the tuner lists them (collectMatmulShapes, which reads M, N, K from each matmul
 * dispatch's params), the attention products from the attention dispatches' params. Both
 * recordings run inside both tuners' dry-recording guards (collectMatmulShapes,
 * collectFamilyShapes): a dry recording must fix no variant, or a count made before tuning would
 * pin the untuned fallbacks (layer norm's and attention's 'workgroup') for the device's life.
 */
export function countFlops(gpu: Gpu, record: (rec: Recorder) => void): Flops {
  const att = new AttentionCountingRecorder(gpu, undefined, 'flop-count');
  const { result: uses, shapes: familyShapes } = collectFamilyShapes(() => collectMatmulShapes(gpu, (rec) => {
    record(rec);
    record(att);
  }));
  att.discard();
  const matmul = matmulFlops(uses);
  return { matmul, attention: att.attention, total: matmul + att.attention, dispatches: att.dispatchCount, uses, familyShapes };
}

// ---------------------------------------------------------------------------------------------
// Results

/** The command line as the user typed it (through npm or straight through tsx). */
export function commandLine(): string {
  const args = process.argv.slice(2).join(' ');
  return process.env.npm_lifecycle_event === 'bench' ? `npm run bench -- ${args}` : `tsx bench/run.ts ${args}`;
}

export interface CommonFields {
  adapter: string;
  adapterKind: string;
  command: string;
  date: string;
  timing: {
    method: TimingMethod;
    statistic: 'median';
    warmup: number;
    reps: number;
    description: string;
  };
  environment: { node: string; platform: string; cpus: number };
}

export async function commonFields(ctx: BenchContext, started: Date): Promise<CommonFields> {
  const os = await import('node:os');
  return {
    adapter: ctx.gpu.adapter.description,
    adapterKind: ctx.gpu.adapter.kind,
    command: commandLine(),
    date: started.toISOString(),
    timing: {
      method: ctx.method,
      statistic: 'median',
      warmup: ctx.warmup,
      reps: ctx.reps,
      description:
        ctx.method === 'gpu-timestamp'
          ? 'medianMs: GPU time between the begin and end timestamps of the compute pass(es) of one repetition (timestamp-query), median of reps after warm-up; wallMedianMs: the same repetitions on the CPU clock, from the start of recording through submit to queue.onSubmittedWorkDone (timestamp readback excluded)'
          : 'medianMs: recording + submit + queue.onSubmittedWorkDone on the CPU clock (the adapter has no timestamp-query), median of reps after warm-up',
    },
    environment: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: os.cpus().length },
  };
}

/** bench/results/<name>.json, or <name>.json where the name is a path (has a slash). */
export function writeResults(name: string, body: object): string {
  const path = name.includes('/') ? `${name.replace(/\.json$/, '')}.json` : join(RESULTS_DIR, `${name}.json`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(body, null, 2)}\n`);
  return path;
}

