/**
 * The studio's dataset panel: the built-ins, imports (file and folder pickers, drag and drop),
 * and the datasets stored in this browser with their size, class count and a few samples.
 * Self-contained (its own state; src/data underneath), so the studio mounts it with one line:
 *
 *   <DatasetPanel selected={choice} onSelect={setChoice} />
 *
 * Imports run on the page: decoding uses the browser's own decoders (off the main thread in the
 * browser's image pipeline); the pixel loops that follow are short for the resolutions trained
 * here. The same importDataset runs unchanged in a worker should that be needed.
 */
import { useCallback, useEffect, useRef, useState, type DragEvent } from 'react';
import { BUILTIN_DATASETS, loadBuiltin, type BuiltinId } from '../builtin';
import { importBrowserFiles, sourcesFromDataTransfer, sourcesFromFileList } from '../browser-files';
import { DatasetError, formatBytes } from '../errors';
import type { ImportProgress, ImportSource } from '../import';
import { DatasetStore, makeThumbnails, type StoredDatasetInfo, type Thumbnail } from '../store-idb';
import './dataset-panel.css';

export type DatasetChoice = { kind: 'builtin'; id: BuiltinId } | { kind: 'stored'; id: string; name: string };

export interface DatasetPanelProps {
  selected?: DatasetChoice | null;
  onSelect?: (choice: DatasetChoice) => void;
  /** Where public/ is served (Vite's import.meta.env.BASE_URL). */
  baseUrl?: string;
  /** IndexedDB database name (tests use their own). */
  storeName?: string;
}

type Status = { kind: 'idle' } | { kind: 'busy'; text: string } | { kind: 'error'; message: string } | { kind: 'done'; text: string; warnings: string[] };

const PHASE: Record<ImportProgress['phase'], string> = { reading: 'Reading files', unpacking: 'Unpacking', decoding: 'Decoding images', finishing: 'Finishing' };

export function ThumbnailStrip({ thumbs, size = 40 }: { thumbs: Thumbnail[]; size?: number }) {
  return (
    <div className="ds-thumbs">
      {thumbs.map((t, i) => (
        <ThumbnailCanvas key={i} thumb={t} size={size} />
      ))}
    </div>
  );
}

function ThumbnailCanvas({ thumb, size }: { thumb: Thumbnail; size: number }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const ctx = ref.current?.getContext('2d');
    if (ctx) ctx.putImageData(new ImageData(new Uint8ClampedArray(thumb.rgba), thumb.width, thumb.height), 0, 0);
  }, [thumb]);
  const scale = size / Math.max(thumb.width, thumb.height);
  return <canvas ref={ref} width={thumb.width} height={thumb.height} title={thumb.label} style={{ width: thumb.width * scale, height: thumb.height * scale }} />;
}

