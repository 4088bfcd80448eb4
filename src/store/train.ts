/**
 * The training slice of the studio's store, and the one bridge to the training worker
 * (src/worker/train.worker.ts, protocol in src/protocol/train.ts). Components call start /
 * pause / resume / stop here and read the run's state; none of them talks to the worker.
 *
 * Per-step numbers do not go through React state: they land in `trainMetrics`, an append-only
 * buffer per run that charts and counters subscribe to (the worker batches them, ≤ 10 messages a
 * second); the live k-NN monitor's points land in `knnMetrics` the same way. The store's state
 * changes only when the run's status, picture or result does. Evaluations of a run ('evaluate'
 * → progress → result) are the `useEvaluationStore` slice at the end.
 */
import { create } from 'zustand';
import type { AdapterSummary } from '../protocol/gpu';
import {
  TRAIN_PROTOCOL_VERSION, transferablesOf,
  type AttentionMap, type AttentionRequestSpec, type Checkpoint, type DataSpec, type DataSummary, type EvaluateRequestSpec, type EvaluateSourceSpec,
  type EvaluationProgressSpec, type EvaluationResultSpec, type FromTrainWorker, type KnnPoint, type MemoryPlanSpec, type ResolvedTrainSpec,
  type RunOptions, type StepRecord, type TeacherSource, type ToTrainWorker, type TrainErrorKind, type TrainSpec,
} from '../protocol/train';

export type RunStatus = 'starting' | 'running' | 'pausing' | 'paused' | 'stopping' | 'done' | 'stopped' | 'error';

/** A reconstruction ready for a canvas: `ctx.putImageData(new ImageData(data, width, height), 0, 0)`. */
export interface ReconstructionView {
  step: number;
  width: number;
  height: number;
  data: Uint8ClampedArray<ArrayBuffer>;
  rows: number;
  columns: readonly string[];
  cell: number;
  gap: number;
  /** Distinct grey levels in each column (the worker counts them: gridColumnLevels). */
  levels: number[];
  val: { pix: number; loss: number };
}

export interface RunView {
  runId: string;
  status: RunStatus;
  /** What the page asked for. */
  request: { config: TrainSpec; data: DataSpec; options?: RunOptions };
  /** What the worker really trains (resolved configuration, memory, data, adapter). */
  started?: { config: ResolvedTrainSpec; memory: MemoryPlanSpec; data: DataSummary; adapter: AdapterSummary; step: number };
  /** The step at the last status change (live steps: trainMetrics). */
  step: number;
  reconstruction?: ReconstructionView;
  error?: { kind: TrainErrorKind; message: string; step: number };
  result?: { reason: 'done' | 'stopped'; step: number; elapsedMs: number };
  /** The latest kept state: a requested checkpoint, or what the run had when it ended. */
  checkpoint?: Checkpoint;
  /** Why the live k-NN monitor is off for this run (an unlabelled dataset); its points: knnMetrics. */
  knnProblem?: string;
}

export type TrainWorkerState =
  | { status: 'off' | 'starting' }
  | { status: 'ready'; adapter: AdapterSummary }
  | { status: 'unavailable'; code: string; message: string };

export interface StartRequest {
  config: TrainSpec;
  data: DataSpec;
  options?: RunOptions;
  teacher?: TeacherSource;
  resume?: Checkpoint;
}

export interface TrainSlice {
  worker: TrainWorkerState;
  /** The current run, or the last one (kept with its results until the next start). */
  run: RunView | null;
  /** Errors not tied to a run (an unreadable message, a device lost while idle). */
  workerError: string | null;
  /** Starts a run; returns its id. */
  start: (req: StartRequest) => string;
  pause: () => void;
  resume: () => void;
  stop: () => void;
  requestReconstruction: () => void;
  requestCheckpoint: () => void;
}

// ---------------------------------------------------------------------------------------------
// Per-step metrics, outside React
// ---------------------------------------------------------------------------------------------

export type MetricsListener<T = StepRecord> = (runId: string, records: readonly T[]) => void;

