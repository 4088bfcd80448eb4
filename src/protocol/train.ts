/**
 * Messages between the studio page and its training worker (src/worker/train.worker.ts).
 * Plain data only (structured clone), imports nothing outside src/protocol, so the page (store,
 * UI) and the worker (engine) both depend on it and on nothing of each other.
 *
 * Every message carries `v: TRAIN_PROTOCOL_VERSION`; a worker answers a message of another
 * version with an `error` of kind 'internal' (the page and the worker come from different builds:
 * reload). Large payloads are ArrayBuffers owned by the message, sent as transferables
 * (`transferablesOf(msg)` lists them): parameters, optimiser moments, reconstruction pixels.
 *
 * A run's life, as the worker reports it:
 *
 *   start ─► started ─► metrics* / reconstruction* ─► (paused ─► resumed)* ─► stopped | error
 *
 * `stopped` (reason 'done' or 'stopped') and `error` end a run; both carry what the run has so
 * far (a Checkpoint: parameters, AdamW moments, the step and every random stream's position),
 * from which a new `start` with `resume` continues exactly. After `error` the checkpoint is the
 * last good state: for 'diverged', the parameters restored to before the bad step; for
 * 'device-lost', the last periodic snapshot (`RunOptions.snapshotEvery`), since a lost device
 * cannot be read. One run at a time per worker.
 *
 * Metrics come batched (`metrics.records`, every step, in order), posted at most every
 * `metricsIntervalMs` (100 ms by default) and always before any other message of the run, so a
 * page can append them to a chart buffer without re-rendering per step.
 *
 * Evaluation ('evaluate' → 'evaluation-progress'* → 'evaluation'): k-NN, linear probe or
 * fine-tuning of a run's encoder on its dataset (src/engine/evaluate.ts), served like attention
 * maps — between steps of an active run, at once for a paused one, from the kept final parameters
 * of an ended one, or from parameters the page sends (`source`, a run kept in its storage). It
 * reads the run's parameters and never changes the run. With `RunOptions.knnEvery` a run also
 * reports the k-NN accuracy of its encoder on a small fixed subset every N steps ('knn').
 *
 * Extending: a new request/answer pair (as attention maps: 'request-attention' → 'attention')
 * is added under the same version (a page ignores message types it does not know; a worker answers
 * one with an 'internal' error naming it); a changed meaning of an existing field bumps
 * TRAIN_PROTOCOL_VERSION.
 */
import type { AdapterSummary } from './gpu';

export const TRAIN_PROTOCOL_VERSION = 1;
type V = { v: typeof TRAIN_PROTOCOL_VERSION };

// ---------------------------------------------------------------------------------------------
// Configuration (plain JSON mirrors of src/engine's TrainConfig; the worker checks them)
// ---------------------------------------------------------------------------------------------

/** A ViT MAE: the engine's MaeConfig. */
export interface ModelSpec {
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  decoderEmbedDim: number;
  decoderDepth: number;
  decoderNumHeads: number;
  normPixLoss: boolean;
}

/** DMAE alignment: the engine's DistillConfig. */
export interface DistillSpec {
  pairs: readonly { studentBlock: number; teacherBlock: number }[];
  alpha: number;
  kind: 'l1' | 'l2';
}

/** A training run: the engine's TrainConfig (see src/engine/trainer.ts for every default). */
export interface TrainSpec {
  mode: 'mae' | 'dmae';
  model: ModelSpec;
  /** DMAE: the teacher's model; may be left out when `teacher` is a run of this worker. */
  teacher?: ModelSpec;
  distill?: DistillSpec;
  maskRatio?: number;
  visible?: number;
  batch: number;
  accumSteps?: number;
  lr?: number;
  baseLr?: number;
  minLr?: number;
  warmupSteps?: number;
  totalSteps: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  clipGrad?: number;
  seed: number;
  nanGuard?: 'restore' | 'stop';
  /** 'f32' (default) or 'mixed' (f16 matmul operands with loss scaling; needs shader-f16). */
  precision?: 'f32' | 'mixed';
}

/** The configuration as the worker resolved it (every default filled in): what is really trained. */
export interface ResolvedTrainSpec {
  mode: 'mae' | 'dmae';
  model: ModelSpec;
  teacher: ModelSpec | null;
  distill: DistillSpec | null;
  maskRatio: number;
  /** Visible patches per image, of `patches`. */
  visible: number;
  patches: number;
  batch: number;
  accumSteps: number;
  /** Peak learning rate after the batch scaling. */
  lr: number;
  baseLr: number | null;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clipGrad: number | null;
  seed: number;
  nanGuard: 'restore' | 'stop';
  /** Absent in checkpoints written before mixed precision existed: 'f32'. */
  precision?: 'f32' | 'mixed';
}