export function DatasetPanel({ selected, onSelect, baseUrl = '/', storeName }: DatasetPanelProps) {
  const [store, setStore] = useState<DatasetStore | null>(null);
  const [storeError, setStoreError] = useState<string | null>(null);
  const [stored, setStored] = useState<StoredDatasetInfo[]>([]);
  const [builtinThumbs, setBuiltinThumbs] = useState<Partial<Record<BuiltinId, Thumbnail[]>>>({});
  const [status, setStatus] = useState<Status>({ kind: 'idle' });
  const [resolution, setResolution] = useState<string>('auto');
  const [channels, setChannels] = useState<'auto' | '1' | '3'>('auto');
  const [skipNonImages, setSkipNonImages] = useState(false);
  const [dragging, setDragging] = useState(false);

  useEffect(() => {
    let live = true;
    let opened: DatasetStore | null = null;
    DatasetStore.open({ name: storeName })
      .then(async (s) => {
        opened = s;
        if (!live) return s.close();
        setStore(s);
        setStored(await s.list());
      })
      .catch((e) => live && setStoreError(e instanceof Error ? e.message : String(e)));
    for (const b of BUILTIN_DATASETS) {
      loadBuiltin(b.id, { baseUrl, shapes: { n: 16, size: 32 } })
        .then((ds) => live && setBuiltinThumbs((t) => ({ ...t, [b.id]: makeThumbnails(ds, 8, 32) })))
        .catch(() => undefined); // the list still shows it; loading for training reports the error
    }
    return () => {
      live = false;
      opened?.close();
    };
  }, [baseUrl, storeName]);

  const runImport = useCallback(
    async (getSources: Promise<ImportSource[]> | ImportSource[]) => {
      setStatus({ kind: 'busy', text: 'Reading files…' });
      try {
        const sources = await getSources;
        const res = resolution === 'auto' ? undefined : Number(resolution);
        const { dataset, warnings } = await importBrowserFiles(sources, {
          resolution: res,
          channels: channels === 'auto' ? 'auto' : (Number(channels) as 1 | 3),
          skipNonImages,
          onProgress: (p) => setStatus({ kind: 'busy', text: `${PHASE[p.phase]}… ${p.total > 1 ? `${p.done} / ${p.total}` : ''}` }),
        });
        if (!store) throw new DatasetError(dataset.name, 'storage', `was imported but cannot be kept: ${storeError ?? 'browser storage is not ready'}.`);
        setStatus({ kind: 'busy', text: 'Saving in this browser…' });
        const info = await store.save(dataset);
        setStored(await store.list());
        setStatus({ kind: 'done', text: `Imported ${info.name}: ${info.N.toLocaleString('en')} images.`, warnings });
        onSelect?.({ kind: 'stored', id: info.id, name: info.name });
      } catch (e) {
        setStatus({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
      }
    },
    [store, storeError, resolution, channels, skipNonImages, onSelect],
  );

  const onDrop = (e: DragEvent<HTMLDivElement>) => {
    e.preventDefault();
    setDragging(false);
    // Taken synchronously: the browser empties the DataTransfer when the handler returns.
    void runImport(sourcesFromDataTransfer(e.dataTransfer));
  };

  const remove = async (id: string) => {
    if (!store) return;
    await store.remove(id);
    setStored(await store.list());
  };

  const busy = status.kind === 'busy';
  const isSelected = (c: DatasetChoice) => !!selected && selected.kind === c.kind && selected.id === c.id;

  return (
    <section className="card ds-panel" data-testid="dataset-panel">
      <h2>Datasets</h2>

      <h3>Built in</h3>
      <ul className="ds-list">
        {BUILTIN_DATASETS.map((b) => {
          const choice: DatasetChoice = { kind: 'builtin', id: b.id };
          return (
            <li key={b.id} className={isSelected(choice) ? 'selected' : ''} data-testid={`builtin-${b.id}`}>
              <div className="ds-main">
                <strong>{b.name}</strong> <span className="muted">{b.description}</span>
                <div className="muted ds-facts">
                  {b.N.toLocaleString('en')} images · {b.numClasses} classes · {b.C === 1 ? 'gray' : 'RGB'} {b.H}×{b.W}
                </div>
                <ThumbnailStrip thumbs={builtinThumbs[b.id] ?? []} />
              </div>
              <button type="button" onClick={() => onSelect?.(choice)} disabled={isSelected(choice)}>
                {isSelected(choice) ? 'Selected' : 'Use'}
              </button>
            </li>
          );
        })}
      </ul>

      <h3>Import your own</h3>
      <div
        className={`ds-drop ${dragging ? 'over' : ''}`}
        data-testid="dataset-drop"
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <p>
          Drop a folder of images (PNG, JPEG, WebP; sub-folders name the classes), MNIST-style IDX files, CIFAR binary batches, or a zip / tar.gz of them here.
        </p>
        <div className="ds-actions">
          <label className="ds-pick">
            Choose files…
            <input type="file" multiple data-testid="dataset-files" disabled={busy} onChange={(e) => e.target.files && void runImport(sourcesFromFileList(e.target.files)).finally(() => (e.target.value = ''))} />
          </label>
          <label className="ds-pick">
            Choose a folder…
            <input type="file" multiple {...{ webkitdirectory: '' }} data-testid="dataset-folder" disabled={busy} onChange={(e) => e.target.files && void runImport(sourcesFromFileList(e.target.files)).finally(() => (e.target.value = ''))} />
          </label>
        </div>
        <div className="ds-options">
          <label>
            Resolution{' '}
            <select value={resolution} onChange={(e) => setResolution(e.target.value)} data-testid="dataset-resolution">
              <option value="auto">as the images (up to 128)</option>
              {[16, 28, 32, 48, 64, 96, 128, 224].map((r) => (
                <option key={r} value={String(r)}>{`${r}×${r}`}</option>
              ))}
            </select>
          </label>
          <label>
            Channels{' '}
            <select value={channels} onChange={(e) => setChannels(e.target.value as 'auto' | '1' | '3')}>
              <option value="auto">as the images</option>
              <option value="1">gray</option>
              <option value="3">RGB</option>
            </select>
          </label>
          <label>
            <input type="checkbox" checked={skipNonImages} onChange={(e) => setSkipNonImages(e.target.checked)} /> skip files that are not images
          </label>
        </div>
      </div>
      {status.kind === 'busy' && <p className="muted" data-testid="dataset-status">{status.text}</p>}
      {status.kind === 'done' && (
        <div data-testid="dataset-status">
          <p className="verdict pass">{status.text}</p>
          {status.warnings.length > 0 && (
            <details>
              <summary>{status.warnings.length} note{status.warnings.length > 1 ? 's' : ''}</summary>
              <ul>
                {status.warnings.slice(0, 50).map((w) => (
                  <li key={w} className="muted">{w}</li>
                ))}
              </ul>
            </details>
          )}
        </div>
      )}
      {status.kind === 'error' && (
        <p className="verdict fail" role="alert" data-testid="dataset-error">
          {status.message}
        </p>
      )}

      <h3>Stored in this browser</h3>
      {storeError && <p className="muted" data-testid="dataset-store-error">{storeError}</p>}
      {stored.length === 0 && !storeError && <p className="muted">None yet: imported datasets are kept here, so a reload does not ask for the files again.</p>}
      <ul className="ds-list" data-testid="dataset-stored">
        {stored.map((d) => {
          const choice: DatasetChoice = { kind: 'stored', id: d.id, name: d.name };
          return (
            <li key={d.id} className={isSelected(choice) ? 'selected' : ''} data-testid="stored-dataset">
              <div className="ds-main">
                <strong>{d.name}</strong>
                <div className="muted ds-facts">
                  {d.N.toLocaleString('en')} images ({d.nTrain.toLocaleString('en')} train / {d.nVal.toLocaleString('en')} val) · {d.numClasses ? `${d.numClasses} classes` : 'unlabelled'} · {d.C === 1 ? 'gray' : 'RGB'} {d.H}×{d.W} ·{' '}
                  {formatBytes(d.storedBytes)}
                </div>
                <ThumbnailStrip thumbs={d.thumbnails} />
              </div>
              <div className="ds-buttons">
                <button type="button" onClick={() => onSelect?.(choice)} disabled={isSelected(choice)}>
                  {isSelected(choice) ? 'Selected' : 'Use'}
                </button>
                <button type="button" className="secondary" onClick={() => void remove(d.id)} aria-label={`Delete ${d.name}`}>
                  Delete
                </button>
              </div>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