/** Every step of every run of this page, append-only; listeners get each new batch. */
export class MetricsBuffer<T = StepRecord> {
  private readonly runs = new Map<string, T[]>();
  private readonly listeners = new Set<MetricsListener<T>>();

  append(runId: string, records: readonly T[]): void {
    let all = this.runs.get(runId);
    if (!all) this.runs.set(runId, (all = []));
    for (const r of records) all.push(r);
    for (const l of this.listeners) l(runId, records);
  }

  records(runId: string): readonly T[] {
    return this.runs.get(runId) ?? [];
  }

  latest(runId: string): T | undefined {
    const all = this.runs.get(runId);
    return all?.[all.length - 1];
  }

  /** Called with each new batch; returns the unsubscribe function. */
  subscribe(listener: MetricsListener<T>): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  forget(runId: string): void {
    this.runs.delete(runId);
  }
}

export const trainMetrics = new MetricsBuffer();

/** The live k-NN monitor's points of every run of this page (RunOptions.knnEvery), in step order. */
export const knnMetrics = new MetricsBuffer<KnnPoint>();

// ---------------------------------------------------------------------------------------------
// The bridge
// ---------------------------------------------------------------------------------------------

let worker: Worker | null = null;
let runCounter = 0;

type Unversioned = ToTrainWorker extends infer M ? (M extends unknown ? Omit<M, 'v'> : never) : never;

function send(msg: Unversioned, transfer = false): void {
  const full = { v: TRAIN_PROTOCOL_VERSION, ...msg } as ToTrainWorker;
  // The page keeps its own copies of what it sends (a checkpoint to resume, a teacher): no transfer by default.
  worker?.postMessage(full, transfer ? transferablesOf(full) : []);
}

export const useTrainStore = create<TrainSlice>()((set, get) => {
  const control = (type: 'pause' | 'resume' | 'stop' | 'request-reconstruction' | 'request-checkpoint', status?: RunStatus) => {
    const run = get().run;
    if (!run || ['done', 'stopped', 'error'].includes(run.status)) return;
    if (status) set({ run: { ...run, status } });
    send({ type, runId: run.runId });
  };
  return {
    worker: { status: 'off' },
    run: null,
    workerError: null,
    start: (req) => {
      startTrainWorker();
      const runId = `run-${Date.now().toString(36)}-${++runCounter}`;
      set({ run: { runId, status: 'starting', request: { config: req.config, data: req.data, options: req.options }, step: req.resume?.step ?? 0 }, workerError: null });
      send({ type: 'start', runId, config: req.config, data: req.data, ...(req.options ? { options: req.options } : {}), ...(req.teacher ? { teacher: req.teacher } : {}), ...(req.resume ? { resume: req.resume } : {}) });
      return runId;
    },
    pause: () => control('pause', 'pausing'),
    resume: () => control('resume', 'running'),
    stop: () => control('stop', 'stopping'),
    requestReconstruction: () => control('request-reconstruction'),
    requestCheckpoint: () => control('request-checkpoint'),
  };
});

