/**
 * The training worker's logic, apart from the Worker global so that Node can drive it on real
 * WebGPU (test/protocol/train-session.test.ts): it reads ToTrainWorker messages, runs the
 * Trainer, and posts FromTrainWorker messages (src/protocol/train.ts says what each means).
 * src/worker/train.worker.ts wraps it with the browser's GPU, datasets and postMessage.
 *
 * A run trains in slices (`Trainer.train({ until })` up to the next reconstruction or snapshot);
 * `shouldStop` is checked before every step, and every step awaits the GPU's readback, so a
 * pause, stop or request is seen within one step. Requests are served between slices, in the
 * run's own loop, so nothing else touches the model while it trains.
 *
 * Evaluations ('evaluate': k-NN, linear probe or fine-tuning of the encoder on the run's dataset,
 * src/engine/evaluate.ts) are served the same way, from the parameters read back between two
 * steps, with progress messages; an ended run is evaluated from its kept final parameters and
 * dataset, another from the parameters the page sends. The live k-NN monitor (RunOptions.knnEvery)
 * ends a slice every N steps and measures the encoder on a fixed subset (KnnMonitor, its own
 * buffers, the parameters copied on the GPU): the run's numbers are the same with and without it.
 *
 * Attention maps ('request-attention') are served the same way: a forward of one validation image
 * through blocks 0..b in a scratch arena over the model's own parameters (src/engine/attention-probe.ts),
 * the student's or the DMAE teacher's. An ended run (one of the last ENDED_KEPT) answers for its
 * student from the final parameters kept for `teacher: { kind: 'run' }`.
 *
 * Failures, each reported once as an `error` with what the run has so far:
 * - a lost device: every GPU wait of the run races the device's `lost` promise; the checkpoint
 *   is the last periodic snapshot (a lost device cannot be read back);
 * - out of memory: the memory plan against the adapter's buffer limits and the caller's budget
 *   before anything is allocated, then the Trainer built inside 'out-of-memory' and
 *   'validation' error scopes;
 * - divergence: the Trainer's NaN guard restores the last good step, which is read back;
 * - an impossible configuration or dataset: refused before any GPU work, with the engine's message.
 */
import type { ImageDataset } from '../data/dataset';
import { DatasetError } from '../data/errors';
import { numPatches, type MaeConfig } from '../engine/config';
import { DmaeModel } from '../engine/dmae';
import { headMatrix, probeAttention, type ProbeModel } from '../engine/attention-probe';
import { KnnMonitor, evaluateEncoder, evaluationClasses, type EvaluateOptions, type EvaluateResult } from '../engine/evaluate';
import type { ParamMap } from '../engine/init';
import { precisionProblem, uploadParamMap } from '../engine/mae';
import { maeParamLayout } from '../engine/params';
import { limitsNeededFor, makeRunData, planExceedsLimits, reconstructValidation, rgbToRgba, type RunData, type ValidationSet } from '../engine/run';
import { Trainer, formatBytes, resolveTrainConfig, trainMemoryPlan, type MemoryPlan, type ResolvedTrainConfig, type StepMetrics, type TrainConfig, type TrainerState } from '../engine/trainer';
import { Arena, readback } from '../gpu/buffers';
import { GpuError, type AdapterReport, type Gpu, type LimitsNeeded } from '../gpu/device';
import type { AdapterSummary } from '../protocol/gpu';
import {
  RECONSTRUCTION_COLUMNS, TRAIN_PROTOCOL_VERSION, checkToTrainWorker, payloadTensors,
  type AttentionMap, type AttentionRequestSpec, type Checkpoint, type DataSpec, type EvaluateRequestSpec, type EvaluationProgressSpec, type EvaluationResultSpec,
  type FromTrainWorker, type ParamsPayload, type ResolvedTrainSpec, type StepRecord, type ToTrainWorker, type TrainErrorKind, type TrainSpec,
} from '../protocol/train';

// The protocol's plain specs are the engine's configurations (checked here, where both are known).
const specIsConfig = (s: TrainSpec): TrainConfig => s;
const resolvedIsSpec = (c: ResolvedTrainConfig): ResolvedTrainSpec => c;
void specIsConfig;
void resolvedIsSpec;

export interface TrainSessionEnv {
  /** A device with at least these limits (the browser's acquireBrowserGpu, Node's acquireNodeGpu). */
  acquireGpu(needs: LimitsNeeded): Promise<Gpu>;
  /** The images of a run (the model's size and channels are for generated data). */
  loadDataset(data: DataSpec, model: MaeConfig): Promise<ImageDataset>;
  /** GPU bytes a run may take on this adapter, when known (a software adapter shares system memory). */
  memoryBudget?(adapter: AdapterReport): number | undefined;
}

export type PostTrainMessage = (msg: FromTrainWorker) => void;

/** A message to the page without its version (added when posted). */
type Unversioned = FromTrainWorker extends infer M ? (M extends unknown ? Omit<M, 'v'> : never) : never;
type Msg<T extends FromTrainWorker['type']> = Omit<Extract<FromTrainWorker, { type: T }>, 'v'>;
type StartMsg = Extract<ToTrainWorker, { type: 'start' }>;
type EvaluateMsg = Extract<ToTrainWorker, { type: 'evaluate' }>;

const summary = (a: AdapterReport): AdapterSummary => ({ kind: a.kind, description: a.description, features: [...a.features], limits: { ...a.limits } });
const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A run's failure with its protocol kind. */
class RunFailure extends Error {
  constructor(readonly kind: TrainErrorKind, message: string) {
    super(message);
  }
}

class DeviceLost extends Error {}

