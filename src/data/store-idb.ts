/**
 * Imported datasets kept in the browser (IndexedDB), so a reload does not ask for the files
 * again. Two object stores — `meta` (what the list shows: sizes, class count, thumbnails) and
 * `data` (the dataset as a DMDS file) — always written, and deleted, in ONE transaction: a save
 * that fails (quota, a crash, a closed tab) leaves every stored dataset as it was, and the list
 * never shows a dataset whose data is missing. Listing reads `meta` only.
 */
import { DatasetError, formatBytes } from './errors';
import { sampleRGBA, summarize, type DatasetSummary, type ImageDataset } from './dataset';
import { decodeDmds, encodeDmds } from './formats/dmds';
import { resizeCHW } from './resize';
import { idbDone as done, idbRequest as request } from '../core/idb';

export interface Thumbnail {
  width: number;
  height: number;
  /** [height·width·4] */
  rgba: Uint8ClampedArray;
  /** Class name of the sample, or ''. */
  label: string;
}

export interface StoredDatasetInfo extends DatasetSummary {
  id: string;
  createdAt: number;
  /** Bytes the stored record takes (the DMDS file). */
  storedBytes: number;
  thumbnails: Thumbnail[];
}

const DB_VERSION = 1;

/** A few samples (one per class first) as small RGBA images for the list. */
export function makeThumbnails(ds: ImageDataset, count = 8, maxSide = 48): Thumbnail[] {
  const picks: number[] = [];
  if (ds.labels) {
    const seen = new Set<number>();
    for (let i = 0; i < ds.N && picks.length < count; i++) {
      if (!seen.has(ds.labels[i])) {
        seen.add(ds.labels[i]);
        picks.push(i);
      }
    }
  }
  for (let i = 0; i < ds.N && picks.length < Math.min(count, ds.N); i++) if (!picks.includes(i)) picks.push(i);
  const s = Math.min(1, maxSide / Math.max(ds.H, ds.W));
  const h = Math.max(1, Math.round(ds.H * s));
  const w = Math.max(1, Math.round(ds.W * s));
  return picks.map((n) => {
    const size = ds.C * ds.H * ds.W;
    const small = resizeCHW(ds.images.subarray(n * size, (n + 1) * size), ds.C, ds.H, ds.W, h, w, 'stretch');
    const one: ImageDataset = { ...ds, images: small, N: 1, H: h, W: w, nTrain: 1, labels: null, classNames: [] };
    return { width: w, height: h, rgba: sampleRGBA(one, 0), label: ds.labels ? ds.classNames[ds.labels[n]] : '' };
  });
}

function newId(): string {
  const c = globalThis.crypto;
  if (c && 'randomUUID' in c) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function storageError(e: unknown, name: string, bytes: number): DatasetError {
  const err = e as { name?: string; message?: string } | null;
  if (err?.name === 'QuotaExceededError') {
    return new DatasetError(name, 'storage', `was not saved: the browser's storage quota is full (it needs ${formatBytes(bytes)}).`, 'Delete a stored dataset, free disk space, or import at a smaller resolution. Nothing stored was changed.');
  }
  return new DatasetError(name, 'storage', `was not saved: the browser's storage refused it (${err?.name ?? ''} ${err?.message ?? String(e)}).`.replace('( ', '('), 'Nothing stored was changed.');
}

export interface DatasetStoreOptions {
  /** Database name (default 'dmae-datasets'). */
  name?: string;
  /** IndexedDB factory (default globalThis.indexedDB; tests pass fake-indexeddb's). */
  factory?: IDBFactory;
  /** Test hook: runs inside the save transaction between the two writes; throwing aborts it. */
  beforeDataWrite?: () => void;
}

export class DatasetStore {
  private constructor(private readonly db: IDBDatabase, private readonly opts: DatasetStoreOptions) {}

  static async open(opts: DatasetStoreOptions = {}): Promise<DatasetStore> {
    const factory = opts.factory ?? globalThis.indexedDB;
    if (!factory) throw new DatasetError('browser storage', 'storage', 'is not available: this browser gives no IndexedDB (a private window?).', 'Datasets can still be imported, but will not be kept.');
    const req = factory.open(opts.name ?? 'dmae-datasets', DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('meta')) db.createObjectStore('meta', { keyPath: 'id' });
      if (!db.objectStoreNames.contains('data')) db.createObjectStore('data', { keyPath: 'id' });
    };
    let db: IDBDatabase;
    try {
      db = await new Promise<IDBDatabase>((resolve, reject) => {
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
        req.onblocked = () => reject(new DOMException('another tab holds an older version of the database open', 'BlockedError'));
      });
    } catch (e) {
      throw new DatasetError('browser storage', 'storage', `could not be opened (${(e as Error)?.message ?? String(e)}).`, 'Close other studio tabs and reload.');
    }
    return new DatasetStore(db, opts);
  }

  /** Stored datasets, oldest first, without their pixels. */
  async list(): Promise<StoredDatasetInfo[]> {
    const tx = this.db.transaction('meta', 'readonly');
    const all = await request(tx.objectStore('meta').getAll() as IDBRequest<StoredDatasetInfo[]>);
    return all.sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * Store a dataset; resolves with its listing once the transaction has committed. On any
   * failure nothing is written (one transaction) and a DatasetError says why.
   */
  async save(ds: ImageDataset): Promise<StoredDatasetInfo> {
    const bytes = encodeDmds(ds);
    const info: StoredDatasetInfo = { ...summarize(ds), id: newId(), createdAt: Date.now(), storedBytes: bytes.byteLength, thumbnails: makeThumbnails(ds) };
    const est = await globalThis.navigator?.storage?.estimate?.().catch(() => null);
    if (est && est.quota !== undefined && est.usage !== undefined && est.usage + bytes.byteLength > est.quota) {
      throw storageError({ name: 'QuotaExceededError' }, ds.name, bytes.byteLength);
    }
    let tx: IDBTransaction;
    try {
      tx = this.db.transaction(['meta', 'data'], 'readwrite');
    } catch (e) {
      throw storageError(e, ds.name, bytes.byteLength);
    }
    const committed = done(tx);
    try {
      tx.objectStore('meta').put(info);
      this.opts.beforeDataWrite?.();
      tx.objectStore('data').put({ id: info.id, bytes: bytes.buffer });
    } catch (e) {
      try {
        tx.abort();
      } catch {
        /* already finished */
      }
      await committed.catch(() => undefined);
      throw storageError(e, ds.name, bytes.byteLength);
    }
    try {
      await committed;
    } catch (e) {
      throw storageError(e, ds.name, bytes.byteLength);
    }
    return info;
  }

  /** A stored dataset, in full. */
  async load(id: string): Promise<ImageDataset> {
    const tx = this.db.transaction('data', 'readonly');
    const rec = (await request(tx.objectStore('data').get(id))) as { id: string; bytes: ArrayBuffer } | undefined;
    if (!rec) throw new DatasetError(`stored dataset ${id}`, 'not-found', 'is not in this browser’s storage (deleted, or storage was cleared).');
    return decodeDmds(new Uint8Array(rec.bytes), `stored dataset ${id}`);
  }

  /** Delete one dataset (its listing and its data together). */
  async remove(id: string): Promise<void> {
    const tx = this.db.transaction(['meta', 'data'], 'readwrite');
    tx.objectStore('meta').delete(id);
    tx.objectStore('data').delete(id);
    await done(tx);
  }

  close(): void {
    this.db.close();
  }
}