/** Applies a message of the worker to the store (exported for tests). */
export function receiveTrainMessage(msg: FromTrainWorker): void {
  const { setState: set, getState: get } = useTrainStore;
  if (msg.type === 'ready') return set({ worker: { status: 'ready', adapter: msg.adapter } });
  if (msg.type === 'unavailable') return set({ worker: { status: 'unavailable', code: msg.code, message: msg.message } });
  if (msg.type === 'metrics') return trainMetrics.append(msg.runId, msg.records);
  if (msg.type === 'attention') return receiveAttention(msg);
  if (msg.type === 'evaluation' || msg.type === 'evaluation-progress') return receiveEvaluation(msg);
  if (msg.type === 'knn' && msg.point) return knnMetrics.append(msg.runId, [msg.point]);
  const run = get().run;
  if (msg.type === 'error' && (msg.runId === null || !run || msg.runId !== run.runId)) {
    return set({ workerError: msg.message });
  }
  if (!run || msg.runId !== run.runId) return; // a message of an earlier run
  const update = (patch: Partial<RunView>) => set({ run: { ...get().run!, ...patch } });
  switch (msg.type) {
    case 'started':
      return update({ status: run.status === 'starting' ? 'running' : run.status, started: { config: msg.config, memory: msg.memory, data: msg.data, adapter: msg.adapter, step: msg.step }, step: msg.step });
    case 'reconstruction':
      return update({
        reconstruction: {
          step: msg.step, width: msg.image.width, height: msg.image.height, data: new Uint8ClampedArray(msg.image.data),
          rows: msg.rows, columns: msg.columns, cell: msg.cell, gap: msg.gap, levels: msg.levels, val: msg.val,
        },
      });
    case 'paused':
      return update({ status: run.status === 'stopping' ? 'stopping' : 'paused', step: msg.step });
    case 'resumed':
      return update({ status: run.status === 'stopping' ? 'stopping' : 'running', step: msg.step });
    case 'checkpoint':
      return update({ checkpoint: msg.checkpoint });
    case 'knn':
      return update({ knnProblem: msg.problem });
    case 'stopped':
      return update({ status: msg.reason, step: msg.step, result: { reason: msg.reason, step: msg.step, elapsedMs: msg.elapsedMs }, checkpoint: msg.checkpoint });
    case 'error':
      return update({ status: 'error', step: msg.step, error: { kind: msg.kind, message: msg.message, step: msg.step }, ...(msg.checkpoint ? { checkpoint: msg.checkpoint } : {}) });
  }
}

/** Starts the training worker (once) and has it acquire its GPU. */
export function startTrainWorker(): void {
  if (worker) return;
  useTrainStore.setState({ worker: { status: 'starting' } });
  try {
    worker = new Worker(new URL('../worker/train.worker.ts', import.meta.url), { type: 'module', name: 'dmae-train' });
  } catch (e) {
    useTrainStore.setState({ worker: { status: 'unavailable', code: 'no-worker', message: `This browser cannot start a module Web Worker: ${(e as Error).message}` } });
    return;
  }
  worker.onmessage = (event: MessageEvent<FromTrainWorker>) => receiveTrainMessage(event.data);
  // End-to-end tests reach the worker's test-only messages through the page (?debug=train).
  if (globalThis.location?.search.includes('debug=train')) {
    (globalThis as unknown as { __dmaeTrain: unknown }).__dmaeTrain = { loseDevice: () => send({ type: 'debug-lose-device' }), metrics: trainMetrics };
  }
  worker.onerror = (event) => {
    const message = `The training worker stopped: ${event.message || 'it failed to load'}.`;
    const { run } = useTrainStore.getState();
    useTrainStore.setState({
      worker: { status: 'unavailable', code: 'worker-error', message },
      ...(run && !['done', 'stopped', 'error'].includes(run.status) ? { run: { ...run, status: 'error' as const, error: { kind: 'internal' as const, message, step: run.step } } } : {}),
    });
  };
  send({ type: 'init' });
}

// ---------------------------------------------------------------------------------------------
// Studio selections shared by the layout (src/ui/App.tsx and its panels) and the Watch
// components (src/ui/watch/): which runs are overlaid, which teacher a DMAE run distils from.
// ---------------------------------------------------------------------------------------------

/** A frozen DMAE teacher: its architecture and where its weights come from. */
export interface TeacherChoice {
  /** What the user sees ("run-… (MAE 64×4)", a file name). */
  label: string;
  /** The teacher's model: the distillation's teacher blocks kT are 0..depth-1. */
  model: import('../protocol/train').ModelSpec;
  source: TeacherSource;
  /** The studio run it comes from, when it does. */
  runId?: string;
}

export interface StudioShared {
  /**
   * Runs to overlay on the charts (ids of the runs list, src/store/runs.ts). Their per-step
   * records are in `trainMetrics` under the same id: a stored run's history is loaded into it
   * before its id is added here.
   */
  compareRunIds: string[];
  setCompareRunIds: (ids: string[]) => void;
  /** The teacher the next DMAE run distils from (set by the Configure form or the teacher panel). */
  teacher: TeacherChoice | null;
  setTeacher: (t: TeacherChoice | null) => void;
}