/** The ParamsPayload of an arena's raw contents (one buffer, the layout's offsets). */
function payloadOf(entries: readonly { name: string; shape: number[]; start: number; length: number }[], flat: Float32Array): ParamsPayload {
  const buffer = flat.byteOffset === 0 && flat.byteLength === flat.buffer.byteLength ? (flat.buffer as ArrayBuffer) : flat.slice().buffer;
  return { tensors: entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.start * 4, length: e.length })), buffer };
}

function paramMapOf(p: ParamsPayload): ParamMap {
  const out: ParamMap = new Map();
  for (const [name, v] of payloadTensors(p)) out.set(name, Float64Array.from(v));
  return out;
}

const copyPayload = (p: ParamsPayload): ParamsPayload => ({ tensors: p.tensors.map((t) => ({ ...t, shape: [...t.shape] })), buffer: p.buffer.slice(0) });
const copyCheckpoint = (c: Checkpoint): Checkpoint => ({ ...c, params: copyPayload(c.params), adamM: c.adamM.slice(0), adamV: c.adamV.slice(0) });

/** What an ended run keeps for attention maps: its validation images and sizes (its parameters are in Session.kept). */
interface EndedRun {
  val: ValidationSet;
  batch: number;
  visible: number;
  step: number;
  /** The run's data, for evaluations of its final parameters: loaded again, except for the latest ended run, which keeps it. */
  data: DataSpec;
  dataset?: ImageDataset;
}

const EVAL_METHODS = new Set(['knn', 'linprobe', 'finetune']);

/** The classes an evaluation of this dataset reports on; 0 when it has no labels. */
const classesOf = (ds: ImageDataset): number => (ds.labels ? evaluationClasses(ds).K : 0);

/** The engine's options of an evaluation request, or the problem with it. */
function evaluateOptions(req: EvaluateRequestSpec): EvaluateOptions | string {
  if (!req || !EVAL_METHODS.has(req.method)) return `the method ${JSON.stringify(req?.method)} is not knn, linprobe or finetune`;
  for (const k of ['maxTrain', 'maxVal', 'k', 'steps', 'batch'] as const) {
    const v = req[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) return `${k} ${v} must be a whole number ≥ 1`;
  }
  if (req.batch !== undefined && req.method !== 'knn' && req.batch < 2) return 'a batch of at least 2 is needed (BatchNorm statistics)';
  if (req.lr !== undefined && !(req.lr > 0)) return `lr ${req.lr} must be > 0`;
  if (req.pool !== undefined && req.pool !== 'cls' && req.pool !== 'mean') return `pool ${JSON.stringify(req.pool)} must be cls or mean`;
  return {
    method: req.method, maxTrain: req.maxTrain, maxVal: req.maxVal, pool: req.pool, k: req.k, steps: req.steps, batch: req.batch, lr: req.lr, seed: req.seed,
  };
}

/** The protocol's plain result (the engine's, less the model and the training log) at a step. */
export function evaluationResultSpec(r: EvaluateResult, step: number): EvaluationResultSpec {
  return {
    method: r.method, step, accuracy: r.accuracy, count: r.count, perClass: r.perClass.map((c) => ({ ...c })), confusion: r.confusion.map((row) => [...row]),
    classNames: [...r.classNames], options: { ...r.options }, data: { ...r.data }, ...(r.valLoss !== undefined ? { valLoss: r.valLoss } : {}), seconds: r.seconds,
  };
}

/**
 * One evaluation: the encoder in `params` on `ds`, progress posted at most every 200 ms (and at
 * each phase's end), the answer posted once. A lost device is thrown (the caller knows the run);
 * every other failure, and any GPU error it left, is the answer's problem.
 */
async function evaluationAnswer(
  gpu: Gpu, model: MaeConfig, params: () => Promise<ParamMap>, ds: ImageDataset, step: number, req: EvaluateRequestSpec,
  post: (progress: EvaluationProgressSpec) => void, wait: <T>(p: Promise<T>) => Promise<T>, isLost: (e: unknown) => boolean,
  takeErrors: () => string[],
): Promise<{ result?: EvaluationResultSpec; problem?: string }> {
  const opts = evaluateOptions(req);
  if (typeof opts === 'string') return { problem: `No evaluation: ${opts}.` };
  if (!ds.labels) {
    return { problem: `${ds.name} has no labels, so there is nothing to measure accuracy against: evaluate on a labelled dataset (MNIST, Shapes, or one imported with class folders, IDX labels or CIFAR).` };
  }
  let last = 0;
  const onProgress = (p: EvaluationProgressSpec) => {
    const now = performance.now();
    if (now - last < 200 && p.done < p.total) return;
    last = now;
    post({ ...p });
  };
  try {
    const out = await wait(evaluateEncoder(gpu, model, await wait(params()), ds, { ...opts, onProgress }));
    const errs = takeErrors();
    if (errs.length > 0) return { problem: `The evaluation failed on the GPU (${errs[0]}); the run is unchanged. Evaluate on fewer images (or with a smaller batch).` };
    return { result: evaluationResultSpec(out.result, step) };
  } catch (e) {
    if (isLost(e)) throw e;
    takeErrors();
    return { problem: `The evaluation could not run: ${errorText(e)} The run is unchanged.` };
  }
}

/**
 * A request served on `probe` with a run's fixed validation images: the map, or the problem
 * with the request. The probe's own failures are thrown (the caller knows a lost device).
 */
