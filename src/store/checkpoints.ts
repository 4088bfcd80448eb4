/**
 * The studio's checkpoints in the browser: autosave, the resume offer, download and upload.
 *
 * Autosave: every `autosaveEvery` steps of the current run (and when it pauses) the page asks the
 * worker for a checkpoint (`request-checkpoint`, served at the next step boundary, which does not
 * change the run's numbers); that checkpoint, and the one a run ends with (stopped, done, error),
 * becomes one safetensors file (src/io/protocol-checkpoint.ts, with the run's curve so far in its
 * metadata) kept in IndexedDB (src/io/checkpoint-store.ts), one slot per run: a resumed run keeps
 * writing its original run's slot. The encoding and the write happen in a worker of their own
 * (src/worker/checkpoint.worker.ts): the page only posts the checkpoint. A failed save (the
 * quota, above all) is shown in the page (`saveError`), never silent.
 *
 * Resume: `loadOffers()` lists the unfinished runs kept in this browser; `resumeStored` and
 * `resumeFile` start the worker from one with the configuration the checkpoint was trained with.
 */
import { create } from 'zustand';
import type { CheckpointStore, StoredCheckpointInfo } from '../io/checkpoint-store';
import type { Checkpoint, ParamsPayload, ResolvedTrainSpec, StepRecord, TrainSpec } from '../protocol/train';
import type { StudioConfig } from '../ui/studio/config';
import type { FromCheckpointWorker, ToCheckpointWorker } from '../worker/checkpoint.worker';
import { requestOf, startStudioRun, thin, useRunsStore } from './runs';
import { trainMetrics, useTrainStore, type RunView } from './train';

export const DEFAULT_AUTOSAVE_EVERY = 50;
const AUTOSAVE_KEY = 'dmae-autosave-every';

export interface CheckpointsSlice {
  /** Autosave every N steps (0: only on pause and at the end). */
  autosaveEvery: number;
  setAutosaveEvery: (n: number) => void;
  /** Unfinished runs kept in this browser (the resume offer), newest first. */
  offers: StoredCheckpointInfo[];
  /** The latest checkpoint kept for the current run. */
  lastSaved: { runId: string; slot: string; step: number } | null;
  /** Why the latest save failed (quota…), shown until a save succeeds. */
  saveError: string | null;
  /** Why a resume (from the browser or a file) could not start. */
  resumeError: string | null;
}

function initialEvery(): number {
  const fromUrl = globalThis.location ? new URLSearchParams(globalThis.location.search).get('autosave') : null;
  const stored = fromUrl ?? (globalThis.localStorage?.getItem(AUTOSAVE_KEY) ?? null);
  const n = stored === null ? NaN : Number(stored);
  return Number.isInteger(n) && n >= 0 ? n : DEFAULT_AUTOSAVE_EVERY;
}

export const useCheckpointsStore = create<CheckpointsSlice>()((set) => ({
  autosaveEvery: initialEvery(),
  setAutosaveEvery: (n) => {
    const v = Number.isInteger(n) && n >= 0 ? n : DEFAULT_AUTOSAVE_EVERY;
    try {
      globalThis.localStorage?.setItem(AUTOSAVE_KEY, String(v));
    } catch {
      /* private mode: the option lasts for this page */
    }
    set({ autosaveEvery: v });
  },
  offers: [],
  lastSaved: null,
  saveError: null,
  resumeError: null,
}));

// ---------------------------------------------------------------------------------------------
// Slots: a resumed run writes the slot of the run it continues.
// ---------------------------------------------------------------------------------------------

const slots = new Map<string, string>();
const slotOf = (runId: string) => slots.get(runId) ?? runId;

