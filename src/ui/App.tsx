/**
 * The first studio page: which GPU this browser gives us, and a kernel self-test on it.
 * Reads everything from the store; knows nothing of WebGPU beyond what the worker reports.
 */
import { useGpuStore, type GpuStatus, type SelfTestState } from '../store/gpu';
import type { AdapterSummary } from '../protocol/gpu';
import { TrainPanel } from './TrainPanel';

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

export function App() {
  const gpu = useGpuStore((s) => s.gpu);
  const selfTest = useGpuStore((s) => s.selfTest);
  const runSelfTest = useGpuStore((s) => s.runSelfTest);
  return (
    <main className="page">
      <header>
        <h1>DMAE Studio</h1>
        <p className="lede">Train ViT masked autoencoders and distil DMAE students in your browser, on WebGPU.</p>
      </header>
      <GpuPanel gpu={gpu} />
      <SelfTestPanel state={selfTest} enabled={gpu.status === 'ready'} onRun={runSelfTest} />
      {gpu.status !== 'unavailable' && <TrainPanel />}
      <footer>Training, datasets and exports are being built; this page checks that your GPU can run the kernels.</footer>
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
            This page, and everything in Node: <code>npm test</code> and the kernel lab run the same kernels on Dawn, Chrome's
            WebGPU. Training and the kernel self-test need WebGPU in this browser.
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
            <tr key={key}>
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