async function attentionAnswer(
  gpu: Gpu, probe: ProbeModel, run: Pick<EndedRun, 'val' | 'batch' | 'visible' | 'step'>, request: Required<AttentionRequestSpec>, wait: <T>(p: Promise<T>) => Promise<T>,
): Promise<{ map?: AttentionMap; problem?: string }> {
  const { cfg } = probe, { val, batch: N, visible: V } = run;
  const L = numPatches(cfg), grid = cfg.imgSize / cfg.patchSize, heads = cfg.numHeads;
  const problems: string[] = [];
  if (!(Number.isInteger(request.block) && request.block >= 0 && request.block < probe.blocks)) problems.push(`block ${request.block} is not in 0..${probe.blocks - 1}${request.model === 'teacher' ? ' (the teacher is loaded up to its deepest aligned block kT)' : ''}`);
  if (!(Number.isInteger(request.head) && request.head >= 0 && request.head < heads)) problems.push(`head ${request.head} is not in 0..${heads - 1}`);
  if (!(Number.isInteger(request.image) && request.image >= 0 && request.image < N)) problems.push(`image ${request.image} is not in 0..${N - 1}`);
  if (request.tokens !== 'all' && request.tokens !== 'visible') problems.push(`tokens must be 'all' or 'visible'`);
  if (problems.length > 0) return { problem: `No attention map: ${problems.join('; ')}.` };

  const n = request.image, C = cfg.inChans, S = cfg.imgSize;
  const img = val.imgs.slice(n * C * S * S, (n + 1) * C * S * S);
  const ids = request.tokens === 'all' ? Uint32Array.from({ length: L }, (_, i) => i) : val.masking.idsKeep.slice(n * V, (n + 1) * V);
  const probs = await wait(probeAttention(gpu, probe, img, ids, request.block));
  const T = 1 + ids.length;
  const matrix = headMatrix(probs, heads, T, request.head);
  const cls = new Float32Array(L);
  ids.forEach((patch, j) => (cls[patch] = matrix[1 + j]));
  const rgba = new Uint8ClampedArray(S * S * 4);
  for (let i = 0; i < S * S; i++) {
    for (let c = 0; c < 3; c++) {
      const ch = C === 1 ? 0 : c;
      rgba[4 * i + c] = Math.round(255 * (img[ch * S * S + i] * val.std[ch] + val.mean[ch]));
    }
    rgba[4 * i + 3] = 255;
  }
  return {
    map: {
      step: run.step, request, heads, blocks: probe.blocks, grid, tokens: T, patchOf: [...ids],
      matrix: matrix.buffer as ArrayBuffer, cls: cls.buffer as ArrayBuffer,
      image: { width: S, height: S, format: 'rgba8', data: rgba.buffer as ArrayBuffer },
    },
  };
}

/** Ended runs whose validation images are kept for attention maps (the most recent ones). */
const ENDED_KEPT = 4;

export interface TrainSession {
  /** One message from the page. Resolves once it is taken in (for `start`: once the run has started or been refused). */
  handle(msg: unknown): Promise<void>;
  /** Resolves when no run is active. */
  whenIdle(): Promise<void>;
  /** Ends any run without reporting and releases the device. */
  dispose(): void;
}

export function createTrainSession(env: TrainSessionEnv, post: PostTrainMessage): TrainSession {
  return new Session(env, post);
}

class Session implements TrainSession {
  private gpu: Gpu | null = null;
  private acquiring: Promise<Gpu> | null = null;
  /** Devices this session destroyed itself: their loss is no failure. */
  private readonly ownDestroy = new WeakSet<Gpu>();
  private run: Run | null = null;
  private starting = false;
  /** Final parameters of ended runs, for `teacher: { kind: 'run' }`. */
  readonly kept = new Map<string, { model: MaeConfig; params: ParamsPayload }>();
  /** What ended runs keep for attention maps (at most ENDED_KEPT, the most recent). */
  readonly ended = new Map<string, EndedRun>();
  private disposed = false;

  constructor(readonly env: TrainSessionEnv, private readonly postRaw: PostTrainMessage) {}

  post(msg: Unversioned): void {
    if (!this.disposed) this.postRaw({ v: TRAIN_PROTOCOL_VERSION, ...msg } as FromTrainWorker);
  }

  fail(runId: string | null, kind: TrainErrorKind, message: string, step = 0, checkpoint?: Checkpoint): void {
    this.post({ type: 'error', runId, kind, message, step, ...(checkpoint ? { checkpoint } : {}) });
  }

  async whenIdle(): Promise<void> {
    while (this.run || this.starting) await (this.run?.finished ?? sleep(5));
  }

  dispose(): void {
    this.disposed = true;
    this.run?.abandon();
    if (this.gpu) {
      this.ownDestroy.add(this.gpu);
      this.gpu.destroy();
      this.gpu = null;
    }
  }

  /** The device, acquired once (again after a loss, or with larger limits when a run needs them). */
  async device(needs: LimitsNeeded = {}): Promise<Gpu> {
    while (this.acquiring) await this.acquiring.catch(() => undefined);
    const fits = (g: Gpu) => Object.entries(needs).every(([k, v]) => v === undefined || (g.device.limits as unknown as Record<string, number>)[k] >= v);
    if (this.gpu && fits(this.gpu)) return this.gpu;
    if (this.gpu) {
      // A run needs larger limits than the open device: reopen (no run holds it; one run at a time).
      this.ownDestroy.add(this.gpu);
      this.gpu.destroy();
      this.gpu = null;
    }
    const acquiring = this.env.acquireGpu(needs);
    this.acquiring = acquiring;
    try {
      const g = await acquiring;
      this.gpu = g;
      void g.lost.then((loss) => {
        if (this.gpu === g) this.gpu = null;
        if (this.ownDestroy.has(g) || this.disposed) return;
        const message = `The GPU device was lost (${loss.reason}${loss.message ? `: ${loss.message}` : ''}).`;
        if (this.run && this.run.gpu === g) this.run.deviceLost(message);
        else this.fail(null, 'device-lost', `${message} A new device is acquired for the next run.`);
      });
      this.post({ type: 'ready', adapter: summary(g.adapter) });
      return g;
    } finally {
      this.acquiring = null;
    }
  }