let storePromise: Promise<CheckpointStore> | null = null;
// The checkpoint code (and the engine tables it reads) loads when first needed, not with the page.
const io = () => import('../io/protocol-checkpoint');
const storeModule = () => import('../io/checkpoint-store');
let openStore: () => Promise<CheckpointStore> = async () => (await storeModule()).CheckpointStore.open();
let testStorage = false;
/** Tests: where checkpoints are kept (fake-indexeddb, a small quota); the writing stays in this thread. */
export function setCheckpointStorageForTests(open: () => Promise<CheckpointStore>): void {
  openStore = open;
  testStorage = true;
  storePromise = null;
}
function store(): Promise<CheckpointStore> {
  storePromise ??= openStore();
  storePromise.catch(() => (storePromise = null));
  return storePromise;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The run's name in the runs list, or ''. */
const labelOf = (runId: string) => useRunsStore.getState().runs.find((r) => r.id === runId)?.name ?? requestOf(runId)?.name ?? '';

// A teacher named by its studio run (`{ kind: 'run' }`): its weights read once per run from the runs store.
const runTeachers = new Map<string, Promise<ParamsPayload | undefined>>();

/**
 * The DMAE teacher's weights for run `runId`'s checkpoints (so that a file resumes on its own):
 * the ones sent to the worker, or, for a teacher that is a studio run, that run's kept weights.
 */
async function teacherOf(runId: string): Promise<ParamsPayload | undefined> {
  const t = requestOf(runId)?.request.teacher;
  if (!t) return undefined;
  if (t.kind === 'params') return t.params;
  let p = runTeachers.get(runId);
  if (!p) {
    p = useRunsStore.getState().weights(t.runId).then((w) => w?.params, () => undefined);
    runTeachers.set(runId, p);
  }
  const params = await p;
  if (!params) runTeachers.delete(runId); // not (yet) kept: ask again at the next save
  return params;
}

/** The run's curve up to the checkpoint (thinned), kept in the file so a resumed run shows all of it. */
const historyOf = (runId: string, ck: Checkpoint): StepRecord[] => thin(trainMetrics.records(runId).filter((r) => r.step <= ck.step));

/** One checkpoint file of a run's checkpoint (the DMAE teacher included when the page has its weights or the runs store keeps the teacher run's, and the curve so far). */
export async function checkpointFile(runId: string, ck: Checkpoint): Promise<Uint8Array> {
  const teacher = await teacherOf(runId);
  return (await io()).wireCheckpointToFile(ck, { ...(teacher ? { teacher } : {}), label: labelOf(runId), extra: { history: historyOf(runId, ck) } });
}

// ---------------------------------------------------------------------------------------------
// The writer: in the browser a worker of its own (src/worker/checkpoint.worker.ts) encodes and
// stores, so the page's share of an autosave is one message; elsewhere (tests) it runs here.
// ---------------------------------------------------------------------------------------------

let writer: Worker | null = null;
let writerFailed = false;
let nextId = 0;
const waiting = new Map<number, (r: FromCheckpointWorker) => void>();

function checkpointWorker(): Worker | null {
  if (writer || writerFailed || testStorage || typeof Worker === 'undefined') return writer;
  try {
    writer = new Worker(new URL('../worker/checkpoint.worker.ts', import.meta.url), { type: 'module', name: 'dmae-checkpoints' });
    writer.onmessage = (e: MessageEvent<FromCheckpointWorker>) => {
      waiting.get(e.data.id)?.(e.data);
      waiting.delete(e.data.id);
    };
    writer.onerror = (e) => {
      writerFailed = true;
      writer = null;
      for (const [id, done] of waiting) done({ id, ok: false, message: `The checkpoint writer stopped: ${e.message || 'it failed to load'}.` });
      waiting.clear();
    };
  } catch {
    writerFailed = true;
    writer = null;
  }
  return writer;
}

type WriterRequest = ToCheckpointWorker extends infer M ? (M extends unknown ? Omit<M, 'id'> : never) : never;

function ask(w: Worker, msg: WriterRequest): Promise<FromCheckpointWorker> {
  const id = ++nextId;
  return new Promise((resolve) => {
    waiting.set(id, resolve);
    w.postMessage({ ...msg, id }); // copies: the run view keeps its checkpoint
  });
}

/** Encodes and stores run `runId`'s checkpoint in its slot; throws with the message to show. */
async function writeCheckpoint(runId: string, slot: string, ck: Checkpoint): Promise<void> {
  const w = checkpointWorker();
  if (w) {
    const teacher = await teacherOf(runId);
    const r = await ask(w, { op: 'save', slot, label: labelOf(runId), checkpoint: ck, history: historyOf(runId, ck), ...(teacher ? { teacher } : {}) });
    if (!r.ok) throw new Error(r.message);
    return;
  }
  try {
    await (await store()).save(slot, await checkpointFile(runId, ck), labelOf(runId));
  } catch (e) {
    throw new Error(e instanceof (await storeModule()).CheckpointStoreError ? e.message : `The checkpoint at step ${ck.step} was not saved: ${errorText(e)}`);
  }
}

// Saves run one after another; a newer checkpoint waiting replaces an older one not yet written.
let saving = false;
let pending: { runId: string; ck: Checkpoint } | null = null;

async function drain(): Promise<void> {
  if (saving) return;
  saving = true;
  try {
    while (pending) {
      const { runId, ck } = pending;
      pending = null;
      const slot = slotOf(runId);
      try {
        await writeCheckpoint(runId, slot, ck);
        useCheckpointsStore.setState({ lastSaved: { runId, slot, step: ck.step }, saveError: null });
      } catch (e) {
        useCheckpointsStore.setState({ saveError: errorText(e) });
      }
    }
  } finally {
    saving = false;
  }
}

/** Keeps `ck` as run `runId`'s checkpoint in this browser (in the background; errors go to `saveError`). */
export function autosave(runId: string, ck: Checkpoint): Promise<void> {
  if (ck.params.buffer.byteLength === 0) return Promise.resolve();
  pending = { runId, ck };
  return drain();
}

let watching = false;

/** Requests checkpoints every N steps and on pause, and keeps every checkpoint the run gets (once per page). */
export function watchCheckpoints(): void {
  if (watching) return;
  watching = true;
  let asked = { runId: '', step: 0 };
  trainMetrics.subscribe((runId, records) => {
    const run = useTrainStore.getState().run;
    const every = useCheckpointsStore.getState().autosaveEvery;
    if (!run || run.runId !== runId || every <= 0 || run.status !== 'running' || records.length === 0) return;
    const step = records[records.length - 1].step;
    if (asked.runId !== runId) asked = { runId, step: run.started?.step ?? 0 };
    if (step >= run.request.config.totalSteps) return; // the end saves its own
    if (Math.floor(step / every) > Math.floor(asked.step / every)) {
      asked = { runId, step };
      useTrainStore.getState().requestCheckpoint();
    }
  });
  useTrainStore.subscribe((s, prev) => {
    const run = s.run;
    if (!run) return;
    const before: RunView | null = prev.run && prev.run.runId === run.runId ? prev.run : null;
    if (run.status === 'paused' && before?.status !== 'paused') useTrainStore.getState().requestCheckpoint();
    if (run.checkpoint && run.checkpoint !== before?.checkpoint) {
      const { runId } = run, ck = run.checkpoint;
      setTimeout(() => void autosave(runId, ck), 0); // after the page has handled the message
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------------------------

/** Reads the resume offer (unfinished runs in this browser), leaving out the run this page trains. */
export async function loadOffers(): Promise<void> {
  try {
    const s = await store();
    const run = useTrainStore.getState().run;
    const mine = run ? slotOf(run.runId) : null;
    useCheckpointsStore.setState({ offers: (await s.resumable()).filter((o) => o.runId !== mine) });
  } catch (e) {
    useCheckpointsStore.setState({ resumeError: `The checkpoints kept in this browser could not be read: ${errorText(e)}` });
  }
}

/** The request a checkpoint's resolved configuration stands for (the worker resolves it to the same). */
export function specOfResolved(c: ResolvedTrainSpec): TrainSpec {
  return {
    mode: c.mode, model: c.model, ...(c.teacher ? { teacher: c.teacher } : {}), ...(c.distill ? { distill: c.distill } : {}),
    visible: c.visible, batch: c.batch, accumSteps: c.accumSteps, lr: c.lr, minLr: c.minLr, warmupSteps: c.warmupSteps,
    totalSteps: c.totalSteps, weightDecay: c.weightDecay, beta1: c.beta1, beta2: c.beta2, eps: c.eps,
    ...(c.clipGrad !== null ? { clipGrad: c.clipGrad } : {}), seed: c.seed, nanGuard: c.nanGuard,
    // A checkpoint written before mixed precision existed has none: f32.
    precision: c.precision ?? 'f32',
  };
}

async function startFromFile(bytes: Uint8Array, file: string, slot: string | null, form: StudioConfig, name?: string): Promise<string> {
  const { checkpoint, teacher, meta } = (await io()).fileToWireCheckpoint(bytes, file);
  const c = checkpoint.config;
  if (c.mode === 'dmae' && !teacher) throw new Error(`${file}: a DMAE checkpoint without its teacher's weights cannot be resumed here.`);
  const label = name ?? (typeof meta.extra?.label === 'string' && meta.extra.label ? meta.extra.label : `${c.mode.toUpperCase()} ${c.model.embedDim}×${c.model.depth}`);
  const id = startStudioRun(
    {
      config: specOfResolved(c), data: checkpoint.data, resume: checkpoint,
      ...(teacher ? { teacher: { kind: 'params' as const, params: teacher } } : {}),
      options: { reconEvery: Math.max(1, Math.round(c.totalSteps / 10)), reconCount: Math.min(6, c.batch) },
    },
    form, { name: `${label.replace(/ \(continued\)$/, '')} (continued)` },
  );
  if (slot) slots.set(id, slot);
  // The curve so far, before the worker's first message: the chart continues it.
  const history = meta.extra?.history;
  if (Array.isArray(history)) trainMetrics.append(id, (history as StepRecord[]).filter((r) => r && typeof r.step === 'number' && r.step <= checkpoint.step));
  return id;
}

/** Continues an unfinished run kept in this browser; returns the new run's id, or null (resumeError says why). */
export async function resumeStored(slot: string, form: StudioConfig): Promise<string | null> {
  try {
    const bytes = await (await store()).load(slot);
    const offer = useCheckpointsStore.getState().offers.find((o) => o.runId === slot);
    const id = await startFromFile(bytes, `checkpoint of run ${slot}`, slot, useRunsStore.getState().runs.find((r) => r.id === slot)?.form ?? form, offer?.label || undefined);
    useCheckpointsStore.setState({ offers: useCheckpointsStore.getState().offers.filter((o) => o.runId !== slot), resumeError: null });
    return id;
  } catch (e) {
    useCheckpointsStore.setState({ resumeError: `The run could not be resumed: ${errorText(e)}` });
    return null;
  }
}

/** Continues a run from a downloaded checkpoint file; returns the new run's id, or null (resumeError says why). */
export async function resumeFile(file: File, form: StudioConfig): Promise<string | null> {
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const id = await startFromFile(bytes, file.name, null, form);
    useCheckpointsStore.setState({ resumeError: null });
    return id;
  } catch (e) {
    useCheckpointsStore.setState({ resumeError: `“${file.name}” cannot be resumed from: ${errorText(e)}` });
    return null;
  }
}

/** Forgets an unfinished run's checkpoint (the offer's Discard). */
export async function discardStored(slot: string): Promise<void> {
  try {
    await (await store()).remove(slot);
  } catch (e) {
    useCheckpointsStore.setState({ resumeError: `The checkpoint could not be deleted: ${errorText(e)}` });
  }
  useCheckpointsStore.setState({ offers: useCheckpointsStore.getState().offers.filter((o) => o.runId !== slot) });
}

/** Downloads the current run's latest checkpoint as one .safetensors file (errors go to `saveError`). */
export async function downloadCheckpoint(run: RunView): Promise<void> {
  const ck = run.checkpoint;
  if (!ck) return;
  let bytes: Uint8Array;
  try {
    const w = checkpointWorker();
    if (w) {
      const teacher = await teacherOf(run.runId);
      const r = await ask(w, { op: 'file', label: labelOf(run.runId), checkpoint: ck, history: historyOf(run.runId, ck), ...(teacher ? { teacher } : {}) });
      if (!r.ok || !r.bytes) throw new Error(r.ok ? 'no file came back' : r.message);
      bytes = new Uint8Array(r.bytes);
    } else {
      bytes = await checkpointFile(run.runId, ck);
    }
  } catch (e) {
    useCheckpointsStore.setState({ saveError: `The checkpoint could not be made into a file: ${errorText(e)}` });
    return;
  }
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `${(labelOf(run.runId) || run.runId).replace(/[^\w.-]+/g, '_')}-step${ck.step}.safetensors`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