/** Where the images come from. */
export type DataSpec =
  /** A built-in dataset: MNIST (28×28 gray, fetched from the page's server) or generated Shapes (at the model's size and channels). */
  | { kind: 'builtin'; id: 'mnist' | 'shapes'; augment?: 'mae' | 'none' }
  /** A dataset imported earlier and kept in this browser's IndexedDB (src/data/store-idb.ts). */
  | { kind: 'stored'; id: string; augment?: 'mae' | 'none'; hflip?: boolean };

export interface RunOptions {
  /** A reconstruction every N optimiser steps (and at the start and the end); default ≈ totalSteps / 10; 0: start and end only. */
  reconEvery?: number;
  /** Validation images (rows) in a reconstruction; default min(8, batch). */
  reconCount?: number;
  /** Least time between two `metrics` messages; default 100 ms. */
  metricsIntervalMs?: number;
  /**
   * Keep a checkpoint in the worker every N steps (and at the start), reported only if the device
   * is lost; default 25 steps and at most one per 30 s; 0: off.
   */
  snapshotEvery?: number;
  /** Refuse ('out-of-memory') a run whose GPU buffers exceed this many bytes. */
  maxMemoryBytes?: number;
  /**
   * The live k-NN monitor: every N optimiser steps (and at the start and the end) the k-NN
   * accuracy of the encoder on a fixed subset of the dataset, posted as `knn`; default 0 (off).
   * Needs a labelled dataset. The run's results are the same with and without it.
   */
  knnEvery?: number;
  /** The monitor's bank (training images, default 1000) and queries (validation images, default 250), fixed by the run's seed. */
  knnBank?: number;
  knnQueries?: number;
}

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/** One tensor of a parameter table: a timm/PyTorch name, its shape, where it lies in the buffer. */
export interface TensorEntry {
  name: string;
  shape: number[];
  /** Byte offset in the buffer (a multiple of 4). */
  offset: number;
  /** Elements (float32). */
  length: number;
}

/** Named float32 tensors in one buffer (little-endian; gaps between tensors are unused). */
export interface ParamsPayload {
  tensors: TensorEntry[];
  buffer: ArrayBuffer;
}

/** The trainer's CPU state: the step and the positions of its random streams (JSON). */
export interface TrainerStateSpec {
  step: number;
  masking: [number, number, number, number];
  /** The data loader's position ({ seed, epoch, position }). */
  source?: unknown;
  /** Mixed precision: the loss scaler's state. */
  lossScale?: { scale: number; goodSteps: number; skippedSteps: number };
}

/** Everything a run needs to continue exactly: send it back as `start.resume`. */
export interface Checkpoint {
  runId: string;
  /** Optimiser steps done. */
  step: number;
  config: ResolvedTrainSpec;
  data: DataSpec;
  /** The student's parameters, and AdamW's first and second moments in the same table. */
  params: ParamsPayload;
  adamM: ArrayBuffer;
  adamV: ArrayBuffer;
  state: TrainerStateSpec;
}

export type TeacherSource =
  /** Parameters holding at least the teacher's encoder up to its deepest aligned block (timm names). */
  | { kind: 'params'; params: ParamsPayload }
  /** A MAE run that ended in this worker (its final parameters are kept until `forget-run`). */
  | { kind: 'run'; runId: string };

/** One optimiser step. */
export interface StepRecord {
  step: number;
  /** Epochs of the training split seen (fractional). */
  epoch: number;
  /** pix + α·Σ distill. */
  loss: number;
  pix: number;
  /** DMAE: the distillation loss of each aligned pair (before α). */
  distill?: number[];
  lr: number;
  /** Not finite on a step skipped under mixed precision. */
  gradNorm: number;
  /** Mixed precision only: the loss scale after this step. */
  lossScale?: number;
  /** Mixed precision only: whether this step was skipped (an f16 overflow: the scale halved, nothing else changed). */
  skipped?: boolean;
  /** Mixed precision only: steps skipped so far in the run (a resumed run's earlier ones included). */
  skippedSteps?: number;
  imagesPerSec: number;
  /** Training time of the run so far (pauses excluded), ms. */
  elapsedMs: number;
}

