/**
 * The studio's list of runs, kept across reloads in IndexedDB (database 'dmae-runs'): each run's
 * form configuration, what the worker resolved, its per-step history (thinned to at most
 * HISTORY_POINTS records), its final numbers, and — within a budget — its final weights, so it
 * can serve as a DMAE teacher or be exported later.
 *
 * Storage: a run's record (small) and its weights (the student's parameters, float32) live in
 * two object stores. Weights are kept for every run marked "keep", and for the most recent
 * unmarked runs while their weights together stay under WEIGHTS_BUDGET_BYTES; older unmarked
 * runs keep their curves and configuration only (the list says so). AdamW's moments are never
 * stored (a run continues from its checkpoint only within the page's life).
 *
 * Runs are recorded from the training store: startStudioRun() notes the form behind a run, and
 * the run is written when the worker starts it (status 'running': after a reload it shows as
 * interrupted) and again when it ends ('done', 'stopped', 'error' with what it had). A run also
 * keeps its live k-NN monitor's points and the latest evaluation result of each method (written
 * when an evaluation of it finishes), so they come back after a reload.
 */
import { create } from 'zustand';
import type { DataSpec, EvalMethodSpec, EvaluationResultSpec, KnnPoint, ModelSpec, ParamsPayload, ResolvedTrainSpec, StepRecord, TrainErrorKind, TrainSpec } from '../protocol/train';
import type { StudioConfig } from '../ui/studio/config';
import { knnMetrics, trainMetrics, useEvaluationStore, useStudioStore, useTrainStore, type RunView, type StartRequest } from './train';
import { idbDone, idbRequest as req } from '../core/idb';

export const HISTORY_POINTS = 2000;
export const WEIGHTS_BUDGET_BYTES = 256 * 2 ** 20;
const DB_NAME = 'dmae-runs';

export interface RunRecord {
  id: string;
  name: string;
  createdAt: number;
  status: 'running' | 'done' | 'stopped' | 'error';
  form: StudioConfig;
  spec: TrainSpec;
  data: DataSpec;
  dataName?: string;
  /** Training images, and the per-channel input normalisation (for exports). */
  nTrain?: number;
  norm?: { mean: number[]; std: number[] };
  resolved?: ResolvedTrainSpec;
  teacherLabel?: string;
  step: number;
  totalSteps: number;
  /** The last step's numbers, and the last validation loss. */
  final?: { loss: number; pix: number; distill?: number[]; lr: number; imagesPerSec: number; elapsedMs: number; valPix?: number };
  error?: { kind: TrainErrorKind; message: string };
  /** Per-step records, thinned evenly to at most HISTORY_POINTS (the last one always kept). */
  history: StepRecord[];
  keep: boolean;
  /** Bytes of the stored weights; 0 when none are kept. */
  weightsBytes: number;
  /** Why there are no weights, when there are none. */
  weightsNote?: string;
  /** The live k-NN monitor's points (thinned like the history), when the run had it on. */
  knn?: KnnPoint[];
  /** Classes of its dataset (0: unlabelled; absent in older records). */
  classes?: number;
  /** The latest evaluation of each method (accuracy, per class, confusion matrix). */
  evaluations?: Partial<Record<EvalMethodSpec, EvaluationResultSpec>>;
}

export interface StoredWeights {
  id: string;
  model: ModelSpec;
  params: ParamsPayload;
}