  async handle(raw: unknown): Promise<void> {
    const problem = checkToTrainWorker(raw);
    if (problem) {
      const runId = raw && typeof raw === 'object' && typeof (raw as { runId?: unknown }).runId === 'string' ? (raw as { runId: string }).runId : null;
      this.fail(runId, 'internal', `The training worker cannot read this message: ${problem}.`);
      return;
    }
    const msg = raw as ToTrainWorker;
    switch (msg.type) {
      case 'init':
        try {
          const before = this.gpu;
          const g = await this.device();
          if (g === before) this.post({ type: 'ready', adapter: summary(g.adapter) }); // a fresh device was reported when acquired
        } catch (e) {
          this.post({ type: 'unavailable', code: e instanceof GpuError ? e.code : 'error', message: errorText(e) });
        }
        return;
      case 'start':
        return this.start(msg);
      case 'forget-run':
        this.kept.delete(msg.runId);
        this.ended.delete(msg.runId);
        return;
      case 'debug-lose-device':
        this.gpu?.device.destroy(); // not marked as our own: reported as a loss, as a driver reset would be
        return;
      case 'request-attention': {
        const { type: _t, v: _v, runId, ...request } = msg;
        const run = this.run;
        if (run && run.runId === runId) run.requestAttention(request);
        else await this.endedAttention(runId, request);
        return;
      }
      case 'evaluate': {
        const run = this.run;
        if (run && run.runId === msg.runId) run.requestEvaluation(msg);
        else await this.evaluateElsewhere(msg);
        return;
      }
      default: {
        const run = this.run;
        if (!run || run.runId !== msg.runId) return; // a late message for a run that has ended: nothing to do
        run.request(msg.type);
      }
    }
  }

  /** An ended run's student attention, from its kept final parameters (uploaded to a scratch arena, freed after). */
  async endedAttention(runId: string, req: AttentionRequestSpec): Promise<void> {
    const request: Required<AttentionRequestSpec> = { ...req, tokens: req.tokens ?? 'all' };
    const answer = (x: { map?: AttentionMap; problem?: string }) => this.post({ type: 'attention', runId, request, ...x });
    const kept = this.kept.get(runId), ended = this.ended.get(runId);
    if (!kept || !ended) return answer({ problem: `Run "${runId}" is not in the training worker: attention maps are computed while a run trains or is paused, and for the last runs that ended on this page.` });
    if (request.model === 'teacher') return answer({ problem: 'The teacher\'s attention is shown while its DMAE run trains or is paused; for an ended run, choose the student.' });
    let arena: Arena | null = null;
    try {
      const gpu = await this.device();
      arena = new Arena(gpu.device, maeParamLayout(kept.model), 'attention-params');
      uploadParamMap(gpu, arena, paramMapOf(kept.params));
      const a = arena;
      answer(await attentionAnswer(gpu, { cfg: kept.model, param: (n) => a.tensor(n), blocks: kept.model.depth }, ended, request, (p) => p));
    } catch (e) {
      answer({ problem: `The attention map could not be computed: ${errorText(e)}` });
    } finally {
      arena?.destroy();
    }
  }

  /**
   * An evaluation of a run that is not training here: an ended run (one of the last few) from its
   * kept final parameters and dataset, else the weights and data the message brings.
   */
  async evaluateElsewhere(msg: EvaluateMsg): Promise<void> {
    const { runId, evalId, request } = msg;
    const answer = (x: { result?: EvaluationResultSpec; problem?: string }) => this.post({ type: 'evaluation', runId, evalId, request, ...x });
    const kept = this.kept.get(runId), ended = this.ended.get(runId);
    let model: MaeConfig, params: () => Promise<ParamMap>, step: number, load: () => Promise<ImageDataset>;
    if (kept && ended) {
      const ds = ended.dataset;
      [model, params, step, load] = [kept.model, async () => paramMapOf(kept.params), ended.step, ds ? async () => ds : () => this.env.loadDataset(ended.data, kept.model)];
    } else if (msg.source) {
      const src = msg.source;
      [model, params, step, load] = [src.model, async () => paramMapOf(src.params), src.step, () => this.env.loadDataset(src.data, src.model)];
    } else {
      return answer({ problem: `Run "${runId}" is not in the training worker: a run is evaluated while it trains or is paused, after it ends on this page, or from its kept weights.` });
    }
    try {
      const ds = await load();
      const gpu = await this.device();
      answer(await evaluationAnswer(
        gpu, model, params, ds, step, request, (progress) => this.post({ type: 'evaluation-progress', runId, evalId, progress }), (p) => p, () => false,
        // GPU errors while another run trains are that run's to report.
        () => (this.run ? [] : gpu.takeUncapturedErrors()),
      ));
    } catch (e) {
      answer({ problem: `The evaluation could not run: ${errorText(e)}` });
    }
  }

  private async start(msg: StartMsg): Promise<void> {
    const { runId } = msg;
    if (this.run || this.starting) {
      this.fail(runId, 'busy', `Run "${this.run?.runId ?? '(starting)'}" is still active in this worker; stop it before starting another.`);
      return;
    }
    this.starting = true;
    try {
      const run = await this.prepare(msg);
      if (!run) return;
      this.run = run;
      run.finished = run.loop().finally(() => {
        if (this.run === run) this.run = null;
      });
    } catch (e) {
      this.fail(runId, 'internal', `The run could not start: ${errorText(e)}`);
    } finally {
      this.starting = false;
    }
  }