/** RGBA pixels, 8 bits per channel, rows top to bottom: `new ImageData(new Uint8ClampedArray(data), width, height)`. */
export interface RgbaImage {
  width: number;
  height: number;
  format: 'rgba8';
  data: ArrayBuffer;
}

/** Which attention map a page asks for (`request-attention`). */
export interface AttentionRequestSpec {
  /** The run's student encoder, or (DMAE) its frozen teacher, whose blocks 0..kT only are loaded. */
  model: 'student' | 'teacher';
  /** Encoder block, from 0. */
  block: number;
  /** Head of that block, from 0. */
  head: number;
  /** Which of the run's fixed validation images (0..batch−1; the reconstructions' rows). */
  image: number;
  /** 'all': every patch of the image (default); 'visible': the patches the validation mask keeps, as in training. */
  tokens?: 'all' | 'visible';
}

/** One head's attention on one validation image, at the run's current parameters. */
export interface AttentionMap {
  /** Optimiser steps done when it was computed. */
  step: number;
  /** The request as served (tokens filled in). */
  request: Required<AttentionRequestSpec>;
  /** Of the model asked for: its heads, and the blocks that can be shown (0..blocks−1). */
  heads: number;
  blocks: number;
  /** Patches per side of the image (grid × grid patches). */
  grid: number;
  /** Tokens of the sequence: 1 (cls) + the patches shown. */
  tokens: number;
  /** The patch (row-major on the grid) of each token after cls: length tokens − 1. */
  patchOf: number[];
  /** Float32 [tokens, tokens]: row i is token i's softmax over every token (each row sums to 1). */
  matrix: ArrayBuffer;
  /** Float32 [grid·grid]: the cls token's attention to each patch (0 where the patch is not in the sequence). */
  cls: ArrayBuffer;
  /** The validation image as the model sees it (its size and channels), for drawing the map over it. */
  image: RgbaImage;
}

export const RECONSTRUCTION_COLUMNS = ['original', 'masked', 'reconstruction', 'reconstruction + visible'] as const;

export interface MemoryPlanSpec {
  /** Every GPU buffer of the run, by role, in bytes. */
  parts: Record<string, number>;
  modelBytes: number;
  totalBytes: number;
  largestBufferBytes: number;
}

export interface DataSummary {
  name: string;
  train: number;
  val: number;
  /** What the model sees (after resizing and channel conversion). */
  C: number;
  H: number;
  W: number;
  mean: number[];
  std: number[];
  /** Classes of a labelled dataset (what an evaluation reports on); 0 when it has no labels. */
  classes?: number;
}

export type EvalMethodSpec = 'knn' | 'linprobe' | 'finetune';

/** What to evaluate and how (src/engine/evaluate.ts's EvaluateOptions; every field but the method has a default there). */
export interface EvaluateRequestSpec {
  method: EvalMethodSpec;
  /** At most this many training images (k-NN bank, probe or fine-tuning data) and validation images: seeded subsets. Default: all. */
  maxTrain?: number;
  maxVal?: number;
  /** Frozen feature of knn / linprobe (default 'cls'). */
  pool?: 'cls' | 'mean';
  /** k-NN neighbours (default 20). */
  k?: number;
  /** linprobe / finetune: training steps, batch, peak lr. */
  steps?: number;
  batch?: number;
  lr?: number;
  /** Subsets, head init and data order (default 0). */
  seed?: number;
}

/** The weights and data of a run the worker does not hold (one kept in the page's storage). */
export interface EvaluateSourceSpec {
  model: ModelSpec;
  params: ParamsPayload;
  data: DataSpec;
  /** The step the weights are from. */
  step: number;
}

/** An evaluation's result: accuracy, per-class accuracy and the confusion matrix on the validation images. */
export interface EvaluationResultSpec {
  method: EvalMethodSpec;
  /** The run's optimiser steps when its weights were evaluated. */
  step: number;
  /** Fraction of the validation images classified correctly. */
  accuracy: number;
  /** Validation images evaluated. */
  count: number;
  perClass: { index: number; name: string; count: number; accuracy: number | null }[];
  /** confusion[true][predicted] = count. */
  confusion: number[][];
  classNames: string[];
  /** The options as resolved (defaults filled in). */
  options: Record<string, number | string | boolean>;
  /** The dataset and the images used (after subsetting). */
  data: { name: string; train: number; val: number; C: number; H: number; W: number };
  /** Mean cross-entropy on the validation images (linprobe / finetune). */
  valLoss?: number;
  seconds: number;
}

export interface EvaluationProgressSpec {
  phase: 'features' | 'train' | 'predict';
  done: number;
  total: number;
}

