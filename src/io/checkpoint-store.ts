/**
 * Checkpoints kept in the browser (IndexedDB; works in a Web Worker and in the page), so a
 * reload, a crash or a closed tab loses at most the steps since the last autosave, and the
 * studio can offer to resume. One slot per run id (the latest checkpoint replaces the previous
 * one), in two object stores written in ONE transaction — `meta` (what the resume offer shows)
 * and `data` (the checkpoint file's bytes, the same bytes a download gives): a failed save
 * (quota, crash) leaves the previous checkpoint of that run intact. Quota problems are
 * CheckpointStoreErrors that say so, never silent.
 */
import { CHECKPOINT_METADATA_KEY, type CheckpointMeta } from './checkpoint';
import { readSafetensors } from './safetensors';
import { idbDone as done, idbRequest as request } from '../core/idb';

export class CheckpointStoreError extends Error {
  constructor(message: string, readonly kind: 'quota' | 'storage' | 'not-found' | 'unavailable') {
    super(message);
    this.name = 'CheckpointStoreError';
  }
}

export interface StoredCheckpointInfo {
  runId: string;
  /** A name the user recognises (the run's label), or ''. */
  label: string;
  mode: 'mae' | 'dmae';
  step: number;
  totalSteps: number;
  savedAt: string;
  bytes: number;
  /** Whether the run was not finished when saved (what a resume offer lists). */
  resumable: boolean;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function saveError(e: unknown, bytes: number): CheckpointStoreError {
  const err = e as { name?: string; message?: string } | null;
  if (err?.name === 'QuotaExceededError') {
    return new CheckpointStoreError(`The checkpoint (${mib(bytes)}) was not saved: the browser's storage quota is full. Download the checkpoint instead, or delete old checkpoints or datasets. The previous checkpoint of this run is unchanged.`, 'quota');
  }
  return new CheckpointStoreError(`The checkpoint (${mib(bytes)}) was not saved: the browser's storage refused it (${[err?.name, err?.message ?? String(e)].filter(Boolean).join(': ')}). The previous checkpoint of this run is unchanged.`, 'storage');
}

export interface CheckpointStoreOptions {
  /** Database name (default 'dmae-checkpoints'). */
  name?: string;
  /** IndexedDB factory (default globalThis.indexedDB; tests pass fake-indexeddb's). */
  factory?: IDBFactory;
  /** Storage estimate (default navigator.storage.estimate); tests pass a small quota. */
  estimate?: () => Promise<{ usage?: number; quota?: number }>;
  /** Test hook: runs inside the save transaction between the two writes; throwing aborts it. */
  beforeDataWrite?: () => void;
}

/** What the resume offer needs, read from the checkpoint's header alone (no tensor is copied). */
export function describeCheckpoint(runId: string, bytes: Uint8Array, label = ''): StoredCheckpointInfo {
  const st = readSafetensors(bytes, { file: `checkpoint of run ${runId}` });
  const raw = st.metadata[CHECKPOINT_METADATA_KEY];
  if (raw === undefined) throw new CheckpointStoreError(`The file for run ${runId} is not a checkpoint (no ${CHECKPOINT_METADATA_KEY} metadata).`, 'storage');
  const meta = JSON.parse(raw) as CheckpointMeta;
  return {
    runId, label, mode: meta.config.mode, step: meta.trainer.step, totalSteps: meta.config.totalSteps, savedAt: meta.savedAt,
    bytes: bytes.byteLength, resumable: meta.trainer.step < meta.config.totalSteps,
  };
}

export class CheckpointStore {
  private constructor(private readonly db: IDBDatabase, private readonly opts: CheckpointStoreOptions) {}

  static async open(opts: CheckpointStoreOptions = {}): Promise<CheckpointStore> {
    const factory = opts.factory ?? globalThis.indexedDB;
    if (!factory) throw new CheckpointStoreError('Checkpoints cannot be kept in this browser (no IndexedDB: a private window?). Download them instead.', 'unavailable');
    const req = factory.open(opts.name ?? 'dmae-checkpoints', 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('meta')) db.createObjectStore('meta', { keyPath: 'runId' });
      if (!db.objectStoreNames.contains('data')) db.createObjectStore('data', { keyPath: 'runId' });
    };
    try {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
        req.onblocked = () => reject(new DOMException('another tab holds an older version of the database open', 'BlockedError'));
      });
      return new CheckpointStore(db, opts);
    } catch (e) {
      throw new CheckpointStoreError(`The checkpoint storage could not be opened (${(e as Error)?.message ?? String(e)}). Close other studio tabs and reload.`, 'unavailable');
    }
  }

  /**
   * Stores `bytes` (an encodeCheckpoint file) as run `runId`'s checkpoint, replacing its previous
   * one once the transaction commits. Throws CheckpointStoreError (kind 'quota' when full).
   */
  async save(runId: string, bytes: Uint8Array, label = ''): Promise<StoredCheckpointInfo> {
    const info = describeCheckpoint(runId, bytes, label);
    const estimate = this.opts.estimate ?? (() => globalThis.navigator?.storage?.estimate?.() ?? Promise.resolve({}));
    const est = await estimate().catch(() => null);
    if (est && est.quota !== undefined && est.usage !== undefined && est.usage + bytes.byteLength > est.quota) {
      throw saveError({ name: 'QuotaExceededError' }, bytes.byteLength);
    }
    let tx: IDBTransaction;
    try {
      tx = this.db.transaction(['meta', 'data'], 'readwrite');
    } catch (e) {
      throw saveError(e, bytes.byteLength);
    }
    const committed = done(tx);
    try {
      tx.objectStore('meta').put(info);
      this.opts.beforeDataWrite?.();
      // A copy of exactly these bytes (the view may be part of a larger buffer).
      tx.objectStore('data').put({ runId, bytes: bytes.slice().buffer });
    } catch (e) {
      try {
        tx.abort();
      } catch {
        /* already finished */
      }
      await committed.catch(() => undefined);
      throw saveError(e, bytes.byteLength);
    }
    try {
      await committed;
    } catch (e) {
      throw saveError(e, bytes.byteLength);
    }
    return info;
  }

  /** Every stored checkpoint, newest first. */
  async list(): Promise<StoredCheckpointInfo[]> {
    const tx = this.db.transaction('meta', 'readonly');
    const all = (await request(tx.objectStore('meta').getAll())) as StoredCheckpointInfo[];
    return all.sort((a, b) => (a.savedAt < b.savedAt ? 1 : a.savedAt > b.savedAt ? -1 : 0));
  }

  /** Unfinished runs, newest first: what the studio offers to resume after a reload. */
  async resumable(): Promise<StoredCheckpointInfo[]> {
    return (await this.list()).filter((c) => c.resumable);
  }

  /** The checkpoint file's bytes (decodeCheckpoint reads and checks them). */
  async load(runId: string): Promise<Uint8Array> {
    const tx = this.db.transaction('data', 'readonly');
    const rec = (await request(tx.objectStore('data').get(runId))) as { runId: string; bytes: ArrayBuffer } | undefined;
    if (!rec) throw new CheckpointStoreError(`No checkpoint of run ${runId} is stored in this browser (deleted, or storage was cleared).`, 'not-found');
    return new Uint8Array(rec.bytes);
  }

  async remove(runId: string): Promise<void> {
    const tx = this.db.transaction(['meta', 'data'], 'readwrite');
    tx.objectStore('meta').delete(runId);
    tx.objectStore('data').delete(runId);
    await done(tx);
  }

  close(): void {
    this.db.close();
  }
}