  /** Everything before the first step; refusals are posted here. Returns the run, or null when refused. */
  private async prepare(msg: StartMsg): Promise<Run | null> {
    const { runId } = msg;
    const options = msg.options ?? {};
    const refuse = (kind: TrainErrorKind, message: string) => {
      this.fail(runId, kind, message, msg.resume?.step ?? 0);
      return null;
    };

    // 1. The configuration, the teacher, the checkpoint: no GPU yet.
    let rc: ResolvedTrainConfig, teacherParams: ParamMap | undefined, plan: MemoryPlan;
    try {
      const spec: TrainSpec = { ...msg.config };
      if (spec.mode === 'dmae') {
        const t = msg.teacher;
        if (!t) return refuse('invalid-config', 'DMAE needs a teacher: train a larger MAE first (or choose a weights file), then distil from it.');
        if (t.kind === 'run') {
          const kept = this.kept.get(t.runId);
          if (!kept) return refuse('invalid-config', `The teacher run "${t.runId}" is not in this worker (it never ended here, or was forgotten). Send its parameters instead.`);
          spec.teacher ??= kept.model;
          teacherParams = paramMapOf(kept.params);
        } else teacherParams = paramMapOf(t.params);
      }
      rc = resolveTrainConfig(spec);
      plan = trainMemoryPlan(rc);
    } catch (e) {
      return refuse('invalid-config', errorText(e));
    }
    const reconEvery = options.reconEvery ?? Math.max(1, Math.round(rc.totalSteps / 10));
    const snapshotEvery = options.snapshotEvery ?? 25;
    // By default a snapshot (three arena readbacks) is also at most one per 30 s, so a big model does not pay it every 25 steps.
    const snapshotMinMs = options.snapshotEvery === undefined ? 30_000 : 0;
    const metricsIntervalMs = options.metricsIntervalMs ?? 100;
    const reconCount = options.reconCount ?? Math.min(8, rc.batch);
    const knnEvery = options.knnEvery ?? 0, knnBank = options.knnBank ?? 1000, knnQueries = options.knnQueries ?? 250;
    for (const [name, v, ok] of [
      ['knnEvery', knnEvery, Number.isInteger(knnEvery) && knnEvery >= 0],
      ['knnBank', knnBank, Number.isInteger(knnBank) && knnBank >= 1],
      ['knnQueries', knnQueries, Number.isInteger(knnQueries) && knnQueries >= 1],
      ['reconEvery', reconEvery, Number.isInteger(reconEvery) && reconEvery >= 0],
      ['snapshotEvery', snapshotEvery, Number.isInteger(snapshotEvery) && snapshotEvery >= 0],
      ['metricsIntervalMs', metricsIntervalMs, metricsIntervalMs >= 0],
      ['reconCount', reconCount, Number.isInteger(reconCount) && reconCount >= 1],
    ] as const) {
      if (!ok) return refuse('invalid-config', `Run option ${name} = ${v} must be a whole number ≥ ${name === 'reconCount' || name === 'knnBank' || name === 'knnQueries' ? 1 : 0}.`);
    }

    // 2. Memory, before anything is allocated.
    if (options.maxMemoryBytes !== undefined && plan.totalBytes > options.maxMemoryBytes) {
      return refuse('out-of-memory', `The run needs ${formatBytes(plan.totalBytes)} of GPU memory, over the ${formatBytes(options.maxMemoryBytes)} allowed. Use a smaller model or batch, fewer visible patches, or gradient accumulation.`);
    }
    let gpu: Gpu;
    try {
      gpu = await this.device();
      const tooBig = planExceedsLimits(plan, gpu.adapter.limits);
      if (tooBig) return refuse('out-of-memory', tooBig);
      gpu = await this.device(limitsNeededFor(plan));
    } catch (e) {
      if (e instanceof GpuError && (e.code === 'limits' || e.code === 'out-of-memory')) return refuse('out-of-memory', e.message);
      return refuse('no-gpu', errorText(e));
    }
    // Mixed precision needs shader-f16: refused here, before anything is allocated, in the engine's words.
    const precision = precisionProblem(gpu, rc.precision);
    if (precision) return refuse('invalid-config', `${precision[0].toUpperCase()}${precision.slice(1)}.`);
    const budget = this.env.memoryBudget?.(gpu.adapter);
    if (budget !== undefined && plan.totalBytes > budget) {
      return refuse('out-of-memory', `The run needs ${formatBytes(plan.totalBytes)} of GPU buffers; this ${gpu.adapter.kind} adapter can give about ${formatBytes(budget)}. Use a smaller model or batch.`);
    }

    // 3. Data.
    let data: RunData;
    try {
      const ds = await this.env.loadDataset(msg.data, rc.model);
      data = makeRunData(ds, rc, { augment: msg.data.augment, hflip: msg.data.kind === 'stored' ? msg.data.hflip : msg.data.id !== 'mnist' });
      if (data.summary.C !== rc.model.inChans || data.summary.H !== rc.model.imgSize) throw new DatasetError(ds.name, 'unsupported', 'does not give images of the model\'s size and channels.');
    } catch (e) {
      return refuse('data', `The dataset could not be used: ${errorText(e)}`);
    }

    // 4. The model on the GPU, inside error scopes: an allocation that fails is named, not silent.
    const dev = gpu.device;
    dev.pushErrorScope('out-of-memory');
    dev.pushErrorScope('validation');
    let trainer: Trainer | null = null, thrown: unknown = null;
    try {
      const initialParams = msg.resume ? paramMapOf(msg.resume.params) : undefined;
      trainer = new Trainer(gpu, rc, data.loader, { initialParams, teacherParams });
      if (msg.resume) {
        const ck = msg.resume;
        uploadParamMap(gpu, trainer.model.adamM, paramMapOf({ tensors: ck.params.tensors, buffer: ck.adamM }));
        uploadParamMap(gpu, trainer.model.adamV, paramMapOf({ tensors: ck.params.tensors, buffer: ck.adamV }));
        trainer.setState(ck.state as TrainerState);
      }
    } catch (e) {
      thrown = e;
    }
    const validation = await dev.popErrorScope().catch(() => null);
    const oom = await dev.popErrorScope().catch(() => null);
    if (thrown || validation || oom) {
      trainer?.destroy();
      if (oom || (thrown instanceof GpuError && thrown.code === 'out-of-memory')) {
        return refuse('out-of-memory', `The GPU could not allocate the run's ${formatBytes(plan.totalBytes)} (${oom?.message || errorText(thrown)}). Use a smaller model or batch, or close other GPU work.`);
      }
      if (thrown && msg.resume) return refuse('invalid-config', `The checkpoint does not fit this configuration: ${errorText(thrown)}`);
      if (thrown && !(thrown instanceof GpuError)) return refuse('invalid-config', errorText(thrown));
      return refuse('internal', `Setting up the model failed: ${validation?.message ?? errorText(thrown)}`);
    }
    return new Run(this, gpu, runId, trainer!, rc, msg.data, data, plan, { reconEvery, snapshotEvery, snapshotMinMs, metricsIntervalMs, reconCount, knnEvery, knnBank, knnQueries });
  }
}