/** One point of the live k-NN monitor. */
export interface KnnPoint {
  step: number;
  accuracy: number;
  /** Bank and query images. */
  bank: number;
  queries: number;
  /** Time the measure took, ms. */
  ms: number;
}

export type TrainErrorKind =
  /** The GPU device was lost (driver reset, another tab, the browser reclaimed it). Start again: a new device is acquired. */
  | 'device-lost'
  /** The run does not fit this GPU (refused before allocating, or an allocation failed). */
  | 'out-of-memory'
  /** A loss or the gradient norm became NaN/Inf; the state is the last good step's. */
  | 'diverged'
  /** The configuration is impossible (sizes, ratios, a missing teacher…); nothing ran. */
  | 'invalid-config'
  /** The dataset could not be loaded or does not fit the run. */
  | 'data'
  /** A run is already active in this worker. */
  | 'busy'
  /** No WebGPU, or no adapter. */
  | 'no-gpu'
  /** Anything else (a bug): the message says what. */
  | 'internal';

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

export type ToTrainWorker = V & (
  /** Acquire the GPU now and report it (`ready` or `unavailable`); `start` does it too when needed. */
  | { type: 'init' }
  | {
    type: 'start';
    /** Chosen by the page; every message of the run names it. */
    runId: string;
    config: TrainSpec;
    data: DataSpec;
    /** DMAE: the frozen teacher. */
    teacher?: TeacherSource;
    /** Continue from this checkpoint (its step, parameters, moments and streams) instead of the recipe's init. */
    resume?: Checkpoint;
    options?: RunOptions;
  }
  | { type: 'pause'; runId: string }
  | { type: 'resume'; runId: string }
  | { type: 'stop'; runId: string }
  /** A reconstruction now (at the next step boundary; at once when paused). */
  | { type: 'request-reconstruction'; runId: string }
  /** A checkpoint now (at the next step boundary; at once when paused): answered by `checkpoint`. */
  | { type: 'request-checkpoint'; runId: string }
  /** An attention map now (at the next step boundary; at once when paused or ended): answered by `attention`. */
  | ({ type: 'request-attention'; runId: string } & AttentionRequestSpec)
  /**
   * Evaluate the run's encoder (at the next step boundary; at once when paused; an ended run from
   * its kept final parameters; else from `source`): answered by `evaluation-progress`* and one
   * `evaluation` with the same evalId. Never ends or changes the run.
   */
  | { type: 'evaluate'; runId: string; evalId: string; request: EvaluateRequestSpec; source?: EvaluateSourceSpec }
  /** Drop the parameters the worker keeps of an ended run (kept for `teacher: { kind: 'run' }`). */
  | { type: 'forget-run'; runId: string }
  /** Tests only: destroy the GPU device as a driver reset would. */
  | { type: 'debug-lose-device' }
);

export type FromTrainWorker = V & (
  | { type: 'ready'; adapter: AdapterSummary }
  | { type: 'unavailable'; code: string; message: string }
  | {
    type: 'started';
    runId: string;
    /** What will really be trained (check the masking, the teacher block… here). */
    config: ResolvedTrainSpec;
    memory: MemoryPlanSpec;
    data: DataSummary;
    adapter: AdapterSummary;
    /** The step it starts from (0, or the checkpoint's). */
    step: number;
  }
  | { type: 'metrics'; runId: string; records: StepRecord[] }
  | {
    type: 'reconstruction';
    runId: string;
    /** Optimiser steps done when it was made. */
    step: number;
    /** Rows of RECONSTRUCTION_COLUMNS, one row per validation image (the same images and mask every time). */
    image: RgbaImage;
    rows: number;
    columns: readonly string[];
    /** One cell's side in pixels, and the gap around cells. */
    cell: number;
    gap: number;
    /** Distinct grey levels (red channel) in each column's cells: a blank or flat column has one or two. */
    levels: number[];
    /** The validation batch's losses at this step. */
    val: { pix: number; loss: number };
  }
  | { type: 'paused'; runId: string; step: number }
  | { type: 'resumed'; runId: string; step: number }
  | { type: 'checkpoint'; runId: string; checkpoint: Checkpoint }
  /**
   * The answer to `request-attention`: the map, or why there is none (a bad block, no teacher, a
   * run the worker no longer keeps). An ended run (one of the last few kept) answers for its
   * student from its final parameters. Never ends or changes the run.
   */
  | { type: 'attention'; runId: string; request: AttentionRequestSpec; map?: AttentionMap; problem?: string }
  /** How far an evaluation is (a few per second at most). */
  | { type: 'evaluation-progress'; runId: string; evalId: string; progress: EvaluationProgressSpec }
  /** The answer to `evaluate`: the result, or why there is none (an unlabelled dataset, a run the worker no longer holds…). */
  | { type: 'evaluation'; runId: string; evalId: string; request: EvaluateRequestSpec; result?: EvaluationResultSpec; problem?: string }
  /** The live k-NN monitor (RunOptions.knnEvery): a point, or once, why there is none (an unlabelled dataset). */
  | { type: 'knn'; runId: string; point?: KnnPoint; problem?: string }
  | {
    type: 'stopped';
    runId: string;
    /** 'done': the schedule's total steps; 'stopped': asked to stop. */
    reason: 'done' | 'stopped';
    step: number;
    elapsedMs: number;
    checkpoint: Checkpoint;
  }
  | {
    type: 'error';
    /** null when no run was concerned (a message the worker could not read, a device lost while idle). */
    runId: string | null;
    kind: TrainErrorKind;
    /** What is wrong and what to do. */
    message: string;
    /** Optimiser steps done when it happened (0 when nothing ran). */
    step: number;
    /** What the run has so far (absent when nothing ran or nothing could be saved). */
    checkpoint?: Checkpoint;
  }
);