export const useStudioStore = create<StudioShared>()((set) => ({
  compareRunIds: [],
  setCompareRunIds: (ids) => set({ compareRunIds: [...new Set(ids)] }),
  teacher: null,
  setTeacher: (teacher) => set({ teacher }),
}));

// ---------------------------------------------------------------------------------------------
// Attention maps (src/ui/watch/AttentionView.tsx): one request at a time, the latest wins.
// ---------------------------------------------------------------------------------------------

export interface AttentionState {
  runId: string;
  request: AttentionRequestSpec;
  status: 'loading' | 'done' | 'failed';
  map?: AttentionMap;
  /** Why there is no map (a bad block, no teacher, an ended run). */
  problem?: string;
}

export const useAttentionStore = create<{ attention: AttentionState | null; requestAttention: (runId: string, req: AttentionRequestSpec) => void }>()((set) => ({
  attention: null,
  requestAttention: (runId, request) => {
    set({ attention: { runId, request, status: 'loading' } });
    send({ type: 'request-attention', runId, ...request });
  },
}));

const sameRequest = (a: AttentionRequestSpec, b: AttentionRequestSpec) =>
  a.model === b.model && a.block === b.block && a.head === b.head && a.image === b.image && (a.tokens ?? 'all') === (b.tokens ?? 'all');

function receiveAttention(msg: Extract<FromTrainWorker, { type: 'attention' }>): void {
  const cur = useAttentionStore.getState().attention;
  if (!cur || cur.runId !== msg.runId || !sameRequest(cur.request, msg.request)) return; // an answer to an older request
  useAttentionStore.setState({ attention: { ...cur, status: msg.map ? 'done' : 'failed', map: msg.map, problem: msg.problem } });
}

// ---------------------------------------------------------------------------------------------
// Evaluations (src/ui/studio/EvaluatePanel.tsx): one per run at a time, the latest wins.
// ---------------------------------------------------------------------------------------------

export interface EvaluationState {
  runId: string;
  evalId: string;
  request: EvaluateRequestSpec;
  status: 'running' | 'done' | 'failed';
  progress?: EvaluationProgressSpec;
  result?: EvaluationResultSpec;
  /** Why there is no result (an unlabelled dataset, a run the worker no longer holds…). */
  problem?: string;
}

export interface EvaluationSlice {
  /** The latest evaluation of each run (this page's; stored results: the runs list). */
  byRun: Record<string, EvaluationState>;
  /**
   * Asks the worker to evaluate a run's encoder: the run it trains or holds, else the weights in
   * `source` (a run kept in this browser). Returns the evaluation's id.
   */
  evaluate: (runId: string, request: EvaluateRequestSpec, source?: EvaluateSourceSpec) => string;
}

let evalCounter = 0;

export const useEvaluationStore = create<EvaluationSlice>()((set, get) => ({
  byRun: {},
  evaluate: (runId, request, source) => {
    startTrainWorker();
    const evalId = `eval-${Date.now().toString(36)}-${++evalCounter}`;
    set({ byRun: { ...get().byRun, [runId]: { runId, evalId, request, status: 'running' } } });
    send({ type: 'evaluate', runId, evalId, request, ...(source ? { source } : {}) });
    return evalId;
  },
}));

function receiveEvaluation(msg: Extract<FromTrainWorker, { type: 'evaluation' | 'evaluation-progress' }>): void {
  const { byRun } = useEvaluationStore.getState();
  const cur = byRun[msg.runId];
  if (!cur || cur.evalId !== msg.evalId) return; // an answer to an older request
  const next: EvaluationState = msg.type === 'evaluation-progress'
    ? { ...cur, progress: msg.progress }
    : { ...cur, status: msg.result ? 'done' : 'failed', result: msg.result, problem: msg.result ? undefined : msg.problem ?? 'The worker gave no result.' };
  useEvaluationStore.setState({ byRun: { ...byRun, [msg.runId]: next } });
}