interface RunSettings {
  reconEvery: number;
  snapshotEvery: number;
  snapshotMinMs: number;
  metricsIntervalMs: number;
  reconCount: number;
  knnEvery: number;
  knnBank: number;
  knnQueries: number;
}

type Request = 'pause' | 'resume' | 'stop' | 'request-reconstruction' | 'request-checkpoint';

class Run {
  finished: Promise<void> = Promise.resolve();
  private pauseWanted = false;
  private stopWanted = false;
  private reconWanted = false;
  private checkpointWanted = false;
  private attentionWanted: AttentionRequestSpec[] = [];
  private evaluationsWanted: EvaluateMsg[] = [];
  private paused = false;
  private abandoned = false;
  private wakers: (() => void)[] = [];
  private metrics: StepRecord[] = [];
  private lastFlush = 0;
  /** Training time before the current slice, ms. */
  private activeMs = 0;
  private lastReconStep = -1;
  private monitor: KnnMonitor | null = null;
  /** The monitor's last step; null once it turned out impossible (an unlabelled dataset). */
  private lastKnnStep: number | null = -1;
  private snapshot: Checkpoint | null = null;
  private snapshotAt = -Infinity;
  private lostMessage: string | null = null;
  private readonly lost: Promise<never>;
  private rejectLost!: (e: Error) => void;

  constructor(
    private readonly session: Session, readonly gpu: Gpu, readonly runId: string, readonly trainer: Trainer,
    readonly rc: ResolvedTrainConfig, readonly dataSpec: DataSpec, readonly data: RunData, readonly plan: MemoryPlan, readonly settings: RunSettings,
  ) {
    this.lost = new Promise<never>((_, reject) => (this.rejectLost = reject));
    this.lost.catch(() => undefined);
  }

  request(type: Request): void {
    if (type === 'pause') this.pauseWanted = true;
    else if (type === 'resume') this.pauseWanted = false;
    else if (type === 'stop') this.stopWanted = true;
    else if (type === 'request-reconstruction') this.reconWanted = true;
    else this.checkpointWanted = true;
    this.wake();
  }

  requestAttention(req: AttentionRequestSpec): void {
    this.attentionWanted.push(req);
    this.wake();
  }

  requestEvaluation(msg: EvaluateMsg): void {
    this.evaluationsWanted.push(msg);
    this.wake();
  }

  deviceLost(message: string): void {
    this.lostMessage = message;
    this.rejectLost(new DeviceLost(message));
    this.wake();
  }

  abandon(): void {
    this.abandoned = true;
    this.stopWanted = true;
    this.wake();
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w();
  }

