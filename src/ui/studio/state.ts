/**
 * The form's state: the configuration being edited, mirrored into the URL's hash (so the page's
 * address shares it) and into localStorage (so a reload restores the last one); and what the
 * form needs to know of the adapter (its features and limits: useAdapter).
 */
import { create } from 'zustand';
import { useGpuStore } from '../../store/gpu';
import { useTrainStore } from '../../store/train';
import { DEFAULT_CONFIG, STORAGE_KEY, decodeConfig, encodeConfig, initialConfig, type StudioConfig } from './config';

export interface ConfigSlice {
  config: StudioConfig;
  set: (patch: Partial<StudioConfig>) => void;
  replace: (c: StudioConfig) => void;
}

function startConfig(): StudioConfig {
  if (typeof location === 'undefined') return DEFAULT_CONFIG;
  let storage: Storage | null = null;
  try {
    storage = globalThis.localStorage ?? null;
  } catch {
    storage = null;
  }
  return initialConfig(location, storage);
}

function persist(c: StudioConfig): void {
  if (typeof location === 'undefined') return;
  const text = encodeConfig(c);
  try {
    history.replaceState(history.state, '', `${location.pathname}${location.search}#${text}`);
  } catch {
    /* an opaque origin: the URL stays as it is */
  }
  try {
    localStorage.setItem(STORAGE_KEY, text);
  } catch {
    /* private mode, quota: only the URL keeps it */
  }
}

export const useConfigStore = create<ConfigSlice>()((set, get) => ({
  config: startConfig(),
  set: (patch) => {
    const config = { ...get().config, ...patch };
    set({ config });
    persist(config);
  },
  replace: (config) => {
    set({ config });
    persist(config);
  },
}));

/** Writes the starting configuration into the URL at once (a shared link shows what is configured). */
export function syncConfigToUrl(): void {
  persist(useConfigStore.getState().config);
}

/** A link with another configuration pasted into this tab's address bar (only the hash changes): take it. */
export function followUrl(): () => void {
  const onHash = () => {
    const c = decodeConfig(location.hash);
    if (c && encodeConfig(c) !== encodeConfig(useConfigStore.getState().config)) useConfigStore.getState().replace(c);
  };
  addEventListener('hashchange', onHash);
  return () => removeEventListener('hashchange', onHash);
}

/** What the form needs of the adapter: its features (mixed precision needs shader-f16) and limits (the largest buffer). */
export interface AdapterFacts {
  features: readonly string[];
  limits: Readonly<Record<string, number>>;
}

/**
 * The adapter as the page knows it: the training worker's device once it is ready, else the GPU
 * probe's (the same browser's adapter); null before either has reported.
 */
export function useAdapter(): AdapterFacts | null {
  const probed = useGpuStore((s) => (s.gpu.status === 'ready' ? s.gpu.adapter : null));
  const training = useTrainStore((s) => (s.worker.status === 'ready' ? s.worker.adapter : null));
  return training ?? probed;
}

/** The adapter's features (useAdapter); null before it has reported. */
export const useAdapterFeatures = (): readonly string[] | null => useAdapter()?.features ?? null;