export type TrainMessageType = ToTrainWorker['type'] | FromTrainWorker['type'];

// ---------------------------------------------------------------------------------------------
// Helpers both sides use
// ---------------------------------------------------------------------------------------------

/** Every ArrayBuffer in a message (deduplicated): the transfer list of postMessage. */
export function transferablesOf(msg: unknown): ArrayBuffer[] {
  const found = new Set<ArrayBuffer>();
  const walk = (x: unknown, depth: number): void => {
    if (x === null || typeof x !== 'object' || depth > 8) return;
    if (x instanceof ArrayBuffer) {
      if (x.byteLength > 0) found.add(x); // a detached (already sent) buffer has length 0 and cannot be transferred again
      return;
    }
    if (ArrayBuffer.isView(x)) return; // views are not used in messages: a view's buffer may hold more than it shows
    for (const v of Array.isArray(x) ? x : Object.values(x)) walk(v, depth + 1);
  };
  walk(msg, 0);
  return [...found];
}

const TO_WORKER_TYPES = new Set<string>(['init', 'start', 'pause', 'resume', 'stop', 'request-reconstruction', 'request-checkpoint', 'request-attention', 'evaluate', 'forget-run', 'debug-lose-device']);

/**
 * Checks the envelope of a message to the worker: an object with a known `type`, this
 * protocol's version, and a `runId` where the type needs one. Returns a problem, or null.
 * (The configuration itself is checked by the engine, which names what is wrong.)
 */
export function checkToTrainWorker(msg: unknown): string | null {
  if (msg === null || typeof msg !== 'object') return 'the message is not an object';
  const m = msg as Record<string, unknown>;
  if (typeof m.type !== 'string' || !TO_WORKER_TYPES.has(m.type)) return `unknown message type ${JSON.stringify(m.type)}`;
  if (m.v !== TRAIN_PROTOCOL_VERSION) {
    return `protocol version ${JSON.stringify(m.v)} differs from the worker's ${TRAIN_PROTOCOL_VERSION}: the page and the worker come from different builds; reload the page`;
  }
  if (m.type !== 'init' && m.type !== 'debug-lose-device' && (typeof m.runId !== 'string' || m.runId === '')) return `"${m.type}" needs a runId`;
  if (m.type === 'start') {
    if (m.config === null || typeof m.config !== 'object') return '"start" needs a config';
    if (m.data === null || typeof m.data !== 'object') return '"start" needs a data choice';
  }
  if (m.type === 'evaluate') {
    if (typeof m.evalId !== 'string' || m.evalId === '') return '"evaluate" needs an evalId';
    if (m.request === null || typeof m.request !== 'object') return '"evaluate" needs a request';
  }
  return null;
}

/** A ParamsPayload's tensors as float32 views (no copy), by name. */
export function payloadTensors(p: ParamsPayload): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of p.tensors) {
    if (t.offset % 4 !== 0 || t.offset + 4 * t.length > p.buffer.byteLength) {
      throw new Error(`Tensor "${t.name}" (${t.length} values at byte ${t.offset}) lies outside its ${p.buffer.byteLength}-byte buffer.`);
    }
    out.set(t.name, new Float32Array(p.buffer, t.offset, t.length));
  }
  return out;
}