  /** A GPU wait of this run, given up when the device is lost. */
  private guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.lost]);
  }

  private post(msg: Unversioned): void {
    if (this.abandoned) return;
    if (msg.type !== 'metrics') this.flush();
    this.session.post(msg);
  }

  private flush(): void {
    if (this.metrics.length === 0 || this.abandoned) return;
    const records = this.metrics;
    this.metrics = [];
    this.lastFlush = performance.now();
    this.session.post({ type: 'metrics', runId: this.runId, records });
  }

  private get step(): number {
    return this.trainer.step;
  }

  private nextBoundary(): number {
    const { reconEvery, snapshotEvery, knnEvery } = this.settings;
    const s = this.step, total = this.rc.totalSteps;
    const next = (every: number) => (every > 0 ? (Math.floor(s / every) + 1) * every : Infinity);
    return Math.min(total, next(reconEvery), next(snapshotEvery), this.lastKnnStep === null ? Infinity : next(knnEvery));
  }

  /**
   * The live k-NN monitor's point at this step (its subset is prepared at the first one). An
   * unlabelled dataset turns it off with one message saying why; other failures fail the run.
   */
  private async measureKnn(): Promise<void> {
    if (this.lastKnnStep === null) return;
    if (!this.monitor) {
      const ds = this.data.loader.dataset;
      if (!ds.labels) {
        this.lastKnnStep = null;
        this.post({ type: 'knn', runId: this.runId, problem: `${ds.name} has no labels: the k-NN monitor needs a labelled dataset, so it is off for this run.` });
        return;
      }
      this.monitor = new KnnMonitor(this.gpu, this.rc.model, ds, { bank: this.settings.knnBank, queries: this.settings.knnQueries, seed: this.rc.seed });
    }
    const m = await this.guard(this.monitor.measure(this.trainer.model.params));
    this.lastKnnStep = this.step;
    this.post({ type: 'knn', runId: this.runId, point: { step: this.step, accuracy: m.accuracy, bank: m.bank, queries: m.queries, ms: m.ms } });
  }

  /** An evaluation of the encoder as it is now (read back; nothing of the run changes). A lost device still fails the run. */
  private async evaluate(msg: EvaluateMsg): Promise<void> {
    const { runId, evalId, request } = msg;
    const step = this.step;
    const x = await evaluationAnswer(
      this.gpu, this.rc.model, () => this.trainer.readParams(), this.data.loader.dataset, step, request,
      (progress) => this.post({ type: 'evaluation-progress', runId, evalId, progress }), (p) => this.guard(p),
      (e) => e instanceof DeviceLost || this.lostMessage !== null, () => this.gpu.takeUncapturedErrors(),
    );
    this.post({ type: 'evaluation', runId, evalId, request, ...x });
  }

  private async reconstruct(): Promise<void> {
    const r = await this.guard(reconstructValidation(this.trainer, this.data.val, this.settings.reconCount));
    const img = rgbToRgba(r.image);
    this.lastReconStep = this.step;
    this.post({
      type: 'reconstruction', runId: this.runId, step: this.step,
      image: { width: img.width, height: img.height, format: 'rgba8', data: img.data.buffer },
      rows: r.rows, columns: [...RECONSTRUCTION_COLUMNS], cell: r.cell, gap: r.gap, levels: r.levels, val: { pix: r.pix, loss: r.loss },
    });
  }

  /**
   * An attention map of the student or the teacher on one fixed validation image (a forward of
   * blocks 0..block in a scratch arena; the model's parameters are read in place, nothing changes).
   * A request that cannot be served is answered with its problem; a lost device still fails the run.
   */
  private async attention(req: AttentionRequestSpec): Promise<void> {
    const request: Required<AttentionRequestSpec> = { ...req, tokens: req.tokens ?? 'all' };
    const answer = (x: { map?: AttentionMap; problem?: string }) => this.post({ type: 'attention', runId: this.runId, request, ...x });
    const model = this.trainer.model;
    let probe: ProbeModel;
    if (request.model === 'teacher') {
      if (!(model instanceof DmaeModel)) return answer({ problem: 'A MAE run has no teacher: choose the student.' });
      probe = { cfg: model.teacherCfg, param: (n) => model.teacherParams.tensor(n), blocks: model.teacherStop + 1 };
    } else probe = { cfg: model.cfg, param: (n) => model.params.tensor(n), blocks: model.cfg.depth };
    try {
      answer(await attentionAnswer(this.gpu, probe, { val: this.data.val, batch: this.rc.batch, visible: this.rc.visible, step: this.step }, request, (p) => this.guard(p)));
    } catch (e) {
      if (e instanceof DeviceLost || this.lostMessage) throw e;
      answer({ problem: `The attention map could not be computed: ${errorText(e)}` });
    }
  }

  /** The run's whole state, read back from the GPU. */
  private async checkpoint(): Promise<Checkpoint> {
    const m = this.trainer.model, dev = this.gpu.device;
    const [params, adamM, adamV] = await this.guard(Promise.all([readback(dev, m.params.all), readback(dev, m.adamM.all), readback(dev, m.adamV.all)]));
    const state = this.trainer.getState();
    return {
      runId: this.runId, step: state.step, config: JSON.parse(JSON.stringify(this.rc)) as ResolvedTrainSpec, data: this.dataSpec,
      params: payloadOf(m.layout.entries, params), adamM: adamM.buffer as ArrayBuffer, adamV: adamV.buffer as ArrayBuffer,
      state: JSON.parse(JSON.stringify(state)) as Checkpoint['state'],
    };
  }

  /** The state kept in the worker for a device loss (posted only then). */
  private async takeSnapshot(): Promise<void> {
    this.snapshot = await this.checkpoint();
    this.snapshotAt = performance.now();
  }

  /** Keep the final parameters in the worker (a later DMAE run may name this run as its teacher). */
  private keep(c: Checkpoint): Checkpoint {
    this.session.kept.set(this.runId, { model: this.rc.model, params: copyPayload(c.params) });
    const ended = this.session.ended;
    ended.delete(this.runId);
    // Only the latest ended run keeps its dataset in memory (an imported one may be large); the others load theirs again.
    for (const e of ended.values()) delete e.dataset;
    ended.set(this.runId, { val: this.data.val, batch: this.rc.batch, visible: this.rc.visible, step: c.step, data: this.dataSpec, dataset: this.data.loader.dataset });
    for (const id of ended.keys()) if (ended.size > ENDED_KEPT) ended.delete(id);
    return c;
  }

  private onMetrics = (m: StepMetrics): void => {
    const rc = this.rc;
    this.metrics.push({
      step: m.step, epoch: (m.step * rc.batch * rc.accumSteps) / this.data.loader.count,
      loss: m.loss, pix: m.pix, ...(m.distill ? { distill: [...m.distill] } : {}), lr: m.lr, gradNorm: m.gradNorm,
      ...(m.lossScale !== undefined ? { lossScale: m.lossScale, skipped: m.skipped ?? false, skippedSteps: m.skippedSteps ?? 0 } : {}),
      imagesPerSec: m.imagesPerSec, elapsedMs: this.activeMs + m.elapsedMs,
    });
    if (performance.now() - this.lastFlush >= this.settings.metricsIntervalMs) this.flush();
  };

  private takeUncapturedErrors(): void {
    const errs = this.gpu.takeUncapturedErrors();
    if (errs.length === 0) return;
    const oom = errs.find((e) => /out of memory|allocat/i.test(e));
    if (oom) throw new RunFailure('out-of-memory', `The GPU ran out of memory during training (${oom}). Use a smaller model or batch.`);
    throw new RunFailure('internal', `The GPU reported an error during training: ${errs[0]}`);
  }

  async loop(): Promise<void> {
    const total = this.rc.totalSteps;
    let reason: 'done' | 'stopped' = 'done';
    try {
      this.post({
        type: 'started', runId: this.runId, config: JSON.parse(JSON.stringify(this.rc)) as ResolvedTrainSpec,
        memory: JSON.parse(JSON.stringify(this.plan)) as Msg<'started'>['memory'], data: { ...this.data.summary, classes: classesOf(this.data.loader.dataset) },
        adapter: summary(this.gpu.adapter), step: this.step,
      });
      await this.reconstruct();
      if (this.settings.knnEvery > 0) await this.measureKnn();
      if (this.settings.snapshotEvery > 0) await this.takeSnapshot();
      for (;;) {
        if (this.stopWanted) {
          reason = 'stopped';
          break;
        }
        if (this.reconWanted) {
          this.reconWanted = false;
          await this.reconstruct();
          continue;
        }
        if (this.attentionWanted.length > 0) {
          for (const req of this.attentionWanted.splice(0)) await this.attention(req);
          continue;
        }
        if (this.evaluationsWanted.length > 0) {
          await this.evaluate(this.evaluationsWanted.shift()!);
          continue;
        }
        if (this.checkpointWanted) {
          this.checkpointWanted = false;
          this.post({ type: 'checkpoint', runId: this.runId, checkpoint: await this.checkpoint() });
          continue;
        }
        if (this.pauseWanted) {
          if (!this.paused) {
            this.paused = true;
            this.post({ type: 'paused', runId: this.runId, step: this.step });
          }
          await this.guard(new Promise<void>((r) => this.wakers.push(r)));
          continue;
        }
        if (this.paused) {
          this.paused = false;
          this.post({ type: 'resumed', runId: this.runId, step: this.step });
        }
        if (this.step >= total) break;
        const until = this.nextBoundary();
        const t0 = performance.now();
        const r = await this.guard(this.trainer.train({
          until, onMetrics: this.onMetrics,
          shouldStop: () => this.stopWanted || this.pauseWanted || this.reconWanted || this.checkpointWanted || this.attentionWanted.length > 0 || this.evaluationsWanted.length > 0,
        }));
        this.activeMs += performance.now() - t0;
        this.takeUncapturedErrors();
        if (r.status === 'diverged') {
          const d = r.divergence!;
          const ck = this.keep(await this.checkpoint());
          this.post({ type: 'error', runId: this.runId, kind: 'diverged', message: d.message, step: this.step, checkpoint: ck });
          return;
        }
        const s = this.step, { reconEvery, snapshotEvery, knnEvery } = this.settings;
        if (reconEvery > 0 && s % reconEvery === 0 && s < total) await this.reconstruct();
        if (knnEvery > 0 && s % knnEvery === 0 && s < total && this.lastKnnStep !== s) await this.measureKnn();
        if (snapshotEvery > 0 && s % snapshotEvery === 0 && performance.now() - this.snapshotAt >= this.settings.snapshotMinMs) await this.takeSnapshot();
        await sleep(0); // let the page's messages in between slices too
      }
      if (this.lastReconStep !== this.step) await this.reconstruct();
      if (this.settings.knnEvery > 0 && this.lastKnnStep !== null && this.lastKnnStep !== this.step) await this.measureKnn();
      const ck = this.keep(await this.checkpoint());
      this.post({ type: 'stopped', runId: this.runId, reason, step: this.step, elapsedMs: this.activeMs, checkpoint: ck });
    } catch (e) {
      await this.failed(e);
    } finally {
      this.wake();
      if (!this.lostMessage) {
        this.trainer.destroy();
        this.monitor?.destroy();
      }
      // Requests that came as the run ended: answered from what the run kept (or with why not).
      for (const req of this.attentionWanted.splice(0)) void this.session.endedAttention(this.runId, req);
      for (const msg of this.evaluationsWanted.splice(0)) void this.session.evaluateElsewhere(msg);
    }
  }

  /** Reports a failure once, with the best state there is: read back now if the device still answers, else the last snapshot. */
  private async failed(e: unknown): Promise<void> {
    if (this.abandoned) return;
    // A failed GPU wait may come a moment before the device's loss is reported: give it that moment.
    if (!this.lostMessage) await Promise.race([this.gpu.lost, sleep(200)]);
    const step = this.step;
    if (this.lostMessage || e instanceof DeviceLost) {
      const s = this.snapshot;
      if (s) this.keep(copyCheckpoint(s));
      this.post({
        type: 'error', runId: this.runId, kind: 'device-lost', step,
        message: `${this.lostMessage ?? errorText(e)} ` + (s
          ? `The run is kept as it was at step ${s.step} (the last snapshot); start it again from there and a new device is acquired.`
          : 'Nothing of the run could be kept; start it again and a new device is acquired.'),
        ...(s ? { checkpoint: s } : {}),
      });
      return;
    }
    const kind: TrainErrorKind = e instanceof RunFailure ? e.kind
      : (e instanceof GpuError && e.code === 'out-of-memory') || /out of memory/i.test(errorText(e)) ? 'out-of-memory'
        : e instanceof DatasetError ? 'data' : 'internal';
    let ck: Checkpoint | undefined;
    try {
      ck = await Promise.race([this.checkpoint(), sleep(5000).then(() => { throw new Error('timed out'); })]);
    } catch {
      ck = this.snapshot ?? undefined;
    }
    if (ck) this.keep(ck);
    this.post({
      type: 'error', runId: this.runId, kind, step,
      message: `${errorText(e)}${ck ? ` The run is kept as it was at step ${ck.step}.` : ''}`,
      ...(ck ? { checkpoint: ck } : {}),
    });
  }
}