/** Every n-th record so that at most `max` remain, the last one included. */
export function thin<T>(all: readonly T[], max = HISTORY_POINTS): T[] {
  if (all.length <= max) return [...all];
  const stride = Math.ceil(all.length / max);
  const out: T[] = [];
  for (let i = 0; i < all.length; i += stride) out.push(all[i]);
  if (out[out.length - 1] !== all[all.length - 1]) out.push(all[all.length - 1]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// IndexedDB
// ---------------------------------------------------------------------------------------------

let dbPromise: Promise<IDBDatabase> | null = null;

function openDb(): Promise<IDBDatabase> {
  dbPromise ??= new Promise<IDBDatabase>((resolve, reject) => {
    if (typeof indexedDB === 'undefined') return reject(new Error('this browser has no IndexedDB'));
    const r = indexedDB.open(DB_NAME, 1);
    r.onupgradeneeded = () => {
      r.result.createObjectStore('runs', { keyPath: 'id' });
      r.result.createObjectStore('weights', { keyPath: 'id' });
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  return dbPromise;
}

async function tx<T>(stores: string[], mode: IDBTransactionMode, fn: (t: IDBTransaction) => Promise<T> | T): Promise<T> {
  const db = await openDb();
  const t = db.transaction(stores, mode);
  const done = idbDone(t);
  const out = await fn(t);
  await done;
  return out;
}

const storageMessage = (e: unknown): string => {
  const err = e as { name?: string; message?: string };
  return err?.name === 'QuotaExceededError'
    ? 'The browser\'s storage is full: delete old runs or datasets (the run is still on this page).'
    : `The browser's storage refused it (${err?.message ?? String(e)}).`;
};

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

export interface RunsSlice {
  runs: RunRecord[];
  loaded: boolean;
  /** The last storage problem, shown by the list. */
  storageError: string | null;
  load: () => Promise<void>;
  rename: (id: string, name: string) => Promise<void>;
  remove: (id: string) => Promise<void>;
  /** Mark (or unmark) a run whose weights are always kept. */
  setKeep: (id: string, keep: boolean) => Promise<void>;
  weights: (id: string) => Promise<StoredWeights | null>;
}

const sortRuns = (runs: RunRecord[]) => [...runs].sort((a, b) => b.createdAt - a.createdAt);

export const useRunsStore = create<RunsSlice>()((set, get) => ({
  runs: [],
  loaded: false,
  storageError: null,
  load: async () => {
    try {
      const runs = await tx(['runs'], 'readonly', (t) => req(t.objectStore('runs').getAll() as IDBRequest<RunRecord[]>));
      set({ runs: sortRuns(runs), loaded: true });
    } catch (e) {
      set({ loaded: true, storageError: `Runs cannot be kept across reloads: ${storageMessage(e)}` });
    }
  },
  rename: async (id, name) => {
    const r = get().runs.find((x) => x.id === id);
    if (!r) return;
    await putRecord({ ...r, name: name.trim() || r.name });
  },
  remove: async (id) => {
    set({ runs: get().runs.filter((r) => r.id !== id) });
    const s = useStudioStore.getState();
    if (s.compareRunIds.includes(id)) s.setCompareRunIds(s.compareRunIds.filter((x) => x !== id));
    if (s.teacher?.runId === id) s.setTeacher(null);
    try {
      await tx(['runs', 'weights'], 'readwrite', (t) => {
        t.objectStore('runs').delete(id);
        t.objectStore('weights').delete(id);
      });
    } catch (e) {
      set({ storageError: storageMessage(e) });
    }
  },
  setKeep: async (id, keep) => {
    const r = get().runs.find((x) => x.id === id);
    if (!r) return;
    await putRecord({ ...r, keep });
    if (!keep) await enforceBudget();
  },
  weights: async (id) => {
    try {
      return (await tx(['weights'], 'readonly', (t) => req(t.objectStore('weights').get(id) as IDBRequest<StoredWeights | undefined>))) ?? null;
    } catch {
      return null;
    }
  },
}));

async function putRecord(r: RunRecord, weights?: StoredWeights): Promise<void> {
  useRunsStore.setState((s) => ({ runs: sortRuns([...s.runs.filter((x) => x.id !== r.id), r]) }));
  try {
    await tx(['runs', 'weights'], 'readwrite', (t) => {
      t.objectStore('runs').put(r);
      if (weights) t.objectStore('weights').put(weights);
    });
  } catch (e) {
    if (weights) {
      // Keep the record without its weights rather than nothing.
      const lean = { ...r, weightsBytes: 0, weightsNote: `weights not kept: ${storageMessage(e)}` };
      useRunsStore.setState((s) => ({ runs: sortRuns([...s.runs.filter((x) => x.id !== r.id), lean]) }));
      try {
        await tx(['runs'], 'readwrite', (t) => void t.objectStore('runs').put(lean));
      } catch (e2) {
        useRunsStore.setState({ storageError: storageMessage(e2) });
      }
    } else useRunsStore.setState({ storageError: storageMessage(e) });
  }
}

/** Drops the weights of the oldest unmarked runs past the budget (their records stay). */
async function enforceBudget(): Promise<void> {
  let used = 0;
  for (const r of useRunsStore.getState().runs) {
    if (r.weightsBytes === 0 || r.keep) continue;
    used += r.weightsBytes;
    if (used <= WEIGHTS_BUDGET_BYTES) continue;
    const lean = { ...r, weightsBytes: 0, weightsNote: `weights dropped: unmarked runs keep ${WEIGHTS_BUDGET_BYTES / 2 ** 20} MiB of weights at most (mark a run “keep” to keep its weights)` };
    useRunsStore.setState((s) => ({ runs: s.runs.map((x) => (x.id === r.id ? lean : x)) }));
    try {
      await tx(['runs', 'weights'], 'readwrite', (t) => {
        t.objectStore('runs').put(lean);
        t.objectStore('weights').delete(r.id);
      });
    } catch (e) {
      useRunsStore.setState({ storageError: storageMessage(e) });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Recording runs from the training store
// ---------------------------------------------------------------------------------------------

interface RunOrigin {
  form: StudioConfig;
  /** What was sent to the worker (without `resume`): what a continuation sends again. */
  request: Omit<StartRequest, 'resume'>;
  teacherLabel?: string;
  name?: string;
}

const forms = new Map<string, RunOrigin>();

/** The form and the request behind a run of this page. */
export const requestOf = (runId: string): RunOrigin | undefined => forms.get(runId);

/** Starts a run for the studio's form (the worker's start), and records it in the list. */
export function startStudioRun(req: StartRequest, form: StudioConfig, opts: { teacherLabel?: string; name?: string } = {}): string {
  const id = useTrainStore.getState().start(req);
  const { resume: _resume, ...request } = req;
  void _resume;
  forms.set(id, { form, request, ...opts });
  return id;
}

function record(run: RunView, status: RunRecord['status']): RunRecord | null {
  const f = forms.get(run.runId);
  if (!f) return null;
  const existing = useRunsStore.getState().runs.find((r) => r.id === run.runId);
  const all = trainMetrics.records(run.runId);
  const last = all[all.length - 1];
  const knn = knnMetrics.records(run.runId);
  const number = useRunsStore.getState().runs.length + 1;
  return {
    id: run.runId,
    name: existing?.name ?? f.name ?? `${run.request.config.mode.toUpperCase()} ${run.request.config.model.embedDim}×${run.request.config.model.depth} #${number}`,
    createdAt: existing?.createdAt ?? Date.now(),
    status,
    form: f.form,
    spec: run.request.config,
    data: run.request.data,
    dataName: run.started?.data.name,
    nTrain: run.started?.data.train,
    norm: run.started ? { mean: run.started.data.mean, std: run.started.data.std } : undefined,
    resolved: run.started?.config,
    teacherLabel: f.teacherLabel,
    step: last?.step ?? run.step,
    totalSteps: run.request.config.totalSteps,
    final: last ? { loss: last.loss, pix: last.pix, distill: last.distill, lr: last.lr, imagesPerSec: last.imagesPerSec, elapsedMs: last.elapsedMs, valPix: run.reconstruction?.val.pix } : undefined,
    error: run.error ? { kind: run.error.kind, message: run.error.message } : undefined,
    history: thin(all),
    keep: existing?.keep ?? false,
    weightsBytes: existing?.weightsBytes ?? 0,
    ...(knn.length > 0 ? { knn: thin(knn) } : {}),
    ...(run.started?.data.classes !== undefined ? { classes: run.started.data.classes } : {}),
    ...(existing?.evaluations ? { evaluations: existing.evaluations } : {}),
  };
}

/** Keeps a finished evaluation with its run (the latest of each method). */
export async function saveEvaluation(runId: string, result: EvaluationResultSpec): Promise<void> {
  const r = useRunsStore.getState().runs.find((x) => x.id === runId);
  if (!r) return;
  await putRecord({ ...r, evaluations: { ...r.evaluations, [result.method]: result } });
}

async function persistEnded(run: RunView): Promise<void> {
  if (!run.started) return; // refused before it ran (the form shows why): nothing to keep
  const status = run.status as 'done' | 'stopped' | 'error';
  const r = record(run, status);
  if (!r) return;
  const ck = run.checkpoint;
  if (ck && ck.params.buffer.byteLength > 0) {
    // A copy: the run view keeps its own (it may be resumed from, exported, used as a teacher).
    const params: ParamsPayload = { tensors: ck.params.tensors.map((t) => ({ ...t, shape: [...t.shape] })), buffer: ck.params.buffer.slice(0) };
    r.weightsBytes = params.buffer.byteLength;
    await putRecord(r, { id: r.id, model: ck.config.model, params });
    await enforceBudget();
  } else {
    r.weightsNote = 'no weights: the run ended before anything could be saved';
    await putRecord(r);
  }
}

/** Runs `fn` in a task of its own, after the page has handled the message that asked for it. */
const later = (fn: () => void) => void setTimeout(fn, 0);

let watching = false;

/** Loads the list and records runs as they start and end (once per page). */
export function watchRuns(): void {
  if (watching) return;
  watching = true;
  void useRunsStore.getState().load();
  useTrainStore.subscribe((s, prev) => {
    const run = s.run;
    if (!run) return;
    const before = prev.run && prev.run.runId === run.runId ? prev.run : null;
    if (run.started && !before?.started) {
      later(() => {
        const r = record(run, 'running');
        if (r) void putRecord(r);
      });
    }
    if (['done', 'stopped', 'error'].includes(run.status) && before?.status !== run.status) later(() => void persistEnded(run));
  });
  useEvaluationStore.subscribe((s, prev) => {
    for (const [runId, e] of Object.entries(s.byRun)) {
      if (e.status === 'done' && e.result && prev.byRun[runId] !== e) void saveEvaluation(runId, e.result);
    }
  });
}

/** Puts a stored run's history into the metrics buffer (for overlays), once. */
export function loadHistory(id: string): void {
  if (trainMetrics.records(id).length > 0) return;
  const r = useRunsStore.getState().runs.find((x) => x.id === id);
  if (r && r.history.length > 0) trainMetrics.append(id, r.history);
  if (r?.knn && r.knn.length > 0 && knnMetrics.records(id).length === 0) knnMetrics.append(id, r.knn);
}
