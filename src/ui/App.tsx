/**
 * The studio's page: Configure (presets, every knob, the masking preview) and Datasets on the
 * left; Run (controls, progress, what is really trained, errors), Watch (curves,
 * reconstructions, attention, teacher), Evaluate (accuracy and confusion matrix) and Runs on the right; the WebGPU adapter and the
 * kernel self-test at the bottom. Without WebGPU the page says why at the top, and
 * configuring, datasets and the runs list still work.
 * Reads everything from the stores; knows nothing of WebGPU beyond what the workers report.
 */
import { memo, useCallback, useEffect, useMemo, useState } from 'react';
import { BUILTIN_DATASETS } from '../data/builtin';
import { DatasetStore } from '../data/store-idb';
import { DatasetPanel, type DatasetChoice } from '../data/ui/DatasetPanel';
import { useGpuStore, type GpuStatus, type SelfTestState } from '../store/gpu';
import { watchRuns, useRunsStore } from '../store/runs';
import { startTrainWorker, trainMetrics, useStudioStore, useTrainStore } from '../store/train';
import type { AdapterSummary } from '../protocol/gpu';
import { ConfigurePanel } from './studio/ConfigurePanel';
import { EvaluatePanel } from './studio/EvaluatePanel';
import { ResumeOffer } from './studio/CheckpointPanel';
import { RunPanel } from './studio/RunPanel';
import { RunsPanel } from './studio/RunsPanel';
import { followUrl, useConfigStore, syncConfigToUrl } from './studio/state';
import { TeacherPanel, Watch } from './studio/watch-mount';

const KEY_LIMITS: Array<[string, string, (v: number) => string]> = [
  ['maxStorageBufferBindingSize', 'Largest storage binding', bytes],
  ['maxBufferSize', 'Largest buffer', bytes],
  ['maxComputeWorkgroupStorageSize', 'Workgroup memory', bytes],
  ['maxComputeInvocationsPerWorkgroup', 'Invocations per workgroup', String],
  ['maxStorageBuffersPerShaderStage', 'Storage buffers per kernel', String],
  ['maxComputeWorkgroupsPerDimension', 'Workgroups per dimension', String],
];

/** What src/gpu's openDevice asks for when the adapter has it. */
const KERNEL_FEATURES = ['timestamp-query', 'subgroups', 'shader-f16'];

function bytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size) return `${+(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

const KIND_LABEL: Record<AdapterSummary['kind'], string> = {
  hardware: 'hardware GPU',
  lavapipe: 'software (lavapipe)',
  swiftshader: 'software (SwiftShader)',
  software: 'software fallback',
};

/** Builtin datasets' training images (the fixed split) and geometry. */
const BUILTIN_GEOMETRY: Record<string, { nTrain: number; C: number; H?: number; name: string }> = {
  'builtin:mnist': { nTrain: 9000, C: 1, H: 28, name: 'MNIST (28×28 gray)' },
  'builtin:shapes': { nTrain: 1800, C: 3, name: 'Shapes (generated colour)' },
};

interface StoredGeometry { nTrain: number; C: number; H: number; name: string }

/** Tests and the curious reach the stores through `window.__dmaeStudio` when the URL has ?debug. */
function exposeDebug(): void {
  if (!globalThis.location?.search.includes('debug')) return;
  (globalThis as unknown as { __dmaeStudio: unknown }).__dmaeStudio = {
    train: useTrainStore, studio: useStudioStore, runs: useRunsStore, config: useConfigStore, metrics: trainMetrics,
  };
}

/** The dataset panel, re-rendered only when the selection changes. */
const Datasets = memo(function Datasets({ selected, onSelect }: { selected: DatasetChoice; onSelect: (c: DatasetChoice) => Promise<void> }) {
  const select = useCallback((c: DatasetChoice) => void onSelect(c), [onSelect]);
  return <DatasetPanel selected={selected} onSelect={select} baseUrl={import.meta.env.BASE_URL} />;
});

export function App() {
  const gpu = useGpuStore((s) => s.gpu);
  const selfTest = useGpuStore((s) => s.selfTest);
  const runSelfTest = useGpuStore((s) => s.runSelfTest);
  const config = useConfigStore((s) => s.config);
  const setConfig = useConfigStore((s) => s.set);
  const [stored, setStored] = useState<Record<string, StoredGeometry>>({});

  useEffect(() => {
    exposeDebug();
    syncConfigToUrl();
    watchRuns();
    return followUrl();
  }, []);
  // The training worker opens its own device: start it once the page knows WebGPU is there.
  useEffect(() => {
    if (gpu.status === 'ready') startTrainWorker();
  }, [gpu.status]);

  const refreshStored = useCallback(async () => {
    try {
      const s = await DatasetStore.open();
      try {
        const list = await s.list();
        const map: Record<string, StoredGeometry> = {};
        for (const d of list) map[`stored:${d.id}`] = { nTrain: d.nTrain, C: d.C, H: d.H, name: d.name };
        setStored(map);
        return map;
      } finally {
        s.close();
      }
    } catch {
      return {};
    }
  }, []);
  useEffect(() => {
    if (config.dataset.startsWith('stored:')) void refreshStored();
  }, [config.dataset, refreshStored]);

  const selected: DatasetChoice = useMemo(
    () => (config.dataset.startsWith('builtin:') ? { kind: 'builtin', id: config.dataset.slice(8) as 'mnist' | 'shapes' } : { kind: 'stored', id: config.dataset.slice(7), name: stored[config.dataset]?.name ?? '' }),
    [config.dataset, stored],
  );

  const onSelect = useCallback(async (choice: DatasetChoice) => {
    if (choice.kind === 'builtin') {
      const key = `builtin:${choice.id}` as const;
      const b = BUILTIN_DATASETS.find((d) => d.id === choice.id)!;
      const imgSize = choice.id === 'mnist' ? 28 : useConfigStore.getState().config.imgSize;
      setConfig({ dataset: key, inChans: b.C, imgSize });
      return;
    }
    const key = `stored:${choice.id}` as const;
    const map = await refreshStored();
    const g = map[key];
    setConfig({ dataset: key, ...(g ? { imgSize: g.H, inChans: g.C } : {}) });
  }, [setConfig, refreshStored]);

  const geometry = BUILTIN_GEOMETRY[config.dataset] ?? stored[config.dataset];
  const datasetName = geometry?.name ?? (config.dataset.startsWith('stored:') ? 'a stored dataset (not found in this browser: import it again)' : config.dataset);

  return (
    <main className="page studio">
      <header className="top">
        <div>
          <h1>DMAE Studio</h1>
          <p className="lede">Train ViT masked autoencoders and distil DMAE students in your browser, on WebGPU.</p>
        </div>
        {gpu.status === 'ready' && (
          <a className="adapter-chip" href="#system" data-testid="adapter-chip" title={gpu.adapter.description}>
            <span className={`badge ${gpu.adapter.kind}`}>{KIND_LABEL[gpu.adapter.kind]}</span> {gpu.adapter.description.slice(0, 48)}
          </a>
        )}
      </header>
      {gpu.status !== 'ready' && <GpuPanel gpu={gpu} />}
      <ResumeOffer />
      <div className="columns">
        <div className="col left">
          <ConfigurePanel nTrain={geometry?.nTrain} datasetName={datasetName} />
          <TeacherPanel />
          <Datasets selected={selected} onSelect={onSelect} />
        </div>
        <div className="col right">
          <RunPanel canStart={gpu.status === 'ready'} />
          <Watch />
          <EvaluatePanel />
          <RunsPanel />
        </div>
      </div>
      <div className="system" id="system">
        {gpu.status === 'ready' && <GpuPanel gpu={gpu} />}
        <SelfTestPanel state={selfTest} enabled={gpu.status === 'ready'} onRun={runSelfTest} />
      </div>
      <footer>Training runs in a Web Worker on this page’s GPU; nothing leaves this browser.</footer>
    </main>
  );
}

function GpuPanel({ gpu }: { gpu: GpuStatus }) {
  switch (gpu.status) {
    case 'detecting':
      return (
        <section className="card" data-testid="gpu-detecting">
          <h2>WebGPU</h2>
          <p>Looking for a GPU adapter…</p>
        </section>
      );
    case 'ready':
      return <AdapterCard adapter={gpu.adapter} />;
    case 'lost':
      return (
        <section className="card error" data-testid="gpu-error" role="alert">
          <h2>The GPU device was lost</h2>
          <p>{gpu.message}</p>
          <p>Reload the page to start again.</p>
        </section>
      );
    case 'unavailable':
      return (
        <section className="card error" data-testid="no-webgpu" role="alert">
          <h2>WebGPU is not available here</h2>
          <p data-testid="no-webgpu-reason">{gpu.message}</p>
          <h3>Where WebGPU works</h3>
          <ul>
            <li>Chrome or Edge 113 or later, on Windows, macOS and ChromeOS (Android 121+).</li>
            <li>Chromium on Linux, started with <code>--enable-unsafe-webgpu</code> (add <code>--enable-features=Vulkan</code> for a hardware GPU).</li>
            <li>Safari 26 or later; Firefox 141 or later on Windows.</li>
            <li>The page must come from <code>https://</code> or <code>http://localhost</code>.</li>
          </ul>
          <h3>What still works</h3>
          <p>
            On this page: configuring runs (the link keeps the configuration), importing and browsing datasets, the runs kept in this
            browser with their curves, and exporting their weights. In Node, everything: <code>npm test</code>, <code>npm run dmae -- train</code> and the
            kernel lab run the same kernels on Dawn, Chrome's WebGPU. Training here and the kernel self-test need WebGPU in this browser.
          </p>
        </section>
      );
  }
}

function AdapterCard({ adapter }: { adapter: AdapterSummary }) {
  return (
    <section className="card" data-testid="adapter">
      <h2>
        WebGPU adapter <span className={`badge ${adapter.kind}`} data-testid="adapter-kind">{KIND_LABEL[adapter.kind]}</span>
      </h2>
      <p className="adapter-name" data-testid="adapter-description">{adapter.description}</p>
      {adapter.kind !== 'hardware' && <p className="note">A software adapter runs the kernels on the CPU: correct, but far slower than a GPU.</p>}
      <table className="limits">
        <tbody>
          {KEY_LIMITS.map(([key, label, fmt]) => (
            <tr key={key} data-limit={key} data-value={adapter.limits[key]}>
              <th scope="row">{label}</th>
              <td>{adapter.limits[key] === undefined ? '—' : fmt(adapter.limits[key])}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="kernel-features">
        Optional features the kernels use:{' '}
        {KERNEL_FEATURES.map((f) => (
          <span key={f} className={`chip ${adapter.features.includes(f) ? 'has' : 'lacks'}`}>
            {adapter.features.includes(f) ? '✓' : '✗'} {f}
          </span>
        ))}
      </p>
      <details data-testid="adapter-features">
        <summary>All {adapter.features.length} adapter features</summary>
        <div className="features">
          {adapter.features.map((f) => (
            <span key={f} className="chip">{f}</span>
          ))}
        </div>
      </details>
    </section>
  );
}

function SelfTestPanel({ state, enabled, onRun }: { state: SelfTestState; enabled: boolean; onRun: () => void }) {
  return (
    <section className="card" data-testid="self-test">
      <h2>Kernel self-test</h2>
      <p>Runs matrix multiplies on this GPU and compares every element with the same product computed in float64.</p>
      <button type="button" onClick={onRun} disabled={!enabled || state.status === 'running'}>
        {state.status === 'running' ? 'Running…' : 'Run kernel self-test'}
      </button>
      {state.status === 'failed' && (
        <p className="verdict fail" data-testid="self-test-verdict" role="alert">Self-test could not run: {state.message}</p>
      )}
      {state.status === 'done' && (
        <>
          <p className={`verdict ${state.result.passed ? 'pass' : 'fail'}`} data-testid="self-test-verdict">
            {state.result.passed ? 'Passed' : 'FAILED'}: max error{' '}
            <span data-testid="self-test-max-error">{Math.max(...state.result.cases.map((c) => c.maxError)).toExponential(2)}</span> in{' '}
            {state.result.ms.toFixed(0)} ms
          </p>
          <table className="cases">
            <thead>
              <tr>
                <th>kernel</th>
                <th>M×N×K</th>
                <th>max |GPU − float64|</th>
                <th>allowed</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {state.result.cases.map((c) => (
                <tr key={c.name}>
                  <td>{c.name}</td>
                  <td>{`${c.M}×${c.N}×${c.K}`}</td>
                  <td>{c.maxError.toExponential(2)}</td>
                  <td>{c.allowed.toExponential(2)}</td>
                  <td>{c.passed ? '✓' : '✗'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
